"""`medic-hf prepare` and `push-dataset`: a parquet folder that `datasets.load_dataset` reads as MEDIC."""

import io
import json

import datasets
import pytest
from conftest import build_medic_folder, write_jpeg, write_tsv
from huggingface_hub import DatasetCard, HfApi
from PIL import Image
from test_training import run_cli

from medic_hf import MedicUsageError, load_medic
from medic_hf import prepare as prepare_module
from medic_hf.labels import SPLIT_FILES, TASK_LABELS, TASKS
from medic_hf.prepare import prepare_dataset, push_dataset


@pytest.fixture
def source(tmp_path):
    """A MEDIC folder with photo-sized images, missing labels, and a rotated photo."""
    root = tmp_path / "MEDIC"
    rows = build_medic_folder(root, {"train": 6, "validation": 3, "test": 3}, seed=51)
    write_jpeg(root / rows["train"][0]["image_path"], seed=1, size=(900, 600))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (600, 300), "green").save(root / rows["train"][1]["image_path"], "JPEG", exif=exif)
    rows["train"][2]["humanitarian"] = ""
    rows["test"][0]["damage_severity"] = ""
    write_tsv(root / SPLIT_FILES["train"], rows["train"])
    write_tsv(root / SPLIT_FILES["test"], rows["test"])
    return root, rows


def test_prepared_folder_loads_with_plain_datasets(source, tmp_path, cache_dir):
    root, rows = source
    output = prepare_dataset(str(root), tmp_path / "prepared", max_short_side=128, cache_dir=cache_dir)

    prepared = datasets.load_dataset(str(output), cache_dir=cache_dir)
    original = load_medic(str(root), cache_dir=cache_dir)

    assert sorted(p.name for p in (output / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert list(prepared) == ["train", "validation", "test"]
    for split in prepared:
        assert prepared[split].features == original[split].features
        for task in TASKS:
            assert prepared[split][task] == original[split][task]
        assert prepared[split]["image_id"] == original[split]["image_id"]
    large = prepared["train"][0]["image"]
    assert large.size == (192, 128)
    assert large.mode == "RGB"
    assert large.format == "JPEG"
    # The rotated photo is stored upright, so no reader needs to apply EXIF orientation.
    assert prepared["train"][1]["image"].size == (128, 256)
    assert original["train"][1]["image"].size == (300, 600)
    assert not (tmp_path / "prepared.incomplete").exists()


def test_task_config_of_prepared_folder(source, tmp_path, cache_dir):
    root, rows = source
    output = prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    humanitarian = datasets.load_dataset(str(output), "humanitarian", split="train", cache_dir=cache_dir)
    via_medic = load_medic(str(output), name="humanitarian", split="train", cache_dir=cache_dir)

    labelled = [row for row in rows["train"] if row["humanitarian"]]
    assert humanitarian.column_names == ["image_id", "event_name", "image_path", "image", "humanitarian"]
    assert humanitarian["humanitarian"] == [TASK_LABELS["humanitarian"].index(row["humanitarian"]) for row in labelled]
    assert via_medic["label"] == humanitarian["humanitarian"]


def test_keep_original_stores_bytes_unchanged(source, tmp_path, cache_dir):
    root, rows = source
    output = prepare_dataset(str(root), tmp_path / "prepared", max_short_side=None, cache_dir=cache_dir)

    stored = datasets.load_dataset(str(output), split="train", cache_dir=cache_dir)
    stored = stored.cast_column("image", datasets.Image(decode=False))

    for row, example in zip(rows["train"], stored):
        assert example["image"]["bytes"] == (root / row["image_path"]).read_bytes()


def test_dataset_card_yaml_and_prose(source, tmp_path, cache_dir):
    root, rows = source
    output = prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    card = DatasetCard.load(output / "README.md")
    data = card.data.to_dict()

    assert data["license"] == "cc-by-nc-sa-4.0"
    assert data["task_categories"] == ["image-classification"]
    assert [config["config_name"] for config in data["configs"]] == ["all", *TASKS]
    assert data["configs"][0]["default"] is True
    splits = {split["name"]: split["num_examples"] for split in data["dataset_info"]["splits"]}
    assert splits == {"train": 6, "validation": 3, "test": 3}
    feature_names = [feature["name"] for feature in data["dataset_info"]["features"]]
    assert feature_names == ["image_id", "event_name", "image_path", "image", *TASKS]
    humanitarian = next(f for f in data["dataset_info"]["features"] if f["name"] == "humanitarian")
    assert list(humanitarian["dtype"]["class_label"]["names"].values()) == TASK_LABELS["humanitarian"]
    # Class counts per split, including the missing labels.
    missing_row = next(line for line in card.text.splitlines() if line.startswith("| (no label) |"))
    assert missing_row in card.text
    assert "| little_or_none |" in card.text
    assert "shorter side at most 256 pixels" in card.text
    assert "@article{alam2022medic" in card.text
    assert "check the terms of any images in it that do not come from MEDIC" in card.text


def test_interrupted_prepare_leaves_no_finished_folder(source, tmp_path, cache_dir, monkeypatch):
    root, _ = source
    real_write_shards = prepare_module.write_shards

    def fail_on_test_split(dataset, data_dir, split, max_shard_mb):
        if split == "test":
            raise KeyboardInterrupt("simulated interruption")
        real_write_shards(dataset, data_dir, split, max_shard_mb)

    monkeypatch.setattr(prepare_module, "write_shards", fail_on_test_split)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    assert not (tmp_path / "prepared").exists()
    assert (tmp_path / "prepared.incomplete" / "data" / "train-00000-of-00001.parquet").is_file()
    assert not (tmp_path / "prepared.incomplete" / "README.md").exists()

    monkeypatch.setattr(prepare_module, "write_shards", real_write_shards)
    output = prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    assert (output / "README.md").is_file()
    assert not (tmp_path / "prepared.incomplete").exists()
    assert datasets.load_dataset(str(output), split="test", cache_dir=cache_dir).num_rows == 3


def test_existing_output_needs_overwrite(source, tmp_path, cache_dir):
    root, _ = source
    prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    with pytest.raises(MedicUsageError, match="already exists. Choose another folder or pass `--overwrite`"):
        prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)
    prepare_dataset(str(root), tmp_path / "prepared", overwrite=True, max_short_side=64, cache_dir=cache_dir)

    assert "at most 64 pixels" in (tmp_path / "prepared" / "README.md").read_text()


def test_skipped_rows_listed_in_folder(source, tmp_path, cache_dir):
    root, rows = source
    (root / rows["validation"][1]["image_path"]).write_bytes(b"not an image")

    output = prepare_dataset(str(root), tmp_path / "prepared", on_bad_row="skip", cache_dir=cache_dir)

    skipped = [json.loads(line) for line in (output / "skipped_rows.jsonl").read_text().splitlines()]
    assert [(row["line"], row["reason"]) for row in skipped] == [(3, "unreadable image")]
    assert "1 row(s) of the source were skipped as bad rows (unreadable image: 1)" in (output / "README.md").read_text()
    assert datasets.load_dataset(str(output), split="validation", cache_dir=cache_dir).num_rows == 2


def test_prepare_command_with_workers(source, tmp_path):
    root, _ = source

    result = run_cli(
        "prepare", root, tmp_path / "prepared", "--num_proc", "2", "--max_short_side", "96",
        "--cache_dir", tmp_path / "cache",
    )  # fmt: skip

    assert f"Prepared MEDIC in {tmp_path / 'prepared'}" in result.stdout
    train = datasets.load_dataset(str(tmp_path / "prepared"), split="train", cache_dir=str(tmp_path / "cache2"))
    assert min(train[0]["image"].size) == 96


def test_train_command_reads_prepared_folder(source, tmp_path, tiny_backbones, cache_dir):
    root, _ = source
    output = prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    run_cli(
        "train", "--source", output, "--backbone", tiny_backbones["vit"], "--output_dir", tmp_path / "model",
        "--dataset_cache_dir", tmp_path / "cache", "--num_train_epochs", "1", "--per_device_train_batch_size", "3",
        "--use_cpu", "True",
    )  # fmt: skip

    metrics = json.loads((tmp_path / "model" / "medic_metrics.json").read_text())
    assert metrics["test"]["tasks"]["damage_severity"]["support"] == 2
    assert metrics["test"]["tasks"]["informative"]["support"] == 3


class RecordingHub:
    """Stands in for the Hub's HTTP API: records what `HfApi` was asked to do."""

    def __init__(self):
        self.calls = []

    def create_repo(self, api, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        from huggingface_hub import RepoUrl

        return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def create_branch(self, api, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, api, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return "commit"


@pytest.fixture
def hub(monkeypatch):
    recorder = RecordingHub()
    for name in ("create_repo", "create_branch", "upload_folder"):
        method = getattr(recorder, name)
        monkeypatch.setattr(HfApi, name, lambda api, *args, _method=method, **kwargs: _method(api, *args, **kwargs))
    return recorder


def test_push_dataset_uploads_folder(source, tmp_path, cache_dir, hub):
    root, _ = source
    output = prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    push_dataset(output, "my-org/medic", private=True, revision="v1")

    assert [call[0] for call in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert hub.calls[1][2]["branch"] == "v1"
    upload = hub.calls[2][2]
    assert upload["repo_id"] == "my-org/medic"
    assert upload["repo_type"] == "dataset"
    assert upload["revision"] == "v1"
    assert upload["folder_path"] == str(output)


def test_push_dataset_rejects_incomplete_folder(tmp_path, hub):
    (tmp_path / "prepared.incomplete" / "data").mkdir(parents=True)

    with pytest.raises(MedicUsageError, match="not a finished `medic-hf prepare` folder"):
        push_dataset(tmp_path / "prepared.incomplete", "my-org/medic")
    assert hub.calls == []


def test_image_bytes_are_jpeg(source, tmp_path, cache_dir):
    root, _ = source
    output = prepare_dataset(str(root), tmp_path / "prepared", cache_dir=cache_dir)

    stored = datasets.load_dataset(str(output), split="validation", cache_dir=cache_dir)
    stored = stored.cast_column("image", datasets.Image(decode=False))

    for example in stored:
        assert example["image"]["bytes"][:3] == b"\xff\xd8\xff"
        assert Image.open(io.BytesIO(example["image"]["bytes"])).mode == "RGB"
