"""Allowed-token masks for grammar-constrained decoding (docs/design.md D5).

A grammar is a small table of boolean masks over the vocabulary, ``table`` (S, V), and a rule that gives the state
(a row of the table) before each target position from the prefix generated so far. Decoding applies
``table[state(prefix)]`` to the logits of the next step; training can take the same masks for every position of a
teacher-forced target (``states(targets)``) to restrict the cross-entropy to the allowed set.

| grammar     | allowed at target position p                                                               |
|-------------|--------------------------------------------------------------------------------------------|
| action      | p = 0: the label set's actions; p = 1: EOT                                                 |
| coordinates | p < F*J*A: bins of axis (p mod A); p = F*J*A: EOT                                          |
| segments    | boundary: T_START (>= previous T_START when sorted) or EOT; after T_START = a: T_END >= a; |
|             | then the label set's actions; after N segments: EOT only                                   |

PAD is never allowed. Once a row has produced EOT it is finished: its state allows EOT only (so an argmax stays
defined) and the caller writes PAD there (:meth:`Grammar.finished`).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .specs import TaskSpec
from .vocabulary import Vocabulary


class Grammar:
    """Base class: subclasses fill ``table`` (S, V) bool and implement :meth:`state`."""

    name = ""

    def __init__(self, vocab: Vocabulary, task: TaskSpec):
        self.vocab, self.task = vocab, task
        self.eot_id = vocab.eot_token(task.name)
        self.vocab_size = len(vocab)
        self.max_length = 0
        self.table = np.zeros((0, self.vocab_size), dtype=bool)

    def _rows(self, *allowed_ids) -> np.ndarray:
        table = np.zeros((len(allowed_ids), self.vocab_size), dtype=bool)
        for row, ids in enumerate(allowed_ids):
            table[row, ids] = True
        table[:, self.vocab.pad_id] = False
        return table

    @staticmethod
    def _prefix(prefix) -> np.ndarray:
        prefix = np.asarray(prefix, dtype=np.int64)
        if prefix.ndim == 1:  # a single sequence
            prefix = prefix[None]
        if prefix.ndim != 2:
            raise ValueError(f"prefix must be (B, t) token ids, got shape {prefix.shape}")
        return prefix

    def finished(self, prefix) -> np.ndarray:
        """(B,) True where the prefix already holds EOT."""
        return (self._prefix(prefix) == self.eot_id).any(axis=1)

    def state(self, prefix) -> np.ndarray:
        """(B,) state index (row of ``table``) before the next token, given the generated prefix (B, t) (without
        the BOS token)."""
        raise NotImplementedError

    def states(self, targets) -> np.ndarray:
        """(B, L) state before each position of teacher-forced targets (B, L)."""
        targets = self._prefix(targets)
        return np.stack([self.state(targets[:, :p]) for p in range(targets.shape[1])], axis=1)

    @property
    def tokens(self) -> np.ndarray:
        """(K,) sorted ids of every token the grammar allows somewhere: the only columns a grammar-restricted loss
        needs to score."""
        return np.flatnonzero(self.table.any(axis=0))

    def positional_states(self, length: int) -> np.ndarray | None:
        """(length,) state of each position of a target that has not ended, when the state depends on the position
        alone (then ``states(targets)`` = this, with the finished state after EOT); None when it depends on the
        tokens (segments)."""
        return None

    def allowed(self, prefix) -> np.ndarray:
        """(B, V) bool mask of the tokens allowed next."""
        return self.table[self.state(prefix)]

    def masks(self, targets) -> np.ndarray:
        """(B, L, V) bool mask per teacher-forced position (dense; prefer ``table`` + :meth:`states` for long L)."""
        return self.table[self.states(targets)]


class ActionGrammar(Grammar):
    """``[ACTION, EOT]``: states 0 = label-set actions, 1 = EOT, 2 = finished."""

    name = "action"
    ACTION, EOT, DONE = 0, 1, 2

    def __init__(self, vocab: Vocabulary, task: TaskSpec, label_set: str | None = None):
        super().__init__(vocab, task)
        self.label_set = task.resolve_label_set(label_set)
        self.max_length = 2
        self.table = self._rows(vocab.label_set_ids(self.label_set), [self.eot_id], [self.eot_id])

    def state(self, prefix) -> np.ndarray:
        prefix = self._prefix(prefix)
        t = prefix.shape[1]
        state = np.full(len(prefix), min(t, self.DONE), dtype=np.int64)
        state[self.finished(prefix)] = self.DONE
        return state

    def positional_states(self, length: int) -> np.ndarray:
        return np.minimum(np.arange(length), self.DONE)

    def states(self, targets) -> np.ndarray:
        targets = self._prefix(targets)
        states = np.broadcast_to(self.positional_states(targets.shape[1]), targets.shape).copy()
        after_eot = np.cumsum(targets == self.eot_id, axis=1) - (targets == self.eot_id) > 0
        states[after_eot] = self.DONE
        return states


class CoordinateGrammar(Grammar):
    """``F*J*A`` coordinate bins, axis (p mod A) at position p, then EOT. States 0..A-1 = axis, A = EOT,
    A + 1 = finished."""

    name = "coordinates"

    def __init__(self, vocab: Vocabulary, task: TaskSpec, *, layout: str | None = None,
                 num_joints: int | None = None):
        super().__init__(vocab, task)
        self.axes = task.output.axes
        self.num_joints = int(num_joints) if num_joints is not None else task.num_joints(layout)
        self.n_values = task.output.frames * self.num_joints * len(self.axes)
        self.max_length = self.n_values + 1
        axis_ids = [np.arange(vocab.n_bins) + vocab.coordinate_offset(a) for a in self.axes]
        self.table = self._rows(*axis_ids, [self.eot_id], [self.eot_id])
        self.EOT, self.DONE = len(self.axes), len(self.axes) + 1

    def _state_at(self, positions: np.ndarray) -> np.ndarray:
        return np.where(positions < self.n_values, positions % len(self.axes),
                        np.where(positions == self.n_values, self.EOT, self.DONE))

    def state(self, prefix) -> np.ndarray:
        prefix = self._prefix(prefix)
        state = np.full(len(prefix), self._state_at(np.array(prefix.shape[1])), dtype=np.int64)
        state[self.finished(prefix)] = self.DONE
        return state

    def positional_states(self, length: int) -> np.ndarray:
        return self._state_at(np.arange(length))

    def states(self, targets) -> np.ndarray:
        targets = self._prefix(targets)
        states = np.broadcast_to(self.positional_states(targets.shape[1]), targets.shape).copy()
        after_eot = np.cumsum(targets == self.eot_id, axis=1) - (targets == self.eot_id) > 0
        states[after_eot] = self.DONE
        return states


class SegmentGrammar(Grammar):
    """``<= N x [T_START, T_END, ACTION]`` then EOT.

    States: ``start(s)`` for s = 0..n-1 (T_START >= s, or EOT) — a single unconstrained start state when
    ``output.sorted_starts`` is false; ``end(a)`` for a = 0..n-1 (T_END >= a); ACTION; EOT only (after N segments);
    finished.
    """

    name = "segments"

    def __init__(self, vocab: Vocabulary, task: TaskSpec, label_set: str | None = None):
        super().__init__(vocab, task)
        self.label_set = task.resolve_label_set(label_set)
        self.n_time = task.output.n_time_bins
        self.max_segments = task.output.max_segments
        self.sorted_starts = task.output.sorted_starts
        self.max_length = 3 * self.max_segments + 1
        self.time_offset = vocab.time_offset
        time_ids = np.arange(self.n_time) + self.time_offset
        n_start = self.n_time if self.sorted_starts else 1
        starts = [np.append(time_ids[s:], self.eot_id) for s in range(n_start)]
        ends = [time_ids[a:] for a in range(self.n_time)]
        self.END = n_start
        self.ACTION = self.END + self.n_time
        self.EOT = self.ACTION + 1
        self.DONE = self.EOT + 1
        self.table = self._rows(*starts, *ends, vocab.label_set_ids(self.label_set), [self.eot_id], [self.eot_id])

    def _time_bin(self, prefix: np.ndarray, position: int, rows: np.ndarray) -> np.ndarray:
        bins = prefix[:, position] - self.time_offset
        bad = rows & ((bins < 0) | (bins >= self.n_time))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"prefix row {row} position {position} holds token {int(prefix[row, position])}, "
                             f"expected one of the task's {self.n_time} temporal tokens")
        return np.clip(bins, 0, self.n_time - 1)

    def state(self, prefix) -> np.ndarray:
        prefix = self._prefix(prefix)
        t = prefix.shape[1]
        done = self.finished(prefix)
        live = ~done
        group, slot = divmod(t, 3)
        if slot == 0:
            if group >= self.max_segments:
                state = np.full(len(prefix), self.EOT, dtype=np.int64)
            elif group == 0 or not self.sorted_starts:
                state = np.zeros(len(prefix), dtype=np.int64)
            else:
                state = self._time_bin(prefix, t - 3, live)
        elif slot == 1:
            state = self.END + self._time_bin(prefix, t - 1, live)
        else:
            state = np.full(len(prefix), self.ACTION, dtype=np.int64)
        state[done] = self.DONE
        return state


GRAMMARS = {"action": ActionGrammar, "coordinates": CoordinateGrammar, "segments": SegmentGrammar}


def build_grammar(task: TaskSpec, vocab: Vocabulary, *, label_set: str | None = None, layout: str | None = None,
                  num_joints: int | None = None) -> Grammar:
    """The grammar of a task for one label set (action, segments) or one joint count (coordinates)."""
    grammar = task.output.grammar
    if grammar in ("action", "segments"):
        return GRAMMARS[grammar](vocab, task, label_set)
    if grammar == "coordinates":
        return CoordinateGrammar(vocab, task, layout=layout, num_joints=num_joints)
    raise ConfigError(f"{task.path}: task {task.name!r} is encoder-only (output.grammar {grammar!r}): no grammar")


def max_target_length(task: TaskSpec) -> int:
    """Longest target (EOT included) of a task over the layouts it accepts; 0 for encoder-only tasks. The decoder
    sizes its learned positions to the maximum over the configured tasks."""
    grammar = task.output.grammar
    if grammar == "action":
        return 2
    if grammar == "segments":
        return 3 * task.output.max_segments + 1
    if grammar == "coordinates":
        return max(task.output.frames * task.num_joints(l) * len(task.output.axes) for l in task.input.layouts) + 1
    return 0
