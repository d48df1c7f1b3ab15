"""MEDIC, the multi-task dataset of disaster images from social media, for the Hugging Face ecosystem."""

from transformers import AutoConfig, AutoModel

from .configuration_medic import MedicConfig
from .errors import MedicDataError, MedicUsageError
from .labels import MISSING_LABEL, TASK_LABELS, TASKS
from .loading import load_medic
from .modeling_medic import MedicForMultiTaskImageClassification, MedicMultiTaskOutput


__version__ = "0.1.0"

AutoConfig.register(MedicConfig.model_type, MedicConfig, exist_ok=True)
AutoModel.register(MedicConfig, MedicForMultiTaskImageClassification, exist_ok=True)

__all__ = [
    "MISSING_LABEL",
    "TASKS",
    "TASK_LABELS",
    "MedicConfig",
    "MedicDataError",
    "MedicUsageError",
    "MedicForMultiTaskImageClassification",
    "MedicMultiTaskOutput",
    "load_medic",
]
