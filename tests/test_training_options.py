"""Real `Trainer` runs with the backbone and loss options of `medic-hf train`."""

import json
import re

import datasets
import numpy as np
import pytest
import torch
from conftest import build_medic_folder
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from sklearn.utils.class_weight import compute_class_weight
from transformers import AutoImageProcessor, AutoModel, BitImageProcessor, TimmWrapperConfig, TimmWrapperModel

from medic_hf import TASK_LABELS, TASKS, MedicForMultiTaskImageClassification
from medic_hf.errors import MedicUsageError
from medic_hf.training import MedicTrainer, MedicTrainingArguments, ModelArguments, build_model
from medic_hf.training import main as train_main


SIZES = {"train": 16, "validation": 4, "test": 4}


def run_training(root, backbone, *options):
    """Train in this process, as `medic-hf train` does, on a fresh MEDIC folder. Returns (rows, output folder)."""
    rows = build_medic_folder(root / "MEDIC", SIZES, seed=21)
    output_dir = root / "model"
    train_main(
        [
            "--data_dir", str(root / "MEDIC"),
            "--backbone", backbone,
            "--output_dir", str(output_dir),
            "--dataset_cache_dir", str(root / "cache"),
            "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "4",
            "--learning_rate", "5e-3",
            "--seed", "5",
            "--use_cpu", "True",
            "--report_to", "none",
            *options,
        ]
    )  # fmt: skip
    return rows, output_dir


def expected_balanced_weights(rows, task):
    labels = np.array([TASK_LABELS[task].index(row[task]) for row in rows])
    present = np.unique(labels)
    weights = np.ones(len(TASK_LABELS[task]))
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


@pytest.fixture(scope="module")
def frozen_resnet_run(tmp_path_factory, tiny_backbones):
    """Two tasks, frozen ResNet, balanced class weights, label smoothing and a task weight, two epochs."""
    root = tmp_path_factory.mktemp("frozen_resnet")
    rows, output_dir = run_training(
        root, tiny_backbones["resnet"],
        "--tasks", "disaster_types", "humanitarian",
        "--freeze_backbone", "True",
        "--class_weights", "balanced",
        "--label_smoothing_factor", "0.1",
        "--task_weights", "disaster_types=2",
        "--num_train_epochs", "2",
        "--load_best_model_at_end", "False",
    )  # fmt: skip
    return rows, output_dir


def test_task_subset_trains_only_those_heads(frozen_resnet_run):
    _, output_dir = frozen_resnet_run
    config = json.loads((output_dir / "config.json").read_text())
    metrics = json.loads((output_dir / "medic_metrics.json").read_text())
    weights = load_file(output_dir / "model.safetensors")

    assert config["tasks"] == ["humanitarian", "disaster_types"]
    assert sorted(metrics["test"]["tasks"]) == ["disaster_types", "humanitarian"]
    assert sorted({name.split(".")[1] for name in weights if name.startswith("heads.")}) == [
        "disaster_types",
        "humanitarian",
    ]


def test_frozen_backbone_keeps_pretrained_weights_and_statistics(frozen_resnet_run, tiny_backbones):
    _, output_dir = frozen_resnet_run
    pretrained = AutoModel.from_pretrained(tiny_backbones["resnet"]).state_dict()
    final = MedicForMultiTaskImageClassification.from_pretrained(output_dir).state_dict()
    first_epoch = min(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    after_one_epoch = MedicForMultiTaskImageClassification.from_pretrained(first_epoch).state_dict()

    backbone_names = [name for name in final if name.startswith("backbone.")]
    # Batch-norm running statistics are buffers: eval mode keeps them fixed too.
    assert any(name.endswith("running_mean") for name in backbone_names)
    for name in backbone_names:
        torch.testing.assert_close(final[name], pretrained[name.removeprefix("backbone.")], msg=name)
    for task in ("humanitarian", "disaster_types"):
        assert not torch.equal(final[f"heads.{task}.weight"], after_one_epoch[f"heads.{task}.weight"]), task


def test_balanced_class_weights_and_loss_options_saved(frozen_resnet_run):
    rows, output_dir = frozen_resnet_run
    config = json.loads((output_dir / "config.json").read_text())

    assert set(config["class_weights"]) == {"humanitarian", "disaster_types"}
    for task in ("humanitarian", "disaster_types"):
        np.testing.assert_allclose(config["class_weights"][task], expected_balanced_weights(rows["train"], task))
    assert config["label_smoothing"] == 0.1
    assert config["task_weights"] == {"disaster_types": 2.0}
    assert config["loss_weighting"] == "sum"


def test_card_describes_recipe_and_task_subset(frozen_resnet_run):
    _, output_dir = frozen_resnet_run
    card = ModelCard.load(output_dir / "README.md")
    text = " ".join(card.text.split())

    assert {result.dataset_config for result in card.data.eval_results} == {"humanitarian", "disaster_types"}
    assert "2 linear heads, one per MEDIC task: humanitarian, disaster_types." in text
    assert "only the heads were trained (a linear probe)" in text
    assert "weights humanitarian 1.0, disaster_types 2.0" in text
    assert "Label smoothing: 0.1." in text
    assert "Class weights (`balanced`" in text
    assert len(re.findall(r"!\[Confusion matrix of \w+ on the test split\]", text)) == 2


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory):
    """A tiny timm ViT saved by transformers with the `pretrained_cfg` its image processor reads."""
    folder = tmp_path_factory.mktemp("timm") / "test_vit"
    config = TimmWrapperConfig(
        architecture="test_vit",
        model_args={"img_size": 32},
        pretrained_cfg={
            "input_size": [3, 32, 32],
            "interpolation": "bicubic",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "crop_pct": 1.0,
        },
    )
    torch.manual_seed(0)
    TimmWrapperModel(config).save_pretrained(folder)
    return folder


def test_timm_backbone_with_uncertainty_and_layer_decay(tmp_path, timm_folder):
    _, output_dir = run_training(
        tmp_path, str(timm_folder),
        "--loss_weighting", "uncertainty",
        "--layer_decay", "0.75",
        "--num_train_epochs", "2",
        "--logging_steps", "1",
        "--eval_strategy", "no",
        "--save_strategy", "no",
        "--load_best_model_at_end", "False",
    )  # fmt: skip
    state = json.loads((output_dir / "trainer_state.json").read_text())
    card = ModelCard.load(output_dir / "README.md")

    step_logs = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(step_logs) == 4
    for task in TASKS:
        weights = [entry[f"{task}_loss_weight"] for entry in step_logs]
        # Each step moves the log-variance, so the logged weight leaves 1.0 and changes from step to step.
        assert weights[-1] != pytest.approx(1.0, abs=1e-4), task
        assert len(set(weights)) > 1, task
    final = MedicForMultiTaskImageClassification.from_pretrained(output_dir)
    learned = final.uncertainty.task_weights()
    assert learned == pytest.approx({task: step_logs[-1][f"{task}_loss_weight"] for task in TASKS}, abs=1e-5)
    assert "Learned weights `exp(-s)` at the end:" in card.text
    assert "Layer-wise learning-rate decay 0.75" in card.text
    assert isinstance(AutoImageProcessor.from_pretrained(output_dir), BitImageProcessor)
    assert final.config.backbone_config.model_type == "timm_wrapper"


def test_layer_decay_parameter_groups(tmp_path, tiny_backbones):
    model = MedicForMultiTaskImageClassification.from_backbone(tiny_backbones["vit"], loss_weighting="uncertainty")
    args = MedicTrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1e-3,
        weight_decay=0.05,
        layer_decay=0.5,
        eval_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
    )
    trainer = MedicTrainer(model=model, args=args)

    optimizer = trainer.create_optimizer()

    learning_rates = {}
    weight_decays = {}
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            learning_rates[name] = group["lr"]
            weight_decays[name] = group["weight_decay"]
    # Two blocks (L = 2): embeddings at 0.5^3, block 0 at 0.5^2, block 1 at 0.5, final norm and heads at 1.
    assert learning_rates["backbone.embeddings.cls_token"] == pytest.approx(1e-3 * 0.5**3)
    assert learning_rates["backbone.layers.0.attention.q_proj.weight"] == pytest.approx(1e-3 * 0.5**2)
    assert learning_rates["backbone.layers.1.attention.o_proj.weight"] == pytest.approx(1e-3 * 0.5)
    assert learning_rates["backbone.layernorm.weight"] == pytest.approx(1e-3)
    assert learning_rates["heads.humanitarian.weight"] == pytest.approx(1e-3)
    assert weight_decays["heads.humanitarian.weight"] == 0.05
    assert weight_decays["heads.humanitarian.bias"] == 0.0
    assert weight_decays["uncertainty.log_variances"] == 0.0
    assert len(learning_rates) == len(list(model.parameters()))


@pytest.mark.parametrize(
    "model_options, training_options, message",
    [
        ({"freeze_backbone": True}, {"layer_decay": 0.8}, "`--freeze_backbone` and `--layer_decay` are both set"),
        ({"backbone": "resnet"}, {"layer_decay": 0.8}, "the ResNetModel backbone has none"),
        ({"task_weights": ["informative=2"], "loss_weighting": "uncertainty"}, {}, "Drop one of them"),
    ],
)
def test_conflicting_options_rejected(model_options, training_options, message, tmp_path, tiny_backbones):
    backbone = tiny_backbones[model_options.pop("backbone", "vit")]
    model_args = ModelArguments(backbone=backbone, **model_options)
    training_args = MedicTrainingArguments(output_dir=str(tmp_path), report_to="none", **training_options)

    with pytest.raises(MedicUsageError, match=message):
        build_model(model_args, training_args, train_split=None)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "damage"], "Invalid `--tasks damage`"),
        (["--task_weights", "informative:2"], "Invalid `--task_weights` entry 'informative:2'"),
        (["--task_weights", "informative=high"], "'high' is not a number"),
        (["--layer_decay", "1.5"], "Invalid `--layer_decay 1.5`"),
        (["--label_smoothing_factor", "1"], "Invalid `--label_smoothing_factor 1.0`"),
    ],
)
def test_invalid_training_options_rejected(argv, message, tmp_path):
    with pytest.raises(MedicUsageError, match=message):
        train_main(["--output_dir", str(tmp_path), *argv])


def test_balanced_weights_need_labels(tmp_path, tiny_backbones):
    train_split = datasets.Dataset.from_dict({"informative": [0, 1, 1], "humanitarian": [-1, -1, -1]})
    model_args = ModelArguments(
        backbone=tiny_backbones["vit"], tasks=["informative", "humanitarian"], class_weights="balanced"
    )
    training_args = MedicTrainingArguments(output_dir=str(tmp_path), report_to="none")

    with pytest.raises(MedicUsageError, match="`--class_weights balanced` failed for humanitarian: .*no example has a label"):
        build_model(model_args, training_args, train_split)
