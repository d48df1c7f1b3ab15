"""`medic-hf train`: fine-tune one shared backbone with four heads on MEDIC with the transformers `Trainer`.

Every `TrainingArguments` option is accepted on the command line, so the command runs as it is on one CPU
or GPU and under `accelerate launch` or `torchrun` on several.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from transformers import (
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from .backbones import load_image_processor
from .builder import summarize_reasons
from .configuration_medic import LOSS_WEIGHTINGS
from .errors import MedicUsageError
from .hub import push_model_folder
from .labels import TASK_LABELS, TASKS, label_column
from .loading import SKIPPED_ROWS_FILE, load_medic
from .losses import balanced_class_weights
from .metrics import (
    BEST_MODEL_METRIC,
    compute_task_metrics,
    create_compute_metrics,
    flatten_metrics,
    format_table,
    split_by_task,
)
from .model_card import TRAINING_FILE, write_model_card
from .modeling_medic import MedicForMultiTaskImageClassification
from .optimization import backbone_layer_ids, create_parameter_groups
from .transforms import MedicTransform


logger = logging.getLogger(__name__)

METRICS_FILE = "medic_metrics.json"


@dataclass
class ModelArguments:
    backbone: str = field(
        default="microsoft/resnet-18",
        metadata={
            "help": "Hub id or local folder of the vision backbone (any model AutoModel or AutoBackbone can load, "
            "including timm models such as timm/resnet18.a1_in1k) and its image processor. The default is the "
            "ResNet-18 the MEDIC authors used as their reference."
        },
    )
    tasks: list[str] | None = field(
        default=None,
        metadata={
            "help": "Tasks to train, one or more of damage_severity, informative, humanitarian and disaster_types "
            "(default: all four). One task trains a single-task baseline."
        },
    )
    pooling: str = field(
        default="auto",
        metadata={
            "help": "How to pool backbone features: auto (class token for ViT-like models, mean token for Swin, "
            "global average for CNNs), cls, mean or pooler.",
            "choices": ["auto", "cls", "mean", "pooler"],
        },
    )
    classifier_dropout: float = field(default=0.0, metadata={"help": "Dropout probability before the heads."})
    freeze_backbone: bool = field(
        default=False,
        metadata={"help": "Train the heads only, with the backbone frozen in eval mode (a linear probe)."},
    )
    task_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Loss weight per task as TASK=WEIGHT pairs, e.g. `damage_severity=2 informative=0.5`. Tasks "
            "left out weigh 1."
        },
    )
    class_weights: str = field(
        default="none",
        metadata={
            "help": "none, or balanced: weigh each class in the cross-entropy by n / (n_classes * count) in the "
            "training split.",
            "choices": ["none", "balanced"],
        },
    )
    loss_weighting: str = field(
        default="sum",
        metadata={
            "help": "sum: add the tasks' losses (times --task_weights). uncertainty: learn the task weights from "
            "each task's uncertainty (Kendall, Gal and Cipolla, 2018) and log them.",
            "choices": list(LOSS_WEIGHTINGS),
        },
    )
    model_cache_dir: str | None = field(
        default=None, metadata={"help": "Where to cache backbone weights downloaded from the Hub."}
    )

    def __post_init__(self):
        if self.tasks is not None:
            unknown = [task for task in self.tasks if task not in TASKS]
            if unknown or not self.tasks:
                raise ValueError(
                    f"Invalid `--tasks {' '.join(self.tasks)}`: choose one or more of {', '.join(TASKS)}."
                )
        if self.task_weights is not None:
            self.task_weights = parse_task_weights(self.task_weights)

    def loss_options(self) -> dict:
        """Return the `MedicConfig` loss options, except class weights, which need the training split."""
        return {"task_weights": self.task_weights, "loss_weighting": self.loss_weighting}


def parse_task_weights(pairs: list[str] | dict[str, float]) -> dict[str, float]:
    """Parse `TASK=WEIGHT` strings, as given on the command line, into a dict."""
    if isinstance(pairs, dict):
        return pairs
    weights = {}
    for pair in pairs:
        task, separator, value = pair.partition("=")
        if not separator or task not in TASKS:
            raise ValueError(
                f"Invalid `--task_weights` entry {pair!r}: write TASK=WEIGHT with TASK one of {', '.join(TASKS)}."
            )
        try:
            weights[task] = float(value)
        except ValueError:
            raise ValueError(f"Invalid `--task_weights` entry {pair!r}: {value!r} is not a number.") from None
    return weights


def source_field():
    """Build the `--source` option (alias `--data_dir`) that `train` and `evaluate` share."""
    return field(
        default=None,
        metadata={
            "aliases": ["--data_dir"],
            "help": "MEDIC folder (with the MEDIC_*.tsv files), MEDIC.tar.gz (path or URL), a folder written by "
            "`medic-hf prepare`, or a Hub dataset repo id such as QCRI/MEDIC. Leave out to download the official archive.",
        },
    )


@dataclass
class DataArguments:
    source: str | None = source_field()
    on_bad_row: str = field(
        default="raise",
        metadata={
            "help": "raise: stop at the first bad TSV row. skip: skip rows with an unknown label, a missing or "
            "unreadable image or a wrong field count, and list them in skipped_rows.jsonl in the output folder.",
            "choices": ["raise", "skip"],
        },
    )
    dataset_cache_dir: str | None = field(
        default=None, metadata={"help": "Where datasets keeps the prepared Arrow files. Default: the datasets cache."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N training examples only, for quick runs."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N validation and test examples only."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Threads that decode images to check them while the dataset is prepared."}
    )

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"Invalid `--{name} {value}`: give a positive number of examples or leave it out.")


@dataclass
class MedicTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults for MEDIC: evaluate and save each epoch, keep the best mean macro-F1."""

    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint: no, steps or epoch."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Load the checkpoint with the best `metric_for_best_model` after training."}
    )
    metric_for_best_model: str | None = field(
        default=BEST_MODEL_METRIC,
        metadata={"help": "Validation metric that picks the best checkpoint; the default is the mean macro-F1."},
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints to keep besides the best one."}
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: images are decoded on the fly from the `image` column."},
    )
    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise learning-rate decay for ViT-like backbones, a factor in (0, 1] such as 0.75: block i "
            "(1 to L) learns at learning_rate * layer_decay ** (L + 1 - i), the embeddings at "
            "learning_rate * layer_decay ** (L + 1), the heads at learning_rate."
        },
    )
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "After training, upload the output folder with its model card to the Hub repo --hub_model_id "
            "(default: the output folder's name), in one commit from the main process. Checkpoints are not uploaded."
        },
    )
    # Set from `push_to_hub`, which is then turned off so that `Trainer` neither uploads checkpoints nor writes
    # its own model card over the MEDIC one.
    push_after_training: bool = field(default=False, init=False)

    def __post_init__(self):
        # torchrun and `accelerate launch --multi_gpu` start several processes even without a GPU, but
        # accelerate only joins them into one CPU process group when the CPU is requested.
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not self.use_cpu and not torch.accelerator.is_available():
            logger.info("No GPU found: running the distributed processes on the CPU (`--use_cpu True`).")
            self.use_cpu = True
        if self.use_cpu or not torch.accelerator.is_available():
            # Pinned memory only speeds up copies to an accelerator; without one PyTorch warns on every loader.
            self.dataloader_pin_memory = False
        if self.output_dir is None:
            raise ValueError("Missing `--output_dir`: give the folder to write the model, metrics and card to.")
        if self.remove_unused_columns:
            raise ValueError(
                "`--remove_unused_columns True` would drop the `image` column that the on-the-fly transform reads. "
                "Leave the option out."
            )
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"Invalid `--layer_decay {self.layer_decay}`: give a factor in (0, 1], such as 0.75.")
        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ValueError(
                f"Invalid `--label_smoothing_factor {self.label_smoothing_factor}`: give a value in [0, 1)."
            )
        self.push_after_training = self.push_to_hub
        self.push_to_hub = False
        super().__post_init__()


class MedicTrainer(Trainer):
    """`Trainer` that reloads checkpoints through `from_pretrained`, groups parameters and logs task weights.

    transformers 5 saves some backbones (ViT, DINOv2, ...) under their older weight names and renames them
    back in `from_pretrained`. `Trainer` reloads the best checkpoint, and resumes, with a plain
    `load_state_dict` instead. That skips the renaming and leaves the backbone weights unloaded.

    The optimizer gets one parameter group per learning rate with `--layer_decay`, and the learned task weights
    of `loss_weighting="uncertainty"` get no weight decay. Training logs then carry `<task>_loss_weight`.
    """

    def create_optimizer(self, model=None):
        opt_model = self.accelerator.unwrap_model(self.model if model is None else model)
        uses_groups = self.args.layer_decay is not None or getattr(opt_model, "uncertainty", None) is not None
        if self.optimizer is None and uses_groups:
            groups = create_parameter_groups(
                opt_model,
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                decay_parameter_names=self.get_decay_parameter_names(opt_model),
                layer_decay=self.args.layer_decay,
            )
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        # With `self.optimizer` set, the parent only applies its wrappers.
        return super().create_optimizer(model)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        uncertainty = getattr(self.accelerator.unwrap_model(self.model), "uncertainty", None)
        if uncertainty is not None and ("loss" in logs or "train_loss" in logs):
            for task, weight in uncertainty.task_weights().items():
                logs[f"{task}_loss_weight"] = round(weight, 6)
        super().log(logs, start_time)

    def _load_best_model(self) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        logger.info(f"Loading best model from {self.state.best_model_checkpoint} (score: {self.state.best_metric}).")
        self._load_weights_from(self.state.best_model_checkpoint, self.model)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_weights_from(resume_from_checkpoint, model or self.model)

    @staticmethod
    def _load_weights_from(checkpoint: str, model) -> None:
        saved = type(model).from_pretrained(checkpoint)
        model.load_state_dict(saved.state_dict(), strict=True)


def parse_train_args(argv: list[str] | None = None):
    parser = HfArgumentParser((ModelArguments, DataArguments, MedicTrainingArguments), prog="medic-hf train")
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:
        # Unknown options and invalid values, found by the parser or by the dataclasses' checks.
        raise MedicUsageError(str(error)) from error


def setup_logging(training_args: TrainingArguments) -> None:
    """Log medic_hf's progress at info level on the main process; `--log_level` also sets the libraries' level."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
    )
    level = logging.INFO if training_args.should_log else logging.WARNING
    if training_args.log_level != "passive":
        level = training_args.get_process_log_level()
        datasets.utils.logging.set_verbosity(level)
        transformers.utils.logging.set_verbosity(level)
    logging.getLogger("medic_hf").setLevel(level)


def train(model_args: ModelArguments, data_args: DataArguments, training_args: MedicTrainingArguments) -> dict:
    """Fine-tune, keep the best checkpoint, evaluate it on validation and test, and save it with a card.

    Returns:
        The per-split results of `metrics.compute_task_metrics` for the saved model.
    """
    setup_logging(training_args)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if training_args.world_size != launched:
        raise RuntimeError(
            f"The launcher started {launched} processes but they did not join one process group (world size "
            f"{training_args.world_size}), so each would train and write {training_args.output_dir} on its own. "
            "On CPUs, launch with `torchrun --nproc_per_node N` or `accelerate launch --multi_gpu --num_processes N`."
        )
    logger.info(f"Training on {training_args.world_size} process(es), device {training_args.device}")
    set_seed(training_args.seed)

    # Load the data once on the main process; the others wait, then read the prepared cache.
    with training_args.main_process_first(desc="preparing MEDIC"):
        medic = load_medic(
            data_args.source,
            on_bad_row=data_args.on_bad_row,
            bad_rows_report=str(Path(training_args.output_dir) / SKIPPED_ROWS_FILE),
            cache_dir=data_args.dataset_cache_dir,
            num_proc=data_args.preprocessing_num_workers,
        )
    if data_args.max_train_samples is not None:
        medic["train"] = medic["train"].select(range(min(data_args.max_train_samples, len(medic["train"]))))
    if data_args.max_eval_samples is not None:
        for split in ("validation", "test"):
            medic[split] = medic[split].select(range(min(data_args.max_eval_samples, len(medic[split]))))

    # Build the model: pretrained backbone, new heads.
    model = build_model(model_args, training_args, medic["train"])
    image_processor = load_image_processor(model_args.backbone, cache_dir=model_args.model_cache_dir)
    tasks = model.config.tasks
    num_labels = {task: model.config.num_labels_for(task) for task in tasks}
    training_args.label_names = [label_column(task) for task in tasks]

    # Decode and augment images on the fly. The transform decodes the raw bytes itself, in JPEG draft mode.
    medic = medic.cast_column("image", datasets.Image(decode=False))
    medic["train"].set_transform(MedicTransform(image_processor, tasks, train=True))
    for split in ("validation", "test"):
        medic[split].set_transform(MedicTransform(image_processor, tasks, train=False))

    trainer = MedicTrainer(
        model=model,
        args=training_args,
        train_dataset=medic["train"],
        eval_dataset=medic["validation"] if training_args.eval_strategy != "no" else None,
        data_collator=default_data_collator,
        compute_metrics=create_compute_metrics(tasks, num_labels),
        processing_class=image_processor,
    )

    # Train and save the best model with its image processor.
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    # Score the saved model on validation and test, with confusion matrices.
    results = {}
    for split in ("test", "validation"):
        results[split] = evaluate_split(trainer, medic[split], tasks, num_labels, split)

    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        (output_dir / METRICS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        training_info = {
            "data_source": data_args.source,
            "split_sizes": {split: len(dataset) for split, dataset in medic.items()},
            "hyperparameters": card_hyperparameters(training_args, epochs_run=train_result.metrics.get("epoch")),
            "recipe": training_recipe(model, model_args, training_args),
            "data_notes": describe_data_issues(medic, output_dir / SKIPPED_ROWS_FILE),
        }
        (output_dir / TRAINING_FILE).write_text(json.dumps(training_info, indent=2) + "\n")
        write_model_card(output_dir)
        logger.info(f"Saved the model, {METRICS_FILE}, {TRAINING_FILE} and README.md to {output_dir}")
        if training_args.push_after_training:
            url = push_model_folder(
                output_dir,
                training_args.hub_model_id or output_dir.resolve().name,
                token=training_args.hub_token,
                private=training_args.hub_private_repo,
                revision=training_args.hub_revision,
            )
            logger.info(f"Pushed to the Hub: {url}")
    return results


def build_model(
    model_args: ModelArguments, training_args: MedicTrainingArguments, train_split
) -> MedicForMultiTaskImageClassification:
    """Build the model around the pretrained backbone, with the loss options and freezing of `model_args`.

    Raises:
        MedicUsageError: if `--freeze_backbone` and `--layer_decay` are both given.
    """
    if model_args.freeze_backbone and training_args.layer_decay is not None:
        raise MedicUsageError(
            "`--freeze_backbone` and `--layer_decay` are both set, but a frozen backbone has no learning rate to "
            "decay. Drop one of them."
        )
    tasks = model_args.tasks or TASKS
    class_weights = None
    if model_args.class_weights == "balanced":
        labels = train_split.select_columns(list(tasks)).with_format("numpy")
        class_weights = {}
        for task in (task for task in TASKS if task in tasks):
            try:
                class_weights[task] = balanced_class_weights(labels[task], len(TASK_LABELS[task]))
            except ValueError as error:
                raise MedicUsageError(
                    f"`--class_weights balanced` failed for {task}: {error} Leave {task} out of `--tasks`, or use "
                    "`--class_weights none`."
                ) from error
        logger.info(f"Balanced class weights from {len(train_split)} training examples: {class_weights}")
    try:
        model = MedicForMultiTaskImageClassification.from_backbone(
            model_args.backbone,
            tasks=model_args.tasks,
            pooling=model_args.pooling,
            classifier_dropout=model_args.classifier_dropout,
            class_weights=class_weights,
            label_smoothing=training_args.label_smoothing_factor,
            cache_dir=model_args.model_cache_dir,
            **model_args.loss_options(),
        )
    except ValueError as error:
        # Invalid combinations of options, found by MedicConfig.
        raise MedicUsageError(str(error)) from error
    if training_args.layer_decay is not None:
        try:
            backbone_layer_ids(model.backbone)
        except ValueError as error:
            raise MedicUsageError(str(error)) from error
    if model_args.freeze_backbone:
        model.freeze_backbone()
    return model


def training_recipe(
    model: MedicForMultiTaskImageClassification, model_args: ModelArguments, training_args: MedicTrainingArguments
) -> dict:
    """Collect the model and loss options of the run for the model card."""
    recipe = {
        "tasks": model.config.tasks,
        "freeze_backbone": model_args.freeze_backbone,
        "layer_decay": training_args.layer_decay,
        "class_weights": model_args.class_weights,
        "loss_weighting": model.config.loss_weighting,
    }
    if model.uncertainty is not None:
        recipe["learned_task_weights"] = model.uncertainty.task_weights()
    return recipe


def evaluate_split(trainer: Trainer, dataset, tasks: list[str], num_labels: dict[str, int], split: str) -> dict:
    """Predict a split with the trainer and compute the full per-task results, logging them as a table."""
    output = trainer.predict(dataset, metric_key_prefix=split)
    predictions, references = split_by_task(tasks, output.predictions, output.label_ids)
    results = compute_task_metrics(predictions, references, num_labels)
    trainer.save_metrics(split, flatten_metrics(results))
    if trainer.is_world_process_zero():
        print(f"\n{split} split:\n{format_table(results)}\n")
    return results


def describe_data_issues(medic, skipped_rows_file: Path) -> list[str]:
    """Describe, for the model card, the bad rows skipped and the images shared between splits."""
    notes = []
    if skipped_rows_file.is_file():
        skipped = [json.loads(line) for line in skipped_rows_file.read_text().splitlines()]
        notes.append(
            f"{len(skipped)} bad row(s) of the source were skipped ({summarize_reasons(skipped)}); they are "
            f"listed in {SKIPPED_ROWS_FILE}."
        )
    # `with_format(None)` reads the raw column past the on-the-fly image transform.
    paths = {split: set(dataset.with_format(None)["image_path"]) for split, dataset in medic.items()}
    for other in ("validation", "test"):
        shared = paths["train"] & paths.get(other, set())
        if shared:
            notes.append(
                f"{len(shared)} image path(s) appear in both the train and {other} splits, which inflates the "
                f"{other} scores below."
            )
    return notes


def card_hyperparameters(training_args: TrainingArguments, epochs_run: float | None = None) -> dict:
    mixed_precision = "no"
    if training_args.bf16:
        mixed_precision = "bf16"
    elif training_args.fp16:
        mixed_precision = "fp16"
    hyperparameters = {
        "learning_rate": training_args.learning_rate,
        "train_batch_size (per device)": training_args.per_device_train_batch_size,
        "devices (world size)": training_args.world_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "num_train_epochs": training_args.num_train_epochs if training_args.max_steps <= 0 else None,
        "max_steps": training_args.max_steps if training_args.max_steps > 0 else None,
        "epochs run": round(epochs_run, 2) if epochs_run is not None else None,
        "optimizer": str(getattr(training_args.optim, "value", training_args.optim)),
        "weight_decay": training_args.weight_decay,
        "lr_scheduler_type": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
        "warmup_steps": training_args.warmup_steps,
        "seed": training_args.seed,
        "mixed_precision": mixed_precision,
    }
    return {name: value for name, value in hyperparameters.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, training_args = parse_train_args(argv)
    train(model_args, data_args, training_args)
