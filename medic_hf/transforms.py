"""Image preprocessing for training and evaluation, applied on the fly with `Dataset.set_transform`."""

from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

from .images import open_image, to_rgb
from .labels import label_column


def load_image(path: str | Path) -> Image.Image:
    """Open an image file upright (EXIF orientation applied) and in RGB."""
    return open_image(path)


def decode_example_image(value, min_size: int) -> Image.Image:
    """Decode a dataset `image` value: a PIL image, or the `{"bytes", "path"}` dict of an undecoded column.

    Undecoded JPEG files are decoded in draft mode at no less than `min_size` pixels a side, which skips
    most of the work for large photos.
    """
    if isinstance(value, Image.Image):
        return to_rgb(value)
    return open_image(value["bytes"] if value.get("bytes") is not None else value["path"], min_size=min_size)


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
    processor's normalisation. For evaluation: the image processor itself, unchanged. Images may come
    decoded, or undecoded (`datasets.Image(decode=False)`), which lets JPEG files decode in draft mode.
    """

    def __init__(self, image_processor, tasks: list[str], train: bool):
        self.image_processor = image_processor
        self.tasks = tasks
        self.train = train
        # Decode at twice the output size or more, so random crops of a quarter of the image keep full detail.
        self.decode_size = 2 * max(processor_output_size(image_processor))
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
        images = [decode_example_image(value, self.decode_size) for value in batch["image"]]
        if self.train:
            pixel_values = [self.augment(image) for image in images]
        else:
            pixel_values = list(self.image_processor(images, return_tensors="pt")["pixel_values"])
        features = {"pixel_values": pixel_values}
        for task in self.tasks:
            features[label_column(task)] = batch[task]
        return features
