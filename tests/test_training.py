"""End-to-end runs of `medic-hf train`, `evaluate` and `predict` on generated JPEG files and tiny backbones."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, build_medic_folder, write_tsv
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from medic_hf import TASK_LABELS, TASKS, MedicForMultiTaskImageClassification
from medic_hf.labels import SPLIT_FILES
from medic_hf.training import main as train_main


TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE = 24, 8, 8


def run_cli(*args, check=True, **kwargs):
    """Run `python -m medic_hf.cli ARGS` in a fresh process and return the completed process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "medic_hf.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=kwargs.pop("cwd", REPO_ROOT),
        timeout=600,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"command failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def make_training_folder(root):
    """A MEDIC folder with missing labels in train and a test split that lacks some classes."""
    rows = build_medic_folder(root, {"train": TRAIN_SIZE, "validation": VALIDATION_SIZE, "test": TEST_SIZE}, seed=3)
    for row in rows["train"][::4]:
        row["humanitarian"] = ""
    for row in rows["test"]:
        row["disaster_types"] = "flood" if int(row["image_id"]) % 2 else "fire"
    write_tsv(root / SPLIT_FILES["train"], rows["train"])
    write_tsv(root / SPLIT_FILES["test"], rows["test"])
    return rows


@pytest.fixture(scope="module")
def trained_vit(tmp_path_factory, tiny_backbones):
    """Train the tiny ViT for two epochs in this process, as `medic-hf train` does."""
    root = tmp_path_factory.mktemp("train_vit")
    data_dir, output_dir = root / "MEDIC", root / "model"
    make_training_folder(data_dir)
    train_main(
        [
            "--data_dir", str(data_dir),
            "--backbone", tiny_backbones["vit"],
            "--output_dir", str(output_dir),
            "--dataset_cache_dir", str(root / "cache"),
            "--num_train_epochs", "2",
            "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "4",
            "--learning_rate", "1e-3",
            "--seed", "7",
            "--use_cpu", "True",
            "--dataloader_pin_memory", "False",
        ]
    )  # fmt: skip
    return data_dir, output_dir


def test_output_folder_holds_model_and_reports(trained_vit):
    _, output_dir = trained_vit

    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "medic_metrics.json", "README.md"):
        assert (output_dir / name).is_file(), name
    assert not (output_dir / "pytorch_model.bin").exists()
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "medic_multitask"
    assert config["tasks"] == TASKS


def test_best_checkpoint_by_mean_macro_f1_is_saved(trained_vit):
    _, output_dir = trained_vit
    state = json.loads((output_dir / "trainer_state.json").read_text())
    metrics = json.loads((output_dir / "medic_metrics.json").read_text())

    evaluations = [entry for entry in state["log_history"] if "eval_mean_f1_macro" in entry]
    assert [entry["epoch"] for entry in evaluations] == [1.0, 2.0]
    assert state["best_metric"] == max(entry["eval_mean_f1_macro"] for entry in evaluations)
    # The saved model scores the validation split exactly as the best epoch did.
    assert metrics["validation"]["mean"]["f1_macro"] == pytest.approx(state["best_metric"], abs=1e-6)


def test_metrics_cover_each_task_and_split(trained_vit):
    _, output_dir = trained_vit
    metrics = json.loads((output_dir / "medic_metrics.json").read_text())

    assert set(metrics) == {"test", "validation"}
    for split, size in (("test", TEST_SIZE), ("validation", VALIDATION_SIZE)):
        for task in TASKS:
            results = metrics[split]["tasks"][task]
            assert results["support"] == size
            for name in ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "f1_macro"):
                assert 0.0 <= results[name] <= 1.0
            matrix = results["confusion_matrix"]
            assert len(matrix) == len(TASK_LABELS[task])
            assert sum(map(sum, matrix)) == size
    # The test split contains only fire (1) and flood (2): the other rows of the matrix are empty.
    test_matrix = metrics["test"]["tasks"]["disaster_types"]["confusion_matrix"]
    assert [sum(row) > 0 for row in test_matrix] == [False, True, True, False, False, False, False]


def test_model_card_metadata_and_prose(trained_vit):
    data_dir, output_dir = trained_vit
    card = ModelCard.load(output_dir / "README.md")
    metrics = json.loads((output_dir / "medic_metrics.json").read_text())

    assert card.data.license == "cc-by-nc-sa-4.0"
    assert card.data.pipeline_tag == "image-classification"
    results = {(r.dataset_config, r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert len(results) == 2 * 4 * 5
    assert results[("humanitarian", "test", "humanitarian f1 macro (test)")] == round(
        metrics["test"]["tasks"]["humanitarian"]["f1_macro"], 4
    )
    text = card.text
    assert f"train {TRAIN_SIZE}, validation {VALIDATION_SIZE}, test {TEST_SIZE}" in text
    assert "| learning_rate | 0.001 |" in text
    assert "| num_train_epochs | 2.0 |" in text
    assert "non-commercial" in text
    assert "a person checks" in text
    assert "@article{alam2022medic" in text
    assert data_dir.name in text
    assert f"Trained on {TRAIN_SIZE} images, far fewer than MEDIC's 49,353" in text
    assert "trained on a local folder in MEDIC's format" in text
    assert "| disaster_types | 8 |" in text


def test_fresh_process_gives_same_logits(trained_vit, tmp_path):
    _, output_dir = trained_vit
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    save_file({"pixel_values": pixel_values}, tmp_path / "inputs.safetensors")
    model = MedicForMultiTaskImageClassification.from_pretrained(output_dir).eval()
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).task_logits()

    script = (
        "import sys, torch, medic_hf\n"
        "from safetensors.torch import load_file, save_file\n"
        "from transformers import AutoModel\n"
        "model = AutoModel.from_pretrained(sys.argv[1]).eval()\n"
        "inputs = load_file(sys.argv[2])\n"
        "with torch.no_grad():\n"
        "    save_file(model(**inputs).task_logits(), sys.argv[3])\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, output_dir, tmp_path / "inputs.safetensors", tmp_path / "logits.safetensors"],
        check=True,
        timeout=300,
    )

    logits = load_file(tmp_path / "logits.safetensors")
    assert set(logits) == set(TASKS)
    for task in TASKS:
        torch.testing.assert_close(logits[task], expected[task])


def test_evaluate_command_reproduces_test_metrics(trained_vit, tmp_path):
    data_dir, output_dir = trained_vit
    output_file = tmp_path / "eval.json"

    result = run_cli(
        "evaluate", "--model", output_dir, "--data_dir", data_dir, "--split", "test",
        "--output_file", output_file, "--dataset_cache_dir", tmp_path / "cache", "--use_cpu", "True",
    )  # fmt: skip

    written = json.loads(output_file.read_text())
    trained = json.loads((output_dir / "medic_metrics.json").read_text())["test"]
    assert written["split"] == "test"
    for task in TASKS:
        assert written["tasks"][task]["confusion_matrix"] == trained["tasks"][task]["confusion_matrix"]
        assert written["tasks"][task]["f1_macro"] == pytest.approx(trained["tasks"][task]["f1_macro"])
    assert "disaster_types" in result.stdout
    assert result.stdout.count("\nmean ") == 1


def test_predict_command_labels_files_and_reports_errors(trained_vit, tmp_path):
    data_dir, output_dir = trained_vit
    not_an_image = tmp_path / "page.jpg"
    not_an_image.write_text("<html>not found</html>")
    test_images = data_dir / "data" / "generated" / "test"

    result = run_cli(
        "predict", "--model", output_dir, test_images, not_an_image, "--all_scores", "--batch_size", "3", check=False
    )

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == TEST_SIZE + 1
    assert records[-1]["path"] == str(not_an_image)
    assert "cannot read image" in records[-1]["error"]
    for record in records[:-1]:
        assert record["path"].startswith(str(test_images))
        for task, names in TASK_LABELS.items():
            assert record[task]["label"] in names
            assert set(record[task]["scores"]) == set(names)
            assert sum(record[task]["scores"].values()) == pytest.approx(1.0, abs=1e-4)
            assert record[task]["score"] == max(record[task]["scores"].values())
    assert "1 image(s) could not be read" in result.stderr
    assert result.returncode == 1


def test_predict_missing_path_and_empty_folder(trained_vit, tmp_path):
    _, output_dir = trained_vit
    (tmp_path / "empty").mkdir()

    result = run_cli("predict", "--model", output_dir, tmp_path / "empty", tmp_path / "typo.jpg", check=False)

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == [{"path": str(tmp_path / "typo.jpg"), "error": records[0]["error"]}]
    assert "FileNotFoundError" in records[0]["error"]
    assert f"No image files in folder {tmp_path / 'empty'}" in result.stderr
    assert result.returncode == 1


def test_predict_on_real_photos(trained_vit, real_photos):
    _, output_dir = trained_vit
    photos = sorted((real_photos / "data").iterdir())[:6]

    result = run_cli("predict", "--model", output_dir, *photos)

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["path"] for record in records] == [str(photo) for photo in photos]
    assert all("error" not in record for record in records)
    assert all(record["disaster_types"]["label"] in TASK_LABELS["disaster_types"] for record in records)


def test_resnet_backbone_trains(tmp_path, tiny_backbones):
    build_medic_folder(tmp_path / "MEDIC", {"train": 10, "validation": 4, "test": 4}, seed=5)

    run_cli(
        "train", "--data_dir", tmp_path / "MEDIC", "--backbone", tiny_backbones["resnet"],
        "--output_dir", tmp_path / "model", "--dataset_cache_dir", tmp_path / "cache",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "5", "--use_cpu", "True",
    )  # fmt: skip

    config = json.loads((tmp_path / "model" / "config.json").read_text())
    metrics = json.loads((tmp_path / "model" / "medic_metrics.json").read_text())
    assert config["backbone_config"]["model_type"] == "resnet"
    assert config["hidden_size"] == 16
    assert metrics["test"]["tasks"]["informative"]["support"] == 4


def test_train_without_output_dir_fails_clearly(tmp_path):
    result = run_cli("train", "--data_dir", tmp_path, check=False)

    assert result.returncode != 0
    assert "Missing `--output_dir`" in result.stderr


def test_unknown_command_lists_commands():
    result = run_cli("fit", check=False)

    assert result.returncode != 0
    assert "unknown command 'fit'" in result.stderr
    assert "train" in result.stderr


def test_accelerate_launch_two_cpu_processes(tmp_path, tiny_backbones):
    # accelerate 1.x starts a single process for `--cpu`. `--multi_gpu` starts two through torchrun,
    # and `medic-hf train` joins them in one CPU process group when no GPU is present.
    build_medic_folder(tmp_path / "MEDIC", {"train": 16, "validation": 4, "test": 4}, seed=11)
    output_dir = tmp_path / "model"
    batch_size, epochs = 4, 2
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    result = subprocess.run(
        [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m", "medic_hf.cli", "train",
            "--data_dir", str(tmp_path / "MEDIC"), "--backbone", tiny_backbones["vit"],
            "--output_dir", str(output_dir), "--dataset_cache_dir", str(tmp_path / "cache"),
            "--num_train_epochs", str(epochs), "--per_device_train_batch_size", str(batch_size),
        ],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-5000:]
    assert "Training on 2 process(es)" in result.stderr
    state = json.loads((output_dir / "trainer_state.json").read_text())
    # Each optimizer step takes one batch per process, so two processes halve the steps per epoch.
    assert state["global_step"] == epochs * math.ceil(16 / (batch_size * 2))
    card = (output_dir / "README.md").read_text()
    assert "| devices (world size) | 2 |" in card
    assert card.count("## Evaluation") == 1
    assert sorted(p.name for p in output_dir.glob("*.safetensors")) == ["model.safetensors"]
    assert json.loads((output_dir / "medic_metrics.json").read_text())["test"]["tasks"]["informative"]["support"] == 4


def test_card_reports_data_problems_and_steps(tmp_path, tiny_backbones):
    rows = build_medic_folder(tmp_path / "MEDIC", {"train": 8, "validation": 3, "test": 3}, seed=81)
    (tmp_path / "MEDIC" / rows["train"][0]["image_path"]).write_bytes(b"")
    rows["test"][0]["image_path"] = rows["train"][4]["image_path"]
    write_tsv(tmp_path / "MEDIC" / SPLIT_FILES["test"], rows["test"])

    run_cli(
        "train", "--source", tmp_path / "MEDIC", "--backbone", tiny_backbones["vit"], "--output_dir", tmp_path / "model",
        "--dataset_cache_dir", tmp_path / "cache", "--on_bad_row", "skip", "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--use_cpu", "True",
    )  # fmt: skip

    card = (tmp_path / "model" / "README.md").read_text()
    assert "1 bad row(s) of the source were skipped (unreadable image: 1)" in card
    assert "1 image path(s) appear in both the train and test splits" in card
    assert "| max_steps | 2 |" in card
    assert "| epochs run | 1.0 |" in card
    assert "num_train_epochs" not in card
    assert (tmp_path / "model" / "skipped_rows.jsonl").is_file()


def test_missing_model_folder_is_one_line_error(tmp_path):
    result = run_cli("evaluate", "--model", tmp_path / "no-such-model", "--source", tmp_path, check=False)

    assert result.returncode == 1
    assert result.stderr.startswith("medic-hf evaluate: error:")
    assert "Traceback" not in result.stderr
