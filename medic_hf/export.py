"""`medic-hf export`: write a trained model as an ONNX graph whose outputs are the tasks' logits.

Needs the `onnx` extra: `pip install 'medic_hf[onnx]'` (onnx, onnxscript for the exporter, onnxruntime to
check the result).
"""

import argparse
import importlib.util
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoImageProcessor

from .errors import MedicUsageError
from .modeling_medic import MedicForMultiTaskImageClassification
from .transforms import processor_output_size


logger = logging.getLogger(__name__)

FORMATS = ("onnx",)
EXPORTERS = ("auto", "dynamo", "torchscript")
# Largest difference between ONNX Runtime's and PyTorch's logits that the export check accepts.
TOLERANCE = 1e-4
# A protobuf message, and so an ONNX file with its weights inside, cannot exceed 2 GiB. Larger weights go to a
# separate data file, with a margin for the graph itself.
MAX_INLINE_WEIGHT_BYTES = 1.5 * 2**30


class TaskLogits(nn.Module):
    """Wrap the model so that it returns a tuple of logits in task order, which ONNX names one by one."""

    def __init__(self, model: MedicForMultiTaskImageClassification):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(pixel_values=pixel_values).task_logits().values())


def require_packages(*names: str) -> None:
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise MedicUsageError(
            f"ONNX export needs {', '.join(missing)}, which is not installed. Run `pip install 'medic_hf[onnx]'`."
        )


def export_onnx(
    model_path: str | Path,
    output: str | Path,
    *,
    opset: int | None = None,
    exporter: str = "auto",
    verify: bool = True,
    external_data: bool | None = None,
) -> dict:
    """Export the model in `model_path` to the ONNX file `output`.

    The graph takes `pixel_values` of shape `(batch_size, 3, height, width)`, with the batch size free and the
    image size of the model's image processor, and returns one `<task>_logits` output per task. The file's
    metadata (`metadata_props`) stores the tasks and each task's class names in index order, as JSON.

    Args:
        model_path: a folder (or Hub id) written by `medic-hf train`.
        output: the `.onnx` file to write. `config.json` and `preprocessor_config.json` are copied next to it.
        opset: the ONNX opset. Defaults to the exporter's recommended one.
        exporter: `"dynamo"` (the `torch.export`-based exporter), `"torchscript"` (the older tracer), or
            `"auto"`: dynamo, then torchscript if dynamo fails (Swin fails in torch 2.14).
        verify: run the graph in ONNX Runtime on random inputs and check it matches PyTorch within 1e-4.
        external_data: store the weights in `<output>.data` next to the graph. Defaults to doing so when they
            exceed 1.5 GiB, because an ONNX file cannot exceed 2 GiB.

    Returns:
        A summary: the output path, the exporter used, the input shape, the output names and, with `verify`,
        the largest absolute difference from PyTorch.

    Raises:
        MedicUsageError: if a package is missing or `exporter` is invalid.
        RuntimeError: if the ONNX Runtime check finds a larger difference.
    """
    if exporter not in EXPORTERS:
        raise MedicUsageError(f"Invalid exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}.")
    require_packages(
        "onnx", *(["onnxscript"] if exporter != "torchscript" else []), *(["onnxruntime"] if verify else [])
    )
    import onnx

    model = MedicForMultiTaskImageClassification.from_pretrained(model_path).eval()
    image_processor = AutoImageProcessor.from_pretrained(model_path)
    height, width = processor_output_size(image_processor)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)

    wrapper = TaskLogits(model).eval()
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    output_names = [f"{task}_logits" for task in model.config.tasks]
    if external_data is None:
        weight_bytes = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
        external_data = weight_bytes > MAX_INLINE_WEIGHT_BYTES
    used = run_exporter(wrapper, example, output, output_names, opset, exporter, external_data)

    # Weights in a data file stay there: only the graph's metadata changes.
    onnx_model = onnx.load(str(output), load_external_data=False)
    metadata = {
        "medic_tasks": json.dumps(model.config.tasks),
        "medic_task_id2label": json.dumps(model.config.task_id2label),
        "medic_image_size": json.dumps([height, width]),
    }
    for key, value in metadata.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(onnx_model, str(output))
    onnx.checker.check_model(str(output))

    model_folder = Path(model_path)
    for name in ("config.json", "preprocessor_config.json"):
        if (model_folder / name).is_file():
            shutil.copyfile(model_folder / name, output.parent / name)

    summary = {
        "output": str(output),
        "exporter": used,
        "input": ["batch_size", 3, height, width],
        "outputs": output_names,
        "external_data": sorted(path.name for path in output.parent.glob(f"{output.name}.data")),
    }
    if verify:
        summary["max_abs_difference"] = compare_with_onnxruntime(model, output, height, width)
    return summary


def run_exporter(
    wrapper: nn.Module,
    example: torch.Tensor,
    output: Path,
    output_names: list[str],
    opset: int | None,
    exporter: str,
    external_data: bool = False,
) -> str:
    """Export with the requested exporter and return the name of the one that wrote the file."""
    if exporter in ("auto", "dynamo"):
        try:
            torch.onnx.export(
                wrapper,
                (example,),
                str(output),
                input_names=["pixel_values"],
                output_names=output_names,
                opset_version=opset,
                dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch_size", min=1)}},
                external_data=external_data,
                dynamo=True,
                verbose=False,
            )
            return "dynamo"
        except Exception as error:
            # The exporter raises many exception types, so "auto" falls back on any of them.
            if exporter == "dynamo":
                raise
            logger.warning(
                f"The torch.export-based ONNX exporter failed ({type(error).__name__}: {str(error).splitlines()[0]}). "
                "Falling back to the TorchScript exporter."
            )
    with warnings.catch_warnings():
        # The tracer warns about Python branches on tensor sizes. Only the batch size varies in the exported
        # graph, and the branches it freezes depend on the image size, which is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(output),
            input_names=["pixel_values"],
            output_names=output_names,
            opset_version=opset,
            dynamic_axes={"pixel_values": {0: "batch_size"}, **{name: {0: "batch_size"} for name in output_names}},
            dynamo=False,
            verbose=False,
        )
    return "torchscript"


def compare_with_onnxruntime(
    model: MedicForMultiTaskImageClassification, onnx_path: Path, height: int, width: int
) -> float:
    """Run both on a random batch of 3 (not the export's 2) and return the largest absolute logit difference.

    Raises:
        RuntimeError: if the difference exceeds 1e-4.
    """
    import onnxruntime

    pixel_values = torch.randn(3, 3, height, width, generator=torch.Generator().manual_seed(1))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(None, {"pixel_values": pixel_values.numpy()})
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).task_logits()
    difference = max(
        float(np.abs(actual - reference.numpy()).max())
        for actual, reference in zip(onnx_outputs, expected.values(), strict=True)
    )
    if difference > TOLERANCE:
        raise RuntimeError(
            f"The ONNX graph at {onnx_path} differs from PyTorch by up to {difference:.2e} (limit {TOLERANCE:.0e}). "
            "Try `--exporter torchscript` or another `--opset`."
        )
    return difference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="medic-hf export",
        description="Export a trained MEDIC model to ONNX, one `<task>_logits` output per task.",
    )
    parser.add_argument("--model", required=True, help="Folder written by `medic-hf train`.")
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="Export format (default: onnx).")
    parser.add_argument("--output", default=None, help="File to write (default: MODEL/onnx/model.onnx).")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's).")
    parser.add_argument(
        "--exporter",
        default="auto",
        choices=EXPORTERS,
        help="dynamo (torch.export), torchscript, or auto: dynamo, then torchscript if it fails (default: auto).",
    )
    parser.add_argument("--no_verify", action="store_true", help="Skip the check against PyTorch in ONNX Runtime.")
    args = parser.parse_args(argv)

    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    output = Path(args.output) if args.output else Path(args.model) / "onnx" / "model.onnx"
    summary = export_onnx(args.model, output, opset=args.opset, exporter=args.exporter, verify=not args.no_verify)
    print(json.dumps(summary, indent=2))
