"""What a kind of task is: the one place that knows what recognition, early prediction, lifting, motion prediction,
detection or retrieval does with its data, its outputs and its metrics.

A task file (``tasks/<name>.yaml``) names its input sampling and output grammar; :func:`kind_of` picks, once, the
registered :class:`TaskKind` whose ``sampling`` and ``grammar`` match, or the one its ``kind:`` names (a registered
name, or ``package.module:name`` for a kind of the user's, imported then).
Everything downstream — example items, the training loss, decoding an evaluation batch, scoring, the headline
metric, inference records, their summary lines and figures — asks the kind instead of comparing strings. A new
task of an existing kind is data files only; a new kind is one module with a :func:`register_kind` class.
"""

from __future__ import annotations

import importlib
import re
from typing import ClassVar

import numpy as np

from ..errors import ConfigError

KINDS: dict[str, type["TaskKind"]] = {}


def register_kind(cls: type["TaskKind"]) -> type["TaskKind"]:
    """Class decorator: make ``cls`` the kind of every task whose (sampling, grammar) it declares."""
    for other in KINDS.values():
        if cls.by_default and other.by_default and other.name != cls.name \
                and (other.sampling, other.grammar) == (cls.sampling, cls.grammar):
            raise ConfigError(f"task kinds {other.name!r} and {cls.name!r} both claim sampling {cls.sampling!r} "
                              f"with grammar {cls.grammar!r} (set by_default = False on one: task files then "
                              f"name it with 'kind:')")
    KINDS[cls.name] = cls
    return cls


def find_kind(sampling: str, grammar: str, kind: str | None = None, where: str = "") -> type["TaskKind"]:
    """The registered kind named ``kind``, else the one reading ``sampling`` and writing ``grammar``."""
    prefix = f"{where}: " if where else ""
    if kind is not None:
        if kind not in KINDS and ":" in kind:  # "package.module:name": a user's kind, registered on import
            module = kind.split(":", 1)[0]
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise ConfigError(f"{prefix}key 'kind': cannot import {module!r} for task kind {kind!r} ({e})") from None
            kind = kind.split(":", 1)[1]
        if kind not in KINDS:
            raise ConfigError(f"{prefix}key 'kind': unknown task kind {kind!r}; registered: {', '.join(sorted(KINDS))}")
        cls = KINDS[kind]
        if (cls.sampling, cls.grammar) != (sampling, grammar):
            raise ConfigError(f"{prefix}key 'kind': task kind {kind!r} reads sampling {cls.sampling!r} and writes "
                              f"grammar {cls.grammar!r}, the task file says {sampling!r} and {grammar!r}")
        return cls
    for cls in KINDS.values():
        if cls.by_default and (cls.sampling, cls.grammar) == (sampling, grammar):
            return cls
    raise ConfigError(f"{prefix}no task kind takes sampling {sampling!r} with grammar {grammar!r}; registered "
                      f"kinds: " + ", ".join(f"{c.name} ({c.sampling} -> {c.grammar})" for c in KINDS.values()))


def kind_class(spec) -> type["TaskKind"]:
    """The registered kind of a task spec: by its ``kind:`` when given, else by (input.sampling, output.grammar)."""
    return find_kind(spec.input.sampling, spec.output.grammar, spec.kind, spec.path)


def kind_of(spec) -> "TaskKind":
    """The kind object of a task spec (kinds are stateless apart from the spec they were made for)."""
    return kind_class(spec)(spec)


class TaskKind:
    """Base of every kind. Subclasses set the class attributes and override what their kind does.

    The methods take the objects they act on (``examples``: a :class:`~ups_toolkit.data.task_examples.TaskExamples`,
    ``state``: a :class:`~ups_toolkit.training.setup.TaskState`, ``session``: an inference
    :class:`~ups_toolkit.inference.runner.Session`), so a kind holds no data of its own.
    """

    name: ClassVar[str]
    sampling: ClassVar[str]  # the task file's input.sampling this kind reads
    grammar: ClassVar[str]  # the task file's output.grammar this kind writes ("none": encoder only)
    headline: ClassVar[tuple[str, bool]]  # (metric that ranks evaluations, higher is better)
    by_default: ClassVar[bool] = True  # the kind of every task file with its (sampling, grammar) and no 'kind:'
    coordinate_targets: ClassVar[bool] = False  # targets are continuous coordinates (quantised into bins)
    uses_labels: ClassVar[bool] = False  # the data's classes (a label set) are part of the targets or the output
    paired_3d_targets: ClassVar[bool] = False  # 2D input whose 3D targets come from a column or a paired dataset
    prediction_prefix: ClassVar[str] = "predicted: "  # how a picture's title introduces the record's prediction
    required_columns: ClassVar[dict[str, str]] = {}  # dataset columns the kind reads -> what they hold (errors)
    scores_horizons: ClassVar[bool] = False  # evaluation reports errors at horizons in ms (needs the data's fps)
    # the task file's ``metrics:`` names this kind computes -> the pattern of the keys each adds to the scores
    metric_keys: ClassVar[dict[str, str]] = {}
    diagnostics: ClassVar[tuple[str, ...]] = ()  # keys reported whatever the task file lists (besides the headline)
    inference_options: ClassVar[tuple[str, ...]] = ()  # infer.py options only this kind takes (observe, start, ...)

    def __init__(self, spec):
        self.spec = spec
        for i, metric in enumerate(spec.metrics):
            if metric not in self.metric_keys:
                raise ConfigError(f"{spec.path}: key 'metrics[{i}]': task kind {self.name!r} does not compute "
                                  f"{metric!r}; it computes: {', '.join(self.metric_keys) or 'none'}")

    def reported(self, metrics: dict) -> dict:
        """The scores the task file asks for (its ``metrics:``), the headline and the kind's diagnostics."""
        patterns = [re.compile(self.metric_keys[m]) for m in self.spec.metrics]
        keep = {self.headline[0], *self.diagnostics}
        return {k: v for k, v in metrics.items() if k in keep or any(p.fullmatch(k) for p in patterns)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"

    # ---- examples ---------------------------------------------------------------------------------------------------
    def items(self, examples) -> list[tuple]:
        """Training items (one per sequence) or evaluation items of ``examples``' split (capped by the settings'
        ``max_eval_items``)."""
        items = [(i,) for i in range(len(examples.split))]
        return items if examples.train else examples.capped(items)

    def example(self, examples, item: tuple, sample: dict, keypoint: np.ndarray, rng) -> dict:
        """The encoder input and target fields of one item (``pose``, ``target``, kind-specific keys)."""
        raise NotImplementedError

    def flip_test(self, examples) -> bool:
        """Whether evaluation items also carry the left/right-flipped input (``pose_flip``)."""
        return False

    def why_empty(self, examples) -> str:
        return "no sample"

    def range_values(self, examples, seed: int) -> np.ndarray:
        """(N, A) continuous training targets (coordinate kinds with ranges from percentiles)."""
        raise ConfigError(f"task {self.spec.name!r} ({self.name}) has no coordinate targets")

    def evaluation_truth(self, split):
        """Ground truth scored beyond the per-item fields (None: none); kept on the task state as ``eval_truth``."""
        return None

    # ---- training ---------------------------------------------------------------------------------------------------
    def auxiliary_loss(self, model, logits, labels, coordinates, layout: str, weight: float):
        """``weight`` × a term added to the decoder's cross-entropy by ``UPSForSeq2Seq.forward`` (None: none), from
        the teacher-forced ``logits`` (N, L, V), the target tokens and, for coordinate kinds, the true values."""
        return None

    # ---- evaluation -------------------------------------------------------------------------------------------------
    def predict_batch(self, model, state, batch: dict, top_k: int) -> dict:
        """Decode one evaluation batch into per-item tensors (the batch first)."""
        raise NotImplementedError

    def score(self, state, arrays: dict, *, horizons_ms, detection_tiou, top_k: int) -> tuple[dict, dict]:
        """(metrics {name: float}, extras) from the gathered per-item arrays of :meth:`predict_batch`."""
        raise NotImplementedError

    # ---- inference --------------------------------------------------------------------------------------------------
    def infer(self, session, samples: list[dict], options: dict) -> list:
        """One :class:`~ups_toolkit.inference.runner.Result` per input sample."""
        raise ConfigError(f"task {self.spec.name!r} ({self.name}) has no inference")

    def summary(self, result) -> list[str]:
        """Terminal lines of one inference result (under its header line)."""
        return []

    def frame_captions(self, record: dict, num_frames: int) -> list[str] | None:
        """A caption per frame of the animated input (None: none)."""
        return None

    def figures(self, result, out, name: str, truth: str | None) -> list:
        """Pictures of one inference result, written under ``out`` with file names starting with ``name``."""
        return []
