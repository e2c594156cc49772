"""Metrics, one numpy implementation each (the source of truth for training and evaluation; docs/design.md D11).

Every function takes plain arrays, so it works on whatever ``accelerator.gather_for_metrics`` returns. The
``evaluate_modules/`` folder wraps them as ``evaluate`` modules loadable by local path (offline).
"""

from .classification import (
    confusion_matrix,
    early_prediction_accuracy,
    mean_class_accuracy,
    observed_frame_count,
    topk_accuracy,
)
from .detection import detection_map_pku, detection_map_voc
from .motion import euler_error, mpjpe_at_horizons, horizon_frame_indices
from .pose import mpjpe, mpjve, n_mpjpe, p_mpjpe, per_action_mean
from .retrieval import knn1_accuracy

__all__ = [
    "confusion_matrix", "early_prediction_accuracy", "mean_class_accuracy", "observed_frame_count", "topk_accuracy",
    "detection_map_pku", "detection_map_voc", "euler_error", "mpjpe_at_horizons", "horizon_frame_indices",
    "mpjpe", "mpjve", "n_mpjpe", "p_mpjpe", "per_action_mean", "knn1_accuracy",
]
