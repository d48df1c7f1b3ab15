"""The model card and the Hub upload: `--push_to_hub` during training and `medic-hf push`.

Uploads stop at `huggingface_hub.HfApi`: its `create_repo`, `create_branch` and `upload_folder` methods are
replaced by recorders that copy the folder they are given, so no test needs the network.
"""

import hashlib
import json
import re
import shutil

import pytest
from conftest import build_medic_folder, write_jpeg
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from huggingface_hub.repocard import metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from isolated_python import run_without_medic_hf
from PIL import Image

from medic_hf import TASK_LABELS, TASKS
from medic_hf.errors import MedicUsageError
from medic_hf.hub import main as push_main
from medic_hf.hub import push_model_folder
from medic_hf.model_card import METRICS_FILE, TRAINING_FILE
from medic_hf.training import main as train_main


REPO_ID = "disaster-lab/medic-tiny-vit"


class HubRecorder:
    """Stands in for the Hub behind `HfApi`: records each request and keeps a copy of each uploaded folder."""

    def __init__(self, snapshots_dir):
        self.snapshots_dir = snapshots_dir
        self.calls = []

    def install(self, monkeypatch):
        recorder = self

        def create_repo(api, repo_id, **kwargs):
            recorder.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            full_id = repo_id if "/" in repo_id else f"hub-user/{repo_id}"
            return RepoUrl(f"https://huggingface.co/{full_id}")

        def create_branch(api, repo_id, **kwargs):
            recorder.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api, **kwargs):
            snapshot = recorder.snapshots_dir / f"upload_{len(recorder.calls)}"
            shutil.copytree(kwargs["folder_path"], snapshot)
            recorder.calls.append(("upload_folder", {**kwargs, "snapshot": snapshot}))
            return CommitInfo(
                commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{'0' * 40}",
                commit_message=kwargs.get("commit_message") or "",
                commit_description="",
                oid="0" * 40,
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def requests(self, name):
        return [arguments for call, arguments in self.calls if call == name]


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory, tiny_backbones):
    """Train the tiny ViT with `--push_to_hub`, recording the Hub requests."""
    root = tmp_path_factory.mktemp("hub")
    data_dir, output_dir = root / "MEDIC", root / "medic-tiny-vit"
    build_medic_folder(data_dir, {"train": 16, "validation": 6, "test": 6}, seed=13)
    recorder = HubRecorder(root / "uploads")
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder.install(monkeypatch)
        train_main(
            [
                "--data_dir", str(data_dir),
                "--backbone", tiny_backbones["vit"],
                "--output_dir", str(output_dir),
                "--dataset_cache_dir", str(root / "cache"),
                "--num_train_epochs", "1",
                "--per_device_train_batch_size", "8",
                "--use_cpu", "True",
                "--report_to", "none",
                "--push_to_hub", "True",
                "--hub_model_id", REPO_ID,
            ]
        )  # fmt: skip
    return output_dir, recorder


def test_push_during_training_uploads_once(pushed_run):
    output_dir, recorder = pushed_run

    (create,) = recorder.requests("create_repo")
    (upload,) = recorder.requests("upload_folder")
    assert create["repo_id"] == REPO_ID
    assert create["exist_ok"] is True
    assert create["repo_type"] == "model"
    assert upload["repo_id"] == REPO_ID
    assert upload["repo_type"] == "model"
    assert upload["revision"] is None
    uploaded = {path.relative_to(upload["snapshot"]).as_posix() for path in upload["snapshot"].rglob("*")}
    for name in (
        "config.json", "model.safetensors", "preprocessor_config.json", "README.md", METRICS_FILE, TRAINING_FILE,
        "modeling_medic.py", "configuration_medic.py", "pipeline_medic.py", "losses.py", "labels.py",
    ):  # fmt: skip
        assert name in uploaded, name
    assert not any(name.startswith("checkpoint-") for name in uploaded)
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in uploaded)
    assert (output_dir / "training_args.bin").is_file()  # kept locally, left out of the upload


def test_uploaded_card_loads_from_repo_id(pushed_run):
    output_dir, recorder = pushed_run
    (upload,) = recorder.requests("upload_folder")

    uploaded_card = (upload["snapshot"] / "README.md").read_text()
    local_card = (output_dir / "README.md").read_text()

    assert f'pipeline(model="{REPO_ID}", trust_remote_code=True)' in uploaded_card
    assert f'AutoModel.from_pretrained("{REPO_ID}", trust_remote_code=True)' in uploaded_card
    assert f'pipeline(model="{output_dir}", trust_remote_code=True)' in local_card
    assert "medic-tiny-vit" in ModelCard(uploaded_card).data.model_name


def test_card_metadata_parses_with_hub_parser(pushed_run):
    output_dir, recorder = pushed_run
    (upload,) = recorder.requests("upload_folder")
    metrics = json.loads((output_dir / METRICS_FILE).read_text())

    card = ModelCard.load(upload["snapshot"] / "README.md")
    metadata = metadata_load(upload["snapshot"] / "README.md")
    model_name, eval_results = model_index_to_eval_results(metadata["model-index"])

    assert model_name == "medic-tiny-vit"
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-classification"
    assert "vit" in card.data.tags
    assert len(eval_results) == 2 * len(TASKS) * 5
    assert {(result.dataset_config, result.dataset_split) for result in eval_results} == {
        (task, split) for task in TASKS for split in ("test", "validation")
    }
    values = {(result.dataset_config, result.dataset_split, result.metric_name): result for result in eval_results}
    macro = values[("damage_severity", "validation", "damage_severity f1 macro (validation)")]
    assert macro.metric_type == "f1"
    assert macro.metric_args == {"average": "macro"}
    assert macro.metric_value == round(metrics["validation"]["tasks"]["damage_severity"]["f1_macro"], 4)


def test_card_content(pushed_run):
    output_dir, _ = pushed_run
    # Compare with line breaks and indentation folded into single spaces.
    text = " ".join(ModelCard.load(output_dir / "README.md").text.split())
    metrics = json.loads((output_dir / METRICS_FILE).read_text())

    for task, names in TASK_LABELS.items():
        assert f"| {task} | {', '.join(names)} |" in text
    assert "social-media photos only" in text
    assert "do not use them to make automated decisions about people" in text
    assert "65.3% accuracy on damage_severity and 56.6% on disaster_types" in text
    test_results = metrics["test"]["tasks"]["informative"]
    majority = max(map(sum, test_results["confusion_matrix"])) / test_results["support"]
    assert f"{majority:.4f} on informative" in text
    assert "Loss: the plain sum of the tasks' cross-entropies." in text
    assert "| learning_rate |" in text
    assert "Examples per split: train 16, validation 6, test 6." in text
    assert "A MEDIC-format copy (`MEDIC`)." in text
    assert "@article{alam2022medic" in text


def test_card_embeds_confusion_matrix_per_task(pushed_run):
    output_dir, recorder = pushed_run
    (upload,) = recorder.requests("upload_folder")
    text = (output_dir / "README.md").read_text()

    images = re.findall(r"!\[Confusion matrix of (\w+) on the test split\]\((images/[\w.]+\.png)\)", text)

    assert [task for task, _ in images] == TASKS
    for task, path in images:
        for folder in (output_dir, upload["snapshot"]):
            with Image.open(folder / path) as image:
                assert image.format == "PNG"
                assert image.width > 200, (task, image.size)
                assert image.height > 200, (task, image.size)


def test_card_snippets_run_without_medic_hf(pushed_run, tmp_path):
    """Both Python examples of the local card run as written, in a process where medic_hf is not importable."""
    output_dir, _ = pushed_run
    blocks = re.findall(r"```python\n(.*?)```", (output_dir / "README.md").read_text(), flags=re.DOTALL)
    write_jpeg(tmp_path / "photo.jpg", seed=8, size=(64, 48))

    assert len(blocks) == 2
    result = run_without_medic_hf("\n".join(blocks), cwd=tmp_path)

    lines = result.stdout.splitlines()
    for task, names in TASK_LABELS.items():
        pipeline_line = next(line for line in lines if line.startswith(f"{task} [{{'label'"))
        assert sum(f"'label': '{name}'" in pipeline_line for name in names) == 2  # top_k=2
        assert any(line == f"{task} {name}" for name in names for line in lines), task


def test_push_command_writes_card_for_repo(pushed_run, tmp_path, monkeypatch, capsys):
    output_dir, _ = pushed_run
    local_card_hash = hashlib.sha256((output_dir / "README.md").read_bytes()).hexdigest()
    recorder = HubRecorder(tmp_path)
    recorder.install(monkeypatch)

    push_main(
        ["--model", str(output_dir), "--repo_id", "medic-other", "--private", "--revision", "v1", "--token", "hf_x"]
    )

    (create,) = recorder.requests("create_repo")
    (branch,) = recorder.requests("create_branch")
    (upload,) = recorder.requests("upload_folder")
    assert create["repo_id"] == "medic-other"
    assert create["private"] is True
    assert branch == {"repo_id": "hub-user/medic-other", "branch": "v1", "exist_ok": True, "repo_type": "model"}
    assert upload["repo_id"] == "hub-user/medic-other"
    assert upload["revision"] == "v1"
    assert upload["commit_message"] == "Upload MEDIC multi-task model"
    assert 'AutoModel.from_pretrained("hub-user/medic-other"' in (upload["snapshot"] / "README.md").read_text()
    assert hashlib.sha256((output_dir / "README.md").read_bytes()).hexdigest() == local_card_hash
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/hub-user/medic-other/commit/{'0' * 40}"


def test_push_folder_without_training_files_keeps_readme(tmp_path, monkeypatch, caplog):
    from saved_models import save_tiny_model

    folder = save_tiny_model(tmp_path / "plain")
    (folder / "README.md").write_text("# my own card\n")
    recorder = HubRecorder(tmp_path / "uploads")
    recorder.install(monkeypatch)

    push_model_folder(folder, "me/plain")

    (upload,) = recorder.requests("upload_folder")
    assert (upload["snapshot"] / "README.md").read_text() == "# my own card\n"
    assert f"has no {METRICS_FILE} or {TRAINING_FILE}" in caplog.text


def test_push_rejects_incomplete_folders(tmp_path, monkeypatch):
    recorder = HubRecorder(tmp_path)
    recorder.install(monkeypatch)
    (tmp_path / "empty").mkdir()

    with pytest.raises(MedicUsageError, match="Invalid `--model .*absent`: no such folder"):
        push_main(["--model", str(tmp_path / "absent"), "--repo_id", "me/x"])
    with pytest.raises(FileNotFoundError, match="config.json, model.safetensors not found"):
        push_model_folder(tmp_path / "empty", "me/x")
    assert recorder.calls == []
