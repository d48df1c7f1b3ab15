"""Configuration of the MEDIC multi-task model: a vision backbone shared by one classification head per task."""

import copy

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .labels import TASK_LABELS, TASKS


POOLING_MODES = ("auto", "cls", "mean", "pooler")
LOSS_WEIGHTINGS = ("sum", "uncertainty")

# The custom pipeline saved with every model: `pipeline(model=folder_or_repo, trust_remote_code=True)` reads this
# entry of config.json and loads the class from the pipeline_medic.py file saved next to it.
CUSTOM_PIPELINES = {
    "image-classification": {
        "impl": "pipeline_medic.MedicImageClassificationPipeline",
        "pt": ["AutoModel"],
        "type": "image",
    }
}


class MedicConfig(PreTrainedConfig):
    r"""
    Configuration for [`MedicForMultiTaskImageClassification`].

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the vision backbone, any model that `AutoModel` can build. Defaults to a ViT-Base config.
        backbone (`str`, *optional*):
            Hub id or local folder the backbone weights came from, recorded for model cards.
        tasks (`list[str]`, *optional*):
            Tasks to predict, a subset of `damage_severity`, `informative`, `humanitarian` and `disaster_types`.
            Kept in that order. Defaults to all four.
        task_id2label (`dict[str, dict[int, str]]`, *optional*):
            For each task, the class index to class name map. Defaults to MEDIC's classes in sorted order.
        pooling (`str`, *optional*, defaults to `"auto"`):
            How a feature vector is taken from the backbone output. `"cls"` takes the class token, `"mean"`
            averages over tokens or spatial positions, and `"pooler"` takes the backbone's `pooler_output`.
            `"auto"` takes the pooler output where the backbone returns one, else the class token of a token
            sequence that has one, else the mean. Backbones whose pooling layer is optional (ViT, Swin, ...) are
            built without it unless `pooling="pooler"`. So `"auto"` gives the class token for ViT, the mean
            token for Swin, the global average for ResNet and ConvNeXt, and the pooled features of timm models.
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability applied to the pooled features before the heads.
        hidden_size (`int`, *optional*):
            Size of the pooled feature vector. Derived from `backbone_config` when not given, or from the built
            backbone for timm models and `AutoBackbone` backbones.
        task_weights (`dict[str, float]`, *optional*):
            Multiplier of each task's loss, 1 for tasks left out. The default loss is the plain sum over tasks.
        class_weights (`dict[str, list[float]]`, *optional*):
            For some tasks, one weight per class in the cross-entropy (see `losses.balanced_class_weights`).
        label_smoothing (`float`, *optional*, defaults to 0.0):
            Label smoothing of every task's cross-entropy, in `[0, 1)`.
        loss_weighting (`str`, *optional*, defaults to `"sum"`):
            `"sum"` adds the tasks' losses (times `task_weights`). `"uncertainty"` learns one weight per task from
            its homoscedastic uncertainty (Kendall, Gal and Cipolla, 2018) and cannot be combined with
            `task_weights`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of the heads.

    Example:

    ```python
    >>> from transformers import ViTConfig
    >>> from medic_hf import MedicConfig, MedicForMultiTaskImageClassification

    >>> config = MedicConfig(backbone_config=ViTConfig(image_size=32, patch_size=4, num_hidden_layers=2))
    >>> model = MedicForMultiTaskImageClassification(config)
    >>> config.task_id2label["informative"]
    {0: 'informative', 1: 'not_informative'}
    ```
    """

    model_type = "medic_multitask"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="vit")}

    backbone_config: dict | PreTrainedConfig | None = None
    backbone: str | None = None
    tasks: list[str] | None = None
    task_id2label: dict | None = None
    pooling: str = "auto"
    classifier_dropout: float = 0.0
    hidden_size: int | None = None
    task_weights: dict[str, float] | None = None
    class_weights: dict[str, list[float]] | None = None
    label_smoothing: float = 0.0
    loss_weighting: str = "sum"
    initializer_range: float = 0.02
    custom_pipelines: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)

        tasks = list(TASKS) if self.tasks is None else list(self.tasks)
        unknown = [task for task in tasks if task not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"Invalid `tasks={tasks!r}`: choose one or more of {', '.join(TASKS)}.")
        self.tasks = [task for task in TASKS if task in tasks]

        id2label = self.task_id2label or {task: dict(enumerate(TASK_LABELS[task])) for task in self.tasks}
        missing = [task for task in self.tasks if task not in id2label]
        if missing:
            raise ValueError(
                f"`task_id2label` has no labels for task(s) {', '.join(missing)}. Add them or drop the task."
            )
        # JSON turns the integer keys into strings, so convert them back after loading.
        self.task_id2label = {
            task: {int(index): name for index, name in id2label[task].items()} for task in self.tasks
        }

        if self.pooling not in POOLING_MODES:
            raise ValueError(f"Invalid `pooling={self.pooling!r}`: choose one of {', '.join(POOLING_MODES)}.")
        if self.hidden_size is None:
            self.hidden_size = backbone_feature_size(self.backbone_config)
        self.validate_loss_options()
        if not self.custom_pipelines:
            self.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)

    def validate_loss_options(self) -> None:
        """Check the loss options against the tasks, and convert JSON-loaded values back to numbers."""
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(
                f"Invalid `loss_weighting={self.loss_weighting!r}`: choose one of {', '.join(LOSS_WEIGHTINGS)}."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"Invalid `label_smoothing={self.label_smoothing!r}`: give a value in [0, 1).")

        if self.task_weights is not None:
            if self.loss_weighting == "uncertainty":
                raise ValueError(
                    "`task_weights` and `loss_weighting='uncertainty'` are both set, but uncertainty weighting "
                    "learns the task weights. Drop one of them."
                )
            unknown = [task for task in self.task_weights if task not in self.tasks]
            if unknown:
                raise ValueError(
                    f"`task_weights` names task(s) {', '.join(unknown)} that the model does not predict. "
                    f"Give weights for {', '.join(self.tasks)} only."
                )
            self.task_weights = {task: float(weight) for task, weight in self.task_weights.items()}
            invalid = {task: weight for task, weight in self.task_weights.items() if not weight >= 0.0}
            if invalid or not any(self.task_weights.get(task, 1.0) > 0 for task in self.tasks):
                raise ValueError(
                    f"Invalid `task_weights={self.task_weights!r}`: weights must be zero or positive, and at least "
                    "one task needs a positive weight."
                )

        if self.class_weights is not None:
            for task, weights in self.class_weights.items():
                if task not in self.tasks:
                    raise ValueError(
                        f"`class_weights` names task {task!r} that the model does not predict. "
                        f"Give weights for {', '.join(self.tasks)} only."
                    )
                values = [float(weight) for weight in weights]
                if len(values) != self.num_labels_for(task) or not (min(values) >= 0.0 and max(values) > 0.0):
                    raise ValueError(
                        f"Invalid `class_weights[{task!r}]={weights!r}`: give {self.num_labels_for(task)} weights, one "
                        f"per class of {task} in index order, zero or positive with at least one positive."
                    )
            self.class_weights = {task: [float(w) for w in weights] for task, weights in self.class_weights.items()}

    @property
    def task_label2id(self) -> dict[str, dict[str, int]]:
        """For each task, the class name to class index map."""
        return {task: {name: index for index, name in labels.items()} for task, labels in self.task_id2label.items()}

    def num_labels_for(self, task: str) -> int:
        return len(self.task_id2label[task])


def backbone_feature_size(backbone_config: PreTrainedConfig) -> int | None:
    """Return the width of the backbone's final features: the last stage of a CNN, or the token size.

    Returns `None` when the config has neither `hidden_sizes` nor `hidden_size` (timm models): the model then
    reads the width from the built backbone.
    """
    hidden_sizes = getattr(backbone_config, "hidden_sizes", None)
    if hidden_sizes:
        return hidden_sizes[-1]
    return getattr(backbone_config, "hidden_size", None)


# `save_pretrained` writes this file and an `auto_map` entry, so that `AutoConfig.from_pretrained(...,
# trust_remote_code=True)` works where medic_hf is not installed.
MedicConfig.register_for_auto_class()
