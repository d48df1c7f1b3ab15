"""Image preprocessing for training and evaluation, applied on the fly with `Dataset.set_transform`."""

from PIL import Image, ImageOps
from torchvision.transforms import v2
import torch

from .labels import label_column


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, composing transparent pixels on white rather than black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str) -> Image.Image:
    """Open an image file upright (EXIF orientation applied) and in RGB."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)


def processor_output_size(image_processor) -> tuple[int, int]:
    """Return the (height, width) of the images the processor produces, from `crop_size` or `size`."""
    for attribute in ("crop_size", "size"):
        size = getattr(image_processor, attribute, None)
        if not isinstance(size, dict) and size is not None:
            size = dict(size)
        if not size:
            continue
        if size.get("height") and size.get("width"):
            return size["height"], size["width"]
        if size.get("shortest_edge"):
            return size["shortest_edge"], size["shortest_edge"]
    raise ValueError(
        f"Cannot tell the output size of {type(image_processor).__name__}: it has no `crop_size` or `size` with "
        "height and width or shortest_edge. Save the backbone with an image processor that sets one."
    )


class MedicTransform:
    """Turn a batch of dataset rows into `pixel_values` and one `<task>_labels` list per task.

    For training: a random resized crop to the processor's output size and a horizontal flip, then the
    processor's normalisation. For evaluation: the image processor itself, unchanged.
    """

    def __init__(self, image_processor, tasks: list[str], train: bool):
        self.image_processor = image_processor
        self.tasks = tasks
        self.train = train
        if train:
            self.augment = v2.Compose(
                [
                    v2.PILToTensor(),
                    v2.RandomResizedCrop(processor_output_size(image_processor), antialias=True),
                    v2.RandomHorizontalFlip(),
                    v2.ToDtype(torch.float32, scale=True),
                    v2.Normalize(mean=image_processor.image_mean, std=image_processor.image_std),
                ]
            )

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        images = [to_rgb(image) for image in batch["image"]]
        if self.train:
            pixel_values = [self.augment(image) for image in images]
        else:
            pixel_values = list(self.image_processor(images, return_tensors="pt")["pixel_values"])
        features = {"pixel_values": pixel_values}
        for task in self.tasks:
            features[label_column(task)] = batch[task]
        return features
