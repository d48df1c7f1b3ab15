"""Bad and unusual input files: each case is a real file, loaded the way users load MEDIC."""

import json
import logging

import numpy as np
import pytest
from conftest import build_medic_folder, write_tsv
from PIL import Image
from transformers import ViTImageProcessor

from medic_hf import MedicDataError, load_medic
from medic_hf.images import open_image, to_rgb
from medic_hf.labels import SPLIT_FILES, TSV_COLUMNS
from medic_hf.transforms import MedicTransform


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "MEDIC"
    rows = build_medic_folder(root, {"train": 8, "validation": 3, "test": 3}, seed=31)
    return root, rows


def rewrite(root, split, rows, **kwargs):
    write_tsv(root / SPLIT_FILES[split], rows, **kwargs)


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# Unreadable images: stop by default, skip and count with on_bad_row="skip".


@pytest.mark.parametrize(
    "damage, error_name",
    [
        ("zero-byte", "UnidentifiedImageError"),
        ("html", "UnidentifiedImageError"),
        ("truncated", "OSError"),
    ],
)
def test_unreadable_image_stops_load(folder, cache_dir, damage, error_name):
    root, rows = folder
    path = root / rows["train"][4]["image_path"]
    if damage == "zero-byte":
        path.write_bytes(b"")
    elif damage == "html":
        path.write_text("<!DOCTYPE html><html><body>Rate limit exceeded</body></html>")
    else:
        truncate(path)

    with pytest.raises(MedicDataError) as error:
        load_medic(str(root), cache_dir=cache_dir)

    message = str(error.value)
    assert "MEDIC_train.tsv, line 6" in message
    assert rows["train"][4]["image_path"] in message
    assert error_name in message
    assert "on_bad_row='skip'" in message


def test_decompression_bomb_is_rejected(folder, cache_dir, monkeypatch):
    root, rows = folder
    # Pillow's limit stays on; a lower limit lets a small real file exceed twice it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    Image.new("RGB", (100, 100), "red").save(root / rows["test"][0]["image_path"], "JPEG")
    for row in rows["train"] + rows["validation"] + rows["test"][1:]:
        Image.new("RGB", (10, 10), "blue").save(root / row["image_path"], "JPEG")

    with pytest.raises(MedicDataError, match="DecompressionBombError"):
        load_medic(str(root), cache_dir=cache_dir)


def test_skip_mode_counts_and_reports(folder, cache_dir, tmp_path, caplog):
    root, rows = folder
    (root / rows["train"][0]["image_path"]).unlink()
    (root / rows["train"][1]["image_path"]).write_bytes(b"")
    truncate(root / rows["train"][2]["image_path"])
    rows["train"][3]["humanitarian"] = "Not_Humanitarian "
    rewrite(root, "train", rows["train"])
    report = tmp_path / "report" / "skipped.jsonl"

    with caplog.at_level(logging.WARNING):
        medic = load_medic(str(root), on_bad_row="skip", bad_rows_report=str(report), cache_dir=cache_dir)

    assert medic["train"]["image_id"] == [row["image_id"] for row in rows["train"][4:]]
    assert medic["validation"].num_rows == 3
    skipped = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(row["line"], row["reason"]) for row in skipped] == [
        (2, "missing image"),
        (5, "unknown label"),
        (3, "unreadable image"),
        (4, "unreadable image"),
    ]
    assert skipped[1]["column"] == "humanitarian"
    assert skipped[1]["value"] == "Not_Humanitarian "
    assert all(row["file"].endswith("MEDIC_train.tsv") for row in skipped)
    assert "Skipped 4 bad row(s) across all splits: missing image: 1, unknown label: 1, unreadable image: 2" in caplog.text

    # A second load reuses the cache and still reports what was skipped.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_medic(str(root), on_bad_row="skip", cache_dir=cache_dir)
    assert again["train"].num_rows == 4
    assert "Skipped 4 bad row(s)" in caplog.text


@pytest.mark.parametrize("bad_path", ["/etc/hostname", "../../outside.jpg"])
def test_unsafe_path_raises_even_when_skipping(folder, cache_dir, bad_path):
    root, rows = folder
    rows["validation"][0]["image_path"] = bad_path
    rewrite(root, "validation", rows["validation"])

    with pytest.raises(MedicDataError, match="MEDIC_dev.tsv, line 2: column `image_path`"):
        load_medic(str(root), on_bad_row="skip", cache_dir=cache_dir)


def test_unsafe_path_in_archive_raises(folder, tmp_path, cache_dir):
    import tarfile

    root, rows = folder
    rows["test"][1]["image_path"] = "data/../../escape.jpg"
    rewrite(root, "test", rows["test"])
    archive = tmp_path / "MEDIC.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="MEDIC")

    with pytest.raises(MedicDataError, match="outside the dataset folder"):
        load_medic(str(archive), on_bad_row="skip", cache_dir=cache_dir)


def test_invalid_bad_row_policy(folder, cache_dir):
    root, _ = folder

    with pytest.raises(ValueError, match="Invalid `on_bad_row='ignore'`"):
        load_medic(str(root), on_bad_row="ignore", cache_dir=cache_dir)


# TSV layout.


def test_extra_column_is_ignored_with_warning(folder, cache_dir, caplog):
    root, rows = folder
    for row in rows["train"]:
        row["annotator"] = "crowd"
    rewrite(root, "train", rows["train"], columns=[*TSV_COLUMNS, "annotator"])

    with caplog.at_level(logging.WARNING):
        train = load_medic(str(root), split="train", cache_dir=cache_dir)

    assert "annotator" not in train.column_names
    assert train.num_rows == 8
    assert "ignoring column(s) that MEDIC does not define: annotator" in caplog.text


def test_missing_column_raises_even_when_skipping(folder, cache_dir):
    root, rows = folder
    rewrite(root, "train", rows["train"], columns=[c for c in TSV_COLUMNS if c != "disaster_types"])

    with pytest.raises(MedicDataError, match=r"missing column\(s\) disaster_types"):
        load_medic(str(root), on_bad_row="skip", cache_dir=cache_dir)


def test_quoted_fields(folder, cache_dir):
    root, rows = folder
    rows["train"][0]["event_name"] = '"ecuador, ""quake"" 2016"'
    rewrite(root, "train", rows["train"])

    train = load_medic(str(root), split="train", cache_dir=cache_dir)

    assert train[0]["event_name"] == 'ecuador, "quake" 2016'


def test_duplicate_paths_warn_with_counts(folder, cache_dir, caplog):
    root, rows = folder
    rows["train"][1]["image_path"] = rows["train"][0]["image_path"]
    rows["train"][2]["image_path"] = rows["train"][0]["image_path"]
    rows["test"][0]["image_path"] = rows["train"][5]["image_path"]
    rewrite(root, "train", rows["train"])
    rewrite(root, "test", rows["test"])

    with caplog.at_level(logging.WARNING):
        medic = load_medic(str(root), cache_dir=cache_dir)

    assert medic["train"].num_rows == 8
    assert "1 image path(s) appear more than once in the train split (2 extra rows)" in caplog.text
    assert "1 image path(s) appear in both the train and test splits" in caplog.text
    assert rows["train"][5]["image_path"] in caplog.text


# Image modes and orientation: every image reaches the model as upright 3-channel RGB.


def write_image(path, image, **save_kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_kwargs)


def transformed_pixels(dataset):
    """Run the evaluation transform of a tiny processor (no resize of 8x8, no normalisation) on a split."""
    processor = ViTImageProcessor(size={"height": 8, "width": 8}, do_normalize=False, resample=0)
    dataset = dataset.cast_column("image", __import__("datasets").Image(decode=False))
    dataset.set_transform(MedicTransform(processor, ["informative"], train=False))
    return [np.asarray(example["pixel_values"]) for example in dataset]


def test_modes_become_rgb(tmp_path, cache_dir):
    root = tmp_path / "MEDIC"
    rows = build_medic_folder(root, {"train": 1, "validation": 1, "test": 1}, seed=41)
    cases = {
        "cmyk.jpg": (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), {"format": "JPEG"}, (255, 0, 0)),
        "gray.png": (Image.new("L", (8, 8), 128), {}, (128, 128, 128)),
        "sixteen.png": (Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16)), {}, (127, 127, 127)),
        "palette.png": (None, {}, (255, 255, 255)),
        "la.png": (Image.new("LA", (8, 8), (0, 0)), {}, (255, 255, 255)),
        "rgba.png": (Image.new("RGBA", (8, 8), (0, 0, 255, 0)), {}, (255, 255, 255)),
    }
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    cases["palette.png"] = (palette, {"transparency": 0}, (255, 255, 255))
    test_rows = []
    for index, (name, (image, save_kwargs, _)) in enumerate(cases.items()):
        write_image(root / "data" / name, image, **save_kwargs)
        test_rows.append({**rows["test"][0], "image_id": str(index), "image_path": f"data/{name}"})
    write_tsv(root / SPLIT_FILES["test"], test_rows)

    test = load_medic(str(root), split="test", cache_dir=cache_dir)
    pixels = transformed_pixels(test)

    for (name, (_, _, expected)), values in zip(cases.items(), pixels):
        assert values.shape == (3, 8, 8), name
        centre = tuple(round(float(v) * 255) for v in values[:, 4, 4])
        assert all(abs(a - b) <= 3 for a, b in zip(centre, expected)), (name, centre, expected)


def test_exif_rotated_photo_loads_upright(tmp_path, cache_dir):
    root = tmp_path / "MEDIC"
    rows = build_medic_folder(root, {"train": 1, "validation": 1, "test": 1}, seed=43)
    landscape = Image.new("RGB", (60, 40), "green")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned 90 degrees, so viewers rotate the pixels.
    write_image(root / rows["test"][0]["image_path"], landscape, format="JPEG", exif=exif)

    test = load_medic(str(root), split="test", cache_dir=cache_dir)

    assert test[0]["image"].size == (40, 60)
    assert open_image(root / rows["test"][0]["image_path"]).size == (40, 60)


@pytest.mark.parametrize("extension", ["gif", "webp"])
def test_animated_image_uses_first_frame(tmp_path, extension):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue", "blue")]
    path = tmp_path / f"animated.{extension}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)

    image = open_image(path)

    assert image.mode == "RGB"
    red, green, blue = image.getpixel((8, 8))
    assert red > 200
    assert green < 40
    assert blue < 40


def test_to_rgb_composes_transparency_on_white():
    half_transparent = Image.new("RGBA", (2, 2), (0, 0, 0, 128))

    assert to_rgb(half_transparent).getpixel((0, 0)) == (127, 127, 127)


def test_symlinked_data_folder_is_followed(tmp_path, cache_dir):
    # The images live on "another disk"; the dataset folder links to them.
    rows = build_medic_folder(tmp_path / "disk" / "MEDIC", {"train": 2, "validation": 1, "test": 1}, seed=71)
    root = tmp_path / "MEDIC"
    root.mkdir()
    (root / "data").symlink_to(tmp_path / "disk" / "MEDIC" / "data", target_is_directory=True)
    for name in SPLIT_FILES.values():
        (root / name).write_bytes((tmp_path / "disk" / "MEDIC" / name).read_bytes())

    medic = load_medic(str(root), cache_dir=cache_dir)

    assert medic["train"]["image_id"] == [row["image_id"] for row in rows["train"]]
    assert medic["train"][0]["image"].size == (48, 40)


def test_duplicate_warning_repeats_on_cached_load(folder, cache_dir, caplog):
    root, rows = folder
    rows["test"][0]["image_path"] = rows["train"][5]["image_path"]
    rewrite(root, "test", rows["test"])
    load_medic(str(root), cache_dir=cache_dir)

    with caplog.at_level(logging.WARNING):
        load_medic(str(root), cache_dir=cache_dir)

    assert "1 image path(s) appear in both the train and test splits" in caplog.text
