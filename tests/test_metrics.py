import numpy as np
import pytest
from transformers import EvalPrediction

from medic_hf.metrics import (
    METRIC_MODULE,
    compute_task_metrics,
    create_compute_metrics,
    flatten_metrics,
    format_table,
    load_metric,
)


def test_metric_module_loads_from_package_file():
    metric = load_metric()

    results = metric.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2], labels=[0, 1, 2])

    assert METRIC_MODULE.is_file()
    assert results["accuracy"] == pytest.approx(0.75)
    assert results["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    # Per class F1: 2/3, 2/3, 1. Supports 2, 1, 1.
    assert results["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert results["f1_weighted"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert results["precision_weighted"] == pytest.approx((2 * 1 + 0.5 + 1) / 4)


def test_missing_labels_left_out_of_that_task_only():
    predictions = {"informative": np.array([0, 1, 1, 0]), "damage_severity": np.array([2, 2, 0, 1])}
    references = {"informative": np.array([0, -1, 1, -1]), "damage_severity": np.array([2, 2, 0, 0])}

    results = compute_task_metrics(predictions, references, {"informative": 2, "damage_severity": 3})

    assert results["tasks"]["informative"]["support"] == 2
    assert results["tasks"]["informative"]["accuracy"] == 1.0
    assert results["tasks"]["damage_severity"]["support"] == 4
    assert results["tasks"]["damage_severity"]["accuracy"] == 0.75
    assert results["mean"]["accuracy"] == pytest.approx((1.0 + 0.75) / 2)


def test_confusion_matrix_has_row_for_absent_class():
    results = compute_task_metrics(
        {"disaster_types": np.array([0, 0, 2])}, {"disaster_types": np.array([0, 2, 2])}, {"disaster_types": 7}
    )

    matrix = results["tasks"]["disaster_types"]["confusion_matrix"]
    assert len(matrix) == 7
    assert all(len(row) == 7 for row in matrix)
    assert matrix[0][0] == 1
    assert matrix[2][0] == 1
    assert matrix[2][2] == 1
    # Macro-F1 averages over the two classes that occur, not over all seven.
    assert results["tasks"]["disaster_types"]["f1_macro"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_task_without_any_label_is_reported_and_skipped():
    results = compute_task_metrics(
        {"informative": np.array([0, 1]), "humanitarian": np.array([1, 2])},
        {"informative": np.array([0, 1]), "humanitarian": np.array([-1, -1])},
        {"informative": 2, "humanitarian": 4},
    )

    assert results["tasks"]["humanitarian"] == {"support": 0}
    assert results["mean"]["accuracy"] == 1.0
    assert "no labelled examples" in format_table(results)


def test_trainer_compute_metrics_flat_keys():
    compute_metrics = create_compute_metrics(["informative", "humanitarian"], {"informative": 2, "humanitarian": 4})
    logits = (np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    labels = (np.array([0, 0]), np.array([2, -1]))

    metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))

    assert metrics["informative_accuracy"] == 0.5
    assert metrics["humanitarian_accuracy"] == 1.0
    assert metrics["humanitarian_support"] == 1
    assert metrics["mean_accuracy"] == 0.75
    assert "mean_f1_macro" in metrics
    assert all(not isinstance(value, list) for value in metrics.values())


def test_single_task_predictions_unwrapped_by_trainer():
    compute_metrics = create_compute_metrics(["informative"], {"informative": 2})

    metrics = compute_metrics(EvalPrediction(predictions=np.array([[0.0, 1.0]]), label_ids=np.array([1])))

    assert metrics["informative_accuracy"] == 1.0


def test_flatten_and_table_list_every_task():
    results = compute_task_metrics(
        {"informative": np.array([0, 1]), "damage_severity": np.array([0, 1])},
        {"informative": np.array([0, 1]), "damage_severity": np.array([1, 1])},
        {"informative": 2, "damage_severity": 3},
    )

    flat = flatten_metrics(results)
    table = format_table(results)

    assert flat["damage_severity_accuracy"] == 0.5
    assert flat["mean_accuracy"] == 0.75
    assert table.splitlines()[2].startswith("informative")
    assert table.splitlines()[-1].startswith("mean")
