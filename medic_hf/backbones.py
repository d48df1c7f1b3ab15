"""Image processors for backbones from any source, in a form the MEDIC transforms and downstream users can read."""

import logging
import math

from transformers import AutoImageProcessor, BitImageProcessor
from transformers.image_utils import PILImageResampling


logger = logging.getLogger(__name__)

# timm's interpolation names and the Pillow filters that match them.
TIMM_INTERPOLATIONS = {
    "bicubic": PILImageResampling.BICUBIC,
    "bilinear": PILImageResampling.BILINEAR,
    "nearest": PILImageResampling.NEAREST,
    "lanczos": PILImageResampling.LANCZOS,
}


def load_image_processor(backbone: str, **from_pretrained_kwargs):
    """Load the backbone's image processor, turning a timm one into an equivalent `BitImageProcessor`.

    transformers' `TimmWrapperImageProcessor` has no `size` or `image_mean`, which the training transforms
    read, and it cannot be saved on its own. The replacement resizes, crops and normalises as timm's
    evaluation transform does, is saved as `preprocessor_config.json`, and loads without timm installed.
    """
    processor = AutoImageProcessor.from_pretrained(backbone, **from_pretrained_kwargs)
    if type(processor).__name__ != "TimmWrapperImageProcessor":
        return processor
    return image_processor_from_timm(processor.data_config)


def image_processor_from_timm(data_config: dict) -> BitImageProcessor:
    """Build the processor that matches timm's evaluation transform for a resolved timm data config.

    For square input sizes, timm resizes the shortest side to `floor(size / crop_pct)`, then crops the centre to
    `input_size`. NOTE: on non-square images the crop can sit one pixel away from timm's, because the two
    libraries round the resized long side and the crop offset differently.
    """
    _, height, width = data_config["input_size"]
    crop_pct = data_config.get("crop_pct") or 1.0
    crop_mode = data_config.get("crop_mode", "center")
    if crop_mode != "center":
        logger.warning(f"timm crop_mode {crop_mode!r} is replaced by a centre crop, as in crop_mode 'center'.")
    interpolation = data_config.get("interpolation", "bicubic")
    if interpolation not in TIMM_INTERPOLATIONS:
        logger.warning(f"timm interpolation {interpolation!r} is replaced by bicubic resizing.")
    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": math.floor(min(height, width) / crop_pct)},
        resample=TIMM_INTERPOLATIONS.get(interpolation, PILImageResampling.BICUBIC),
        do_center_crop=True,
        crop_size={"height": height, "width": width},
        do_normalize=True,
        image_mean=list(data_config["mean"]),
        image_std=list(data_config["std"]),
        do_convert_rgb=True,
    )
