"""Optimizer parameter groups for MEDIC training: layer-wise learning-rate decay and no decay on loss weights."""

import re
from collections.abc import Iterable

from torch import nn


# Transformer blocks of ViT-like backbones, as transformers 5.25 and timm name them: `layers.N.` (ViT, DeiT,
# BEiT), `encoder.layer.N.` (DINOv2, Data2Vec), `encoder.layers.N.` (CLIP, SigLIP) and `timm_model.blocks.N.`.
BLOCK_PATTERN = re.compile(r"^(?:layers|encoder\.layers?|timm_model\.blocks|blocks)\.(\d+)\.")

# Stages of hierarchical backbones that contain numbered blocks or layers of their own (Swin, ResNet, ConvNeXt,
# timm CNNs): their depth is not one sequence of blocks, so they get no layer-wise decay.
STAGE_PATTERN = re.compile(r"(?:^|\.)(?:layers|stages)\.\d+\.(?:blocks|layers)\.\d+\.")

# Backbone parameters that come before the first block: embeddings, class and register tokens, CLIP's pre-norm.
EMBEDDING_PATTERN = re.compile(
    r"^(?:embeddings\.|pre_layrnorm\.|timm_model\.(?:patch_embed|cls_token|reg_token|pos_embed|dist_token|norm_pre))"
)


def backbone_layer_ids(backbone: nn.Module) -> tuple[dict[str, int], int]:
    """Number each backbone parameter by depth: 0 for embeddings, `i + 1` for block `i`, `L + 1` after the blocks.

    Returns:
        The layer id of each parameter name, and the number of blocks `L`.

    Raises:
        ValueError: if the backbone has no numbered transformer blocks (CNNs, Swin).
    """
    names = [name for name, _ in backbone.named_parameters()]
    blocks = {name: int(match.group(1)) for name in names if (match := BLOCK_PATTERN.match(name))}
    if not blocks or any(STAGE_PATTERN.search(name) for name in names):
        raise ValueError(
            "Layer-wise learning-rate decay needs a ViT-like backbone with one sequence of numbered transformer "
            f"blocks, but the {type(backbone).__name__} backbone has none. Leave out `--layer_decay`, or pick a "
            "ViT, DeiT, BEiT, DINOv2 or timm ViT backbone."
        )
    num_blocks = max(blocks.values()) + 1
    layer_ids = {}
    for name in names:
        if name in blocks:
            layer_ids[name] = blocks[name] + 1
        elif EMBEDDING_PATTERN.match(name):
            layer_ids[name] = 0
        else:
            layer_ids[name] = num_blocks + 1
    return layer_ids, num_blocks


def create_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    decay_parameter_names: Iterable[str],
    layer_decay: float | None = None,
) -> list[dict]:
    """Group the trainable parameters for the optimizer by learning rate and weight decay.

    With `layer_decay`, a backbone parameter at layer id `k` of `L + 1` gets
    `learning_rate * layer_decay ** (L + 1 - k)`, so the embeddings learn slowest and the heads (outside the
    backbone) learn at `learning_rate`. The learned task weights of uncertainty weighting get no weight decay,
    which would pull them towards equal weights.

    Args:
        model: the MEDIC model, with its backbone at `model.backbone`.
        learning_rate: the base (head) learning rate.
        weight_decay: the weight decay of parameters in `decay_parameter_names`.
        decay_parameter_names: names of the parameters that get weight decay (biases and norms usually do not).
        layer_decay: the per-layer factor in (0, 1], or `None` for one learning rate.
    """
    layer_ids, num_blocks = backbone_layer_ids(model.backbone) if layer_decay is not None else ({}, 0)
    decay_names = set(decay_parameter_names)
    groups: dict[tuple[float, float], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        scale = 1.0
        if name.startswith("backbone.") and layer_decay is not None:
            scale = layer_decay ** (num_blocks + 1 - layer_ids[name.removeprefix("backbone.")])
        decay = weight_decay if name in decay_names and not name.startswith("uncertainty.") else 0.0
        key = (scale, decay)
        if key not in groups:
            groups[key] = {"params": [], "param_names": [], "lr": learning_rate * scale, "weight_decay": decay}
        groups[key]["params"].append(parameter)
        groups[key]["param_names"].append(name)
    return list(groups.values())
