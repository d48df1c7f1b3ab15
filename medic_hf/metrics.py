"""Per-task MEDIC metrics and their mean over tasks, for `Trainer` and for reports."""

from functools import lru_cache
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

from .labels import MISSING_LABEL


METRIC_MODULE = Path(__file__).parent / "metric_module" / "medic_multitask.py"

# Scalar metrics reported per task and averaged over tasks, in table order.
SCALAR_METRICS = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "f1_macro")

# The metric `medic-hf train` selects checkpoints by: the mean over tasks of the macro-F1.
BEST_MODEL_METRIC = "mean_f1_macro"


@lru_cache(maxsize=1)
def load_metric() -> evaluate.EvaluationModule:
    """Load the local `evaluate` module. Hub metrics cannot load offline, and this one needs no network."""
    return evaluate.load(str(METRIC_MODULE), keep_in_memory=True)


def compute_task_metrics(
    predictions: dict[str, np.ndarray], references: dict[str, np.ndarray], num_labels: dict[str, int]
) -> dict:
    """Score each task on its labelled examples and average the scalar metrics over the tasks.

    Args:
        predictions: per task, predicted class indices of shape `(num_examples,)`.
        references: per task, true class indices, -1 where the example has no label for that task.
        num_labels: per task, the number of classes, so the confusion matrix has a row for every class.

    Returns:
        `{"tasks": {task: {...metrics}}, "mean": {metric: value}}`. A task with no labelled example is left
        out of both, and its entry in `tasks` is `{"support": 0}`.
    """
    metric = load_metric()
    per_task = {}
    for task, task_predictions in predictions.items():
        task_references = np.asarray(references[task])
        labelled = task_references != MISSING_LABEL
        if not labelled.any():
            per_task[task] = {"support": 0}
            continue
        per_task[task] = metric.compute(
            predictions=np.asarray(task_predictions)[labelled].tolist(),
            references=task_references[labelled].tolist(),
            labels=list(range(num_labels[task])),
        )
    scored = [results for results in per_task.values() if results["support"] > 0]
    mean = {name: float(np.mean([results[name] for results in scored])) for name in SCALAR_METRICS} if scored else {}
    return {"tasks": per_task, "mean": mean}


def flatten_metrics(results: dict) -> dict[str, float]:
    """Turn `compute_task_metrics` output into flat scalar keys such as `humanitarian_f1_macro`."""
    flat = {f"mean_{name}": value for name, value in results["mean"].items()}
    for task, task_results in results["tasks"].items():
        for name in (*SCALAR_METRICS, "support"):
            if name in task_results:
                flat[f"{task}_{name}"] = task_results[name]
    return flat


def create_compute_metrics(tasks: list[str], num_labels: dict[str, int]):
    """Build a `Trainer` `compute_metrics` function for a model with the given tasks.

    `Trainer` passes the logits in the model output's field order and the labels in `label_names` order,
    and `medic-hf train` sets both to the order of `tasks`.
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions, references = split_by_task(tasks, eval_prediction.predictions, eval_prediction.label_ids)
        return flatten_metrics(compute_task_metrics(predictions, references, num_labels))

    return compute_metrics


def split_by_task(tasks: list[str], logits, labels) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Turn `Trainer` logits and labels (tuples in task order) into predicted and true indices per task."""
    # Trainer unwraps one-element tuples, so a single-task model gives bare arrays.
    logits = logits if isinstance(logits, tuple) else (logits,)
    labels = labels if isinstance(labels, tuple) else (labels,)
    predictions = {task: np.argmax(task_logits, axis=-1) for task, task_logits in zip(tasks, logits)}
    return predictions, dict(zip(tasks, labels))


def format_table(results: dict, id2label: dict[str, dict[int, str]] | None = None) -> str:
    """Render per-task results as a plain-text table, one row per task and a mean row."""
    header = f"{'task':<16} {'n':>6} " + " ".join(f"{name:>18}" for name in SCALAR_METRICS)
    lines = [header, "-" * len(header)]
    for task, task_results in results["tasks"].items():
        if task_results["support"] == 0:
            lines.append(f"{task:<16} {0:>6}  (no labelled examples)")
            continue
        values = " ".join(f"{task_results[name]:>18.4f}" for name in SCALAR_METRICS)
        lines.append(f"{task:<16} {task_results['support']:>6} {values}")
    if results["mean"]:
        values = " ".join(f"{results['mean'][name]:>18.4f}" for name in SCALAR_METRICS)
        lines.append(f"{'mean':<16} {'':>6} {values}")
    return "\n".join(lines)
