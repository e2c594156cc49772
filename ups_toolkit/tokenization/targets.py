"""Target encoding and decoding per output grammar (docs/design.md D4, D5).

- action: class index <-> ``[ACTION, EOT]``;
- coordinates: (F, J, A) values -> per-axis range normalisation -> bins -> ``[X, Y, Z] * J * F + [EOT]`` and back,
  by bin value or by the expectation over an axis-restricted bin distribution (soft-argmax);
- segments: window-relative ``[start, end)`` frames <-> ``[T_START, T_END, ACTION] * n + [EOT]``.

The decoder input is ``[BOS_task] + target[:-1]``; :func:`collate_targets` pads a batch with PAD (weight 0).
Codecs are built from a task spec by grammar name (:func:`build_codec`), so a new task that uses an existing grammar
needs no code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .specs import TaskSpec
from .vocabulary import Vocabulary


# ----------------------------------------------------------------------------------------------------------------------
# coordinates


class CoordinateQuantizer:
    """Per-axis fixed ranges [lo_a, hi_a] and n_bins bins: q = round((n_bins - 1) * clip((x - lo) / (hi - lo), 0, 1)).

    Bin q stands for x = lo + q * delta, delta = (hi - lo) / (n_bins - 1), so inside the range the round-trip error
    is at most delta / 2 per axis; outside it the value is clipped to the nearest end and reported as clipped.
    All arrays end with the axis dimension A.
    """

    def __init__(self, lo, hi, n_bins: int):
        self.lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        self.hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        if self.lo.shape != self.hi.shape or not np.all(np.isfinite(self.lo)) or not np.all(self.hi > self.lo):
            raise ConfigError(f"coordinate ranges need finite lo < hi per axis, got lo={self.lo}, hi={self.hi}")
        if int(n_bins) < 2:
            raise ConfigError(f"n_bins must be at least 2, got {n_bins}")
        self.n_bins = int(n_bins)

    @classmethod
    def from_ranges(cls, ranges: dict, axes, n_bins: int) -> "CoordinateQuantizer":
        missing = [a for a in axes if a not in ranges]
        if missing:
            raise ConfigError(f"no coordinate range for axis {missing[0]!r} (ranges given: {', '.join(ranges)})")
        return cls([ranges[a][0] for a in axes], [ranges[a][1] for a in axes], n_bins)

    @property
    def delta(self) -> np.ndarray:
        """(A,) bin spacing in the coordinates' unit."""
        return (self.hi - self.lo) / (self.n_bins - 1)

    def quantise(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(..., A) values -> ((..., A) int64 bins, (..., A) bool clipped)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != self.lo.shape:
            raise ValueError(f"expected (..., {self.lo.size}) coordinates, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("coordinates contain NaN or infinity; they cannot be quantised")
        u = (x - self.lo) / (self.hi - self.lo)
        clipped = (u < 0.0) | (u > 1.0)
        bins = np.rint((self.n_bins - 1) * np.clip(u, 0.0, 1.0)).astype(np.int64)
        return bins, clipped

    def dequantise(self, bins) -> np.ndarray:
        """(..., A) bins -> (..., A) float64 bin values lo + q * delta."""
        bins = np.asarray(bins)
        if bins.size and (bins.min() < 0 or bins.max() >= self.n_bins):
            raise ValueError(f"bins must lie in [0, {self.n_bins})")
        return self.lo + bins * self.delta

    def expectation(self, probs):
        """(..., A, n_bins) bin probabilities -> (..., A) expected values lo + delta * sum_q p(q) q (soft-argmax).

        Works on numpy arrays and on torch tensors (differentiable), in the tensor's own dtype and device."""
        q = _arange_like(probs, self.n_bins)
        expected_bin = (probs * q).sum(-1)
        lo, delta = _like(probs, self.lo), _like(probs, self.delta)
        return lo + delta * expected_bin

    def expectation_from_logits(self, logits):
        """Same as :meth:`expectation` from axis-restricted logits (..., A, n_bins)."""
        return self.expectation(_softmax(logits))


def _arange_like(ref, n: int):
    if isinstance(ref, np.ndarray):
        return np.arange(n, dtype=np.float64)
    import torch

    return torch.arange(n, dtype=ref.dtype, device=ref.device)


def _like(ref, values: np.ndarray):
    if isinstance(ref, np.ndarray):
        return values
    import torch

    return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)


def _softmax(logits):
    if isinstance(logits, np.ndarray):
        z = logits - logits.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)
    return logits.softmax(-1)


def ranges_from_percentiles(values, axes, percentiles=(0.1, 99.9)) -> dict[str, tuple[float, float]]:
    """Per-axis [lo, hi] from training values (..., A) at the given percentiles (docs/design.md D4)."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1, len(axes))
    flat = flat[np.all(np.isfinite(flat), axis=1)]
    if len(flat) == 0:
        raise ValueError("no finite values to compute coordinate ranges from")
    lo, hi = np.percentile(flat, percentiles, axis=0)
    ranges = {}
    for axis, a, b in zip(axes, lo, hi):
        if not b > a:  # a constant axis still needs a non-empty range
            a, b = a - 1e-3, b + 1e-3
        ranges[axis] = (float(a), float(b))
    return ranges


def quantisation_floor(values, quantizer: CoordinateQuantizer) -> dict[str, float]:
    """The error quantise -> dequantise alone leaves on targets (..., A) (docs/design.md D4): mean Euclidean error
    (same unit as the values; x 1000 for mm when they are metres), RMS per-axis error and the clip rate."""
    values = np.asarray(values, dtype=np.float64)
    bins, clipped = quantizer.quantise(values)
    error = quantizer.dequantise(bins) - values
    return {
        "mean_euclidean_error": float(np.linalg.norm(error, axis=-1).mean()),
        "rms_axis_error": float(np.sqrt((error**2).mean())),
        "clip_rate": float(clipped.mean()),
    }


# ----------------------------------------------------------------------------------------------------------------------
# codecs


class ActionCodec:
    """Recognition and early prediction: target ``[ACTION(label), EOT]``."""

    grammar = "action"

    def __init__(self, vocab: Vocabulary, task: TaskSpec, label_set: str | None = None):
        self.task, self.label_set = task, task.resolve_label_set(label_set)
        self.class_ids = vocab.label_set_ids(self.label_set)  # (K,) token id of each class index
        self.eot_id = vocab.eot_token(task.name)
        self.length = 2
        self._class_of = {int(t): i for i, t in enumerate(self.class_ids)}

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def encode(self, label: int) -> np.ndarray:
        if not 0 <= int(label) < self.num_classes:
            raise ValueError(f"label {label} outside label set {self.label_set!r} (0..{self.num_classes - 1})")
        return np.array([self.class_ids[int(label)], self.eot_id], dtype=np.int64)

    def decode(self, tokens) -> int:
        """Class index of the first token, or -1 when it is not an action of this label set."""
        return self._class_of.get(int(np.asarray(tokens).reshape(-1)[0]), -1)

    def class_scores(self, step_logits):
        """(..., V) logits of the first target step -> (..., K) logits over the label set, in class-index order."""
        return step_logits[..., self.class_ids]

    def topk(self, step_logits, k: int = 5) -> np.ndarray:
        """(B, V) -> (B, k) class indices, best first; ties go to the lower class index (docs/design.md §12.1)."""
        scores = np.asarray(self.class_scores(step_logits), dtype=np.float64)
        return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


class CoordinateCodec:
    """Pose estimation and motion prediction: (F, J, A) values -> ``F * J * A`` bin tokens + EOT (frame-major, then
    joint, then axis: X, Y, Z of joint 0 first)."""

    grammar = "coordinates"

    def __init__(self, vocab: Vocabulary, task: TaskSpec, *, layout: str | None = None,
                 num_joints: int | None = None, ranges: dict | None = None):
        self.task = task
        self.axes = task.output.axes
        self.frames = task.output.frames
        self.num_joints = int(num_joints) if num_joints is not None else task.num_joints(layout)
        self.quantizer = CoordinateQuantizer.from_ranges(ranges or task.output.ranges, self.axes, vocab.n_bins)
        self.offsets = np.array([vocab.coordinate_offset(a) for a in self.axes], dtype=np.int64)
        self.eot_id = vocab.eot_token(task.name)
        self.n_values = self.frames * self.num_joints * len(self.axes)
        self.length = self.n_values + 1
        self.n_clipped = 0  # running counts over every encode() call, for the clip rate
        self.n_encoded = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.frames, self.num_joints, len(self.axes)

    @property
    def clip_rate(self) -> float:
        return self.n_clipped / self.n_encoded if self.n_encoded else 0.0

    def encode(self, values, return_clipped: bool = False):
        """(..., F, J, A) values -> (..., F*J*A + 1) int64 tokens ending in EOT; with ``return_clipped`` also the
        number of clipped values."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-3:] != self.shape:
            raise ValueError(f"task {self.task.name!r} expects targets of shape (..., {self.frames}, "
                             f"{self.num_joints}, {len(self.axes)}), got {values.shape}")
        bins, clipped = self.quantizer.quantise(values)
        lead = values.shape[:-3]
        tokens = (bins + self.offsets).reshape(*lead, self.n_values)
        eot = np.full((*lead, 1), self.eot_id, dtype=np.int64)
        n_clipped = int(clipped.sum())
        self.n_clipped += n_clipped
        self.n_encoded += clipped.size
        tokens = np.concatenate([tokens, eot], axis=-1)
        return (tokens, n_clipped) if return_clipped else tokens

    def bins_of(self, tokens) -> np.ndarray:
        """(..., >= F*J*A) tokens -> (..., F, J, A) bins; every token must be a bin of its position's axis."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.shape[-1] < self.n_values:
            raise ValueError(f"expected at least {self.n_values} coordinate tokens, got {tokens.shape[-1]}")
        body = tokens[..., : self.n_values].reshape(*tokens.shape[:-1], *self.shape)
        bins = body - self.offsets
        bad = (bins < 0) | (bins >= self.quantizer.n_bins)
        if bad.any():
            where = np.argwhere(bad.reshape(*tokens.shape[:-1], -1))[0]
            raise ValueError(f"token at target position {int(where[-1])} is not a bin of axis "
                             f"{self.axes[int(where[-1]) % len(self.axes)]!r}")
        return bins

    def decode(self, tokens) -> np.ndarray:
        """(..., L) tokens -> (..., F, J, A) float64 bin values."""
        return self.quantizer.dequantise(self.bins_of(tokens))

    def decode_expectation(self, axis_logits):
        """(..., F, J, A, n_bins) logits restricted to each position's axis family -> (..., F, J, A) soft-argmax
        values (numpy or torch)."""
        return self.quantizer.expectation_from_logits(axis_logits)


@dataclass(frozen=True)
class Segment:
    label: int  # class index in the label set
    start: int  # first frame, window-relative
    end: int  # one past the last frame
    score: float = 1.0


class SegmentCodec:
    """Detection: window-relative segments [start, end) -> ``[T_START, T_END, ACTION]`` per segment, sorted by
    (start, end, label), at most N, then EOT.

    Temporal bins cover the window evenly: bin b = frames [b*W/n, (b+1)*W/n) with n = n_time_bins, W = window
    (n = W, the default, makes bin = frame offset). T_END holds the bin of the **last** frame (end - 1), so the
    grammar's ``T_END >= T_START`` means "at least one frame".
    """

    grammar = "segments"

    def __init__(self, vocab: Vocabulary, task: TaskSpec, label_set: str | None = None):
        self.task, self.label_set = task, task.resolve_label_set(label_set)
        self.class_ids = vocab.label_set_ids(self.label_set)
        self._class_of = {int(t): i for i, t in enumerate(self.class_ids)}
        self.eot_id = vocab.eot_token(task.name)
        self.time_offset = vocab.time_offset
        self.max_segments = task.output.max_segments
        self.n_time_bins = task.output.n_time_bins
        self.window = int(task.input.params.get("window") or self.n_time_bins)
        self.length = 3 * self.max_segments + 1
        self.n_truncated = 0  # segments dropped beyond N, over every encode() call

    def _bin(self, frame: int) -> int:
        return frame * self.n_time_bins // self.window

    def encode(self, segments) -> np.ndarray:
        """Segments (dicts with label/start/end, :class:`Segment`, or (S, 3) [label, start, end]) -> 1-D tokens."""
        rows = []
        for seg in segments:
            if isinstance(seg, dict):
                label, start, end = seg["label"], seg["start"], seg["end"]
            elif isinstance(seg, Segment):
                label, start, end = seg.label, seg.start, seg.end
            else:
                label, start, end = seg
            label, start, end = int(label), int(start), int(end)
            if not 0 <= label < len(self.class_ids):
                raise ValueError(f"segment label {label} outside label set {self.label_set!r}")
            if not 0 <= start < end <= self.window:
                raise ValueError(f"segment [{start}, {end}) is empty or outside the window [0, {self.window})")
            rows.append((start, end, label))
        rows.sort()
        self.n_truncated += max(0, len(rows) - self.max_segments)
        tokens = []
        for start, end, label in rows[: self.max_segments]:
            tokens += [self.time_offset + self._bin(start), self.time_offset + self._bin(end - 1),
                       int(self.class_ids[label])]
        return np.array(tokens + [self.eot_id], dtype=np.int64)

    def decode(self, tokens, token_probs=None) -> list[Segment]:
        """Tokens up to EOT -> segments; score = probability of the ACTION token when ``token_probs`` (same length
        as ``tokens``) is given (Pix2Seq's rule), else 1. A malformed triple ends decoding."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        out = []
        for p in range(0, len(tokens) - 2, 3):
            if tokens[p] == self.eot_id:
                break
            b0, b1 = tokens[p] - self.time_offset, tokens[p + 1] - self.time_offset
            label = self._class_of.get(int(tokens[p + 2]), -1)
            if not (0 <= b0 <= b1 < self.n_time_bins) or label < 0:
                break
            start = int(b0) * self.window // self.n_time_bins
            end = (int(b1) + 1) * self.window // self.n_time_bins
            score = float(token_probs[p + 2]) if token_probs is not None else 1.0
            out.append(Segment(label, start, end, score))
        return out


CODECS = {"action": ActionCodec, "coordinates": CoordinateCodec, "segments": SegmentCodec}


def build_codec(task: TaskSpec, vocab: Vocabulary, *, label_set: str | None = None, layout: str | None = None,
                num_joints: int | None = None, ranges: dict | None = None):
    """The codec of a task's grammar. ``label_set`` (action, segments) defaults to the task's first; ``layout`` or
    ``num_joints`` (coordinates) fixes J; ``ranges`` overrides the task file's fixed ranges (e.g. percentiles)."""
    grammar = task.output.grammar
    if grammar == "action":
        return ActionCodec(vocab, task, label_set)
    if grammar == "segments":
        return SegmentCodec(vocab, task, label_set)
    if grammar == "coordinates":
        return CoordinateCodec(vocab, task, layout=layout, num_joints=num_joints, ranges=ranges)
    raise ConfigError(f"{task.path}: task {task.name!r} is encoder-only (output.grammar {grammar!r}): no targets")


# ----------------------------------------------------------------------------------------------------------------------
# decoder inputs and padding


def decoder_input(target, bos_id: int) -> np.ndarray:
    """``[BOS_task] + target[:-1]`` for a 1-D target."""
    target = np.asarray(target, dtype=np.int64)
    return np.concatenate([[bos_id], target[:-1]]).astype(np.int64)


def collate_targets(targets, *, bos_id: int, eot_id: int, pad_id: int = 0, eot_weight: float = 1.0,
                    length: int | None = None) -> dict[str, np.ndarray]:
    """Pad 1-D targets of one task into a batch (docs/design.md D5, D9).

    Returns ``decoder_input_ids`` (B, L) int64 = [BOS] + target[:-1] then PAD, ``labels`` (B, L) int64 = target
    then PAD, ``label_weights`` (B, L) float32 = 1 on action/coordinate/time tokens, ``eot_weight`` on EOT, 0 on PAD.
    ``length`` pads to a fixed L (>= the longest target).
    """
    targets = [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
    longest = max(len(t) for t in targets)
    length = longest if length is None else int(length)
    if length < longest:
        raise ValueError(f"length {length} is shorter than the longest target ({longest})")
    batch = len(targets)
    inputs = np.full((batch, length), pad_id, dtype=np.int64)
    labels = np.full((batch, length), pad_id, dtype=np.int64)
    for i, t in enumerate(targets):
        labels[i, : len(t)] = t
        inputs[i, : len(t)] = decoder_input(t, bos_id)
    weights = np.where(labels == pad_id, 0.0, np.where(labels == eot_id, eot_weight, 1.0)).astype(np.float32)
    return {"decoder_input_ids": inputs, "labels": labels, "label_weights": weights}
