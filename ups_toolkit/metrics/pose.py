"""3D pose errors in the VideoPose3D convention (docs/design.md §12.3). Inputs (..., J, 3), any unit; outputs the same
unit (pass metres and multiply by 1000 for mm)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def _check(pred, target):
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} must match as (..., J, C)")
    return pred, target


def mpjpe(pred, target) -> float:
    """Protocol 1: mean over poses and joints of the Euclidean joint error."""
    pred, target = _check(pred, target)
    return float(np.mean(np.linalg.norm(pred - target, axis=-1)))


def procrustes_align(pred, target) -> np.ndarray:
    """Similarity-align each pose of ``pred`` to ``target`` (scale, rotation, translation), reflections excluded.

    Per pose: centre both, normalise by Frobenius norms, H = X0^T Y0 = U S V^T, R = V U^T; if det R < 0 negate V's
    last column and the last singular value; scale a = sum(S) * |X0| / |Y0|; aligned = a * Y R + t.
    """
    pred, target = _check(pred, target)
    shape = pred.shape
    x = target.reshape(-1, *shape[-2:])
    y = pred.reshape(-1, *shape[-2:])
    mu_x, mu_y = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    x0, y0 = x - mu_x, y - mu_y
    norm_x = np.sqrt((x0**2).sum(axis=(1, 2), keepdims=True))
    norm_y = np.sqrt((y0**2).sum(axis=(1, 2), keepdims=True))
    x0, y0 = x0 / norm_x, y0 / norm_y
    h = np.matmul(x0.transpose(0, 2, 1), y0)
    u, s, vt = np.linalg.svd(h)
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    # no reflections: flip the last column of V and the sign of the last singular value where det R < 0
    sign = np.sign(np.linalg.det(r))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign[:, 0]
    r = np.matmul(v, u.transpose(0, 2, 1))
    a = (s.sum(axis=1, keepdims=True) * norm_x[:, 0] / norm_y[:, 0])[:, :, None]
    t = mu_x - a * np.matmul(mu_y, r)
    aligned = a * np.matmul(y, r) + t
    return aligned.reshape(shape)


def p_mpjpe(pred, target) -> float:
    """Protocol 2: MPJPE after per-pose similarity Procrustes alignment."""
    return mpjpe(procrustes_align(pred, target), target)


def n_mpjpe(pred, target) -> float:
    """Protocol 3: MPJPE after the least-squares scale s = sum<y, y_hat> / sum |y_hat|^2, per pose."""
    pred, target = _check(pred, target)
    scale = (target * pred).sum(axis=(-1, -2), keepdims=True) / (pred**2).sum(axis=(-1, -2), keepdims=True)
    return mpjpe(scale * pred, target)


def mpjve(pred, target) -> float:
    """Mean per-joint velocity error: MPJPE of first differences along the frame axis (..., F, J, C), F >= 2."""
    pred, target = _check(pred, target)
    return mpjpe(np.diff(pred, axis=-3), np.diff(target, axis=-3))


def per_action_mean(errors, actions) -> tuple[dict[str, float], float]:
    """Average per action (a trailing " 1"/" 2" take number stripped, as in H36M evaluations), then over actions.

    errors: per-pose (or per-sample) errors; actions: the action name of each. Returns ({action: mean}, mean).
    """
    groups = defaultdict(list)
    for error, action in zip(np.asarray(errors, np.float64), actions):
        name = str(action).split(" ")[0] if str(action).rstrip()[-1:].isdigit() else str(action)
        groups[name].append(error)
    per_action = {name: float(np.mean(v)) for name, v in sorted(groups.items())}
    return per_action, float(np.mean(list(per_action.values())))
