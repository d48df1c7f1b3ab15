"""Write the model card (`README.md` with YAML metadata and confusion-matrix images) of a trained MEDIC model.

Training writes the card into the output folder with the folder as model id. `medic-hf push` writes it again
with the Hub repo id, from the files training left in the folder: `config.json`, `medic_metrics.json` and
`medic_training.json`.
"""

import json
import re
from pathlib import Path

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from .builder import MEDIC_CITATION, MEDIC_LICENSE
from .configuration_medic import MedicConfig
from .metrics import SCALAR_METRICS


TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
MEDIC_HUB_DATASET = "QCRI/MEDIC"
METRICS_FILE = "medic_metrics.json"
TRAINING_FILE = "medic_training.json"
FIGURES_DIR = "images"

# The split whose confusion matrices are drawn in the card.
FIGURE_SPLIT = "test"

# The `model-index` form of each scalar metric: the metric type the Hub recognizes, and its averaging.
METRIC_TYPES = {
    "accuracy": ("accuracy", None),
    "precision_weighted": ("precision", "weighted"),
    "recall_weighted": ("recall", "weighted"),
    "f1_weighted": ("f1", "weighted"),
    "f1_macro": ("f1", "macro"),
}

# A Hub repo id such as `QCRI/MEDIC`: one slash, no scheme.
HUB_ID_PATTERN = re.compile(r"^[\w.-]+/[\w.-]+$")


def create_model_card(
    config: MedicConfig,
    *,
    model_id: str,
    data_source: str | None,
    split_sizes: dict[str, int],
    hyperparameters: dict,
    results: dict[str, dict],
    recipe: dict | None = None,
    figures: dict[str, str] | None = None,
    data_notes: list[str] | None = None,
) -> ModelCard:
    """Build the card from the config, the data, the training settings and per-split metric results.

    Args:
        config: the trained model's config.
        model_id: the folder or Hub id the usage examples load from.
        data_source: what `medic-hf train` loaded MEDIC from (a folder, an archive, a URL or a Hub dataset id),
            or `None` for the official archive.
        split_sizes: examples per split, e.g. `{"train": 49353, ...}`.
        hyperparameters: training settings to list, name to value.
        results: per split (`"test"`, `"validation"`), the output of `metrics.compute_task_metrics`.
        recipe: the model and loss options of the run, as `training.training_recipe` returns them.
        figures: per task, the path of its confusion-matrix image relative to the card.
        data_notes: sentences on problems in the training data, such as skipped rows or images in two splits.
    """
    dataset_description, dataset_type, dataset_name, hub_datasets = describe_data_source(data_source)
    recipe = recipe or {}
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
        model_name=model_name(model_id),
        license=MEDIC_LICENSE,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["medic", "disaster-response", "multi-task", "image-classification", config.backbone_config.model_type],
        datasets=hub_datasets,
        base_model=config.backbone if is_hub_id(config.backbone) else None,
        metrics=["accuracy", "precision", "recall", "f1"],
        eval_results=eval_results or None,
    )
    tables = {split: table_rows(split_results) for split, split_results in results.items()}
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name(model_id),
        model_id=model_id,
        backbone=config.backbone or "a randomly initialised backbone",
        backbone_type=type(config.backbone_config).__name__.removesuffix("Config"),
        task_list=", ".join(config.tasks),
        num_tasks=len(config.tasks),
        task_labels={task: list(labels.values()) for task, labels in config.task_id2label.items()},
        dataset_description=dataset_description,
        official_data=data_source is None or is_hub_id(data_source),
        warnings=describe_warnings(split_sizes, results.get(FIGURE_SPLIT)) + list(data_notes or []),
        data_notes=data_notes or [],
        split_sizes=split_sizes,
        hyperparameters=hyperparameters,
        recipe_lines=describe_recipe(config, recipe),
        results=tables,
        majority_baselines=tables.get(FIGURE_SPLIT, []),
        figure_split=FIGURE_SPLIT,
        figures=figures or {},
        citation=MEDIC_CITATION.strip(),
    )


def model_name(model_id: str) -> str:
    return Path(model_id).name


def is_hub_id(name: str | None) -> bool:
    """Return whether `name` looks like a Hub repo id (`namespace/name`) and is not a local path."""
    return bool(name) and HUB_ID_PATTERN.match(name) is not None and not Path(name).exists()


def describe_data_source(data_source: str | None) -> tuple[str, str, str, list[str] | None]:
    """Return the prose description, the `model-index` dataset type and name, and the card's `datasets` list."""
    if data_source is None:
        return "MEDIC, downloaded from its official archive", MEDIC_HUB_DATASET, "MEDIC", [MEDIC_HUB_DATASET]
    if is_hub_id(data_source):
        return f"MEDIC from the Hub dataset `{data_source}`", data_source, "MEDIC", [data_source]
    name = Path(data_source).name or data_source
    return f"a MEDIC-format copy (`{name}`)", "medic-format", name, None


def describe_recipe(config: MedicConfig, recipe: dict) -> list[str]:
    """Describe the model and loss options of the run as sentences for the card's training section."""
    lines = [f"Pooling: `{config.pooling}`. Classifier dropout: {config.classifier_dropout}."]
    if recipe.get("freeze_backbone"):
        lines.append("The backbone was frozen and only the heads were trained (a linear probe).")
    if recipe.get("layer_decay") is not None:
        lines.append(
            f"Layer-wise learning-rate decay {recipe['layer_decay']}: each transformer block learns at that factor "
            "times the rate of the block above it, and the heads at the full rate."
        )
    if config.loss_weighting == "uncertainty":
        loss = (
            "Loss: the tasks' cross-entropies weighted by learned homoscedastic uncertainty (Kendall, Gal and "
            "Cipolla, 2018), `exp(-s) * L + s / 2` per task."
        )
        learned = recipe.get("learned_task_weights")
        if learned:
            loss += (
                " Learned weights `exp(-s)` at the end: "
                + ", ".join(f"{task} {weight:.3f}" for task, weight in learned.items())
                + "."
            )
    elif config.task_weights:
        loss = (
            "Loss: the weighted sum of the tasks' cross-entropies, with weights "
            + ", ".join(f"{task} {config.task_weights.get(task, 1.0)}" for task in config.tasks)
            + "."
        )
    else:
        loss = "Loss: the plain sum of the tasks' cross-entropies."
    lines.append(loss)
    if config.class_weights:
        parts = []
        for task in (task for task in config.tasks if task in config.class_weights):
            weights = config.class_weights[task]
            labels = config.task_id2label[task]
            parts.append(
                f"{task} " + ", ".join(f"{labels[index]} {weight:.3f}" for index, weight in enumerate(weights))
            )
        lines.append(
            "Class weights (`balanced`: inversely proportional to class frequency in the training split): "
            + "; ".join(parts)
            + "."
        )
    if config.label_smoothing:
        lines.append(f"Label smoothing: {config.label_smoothing}.")
    return lines


# Training sets smaller than this get a warning that the model is a demonstration. MEDIC's train split
# has 49,353 images.
SMALL_TRAINING_SET = 1_000


def describe_warnings(split_sizes: dict[str, int], split_results: dict | None) -> list[str]:
    """List what a reader must know before using the model: a tiny training set, no gain over the baseline."""
    warnings = []
    train_size = split_sizes.get("train", 0)
    if train_size < SMALL_TRAINING_SET:
        warnings.append(
            f"Trained on {train_size} images, far fewer than MEDIC's 49,353: a demonstration of the pipeline, "
            "not a model for use. Its scores on so few test images are also unstable."
        )
    if not split_results:
        return warnings
    scored = {task: results for task, results in split_results["tasks"].items() if results["support"] > 0}
    at_baseline, single_class = [], []
    for task, results in scored.items():
        matrix = results["confusion_matrix"]
        class_counts = [sum(row) for row in matrix]
        if results["accuracy"] <= max(class_counts) / sum(class_counts):
            at_baseline.append(task)
        predicted_classes = [column for column in range(len(matrix)) if any(row[column] for row in matrix)]
        if len(predicted_classes) == 1:
            single_class.append(task)
    if at_baseline:
        warnings.append(
            f"On the {FIGURE_SPLIT} split, the model scores no better than always predicting the most frequent "
            f"class on: {', '.join(at_baseline)}."
        )
    if single_class:
        warnings.append(
            f"The model predicts the same class for every {FIGURE_SPLIT} image on: {', '.join(single_class)}."
        )
    return warnings


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


def save_confusion_matrices(
    folder: Path, results: dict[str, dict], id2label: dict[str, dict[int, str]], split: str = FIGURE_SPLIT
) -> dict[str, str]:
    """Draw one PNG confusion matrix per task of `split` into `folder/images`.

    Returns:
        Per task, the image path relative to `folder`, for the card to embed.
    """
    if split not in results:
        return {}
    (folder / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    figures = {}
    for task, task_results in results[split]["tasks"].items():
        if task_results["support"] == 0:
            continue
        labels = [id2label[task][index] for index in range(len(id2label[task]))]
        size = 2.5 + 0.75 * len(labels)
        # A bare Figure uses no pyplot state or GUI backend, so this is safe in any process or thread.
        figure = Figure(figsize=(size, size))
        axes = figure.subplots()
        display = ConfusionMatrixDisplay(np.asarray(task_results["confusion_matrix"]), display_labels=labels)
        display.plot(ax=axes, cmap="Blues", colorbar=False, xticks_rotation=45, values_format="d")
        # Anchor the slanted class names at their tick, so long names do not drift left of their column.
        for tick_label in axes.get_xticklabels():
            tick_label.set_horizontalalignment("right")
            tick_label.set_rotation_mode("anchor")
        axes.set_title(f"{task} ({split} split, n={task_results['support']})")
        relative_path = f"{FIGURES_DIR}/confusion_matrix_{split}_{task}.png"
        figure.savefig(folder / relative_path, dpi=100, bbox_inches="tight")
        figures[task] = relative_path
    return figures


def write_model_card(folder: str | Path, model_id: str | None = None, output_folder: str | Path | None = None) -> Path:
    """Write README.md and the confusion-matrix images for the model saved in `folder`.

    Args:
        folder: a folder written by `medic-hf train`, with `config.json`, `medic_metrics.json` and
            `medic_training.json`.
        model_id: the folder or Hub repo id the card's examples load from. Defaults to `folder`.
        output_folder: where to write the card and images. Defaults to `folder`.

    Returns:
        The path of the card.

    Raises:
        FileNotFoundError: if one of the three files is missing.
    """
    folder = Path(folder)
    output_folder = Path(output_folder) if output_folder is not None else folder
    missing = [name for name in ("config.json", METRICS_FILE, TRAINING_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Cannot write a model card for {folder}: {', '.join(missing)} not found. Point to a folder written by "
            "`medic-hf train`."
        )
    config = MedicConfig.from_pretrained(folder)
    results = json.loads((folder / METRICS_FILE).read_text())
    training = json.loads((folder / TRAINING_FILE).read_text())

    figures = save_confusion_matrices(output_folder, results, config.task_id2label)
    card = create_model_card(
        config,
        model_id=model_id or str(folder),
        data_source=training.get("data_source"),
        split_sizes=training.get("split_sizes", {}),
        hyperparameters=training.get("hyperparameters", {}),
        results=results,
        recipe=training.get("recipe"),
        figures=figures,
        data_notes=training.get("data_notes", []),
    )
    card_path = output_folder / "README.md"
    card.save(card_path)
    return card_path
