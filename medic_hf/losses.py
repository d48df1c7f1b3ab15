"""Loss functions of the MEDIC multi-task model: masked cross-entropy per task and learned task weighting.

This module is saved next to the model code by `save_pretrained`, so it imports nothing from medic_hf
except through relative imports.
"""

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .labels import MISSING_LABEL


def masked_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy over the examples whose label is not -1, and zero if there are none.

    With `class_weights`, each example counts with the weight of its true class and the mean divides by the
    sum of those weights, as `torch.nn.functional.cross_entropy` does with `reduction="mean"`. PyTorch's mean
    divides by zero when every label is ignored, so this function sums and divides itself. The zero keeps
    its link to the graph, so every head gets a (zero) gradient in every step, which DistributedDataParallel
    needs.

    Args:
        logits (`torch.Tensor` of shape `(batch_size, num_classes)`):
            Scores before softmax.
        labels (`torch.Tensor` of shape `(batch_size,)`):
            Class indices, -1 where the example has no label.
        class_weights (`Sequence[float]`, *optional*):
            One weight per class.
        label_smoothing (`float`, *optional*, defaults to 0.0):
            Share of the target probability spread uniformly over all classes, as in PyTorch.
    """
    labels = labels.to(logits.device).long()
    labelled = labels != MISSING_LABEL
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=torch.float32, device=logits.device)
    summed = F.cross_entropy(
        logits.float(),
        labels,
        weight=weight,
        ignore_index=MISSING_LABEL,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    if weight is None:
        denominator = labelled.sum().float()
    else:
        denominator = (weight[labels.clamp(min=0)] * labelled).sum()
    return summed / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


class UncertaintyWeighting(nn.Module):
    """Task weights learned from each task's homoscedastic uncertainty (Kendall, Gal and Cipolla, CVPR 2018).

    Each task has a learned log-variance `s = log(sigma^2)`, initialised to 0. For a classification task the
    paper's objective is `L / sigma^2 + log(sigma)`, which is `exp(-s) * L + s / 2`. A task with no labelled
    example in the batch adds neither term, so its variance is not pushed down by batches that cannot
    inform it.
    """

    def __init__(self, tasks: Sequence[str]):
        super().__init__()
        self.tasks = list(tasks)
        self.log_variances = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, task_losses: dict[str, torch.Tensor], labelled: dict[str, torch.Tensor]) -> torch.Tensor:
        """Combine per-task losses.

        Args:
            task_losses: per task, the mean loss of the batch (tasks without labels in the batch are absent).
            labelled: per task, a 0-dimensional boolean tensor that is true when the batch has a labelled example.
        """
        total = None
        for index, task in enumerate(self.tasks):
            if task not in task_losses:
                continue
            log_variance = self.log_variances[index]
            term = torch.exp(-log_variance) * task_losses[task] + 0.5 * log_variance * labelled[task].float()
            total = term if total is None else total + term
        return total

    def task_weights(self) -> dict[str, float]:
        """Current weight `exp(-s)` of each task's loss."""
        return {
            task: float(torch.exp(-value)) for task, value in zip(self.tasks, self.log_variances.detach(), strict=True)
        }


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """Class weights inversely proportional to class frequency, as scikit-learn's `class_weight="balanced"`.

    Over the labelled examples (label not -1), class `c` gets `n_examples / (n_present_classes * count_c)`. A
    class absent from `labels` never is a target, so its weight only matters for label smoothing. It gets 1.

    Raises:
        ValueError: if `labels` has no labelled example or a label outside `[-1, num_classes)`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    labelled = labels[labels != MISSING_LABEL]
    if labelled.size == 0:
        raise ValueError("Cannot compute balanced class weights: no example has a label for this task.")
    if labelled.min() < 0 or labelled.max() >= num_classes:
        bad = labelled[(labelled < 0) | (labelled >= num_classes)][0]
        raise ValueError(f"Invalid label {bad}: expected -1 or a class index in [0, {num_classes}).")
    counts = np.bincount(labelled, minlength=num_classes)
    present = counts > 0
    weights = np.ones(num_classes, dtype=np.float64)
    weights[present] = labelled.size / (present.sum() * counts[present])
    return [float(weight) for weight in weights]
