"""Top-k and mean-class accuracy of ups-toolkit as an `evaluate` module (scores per class, integer labels)."""

import datasets
import evaluate
import numpy as np

from ups_toolkit.metrics import mean_class_accuracy
from ups_toolkit.metrics import topk_accuracy


class UpsTopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Top-k accuracy (ties to the lower class index) and mean-class accuracy, in percent.",
            citation="",
            inputs_description="predictions: per-class scores (K floats); references: class index",
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, ks=(1, 5)):
        scores = np.asarray(predictions)
        labels = np.asarray(references)
        result = {f"top{k}": v for k, v in topk_accuracy(scores, labels, ks=ks).items()}
        result["mean_class"] = mean_class_accuracy(scores.argmax(axis=1), labels, scores.shape[1])
        return result
