"""Configuration of the MEDIC multi-task model: a vision backbone shared by one classification head per task."""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .labels import TASK_LABELS, TASKS


POOLING_MODES = ("auto", "cls", "mean", "pooler")


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
            How a feature vector is taken from the backbone output. `"cls"` takes the first token, `"mean"`
            averages over tokens or spatial positions, and `"pooler"` takes the backbone's `pooler_output`.
            `"auto"` takes the pooler output where the backbone returns one (ViT's trainable pooler is left out),
            else the first token of a token sequence, else the spatial average of a feature map.
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability applied to the pooled features before the heads.
        hidden_size (`int`, *optional*):
            Size of the pooled feature vector. Derived from `backbone_config` when not given.
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
    initializer_range: float = 0.02

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
            raise ValueError(f"`task_id2label` has no labels for task(s) {', '.join(missing)}. Add them or drop the task.")
        # JSON turns the integer keys into strings, so convert them back after loading.
        self.task_id2label = {
            task: {int(index): name for index, name in id2label[task].items()} for task in self.tasks
        }

        if self.pooling not in POOLING_MODES:
            raise ValueError(f"Invalid `pooling={self.pooling!r}`: choose one of {', '.join(POOLING_MODES)}.")
        if self.hidden_size is None:
            self.hidden_size = backbone_feature_size(self.backbone_config)

    @property
    def task_label2id(self) -> dict[str, dict[str, int]]:
        """For each task, the class name to class index map."""
        return {task: {name: index for index, name in labels.items()} for task, labels in self.task_id2label.items()}

    def num_labels_for(self, task: str) -> int:
        return len(self.task_id2label[task])


def backbone_feature_size(backbone_config: PreTrainedConfig) -> int:
    """Return the width of the backbone's final features: the last stage of a CNN, or the token size."""
    hidden_sizes = getattr(backbone_config, "hidden_sizes", None)
    if hidden_sizes:
        return hidden_sizes[-1]
    hidden_size = getattr(backbone_config, "hidden_size", None)
    if hidden_size is None:
        raise ValueError(
            f"Cannot find the feature size of the {type(backbone_config).__name__} backbone: its config has neither "
            "`hidden_sizes` nor `hidden_size`. Pass `hidden_size` to MedicConfig."
        )
    return hidden_size
