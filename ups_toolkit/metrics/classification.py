"""Recognition and early-prediction metrics (docs/design.md §12.1, §12.2)."""

from __future__ import annotations

import math

import numpy as np


def _ranked(scores: np.ndarray) -> np.ndarray:
    """Class indices by descending score; ties go to the lower class index (stable sort of the negated scores)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[int, float]:
    """Percentage of samples whose label is among the k highest scores. scores (N, K), labels (N,)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"scores must be (N, K) and labels (N,), got {scores.shape} and {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no samples to score")
    ranked = _ranked(scores)
    return {k: float(100.0 * np.mean(np.any(ranked[:, :k] == labels[:, None], axis=1))) for k in ks}


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def mean_class_accuracy(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of the per-class recall, in percent."""
    matrix = confusion_matrix(predictions, labels, num_classes)
    support = matrix.sum(axis=1)
    present = support > 0
    return float(100.0 * np.mean(np.diag(matrix)[present] / support[present]))


def observed_frame_count(num_frames: int, ratio: float, rounding: str = "ceil") -> int:
    """Frames the model may see at observation ratio ``ratio``.

    ``ceil``: n_obs = ceil(r * n) (docs/design.md §12.2); ``floor_min3``: max(3, floor(n * r)) (FoundSkelModel's rule),
    never more than n. Both give at least one frame.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"observation ratio must be in (0, 1], got {ratio}")
    if rounding == "ceil":
        count = math.ceil(round(ratio * num_frames, 9))
    elif rounding == "floor_min3":
        count = max(3, math.floor(num_frames * ratio))
    else:
        raise ValueError(f"unknown rounding {rounding!r}; use 'ceil' or 'floor_min3'")
    return int(min(max(count, 1), num_frames))


def early_prediction_accuracy(scores_by_ratio: dict[float, np.ndarray], labels: np.ndarray) -> dict:
    """Top-1 per observation ratio and their mean (the area under the accuracy-vs-ratio curve, sampled).

    scores_by_ratio: ratio -> (N, K) scores of the same N samples seen up to that ratio.
    """
    per_ratio = {float(r): topk_accuracy(s, labels, ks=(1,))[1] for r, s in sorted(scores_by_ratio.items())}
    return {"per_ratio": per_ratio, "mean": float(np.mean(list(per_ratio.values())))}
