"""Synthetic skeleton data for the demo and the tests: made-up motions, not recordings of anyone.

Every sample is built by forward kinematics. A layout's rest pose (a small table of joint positions below) gives the
bone vectors along the layout's own bone table (``layouts.yaml``); each action is a set of joint-angle curves over
time (smooth strokes and sinusoids with per-sample amplitude, speed, phase and duration); a person also gets a body
size, an idle posture, a place in front of the camera, a heading and sensor-like jitter. Body parts are found by joint
name, so the motions are written once for every layout.

Kinds (``generate_samples``):

* ``ntu25_3d``: Kinect v2 layout, Kinect camera frame in metres (y up, z away from the camera, people about 3 m
  away; x = the camera's left = the right side of a person facing the camera), 2 person slots; 20 % of the samples
  have a second person doing an independent action (the label is the first person's); otherwise slot 2 is zero.
* ``h36m17_3d``: the same camera frame with the Human3.6M-17 layout, 1 person.
* ``h36m17_2d``: the pinhole projection of ``h36m17_3d`` (pixels, ``keypoint_score`` = 1, ``img_shape``); a 2D sample
  and the 3D sample of the same motion share ``sample_id`` (2D -> 3D lifting pairs them by it).
* ``untrimmed``: ntu25 sequences of several actions separated by idle gaps, with ``segments`` ([start, end), 0-based
  frames) and ``frame_labels`` (-1 = background); every class occurs exactly ``num_per_class`` times.

Randomness comes only from ``np.random.default_rng`` seeded with ``(seed, stream, ...)``, one generator per sample, so
the output is bit-identical for the same seed and a sample does not depend on how many others are generated.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ConfigError
from ..resources import load_label_set
from ..skeleton import get_layout
from .schema import validate_sample

#: bump when the output for the same (seed, num_per_class) changes; it is part of every fingerprint
GENERATOR_VERSION = "1"
LABEL_SET = "synthetic"
KINDS = ("ntu25_3d", "h36m17_3d", "h36m17_2d", "untrimmed")
FPS = 30.0
MIN_FRAMES, MAX_FRAMES = 40, 120  # duration of one action (frames)
SECOND_PERSON_RATE = 0.2  # ntu25_3d
TEST_FRACTION = 0.25
NOISE_STD = 0.004  # metres per coordinate, about the jitter of a Kinect v2 skeleton at rest

# The documented pinhole camera of the 2D samples, an ordinary (not mirrored) image seen from the camera:
#     u = CX - FX * x / z,    v = CY - FY * y / z    (pixels; u grows to the right, v downwards)
# i.e. the OpenCV pinhole applied to (-x, -y, z). A person facing the camera has their right side on the image's
# left. (NTU's colorX grows with x instead: Kinect v2 colour coordinates are mirrored.)
IMAGE_SHAPE = (1080, 1920)  # (H, W), as stored in ``img_shape``
FX = FY = 1000.0
CX, CY = 960.0, 540.0

# Where the scene is (metres): distance of a person from the camera, camera height above the floor, body size.
DEPTH_RANGE = (2.7, 3.4)
CAMERA_HEIGHT_RANGE = (1.1, 1.3)
BODY_SCALE_RANGE = (0.88, 1.12)  # x 1.75 m
MAX_HEADING = 0.5  # radians either side of facing the camera

# Streams keep the generators of the kinds (and of the split assignment) independent of each other.
_STREAM = {"ntu25_3d": 1, "h36m17_3d": 2, "h36m17_2d": 2, "untrimmed": 3}
_SPLIT_STREAM = 100


def _with_right_side(left_side: dict[str, tuple[float, float, float]]) -> dict[str, tuple[float, float, float]]:
    """Add every ``right_*`` joint as the mirror image (x -> -x) of its ``left_*`` partner."""
    table = dict(left_side)
    for name, (x, y, z) in left_side.items():
        if name.startswith("left_"):
            table["right_" + name[len("left_"):]] = (-x, y, z)
    return table


# Rest pose of a 1.75 m person standing upright (metres): feet on the floor (y = 0), facing the camera (-z), right
# side towards +x, arms hanging. Only positions are listed; the bones are the layout's.
REST_POSE = {
    "ntu25": _with_right_side({
        "spine_base": (0.0, 0.95, 0.0), "spine_mid": (0.0, 1.20, 0.01), "spine_shoulder": (0.0, 1.43, 0.0),
        "neck": (0.0, 1.52, 0.0), "head": (0.0, 1.64, -0.01),
        "left_shoulder": (-0.18, 1.41, 0.0), "left_elbow": (-0.21, 1.13, 0.01), "left_wrist": (-0.22, 0.88, -0.01),
        "left_hand": (-0.22, 0.81, -0.01), "left_thumb": (-0.20, 0.80, -0.05), "left_hand_tip": (-0.22, 0.72, -0.01),
        "left_hip": (-0.09, 0.91, 0.0), "left_knee": (-0.10, 0.50, -0.01), "left_ankle": (-0.10, 0.08, 0.01),
        "left_foot": (-0.11, 0.02, -0.11),
    }),
    "h36m17": _with_right_side({
        "pelvis": (0.0, 0.95, 0.0), "spine": (0.0, 1.18, 0.0), "thorax": (0.0, 1.42, 0.0),
        "neck_nose": (0.0, 1.55, -0.09), "head": (0.0, 1.70, -0.02),
        "left_hip": (-0.12, 0.93, 0.0), "left_knee": (-0.12, 0.50, -0.01), "left_ankle": (-0.12, 0.07, 0.02),
        "left_shoulder": (-0.16, 1.40, 0.0), "left_elbow": (-0.19, 1.12, 0.01), "left_wrist": (-0.20, 0.87, -0.02),
    }),
}

# The body parts motions drive, by joint name. A part is named by the joint at the far end of its bone: rotating the
# part swings that bone about its parent joint and carries everything beyond it. ``root`` is where the kinematic tree
# starts (the pelvis); the soles touch the floor. ``*_foot`` is optional (kept flat on the floor when present).
BODY_PARTS = {
    "ntu25": {
        "root": "spine_base", "torso": "spine_mid", "neck": "neck",
        "right_upper_arm": "right_elbow", "right_forearm": "right_wrist",
        "left_upper_arm": "left_elbow", "left_forearm": "left_wrist",
        "right_thigh": "right_knee", "right_shin": "right_ankle", "right_foot": "right_foot",
        "left_thigh": "left_knee", "left_shin": "left_ankle", "left_foot": "left_foot",
        "right_sole": "right_foot", "left_sole": "left_foot",
    },
    "h36m17": {
        "root": "pelvis", "torso": "spine", "neck": "neck_nose",
        "right_upper_arm": "right_elbow", "right_forearm": "right_wrist",
        "left_upper_arm": "left_elbow", "left_forearm": "left_wrist",
        "right_thigh": "right_knee", "right_shin": "right_ankle",
        "left_thigh": "left_knee", "left_shin": "left_ankle",
        "right_sole": "right_ankle", "left_sole": "left_ankle",
    },
}


# ---- kinematic model ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    """A layout's skeleton as a kinematic tree rooted at the pelvis.

    ``parent`` (V,) is the parent in that tree (-1 at the root); ``order`` lists parents before children; ``offset``
    (V, 3) is the rest bone vector from the parent in metres (the root's rest position for the root); ``part`` maps
    body-part names to joint indices.
    """

    layout: str
    parent: tuple[int, ...]
    order: tuple[int, ...]
    offset: np.ndarray
    part: dict[str, int]


@lru_cache(maxsize=None)
def body_model(layout_name: str) -> Body:
    """Kinematic tree of a layout that has a rest pose here (``ntu25``, ``h36m17``).

    The bones are the layout's parent table taken as undirected edges and re-rooted at the pelvis, so bending at the
    hips carries the upper body whatever joint the layout's own table starts from.
    """
    if layout_name not in REST_POSE:
        raise ConfigError(f"no synthetic rest pose for layout {layout_name!r}; have {', '.join(sorted(REST_POSE))}")
    layout = get_layout(layout_name)
    table = REST_POSE[layout_name]
    missing, unknown = set(layout.joint_names) - set(table), set(table) - set(layout.joint_names)
    if missing or unknown:
        raise ConfigError(
            f"synthetic rest pose of {layout_name!r} does not match the layout's joints: "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    rest = np.array([table[name] for name in layout.joint_names], dtype=np.float64)
    part = {role: layout.index(name) for role, name in BODY_PARTS[layout_name].items()}
    neighbours = [[] for _ in range(layout.num_joints)]
    for child, parent in layout.bones():
        neighbours[child].append(parent)
        neighbours[parent].append(child)
    root = part["root"]
    parent = [-2] * layout.num_joints
    parent[root] = -1
    order, queue = [], deque([root])
    while queue:
        joint = queue.popleft()
        order.append(joint)
        for other in neighbours[joint]:
            if parent[other] == -2:
                parent[other] = joint
                queue.append(other)
    if len(order) != layout.num_joints:
        raise ConfigError(f"layout {layout_name!r}: the bone table does not connect every joint")
    offset = rest - rest[[max(p, 0) for p in parent]]
    offset[root] = rest[root]
    return Body(layout_name, tuple(parent), tuple(order), offset, part)


def _rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """(...,) radians -> (..., 3, 3) right-handed rotation about coordinate axis 0 (x), 1 (y) or 2 (z)."""
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros(np.shape(angle) + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[..., axis, axis] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


def forward_kinematics(body: Body, angles: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Joint positions (T, V, 3) in the body frame (metres) from per-joint bone rotations ``angles`` (T, V, 3).

    ``angles[:, j]`` = (pitch about x, roll about z, yaw about y) in radians of the bone ending at joint j, relative to
    its parent bone, applied as R_y(yaw) R_z(roll) R_x(pitch). On a bone pointing down, +pitch swings it forward (-z)
    and +roll swings it towards +x; +yaw turns a forward-pointing bone towards -x.
    """
    local = (
        _rotation(1, angles[..., 2]) @ _rotation(2, angles[..., 1]) @ _rotation(0, angles[..., 0])
    )  # (T, V, 3, 3)
    frames, joints = angles.shape[:2]
    world = np.empty((frames, joints, 3, 3))
    position = np.empty((frames, joints, 3))
    for j in body.order:
        p = body.parent[j]
        if p < 0:
            world[:, j] = local[:, j]
            position[:, j] = body.offset[j] * scale
        else:
            world[:, j] = world[:, p] @ local[:, j]
            position[:, j] = position[:, p] + world[:, j] @ (body.offset[j] * scale)
    return position


# ---- motions ------------------------------------------------------------------------------------------------------
class Motion:
    """Joint-angle curves of one person over ``num_frames`` frames, by body part (see :data:`BODY_PARTS`).

    ``angles[part]`` (T, 3) radians (pitch, roll, yaw) as in :func:`forward_kinematics`; ``lift`` (T,) metres above
    the floor (jumps); ``turn`` (T,) radians added to the heading; ``stance`` (T, 2) weights of the (left, right)
    sole that stays in place horizontally.
    """

    def __init__(self, num_frames: int):
        self.num_frames = num_frames
        self.angles: dict[str, np.ndarray] = {}
        self.lift = np.zeros(num_frames)
        self.turn = np.zeros(num_frames)
        self.stance = np.full((num_frames, 2), 0.5)

    def rotate(self, part: str, pitch=0.0, roll=0.0, yaw=0.0) -> None:
        curve = self.angles.setdefault(part, np.zeros((self.num_frames, 3)))
        curve[:, 0] += pitch
        curve[:, 1] += roll
        curve[:, 2] += yaw

    def rotate_limb(self, side: str, limb: str, pitch=0.0, roll=0.0, yaw=0.0) -> None:
        """Rotate ``{side}_{limb}``; roll and yaw are given for the right side and mirrored (negated) for the left."""
        sign = 1.0 if side == "right" else -1.0
        self.rotate(f"{side}_{limb}", pitch, sign * roll, sign * yaw)

    @staticmethod
    def concatenate(parts: list["Motion"]) -> "Motion":
        """One motion after another; the heading carries over (after turning around the person stays turned)."""
        whole = Motion(sum(m.num_frames for m in parts))
        start, heading = 0, 0.0
        for m in parts:
            stop = start + m.num_frames
            for name, curve in m.angles.items():
                whole.angles.setdefault(name, np.zeros((whole.num_frames, 3)))[start:stop] = curve
            whole.lift[start:stop] = m.lift
            whole.turn[start:stop] = heading + m.turn
            whole.stance[start:stop] = m.stance
            heading += m.turn[-1]
            start = stop
        return whole


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# Speeds are set in real time (seconds, Hz), not as fractions of the action, so a short sample is not a fast one.
def _hold(rng, s):
    """0 -> 1 over the first 0.5-0.8 s of normalised time s in [0, 1] (at most a third), held, then back to 0."""
    ramp = min(rng.uniform(0.5, 0.8) * FPS / len(s), 1 / 3)
    return _smoothstep(s / ramp) * _smoothstep((1.0 - s) / ramp)


def _repeats(rng, s, seconds):
    """A random number of repetitions (at least 1) that each last at least ``seconds``."""
    return int(rng.integers(1, max(1, int(len(s) / (seconds * FPS))) + 1))


def _strokes(s, n):
    """n smooth up-and-down strokes over s in [0, 1], 0 (and at rest) at both ends."""
    return np.sin(np.pi * n * s) ** 2


def _oscillation(rng, s, low_hz, high_hz):
    """sin at a random frequency in [low_hz, high_hz), random phase."""
    cycles = rng.uniform(low_hz, high_hz) * len(s) / FPS
    return np.sin(2 * np.pi * cycles * s + rng.uniform(0, 2 * np.pi))


def _wave(side: str) -> Callable:
    def wave(rng, s):
        m, a = Motion(len(s)), rng.uniform(0.85, 1.15)
        up = _hold(rng, s)
        swing = _oscillation(rng, s, 1.0, 2.0)
        m.rotate_limb(side, "upper_arm", pitch=0.25 * up, roll=1.45 * a * up)  # elbow out at shoulder height
        m.rotate_limb(side, "forearm", roll=up * (1.25 + 0.45 * a * swing))  # forearm up, swinging side to side
        return m

    return wave


def _raise_both_arms(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.85, 1.1)
    up = _strokes(s, _repeats(rng, s, 1.3))
    for side in ("right", "left"):
        m.rotate_limb(side, "upper_arm", pitch=0.3 * up, roll=2.6 * a * up)
        m.rotate_limb(side, "forearm", roll=0.25 * up)
    return m


def _squat(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.8, 1.1)
    down = a * _strokes(s, _repeats(rng, s, 1.3))
    for side in ("right", "left"):
        m.rotate_limb(side, "thigh", pitch=1.45 * down)
        m.rotate_limb(side, "shin", pitch=-2.3 * down)
        m.rotate_limb(side, "upper_arm", pitch=1.3 * down)  # arms forward for balance
    m.rotate("torso", pitch=-0.55 * down)
    return m


def _kick_right_leg(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.85, 1.15)
    kick = _strokes(s, _repeats(rng, s, 1.2))
    m.rotate_limb("right", "thigh", pitch=1.35 * a * kick)
    m.rotate_limb("right", "shin", pitch=-4.4 * kick * (1 - kick))  # knee bends on the way, straight at the top
    m.rotate("torso", pitch=0.15 * kick)
    for side in ("right", "left"):
        m.rotate_limb(side, "upper_arm", roll=0.35 * kick)
    m.stance[:] = (1.0, 0.0)  # the left foot stays planted
    return m


def _jump(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.8, 1.2)
    u = (_repeats(rng, s, 1.5) * s) % 1.0  # phase within each jump
    crouch = np.where(u < 0.3, np.sin(np.pi * u / 0.3) ** 2, 0.0) + np.where(
        u >= 0.75, np.sin(np.pi * (u - 0.75) / 0.25) ** 2, 0.0
    )
    flight = np.where((u >= 0.3) & (u < 0.75), np.sin(np.pi * (u - 0.3) / 0.45), 0.0)
    m.lift[:] = a * rng.uniform(0.15, 0.3) * flight
    for side in ("right", "left"):
        m.rotate_limb(side, "thigh", pitch=1.0 * crouch)
        m.rotate_limb(side, "shin", pitch=-1.7 * crouch)
        m.rotate_limb(side, "upper_arm", pitch=-0.5 * crouch + 1.7 * a * flight)  # arms back, then up
    m.rotate("torso", pitch=-0.45 * crouch)
    return m


def _walk_in_place(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.85, 1.15)
    on = _hold(rng, s)
    step = _oscillation(rng, s, 0.7, 1.1)
    right, left = on * np.maximum(step, 0), on * np.maximum(-step, 0)
    for side, lifted in (("right", right), ("left", left)):
        m.rotate_limb(side, "thigh", pitch=0.95 * a * lifted)
        m.rotate_limb(side, "shin", pitch=-1.7 * a * lifted)
        m.rotate_limb(side, "forearm", pitch=0.3 * on)
    m.rotate_limb("right", "upper_arm", pitch=-0.45 * a * on * step)  # arms swing against the legs
    m.rotate_limb("left", "upper_arm", pitch=0.45 * a * on * step)
    left_stance = 0.5 + 0.5 * np.tanh(4 * (right - left))  # the foot on the floor stays in place
    m.stance[:] = np.stack([left_stance, 1 - left_stance], axis=1)
    return m


def _clap(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.9, 1.1)
    on = _hold(rng, s)
    opened = 0.5 + 0.5 * _oscillation(rng, s, 1.5, 2.5)
    for side in ("right", "left"):
        # arms forward at chest height; yaw 0.33 brings the hands together in front of the sternum
        m.rotate_limb(side, "upper_arm", pitch=1.3 * a * on, yaw=on * (0.33 - 0.8 * opened))
        m.rotate_limb(side, "forearm", pitch=0.5 * on)
    return m


def _turn_around(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.85, 1.1)
    m.turn[:] = rng.choice([-1.0, 1.0]) * a * np.pi * _smoothstep((s - 0.1) / 0.8)
    on = _hold(rng, s)
    step = _oscillation(rng, s, 0.6, 1.0)
    for side, lifted in (("right", np.maximum(step, 0)), ("left", np.maximum(-step, 0))):
        m.rotate_limb(side, "thigh", pitch=0.35 * on * lifted)
        m.rotate_limb(side, "shin", pitch=-0.6 * on * lifted)
    return m


def _bow(rng, s):
    m, a = Motion(len(s)), rng.uniform(0.85, 1.15)
    down = a * _strokes(s, _repeats(rng, s, 1.3))
    m.rotate("torso", pitch=-1.05 * down)
    m.rotate("neck", pitch=-0.35 * down)
    for side in ("right", "left"):
        m.rotate_limb(side, "upper_arm", pitch=0.9 * down)  # arms keep hanging down
    return m


#: class name (``tokenizers/labels/synthetic.yaml``) -> motion(rng, s) with s = normalised time (T,) in [0, 1]
ACTIONS: dict[str, Callable] = {
    "wave right hand": _wave("right"),
    "wave left hand": _wave("left"),
    "raise both arms": _raise_both_arms,
    "squat": _squat,
    "kick right leg": _kick_right_leg,
    "jump": _jump,
    "walk in place": _walk_in_place,
    "clap": _clap,
    "turn around": _turn_around,
    "bow": _bow,
}


@lru_cache(maxsize=None)
def class_names() -> tuple[str, ...]:
    """The synthetic label set, checked against the motion table (the YAML fixes the class order)."""
    names = tuple(load_label_set(LABEL_SET))
    no_motion, unlisted = set(names) - set(ACTIONS), set(ACTIONS) - set(names)
    if no_motion or unlisted:
        raise ConfigError(
            f"label set {LABEL_SET!r} and the synthetic motions disagree: "
            f"no motion for {sorted(no_motion)}, not in the label set {sorted(unlisted)}"
        )
    return names


# ---- people in the scene ------------------------------------------------------------------------------------------
@dataclass
class Person:
    """Where and how big one person is. Metres and radians, camera frame."""

    scale: float
    x: float
    z: float
    heading: float
    posture: Motion  # constant idle posture + breathing, added to every action

    @staticmethod
    def draw(rng, num_frames: int, x_range: tuple[float, float]) -> "Person":
        posture = Motion(num_frames)
        t = np.arange(num_frames) / FPS
        breathing = 0.015 * np.sin(2 * np.pi * t / rng.uniform(3.0, 5.0) + rng.uniform(0, 2 * np.pi))
        posture.rotate("torso", pitch=rng.uniform(-0.05, 0.05) + breathing)
        posture.rotate("neck", pitch=rng.uniform(-0.1, 0.1))
        for side in ("right", "left"):
            posture.rotate_limb(side, "upper_arm", roll=rng.uniform(0.06, 0.18))
            posture.rotate_limb(side, "forearm", pitch=rng.uniform(0.05, 0.3))
        return Person(
            scale=rng.uniform(*BODY_SCALE_RANGE),
            x=rng.uniform(*x_range),
            z=rng.uniform(*DEPTH_RANGE),
            heading=rng.uniform(-MAX_HEADING, MAX_HEADING),
            posture=posture,
        )


def pose(body: Body, motion: Motion, person: Person, floor_y: float) -> np.ndarray:
    """Camera-frame joint positions (T, V, 3) in metres of ``person`` performing ``motion`` (no sensor noise)."""
    frames, joints = motion.num_frames, len(body.parent)
    angles = np.zeros((frames, joints, 3))
    for source in (person.posture, motion):
        for name, curve in source.angles.items():
            if name in body.part:
                angles[:, body.part[name]] += curve
    for side in ("right", "left"):
        if f"{side}_foot" in body.part:  # keep the foot flat: undo the thigh and shin pitch
            angles[:, body.part[f"{side}_foot"], 0] -= (
                angles[:, body.part[f"{side}_thigh"], 0] + angles[:, body.part[f"{side}_shin"], 0]
            )
    xyz = forward_kinematics(body, angles, person.scale)
    rest = forward_kinematics(body, np.zeros((1, joints, 3)), person.scale)[0]
    soles = [body.part["left_sole"], body.part["right_sole"]]
    # the lower sole on the floor (plus the jump height), the stance sole fixed horizontally
    xyz[..., 1] += rest[soles, 1].min() - xyz[:, soles, 1].min(axis=1, keepdims=True) + motion.lift[:, None]
    anchor = np.einsum("tf,tfc->tc", motion.stance, xyz[:, soles][..., [0, 2]])
    rest_anchor = np.einsum("tf,fc->tc", motion.stance, rest[soles][:, [0, 2]])
    xyz[..., [0, 2]] += (rest_anchor - anchor)[:, None]
    heading = _rotation(1, person.heading + motion.turn)  # (T, 3, 3), about the vertical through the rest pelvis
    xyz = np.einsum("tij,tvj->tvi", heading, xyz)
    return xyz + np.array([person.x, floor_y, person.z])


def project(xyz: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame metres -> (..., 2) pixels with the documented pinhole camera (FX, FY, CX, CY)."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.stack([CX - FX * x / z, CY - FY * y / z], axis=-1)


# ---- samples ------------------------------------------------------------------------------------------------------
def _slug(name: str) -> str:
    return name.replace(" ", "_")


def _trimmed_motion(layout: str, label: int, index: int, seed: int, stream: int, max_persons: int) -> np.ndarray:
    """(T, max_persons, V, 3) float32 camera-frame metres of one trimmed action sample."""
    names = class_names()
    rng = np.random.default_rng([seed, stream, label, index])
    body = body_model(layout)
    frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    s = np.linspace(0.0, 1.0, frames)
    floor_y = -rng.uniform(*CAMERA_HEIGHT_RANGE)
    two = max_persons > 1 and rng.random() < SECOND_PERSON_RATE
    if two:  # one person on each side, in random order
        sides = [(-0.8, -0.45), (0.45, 0.8)][:: rng.choice([-1, 1])]
    else:
        sides = [(-0.4, 0.4)]
    people = []
    actions = [label] + ([int(rng.integers(len(names)))] if two else [])
    for action, x_range in zip(actions, sides):
        motion = ACTIONS[names[action]](rng, s)
        people.append(pose(body, motion, Person.draw(rng, frames, x_range), floor_y))
    keypoint = np.zeros((frames, max_persons, len(body.parent), 3))
    for m, xyz in enumerate(people):
        keypoint[:, m] = xyz + rng.normal(0.0, NOISE_STD, xyz.shape)
    return keypoint.astype(np.float32)


def _untrimmed_plan(num_per_class: int, seed: int) -> list[list[int]]:
    """Class labels of the actions of every untrimmed sequence: each class exactly ``num_per_class`` times overall,
    shuffled, cut into sequences of 3-6 actions."""
    rng = np.random.default_rng([seed, _STREAM["untrimmed"], 0])
    instances = rng.permutation(np.repeat(np.arange(len(class_names())), num_per_class)).tolist()
    plan = []
    while instances:
        # never leave fewer than 3 for the last sequence (10 classes: there are always at least 10 instances)
        take = len(instances) if len(instances) <= 6 else int(rng.integers(3, min(6, len(instances) - 3) + 1))
        plan.append(instances[:take])
        instances = instances[take:]
    return plan


def _untrimmed_sequence(labels: list[int], index: int, seed: int, max_persons: int = 2) -> dict:
    names = class_names()
    rng = np.random.default_rng([seed, _STREAM["untrimmed"], 1, index])
    body = body_model("ntu25")
    gaps = rng.integers(10, 46, size=len(labels) + 1)  # idle frames before, between and after the actions
    parts, segments, start = [Motion(int(gaps[0]))], [], int(gaps[0])
    for label, gap in zip(labels, gaps[1:]):
        frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
        parts.append(ACTIONS[names[label]](rng, np.linspace(0.0, 1.0, frames)))
        segments.append({"label": int(label), "start": start, "end": start + frames})
        parts.append(Motion(int(gap)))
        start += frames + int(gap)
    motion = Motion.concatenate(parts)
    person = Person.draw(rng, motion.num_frames, (-0.4, 0.4))
    xyz = pose(body, motion, person, floor_y=-rng.uniform(*CAMERA_HEIGHT_RANGE))
    keypoint = np.zeros((motion.num_frames, max_persons, len(body.parent), 3))
    keypoint[:, 0] = xyz + rng.normal(0.0, NOISE_STD, xyz.shape)
    frame_labels = np.full(motion.num_frames, -1, np.int64)
    for seg in segments:
        frame_labels[seg["start"]:seg["end"]] = seg["label"]
    return dict(
        keypoint=keypoint.astype(np.float32),
        layout="ntu25",
        label=-1,
        segments=segments,
        frame_labels=frame_labels.tolist(),
        fps=FPS,
        sample_id=f"untrimmed-{index:04d}",
    )


def _test_members(seed: int, stream: int, group: int, count: int) -> set[int]:
    """Seeded choice of the test members among ``count`` (a quarter, at least one when there are two or more)."""
    if count < 2:
        return set()
    n_test = max(1, int(count * TEST_FRACTION + 0.5))
    order = np.random.default_rng([seed, _SPLIT_STREAM, stream, group]).permutation(count)
    return set(order[:n_test].tolist())


def _check_options(kind: str, num_per_class: int, seed: int) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown synthetic kind {kind!r}; known: {', '.join(KINDS)}")
    if isinstance(num_per_class, bool) or not isinstance(num_per_class, (int, np.integer)) or num_per_class < 1:
        raise ConfigError(f"num_per_class must be a positive integer, got {num_per_class!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _samples_and_splits(kind: str, num_per_class: int, seed: int) -> Iterator[tuple[dict, str]]:
    _check_options(kind, num_per_class, seed)
    names = class_names()
    stream = _STREAM[kind]
    if kind == "untrimmed":
        plan = _untrimmed_plan(num_per_class, seed)
        test = _test_members(seed, stream, 0, len(plan))
        for index, labels in enumerate(plan):
            sample = _untrimmed_sequence(labels, index, seed)
            yield validate_sample(sample, num_classes=len(names)), "test" if index in test else "train"
        return
    layout = kind.split("_")[0]
    max_persons = 2 if layout == "ntu25" else 1
    tests = [_test_members(seed, stream, label, num_per_class) for label in range(len(names))]
    for index in range(num_per_class):  # index-major: any prefix holds every class
        for label, name in enumerate(names):
            keypoint = _trimmed_motion(layout, label, index, seed, stream, max_persons)
            sample = dict(
                keypoint=keypoint, layout=layout, label=label, fps=FPS, sample_id=f"{layout}-{_slug(name)}-{index:04d}"
            )
            if kind == "h36m17_2d":
                frames, persons, joints = keypoint.shape[:3]
                sample["keypoint"] = project(keypoint.astype(np.float64)).astype(np.float32)
                sample["keypoint_score"] = np.ones((frames, persons, joints), np.float32)
                sample["img_shape"] = list(IMAGE_SHAPE)
            yield validate_sample(sample, num_classes=len(names)), "test" if index in tests[label] else "train"


def generate_samples(kind: str, num_per_class: int, seed: int) -> Iterator[dict]:
    """Synthetic samples (schema dicts, :mod:`ups_toolkit.data.schema`) of one kind.

    ``kind`` in :data:`KINDS`. Trimmed kinds yield ``num_per_class`` samples of every class (index-major order),
    T in [40, 120] frames at 30 fps; ``h36m17_2d`` yields the projections of ``h36m17_3d`` with equal sample ids.
    ``untrimmed`` yields sequences of 3-6 actions in which every class occurs ``num_per_class`` times in all.
    """
    for sample, _ in _samples_and_splits(kind, num_per_class, seed):
        yield sample


def dataset_spec(kind: str):
    from .converters.base import DatasetSpec

    names = list(class_names())
    specs = {
        "ntu25_3d": DatasetSpec(layout="ntu25", num_persons=2, channels=3, class_names=names, fps=FPS),
        "h36m17_3d": DatasetSpec(layout="h36m17", num_persons=1, channels=3, class_names=names, fps=FPS),
        "h36m17_2d": DatasetSpec(
            layout="h36m17", num_persons=1, channels=2, class_names=names, fps=FPS, with_score=True,
            with_img_shape=True,
        ),
        "untrimmed": DatasetSpec(
            layout="ntu25", num_persons=2, channels=3, class_names=names, fps=FPS, with_segments=True,
            with_frame_labels=True,
        ),
    }
    if kind not in specs:
        raise ConfigError(f"unknown synthetic kind {kind!r}; known: {', '.join(KINDS)}")
    return specs[kind]


def fingerprint(kind: str, num_per_class: int, seed: int) -> str:
    text = f"synthetic:{GENERATOR_VERSION}:{kind}:{num_per_class}:{seed}"
    return hashlib.sha256(text.encode()).hexdigest()


def camera() -> dict:
    """The documented pinhole camera of the 2D samples."""
    return {
        "fx": FX, "fy": FY, "cx": CX, "cy": CY, "img_shape": list(IMAGE_SHAPE),
        "model": "u = cx - fx*x/z, v = cy - fy*y/z (camera frame: y up, z away from the camera, x = the camera's left)",
    }


def write_synthetic(out: str | Path, *, num_per_class: int = 24, seed: int = 0, overwrite: bool = False) -> Path:
    """Write ``out/<kind>`` for every kind in :data:`KINDS`, each a prepared dataset with splits ``train``/``test``
    (a seeded quarter of every class is test), plus ``out/ups_synthetic.json``. Atomic: the folder is built at
    ``out.tmp-<pid>`` and renamed into place; an existing ``out`` is refused unless ``overwrite``. Returns ``out``.
    """
    from ..atomic import atomic_directory
    from .prepared import write_prepared

    for kind in KINDS:
        _check_options(kind, num_per_class, seed)
    num_per_class, seed = int(num_per_class), int(seed)  # numpy integers are accepted but not JSON
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as staging:
        about = {
            "generator": "ups_toolkit.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "synthetic": True,
            "seed": seed,
            "num_per_class": num_per_class,
            "camera": camera(),
        }
        for kind in KINDS:
            samples = ({**sample, "_split": split} for sample, split in _samples_and_splits(kind, num_per_class, seed))
            write_prepared(
                samples, staging / kind, spec=dataset_spec(kind), fingerprint=fingerprint(kind, num_per_class, seed),
                info={**about, "kind": kind}, progress=False,
            )
        (staging / "ups_synthetic.json").write_text(json.dumps({**about, "kinds": list(KINDS)}, indent=2))
    return out
