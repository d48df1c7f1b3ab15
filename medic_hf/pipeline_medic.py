"""The `image-classification` pipeline of a MEDIC model: every task's labels with their scores, per image.

`save_pretrained` saves this file with the model and lists it under `custom_pipelines` in config.json, so

    pipeline(model="folder-or-repo", trust_remote_code=True)

builds this pipeline where medic_hf is not installed. The file therefore imports only transformers, torch,
Pillow and the standard library.
"""

from io import BytesIO
from typing import Any

import torch
from huggingface_hub.utils import httpx
from PIL import Image, ImageOps
from transformers import Pipeline


def open_image(image: "str | Image.Image", timeout: float | None = None) -> Image.Image:
    """Open a file path, an http(s) URL or a Pillow image upright (EXIF orientation applied) and in RGB.

    Transparent pixels are composed on white, as in training. Pillow's decompression-bomb limit stays on.

    Raises:
        FileNotFoundError: if a path does not exist.
        httpx.HTTPStatusError: if the server returns an error status for a URL.
        PIL.UnidentifiedImageError: if the file or download is not an image Pillow can read.
    """
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            response = httpx.get(image, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
            image = Image.open(BytesIO(response.content))
        else:
            image = Image.open(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(
            f"Invalid image of type {type(image).__name__}: give a file path, an http(s) URL or a PIL.Image.Image."
        )
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class MedicImageClassificationPipeline(Pipeline):
    """Classify images for every task of a MEDIC model in one forward pass.

    Call it with one image or a list of images. Each image may be a file path, an http(s) URL or a PIL image.
    One image gives one dictionary; a list gives a list of them, in input order. Each dictionary maps every task
    of the model to its labels with softmax scores, best first:

    ```python
    >>> from transformers import pipeline
    >>> classifier = pipeline(model="medic-vit", trust_remote_code=True)
    >>> classifier("photo.jpg", top_k=2)
    {'damage_severity': [{'label': 'severe', 'score': 0.81}, {'label': 'mild', 'score': 0.12}],
     'informative': [{'label': 'informative', 'score': 0.97}, {'label': 'not_informative', 'score': 0.03}],
     ...}
    ```

    Keyword arguments of the call:
        top_k (`int`, *optional*):
            Labels to return per task, best first. Defaults to all of the task's classes.
        timeout (`float`, *optional*):
            Seconds to wait for each URL download. Defaults to no limit.
        batch_size (`int`, *optional*):
            Images per forward pass when a list is given (handled by `Pipeline`).
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, top_k: int | None = None, timeout: float | None = None, **kwargs):
        if kwargs:
            raise TypeError(
                f"Unexpected argument(s) {', '.join(sorted(kwargs))}: the MEDIC pipeline accepts top_k, timeout, "
                "batch_size and num_workers."
            )
        preprocess_params = {} if timeout is None else {"timeout": timeout}
        postprocess_params = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"Invalid `top_k={top_k!r}`: give a positive number of labels per task.")
            postprocess_params["top_k"] = top_k
        return preprocess_params, {}, postprocess_params

    def preprocess(self, image, timeout: float | None = None) -> dict[str, torch.Tensor]:
        inputs = self.image_processor(images=open_image(image, timeout=timeout), return_tensors="pt")
        return {"pixel_values": inputs["pixel_values"].to(self.dtype)}

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # A plain dict of tensors lets `Pipeline` split a batch back into single images.
        return dict(self.model(pixel_values=model_inputs["pixel_values"]).task_logits())

    def postprocess(self, model_outputs: dict[str, torch.Tensor], top_k: int | None = None) -> dict[str, Any]:
        results = {}
        for task, logits in model_outputs.items():
            scores = logits[0].float().softmax(dim=-1)
            id2label = self.model.config.task_id2label[task]
            ranked = sorted(
                ({"label": id2label[index], "score": float(score)} for index, score in enumerate(scores)),
                key=lambda entry: entry["score"],
                reverse=True,
            )
            results[task] = ranked if top_k is None else ranked[:top_k]
        return results
