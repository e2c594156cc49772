"""Run one task of a loaded model over prepared inputs: batched, cached, grammar-constrained decoding
(``model.predict``), then per input sequence a result. What a result holds is the task kind's
(``TaskKind.infer`` in :mod:`ups_toolkit.kinds`); this module holds the session and what every kind shares.

| task kind | per sequence | arrays (NPZ) |
|---|---|---|
| recognition (whole_sequence) | top-k labels with probabilities | |
| early prediction (observed_prefix) | top-k at each observation ratio | |
| pose estimation (consecutive) | the 3D pose of every frame (one 64-frame window per frame, flip-averaged when the task's ``flip_test``), root-relative metres | ``pose_3d`` (T, J, 3) |
| motion prediction (observed_window) | K future frames after the observed window (+ error against the frames that follow, when the input has them) | ``observed``, ``future``, ``ground_truth`` |
| detection (sliding_window) | segments merged over windows (training's merging: touching same-class joined, per-class NMS) | |
| retrieval (encoder only) | nearest gallery sequences by cosine of pooled features | ``feature`` |

Predictions of coordinate tasks are in the space the model predicts in: after the task's transforms (e.g.
PreNormalize3D centres every frame on person 1 and turns the shoulders onto the x axis), metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import numpy as np

from ..errors import ConfigError
from .recipe import TaskRecipe


@dataclass
class Result:
    """One input sequence: ``sample`` (in the model layout, ``original_keypoint`` as given), ``record`` (its entry of
    results.json), ``arrays`` (its NPZ entries)."""

    index: int
    sample: dict
    record: dict
    arrays: dict = field(default_factory=dict)


@dataclass
class Session:
    """A loaded model and everything a task run needs."""

    model: object
    recipe: TaskRecipe
    layout: str  # the model layout of the inputs
    device: str = "cpu"
    top_k: int = 5
    batch_size: int = 64
    label_names: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.recipe.model_task


def label_names(model, label_set: str | None) -> list[str]:
    """Class names of a label set in class-index order: as its ``tokenizers/labels`` file writes them, else (a model
    used without the checkout's label files) the prompts of its action tokens in the model's vocabulary."""
    if label_set is None:
        return []
    ids = model.vocabulary.label_set_ids(label_set)
    try:
        from ..resources import load_label_set

        names = load_label_set(label_set)
        if len(names) == len(ids):
            return names
    except ConfigError:
        pass
    return [model.vocabulary.prompts[int(i)] for i in ids]


def ground_truth_name(sample: dict) -> str | None:
    names, label = sample.get("class_names"), int(sample.get("label", -1))
    if names and 0 <= label < len(names):
        return str(names[label])
    return None


def same_action(vocab, a: str | None, b: str | None) -> bool | None:
    """Whether two class names are one action token of the vocabulary (normalised, aliases applied); None when
    either is unknown."""
    if a is None or b is None:
        return None
    from ..tokenization.vocabulary import normalise_name

    try:
        return vocab.action_token(a) == vocab.action_token(b)
    except ConfigError:
        return normalise_name(a) == normalise_name(b)


def batches(session: Session, examples: InferenceExamples, keys=("pose",), size: int | None = None):
    """(examples of the batch, {key: tensor (B, ...)}) over all items, ``size`` (default ``batch_size``) at a time."""
    import torch

    size = size or session.batch_size
    for start in range(0, len(examples), size):
        items = [examples.example(i, None) for i in range(start, min(start + size, len(examples)))]
        tensors = {k: torch.from_numpy(np.stack([it[k] for it in items]).astype(np.float32)).to(session.device)
                   for k in keys if k in items[0]}
        yield items, tensors


def base_record(index: int, sample: dict, layout: str) -> dict:
    record = {"index": index, "sample_id": str(sample.get("sample_id", "")), "source": str(sample.get("source", "")),
              "frames": int(len(sample["keypoint"])), "layout": sample.get("layout_in", sample["layout"]),
              "model_layout": layout}
    if "dataset_index" in sample:
        record["dataset_index"] = int(sample["dataset_index"])
    truth = ground_truth_name(sample)
    if truth is not None:
        record["ground_truth"] = truth
    return record


# ----------------------------------------------------------------------------------------------------------------------
# tasks


def task_kind(session: Session):
    """The kind of the task asked for (retrieval's own, not that of the model task whose route it runs)."""
    from ..kinds import kind_of

    return kind_of(session.recipe.spec)


def run_task(session: Session, samples: list[dict], *, observe=None, start: int | None = None,
             min_score: float = 0.0, gallery: list[dict] | None = None) -> list[Result]:
    """One result per sample (all in the session's layout), made by the task's kind. ``observe``: early
    prediction's ratios (default the task's); ``start``: motion prediction's first observed frame; ``min_score``:
    detection's threshold; ``gallery``: retrieval's sequences to search."""
    options = {"observe": observe, "start": start, "min_score": min_score, "gallery": gallery}
    return task_kind(session).infer(session, samples, options)
