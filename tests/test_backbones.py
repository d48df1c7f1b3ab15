"""Backbone families: transformers models, a timm model through TimmWrapper, and an AutoBackbone-only model."""

import numpy as np
import pytest
import torch
from conftest import write_jpeg
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    BitImageProcessor,
    ConvNextConfig,
    Dinov2Config,
    ResNetConfig,
    SwinConfig,
    TimmWrapperConfig,
    TimmWrapperModel,
    ViTConfig,
)
from transformers.models.rt_detr.configuration_rt_detr_resnet import RTDetrResNetConfig

from medic_hf import TASK_LABELS, MedicConfig, MedicForMultiTaskImageClassification
from medic_hf.backbones import load_image_processor
from medic_hf.modeling_medic import create_backbone


IMAGE_SIZE = 32

# Tiny random configs, and the pooled-feature width each gives.
BACKBONE_CONFIGS = {
    "vit": (
        lambda: ViTConfig(
            image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=37,
        ),
        32,
    ),
    "resnet": (lambda: ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"), 16),
    "convnext": (lambda: ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2), 16),
    "swin": (
        lambda: SwinConfig(
            image_size=IMAGE_SIZE, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
        ),
        16,
    ),
    "dinov2": (
        lambda: Dinov2Config(
            image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=37,
        ),
        32,
    ),
    "timm": (lambda: TimmWrapperConfig(architecture="test_vit", model_args={"img_size": IMAGE_SIZE}), 64),
    "rt_detr_resnet": (
        lambda: RTDetrResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", out_features=["stage2"]
        ),
        16,
    ),
}  # fmt: skip


def expected_features(arch: str, backbone, pixel_values: torch.Tensor) -> torch.Tensor:
    """The features `pooling="auto"` should give, computed from the backbone output without `MedicForMulti...`."""
    outputs = backbone(pixel_values=pixel_values)
    if arch == "vit":
        return outputs.last_hidden_state[:, 0]  # class token: the trainable pooler is left out
    if arch == "resnet":
        return outputs.last_hidden_state.mean(dim=(2, 3))  # global average
    if arch == "swin":
        return outputs.last_hidden_state.mean(dim=1)  # mean token: Swin has no class token
    if arch == "dinov2":
        return outputs.last_hidden_state[:, 0]  # the normalised class token
    if arch == "rt_detr_resnet":
        return outputs.feature_maps[-1].mean(dim=(2, 3))
    return outputs.pooler_output  # ConvNeXt: normalised global average; timm: the model's own head pooling


def pixel_values(batch_size: int = 2) -> torch.Tensor:
    return torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("arch", list(BACKBONE_CONFIGS))
def test_auto_pooling_suits_each_backbone(arch):
    make_config, feature_size = BACKBONE_CONFIGS[arch]
    torch.manual_seed(0)
    model = MedicForMultiTaskImageClassification(MedicConfig(backbone_config=make_config())).eval()
    inputs = pixel_values()

    with torch.no_grad():
        features = model.pool(model.backbone(pixel_values=inputs))
        expected = expected_features(arch, model.backbone, inputs)
        outputs = model(pixel_values=inputs)

    assert model.config.hidden_size == feature_size
    assert features.shape == (2, feature_size)
    torch.testing.assert_close(features, expected)
    for task, names in TASK_LABELS.items():
        assert outputs[f"{task}_logits"].shape == (2, len(names))


@pytest.mark.parametrize("arch", list(BACKBONE_CONFIGS))
def test_save_and_load_round_trip_per_backbone(arch, tmp_path):
    torch.manual_seed(0)
    model = MedicForMultiTaskImageClassification(MedicConfig(backbone_config=BACKBONE_CONFIGS[arch][0]())).eval()
    inputs = pixel_values()
    model.save_pretrained(tmp_path)

    loaded = MedicForMultiTaskImageClassification.from_pretrained(tmp_path).eval()

    assert loaded.config.backbone_config.model_type == model.config.backbone_config.model_type
    with torch.no_grad():
        for task, logits in loaded(pixel_values=inputs).task_logits().items():
            torch.testing.assert_close(logits, model(pixel_values=inputs)[f"{task}_logits"])


@pytest.mark.parametrize("arch", ["convnext", "swin", "dinov2", "timm"])
def test_from_backbone_loads_local_folder(arch, tmp_path):
    backbone_config = BACKBONE_CONFIGS[arch][0]()
    torch.manual_seed(1)
    create_backbone(backbone_config, pooling="auto").save_pretrained(tmp_path)

    model = MedicForMultiTaskImageClassification.from_backbone(str(tmp_path))
    saved = AutoModel.from_pretrained(tmp_path)

    assert model.config.backbone == str(tmp_path)
    expected = saved.state_dict()
    state = model.backbone.state_dict()
    assert set(state) <= set(expected)
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, expected[name], msg=f"backbone weight {name} differs")


def test_cls_pooling_rejects_backbone_without_class_token():
    model = MedicForMultiTaskImageClassification(
        MedicConfig(backbone_config=BACKBONE_CONFIGS["swin"][0](), pooling="cls")
    )

    with pytest.raises(ValueError, match="needs a class token, but the SwinModel backbone has none"):
        model(pixel_values=pixel_values())


def test_pooler_pooling_keeps_vit_pooler():
    torch.manual_seed(0)
    model = MedicForMultiTaskImageClassification(
        MedicConfig(backbone_config=BACKBONE_CONFIGS["vit"][0](), pooling="pooler")
    ).eval()
    inputs = pixel_values()

    with torch.no_grad():
        features = model.pool(model.backbone(pixel_values=inputs))
        expected = model.backbone(pixel_values=inputs).pooler_output

    assert model.backbone.pooler is not None
    torch.testing.assert_close(features, expected)


@pytest.fixture
def timm_backbone_folder(tmp_path):
    """A tiny timm ViT saved by transformers, with the `pretrained_cfg` its image processor reads."""
    config = TimmWrapperConfig(
        architecture="test_vit",
        model_args={"img_size": IMAGE_SIZE},
        pretrained_cfg={
            "input_size": [3, IMAGE_SIZE, IMAGE_SIZE],
            "interpolation": "bicubic",
            "mean": [0.5, 0.4, 0.3],
            "std": [0.2, 0.25, 0.3],
            "crop_pct": 0.8,
            "crop_mode": "center",
        },
    )
    torch.manual_seed(0)
    TimmWrapperModel(config).save_pretrained(tmp_path / "timm")
    return tmp_path / "timm"


def test_timm_image_processor_becomes_bit_processor(timm_backbone_folder, tmp_path):
    # Square, so that both round the resized size and the crop offset alike.
    write_jpeg(tmp_path / "photo.jpg", seed=4, size=(50, 50))
    image = Image.open(tmp_path / "photo.jpg").convert("RGB")
    timm_processor = AutoImageProcessor.from_pretrained(timm_backbone_folder)

    processor = load_image_processor(str(timm_backbone_folder))
    processor.save_pretrained(tmp_path / "saved")
    reloaded = AutoImageProcessor.from_pretrained(tmp_path / "saved")

    assert type(timm_processor).__name__ == "TimmWrapperImageProcessor"
    assert isinstance(processor, BitImageProcessor)
    assert isinstance(reloaded, BitImageProcessor)
    assert processor.size == {"shortest_edge": 40}  # floor(32 / 0.8)
    assert processor.crop_size == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    ours = reloaded(image, return_tensors="pt")["pixel_values"]
    timm_values = timm_processor(image)["pixel_values"]
    assert ours.shape == timm_values.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    # Same resize, crop and normalisation. Rounding to 8 bits after resizing differs by one grey level at most.
    assert np.abs((ours - timm_values).numpy()).max() < 1.01 / 255 / 0.2


def test_timm_model_from_backbone_predicts(timm_backbone_folder):
    model = MedicForMultiTaskImageClassification.from_backbone(str(timm_backbone_folder)).eval()
    timm_model = AutoModel.from_pretrained(timm_backbone_folder).eval()
    inputs = pixel_values()

    with torch.no_grad():
        features = model.pool(model.backbone(pixel_values=inputs))
        expected = timm_model(pixel_values=inputs).pooler_output

    assert model.config.backbone_config.architecture == "test_vit"
    assert model.config.hidden_size == 64
    torch.testing.assert_close(features, expected)
