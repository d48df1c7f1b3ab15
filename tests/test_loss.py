"""Loss options: task weights, class weights, label smoothing and learned uncertainty weighting."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from transformers import ViTConfig

from medic_hf import TASK_LABELS, TASKS, MedicConfig, MedicForMultiTaskImageClassification
from medic_hf.losses import UncertaintyWeighting, balanced_class_weights, masked_cross_entropy


BATCH_SIZE = 6


def tiny_vit_config() -> ViTConfig:
    return ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )


def build_model(**config_kwargs) -> MedicForMultiTaskImageClassification:
    torch.manual_seed(0)
    return MedicForMultiTaskImageClassification(MedicConfig(backbone_config=tiny_vit_config(), **config_kwargs))


def batch_labels() -> dict[str, torch.Tensor]:
    return {
        "damage_severity": torch.tensor([0, 2, -1, 1, 0, 0]),
        "informative": torch.tensor([1, 1, 0, 0, 1, -1]),
        "humanitarian": torch.tensor([-1, 3, -1, 0, 2, 2]),
        "disaster_types": torch.tensor([6, 5, 4, 0, 1, 5]),
    }


def pixel_values() -> torch.Tensor:
    return torch.randn(BATCH_SIZE, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def reference_loss(logits, labels, weight=None, label_smoothing=0.0):
    """PyTorch's own weighted mean over the labelled examples."""
    keep = labels != -1
    return F.cross_entropy(logits[keep], labels[keep], weight=weight, label_smoothing=label_smoothing)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("use_weights", [False, True])
def test_masked_cross_entropy_matches_pytorch(label_smoothing, use_weights):
    logits = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 3, -1, 1, 1, -1, 2, 3])
    weights = [0.5, 2.0, 1.0, 3.0] if use_weights else None

    loss = masked_cross_entropy(logits, labels, weights, label_smoothing)

    expected = reference_loss(logits, labels, torch.tensor(weights) if weights else None, label_smoothing)
    torch.testing.assert_close(loss, expected)


def test_weighted_loss_without_labels_is_zero():
    logits = torch.randn(3, 3, requires_grad=True)

    loss = masked_cross_entropy(logits, torch.full((3,), -1), [1.0, 5.0, 2.0], label_smoothing=0.1)
    loss.backward()

    assert loss.item() == 0.0
    assert torch.count_nonzero(logits.grad) == 0


def test_task_weights_scale_each_task():
    weights = {"damage_severity": 2.0, "humanitarian": 0.5, "informative": 0.0}
    model = build_model(task_weights=weights).eval()
    labels = batch_labels()

    outputs = model(pixel_values=pixel_values(), **{f"{task}_labels": value for task, value in labels.items()})

    expected = sum(weights.get(task, 1.0) * reference_loss(outputs[f"{task}_logits"], labels[task]) for task in TASKS)
    torch.testing.assert_close(outputs.loss, expected)


def test_class_weights_and_label_smoothing_in_forward():
    class_weights = {"damage_severity": [0.4, 3.0, 1.2], "disaster_types": [1, 2, 3, 4, 5, 6, 7]}
    model = build_model(class_weights=class_weights, label_smoothing=0.1).eval()
    labels = batch_labels()

    outputs = model(pixel_values=pixel_values(), **{f"{task}_labels": value for task, value in labels.items()})

    expected = 0.0
    for task in TASKS:
        weight = torch.tensor(class_weights[task], dtype=torch.float32) if task in class_weights else None
        expected += reference_loss(outputs[f"{task}_logits"], labels[task], weight, label_smoothing=0.1)
    torch.testing.assert_close(outputs.loss, expected)


def test_uncertainty_weighting_formula():
    model = build_model(loss_weighting="uncertainty").eval()
    log_variances = torch.tensor([0.5, -0.3, 1.2, 0.0])
    with torch.no_grad():
        model.uncertainty.log_variances.copy_(log_variances)
    labels = batch_labels()
    # No humanitarian label in this batch: that task adds neither its loss nor its s / 2 term.
    labels["humanitarian"] = torch.full((BATCH_SIZE,), -1)

    outputs = model(pixel_values=pixel_values(), **{f"{task}_labels": value for task, value in labels.items()})

    expected = 0.0
    for index, task in enumerate(TASKS):
        if task == "humanitarian":
            continue
        task_loss = reference_loss(outputs[f"{task}_logits"], labels[task])
        expected += math.exp(-log_variances[index].item()) * task_loss + 0.5 * log_variances[index].item()
    torch.testing.assert_close(outputs.loss, expected)
    assert model.uncertainty.task_weights()["damage_severity"] == pytest.approx(math.exp(-0.5), rel=1e-6)


def test_uncertainty_weights_start_equal_and_get_gradients():
    model = build_model(loss_weighting="uncertainty").train()
    labels = batch_labels()

    outputs = model(pixel_values=pixel_values(), **{f"{task}_labels": value for task, value in labels.items()})
    outputs.loss.backward()

    plain_sum = sum(reference_loss(outputs[f"{task}_logits"], labels[task]) for task in TASKS)
    torch.testing.assert_close(outputs.loss, plain_sum)
    assert model.uncertainty.task_weights() == {task: 1.0 for task in TASKS}
    gradient = model.uncertainty.log_variances.grad
    assert gradient is not None
    # d/ds (exp(-s) L + s / 2) at s = 0 is 1/2 - L.
    for index, task in enumerate(TASKS):
        expected = 0.5 - reference_loss(outputs[f"{task}_logits"].detach(), labels[task])
        torch.testing.assert_close(gradient[index], expected)


def test_uncertainty_weights_survive_save_and_load(tmp_path):
    model = build_model(loss_weighting="uncertainty", tasks=["informative", "disaster_types"])
    with torch.no_grad():
        model.uncertainty.log_variances.copy_(torch.tensor([0.7, -0.2]))
    model.save_pretrained(tmp_path)

    loaded = MedicForMultiTaskImageClassification.from_pretrained(tmp_path)

    assert loaded.config.loss_weighting == "uncertainty"
    torch.testing.assert_close(loaded.uncertainty.log_variances.detach(), torch.tensor([0.7, -0.2]))


def test_loss_options_survive_config_round_trip(tmp_path):
    class_weights = {"informative": [0.75, 1.5]}
    build_model(task_weights={"humanitarian": 3}, class_weights=class_weights, label_smoothing=0.05).save_pretrained(
        tmp_path
    )

    config = MedicConfig.from_pretrained(tmp_path)

    assert config.task_weights == {"humanitarian": 3.0}
    assert config.class_weights == class_weights
    assert config.label_smoothing == 0.05
    assert config.loss_weighting == "sum"


def test_balanced_class_weights_match_scikit_learn():
    labels = [0, 0, 0, 0, 0, 0, 1, 2, 2, -1, -1, 0]

    weights = balanced_class_weights(labels, num_classes=3)

    labelled = np.array([label for label in labels if label != -1])
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=labelled)
    np.testing.assert_allclose(weights, expected)


def test_balanced_class_weights_for_absent_class():
    weights = balanced_class_weights([0, 0, 0, 3, -1], num_classes=len(TASK_LABELS["humanitarian"]))

    expected = compute_class_weight("balanced", classes=np.array([0, 3]), y=np.array([0, 0, 0, 3]))
    assert weights[1] == 1.0
    assert weights[2] == 1.0
    np.testing.assert_allclose([weights[0], weights[3]], expected)


@pytest.mark.parametrize(
    "labels, message",
    [([-1, -1], "no example has a label"), ([0, 5], "Invalid label 5")],
)
def test_balanced_class_weights_reject_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        balanced_class_weights(labels, num_classes=3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task_weights": {"damage": 1.0}}, "names task\\(s\\) damage"),
        ({"tasks": ["informative"], "task_weights": {"humanitarian": 2.0}}, "names task\\(s\\) humanitarian"),
        ({"task_weights": {"informative": -1.0}}, "Invalid `task_weights="),
        ({"task_weights": dict.fromkeys(TASKS, 0.0)}, "at least one task needs a positive weight"),
        ({"task_weights": {"informative": 2.0}, "loss_weighting": "uncertainty"}, "Drop one of them"),
        ({"loss_weighting": "max"}, "Invalid `loss_weighting='max'`"),
        ({"label_smoothing": 1.0}, "Invalid `label_smoothing=1.0`"),
        ({"class_weights": {"informative": [1.0]}}, "give 2 weights"),
        ({"class_weights": {"informative": [0.0, 0.0]}}, "at least one positive"),
        ({"tasks": ["humanitarian"], "class_weights": {"informative": [1.0, 1.0]}}, "names task 'informative'"),
    ],
)
def test_invalid_loss_options_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MedicConfig(backbone_config=tiny_vit_config(), **kwargs)


def test_uncertainty_weighting_skips_tasks_without_loss():
    weighting = UncertaintyWeighting(["informative", "humanitarian"])
    loss = torch.tensor(2.0)

    total = weighting({"humanitarian": loss}, {"humanitarian": torch.tensor(True)})

    torch.testing.assert_close(total, loss)
