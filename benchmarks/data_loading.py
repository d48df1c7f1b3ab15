"""Training-input throughput: the MEDIC authors' PIL pipeline against medic_hf's prepared-folder path.

Both paths produce the same thing, a normalised 3x224x224 float tensor per image with a random crop and
flip, and both run in this process on one thread, so the ratio is images per second per core.

(a) baseline: decode the original JPEG at full size with Pillow, resize to 256x256, random crop 224,
    horizontal flip, to tensor, normalise (the MEDIC authors' train transform).
(b) medic_hf: `medic-hf prepare` stores each image with its shorter side at most 256 pixels. Training
    reads the prepared folder with `datasets` and applies `MedicTransform` (random resized crop 224, flip,
    normalise), as `medic-hf train` does.

    python benchmarks/data_loading.py --num_images 240

The images are generated photo-like JPEGs (smooth scenes with edges and sensor noise) of sizes seen on
social media, from 500 to 2,048 pixels a side.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torchvision import transforms
from transformers import ViTImageProcessor

from medic_hf.labels import SPLIT_FILES, TASK_LABELS, TASKS, TSV_COLUMNS
from medic_hf.prepare import DEFAULT_MAX_SHORT_SIDE, prepare_dataset
from medic_hf.transforms import MedicTransform


SIZES = [(500, 333), (640, 640), (720, 960), (1024, 768), (1080, 1080), (1200, 900), (1600, 1200), (2048, 1536)]


def make_photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Draw a photo-like scene: a sky-to-ground gradient, shapes with soft edges, and sensor noise."""
    width, height = size
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(20, 200, 3)
    pixels = (top * (1 - rows) + bottom * rows) * np.ones((1, width, 1), dtype=np.float32)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 20, width // 3), rng.integers(height // 20, height // 3)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape([x, y, x + w, y + h], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=1.5))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def make_medic_folder(root: Path, num_images: int, seed: int) -> list[Path]:
    """Write `num_images` JPEGs and a MEDIC layout where all of them are in the train split."""
    rng = np.random.default_rng(seed)
    paths, lines = [], ["\t".join(TSV_COLUMNS)]
    for index in range(num_images):
        width, height = SIZES[index % len(SIZES)]
        if rng.random() < 0.5:
            width, height = height, width
        path = root / "data" / f"photo_{index:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_photo(rng, (width, height)).save(path, "JPEG", quality=90)
        paths.append(path)
        labels = [TASK_LABELS[task][index % len(TASK_LABELS[task])] for task in TASKS]
        lines.append("\t".join([str(index), "benchmark", f"data/{path.name}", *labels]))
    (root / SPLIT_FILES["train"]).write_text("\n".join(lines) + "\n")
    for split in ("validation", "test"):
        (root / SPLIT_FILES[split]).write_text("\n".join(lines[:2]) + "\n")
    return paths


def baseline_images_per_second(paths: list[Path], repeats: int) -> float:
    transform = transforms.Compose(
        [
            transforms.Resize((256, 256)),
            transforms.RandomCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    start = time.perf_counter()
    for _ in range(repeats):
        for path in paths:
            with Image.open(path) as image:
                tensor = transform(image.convert("RGB"))
    assert tensor.shape == (3, 224, 224)
    return repeats * len(paths) / (time.perf_counter() - start)


def medic_hf_images_per_second(dataset: datasets.Dataset, repeats: int) -> float:
    processor = ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    dataset = dataset.cast_column("image", datasets.Image(decode=False))
    dataset.set_transform(MedicTransform(processor, TASKS, train=True))
    start = time.perf_counter()
    for _ in range(repeats):
        for index in range(0, len(dataset), 32):
            batch = dataset[index : index + 32]
    assert batch["pixel_values"][0].shape == (3, 224, 224)
    return repeats * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=240, help="Generated images (default: 240).")
    parser.add_argument("--repeats", type=int, default=2, help="Passes over the images per path (default: 2).")
    parser.add_argument(
        "--max_short_side", type=int, default=DEFAULT_MAX_SHORT_SIDE, help="Prepared image short side (default: 256)."
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as work_dir:
        work_dir = Path(work_dir)
        paths = make_medic_folder(work_dir / "MEDIC", args.num_images, args.seed)
        megapixels = sum(Image.open(p).width * Image.open(p).height for p in paths) / len(paths) / 1e6
        print(f"{len(paths)} generated JPEGs, {megapixels:.2f} megapixels on average, 1 thread")

        start = time.perf_counter()
        prepared = prepare_dataset(
            str(work_dir / "MEDIC"), work_dir / "prepared", max_short_side=args.max_short_side,
            cache_dir=str(work_dir / "cache"),
        )  # fmt: skip
        prepare_ms = 1000 * (time.perf_counter() - start) / len(paths)
        print(f"prepare (max_short_side={args.max_short_side}): {prepare_ms:.1f} ms per image, 1 process")

        dataset = datasets.load_dataset(str(prepared), split="train", cache_dir=str(work_dir / "cache"))
        baseline = baseline_images_per_second(paths, args.repeats)
        ours = medic_hf_images_per_second(dataset, args.repeats)

    print(f"(a) baseline, full decode + resize 256x256 + crop 224 + flip: {baseline:8.1f} images/s/core")
    print(f"(b) medic_hf, prepared folder + MedicTransform:                {ours:8.1f} images/s/core")
    print(f"ratio (b)/(a): {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
