"""Motion-prediction errors (docs/design.md §12.4)."""

from __future__ import annotations

import numpy as np


def horizon_frame_indices(fps: float, horizons_ms=(80, 160, 320, 400)) -> list[int]:
    """0-based index of the predicted frame at each horizon: round(ms * fps / 1000) - 1 (25 fps: 1, 3, 7, 9)."""
    indices = [int(round(ms * fps / 1000.0)) - 1 for ms in horizons_ms]
    if min(indices) < 0:
        raise ValueError(f"horizon {min(horizons_ms)} ms is shorter than one frame at {fps} fps")
    return indices


def mpjpe_at_horizons(pred, target, fps: float, horizons_ms=(80, 160, 320, 400)) -> dict[int, float]:
    """Mean joint error at each horizon. pred, target (N, K, J, 3) future frames; returns {ms: error}."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} must match as (N, K, J, 3)")
    per_frame = np.linalg.norm(pred - target, axis=-1).mean(axis=(0, 2))
    indices = horizon_frame_indices(fps, horizons_ms)
    if max(indices) >= len(per_frame):
        raise ValueError(f"{len(per_frame)} predicted frames do not reach {max(horizons_ms)} ms at {fps} fps")
    return {ms: float(per_frame[i]) for ms, i in zip(horizons_ms, indices)}


def euler_error(pred_euler, target_euler, fps: float = 25.0, horizons_ms=(80, 160, 320, 400)) -> dict[int, float]:
    """Euler-angle error of una-dinosauria/human-motion-prediction (translate.py), per horizon.

    pred_euler, target_euler: (N, K, D) Euler angles of all joints per future frame (D = 3 x joints, incl. the
    global translation and rotation in dims 0-5, which are zeroed). Dimensions are kept where the std over the
    predicted frames of that sample exceeds 1e-4 — computed on the prediction, as the reference does. Per frame
    the L2 norm over kept dims; mean over the N windows.
    """
    pred = np.array(pred_euler, np.float64)
    target = np.array(target_euler, np.float64)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} must match as (N, K, D)")
    pred[:, :, :6] = 0
    target[:, :, :6] = 0
    errors = np.zeros(pred.shape[:2])
    for i in range(len(pred)):
        keep = np.std(pred[i], axis=0) > 1e-4
        errors[i] = np.sqrt(((target[i][:, keep] - pred[i][:, keep]) ** 2).sum(axis=1))
    mean = errors.mean(axis=0)
    indices = horizon_frame_indices(fps, horizons_ms)
    return {ms: float(mean[i]) for ms, i in zip(horizons_ms, indices)}
