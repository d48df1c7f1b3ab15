"""Fixtures: MEDIC-format folders with generated JPEG files, and tiny backbones saved to disk."""

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medic_hf.labels import SPLIT_FILES, TASK_LABELS, TSV_COLUMNS


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_PHOTOS = Path(os.environ.get("MEDIC_REAL_PHOTOS", REPO_ROOT.parent / "shared" / "real-photos"))


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> None:
    """Write a small photo-like JPEG: a colour gradient plus noise, different for each seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    base = rng.uniform(0, 255, size=(1, 1, 3)).astype(np.float32)
    pixels = (0.5 * gradient + 0.5 * base + rng.normal(0, 20, size=(height, width, 3))).clip(0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(path, "JPEG", quality=85)


def random_row(index: int, rng: random.Random, split: str) -> dict:
    row = {
        "image_id": str(917791044158185473 + index),
        "event_name": rng.choice(["ecuador_earthquake_2016", "hurricane_harvey_2017"]),
        "image_path": f"data/generated/{split}/image_{index:04d}.jpg",
    }
    for task, names in TASK_LABELS.items():
        row[task] = rng.choice(names)
    return row


def write_tsv(path: Path, rows: list[dict], columns: list[str] = TSV_COLUMNS, line_ending: str = "\n") -> None:
    lines = ["\t".join(columns)] + ["\t".join(str(row.get(column, "")) for column in columns) for row in rows]
    path.write_bytes((line_ending.join(lines) + line_ending).encode("utf-8"))


def build_medic_folder(root: Path, sizes: dict[str, int], seed: int = 0) -> dict[str, list[dict]]:
    """Write a MEDIC-format folder: three TSV files and one real JPEG per row. Returns the rows per split."""
    rng = random.Random(seed)
    rows_by_split = {}
    index = 0
    for split, size in sizes.items():
        rows = []
        for _ in range(size):
            row = random_row(index, rng, split)
            write_jpeg(root / row["image_path"], seed=index)
            rows.append(row)
            index += 1
        write_tsv(root / SPLIT_FILES[split], rows)
        rows_by_split[split] = rows
    return rows_by_split


@pytest.fixture
def medic_folder(tmp_path):
    """A small MEDIC-format folder: 12 train, 6 validation and 6 test images."""
    root = tmp_path / "MEDIC"
    rows = build_medic_folder(root, {"train": 12, "validation": 6, "test": 6})
    return root, rows


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "hf_cache")


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory):
    """Tiny random ViT and ResNet backbones saved with their image processors, as `medic-hf train` reads them."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel, ViTConfig, ViTImageProcessor, ViTModel

    root = tmp_path_factory.mktemp("backbones")
    vit_config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    ViTModel(vit_config, add_pooling_layer=False).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")

    resnet_config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(resnet_config).save_pretrained(root / "resnet")
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(root / "resnet")
    return {"vit": str(root / "vit"), "resnet": str(root / "resnet")}


@pytest.fixture
def real_photos():
    if not (REAL_PHOTOS / SPLIT_FILES["train"]).is_file():
        pytest.skip(
            f"real-photo collection not found at {REAL_PHOTOS}; set MEDIC_REAL_PHOTOS to a MEDIC-format folder to run"
        )
    return REAL_PHOTOS
