"""MPJPE, P-MPJPE and N-MPJPE (VideoPose3D convention) of ups-toolkit as an `evaluate` module."""

import datasets
import evaluate
import numpy as np

from ups_toolkit.metrics import mpjpe
from ups_toolkit.metrics import n_mpjpe
from ups_toolkit.metrics import p_mpjpe


class UpsPoseError(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean per-joint position errors: MPJPE, P-MPJPE (similarity Procrustes), N-MPJPE.",
            citation="Pavllo et al., CVPR 2019 (VideoPose3D)",
            inputs_description="predictions, references: poses (J, 3) in metres; results in millimetres",
            features=datasets.Features(
                {
                    "predictions": datasets.Array2D(shape=(None, 3), dtype="float32"),
                    "references": datasets.Array2D(shape=(None, 3), dtype="float32"),
                }
            ),
        )

    def _compute(self, predictions, references):
        pred = np.stack(predictions).astype(np.float64)
        target = np.stack(references).astype(np.float64)
        return {
            "mpjpe_mm": 1000.0 * mpjpe(pred, target),
            "p_mpjpe_mm": 1000.0 * p_mpjpe(pred, target),
            "n_mpjpe_mm": 1000.0 * n_mpjpe(pred, target),
        }
