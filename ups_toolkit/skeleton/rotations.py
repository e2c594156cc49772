"""Rotation conversions used by the mocap converters and the Euler-angle motion-prediction metric.

All functions are batched over leading dimensions and use numpy float64 internally. Matrices act on column vectors
(``v' = R @ v``) unless a docstring says otherwise. Angles are radians (the BVH reader converts its degrees).

The exp-map and Euler conventions follow una-dinosauria/human-motion-prediction ``src/data_utils.py`` (docs/formats.md
§12, docs/design.md §12.4) so Euler errors are comparable with the published motion-prediction numbers:

* exp-map r (3,): theta = |r|, k = r / theta, R = I + sin(theta) [k]x + (1 - cos(theta)) [k]x^2 (Rodrigues);
* Euler angles e = (e1, e2, e3) of R: ``R = (Rz(e3) @ Ry(e2) @ Rx(e1)).T``, with e2 in [-pi/2, pi/2]; in the
  gimbal-lock case |R[0, 2]| = 1 the reference sets e3 = 0.
"""

from __future__ import annotations

import numpy as np

# Below this angle the exp-map is treated as the identity plus its first-order term: sin(t)/t and (1-cos t)/t^2
# are evaluated by their Taylor series, so there is no division by ~0.
_SMALL_ANGLE = 1e-8


def skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrix [v]x, so that [v]x @ w = v x w."""
    v = np.asarray(v, dtype=np.float64)
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def expmap_to_rotmat(r: np.ndarray) -> np.ndarray:
    """Exponential map (axis * angle, radians) (..., 3) -> rotation matrix (..., 3, 3) by Rodrigues' formula."""
    r = np.asarray(r, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1)[..., None, None]
    small = theta < _SMALL_ANGLE
    safe = np.where(small, 1.0, theta)
    # R = I + a [r]x + b [r]x^2 with a = sin t / t, b = (1 - cos t) / t^2 (series near 0)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    k = skew(r)
    return np.eye(3) + a * k + b * (k @ k)


def rotmat_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) as (w, x, y, z) with w >= 0.

    Shepperd's method: each matrix uses the formula built on the largest of the four squared components, which
    stays accurate for every angle (the plain trace formula loses all precision near 180 degrees).
    """
    rot = np.asarray(rot, dtype=np.float64)
    m = rot.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # 4 * (w^2, x^2, y^2, z^2)
    squares = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=1)
    s = np.sqrt(np.maximum(squares, 0.0))  # 2 |component|
    s = np.where(s > 0, s, 1.0)
    d21, d02, d10 = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    s01, s02, s12 = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]
    options = np.stack([
        np.stack([s[:, 0] ** 2, d21, d02, d10], axis=1) / (2 * s[:, :1]),
        np.stack([d21, s[:, 1] ** 2, s01, s02], axis=1) / (2 * s[:, 1:2]),
        np.stack([d02, s01, s[:, 2] ** 2, s12], axis=1) / (2 * s[:, 2:3]),
        np.stack([d10, s02, s12, s[:, 3] ** 2], axis=1) / (2 * s[:, 3:4]),
    ], axis=1)
    q = options[np.arange(len(m)), np.argmax(squares, axis=1)]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q.reshape(rot.shape[:-2] + (4,))


def quaternion_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Quaternion (..., 4) as (w, x, y, z), normalised first -> rotation matrix (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(q.shape[:-1] + (3, 3))
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - w * z)
    out[..., 0, 2] = 2 * (x * z + w * y)
    out[..., 1, 0] = 2 * (x * y + w * z)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - w * x)
    out[..., 2, 0] = 2 * (x * z - w * y)
    out[..., 2, 1] = 2 * (y * z + w * x)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def rotmat_to_expmap(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> exp-map (..., 3) with angle in [0, pi] (the inverse of expmap_to_rotmat)."""
    q = rotmat_to_quaternion(rot)
    w, v = q[..., 0], q[..., 1:]
    sin_half = np.linalg.norm(v, axis=-1)
    theta = 2.0 * np.arctan2(sin_half, w)
    small = sin_half < _SMALL_ANGLE
    # theta / sin(theta/2) -> 2 as theta -> 0
    scale = np.where(small, 2.0, theta / np.where(small, 1.0, sin_half))
    return v * scale[..., None]


def rotmat_to_euler(rot: np.ndarray) -> np.ndarray:
    """Rotation matrix (..., 3, 3) -> Euler angles (..., 3), the convention of the motion-prediction reference.

    ``R = (Rz(e3) @ Ry(e2) @ Rx(e1)).T``: e2 = -asin(R[0, 2]), e1 = atan2(R[1, 2], R[2, 2]), e3 = atan2(R[0, 1],
    R[0, 0]) (the reference divides both arguments by cos(e2) > 0, which does not change atan2). When R[0, 2] is
    exactly +-1 (gimbal lock) the reference sets e3 = 0, e2 = -+pi/2 and e1 = atan2(R[0, 1], R[0, 2]); so do we.
    """
    rot = np.asarray(rot, dtype=np.float64)
    r02 = rot[..., 0, 2]
    e2 = -np.arcsin(np.clip(r02, -1.0, 1.0))
    e1 = np.arctan2(rot[..., 1, 2], rot[..., 2, 2])
    e3 = np.arctan2(rot[..., 0, 1], rot[..., 0, 0])
    # Gimbal lock: the reference tests exact equality with +-1 (kept for identical outputs)
    lock_neg = r02 == -1.0
    lock_pos = r02 == 1.0
    if np.any(lock_neg | lock_pos):
        delta = np.arctan2(rot[..., 0, 1], rot[..., 0, 2])
        e3 = np.where(lock_neg | lock_pos, 0.0, e3)
        e2 = np.where(lock_neg, np.pi / 2, np.where(lock_pos, -np.pi / 2, e2))
        e1 = np.where(lock_neg | lock_pos, delta, e1)
    return np.stack([e1, e2, e3], axis=-1)


def euler_to_rotmat(euler: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotmat_to_euler` away from gimbal lock: (..., 3) -> ``(Rz(e3) @ Ry(e2) @ Rx(e1)).T``."""
    euler = np.asarray(euler, dtype=np.float64)
    m = axis_rotation("z", euler[..., 2]) @ axis_rotation("y", euler[..., 1]) @ axis_rotation("x", euler[..., 0])
    return np.swapaxes(m, -1, -2)


def expmap_to_euler(r: np.ndarray) -> np.ndarray:
    """Exp-map (..., 3) -> reference Euler angles (..., 3): the representation the Euler-angle error compares."""
    return rotmat_to_euler(expmap_to_rotmat(r))


def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Right-handed rotation by ``angle`` radians (any shape) about ``axis`` ('x', 'y' or 'z') -> (..., 3, 3)."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    i = "xyz".index(axis.lower())
    j, k = (i + 1) % 3, (i + 2) % 3
    out[..., i, i] = 1.0
    out[..., j, j], out[..., j, k] = c, -s
    out[..., k, j], out[..., k, k] = s, c
    return out
