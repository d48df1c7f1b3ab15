"""`medic-hf export --format onnx`: ONNX Runtime gives PyTorch's logits for every task."""

import json

import numpy as np
import pytest
import torch
from saved_models import IMAGE_SIZE, save_tiny_model

from medic_hf import TASK_LABELS, TASKS, MedicForMultiTaskImageClassification
from medic_hf.errors import MedicUsageError
from medic_hf.export import export_onnx
from medic_hf.export import main as export_main


onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'medic_hf[onnx]'")
onnxruntime = pytest.importorskip(
    "onnxruntime", reason="the onnx extra is not installed: pip install 'medic_hf[onnx]'"
)


def onnx_logits(path, pixel_values: torch.Tensor) -> dict[str, np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"pixel_values": pixel_values.numpy()}), strict=True))


def assert_matches_pytorch(model_folder, onnx_path, tasks=TASKS, batch_size=4):
    """Check ONNX Runtime against PyTorch on a batch size the export never saw."""
    pixel_values = torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(9))
    model = MedicForMultiTaskImageClassification.from_pretrained(model_folder).eval()
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).task_logits()

    actual = onnx_logits(onnx_path, pixel_values)

    assert list(actual) == [f"{task}_logits" for task in tasks]
    for task in tasks:
        assert actual[f"{task}_logits"].shape == (batch_size, len(TASK_LABELS[task]))
        np.testing.assert_allclose(actual[f"{task}_logits"], expected[task].numpy(), atol=1e-4, rtol=0)


def test_export_command_writes_onnx_with_task_outputs(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "vit", arch="vit", seed=1)

    export_main(["--model", str(folder), "--format", "onnx"])

    summary = json.loads(capsys.readouterr().out)
    onnx_path = folder / "onnx" / "model.onnx"
    assert summary["output"] == str(onnx_path)
    assert summary["exporter"] == "dynamo"
    assert summary["outputs"] == [f"{task}_logits" for task in TASKS]
    assert summary["max_abs_difference"] < 1e-4
    assert summary["external_data"] == []
    assert (folder / "onnx" / "preprocessor_config.json").is_file()
    assert_matches_pytorch(folder, onnx_path)


def test_onnx_metadata_and_dynamic_batch(tmp_path):
    folder = save_tiny_model(tmp_path / "vit", arch="vit", seed=2)
    export_onnx(folder, tmp_path / "out" / "medic.onnx")

    graph = onnx.load(str(tmp_path / "out" / "medic.onnx"))

    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    assert json.loads(metadata["medic_tasks"]) == TASKS
    assert json.loads(metadata["medic_task_id2label"])["disaster_types"] == {
        str(index): name for index, name in enumerate(TASK_LABELS["disaster_types"])
    }
    assert json.loads(metadata["medic_image_size"]) == [IMAGE_SIZE, IMAGE_SIZE]
    (graph_input,) = graph.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "pixel_values"
    assert dims[0].dim_param  # a named, free batch dimension
    assert [dim.dim_value for dim in dims[1:]] == [3, IMAGE_SIZE, IMAGE_SIZE]


def test_weights_in_external_data_file(tmp_path):
    folder = save_tiny_model(tmp_path / "vit", arch="vit", seed=5)

    summary = export_onnx(folder, tmp_path / "out" / "model.onnx", external_data=True)

    graph = onnx.load(str(tmp_path / "out" / "model.onnx"), load_external_data=False)
    assert summary["external_data"] == ["model.onnx.data"]
    assert (tmp_path / "out" / "model.onnx.data").stat().st_size > 10_000
    assert "medic_tasks" in {entry.key for entry in graph.metadata_props}
    assert any(initializer.data_location == onnx.TensorProto.EXTERNAL for initializer in graph.graph.initializer)
    assert_matches_pytorch(folder, tmp_path / "out" / "model.onnx")


def test_resnet_single_task_export(tmp_path):
    folder = save_tiny_model(tmp_path / "resnet", arch="resnet", seed=3, tasks=["humanitarian"])

    summary = export_onnx(folder, tmp_path / "resnet.onnx", exporter="dynamo")

    assert summary["outputs"] == ["humanitarian_logits"]
    assert_matches_pytorch(folder, tmp_path / "resnet.onnx", tasks=["humanitarian"], batch_size=1)


# The TorchScript exporter announces its own deprecation, which is expected here.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_swin_falls_back_to_torchscript_exporter(tmp_path, caplog):
    # torch 2.14's torch.export-based exporter fails on transformers' Swin attention reshape.
    folder = save_tiny_model(tmp_path / "swin", arch="swin", seed=4)

    summary = export_onnx(folder, tmp_path / "swin.onnx", exporter="auto")

    assert summary["exporter"] == "torchscript"
    assert "Falling back to the TorchScript exporter" in caplog.text
    assert_matches_pytorch(folder, tmp_path / "swin.onnx")


def test_missing_onnx_packages_reported(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "onnxscript" else find_spec(name, *args)
    )

    with pytest.raises(MedicUsageError, match="needs onnxscript, which is not installed.*medic_hf\\[onnx\\]"):
        export_onnx(tmp_path, tmp_path / "model.onnx")


def test_invalid_exporter_rejected(tmp_path):
    with pytest.raises(MedicUsageError, match="Invalid exporter 'tflite'"):
        export_onnx(tmp_path, tmp_path / "model.onnx", exporter="tflite")
