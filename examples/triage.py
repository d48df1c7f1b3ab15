"""Triage incoming images with a trained MEDIC model in a downstream script, using plain transformers calls.

    python examples/triage.py --model medic-vit photo1.jpg photo2.jpg

Prints, for each image, the predicted class of each task and its probability, and flags the images that
look like severe damage or affected people for a person to review first.
"""

import argparse

import torch
from PIL import Image, ImageOps
from transformers import AutoImageProcessor, AutoModel

import medic_hf  # noqa: F401  (registers the MEDIC model with the Auto classes)


def main() -> None:
    parser = argparse.ArgumentParser(description="Triage images with a trained MEDIC model.")
    parser.add_argument("images", nargs="+", help="Image files.")
    parser.add_argument("--model", required=True, help="Folder or Hub id written by `medic-hf train`.")
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    id2label = model.config.task_id2label

    images = [ImageOps.exif_transpose(Image.open(path)).convert("RGB") for path in args.images]
    with torch.no_grad():
        outputs = model(**processor(images, return_tensors="pt"))

    probabilities = {task: logits.softmax(-1) for task, logits in outputs.task_logits().items()}
    for row, path in enumerate(args.images):
        labels = {task: id2label[task][int(p[row].argmax())] for task, p in probabilities.items()}
        urgent = labels.get("damage_severity") == "severe" or labels.get("humanitarian") == "affected_injured_or_dead_people"
        summary = ", ".join(f"{task}={label} ({probabilities[task][row].max():.2f})" for task, label in labels.items())
        print(f"{'REVIEW FIRST' if urgent else 'queue':<12} {path}: {summary}")


if __name__ == "__main__":
    main()
