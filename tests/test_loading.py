import os
import tarfile

import pytest
from conftest import build_medic_folder, write_jpeg, write_tsv
from datasets import ClassLabel, Features, Image, Value

from medic_hf import MedicDataError, load_medic
from medic_hf.builder import MedicBuilder
from medic_hf.labels import SPLIT_FILES, TASK_LABELS, TSV_COLUMNS


EXPECTED_FEATURES = Features(
    {
        "image_id": Value("string"),
        "event_name": Value("string"),
        "image_path": Value("string"),
        "image": Image(),
        "damage_severity": ClassLabel(names=["little_or_none", "mild", "severe"]),
        "informative": ClassLabel(names=["informative", "not_informative"]),
        "humanitarian": ClassLabel(
            names=[
                "affected_injured_or_dead_people",
                "infrastructure_and_utility_damage",
                "not_humanitarian",
                "rescue_volunteering_or_donation_effort",
            ]
        ),
        "disaster_types": ClassLabel(
            names=["earthquake", "fire", "flood", "hurricane", "landslide", "not_disaster", "other_disaster"]
        ),
    }
)


def rewrite_split(root, split, rows, **kwargs):
    write_tsv(root / SPLIT_FILES[split], rows, **kwargs)


def test_splits_features_and_values(medic_folder, cache_dir):
    root, rows = medic_folder
    medic = load_medic(str(root), cache_dir=cache_dir)

    assert list(medic) == ["train", "validation", "test"]
    for split, split_rows in rows.items():
        assert medic[split].features == EXPECTED_FEATURES
        assert medic[split].num_rows == len(split_rows)
        assert medic[split]["image_path"] == [row["image_path"] for row in split_rows]
        for task, names in TASK_LABELS.items():
            assert medic[split][task] == [names.index(row[task]) for row in split_rows]
    first = medic["train"][0]
    assert first["image"].size == (48, 40)
    assert first["image"].mode == "RGB"


def test_tweet_id_keeps_all_digits(medic_folder, cache_dir):
    root, rows = medic_folder
    medic = load_medic(str(root), cache_dir=cache_dir)

    assert medic["train"][0]["image_id"] == "917791044158185473"
    assert rows["train"][0]["image_id"] == "917791044158185473"


def test_empty_label_is_minus_one(medic_folder, cache_dir):
    root, rows = medic_folder
    rows["train"][0]["humanitarian"] = ""
    rows["train"][1]["damage_severity"] = ""
    rewrite_split(root, "train", rows["train"])

    train = load_medic(str(root), split="train", cache_dir=cache_dir)

    assert train[0]["humanitarian"] == -1
    assert train[1]["damage_severity"] == -1
    assert train[0]["damage_severity"] == TASK_LABELS["damage_severity"].index(rows["train"][0]["damage_severity"])


def test_split_lacking_classes_keeps_full_class_list(medic_folder, cache_dir):
    root, rows = medic_folder
    # The test split holds only "severe" and "landslide": indices must still follow the full sorted lists.
    for row in rows["test"]:
        row["damage_severity"] = "severe"
        row["disaster_types"] = "landslide"
    rewrite_split(root, "test", rows["test"])

    test = load_medic(str(root), split="test", cache_dir=cache_dir)

    assert test.features["disaster_types"].names == TASK_LABELS["disaster_types"]
    assert set(test["damage_severity"]) == {2}
    assert set(test["disaster_types"]) == {4}


def test_tsv_files_found_at_any_depth(tmp_path, cache_dir):
    rows = build_medic_folder(tmp_path / "download" / "MEDIC", {"train": 3, "validation": 2, "test": 2})

    medic = load_medic(str(tmp_path / "download"), cache_dir=cache_dir)

    assert medic["train"]["image_path"] == [row["image_path"] for row in rows["train"]]


def test_archive_path_is_extracted(tmp_path, cache_dir):
    rows = build_medic_folder(tmp_path / "MEDIC", {"train": 3, "validation": 2, "test": 2})
    archive = tmp_path / "MEDIC.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "MEDIC", arcname="MEDIC")

    medic = load_medic(str(archive), cache_dir=cache_dir)

    assert medic["test"].num_rows == 2
    assert medic["test"]["image_id"] == [row["image_id"] for row in rows["test"]]
    assert medic["test"][0]["image"].size == (48, 40)


def test_crlf_and_byte_order_mark(medic_folder, cache_dir):
    root, rows = medic_folder
    path = root / SPLIT_FILES["train"]
    rewrite_split(root, "train", rows["train"], line_ending="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    train = load_medic(str(root), split="train", cache_dir=cache_dir)

    assert train.num_rows == len(rows["train"])
    assert train["image_id"][0] == rows["train"][0]["image_id"]
    assert train["disaster_types"][-1] == TASK_LABELS["disaster_types"].index(rows["train"][-1]["disaster_types"])


def test_edited_tsv_rebuilds_cache(medic_folder, cache_dir):
    root, rows = medic_folder
    assert load_medic(str(root), split="train", cache_dir=cache_dir).num_rows == 12

    rewrite_split(root, "train", rows["train"][:5])
    os.utime(root / SPLIT_FILES["train"], ns=(1, 1))

    assert load_medic(str(root), split="train", cache_dir=cache_dir).num_rows == 5


def test_real_photos_load(real_photos, cache_dir):
    medic = load_medic(str(real_photos), cache_dir=cache_dir)

    assert {split: medic[split].num_rows for split in medic} == {"train": 96, "validation": 23, "test": 27}
    assert medic["train"].features == EXPECTED_FEATURES
    for task, names in TASK_LABELS.items():
        present = set(medic["train"][task]) | set(medic["validation"][task]) | set(medic["test"][task])
        assert present <= set(range(len(names)))
    largest = max(medic["train"].select(range(10)), key=lambda row: row["image"].size[0])
    assert largest["image"].mode in ("RGB", "L", "CMYK", "RGBA", "P")


# Bad input: each case stops loading with a message naming the file, line, value and fix.


def test_unknown_label_names_file_line_value(medic_folder, cache_dir):
    root, rows = medic_folder
    rows["validation"][2]["disaster_types"] = "tsunami"
    rewrite_split(root, "validation", rows["validation"])

    with pytest.raises(MedicDataError) as error:
        load_medic(str(root), cache_dir=cache_dir)

    message = str(error.value)
    assert "MEDIC_dev.tsv, line 4" in message
    assert "`disaster_types`" in message
    assert "'tsunami'" in message
    assert "earthquake, fire, flood" in message


def test_label_with_stray_space_and_case_gets_hint(medic_folder, cache_dir):
    root, rows = medic_folder
    rows["train"][0]["informative"] = " Informative"
    rewrite_split(root, "train", rows["train"])

    with pytest.raises(MedicDataError, match="Did you mean 'informative'"):
        load_medic(str(root), cache_dir=cache_dir)


def test_missing_image_file(medic_folder, cache_dir):
    root, rows = medic_folder
    (root / rows["test"][3]["image_path"]).unlink()

    with pytest.raises(MedicDataError) as error:
        load_medic(str(root), cache_dir=cache_dir)

    message = str(error.value)
    assert "MEDIC_test.tsv, line 5" in message
    assert rows["test"][3]["image_path"] in message
    assert "image file not found" in message


@pytest.mark.parametrize(
    "content, case",
    [(b"", "zero-byte file"), (b"<html><body>404 Not Found</body></html>", "HTML page saved as .jpg")],
)
def test_unreadable_image(medic_folder, cache_dir, content, case):
    root, rows = medic_folder
    (root / rows["train"][5]["image_path"]).write_bytes(content)

    with pytest.raises(MedicDataError) as error:
        load_medic(str(root), cache_dir=cache_dir)

    message = str(error.value)
    assert "MEDIC_train.tsv, line 7" in message, case
    assert "cannot read the image" in message, case
    assert "UnidentifiedImageError" in message, case


@pytest.mark.parametrize("bad_path", ["../outside.jpg", "data/../../outside.jpg"])
def test_image_path_leaving_root(medic_folder, cache_dir, bad_path):
    root, rows = medic_folder
    write_jpeg(root.parent / "outside.jpg", seed=99)
    rows["train"][1]["image_path"] = bad_path
    rewrite_split(root, "train", rows["train"])

    with pytest.raises(MedicDataError) as error:
        load_medic(str(root), cache_dir=cache_dir)

    message = str(error.value)
    assert "MEDIC_train.tsv, line 3" in message
    assert "outside the dataset folder" in message
    assert repr(bad_path) in message


def test_absolute_image_path(medic_folder, cache_dir):
    root, rows = medic_folder
    rows["train"][0]["image_path"] = str(root / rows["train"][0]["image_path"])
    rewrite_split(root, "train", rows["train"])

    with pytest.raises(MedicDataError, match=r"line 2: column `image_path` is the absolute path"):
        load_medic(str(root), cache_dir=cache_dir)


def test_missing_column(medic_folder, cache_dir):
    root, rows = medic_folder
    columns = [column for column in TSV_COLUMNS if column != "informative"]
    rewrite_split(root, "test", rows["test"], columns=columns)

    with pytest.raises(MedicDataError, match=r"MEDIC_test.tsv, line 1: missing column\(s\) informative"):
        load_medic(str(root), cache_dir=cache_dir)


def test_row_with_too_few_fields(medic_folder, cache_dir):
    root, rows = medic_folder
    path = root / SPLIT_FILES["train"]
    lines = path.read_text().splitlines()
    lines[3] = "\t".join(lines[3].split("\t")[:4])
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(MedicDataError, match=r"MEDIC_train.tsv, line 4: expected 7 tab-separated fields .*, got 4\."):
        load_medic(str(root), cache_dir=cache_dir)


def test_missing_data_dir(tmp_path, cache_dir):
    with pytest.raises(FileNotFoundError, match="MEDIC data not found"):
        load_medic(str(tmp_path / "nowhere"), cache_dir=cache_dir)


def test_folder_without_tsv_files(tmp_path, cache_dir):
    (tmp_path / "empty").mkdir()

    with pytest.raises(FileNotFoundError, match="MEDIC_train.tsv, MEDIC_dev.tsv, MEDIC_test.tsv"):
        load_medic(str(tmp_path / "empty"), cache_dir=cache_dir)


def test_download_failure_says_to_pass_path(cache_dir):
    # Port 9 on loopback has no listener, so the download fails at once, as it does without a network.
    builder = MedicBuilder(archive_url="http://127.0.0.1:9/MEDIC.tar.gz", cache_dir=cache_dir)

    with pytest.raises(ConnectionError) as error:
        builder.download_and_prepare()

    message = str(error.value)
    assert "Could not download the MEDIC archive from http://127.0.0.1:9/MEDIC.tar.gz" in message
    assert "pass the path of the archive or of the extracted folder" in message
