import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, ResNetConfig, ViTConfig

from medic_hf import TASK_LABELS, TASKS, MedicConfig, MedicForMultiTaskImageClassification


class MedicModelTester:
    """Builds tiny configs and inputs for the model tests."""

    batch_size = 4
    image_size = 32

    def backbone_config(self, arch: str):
        if arch == "vit":
            return ViTConfig(
                image_size=self.image_size,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=37,
            )
        return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")

    def model(self, arch: str, **config_kwargs) -> MedicForMultiTaskImageClassification:
        torch.manual_seed(0)
        config = MedicConfig(backbone_config=self.backbone_config(arch), **config_kwargs)
        return MedicForMultiTaskImageClassification(config).eval()

    def pixel_values(self) -> torch.Tensor:
        return torch.randn(self.batch_size, 3, self.image_size, self.image_size, generator=torch.Generator().manual_seed(1))


tester = MedicModelTester()


@pytest.mark.parametrize("arch, feature_size", [("vit", 32), ("resnet", 16)])
def test_head_shapes_per_task(arch, feature_size):
    model = tester.model(arch)

    outputs = model(pixel_values=tester.pixel_values())

    assert model.config.hidden_size == feature_size
    assert outputs.loss is None
    for task, names in TASK_LABELS.items():
        assert outputs[f"{task}_logits"].shape == (tester.batch_size, len(names))
    assert list(outputs.task_logits()) == TASKS


def test_loss_sums_per_task_cross_entropy():
    model = tester.model("vit")
    labels = {
        "damage_severity": torch.tensor([0, 2, -1, 1]),
        "informative": torch.tensor([1, 1, 0, 0]),
        "humanitarian": torch.tensor([-1, 3, -1, 0]),
        "disaster_types": torch.tensor([6, 5, 4, 0]),
    }

    outputs = model(pixel_values=tester.pixel_values(), **{f"{task}_labels": value for task, value in labels.items()})

    expected = 0.0
    for task, task_labels in labels.items():
        keep = task_labels != -1
        expected += F.cross_entropy(outputs[f"{task}_logits"][keep], task_labels[keep])
    torch.testing.assert_close(outputs.loss, expected)


def test_task_without_labels_adds_zero_not_nan():
    model = tester.model("vit").train()
    all_missing = torch.full((tester.batch_size,), -1)

    outputs = model(
        pixel_values=tester.pixel_values(),
        damage_severity_labels=torch.tensor([0, 1, 2, 0]),
        humanitarian_labels=all_missing,
    )
    outputs.loss.backward()

    expected = F.cross_entropy(outputs.damage_severity_logits, torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(outputs.loss, expected)
    assert torch.isfinite(outputs.loss)
    assert model.heads["humanitarian"].weight.grad is not None
    assert torch.count_nonzero(model.heads["humanitarian"].weight.grad) == 0
    assert torch.count_nonzero(model.heads["damage_severity"].weight.grad) > 0


def test_all_labels_missing_gives_zero_loss():
    model = tester.model("resnet")
    missing = torch.full((tester.batch_size,), -1)

    outputs = model(pixel_values=tester.pixel_values(), **{f"{task}_labels": missing for task in TASKS})

    assert outputs.loss.item() == 0.0


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_save_and_load_round_trip(arch, tmp_path):
    model = tester.model(arch)
    pixel_values = tester.pixel_values()
    model.save_pretrained(tmp_path)

    loaded = MedicForMultiTaskImageClassification.from_pretrained(tmp_path).eval()
    auto_loaded = AutoModel.from_pretrained(tmp_path).eval()

    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    assert type(auto_loaded) is MedicForMultiTaskImageClassification
    with torch.no_grad():
        expected = model(pixel_values=pixel_values)
        for reloaded in (loaded, auto_loaded):
            for task, logits in reloaded(pixel_values=pixel_values).task_logits().items():
                torch.testing.assert_close(logits, expected[f"{task}_logits"])


def test_id2label_survives_round_trip_for_every_task(tmp_path):
    tester.model("vit").save_pretrained(tmp_path)

    config = AutoConfig.from_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())

    assert isinstance(config, MedicConfig)
    assert saved["model_type"] == "medic_multitask"
    assert config.backbone_config.model_type == "vit"
    for task, names in TASK_LABELS.items():
        assert config.task_id2label[task] == dict(enumerate(names))
        assert config.task_label2id[task] == {name: index for index, name in enumerate(names)}


def test_task_subset_kept_in_canonical_order():
    model = tester.model("vit", tasks=["disaster_types", "informative"])

    outputs = model(pixel_values=tester.pixel_values(), informative_labels=torch.tensor([0, 1, 0, 1]))

    assert model.config.tasks == ["informative", "disaster_types"]
    assert list(model.heads) == ["informative", "disaster_types"]
    assert outputs.damage_severity_logits is None
    assert list(outputs.task_logits()) == ["informative", "disaster_types"]
    assert outputs.loss is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": ["damage", "informative"]}, "Invalid `tasks="),
        ({"tasks": []}, "Invalid `tasks="),
        ({"pooling": "max"}, "Invalid `pooling='max'`"),
        ({"tasks": ["informative"], "task_id2label": {"humanitarian": {0: "a"}}}, "no labels for task"),
    ],
)
def test_invalid_config_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MedicConfig(backbone_config=tester.backbone_config("vit"), **kwargs)


def test_pooling_modes_for_vit():
    pixel_values = tester.pixel_values()
    cls_model = tester.model("vit", pooling="cls")
    mean_model = tester.model("vit", pooling="mean")
    auto_model = tester.model("vit")

    with torch.no_grad():
        hidden = cls_model.backbone(pixel_values=pixel_values).last_hidden_state
        cls_features = cls_model.pool(cls_model.backbone(pixel_values=pixel_values))
        mean_features = mean_model.pool(mean_model.backbone(pixel_values=pixel_values))
        mean_hidden = mean_model.backbone(pixel_values=pixel_values).last_hidden_state
        auto_features = auto_model.pool(auto_model.backbone(pixel_values=pixel_values))

    torch.testing.assert_close(cls_features, hidden[:, 0])
    torch.testing.assert_close(mean_features, mean_hidden.mean(dim=1))
    # "auto" on ViT uses the first (CLS) token because the trainable pooler is left out.
    assert auto_model.backbone.pooler is None
    torch.testing.assert_close(auto_features, cls_features)


def test_cls_pooling_rejects_feature_maps():
    model = tester.model("resnet", pooling="cls")

    with pytest.raises(ValueError, match="pooling='cls' needs a token sequence"):
        model(pixel_values=tester.pixel_values())


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_from_backbone_loads_backbone_weights(arch, tiny_backbones):
    model = MedicForMultiTaskImageClassification.from_backbone(tiny_backbones[arch])
    backbone = AutoModel.from_pretrained(tiny_backbones[arch])

    assert model.config.backbone == tiny_backbones[arch]
    expected = backbone.state_dict()
    for name, tensor in model.backbone.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], msg=f"backbone weight {name} differs")
