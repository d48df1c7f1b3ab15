"""Every shape MEDIC comes in loads to the same canonical splits, columns and class indices."""

import functools
import http.server
import tarfile
import threading

import datasets
import pytest
from conftest import build_medic_folder, write_tsv
from PIL import Image

from medic_hf import MedicDataError, load_medic
from medic_hf.labels import SPLIT_FILES, TASK_LABELS, TASKS
from medic_hf.loading import source_kind


# The Hub copy (QCRI/MEDIC) numbers disaster types in this order, which is not alphabetical.
HUB_DISASTER_TYPES = ["earthquake", "flood", "hurricane", "fire", "landslide", "not_disaster", "other_disaster"]


def canonical_rows(medic, split):
    """Rows as comparable tuples: ids, path, every label, and the decoded image's size."""
    return [
        (row["image_id"], row["image_path"], *(row[task] for task in TASKS), row["image"].size)
        for row in medic[split]
    ]


@pytest.fixture
def small_folder(tmp_path):
    root = tmp_path / "MEDIC"
    rows = build_medic_folder(root, {"train": 6, "validation": 3, "test": 3}, seed=21)
    rows["train"][2]["informative"] = ""
    write_tsv(root / SPLIT_FILES["train"], rows["train"])
    return root, rows


def make_archive(folder, archive, arcname="MEDIC"):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


def hub_order_copy(medic: datasets.DatasetDict, folder):
    """Write the data as parquet the way the Hub copy stores it: split `dev`, its own class order."""
    hub_features = medic["train"].features.copy()
    hub_features["disaster_types"] = datasets.ClassLabel(names=HUB_DISASTER_TYPES)
    hub_features["informative"] = datasets.Value("string")
    canonical = TASK_LABELS["disaster_types"]
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        rows = medic[split].to_list()
        for row in rows:
            label = row["disaster_types"]
            row["disaster_types"] = -1 if label == -1 else HUB_DISASTER_TYPES.index(canonical[label])
            row["informative"] = "" if row["informative"] == -1 else TASK_LABELS["informative"][row["informative"]]
        copy = datasets.Dataset.from_list(rows, features=hub_features)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        copy.to_parquet(str(folder / "data" / f"{name}-00000-of-00001.parquet"))
    return folder


def test_source_kinds(small_folder, tmp_path):
    root, _ = small_folder
    archive = make_archive(root, tmp_path / "MEDIC.tar.gz")

    assert source_kind(None) == "url"
    assert source_kind("https://example.org/MEDIC.tar.gz") == "url"
    assert source_kind(str(archive)) == "archive"
    assert source_kind(str(root)) == "tsv folder"
    assert source_kind(str(tmp_path)) == "tsv folder"
    assert source_kind("QCRI/MEDIC") == "hub"
    with pytest.raises(FileNotFoundError, match="not an existing folder or file, a URL or a Hub repo id"):
        source_kind(str(tmp_path / "missing" / "folder"))


def test_archive_matches_folder(small_folder, tmp_path, cache_dir):
    root, _ = small_folder
    archive = make_archive(root, tmp_path / "MEDIC.tar.gz", arcname="release/MEDIC")

    from_folder = load_medic(str(root), cache_dir=cache_dir)
    from_archive = load_medic(str(archive), cache_dir=cache_dir)

    for split in ("train", "validation", "test"):
        assert sorted(canonical_rows(from_archive, split)) == sorted(canonical_rows(from_folder, split))
    assert from_archive["train"].features == from_folder["train"].features


def test_archive_is_not_extracted(small_folder, tmp_path, cache_dir):
    root, _ = small_folder
    archive = make_archive(root, tmp_path / "MEDIC.tar.gz")

    load_medic(str(archive), cache_dir=cache_dir)

    extracted = [path for path in (tmp_path / "hf_cache").rglob("*.jpg")]
    assert extracted == []


def test_archive_from_url(small_folder, tmp_path, cache_dir):
    root, rows = small_folder
    (tmp_path / "served").mkdir()
    make_archive(root, tmp_path / "served" / "MEDIC.tar.gz")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/MEDIC.tar.gz"
        medic = load_medic(url, cache_dir=cache_dir)
    finally:
        server.shutdown()

    assert medic["test"].num_rows == len(rows["test"])
    assert sorted(medic["test"]["image_id"]) == sorted(row["image_id"] for row in rows["test"])


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_streaming_yields_same_examples(small_folder, tmp_path, cache_dir, kind):
    root, _ = small_folder
    source = str(root) if kind == "folder" else str(make_archive(root, tmp_path / "MEDIC.tar.gz"))

    regular = load_medic(source, cache_dir=cache_dir)
    streamed = load_medic(source, streaming=True, cache_dir=cache_dir)

    assert isinstance(streamed, datasets.IterableDatasetDict)
    for split in ("train", "validation", "test"):
        streamed_rows = [
            (row["image_id"], row["image_path"], *(row[task] for task in TASKS), row["image"].size)
            for row in streamed[split]
        ]
        assert streamed_rows == canonical_rows(regular, split)


@pytest.mark.parametrize("task", TASKS)
def test_task_config_has_label_column(small_folder, cache_dir, task):
    root, rows = small_folder

    train = load_medic(str(root), name=task, split="train", cache_dir=cache_dir)

    labelled = [row for row in rows["train"] if row[task] != ""]
    assert train.column_names == ["image_id", "event_name", "image_path", "image", "label"]
    assert train.features["label"] == datasets.ClassLabel(names=TASK_LABELS[task])
    assert train["label"] == [TASK_LABELS[task].index(row[task]) for row in labelled]
    assert train["image_id"] == [row["image_id"] for row in labelled]


def test_task_config_streaming(small_folder, cache_dir):
    root, rows = small_folder

    streamed = load_medic(str(root), name="informative", split="train", streaming=True, cache_dir=cache_dir)

    assert [row["label"] for row in streamed] == [
        TASK_LABELS["informative"].index(row["informative"]) for row in rows["train"] if row["informative"]
    ]


def test_invalid_config_name(small_folder, cache_dir):
    root, _ = small_folder

    with pytest.raises(ValueError, match="Invalid `name='severity'`"):
        load_medic(str(root), name="severity", cache_dir=cache_dir)


def test_hub_order_parquet_is_mapped_by_name(small_folder, tmp_path, cache_dir):
    root, _ = small_folder
    canonical = load_medic(str(root), cache_dir=cache_dir)
    copy = hub_order_copy(canonical, tmp_path / "hub_copy")

    raw = datasets.load_dataset(str(copy), cache_dir=cache_dir)
    aligned = load_medic(str(copy), cache_dir=cache_dir)

    assert sorted(raw) == ["dev", "test", "train"]
    assert list(aligned) == ["train", "validation", "test"]
    assert aligned["train"].features == canonical["train"].features
    for split in ("train", "validation", "test"):
        assert canonical_rows(aligned, split) == canonical_rows(canonical, split)
    # The raw copy's index 1 is "flood"; aligned, "flood" is index 2.
    flood_rows = [i for i, label in enumerate(raw["train"]["disaster_types"]) if label == 1]
    assert all(aligned["train"][i]["disaster_types"] == 2 for i in flood_rows)


def test_unknown_class_name_in_copy_is_an_error(small_folder, tmp_path, cache_dir):
    root, _ = small_folder
    canonical = load_medic(str(root), split="train", cache_dir=cache_dir)
    features = canonical.features.copy()
    features["damage_severity"] = datasets.ClassLabel(names=["little_or_none", "mild", "catastrophic"])
    (tmp_path / "bad_copy" / "data").mkdir(parents=True)
    rows = canonical.to_list()
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "bad_copy/data/train-0.parquet"))

    with pytest.raises(MedicDataError, match=r"column `damage_severity` has class name\(s\) 'catastrophic'"):
        load_medic(str(tmp_path / "bad_copy"), cache_dir=cache_dir)


def test_integer_labels_without_names_are_an_error(small_folder, tmp_path, cache_dir):
    root, _ = small_folder
    canonical = load_medic(str(root), split="train", cache_dir=cache_dir)
    plain = canonical.cast_column("humanitarian", datasets.Value("int64"))
    (tmp_path / "plain" / "data").mkdir(parents=True)
    plain.to_parquet(str(tmp_path / "plain/data/train-0.parquet"))

    with pytest.raises(MedicDataError, match="integers without class names"):
        load_medic(str(tmp_path / "plain"), cache_dir=cache_dir)


def test_image_column_decodes_from_parquet(small_folder, tmp_path, cache_dir):
    root, _ = small_folder
    canonical = load_medic(str(root), cache_dir=cache_dir)
    copy = hub_order_copy(canonical, tmp_path / "hub_copy")

    aligned = load_medic(str(copy), split="test", cache_dir=cache_dir)

    assert isinstance(aligned[0]["image"], Image.Image)
    assert aligned[0]["image"].size == (48, 40)


def test_hub_repo_id_goes_through_load_dataset(small_folder, tmp_path, cache_dir, monkeypatch):
    root, _ = small_folder
    canonical = load_medic(str(root), cache_dir=cache_dir)
    copy = hub_order_copy(canonical, tmp_path / "hub_copy")
    real_load_dataset = datasets.load_dataset
    requests = []

    def offline_hub(path, **kwargs):
        # The network boundary: serve the Hub request from a local copy laid out like QCRI/MEDIC.
        requests.append((path, kwargs))
        return real_load_dataset(str(copy), streaming=kwargs["streaming"], cache_dir=kwargs["cache_dir"])

    monkeypatch.setattr(datasets, "load_dataset", offline_hub)
    medic = load_medic("QCRI/MEDIC", revision="refs/convert/parquet", token=False, cache_dir=cache_dir)

    assert requests[0][0] == "QCRI/MEDIC"
    assert requests[0][1]["revision"] == "refs/convert/parquet"
    assert requests[0][1]["token"] is False
    assert list(medic) == ["train", "validation", "test"]
    assert canonical_rows(medic, "validation") == canonical_rows(canonical, "validation")
