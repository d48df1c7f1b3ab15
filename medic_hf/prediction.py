"""`medic-hf predict`: label image files with a trained model, printing one JSON object per image."""

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoImageProcessor

from .modeling_medic import MedicForMultiTaskImageClassification
from .transforms import load_image


logger = logging.getLogger(__name__)


def image_extensions() -> set[str]:
    """File name endings Pillow can open, such as `.jpg` and `.png`, used to pick files inside folders."""
    return {extension.lower() for extension in Image.registered_extensions()}


def expand_paths(paths: Iterable[str]) -> Iterator[Path]:
    """Yield each file given, and each image file inside each folder given (recursively, sorted).

    A path that does not exist is yielded as it is, so that it gets an error record. A folder without
    image files yields nothing and is logged as a warning.
    """
    extensions = image_extensions()
    for path in map(Path, paths):
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not images:
                logger.warning(f"No image files in folder {path} (looked for {', '.join(sorted(extensions)[:6])}, ...).")
            yield from images
        else:
            yield path


class MedicPredictor:
    """Loads a trained model and its image processor and labels batches of image files."""

    def __init__(self, model: str, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = MedicForMultiTaskImageClassification.from_pretrained(model).to(self.device).eval()
        self.image_processor = AutoImageProcessor.from_pretrained(model)
        self.id2label = self.model.config.task_id2label

    def predict(self, paths: Iterable[str], batch_size: int = 16, all_scores: bool = False) -> Iterator[dict]:
        """Yield one record per image, in input order: the top label per task, or an `error` for that file."""
        batch = []
        for path in expand_paths(paths):
            try:
                batch.append((path, load_image(path)))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                yield from self._predict_batch(batch, all_scores)
                batch = []
                logger.warning(f"Cannot read image {path}: {error}")
                yield {"path": str(path), "error": f"cannot read image: {type(error).__name__}: {error}"}
                continue
            if len(batch) == batch_size:
                yield from self._predict_batch(batch, all_scores)
                batch = []
        yield from self._predict_batch(batch, all_scores)

    @torch.inference_mode()
    def _predict_batch(self, batch: list[tuple[Path, Image.Image]], all_scores: bool) -> Iterator[dict]:
        if not batch:
            return
        inputs = self.image_processor([image for _, image in batch], return_tensors="pt").to(self.device)
        probabilities = {
            task: logits.float().softmax(dim=-1).cpu()
            for task, logits in self.model(pixel_values=inputs["pixel_values"]).task_logits().items()
        }
        for row, (path, _) in enumerate(batch):
            record = {"path": str(path)}
            for task, task_probabilities in probabilities.items():
                scores = task_probabilities[row]
                top = int(scores.argmax())
                record[task] = {"label": self.id2label[task][top], "score": round(float(scores[top]), 6)}
                if all_scores:
                    record[task]["scores"] = {
                        self.id2label[task][index]: round(float(score), 6) for index, score in enumerate(scores)
                    }
            yield record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="medic-hf predict",
        description="Label images with a trained MEDIC model. Prints one JSON object per image to standard output.",
    )
    parser.add_argument("paths", nargs="+", help="Image files, or folders to search for images recursively.")
    parser.add_argument("--model", required=True, help="Folder or Hub id of a model trained with `medic-hf train`.")
    parser.add_argument("--batch_size", type=int, default=16, help="Images per forward pass (default: 16).")
    parser.add_argument("--all_scores", action="store_true", help="Also print every class's probability.")
    parser.add_argument("--device", default=None, help="Torch device, e.g. cpu or cuda:0 (default: cuda if available).")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"invalid --batch_size {args.batch_size}: give a positive number")

    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.WARNING, stream=sys.stderr)
    predictor = MedicPredictor(args.model, device=args.device)
    failures = 0
    for record in predictor.predict(args.paths, batch_size=args.batch_size, all_scores=args.all_scores):
        failures += "error" in record
        print(json.dumps(record), flush=True)
    if failures:
        # A non-zero status lets scripts notice, while every readable image still got its record.
        logger.warning(f"{failures} image(s) could not be read; see the records with an `error` field.")
        sys.exit(1)
