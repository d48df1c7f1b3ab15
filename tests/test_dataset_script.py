"""The loading script for `datasets` < 4 reads the raw archive into the same examples as `load_medic`."""

import importlib.util
import sys
import tarfile

import pytest
from conftest import REPO_ROOT, build_medic_folder

from medic_hf import load_medic
from medic_hf.labels import TASKS


def load_script_builder():
    spec = importlib.util.spec_from_file_location("medic_script", REPO_ROOT / "dataset_script" / "medic.py")
    module = importlib.util.module_from_spec(spec)
    # datasets looks the builder's module up by name to hash its code, as it does for downloaded scripts.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.Medic


def test_script_matches_load_medic(tmp_path, cache_dir):
    rows = build_medic_folder(tmp_path / "MEDIC", {"train": 5, "validation": 2, "test": 3}, seed=61)
    archive = tmp_path / "MEDIC.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "MEDIC", arcname="MEDIC")
    builder = load_script_builder()(data_dir=str(archive), cache_dir=cache_dir)

    builder.download_and_prepare()
    from_script = builder.as_dataset()
    from_package = load_medic(str(archive), cache_dir=cache_dir)

    for split in ("train", "validation", "test"):
        assert from_script[split].features == from_package[split].features
        assert from_script[split].num_rows == len(rows[split])
        script_rows = sorted((r["image_id"], *(r[t] for t in TASKS), r["image"].size) for r in from_script[split])
        package_rows = sorted((r["image_id"], *(r[t] for t in TASKS), r["image"].size) for r in from_package[split])
        assert script_rows == package_rows


def test_script_rejects_escaping_path(tmp_path, cache_dir):
    rows = build_medic_folder(tmp_path / "MEDIC", {"train": 2, "validation": 1, "test": 1}, seed=62)
    tsv = tmp_path / "MEDIC" / "MEDIC_test.tsv"
    tsv.write_text(tsv.read_text().replace(rows["test"][0]["image_path"], "../../etc/passwd"))
    archive = tmp_path / "MEDIC.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "MEDIC", arcname="MEDIC")
    builder = load_script_builder()(data_dir=str(archive), cache_dir=cache_dir)

    with pytest.raises(Exception) as error:
        builder.download_and_prepare()

    assert "leaves the dataset folder" in str(error.value) + str(error.value.__cause__)
