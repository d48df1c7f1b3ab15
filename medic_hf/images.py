"""Opening, checking and re-encoding the images of social-media posts, whatever their format or mode."""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


# Errors Pillow raises for files it cannot decode: not an image, truncated data, unsupported or broken
# format, and images over `Image.MAX_IMAGE_PIXELS * 2` pixels (the decompression-bomb limit, left on).
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composed on white, not black. 16-bit and 32-bit integer images are scaled
    from 0-65535 to 0-255, because Pillow's own conversion clips them to white. CMYK, grayscale and
    palette images use Pillow's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode in SIXTEEN_BIT_MODES or values.max(initial=0) > 255:
            values = values / 257.0
        return Image.fromarray(values.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def open_image(source: str | Path | bytes, min_size: int | None = None) -> Image.Image:
    """Decode an image upright and in RGB, from a path or from bytes.

    Args:
        source: a file path, or the file's bytes.
        min_size: if given, JPEG images are decoded at the smallest power-of-two reduction (Pillow's
            draft mode) that keeps both sides at least this many pixels, which is several times faster
            for large photos. Other formats decode at full size.

    Raises:
        One of `IMAGE_ERRORS` if the data cannot be decoded.
    """
    file = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(file) as image:
        if min_size is not None:
            image.draft("RGB", (min_size, min_size))
        # Animated GIF and WebP files decode their first frame, which is the frame `Image.open` is at.
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


def image_error(source: str | Path | bytes) -> str | None:
    """Return why an image cannot be decoded (the error type and message), or `None` if it decodes.

    The check decodes the whole file at a reduced JPEG scale, so truncated files are found as well as
    empty files, files that are not images and images over the decompression-bomb limit.
    """
    try:
        open_image(source, min_size=32)
    except IMAGE_ERRORS as error:
        return f"{type(error).__name__}: {error}"
    return None


def encode_jpeg(source: str | Path | bytes, max_short_side: int, quality: int = 90) -> bytes:
    """Decode an image and re-encode it as an RGB JPEG whose shorter side is at most `max_short_side`.

    Images already small enough keep their size. The resize uses Pillow's Lanczos filter after a draft
    decode at no less than twice the target size, which keeps fine detail while skipping most pixels.
    """
    image = open_image(source, min_size=2 * max_short_side)
    short_side = min(image.size)
    if short_side > max_short_side:
        scale = max_short_side / short_side
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
