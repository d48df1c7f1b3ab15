"""One vision backbone shared by a linear classification head per MEDIC task."""

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput

from .configuration_medic import MedicConfig
from .labels import MISSING_LABEL, TASKS


@dataclass
class MedicMultiTaskOutput(ModelOutput):
    """Output of [`MedicForMultiTaskImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Sum over tasks of the mean cross-entropy of the labelled examples. Returned when labels are given.
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
        # The backbone is a PreTrainedModel and initialises itself, so only the heads reach this method.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            nn.init.zeros_(module.bias)


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
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.heads = nn.ModuleDict(
            {task: nn.Linear(config.hidden_size, config.num_labels_for(task)) for task in config.tasks}
        )
        self.post_init()

    @classmethod
    def from_backbone(
        cls,
        backbone: str,
        *,
        tasks: list[str] | None = None,
        pooling: str = "auto",
        classifier_dropout: float = 0.0,
        **from_pretrained_kwargs,
    ) -> "MedicForMultiTaskImageClassification":
        """Build a model around pretrained backbone weights, with new randomly initialised heads.

        Args:
            backbone (`str`):
                Hub id or local folder of any vision checkpoint `AutoModel` can load, such as
                `google/vit-base-patch16-224-in21k` or `microsoft/resnet-18`. Classification heads in the
                checkpoint are dropped.
            tasks, pooling, classifier_dropout:
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
        )
        model = cls(config)
        model.backbone = AutoModel.from_pretrained(
            backbone,
            config=backbone_config,
            **backbone_init_kwargs(backbone_config, pooling),
            **from_pretrained_kwargs,
        )
        return model

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

        loss = None
        for task, task_logits in logits.items():
            if labels[task] is None:
                continue
            task_loss = masked_cross_entropy(task_logits, labels[task])
            loss = task_loss if loss is None else loss + task_loss

        return MedicMultiTaskOutput(loss=loss, **{f"{task}_logits": value for task, value in logits.items()})

    def pool(self, backbone_outputs: ModelOutput) -> torch.Tensor:
        """Reduce the backbone output to one feature vector per image, as `config.pooling` selects."""
        hidden = backbone_outputs.last_hidden_state
        pooler_output = getattr(backbone_outputs, "pooler_output", None)
        mode = self.config.pooling
        if mode == "auto":
            if pooler_output is not None:
                return pooler_output.flatten(1)
            mode = "mean" if hidden.dim() == 4 else "cls"

        if mode == "pooler":
            if pooler_output is None:
                raise ValueError(
                    f"pooling='pooler' but the {type(self.backbone).__name__} backbone returns no `pooler_output`. "
                    "Use pooling='cls' or 'mean'."
                )
            return pooler_output.flatten(1)
        if mode == "cls":
            if hidden.dim() != 3:
                raise ValueError(
                    f"pooling='cls' needs a token sequence, but the {type(self.backbone).__name__} backbone returns "
                    f"a feature map of shape {tuple(hidden.shape)}. Use pooling='mean' or 'auto'."
                )
            return hidden[:, 0]
        # Mean over spatial positions of a (batch, channels, height, width) map, or over tokens.
        return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the examples whose label is not -1, and zero if there are none.

    PyTorch's mean reduction divides by zero when every label is ignored, so sum and divide by the count.
    The zero keeps its link to the graph, so every head gets a (zero) gradient in every step, which
    DistributedDataParallel needs.
    """
    labels = labels.to(logits.device).long()
    summed = F.cross_entropy(logits.float(), labels, ignore_index=MISSING_LABEL, reduction="sum")
    return summed / (labels != MISSING_LABEL).sum().clamp(min=1)


def backbone_init_kwargs(backbone_config, pooling: str) -> dict:
    """Drop the backbone's trainable pooler (ViT has one) unless the model pools through it."""
    model_class = MODEL_MAPPING[type(backbone_config)]
    if pooling != "pooler" and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


def create_backbone(backbone_config, pooling: str) -> PreTrainedModel:
    """Build a randomly initialised backbone. `from_pretrained` then fills in saved weights."""
    return AutoModel.from_config(backbone_config, **backbone_init_kwargs(backbone_config, pooling))
