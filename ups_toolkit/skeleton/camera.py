"""Pinhole cameras in VideoPose3D's convention: world <-> camera frames and projection with lens distortion.

Convention (facebookresearch/VideoPose3D common/camera.py and common/quaternion.py, the Human3.6M camera model):

* ``orientation`` is a unit quaternion (w, x, y, z) that rotates camera-frame vectors into the world frame;
  ``translation`` is the camera centre in world coordinates (metres). Hence
  ``X_cam = R^-1 (X_world - t)`` and ``X_world = R X_cam + t``.
* Projection of a camera-frame point (x, y, z), z pointing forward: ``u = (x/z, y/z)`` clipped to [-1, 1] (as the
  reference does, so that points far outside the view cannot blow up the distortion polynomial);
  ``r2 = |u|^2``; ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3``; ``tan = p1 u_x + p2 u_y``;
  ``u' = u (radial + tan) + (p1, p2) r2``; pixel = ``f * u' + c``. This tangential term is the Human3.6M one, not
  OpenCV's ``2 p1 x y + p2 (r2 + 2 x^2)``.

Camera files (``--cameras`` of the ``videopose3d`` converter) are YAML or JSON: a mapping from a subject key (the npz
key, e.g. ``Train/S1``, or its last part ``S1``, or ``default``) to a list of cameras in camera-index order::

    S1:
      - id: C1                          # optional
        res_w: 640                      # image width and height, pixels
        res_h: 480
        focal_length: [1145.0, 1144.0]  # fx, fy in pixels
        center: [512.5, 515.5]          # cx, cy in pixels
        radial_distortion: [-0.20, 0.24, -0.0017]   # k1, k2, k3 (optional, default 0)
        tangential_distortion: [-0.0006, -0.0018]   # p1, p2 (optional, default 0)
        orientation: [0.14, -0.15, -0.76, 0.62]     # quaternion w, x, y, z: camera -> world
        translation: [1.84, 4.96, 1.56]             # camera centre, world metres

These are VideoPose3D's key names (``h36m_dataset.py``), with focal length and centre in pixels rather than the
normalised units VideoPose3D derives from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4) = (w, x, y, z) (broadcasting)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w, qv = q[..., :1], q[..., 1:]
    uv = np.cross(qv, v)
    uuv = np.cross(qv, uv)
    return v + 2.0 * (w * uv + uuv)


def qinverse(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion (w, x, y, z): its conjugate."""
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def world_to_camera(points: np.ndarray, orientation, translation) -> np.ndarray:
    """World points (..., 3) -> camera frame (..., 3): ``R^-1 (X - t)``."""
    q = _unit_quaternion(orientation)
    return qrot(qinverse(q), np.asarray(points, dtype=np.float64) - np.asarray(translation, dtype=np.float64))


def camera_to_world(points: np.ndarray, orientation, translation) -> np.ndarray:
    """Camera-frame points (..., 3) -> world (..., 3): ``R X + t``."""
    q = _unit_quaternion(orientation)
    return qrot(q, np.asarray(points, dtype=np.float64)) + np.asarray(translation, dtype=np.float64)


def project_to_2d(points_cam: np.ndarray, focal_length, center, radial=(0, 0, 0), tangential=(0, 0)) -> np.ndarray:
    """Camera-frame points (..., 3), z > 0 in front of the camera -> pixels (..., 2), with distortion (see module)."""
    x = np.asarray(points_cam, dtype=np.float64)
    f, c = np.asarray(focal_length, dtype=np.float64), np.asarray(center, dtype=np.float64)
    k, p = np.asarray(radial, dtype=np.float64), np.asarray(tangential, dtype=np.float64)
    u = np.clip(x[..., :2] / x[..., 2:], -1.0, 1.0)
    r2 = np.sum(u**2, axis=-1, keepdims=True)
    radial_term = 1.0 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tangential_term = np.sum(p * u, axis=-1, keepdims=True)
    distorted = u * (radial_term + tangential_term) + p * r2
    return f * distorted + c


@dataclass(frozen=True)
class Camera:
    """Intrinsics in pixels, extrinsics as in the module docstring."""

    focal_length: tuple[float, float]
    center: tuple[float, float]
    radial_distortion: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tangential_distortion: tuple[float, float] = (0.0, 0.0)
    orientation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    res_w: int | None = None
    res_h: int | None = None
    id: str = ""

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        return world_to_camera(points, self.orientation, self.translation)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        return project_to_2d(points_cam, self.focal_length, self.center, self.radial_distortion,
                             self.tangential_distortion)

    def world_to_pixels(self, points_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (..., 2): the 2D a camera sees (``--project``)."""
        return self.project(self.world_to_camera(points_world))


def project_world_points(points_world: np.ndarray, camera: Camera) -> np.ndarray:
    """2D from 3D when no 2D file exists: world points (..., 3) -> pixels (..., 2) through ``camera``."""
    return camera.world_to_pixels(points_world)


def _unit_quaternion(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


_VECTOR_KEYS = {
    "focal_length": 2, "center": 2, "radial_distortion": 3, "tangential_distortion": 2, "orientation": 4,
    "translation": 3,
}
_REQUIRED = ("focal_length", "center", "orientation", "translation")


def load_cameras(path: str | Path) -> dict[str, list[Camera]]:
    """Read a camera file (YAML or JSON, format in the module docstring) -> {subject key: [Camera, ...]}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read camera file {path} ({e.strerror})") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} ({e})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping from subject to a list of cameras")
    cameras = {}
    for subject, entries in raw.items():
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: subject {subject!r} must map to a non-empty list of cameras")
        cameras[str(subject)] = [_camera(entry, f"{path}: subject {subject!r}, camera {i}") for i, entry in
                                 enumerate(entries)]
    return cameras


def _camera(entry, where: str) -> Camera:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of camera parameters")
    unknown = set(entry) - set(_VECTOR_KEYS) - {"res_w", "res_h", "id"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    values = {}
    for key, size in _VECTOR_KEYS.items():
        if key not in entry:
            continue
        try:
            vector = tuple(float(x) for x in entry[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {key} must be a list of {size} numbers") from None
        if len(vector) != size or not np.all(np.isfinite(vector)):
            raise ConfigError(f"{where}: {key} must be a list of {size} finite numbers, got {entry[key]!r}")
        values[key] = vector
    if np.linalg.norm(values["orientation"]) < 1e-8:
        raise ConfigError(f"{where}: orientation quaternion is zero")
    for key in ("res_w", "res_h"):
        if key in entry:
            if not isinstance(entry[key], int) or entry[key] <= 0:
                raise ConfigError(f"{where}: {key} must be a positive integer, got {entry[key]!r}")
            values[key] = entry[key]
    return Camera(id=str(entry.get("id", "")), **values)


def cameras_for(cameras: dict[str, list[Camera]], subject_key: str, *, source="camera file") -> list[Camera]:
    """Cameras of an npz subject key: the key itself, then its last part (``Train/S1`` -> ``S1``), then ``default``."""
    for key in (subject_key, subject_key.rsplit("/", 1)[-1], "default"):
        if key in cameras:
            return cameras[key]
    raise ConfigError(
        f"{source}: no cameras for subject {subject_key!r} (keys tried: {subject_key!r}, "
        f"{subject_key.rsplit('/', 1)[-1]!r}, 'default'; present: {', '.join(cameras)})"
    )
