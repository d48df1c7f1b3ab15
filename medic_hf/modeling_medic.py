"""One vision backbone shared by a linear classification head per MEDIC task."""

import inspect
import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoBackbone, AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING, MODEL_MAPPING
from transformers.utils import ModelOutput

from .configuration_medic import MedicConfig
from .labels import MISSING_LABEL, TASKS
from .losses import UncertaintyWeighting, masked_cross_entropy

# Imported so that `save_pretrained` copies pipeline_medic.py next to this file: `custom_object_save` copies
# every file this module imports relatively, and config.json's `custom_pipelines` points at it.
from .pipeline_medic import MedicImageClassificationPipeline  # noqa: F401


@dataclass
class MedicMultiTaskOutput(ModelOutput):
    """Output of [`MedicForMultiTaskImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Sum over tasks of the mean cross-entropy of the labelled examples, weighted as `config.task_weights`
            or `config.loss_weighting` set. Returned when labels are given.
        damage_severity_logits, informative_logits, humanitarian_logits, disaster_types_logits
            (`torch.FloatTensor` of shape `(batch_size, num_classes)`):
            Scores before softmax for each task the model was configured with, `None` for the others.
    """

    loss: torch.FloatTensor | None = None
    damage_severity_logits: torch.FloatTensor | None = None
    informative_logits: torch.FloatTensor | None = None
    humanitarian_logits: torch.FloatTensor | None = None
    disaster_types_logits: torch.FloatTensor | None = None

    def task_logits(self) -> dict[str, torch.FloatTensor]:
        """Return the logits of each configured task, keyed by task name."""
        return {task: self[f"{task}_logits"] for task in TASKS if self.get(f"{task}_logits") is not None}


class MedicPreTrainedModel(PreTrainedModel):
    config_class = MedicConfig
    base_model_prefix = "medic"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        # The backbone is a PreTrainedModel and initialises itself, so only the heads and the learned task
        # weights reach this method.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)
        elif isinstance(module, UncertaintyWeighting):
            nn.init.zeros_(module.log_variances)


class MedicForMultiTaskImageClassification(MedicPreTrainedModel):
    """A vision backbone with one linear head per MEDIC task.

    `forward` takes one optional label tensor per task, named `<task>_labels` so that `Trainer` treats
    them as labels. Labels equal to -1 are left out of the loss, and a task whose labels in a batch are all -1
    adds zero to it, never NaN.

    Example:

    ```python
    >>> from medic_hf import MedicForMultiTaskImageClassification
    >>> model = MedicForMultiTaskImageClassification.from_backbone("google/vit-base-patch16-224-in21k")
    >>> outputs = model(pixel_values)
    >>> outputs.disaster_types_logits.shape
    torch.Size([batch_size, 7])
    ```
    """

    def __init__(self, config: MedicConfig):
        super().__init__(config)
        self.backbone = create_backbone(config.backbone_config, config.pooling)
        if is_backbone_only(config.backbone_config) or config.hidden_size is None:
            config.hidden_size = built_feature_size(self.backbone, config.pooling)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.heads = nn.ModuleDict(
            {task: nn.Linear(config.hidden_size, config.num_labels_for(task)) for task in config.tasks}
        )
        self.uncertainty = UncertaintyWeighting(config.tasks) if config.loss_weighting == "uncertainty" else None
        self.has_class_token = has_class_token(self.backbone)
        self.backbone_frozen = False
        self.post_init()

    @classmethod
    def from_backbone(
        cls,
        backbone: str,
        *,
        tasks: list[str] | None = None,
        pooling: str = "auto",
        classifier_dropout: float = 0.0,
        task_weights: dict[str, float] | None = None,
        class_weights: dict[str, list[float]] | None = None,
        label_smoothing: float = 0.0,
        loss_weighting: str = "sum",
        **from_pretrained_kwargs,
    ) -> "MedicForMultiTaskImageClassification":
        """Build a model around pretrained backbone weights, with new randomly initialised heads.

        Args:
            backbone (`str`):
                Hub id or local folder of any vision checkpoint that `AutoModel` or `AutoBackbone` can load, such
                as `google/vit-base-patch16-224-in21k`, `microsoft/resnet-18` or a timm model saved by
                transformers (`timm/resnet18.a1_in1k`). Classification heads in the checkpoint are dropped.
            tasks, pooling, classifier_dropout, task_weights, class_weights, label_smoothing, loss_weighting:
                As in [`MedicConfig`].
            from_pretrained_kwargs:
                Passed to `AutoConfig.from_pretrained` and `AutoModel.from_pretrained` (`revision`, `cache_dir`, ...).
        """
        backbone_config = AutoConfig.from_pretrained(backbone, **from_pretrained_kwargs)
        config = MedicConfig(
            backbone_config=backbone_config,
            backbone=backbone,
            tasks=tasks,
            pooling=pooling,
            classifier_dropout=classifier_dropout,
            task_weights=task_weights,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            loss_weighting=loss_weighting,
        )
        model = cls(config)
        auto_class = AutoBackbone if is_backbone_only(backbone_config) else AutoModel
        model.backbone = auto_class.from_pretrained(
            backbone,
            config=backbone_config,
            **backbone_init_kwargs(backbone_config, pooling),
            **from_pretrained_kwargs,
        )
        return model

    def freeze_backbone(self) -> None:
        """Train the heads only (a linear probe): the backbone gets no gradients and stays in eval mode.

        Eval mode keeps batch-norm statistics and dropout of the backbone fixed during `model.train()`.
        """
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True) -> "MedicForMultiTaskImageClassification":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def forward(
        self,
        pixel_values: torch.Tensor,
        damage_severity_labels: torch.LongTensor | None = None,
        informative_labels: torch.LongTensor | None = None,
        humanitarian_labels: torch.LongTensor | None = None,
        disaster_types_labels: torch.LongTensor | None = None,
    ) -> MedicMultiTaskOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images prepared by the backbone's image processor.
            damage_severity_labels, informative_labels, humanitarian_labels, disaster_types_labels
                (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices per task, -1 where the example has no label for that task.
        """
        labels = {
            "damage_severity": damage_severity_labels,
            "informative": informative_labels,
            "humanitarian": humanitarian_labels,
            "disaster_types": disaster_types_labels,
        }
        features = self.dropout(self.pool(self.backbone(pixel_values=pixel_values)))

        logits = {task: self.heads[task](features) for task in self.config.tasks}
        loss = self.compute_loss(logits, labels)

        return MedicMultiTaskOutput(loss=loss, **{f"{task}_logits": value for task, value in logits.items()})

    def compute_loss(
        self, logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor | None]
    ) -> torch.Tensor | None:
        """Combine the tasks' masked cross-entropies as the config sets, or return `None` without labels."""
        class_weights = self.config.class_weights or {}
        task_losses, labelled = {}, {}
        for task, task_logits in logits.items():
            if labels[task] is None:
                continue
            task_losses[task] = masked_cross_entropy(
                task_logits, labels[task], class_weights.get(task), self.config.label_smoothing
            )
            labelled[task] = (labels[task] != MISSING_LABEL).any()
        if not task_losses:
            return None

        if self.uncertainty is not None:
            return self.uncertainty(task_losses, labelled)
        task_weights = self.config.task_weights or {}
        loss = None
        for task, task_loss in task_losses.items():
            weight = task_weights.get(task, 1.0)
            weighted = task_loss if weight == 1.0 else weight * task_loss
            loss = weighted if loss is None else loss + weighted
        return loss

    def pool(self, backbone_outputs: ModelOutput) -> torch.Tensor:
        """Reduce the backbone output to one feature vector per image, as `config.pooling` selects."""
        hidden = getattr(backbone_outputs, "last_hidden_state", None)
        if hidden is None:
            # `AutoBackbone` models return feature maps per stage: pool the last one.
            hidden = backbone_outputs.feature_maps[-1]
        pooler_output = getattr(backbone_outputs, "pooler_output", None)
        mode = self.config.pooling
        if mode == "auto":
            if pooler_output is not None:
                return pooler_output.flatten(1)
            mode = "cls" if hidden.dim() == 3 and self.has_class_token else "mean"

        backbone_name = type(self.backbone).__name__
        if mode == "pooler":
            if pooler_output is None:
                raise ValueError(
                    f"pooling='pooler' but the {backbone_name} backbone returns no `pooler_output`. "
                    "Use pooling='cls' or 'mean'."
                )
            return pooler_output.flatten(1)
        if mode == "cls":
            if hidden.dim() != 3:
                raise ValueError(
                    f"pooling='cls' needs a token sequence, but the {backbone_name} backbone returns "
                    f"a feature map of shape {tuple(hidden.shape)}. Use pooling='mean' or 'auto'."
                )
            if not self.has_class_token:
                raise ValueError(
                    f"pooling='cls' needs a class token, but the {backbone_name} backbone has none, so its first "
                    "token is an ordinary patch. Use pooling='mean' or 'auto'."
                )
            return hidden[:, 0]
        # Mean over spatial positions of a (batch, channels, height, width) map, or over tokens.
        return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)


# `save_pretrained` writes this file, the files it imports relatively and an `auto_map` entry, so that
# `AutoModel.from_pretrained(..., trust_remote_code=True)` works where medic_hf is not installed.
MedicForMultiTaskImageClassification.register_for_auto_class("AutoModel")

# Parameter names of a class token: `cls_token` in transformers ViT-like models and timm, `class_embedding` in CLIP.
CLASS_TOKEN_PATTERN = re.compile(r"(?:^|\.)(?:cls_token|class_embedding)$")


def has_class_token(backbone: nn.Module) -> bool:
    """Return whether the backbone prepends a learned class token to its patch tokens."""
    return any(CLASS_TOKEN_PATTERN.search(name) for name, _ in backbone.named_parameters())


def is_backbone_only(backbone_config: PreTrainedConfig) -> bool:
    """Return whether only `AutoBackbone` can build this config (detector backbones such as `rt_detr_resnet`)."""
    return type(backbone_config) not in MODEL_MAPPING and type(backbone_config) in MODEL_FOR_BACKBONE_MAPPING


def built_feature_size(backbone: nn.Module, pooling: str) -> int:
    """Read the width of the pooled features from a built backbone whose config does not state it."""
    channels = getattr(backbone, "channels", None)
    if channels:
        # `AutoBackbone` models: the channels of each returned stage.
        return channels[-1]
    timm_model = getattr(backbone, "timm_model", None)
    if timm_model is not None:
        # timm's pooled features (`forward_head(pre_logits=True)`) can be wider than `forward_features`.
        if pooling in ("auto", "pooler") and getattr(timm_model, "head_hidden_size", None):
            return timm_model.head_hidden_size
        return timm_model.num_features
    raise ValueError(
        f"Cannot find the feature size of the {type(backbone).__name__} backbone: its config has neither "
        "`hidden_sizes` nor `hidden_size`. Pass `hidden_size` to MedicConfig."
    )


def backbone_init_kwargs(backbone_config: PreTrainedConfig, pooling: str) -> dict:
    """Build backbones without their optional pooling layer (ViT, Swin, ...) unless the model pools through it.

    ViT's pooler is a trainable dense layer that the heads do not need. Swin's is a plain average, which
    `pooling="auto"` computes itself from the tokens.
    """
    if is_backbone_only(backbone_config):
        return {}
    model_class = MODEL_MAPPING[type(backbone_config)]
    if pooling != "pooler" and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


def create_backbone(backbone_config: PreTrainedConfig, pooling: str) -> PreTrainedModel:
    """Build a randomly initialised backbone. `from_pretrained` then fills in saved weights."""
    if is_backbone_only(backbone_config):
        return AutoBackbone.from_config(backbone_config)
    return AutoModel.from_config(backbone_config, **backbone_init_kwargs(backbone_config, pooling))
