"""Forward kinematics: joint rotations + bone offsets -> 3D joint positions.

One FK routine serves every rotation-based format (exp-map CSV, BVH). It uses column vectors: a joint's global
rotation is ``G_j = G_parent @ L_j`` and its position ``p_j = p_parent + G_parent @ offset_j``; the root's position is
``root_position + offset_root`` and its global rotation is its local one. A joint's own rotation therefore moves
its children, never itself.

The exp-map skeletons (bone offsets in their native units, the layout whose parents they use, the length unit in
metres) are data in ``kinematic_skeletons.yaml`` beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError
from .layouts import get_layout
from .rotations import expmap_to_rotmat

SKELETONS_FILE = Path(__file__).with_name("kinematic_skeletons.yaml")


@dataclass(frozen=True)
class KinematicSkeleton:
    """An exp-map skeleton: per frame, ``values_per_frame`` = 3 (root translation) + 3 x num_joints (exp-maps)."""

    name: str
    layout: str
    offsets: np.ndarray  # (V, 3) in native units, offset of each joint from its parent in the parent's frame
    metres_per_unit: float
    description: str = ""
    source: str = ""

    @property
    def parents(self) -> tuple[int, ...]:
        return get_layout(self.layout).parents

    @property
    def num_joints(self) -> int:
        return len(self.offsets)

    @property
    def values_per_frame(self) -> int:
        return 3 + 3 * self.num_joints


@lru_cache(maxsize=None)
def _load() -> dict[str, KinematicSkeleton]:
    raw = yaml.safe_load(SKELETONS_FILE.read_text())
    skeletons = {}
    for name, spec in raw.items():
        where = f"{SKELETONS_FILE}: skeleton {name!r}"
        try:
            offsets = np.asarray(spec["offsets"], dtype=np.float64)
            layout = get_layout(spec["layout"])
            metres = float(spec["metres_per_unit"])
        except KeyError as e:
            raise ConfigError(f"{where}: missing key {e.args[0]!r}") from None
        if offsets.shape != (layout.num_joints, 3):
            raise ConfigError(
                f"{where}: offsets must be {layout.num_joints} rows of 3 (one per joint of layout {layout.name!r}), "
                f"got shape {offsets.shape}"
            )
        skeletons[name] = KinematicSkeleton(
            name=name, layout=layout.name, offsets=offsets, metres_per_unit=metres,
            description=spec.get("description", ""), source=spec.get("source", ""),
        )
    return skeletons


def kinematic_skeleton_names() -> list[str]:
    return sorted(_load())


def get_kinematic_skeleton(name: str) -> KinematicSkeleton:
    skeletons = _load()
    if name not in skeletons:
        raise ConfigError(f"unknown kinematic skeleton {name!r}; known: {', '.join(sorted(skeletons))}")
    return skeletons[name]


def forward_kinematics(
    local_rotations: np.ndarray, offsets: np.ndarray, parents, root_positions: np.ndarray
) -> np.ndarray:
    """Global joint positions from local rotations.

    local_rotations: (T, V, 3, 3) rotation of each joint relative to its parent (column-vector convention).
    offsets: (V, 3) or (T, V, 3) position of each joint relative to its parent, in the parent's frame.
    parents: V parent indices, -1 for the root; every parent must come before its children.
    root_positions: (T, 3) translation added to the root's offset.
    Returns (T, V, 3) float64 in the units of ``offsets`` and ``root_positions``.
    """
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    t, v = local_rotations.shape[:2]
    offsets = np.broadcast_to(np.asarray(offsets, dtype=np.float64), (t, v, 3))
    parents = list(parents)
    if len(parents) != v:
        raise ValueError(f"{len(parents)} parents for {v} joints")
    if any(p >= j for j, p in enumerate(parents)):
        raise ValueError("forward_kinematics needs parents listed before their children")
    positions = np.empty((t, v, 3))
    rotations = np.empty((t, v, 3, 3))
    for j, p in enumerate(parents):
        if p < 0:
            rotations[:, j] = local_rotations[:, j]
            positions[:, j] = np.asarray(root_positions, dtype=np.float64) + offsets[:, j]
        else:
            rotations[:, j] = rotations[:, p] @ local_rotations[:, j]
            positions[:, j] = positions[:, p] + np.einsum("tab,tb->ta", rotations[:, p], offsets[:, j])
    return positions


def expmap_to_positions(values: np.ndarray, skeleton: KinematicSkeleton, *, zero_root: bool = False) -> np.ndarray:
    """Exp-map frames (T, 3 + 3V) -> joint positions (T, V, 3) in metres.

    Triplet 0 is the root translation (native units), triplet 1 + j the exp-map of joint j (radians; the root's is
    the global rotation). The motion-prediction reference (una-dinosauria/human-motion-prediction
    ``forward_kinematics.fkl``) multiplies row vectors, ``xyz_j = offset_j @ G_parent + xyz_parent`` with
    ``G_j = R_j @ G_parent``; that is this module's column-vector FK with local rotations ``R_j.T``, which is what
    we pass. ``zero_root`` puts the root at the origin in every frame (the global rotation is kept).
    """
    values = np.asarray(values, dtype=np.float64)
    t = len(values)
    triplets = values.reshape(t, -1, 3)
    rotations = np.swapaxes(expmap_to_rotmat(triplets[:, 1:]), -1, -2)
    root = np.zeros((t, 3)) if zero_root else triplets[:, 0]
    positions = forward_kinematics(rotations, skeleton.offsets, skeleton.parents, root)
    return positions * skeleton.metres_per_unit
