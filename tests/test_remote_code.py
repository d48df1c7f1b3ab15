"""A saved model loads with `trust_remote_code=True` in a Python process where medic_hf is not importable."""

import json
import re
import shutil

import pytest
import torch
from conftest import write_jpeg
from isolated_python import run_without_medic_hf
from local_http import serve_folder
from safetensors.torch import load_file, save_file
from saved_models import IMAGE_SIZE, save_tiny_model
from transformers import AutoImageProcessor

from medic_hf import TASKS, MedicForMultiTaskImageClassification
from medic_hf.pipeline_medic import MedicImageClassificationPipeline


CODE_FILES = ["configuration_medic.py", "labels.py", "losses.py", "modeling_medic.py", "pipeline_medic.py"]

# Runs in the isolated process: loads the config, the model and the pipeline from the folder, and writes what
# they return for the parent process to compare.
ISOLATED_SCRIPT = """
import json
import sys
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, pipeline

folder, repo_id, inputs_file, logits_file, hub_logits_file, images_dir, url, results_file = sys.argv[1:]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
hub_model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
with torch.no_grad():
    save_file(model(**load_file(inputs_file)).task_logits(), logits_file)
    save_file(hub_model(**load_file(inputs_file)).task_logits(), hub_logits_file)

classifier = pipeline(model=folder, trust_remote_code=True)
task_classifier = pipeline("image-classification", model=folder, trust_remote_code=True)
paths = sorted(str(path) for path in Path(images_dir).glob("*.jpg"))
results = {
    "config_class": type(config).__name__,
    "model_module": type(model).__module__,
    "pipeline_class": type(classifier).__name__,
    "task_pipeline_class": type(task_classifier).__name__,
    "paths": classifier(paths, batch_size=2, top_k=2),
    "pil": classifier(Image.open(paths[0])),
    "url": task_classifier(url),
    "hub": pipeline(model=repo_id, trust_remote_code=True)(paths[0]),
}
Path(results_file).write_text(json.dumps(results))
"""


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("remote") / "medic-tiny", arch="vit", seed=4)


def test_save_pretrained_writes_code_and_auto_map(model_folder):
    config = json.loads((model_folder / "config.json").read_text())

    assert config["auto_map"] == {
        "AutoConfig": "configuration_medic.MedicConfig",
        "AutoModel": "modeling_medic.MedicForMultiTaskImageClassification",
    }
    assert config["custom_pipelines"]["image-classification"]["impl"] == (
        "pipeline_medic.MedicImageClassificationPipeline"
    )
    for name in CODE_FILES:
        code = (model_folder / name).read_text()
        # Only relative imports may reach other medic_hf modules, because the files are copied flat.
        assert not re.search(r"^\s*(from|import) medic_hf", code, flags=re.MULTILINE), name
        for module in re.findall(r"^from \.(\w+) import", code, flags=re.MULTILINE):
            assert f"{module}.py" in CODE_FILES, f"{name} imports .{module}, which is not saved"


def add_to_hub_cache(hub_cache, repo_id: str, folder) -> None:
    """Lay out `folder` as a downloaded Hub repo in the `huggingface_hub` cache, so it loads offline by repo id."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hub_cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def test_model_and_pipeline_load_without_medic_hf(model_folder, tmp_path):
    """Config, model and pipeline load from a folder and a (cached) Hub repo where medic_hf is not importable.

    See `isolated_python` for how the process hides the editable install of medic_hf. The repo is read from the
    `huggingface_hub` cache in offline mode, which takes the same path as a download once the files are fetched:
    transformers looks up the model file, then each file it imports relatively, by repo id.
    """
    repo_id = "disaster-lab/medic-tiny"
    add_to_hub_cache(tmp_path / "hf_home" / "hub", repo_id, model_folder)
    images_dir = tmp_path / "images"
    for seed in range(3):
        write_jpeg(images_dir / f"photo_{seed}.jpg", seed=seed, size=(40 + 7 * seed, 36))
    pixel_values = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
    save_file({"pixel_values": pixel_values}, tmp_path / "inputs.safetensors")

    with serve_folder(images_dir) as base_url:
        run_without_medic_hf(
            ISOLATED_SCRIPT,
            model_folder,
            repo_id,
            tmp_path / "inputs.safetensors",
            tmp_path / "logits.safetensors",
            tmp_path / "logits_hub.safetensors",
            images_dir,
            f"{base_url}/photo_1.jpg",
            tmp_path / "results.json",
            cwd=tmp_path,
        )

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config_class"] == "MedicConfig"
    assert results["model_module"].startswith("transformers_modules.")
    assert results["pipeline_class"] == "MedicImageClassificationPipeline"
    assert results["task_pipeline_class"] == "MedicImageClassificationPipeline"

    model = MedicForMultiTaskImageClassification.from_pretrained(model_folder).eval()
    with torch.no_grad():
        expected_logits = model(pixel_values=pixel_values).task_logits()
    logits = load_file(tmp_path / "logits.safetensors")
    hub_logits = load_file(tmp_path / "logits_hub.safetensors")
    assert set(logits) == set(TASKS)
    for task in TASKS:
        torch.testing.assert_close(logits[task], expected_logits[task])
        torch.testing.assert_close(hub_logits[task], expected_logits[task])

    classifier = MedicImageClassificationPipeline(
        model=model, image_processor=AutoImageProcessor.from_pretrained(model_folder)
    )
    paths = sorted(str(path) for path in images_dir.glob("*.jpg"))
    expected = {
        "paths": classifier(paths, top_k=2),
        "pil": classifier(paths[0]),
        "url": classifier(paths[1]),
        "hub": classifier(paths[0]),
    }
    assert len(results["paths"]) == 3
    for key, value in expected.items():
        assert results[key] == approx_nested(value), key


def approx_nested(value):
    """Wrap each float of a nested pipeline output in `pytest.approx`: labels compare exactly, scores to 1e-6."""
    if isinstance(value, dict):
        return {key: approx_nested(item) for key, item in value.items()}
    if isinstance(value, list):
        return [approx_nested(item) for item in value]
    if isinstance(value, float):
        return pytest.approx(value, abs=1e-6)
    return value
