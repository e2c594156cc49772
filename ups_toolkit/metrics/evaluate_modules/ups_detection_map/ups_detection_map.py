"""Temporal detection mAP (PKU-MMD official mAP_a / mAP_v) of ups-toolkit as an `evaluate` module.

One example per video: predictions = proposals [label, start, end, confidence] rows, references = ground-truth
[label, start, end] rows; the video identity is the example index.
"""

import datasets
import evaluate

from ups_toolkit.metrics import detection_map_pku


class UpsDetectionMap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="PKU-MMD official temporal detection mAP over classes (mAP_a) and videos (mAP_v), percent.",
            citation="Liu et al. 2017, PKU-MMD; ECHO960/PKU-MMD evaluate.py",
            inputs_description="per video: predictions (P, 4) [label, start, end, conf]; references (G, 3)",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                }
            ),
        )

    def _compute(self, predictions, references, threshold=0.5):
        proposals = [(v, int(p[0]), p[1], p[2], p[3]) for v, rows in enumerate(predictions) for p in rows]
        truths = [(v, int(g[0]), g[1], g[2]) for v, rows in enumerate(references) for g in rows]
        result = detection_map_pku(proposals, truths, threshold=threshold)
        return {"mAP_a": result["mAP_a"], "mAP_v": result["mAP_v"]}
