"""`medic-hf evaluate`: score a trained model on one MEDIC split, per task, and write the results as JSON."""

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoImageProcessor, HfArgumentParser, Trainer, TrainingArguments, default_data_collator

from .errors import MedicUsageError
from .loading import load_medic
from .modeling_medic import MedicForMultiTaskImageClassification
from .training import evaluate_split, source_field
from .transforms import MedicTransform


logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "Folder or Hub id of a model trained with `medic-hf train`."})
    source: str | None = source_field()
    on_bad_row: str = field(
        default="raise",
        metadata={"help": "raise: stop at the first bad TSV row. skip: skip and count bad rows.", "choices": ["raise", "skip"]},
    )
    split: str = field(default="test", metadata={"help": "Split to score: train, validation or test."})
    output_file: str | None = field(
        default=None,
        metadata={"help": "JSON file for the results. Default: eval_<split>_medic.json in the model folder, if local."},
    )
    batch_size: int = field(default=32, metadata={"help": "Images per batch and device."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Score the first N examples only."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Where datasets keeps prepared files."})
    use_cpu: bool = field(default=False, metadata={"help": "Run on the CPU even where a GPU is available."})

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"Invalid `--split {self.split}`: choose one of {', '.join(SPLITS)}.")


def default_output_file(args: EvaluateArguments) -> Path:
    name = f"eval_{args.split}_medic.json"
    return Path(args.model) / name if Path(args.model).is_dir() else Path(name)


def evaluate_model(args: EvaluateArguments) -> dict:
    """Score `args.model` on `args.split`, print a table and write the results to JSON."""
    model = MedicForMultiTaskImageClassification.from_pretrained(args.model)
    image_processor = AutoImageProcessor.from_pretrained(args.model)
    tasks = model.config.tasks
    num_labels = {task: model.config.num_labels_for(task) for task in tasks}

    with tempfile.TemporaryDirectory() as scratch_dir:
        training_args = TrainingArguments(
            output_dir=scratch_dir,
            per_device_eval_batch_size=args.batch_size,
            remove_unused_columns=False,
            label_names=[f"{task}_labels" for task in tasks],
            use_cpu=args.use_cpu,
            dataloader_pin_memory=torch.accelerator.is_available() and not args.use_cpu,
            report_to="none",
        )
        with training_args.main_process_first(desc="preparing MEDIC"):
            dataset = load_medic(
                args.source, split=args.split, on_bad_row=args.on_bad_row, cache_dir=args.dataset_cache_dir
            )
        if args.max_eval_samples is not None:
            dataset = dataset.select(range(min(args.max_eval_samples, len(dataset))))
        dataset = dataset.cast_column("image", datasets.Image(decode=False))
        dataset.set_transform(MedicTransform(image_processor, tasks, train=False))

        trainer = Trainer(model=model, args=training_args, data_collator=default_data_collator)
        results = evaluate_split(trainer, dataset, tasks, num_labels, args.split)

    if trainer.is_world_process_zero():
        output_file = Path(args.output_file) if args.output_file else default_output_file(args)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": args.model, "source": args.source, "split": args.split, **results}
        output_file.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Wrote {output_file}")
    return results


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    parser = HfArgumentParser(EvaluateArguments, prog="medic-hf evaluate")
    try:
        (args,) = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:
        raise MedicUsageError(str(error)) from error
    evaluate_model(args)
