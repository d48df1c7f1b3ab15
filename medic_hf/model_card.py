"""Write the model card (`README.md` with YAML metadata) of a trained MEDIC model."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .builder import MEDIC_CITATION, MEDIC_LICENSE
from .configuration_medic import MedicConfig
from .metrics import SCALAR_METRICS


TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
MEDIC_HUB_DATASET = "QCRI/MEDIC"

# How each scalar metric appears in `model-index`: the metric type the Hub recognizes, and its averaging.
METRIC_TYPES = {
    "accuracy": ("accuracy", None),
    "precision_weighted": ("precision", "weighted"),
    "recall_weighted": ("recall", "weighted"),
    "f1_weighted": ("f1", "weighted"),
    "f1_macro": ("f1", "macro"),
}


def create_model_card(
    config: MedicConfig,
    *,
    model_id: str,
    data_source: str | None,
    split_sizes: dict[str, int],
    hyperparameters: dict,
    results: dict[str, dict],
) -> ModelCard:
    """Build the card from the config, the data, the training settings and per-split metric results.

    Args:
        config: the trained model's config.
        model_id: the folder or Hub id the usage example loads from.
        data_source: the local MEDIC folder or archive trained on, or `None` for the official archive.
        split_sizes: examples per split, e.g. `{"train": 49353, ...}`.
        hyperparameters: training settings to list, name to value.
        results: per split (`"test"`, `"validation"`), the output of `metrics.compute_task_metrics`.
    """
    if data_source is None:
        dataset_description = "MEDIC, downloaded from its official archive"
        dataset_type, dataset_name = MEDIC_HUB_DATASET, "MEDIC"
    else:
        dataset_description = f"a MEDIC-format folder (`{Path(data_source).name}`)"
        dataset_type, dataset_name = "medic-format", Path(data_source).name

    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name=f"{task} classification",
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_config=task,
            dataset_split=split,
            metric_type=METRIC_TYPES[name][0],
            metric_value=round(task_results[name], 4),
            metric_name=f"{task} {name.replace('_', ' ')} ({split})",
            metric_args={"average": METRIC_TYPES[name][1]} if METRIC_TYPES[name][1] else None,
        )
        for split, split_results in results.items()
        for task, task_results in split_results["tasks"].items()
        if task_results["support"] > 0
        for name in SCALAR_METRICS
    ]
    card_data = ModelCardData(
        model_name=Path(model_id).name,
        license=MEDIC_LICENSE,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["medic", "disaster-response", "multi-task", "image-classification", config.backbone_config.model_type],
        datasets=[MEDIC_HUB_DATASET] if data_source is None else None,
        base_model=config.backbone if config.backbone and not Path(config.backbone).exists() else None,
        metrics=["accuracy", "precision", "recall", "f1"],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=Path(model_id).name,
        model_id=model_id,
        backbone=config.backbone or "a randomly initialised backbone",
        backbone_type=type(config.backbone_config).__name__.removesuffix("Config"),
        task_list=", ".join(config.tasks),
        task_labels={task: list(labels.values()) for task, labels in config.task_id2label.items()},
        dataset_description=dataset_description,
        split_sizes=split_sizes,
        hyperparameters=hyperparameters,
        results={split: table_rows(split_results) for split, split_results in results.items()},
        citation=MEDIC_CITATION.strip(),
    )


def table_rows(split_results: dict) -> list[dict]:
    """Format one split's per-task results as rounded table cells, with the majority-class accuracy."""
    rows = []
    for task, task_results in split_results["tasks"].items():
        if task_results["support"] == 0:
            continue
        class_counts = [sum(row) for row in task_results["confusion_matrix"]]
        row = {name: f"{task_results[name]:.4f}" for name in SCALAR_METRICS}
        row.update(task=task, support=task_results["support"], majority=f"{max(class_counts) / sum(class_counts):.4f}")
        rows.append(row)
    return rows
