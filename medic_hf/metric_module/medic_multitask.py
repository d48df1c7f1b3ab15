"""Classification metrics of one MEDIC task, as an `evaluate` module that loads offline from this file.

Reports what the MEDIC paper reports (accuracy and support-weighted precision, recall and F1) and, because
the classes are heavily imbalanced, macro-averaged precision, recall and F1 and the confusion matrix.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


_DESCRIPTION = """
Accuracy, weighted and macro precision/recall/F1, and the confusion matrix of a single-label classification
task. Pass `labels` (all class indices of the task) so that classes absent from a split still get a row and
column in the confusion matrix. Averages run over the classes that occur in the references or predictions.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class indices.
    references (`list[int]`): true class indices. Leave out unlabelled examples (index -1) before calling.
    labels (`list[int]`, *optional*): every class index of the task, in order. Defaults to the indices seen.

Returns:
    accuracy, precision_weighted, recall_weighted, f1_weighted, precision_macro, recall_macro, f1_macro
    (floats in [0, 1]), support (number of examples), and confusion_matrix (rows: true class, columns:
    predicted class, in the order of `labels`).

Example:
    >>> metric = evaluate.load("medic_hf/metric_module/medic_multitask.py")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], labels=[0, 1, 2])["accuracy"]
    0.6666666666666666
"""

_CITATION = """
@article{alam2022medic,
  title={MEDIC: A Multi-Task Learning Dataset for Disaster Image Classification},
  author={Alam, Firoj and Alam, Tanvirul and Hasan, Md. Arid and Hasnat, Abul and Imran, Muhammad and Ofli, Ferda},
  journal={Neural Computing and Applications},
  year={2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MedicMultitask(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(self, predictions, references, labels=None) -> dict:
        # Averages run over the classes that occur in the references or predictions: a class that a split
        # lacks and the model never predicts has no defined precision or recall, so it would add a spurious 0.
        seen = sorted(set(references) | set(predictions))
        results = {"accuracy": float(accuracy_score(references, predictions)), "support": len(references)}
        for average in ("weighted", "macro"):
            # zero_division=0 scores a seen class that is never predicted as 0 instead of warning.
            precision, recall, f1, _ = precision_recall_fscore_support(
                references, predictions, labels=seen, average=average, zero_division=0
            )
            results[f"precision_{average}"] = float(precision)
            results[f"recall_{average}"] = float(recall)
            results[f"f1_{average}"] = float(f1)
        results["confusion_matrix"] = confusion_matrix(references, predictions, labels=labels or seen).tolist()
        return results
