"""Small composable transforms on one skeleton sample, pyskl style, pure numpy.

A sample is the schema dict of :mod:`ups_toolkit.data.schema`: ``keypoint`` (T, M, V, C) float32 time-first (C = 2
or 3 coordinates), optional ``keypoint_score`` (T, M, V), ``layout`` (a registered layout name). Every transform is a
callable ``transform(sample, rng) -> new sample``; the input dict and its arrays are never modified. Random
transforms draw only from the ``np.random.Generator`` they are given, so a pipeline is reproducible from a seed
(docs/design.md D9: one generator per (seed, epoch, index)). Joint indices (centre, shoulders, left/right pairs,
parents) always come from the layout, never from this file.

The schema stores only valid frames (no padding), so n = T of the sample. An absent person or joint is all zeros and
stays all zeros through centring, rotation, shear, flip and joint corruption.

Pipelines are plain config lists, e.g. the USDRL view recipe (docs/design.md D10: crop-resize, then 1/4 joint mask,
1/4 random linear map, 1/2 shear)::

    build_transforms([
        {"type": "CropResize", "size": 64, "min_ratio": 0.1, "max_ratio": 1.0},
        {"type": "RandomChoice", "weights": [0.25, 0.25, 0.5], "transforms": [
            {"type": "JointMask", "ratio": 0.6},
            {"type": "JointLinearMap", "ratio": 0.6},
            {"type": "Shear", "magnitude": 1.0}]},
    ])
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError
from .layouts import Layout, get_layout

__all__ = [
    "TRANSFORMS",
    "Bone",
    "Compose",
    "CropResize",
    "Flip",
    "JointLinearMap",
    "JointMask",
    "Motion",
    "PreNormalize2D",
    "PreNormalize3D",
    "RandomApply",
    "RandomChoice",
    "Resize",
    "Rotate",
    "Shear",
    "Streams",
    "Transform",
    "TransformInputError",
    "bone_features",
    "build_transform",
    "build_transforms",
    "deterministic_part",
    "motion_features",
    "resize_frames",
    "rotation_onto",
]


class TransformInputError(DataFormatError, ValueError):
    """A sample a transform cannot work on (no frames, wrong rank, joints not matching the layout ...).

    A :class:`DataFormatError` (the CLI prints it on one line) that is also a ``ValueError``.
    """


# --------------------------------------------------------------------------------------------------------------------
# Helpers shared by the transforms


def _fail(sample: dict, who: str, message: str):
    raise TransformInputError(f"{who}: {message}", sample=sample.get("sample_id") or None)


def _keypoint(sample: dict, who: str, channels: Sequence[int] = (2, 3)) -> np.ndarray:
    """The sample's keypoints as float32 (T, M, V, C), checked; raises TransformInputError naming ``who``."""
    if "keypoint" not in sample:
        _fail(sample, who, "sample has no 'keypoint'")
    kp = np.asarray(sample["keypoint"])
    if kp.ndim != 4:
        _fail(sample, who, f"keypoint must be (T, M, V, C), got shape {kp.shape}")
    if kp.shape[0] == 0:
        _fail(sample, who, "empty sequence (T = 0 frames)")
    if kp.shape[-1] not in channels:
        _fail(sample, who, f"expected C in {tuple(channels)} coordinates per joint, got {kp.shape[-1]}")
    return kp.astype(np.float32, copy=False)


def _layout(sample: dict, who: str, kp: np.ndarray) -> Layout:
    if not sample.get("layout"):
        _fail(sample, who, "sample has no 'layout'; joint indices come from the layout")
    layout = get_layout(sample["layout"])
    if kp.shape[2] != layout.num_joints:
        _fail(sample, who, f"layout {layout.name!r} has {layout.num_joints} joints but the data has {kp.shape[2]}")
    return layout


def _score(sample: dict) -> np.ndarray | None:
    score = sample.get("keypoint_score")
    return None if score is None else np.asarray(score, dtype=np.float32)


def _present(kp: np.ndarray) -> np.ndarray:
    """(..., V) bool: a joint is present unless all its coordinates are exactly 0."""
    return np.any(kp != 0, axis=-1)


def _need_rng(rng, who: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{who} is random: pass an np.random.Generator (got {type(rng).__name__})")
    return rng


def _count(ratio: float, num_joints: int) -> int:
    """round(ratio * V), half up (15 of 25 for USDRL's 0.6)."""
    return int(math.floor(ratio * num_joints + 0.5))


def rotation_onto(vector: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 rotation of smallest angle taking direction ``vector`` onto direction ``target`` (Rodrigues).

    Antiparallel vectors turn by pi about the coordinate axis least aligned with ``vector`` (for a shoulder line
    along -x that is the y axis, i.e. the body is turned round the vertical). A zero vector gives the identity.
    """
    u = np.asarray(vector, np.float64)
    e = np.asarray(target, np.float64)
    if np.linalg.norm(u) == 0 or np.linalg.norm(e) == 0:
        return np.eye(3)
    u, e = u / np.linalg.norm(u), e / np.linalg.norm(e)
    axis, cos = np.cross(u, e), float(np.dot(u, e))
    sin = np.linalg.norm(axis)
    if sin < 1e-12:
        if cos > 0:
            return np.eye(3)
        helper = np.eye(3)[np.argmin(np.abs(u))]
        k = helper - np.dot(helper, u) * u
        k /= np.linalg.norm(k)
        return 2.0 * np.outer(k, k) - np.eye(3)  # rotation by pi about k
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - cos) * (kx @ kx)


def resize_frames(x: np.ndarray, size: int) -> np.ndarray:
    """Resample the first (time) axis of ``x`` from n to ``size`` frames by linear interpolation (docs/design.md D2).

    Output frame i reads source position p = (i + 0.5) * n / size - 0.5, clamped to >= 0, linearly between floor(p)
    and min(floor(p) + 1, n - 1): exactly ``torch.nn.functional.interpolate(mode="linear", align_corners=False)``.
    n = 1 repeats the frame. Returns float32.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("resize_frames: empty sequence (0 frames)")
    pos = np.maximum((np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5, 0.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo).reshape((size,) + (1,) * (x.ndim - 1))
    x64 = x.astype(np.float64, copy=False)
    return ((1.0 - w) * x64[lo] + w * x64[hi]).astype(np.float32)


def _nearest_frames(n: int, size: int) -> np.ndarray:
    """Source frame of each output frame under the rule of :func:`resize_frames`, rounded (for per-frame labels)."""
    pos = np.maximum((np.arange(size, dtype=np.float64) + 0.5) * (n / size) - 0.5, 0.0)
    return np.minimum(np.floor(pos + 0.5).astype(np.int64), n - 1)


def _resample(sample: dict, who: str, start: int, length: int, size: int) -> dict:
    """Crop frames [start, start + length) and resize them to ``size``: keypoints, scores and frame labels.

    ``segments`` keep source frame numbers: detection windows are cut by the task code, not here.
    """
    kp = _keypoint(sample, who)
    out = {**sample, "keypoint": resize_frames(kp[start : start + length], size)}
    score = _score(sample)
    if score is not None:
        out["keypoint_score"] = resize_frames(score[start : start + length], size)
    if sample.get("frame_labels") is not None:
        labels = np.asarray(sample["frame_labels"])[start : start + length]
        out["frame_labels"] = labels[_nearest_frames(length, size)]
    return out


def bone_features(keypoint: np.ndarray, layout: Layout, variant: str | None = None) -> np.ndarray:
    """bone[v] = x[v] - x[parent(v)] over (..., V, C); the root's bone is 0.

    ``variant`` picks an alternative parent table of the layout (``pyskl`` / ``ctrgcn`` for ntu25; docs/formats.md §15).
    As in the references, no joint is masked: a bone to an absent parent is the child's coordinates.
    """
    parents = np.asarray(layout.bone_parents(variant))
    bone = keypoint - keypoint[..., np.where(parents >= 0, parents, np.arange(len(parents))), :]
    return bone.astype(np.float32)


def motion_features(keypoint: np.ndarray) -> np.ndarray:
    """m[t] = x[t + 1] - x[t] along the first (time) axis; the last frame is 0. Same shape as ``keypoint``."""
    motion = np.zeros_like(keypoint, dtype=np.float32)
    motion[:-1] = keypoint[1:] - keypoint[:-1]
    return motion


# --------------------------------------------------------------------------------------------------------------------
# Base class, composition and random wrappers


class Transform:
    """Base of every transform: ``__call__(sample, rng=None) -> new sample``.

    ``random`` says whether the transform draws from ``rng`` (it must then be an ``np.random.Generator``).
    Subclasses are dataclasses, so ``repr`` shows the full configuration (logged with the run).
    """

    random: ClassVar[bool] = False

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__


def _as_transform(item: Transform | dict, where: str) -> Transform:
    if isinstance(item, Transform):
        return item
    if isinstance(item, dict):
        return build_transform(item)
    raise ConfigError(f"{where}: expected a transform or a config dict with 'type', got {type(item).__name__}")


@dataclass
class Compose(Transform):
    """Apply ``transforms`` in order, passing the same generator along. Items may be config dicts."""

    transforms: list = field(default_factory=list)

    def __post_init__(self):
        self.transforms = [_as_transform(t, "Compose") for t in self.transforms]

    @property
    def random(self) -> bool:  # type: ignore[override]
        return any(t.random for t in self.transforms)

    def __call__(self, sample, rng=None):
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


@dataclass
class RandomApply(Transform):
    """Apply ``transform`` with probability ``p`` (one uniform draw per call, whether or not it applies)."""

    transform: Any = None
    p: float = 0.5
    random: ClassVar[bool] = True

    def __post_init__(self):
        if self.transform is None:
            raise ConfigError("RandomApply: 'transform' is required")
        self.transform = _as_transform(self.transform, "RandomApply")
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"RandomApply: p must be in [0, 1], got {self.p}")

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        return self.transform(sample, rng) if rng.random() < self.p else sample


@dataclass
class RandomChoice(Transform):
    """Apply exactly one of ``transforms``, picked with probabilities ``weights`` (normalised; default uniform)."""

    transforms: list = field(default_factory=list)
    weights: list | None = None
    random: ClassVar[bool] = True

    def __post_init__(self):
        if not self.transforms:
            raise ConfigError("RandomChoice: 'transforms' must list at least one transform")
        self.transforms = [_as_transform(t, "RandomChoice") for t in self.transforms]
        weights = [1.0] * len(self.transforms) if self.weights is None else [float(w) for w in self.weights]
        if len(weights) != len(self.transforms):
            raise ConfigError(f"RandomChoice: {len(weights)} weights for {len(self.transforms)} transforms")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"RandomChoice: weights must be >= 0 with a positive sum, got {weights}")
        self._probabilities = np.asarray(weights) / sum(weights)

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        pick = int(rng.choice(len(self.transforms), p=self._probabilities))
        return self.transforms[pick](sample, rng)


# --------------------------------------------------------------------------------------------------------------------
# Centring and view normalisation


@dataclass
class PreNormalize3D(Transform):
    """UmURL / CTR-GCN ``pre_normalization`` of 3D skeletons (docs/formats.md §4), in this order:

    1. ``move_to_front``: a person whose frame 0 is empty gets its non-empty frames moved to the front (zeros after;
       the reference's tiling of the empty tail is not done: padding stays zero).
    2. Per frame, subtract the centre of person 1 (mean of its present ``layout.center`` joints; nothing where person
       1 is absent) from every present joint of every person.
    3. ``align_spine`` ("x", "y" or "z"; off by default as in UmURL): rotate all frames so that spine_bottom ->
       spine_top of person 1, at its first frame with both joints present, points along that axis.
    4. ``align_shoulders``: rotate all frames so that right_shoulder - left_shoulder of person 1, at its first frame
       with both shoulders present, is parallel to +x (the smallest rotation doing so; :func:`rotation_onto`).

    Rotations are linear, so zero joints stay zero. Units are kept (metres for Kinect data).
    """

    move_to_front: bool = True
    align_shoulders: bool = True
    align_spine: str | None = None

    _AXES: ClassVar[dict] = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}

    def __post_init__(self):
        if self.align_spine is not None and self.align_spine not in self._AXES:
            raise ConfigError(f"PreNormalize3D: align_spine must be one of x, y, z or null, got {self.align_spine!r}")

    def __call__(self, sample, rng=None):
        kp = _keypoint(sample, self.name)
        if kp.shape[-1] != 3:
            _fail(sample, self.name, f"needs 3D keypoints (C = 3), got C = {kp.shape[-1]}; use PreNormalize2D")
        layout = _layout(sample, self.name, kp)
        kp = kp.astype(np.float64)  # a copy: the caller's array is never written
        score = _score(sample)
        score = None if score is None else score.copy()
        present = _present(kp)  # (T, M, V), before centring: the centre joint itself becomes exactly 0

        if self.move_to_front:
            for m in range(kp.shape[1]):
                frames = present[:, m].any(axis=-1)
                if frames.any() and not frames[0]:
                    keep = np.flatnonzero(frames)
                    for array in (kp, present) + ((score,) if score is not None else ()):
                        moved = array[keep, m].copy()
                        array[:, m] = 0
                        array[: len(keep), m] = moved

        centre_joints = list(layout.center)
        person1 = present[:, 0, centre_joints]  # (T, K)
        count = person1.sum(axis=1, keepdims=True)
        centre = (kp[:, 0, centre_joints] * person1[..., None]).sum(axis=1) / np.maximum(count, 1)  # (T, C)
        kp = np.where(present[..., None], kp - centre[:, None, None, :], 0.0)

        if self.align_spine is not None:
            bottom, top = self._axis_joints(sample, layout, "spine_bottom", "spine_top")
            kp = self._align(kp, present, bottom, top, np.asarray(self._AXES[self.align_spine]))
        if self.align_shoulders:
            right, left = self._axis_joints(sample, layout, "right_shoulder", "left_shoulder")
            kp = self._align(kp, present, left, right, np.asarray(self._AXES["x"]))

        out = {**sample, "keypoint": kp.astype(np.float32)}
        if score is not None:
            out["keypoint_score"] = score
        return out

    def _axis_joints(self, sample, layout: Layout, first: str, second: str) -> tuple[int, int]:
        if first not in layout.axes or second not in layout.axes:
            _fail(sample, self.name, f"layout {layout.name!r} does not define axes {first!r} and {second!r}")
        return int(layout.axes[first]), int(layout.axes[second])

    @staticmethod
    def _align(kp, present, start_joint, end_joint, target):
        """Rotate all of ``kp`` so that end - start of person 1 at its first frame with both present is ``target``."""
        both = present[:, 0, start_joint] & present[:, 0, end_joint]
        if not both.any():
            return kp  # person 1 never shows both joints: nothing to align to
        t = int(np.argmax(both))
        rotation = rotation_onto(kp[t, 0, end_joint] - kp[t, 0, start_joint], target)
        return kp @ rotation.T


@dataclass
class PreNormalize2D(Transform):
    """Centre and scale 2D pixel keypoints (C = 2). Only present joints change; absent ones stay 0.

    * ``mode="image"`` (VideoPose3D ``normalize_screen_coordinates``, docs/design.md §12.3): x' = 2x/w - 1,
      y' = 2y/w - h/w, with (h, w) = ``sample["img_shape"]`` or the ``img_shape`` option. The image centre becomes
      the origin and the width spans [-1, 1]; the aspect ratio is kept, so rotations and shears stay undistorted.
    * ``mode="body"``: per frame, subtract person 1's centre (mean of its present ``layout.center`` joints), then
      divide everything by one body scale per sample: the root-mean-square distance of person 1's present joints
      from their frame's centre. Scale-free and translation-free, for data without a known image size.
    """

    mode: str = "image"
    img_shape: list | None = None

    def __post_init__(self):
        if self.mode not in ("image", "body"):
            raise ConfigError(f"PreNormalize2D: mode must be 'image' or 'body', got {self.mode!r}")

    def __call__(self, sample, rng=None):
        kp = _keypoint(sample, self.name, channels=(2,)).astype(np.float64)
        present = _present(kp)[..., None]
        if self.mode == "image":
            shape = sample.get("img_shape") if sample.get("img_shape") is not None else self.img_shape
            if shape is None or len(shape) != 2 or min(shape) <= 0:
                _fail(sample, self.name, f"mode 'image' needs img_shape [h, w] in the sample or options, got {shape}")
            h, w = float(shape[0]), float(shape[1])
            normalised = kp * (2.0 / w) - np.array([1.0, h / w])
        else:
            layout = _layout(sample, self.name, kp)
            centre_joints = list(layout.center)
            person1 = present[:, 0, centre_joints, 0]
            centre = (kp[:, 0, centre_joints] * person1[..., None]).sum(1) / np.maximum(person1.sum(1), 1)[:, None]
            normalised = kp - centre[:, None, None, :]
            p1 = present[:, 0, :, 0] & person1.any(axis=1)[:, None]  # joints of frames that have a centre
            scale = math.sqrt(float((normalised[:, 0][p1] ** 2).sum(-1).mean())) if p1.any() else 0.0
            if scale > 0:
                normalised = normalised / scale
        return {**sample, "keypoint": np.where(present, normalised, 0.0).astype(np.float32)}


# --------------------------------------------------------------------------------------------------------------------
# Modalities


@dataclass
class Bone(Transform):
    """Replace joints by bones (:func:`bone_features`); ``bone_variant`` picks a layout parent table."""

    bone_variant: str | None = None

    def __call__(self, sample, rng=None):
        kp = _keypoint(sample, self.name)
        return {**sample, "keypoint": bone_features(kp, _layout(sample, self.name, kp), self.bone_variant)}


@dataclass
class Motion(Transform):
    """Replace joints by frame differences (:func:`motion_features`); apply after the temporal resize (D10)."""

    def __call__(self, sample, rng=None):
        return {**sample, "keypoint": motion_features(_keypoint(sample, self.name))}


STREAMS = ("joint", "bone", "joint_motion", "bone_motion")


@dataclass
class Streams(Transform):
    """Concatenate input streams along the channel axis: (T, M, V, C) -> (T, M, V, C · len(streams)).

    The streams the GCNs ensemble (pyskl's ``GenSkeFeat``), fed to one encoder as channels instead of one model per
    stream: ``joint`` (the coordinates), ``bone`` (:func:`bone_features`), ``joint_motion`` and ``bone_motion``
    (:func:`motion_features` of each). Apply last, after the spatial augmentations, so that every stream sees the
    same rotated skeleton; the encoder's ``in_channels`` must be at least C · len(streams).
    """

    streams: list = field(default_factory=lambda: ["joint", "bone"])
    bone_variant: str | None = None

    def __post_init__(self):
        self.streams = list(self.streams)
        unknown = [s for s in self.streams if s not in STREAMS]
        if not self.streams or unknown or len(set(self.streams)) != len(self.streams):
            raise ConfigError(f"Streams: streams must be distinct names from {', '.join(STREAMS)}, got {self.streams}")

    def __call__(self, sample, rng=None):
        kp = _keypoint(sample, self.name)
        made = {"joint": kp}
        if any(s.startswith("bone") for s in self.streams):
            made["bone"] = bone_features(kp, _layout(sample, self.name, kp), self.bone_variant)
        if "joint_motion" in self.streams:
            made["joint_motion"] = motion_features(kp)
        if "bone_motion" in self.streams:
            made["bone_motion"] = motion_features(made["bone"])
        return {**sample, "keypoint": np.concatenate([made[s] for s in self.streams], axis=-1)}


# --------------------------------------------------------------------------------------------------------------------
# Temporal


@dataclass
class Resize(Transform):
    """Deterministic: resample the whole sequence (all n frames) to ``size`` frames (:func:`resize_frames`)."""

    size: int = 64

    def __post_init__(self):
        if int(self.size) < 1:
            raise ConfigError(f"Resize: size must be >= 1, got {self.size}")

    def __call__(self, sample, rng=None):
        n = _keypoint(sample, self.name).shape[0]
        return _resample(sample, self.name, 0, n, int(self.size))


@dataclass
class CropResize(Transform):
    """USDRL temporal crop-and-resize (docs/design.md D10, view 1), then :func:`resize_frames` to ``size`` frames.

    Draws s ~ U[min_ratio, max_ratio), then start ~ U{0 .. n - len}, with len = min(max(floor(n * s), size), n):
    a clip shorter than ``size`` is taken whole.
    """

    size: int = 64
    min_ratio: float = 0.1
    max_ratio: float = 1.0
    random: ClassVar[bool] = True

    def __post_init__(self):
        if int(self.size) < 1:
            raise ConfigError(f"CropResize: size must be >= 1, got {self.size}")
        if not 0.0 < self.min_ratio <= self.max_ratio <= 1.0:
            raise ConfigError(
                f"CropResize: need 0 < min_ratio <= max_ratio <= 1, got {self.min_ratio}, {self.max_ratio}"
            )

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        n = _keypoint(sample, self.name).shape[0]
        ratio = rng.uniform(self.min_ratio, self.max_ratio)
        length = min(max(int(math.floor(n * ratio)), int(self.size)), n)
        start = int(rng.integers(0, n - length + 1))
        return _resample(sample, self.name, start, length, int(self.size))


# --------------------------------------------------------------------------------------------------------------------
# Spatial augmentations


def _apply_matrix(kp: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """x' = matrix @ x for every joint (column-vector convention); zeros stay zeros."""
    return (kp.astype(np.float64) @ matrix.T).astype(np.float32)


@dataclass
class Shear(Transform):
    """x' = S x, S = [[1, a, b], [c, 1, d], [e, f, 1]], a..f ~ U(-magnitude, magnitude) (USDRL: 1).

    2D data uses the top-left 2x2 block [[1, a], [c, 1]] (all six are still drawn, so the stream is the same).
    """

    magnitude: float = 1.0
    random: ClassVar[bool] = True

    def __post_init__(self):
        if self.magnitude < 0:
            raise ConfigError(f"Shear: magnitude must be >= 0, got {self.magnitude}")

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        kp = _keypoint(sample, self.name)
        a, b, c, d, e, f = rng.uniform(-self.magnitude, self.magnitude, size=6)
        shear = np.array([[1.0, a, b], [c, 1.0, d], [e, f, 1.0]])
        c_dim = kp.shape[-1]
        return {**sample, "keypoint": _apply_matrix(kp, shear[:c_dim, :c_dim])}


@dataclass
class Rotate(Transform):
    """Random rotation x' = Rz Ry Rx x, angles ~ U(-max_angle, max_angle) radians about x, y, z.

    ``max_angle`` is one number or three (x, y, z). 2D data turns in-plane by the z angle only.
    """

    max_angle: Any = 0.3
    random: ClassVar[bool] = True

    def __post_init__(self):
        limits = [self.max_angle] * 3 if np.isscalar(self.max_angle) else list(self.max_angle)
        if len(limits) != 3 or any(float(x) < 0 for x in limits):
            raise ConfigError(f"Rotate: max_angle must be one or three non-negative angles, got {self.max_angle}")
        self._limits = np.asarray(limits, dtype=np.float64)

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        kp = _keypoint(sample, self.name)
        ax, ay, az = rng.uniform(-self._limits, self._limits)
        if kp.shape[-1] == 2:
            return {**sample, "keypoint": _apply_matrix(kp, _rot2(az))}
        cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        return {**sample, "keypoint": _apply_matrix(kp, rz @ ry @ rx)}


def _rot2(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


@dataclass
class JointMask(Transform):
    """Zero round(ratio * V) distinct random joints in every frame, person and channel (USDRL: 15 of 25).

    Their scores become 0 too: a masked joint looks exactly like an absent one.
    """

    ratio: float = 0.6
    random: ClassVar[bool] = True

    def __post_init__(self):
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"JointMask: ratio must be in [0, 1], got {self.ratio}")

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        kp = _keypoint(sample, self.name).copy()
        joints = rng.choice(kp.shape[2], size=_count(self.ratio, kp.shape[2]), replace=False)
        kp[:, :, joints] = 0
        out = {**sample, "keypoint": kp}
        score = _score(sample)
        if score is not None:
            score = score.copy()
            score[:, :, joints] = 0
            out["keypoint_score"] = score
        return out


@dataclass
class JointLinearMap(Transform):
    """Right-multiply the coordinate rows of round(ratio * V) random joints by one C x C matrix of U(-1, 1) entries
    (USDRL's "random 3x3" corruption; the same matrix for all frames and persons). Zero joints stay zero."""

    ratio: float = 0.6
    random: ClassVar[bool] = True

    def __post_init__(self):
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"JointLinearMap: ratio must be in [0, 1], got {self.ratio}")

    def __call__(self, sample, rng=None):
        rng = _need_rng(rng, self.name)
        kp = _keypoint(sample, self.name).copy()
        joints = rng.choice(kp.shape[2], size=_count(self.ratio, kp.shape[2]), replace=False)
        matrix = rng.uniform(-1.0, 1.0, size=(kp.shape[-1], kp.shape[-1]))
        kp[:, :, joints] = (kp[:, :, joints].astype(np.float64) @ matrix).astype(np.float32)
        return {**sample, "keypoint": kp}


@dataclass
class Flip(Transform):
    """Mirror left/right: negate x and swap every left joint with its right partner (``layout.flip_permutation``);
    scores are permuted the same way. Negating x mirrors about the origin, so apply it to centred data
    (after PreNormalize3D / PreNormalize2D). Deterministic; wrap it in RandomApply for a random flip."""

    def __call__(self, sample, rng=None):
        kp = _keypoint(sample, self.name)
        perm = _layout(sample, self.name, kp).flip_permutation()
        flipped = kp[:, :, perm].copy()
        flipped[..., 0] *= -1
        flipped[..., 0] += 0.0  # -0.0 -> 0.0, so an absent joint stays bitwise zero
        out = {**sample, "keypoint": flipped}
        score = _score(sample)
        if score is not None:
            out["keypoint_score"] = score[:, :, perm]
        return out


# --------------------------------------------------------------------------------------------------------------------
# Registry and builders

TRANSFORMS: dict[str, type[Transform]] = {
    cls.__name__: cls
    for cls in (
        Compose, RandomApply, RandomChoice, PreNormalize3D, PreNormalize2D, Bone, Motion, Streams, Resize, CropResize,
        Shear, Rotate, JointMask, JointLinearMap, Flip,
    )
}


def build_transform(config: dict) -> Transform:
    """Build one transform from ``{"type": name, **options}``; nested ``transform(s)`` may be dicts too."""
    if not isinstance(config, dict) or "type" not in config:
        raise ConfigError(f"a transform config must be a dict with a 'type' key, got {config!r}")
    options = dict(config)
    name = options.pop("type")
    if name not in TRANSFORMS:
        raise ConfigError(f"unknown transform type {name!r}; known types: {', '.join(sorted(TRANSFORMS))}")
    cls = TRANSFORMS[name]
    accepted = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"transform {name!r}: unknown option(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}"
        )
    return cls(**options)


def build_transforms(configs: Sequence[dict | Transform]) -> Compose:
    """Build a :class:`Compose` pipeline from a list of config dicts (as written in an experiment YAML)."""
    if isinstance(configs, dict) or not isinstance(configs, (list, tuple)):
        raise ConfigError(f"transforms must be a list of config dicts, got {type(configs).__name__}")
    return Compose(list(configs))


def deterministic_part(configs: Sequence[dict]) -> list[dict]:
    """The transform configs of a list that draw no random numbers (what evaluation applies by default)."""
    return [t for t in configs if not build_transforms([t]).random]
