"""Encoder inputs for new data, built by the training code itself.

:func:`adapt_to_model` brings each input to a layout, channel count and person count the model was trained on
(joints mapped with :func:`~ups_toolkit.skeleton.map_layout` when the model expects another layout).
:class:`InferenceExamples` is the training side's :class:`~ups_toolkit.data.task_examples.TaskExamples` at
evaluation settings over those inputs, so resampling to T, the observed prefix, the consecutive 2D windows, motion
clips and sliding detection windows, and the transforms, are the very functions evaluation uses. The evaluation
items are kept, with two inference choices: pose estimation lifts **every** frame (stride 1), and motion prediction
observes the ``observed_frames`` frames starting at a chosen frame (by default the last ones, so the model predicts
beyond the end of the input; when the input goes on, the frames after the window are the ground truth).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..skeleton import map_layout, mapping_matrix
from ..data.task_examples import SplitData, TaskExamples
from .recipe import TaskRecipe


def choose_layout(source: str, wanted: list[str]) -> str:
    """``source`` when the model takes it, else the first wanted layout a registered mapping reaches from it."""
    if source in wanted:
        return source
    for target in wanted:
        try:
            mapping_matrix(source, target)
            return target
        except ConfigError:
            continue
    raise ConfigError(f"layout mismatch: the model takes {' or '.join(wanted)} for this task, the input is "
                      f"{source!r} and no joint mapping {source} -> {wanted[0]} is registered "
                      f"(ups_toolkit/skeleton/layouts.yaml)")


def adapt_to_model(samples: list[dict], recipe: TaskRecipe, persons_of) -> tuple[list[dict], str]:
    """Map every sample to the model's layout for this task and its person count (``persons_of(layout)``); check
    the channels. Returns (samples in the model layout, that layout). Samples keep their other keys; ``layout_in``
    and ``original_keypoint`` record the input as given (for pictures)."""
    task = recipe.task
    targets = {choose_layout(s["layout"], recipe.layouts) for s in samples}
    if len(targets) > 1:
        raise ConfigError(f"the inputs map to several layouts ({', '.join(sorted(targets))}); a batch holds one "
                          f"layout: run them separately")
    (layout,) = targets
    persons = persons_of(layout)
    out = []
    for sample in samples:
        keypoint = np.asarray(sample["keypoint"], np.float32)
        channels = keypoint.shape[-1]
        if channels not in recipe.channels:
            kinds = " or ".join(f"{c}D" for c in recipe.channels)
            raise DataFormatError(f"task {task!r} of this model takes {kinds} keypoints, the input has C = "
                                  f"{channels}", file=sample.get("source"), sample=sample.get("sample_id"))
        score = sample.get("keypoint_score")
        if sample["layout"] != layout:
            keypoint, score = map_layout(keypoint, sample["layout"], layout, score)
        if keypoint.shape[1] > persons:
            keypoint = keypoint[:, :persons]  # the model tracks this many persons; the first ones are kept
            score = None if score is None else score[:, :persons]
        elif keypoint.shape[1] < persons:
            pad = persons - keypoint.shape[1]
            keypoint = np.concatenate([keypoint, np.zeros(keypoint.shape[:1] + (pad,) + keypoint.shape[2:],
                                                          np.float32)], axis=1)
            if score is not None:
                score = np.concatenate([score, np.zeros(score.shape[:1] + (pad,) + score.shape[2:], np.float32)], 1)
        adapted = {**sample, "keypoint": keypoint, "layout": layout, "layout_in": sample["layout"],
                   "original_keypoint": sample["keypoint"]}
        if score is not None:
            adapted["keypoint_score"] = score
        out.append(adapted)
    return out, layout


class InferenceExamples(TaskExamples):
    """TaskExamples at evaluation settings over in-memory samples (all of one layout).

    ``obs_ratios``: early prediction's observation ratios; ``motion_starts``: per sample, the first observed frame of
    motion prediction. Examples come from :meth:`example` (no random generator: inference transforms are
    deterministic).
    """

    def __init__(self, recipe: TaskRecipe, samples: list[dict], layout: str, *, obs_ratios=None,
                 motion_starts=None):
        lengths = np.array([len(s["keypoint"]) for s in samples], np.int64)
        channels = int(samples[0]["keypoint"].shape[-1])
        split = SplitData(path="input", split="input", dataset=samples, layout=layout,
                          persons=int(samples[0]["keypoint"].shape[1]), channels=channels,
                          fps=float(samples[0].get("fps", 30.0)), class_names=[], _cache={"lengths": lengths})
        settings = {"eval_obs_ratios": list(obs_ratios) if obs_ratios else None, "eval_frame_stride": 1,
                    "eval_windows": 1, "max_eval_items": None}
        self.motion_starts = list(motion_starts) if motion_starts is not None else None
        super().__init__(recipe.spec, split, settings, train=False, codec=None, transforms=recipe.transforms)

    def motion_window(self, seq: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Motion prediction: the observed frames and the true frames after them (``MotionPrediction.motion_window``)."""
        return self.kind.motion_window(self, seq, start)
