"""Tiny MEDIC models saved with `save_pretrained` and an image processor, as `medic-hf train` leaves them."""

from pathlib import Path

import torch
from transformers import ConvNextImageProcessor, ResNetConfig, SwinConfig, ViTConfig, ViTImageProcessor

from medic_hf import MedicConfig, MedicForMultiTaskImageClassification


IMAGE_SIZE = 32

BACKBONE_CONFIGS = {
    "vit": lambda: ViTConfig(
        image_size=IMAGE_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37,
    ),
    "resnet": lambda: ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
    "swin": lambda: SwinConfig(
        image_size=IMAGE_SIZE, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
    ),
}  # fmt: skip


def save_tiny_model(folder: Path, arch: str = "vit", seed: int = 0, **config_kwargs) -> Path:
    """Save a randomly initialised model and its image processor to `folder`, and return the folder."""
    torch.manual_seed(seed)
    model = MedicForMultiTaskImageClassification(
        MedicConfig(backbone_config=BACKBONE_CONFIGS[arch](), **config_kwargs)
    )
    model.save_pretrained(folder)
    if arch == "resnet":
        processor = ConvNextImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_pct=1.0)
    else:
        processor = ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(folder)
    return folder
