"""Joint layouts and layout-to-layout mappings, read from ``layouts.yaml`` beside this file.

A layout is pure data: joint names, a parent table (bones), left/right pairs, the centre joints and the joints that
define the body frame. Code never hard-codes joint indices; it asks the layout.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError

LAYOUTS_FILE = Path(__file__).with_name("layouts.yaml")


@dataclass(frozen=True)
class Layout:
    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    symmetry: tuple[tuple[int, int], ...]
    center: tuple[int, ...]
    axes: dict = field(default_factory=dict)
    bone_variants: dict = field(default_factory=dict)
    description: str = ""
    source: str = ""

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    def bone_parents(self, variant: str | None = None) -> tuple[int, ...]:
        """Parent table for bone features; ``variant`` picks e.g. ``pyskl`` or ``ctrgcn`` for NTU-25."""
        if variant is None:
            return self.parents
        if variant not in self.bone_variants:
            raise ConfigError(
                f"layout {self.name!r} has no bone variant {variant!r}; known: {sorted(self.bone_variants) or 'none'}"
            )
        return tuple(self.bone_variants[variant])

    def bones(self, variant: str | None = None) -> list[tuple[int, int]]:
        """(child, parent) pairs, root excluded."""
        return [(c, p) for c, p in enumerate(self.bone_parents(variant)) if p >= 0]

    def flip_permutation(self) -> np.ndarray:
        """Index array that swaps every left joint with its right partner."""
        perm = np.arange(self.num_joints)
        for a, b in self.symmetry:
            perm[a], perm[b] = b, a
        return perm

    def index(self, joint_name: str) -> int:
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise ConfigError(f"layout {self.name!r} has no joint {joint_name!r}") from None


def _check_layout(name: str, spec: dict) -> Layout:
    where = f"{LAYOUTS_FILE}: layout {name!r}"
    try:
        names = tuple(spec["joint_names"])
        parents = tuple(int(p) for p in spec["parents"])
    except KeyError as e:
        raise ConfigError(f"{where}: missing key {e.args[0]!r}") from None
    v = len(names)
    for key, table in [("parents", parents)] + [(f"bone_variants.{k}", t) for k, t in spec.get("bone_variants", {}).items()]:
        if len(table) != v:
            raise ConfigError(f"{where}: {key} has {len(table)} entries, expected {v} (one per joint)")
        if sum(p == -1 for p in table) != 1:
            raise ConfigError(f"{where}: {key} must have exactly one root (-1)")
        if any(not -1 <= p < v for p in table):
            raise ConfigError(f"{where}: {key} refers to a joint outside 0..{v - 1}")
    pairs = tuple(tuple(int(i) for i in p) for p in spec.get("symmetry", []))
    flat = [i for p in pairs for i in p]
    if len(set(flat)) != len(flat) or any(not 0 <= i < v for i in flat):
        raise ConfigError(f"{where}: symmetry pairs must be distinct joints in 0..{v - 1}")
    center = tuple(int(i) for i in spec.get("center", [parents.index(-1)]))
    return Layout(
        name=name,
        joint_names=names,
        parents=parents,
        symmetry=pairs,
        center=center,
        axes=dict(spec.get("axes", {})),
        bone_variants={k: tuple(t) for k, t in spec.get("bone_variants", {}).items()},
        description=spec.get("description", ""),
        source=spec.get("source", ""),
    )


@lru_cache(maxsize=None)
def _load() -> tuple[dict[str, Layout], dict[tuple[str, str], np.ndarray]]:
    raw = yaml.safe_load(LAYOUTS_FILE.read_text())
    mapping_specs = raw.pop("mappings", {})
    layouts = {name: _check_layout(name, spec) for name, spec in raw.items()}
    mappings = {}
    for key, spec in mapping_specs.items():
        src, _, dst = key.partition("->")
        if src not in layouts or dst not in layouts:
            raise ConfigError(f"{LAYOUTS_FILE}: mapping {key!r} names an unknown layout")
        joints = spec["joints"]
        if len(joints) != layouts[dst].num_joints:
            raise ConfigError(
                f"{LAYOUTS_FILE}: mapping {key!r} has {len(joints)} rows, expected {layouts[dst].num_joints}"
            )
        weights = np.zeros((layouts[dst].num_joints, layouts[src].num_joints), np.float64)
        for t, sources in enumerate(joints):
            for s in sources:
                weights[t, s] += 1.0 / len(sources)
        mappings[(src, dst)] = weights
    return layouts, mappings


def layout_names() -> list[str]:
    return sorted(_load()[0])


def get_layout(name: str) -> Layout:
    layouts = _load()[0]
    if name not in layouts:
        raise ConfigError(f"unknown layout {name!r}; known layouts: {', '.join(sorted(layouts))}")
    return layouts[name]


def mapping_matrix(src: str, dst: str) -> np.ndarray:
    """(V_dst, V_src) averaging weights from layout ``src`` to ``dst``, composing registered mappings if needed."""
    get_layout(src), get_layout(dst)
    if src == dst:
        return np.eye(get_layout(src).num_joints)
    mappings = _load()[1]
    # Breadth-first search over registered mappings gives the shortest composition.
    previous = {src: None}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        for a, b in mappings:
            if a == node and b not in previous:
                previous[b] = node
                queue.append(b)
    if dst not in previous:
        known = ", ".join(f"{a}->{b}" for a, b in sorted(mappings))
        raise ConfigError(f"no mapping from layout {src!r} to {dst!r}; registered mappings: {known}")
    matrix, node = np.eye(get_layout(dst).num_joints), dst
    while previous[node] is not None:
        matrix = matrix @ mappings[(previous[node], node)]
        node = previous[node]
    return matrix


def map_layout(keypoint: np.ndarray, src: str, dst: str, score: np.ndarray | None = None):
    """Convert (..., V_src, C) keypoints (and optional (..., V_src) scores) to layout ``dst``.

    A target joint built from a missing source joint (score 0, or all coordinates exactly 0 when there are no
    scores) is missing too: it becomes 0 with score 0, instead of a mean pulled towards the origin.
    Returns (keypoint (..., V_dst, C), score (..., V_dst) or None).
    """
    weights = mapping_matrix(src, dst)
    if keypoint.shape[-2] != weights.shape[1]:
        raise ConfigError(
            f"data has {keypoint.shape[-2]} joints but layout {src!r} has {weights.shape[1]}"
        )
    present = (score > 0) if score is not None else np.any(keypoint != 0, axis=-1)
    mapped = np.einsum("ts,...sc->...tc", weights, keypoint).astype(keypoint.dtype)
    uses = weights > 0
    # a target joint is present only if all of its source joints are present
    missing = np.einsum("ts,...s->...t", uses.astype(np.int32), (~present).astype(np.int32)) > 0
    mapped[missing] = 0
    new_score = None
    if score is not None:
        masked = np.where(uses, score[..., None, :], np.inf)
        new_score = np.min(masked, axis=-1).astype(score.dtype)
        new_score[missing] = 0
    return mapped, new_score
