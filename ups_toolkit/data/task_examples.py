"""Per-task examples from prepared datasets: encoder input at T frames + target tokens (training, evaluation and
inference alike).

One :class:`TaskExamples` turns the samples of one split into examples of one task. Which items and how each becomes
an example is the task's kind (:mod:`ups_toolkit.kinds`, chosen from the task file's ``input.sampling`` and
``output.grammar``):

| kind (sampling) | training item | evaluation items | input | target |
|---|---|---|---|---|
| recognition (whole_sequence) | a sequence (a random span of >= train_crop of it) | every sequence | all n valid frames resampled to T | the label |
| early prediction (observed_prefix) | a sequence, ratio random or fixed | (sequence, ratio) pairs | first n_obs frames resampled | the label |
| lifting (consecutive) | a sequence, random centre frame | (sequence, frame) every k-th frame | T consecutive 2D frames around the frame (edge-replicated or zero past the ends, optional stride) | root-relative 3D of the centre frame T//2 |
| motion prediction (observed_window) | a sequence, random window | evenly spaced windows | observed_frames frames resampled to T | K future residuals to the last observed frame |
| detection (sliding_window) | a sequence, random window start | every window (W frames, hop H) | W raw frames (zero past the end) resampled to T | segments with >= min_inside_fraction inside, window-relative |

Transforms from the config act on the encoder input after the temporal sampling; for motion prediction they act on
the whole clip (observed + future frames) before it is split, so a geometric change reaches the target too. All
randomness of an example comes from ``np.random.default_rng([seed, task_index, epoch, item])``, so an epoch is
reproducible and resuming mid-epoch gives the same examples.

Coordinate ranges of ``range_mode: percentiles`` tasks are resolved here from the training targets
(:func:`resolve_coordinate_ranges`) and written into the task spec as fixed ranges; that spec goes into the model
config, so a saved model decodes with the ranges it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..kinds import kind_of
from ..skeleton import get_layout
from ..skeleton.transforms import Compose, build_transforms
from ..tokenization.specs import TaskSpec
from ..tokenization.targets import build_codec, ranges_from_percentiles


# ----------------------------------------------------------------------------------------------------------------------
# one split of a prepared dataset (with its paired 3D targets for pose estimation)


@dataclass
class SplitData:
    """One split of a prepared dataset. ``targets_3d``: for 2D->3D pose estimation, how to find each sample's 3D
    positions: ``"column"`` (a ``keypoint_3d`` column) or a list mapping sample index -> row of ``target_dataset``."""

    path: str
    split: str
    dataset: object  # datasets.Dataset, numpy format
    layout: str
    persons: int
    channels: int
    fps: float
    class_names: list[str]
    targets_3d: object = None
    target_dataset: object = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int) -> dict:
        return self.dataset[int(index)]

    def num_frames(self, index: int) -> int:
        if "lengths" not in self._cache:
            self._cache["lengths"] = sequence_lengths(self.dataset)
        return int(self._cache["lengths"][int(index)])

    def keypoint_3d(self, index: int, sample: dict | None = None) -> np.ndarray:
        """(T, M, V, 3) metres: the 3D positions paired with sample ``index``."""
        if self.targets_3d == "column":
            return np.asarray((sample or self.sample(index))["keypoint_3d"], np.float32)
        if self.targets_3d is None:
            return np.asarray((sample or self.sample(index))["keypoint"], np.float32)
        return np.asarray(self.target_dataset[int(self.targets_3d[int(index)])]["keypoint"], np.float32)


def sequence_lengths(dataset) -> np.ndarray:
    """(N,) frames of every sample, read from the Arrow list offsets (no keypoint is decoded)."""
    import pyarrow.compute as pc

    if dataset._indices is not None:  # a selection: fall back to reading the rows
        return np.array([len(dataset[i]["keypoint"]) for i in range(len(dataset))], dtype=np.int64)
    chunks = dataset.data.column("keypoint").chunks
    lengths = [pc.list_value_length(getattr(c, "storage", c)).to_numpy(zero_copy_only=False) for c in chunks]
    return np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64)


def load_split(ref: dict, spec: TaskSpec, key: str) -> SplitData:
    """Open ``ref`` = {path, split, target_path} (checked again here for Parquet inputs, which have no metadata
    files). ``key`` names the config entry in errors."""
    from .prepared import load_prepared

    dataset = load_prepared(ref["path"], ref["split"])
    if len(dataset) == 0:
        raise ConfigError(f"key '{key}.path': split {ref['split']!r} of {ref['path']} is empty")
    layouts = set(np.unique(np.asarray(dataset["layout"])).tolist())
    if len(layouts) != 1:
        raise ConfigError(f"key '{key}.path': {ref['path']} mixes layouts {sorted(layouts)}; one task batch holds "
                          f"one layout, convert with --to-layout")
    (layout,) = layouts
    if layout not in spec.input.layouts:
        raise ConfigError(f"key '{key}.path': layout {layout!r} is not accepted by task {spec.name!r}")
    shape = dataset.features["keypoint"].shape
    persons, channels = int(shape[1]), int(shape[3])
    names = list(dataset.features["label"].names) if hasattr(dataset.features["label"], "names") else []
    fps = float(np.asarray(dataset[0]["fps"]))
    split = SplitData(ref["path"], ref["split"], dataset, layout, persons, channels, fps, names)
    if kind_of(spec).paired_3d_targets:
        _pair_3d(split, ref, key)
    return split


def _pair_3d(split: SplitData, ref: dict, key: str) -> None:
    from .prepared import load_prepared

    if ref.get("target_path") is None:
        if "keypoint_3d" not in split.dataset.column_names:
            raise ConfigError(f"key '{key}.target_path': {ref['path']} has no keypoint_3d column; name the 3D "
                              f"dataset paired by sample_id")
        split.targets_3d = "column"
        return
    target = load_prepared(ref["target_path"], ref["split"])
    ids = [str(s) for s in np.asarray(target["sample_id"])]
    index = {sid: i for i, sid in enumerate(ids)}
    if len(index) != len(ids):
        raise ConfigError(f"key '{key}.target_path': sample ids of {ref['target_path']} are not unique")
    rows = []
    for sid in (str(s) for s in np.asarray(split.dataset["sample_id"])):
        if sid not in index:
            raise DataFormatError(f"no 3D partner in {ref['target_path']} (key '{key}.target_path')",
                                  file=ref["path"], sample=sid)
        rows.append(index[sid])
    t_layouts = set(np.unique(np.asarray(target["layout"])).tolist())
    if t_layouts != {split.layout}:
        raise ConfigError(f"key '{key}.target_path': layout {sorted(t_layouts)} differs from the input's "
                          f"{split.layout!r}")
    if int(target.features["keypoint"].shape[3]) != 3:
        raise ConfigError(f"key '{key}.target_path': {ref['target_path']} does not hold 3D keypoints")
    lengths_2d, lengths_3d = sequence_lengths(split.dataset), sequence_lengths(target)
    for i, row in enumerate(rows):
        if lengths_3d[row] < lengths_2d[i]:
            raise DataFormatError(f"the 3D partner has {lengths_3d[row]} frames, the 2D sequence {lengths_2d[i]}",
                                  file=ref["target_path"], sample=ids[row])
    split.targets_3d, split.target_dataset = rows, target


# ----------------------------------------------------------------------------------------------------------------------
# examples


class TaskExamples:
    """Examples of one task from one split. ``example(item, rng)`` -> dict of numpy arrays:

    - ``pose`` (T, M, V, C) float32 encoder input, ``target`` (L,) int64 tokens (when a codec is given);
    - ``label`` class index (-1 when none), ``item`` the item number, ``sequence`` the sample index;
    - what the task's kind adds (:mod:`ups_toolkit.kinds`): early prediction ``ratio``; lifting ``coords`` (F, J, 3)
      metres and, with flip testing, ``pose_flip``; motion prediction ``coords`` (K, J, 3) residuals, metres;
      detection ``window_start``.

    Which items a split yields and how one becomes an example is the kind's (``kind.items``, ``kind.example``);
    this class holds the split, the settings, the transform pipeline and the codec they work with.
    """

    def __init__(self, spec: TaskSpec, split: SplitData, settings: dict, *, train: bool, codec=None,
                 transforms: list[dict] | None = None):
        self.spec, self.split, self.settings, self.train, self.codec = spec, split, settings, train, codec
        self._kind = None
        self.frames = spec.input.frames
        self.params = spec.input.params
        self.layout = get_layout(split.layout)
        self.pipeline: Compose = build_transforms(transforms if transforms is not None else [])
        self.flip_test = self.kind.flip_test(self)
        self.items = self.kind.items(self)
        if not self.items:
            raise ConfigError(f"task {spec.name!r}: no usable {'training' if train else 'evaluation'} example in "
                              f"split {split.split!r} of {split.path} ({self.kind.why_empty(self)})")

    @property
    def kind(self):
        """The task's kind (made again when ``spec`` is replaced, e.g. by resolved coordinate ranges)."""
        if self._kind is None or self._kind.spec is not self.spec:
            self._kind = kind_of(self.spec)
        return self._kind

    def capped(self, items: list) -> list:
        """Evaluation items cut to the settings' ``max_eval_items``."""
        cap = self.settings.get("max_eval_items")
        return items[:cap] if cap else items

    def __len__(self) -> int:
        return len(self.items)

    # ---- one example -------------------------------------------------------------------------------------------------
    def transform(self, keypoint: np.ndarray, sample: dict, rng, score=None) -> np.ndarray:
        """The configured transforms on an encoder input (after the kind's temporal sampling)."""
        if not self.pipeline.transforms:
            return keypoint
        view = {"keypoint": keypoint, "layout": self.split.layout, "sample_id": str(sample.get("sample_id", ""))}
        if score is not None:
            view["keypoint_score"] = score
        if sample.get("img_shape") is not None:
            view["img_shape"] = [int(v) for v in np.asarray(sample["img_shape"])]
        return self.pipeline(view, rng)["keypoint"]

    def example(self, item_index: int, rng: np.random.Generator | None) -> dict:
        item = self.items[item_index]
        seq = item[0]
        sample = self.split.sample(seq)
        keypoint = np.asarray(sample["keypoint"], np.float32)
        label = int(sample["label"]) if "label" in sample else -1
        out = {"item": item_index, "sequence": seq, "label": label}
        out.update(self.kind.example(self, item, sample, keypoint, rng))
        return out

    def consecutive_window(self, keypoint: np.ndarray, centre: int) -> np.ndarray:
        """T frames around ``centre`` (frame T//2 of the window), stride and border rule of the task."""
        n = len(keypoint)
        offsets = (np.arange(self.frames) - self.frames // 2) * int(self.params.get("stride", 1))
        index = centre + offsets
        if self.params.get("border", "edge") == "zero":
            window = keypoint[np.clip(index, 0, n - 1)].copy()
            window[(index < 0) | (index >= n)] = 0
            return window
        return keypoint[np.clip(index, 0, n - 1)]

    def root_relative(self, positions: np.ndarray) -> np.ndarray:
        """(..., V, 3) -> the same minus the layout's root joint (root = 0), float64 metres."""
        positions = np.asarray(positions, np.float64)
        return positions - positions[..., self.layout.root : self.layout.root + 1, :]

    def pose_target(self, seq: int, sample: dict, frame: int) -> np.ndarray:
        """(1, V, 3) root-relative 3D of person 1 at ``frame``."""
        return self.root_relative(self.split.keypoint_3d(seq, sample)[frame, 0])[None]

    def range_values(self, seed: int) -> np.ndarray:
        """(N, A) continuous targets of the training items spread over the split (ranges from percentiles)."""
        return self.kind.range_values(self, seed)


def resolve_coordinate_ranges(spec: TaskSpec, examples: TaskExamples, seed: int) -> tuple[TaskSpec, dict]:
    """For ``output.range_mode: percentiles`` tasks: per-axis ranges from the training targets at the task's
    percentiles, written into a copy of the spec as fixed ranges. Returns (spec, ranges); other specs unchanged."""
    if not kind_of(spec).coordinate_targets or spec.output.range_mode != "percentiles":
        return spec, dict(spec.output.ranges)
    values = examples.range_values(seed)
    ranges = ranges_from_percentiles(values, spec.output.axes, spec.output.range_percentiles)
    resolved = spec.with_overrides({"output": {"ranges": {a: list(r) for a, r in ranges.items()},
                                               "range_mode": "fixed"}},
                                   f"{spec.path} (ranges from training percentiles)")
    return resolved, ranges


def make_codec(spec: TaskSpec, vocab, label_set: str | None, layout: str):
    return build_codec(spec, vocab, label_set=label_set, layout=layout)
