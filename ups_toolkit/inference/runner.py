"""Run one task of a loaded model over prepared inputs: batched, cached, grammar-constrained decoding
(``model.predict``), then per input sequence a result.

| task (sampling) | per sequence | arrays (NPZ) |
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

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..skeleton import get_layout
from .examples import InferenceExamples, motion_starts
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


def _batches(session: Session, examples: InferenceExamples, keys=("pose",), size: int | None = None):
    """(examples of the batch, {key: tensor (B, ...)}) over all items, ``size`` (default ``batch_size``) at a time."""
    import torch

    size = size or session.batch_size
    for start in range(0, len(examples), size):
        items = [examples.example(i, None) for i in range(start, min(start + size, len(examples)))]
        tensors = {k: torch.from_numpy(np.stack([it[k] for it in items]).astype(np.float32)).to(session.device)
                   for k in keys if k in items[0]}
        yield items, tensors


def _ranked(names: list[str], labels, probs) -> list[dict]:
    return [{"label": names[int(l)], "index": int(l), "probability": round(float(p), 6)} for l, p in zip(labels, probs)]


def _base_record(index: int, sample: dict, layout: str) -> dict:
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


def run_task(session: Session, samples: list[dict], *, observe=None, start: int | None = None,
             min_score: float = 0.0, gallery: list[dict] | None = None) -> list[Result]:
    """One result per sample (all in the session's layout). ``observe``: early prediction's ratios (default the
    task's); ``start``: motion prediction's first observed frame; ``min_score``: detection's threshold;
    ``gallery``: retrieval's sequences to search."""
    spec = session.recipe.spec
    if session.recipe.task != session.recipe.model_task:
        return _retrieve(session, samples, gallery)
    sampling = spec.input.sampling
    if sampling == "whole_sequence":
        return _classify(session, samples)
    if sampling == "observed_prefix":
        ratios = list(observe or spec.options.get("obs_ratios") or [1.0])
        return _classify(session, samples, ratios)
    if sampling == "consecutive":
        return _lift(session, samples)
    if sampling == "observed_window":
        return _forecast(session, samples, start)
    if sampling == "sliding_window":
        return _detect(session, samples, min_score)
    raise ConfigError(f"task {spec.name!r}: no inference for sampling {sampling!r}")


def _classify(session: Session, samples: list[dict], ratios: list[float] | None = None) -> list[Result]:
    """Recognition (``ratios`` None) or early prediction (top-k at each observation ratio)."""
    from ..metrics.classification import observed_frame_count

    recipe = session.recipe
    examples = InferenceExamples(recipe, samples, session.layout, obs_ratios=ratios)
    ranked = defaultdict(list)
    for items, batch in _batches(session, examples):
        pred = session.model.predict(batch["pose"], session.layout, session.task, label_set=recipe.label_set,
                                     k=session.top_k)
        labels, probs = pred["topk_labels"].cpu().numpy(), pred["topk_probs"].float().cpu().numpy()
        for item, l, p in zip(items, labels, probs):
            ratio = item.get("ratio")
            ranked[int(item["sequence"])].append((None if ratio is None else round(float(ratio), 6),
                                                  _ranked(session.label_names, l, p)))
    rounding = recipe.spec.options.get("obs_rounding", "ceil")
    results = []
    for i, sample in enumerate(samples):
        record = _base_record(i, sample, session.layout)
        rows = ranked[i]
        truth = record.get("ground_truth")
        vocab = session.model.vocabulary
        if ratios is None:
            record["top_k"] = rows[0][1]
            record["prediction"] = rows[0][1][0]["label"]
        else:
            record["observed"] = [{"ratio": float(r), "observed_frames": observed_frame_count(record["frames"],
                                                                                               float(r), rounding),
                                   "top_k": top, "prediction": top[0]["label"]}
                                  for r, top in sorted(rows, key=lambda row: float(row[0]))]
            for row in record["observed"]:
                if truth is not None:
                    row["correct"] = same_action(vocab, row["prediction"], truth)
            record["prediction"] = record["observed"][-1]["prediction"]
        if truth is not None:
            record["correct"] = same_action(vocab, record["prediction"], truth)
        results.append(Result(i, sample, record))
    return results


def _lift(session: Session, samples: list[dict]) -> list[Result]:
    """2D -> 3D: one 64-frame window centred on every frame; the centre frame's 3D pose."""
    import torch

    from ..training.evaluation import unflip

    examples = InferenceExamples(session.recipe, samples, session.layout)
    poses = {i: np.zeros((len(s["keypoint"]), s["keypoint"].shape[2], 3), np.float32) for i, s in enumerate(samples)}
    # with flip test-time augmentation (as evaluation reports it) a window and its mirror image decode together
    size = session.batch_size // 2 if examples.flip_test else session.batch_size
    for items, batch in _batches(session, examples, keys=("pose", "pose_flip"), size=max(1, size)):
        both = torch.cat([batch["pose"], batch["pose_flip"]]) if "pose_flip" in batch else batch["pose"]
        coords = session.model.predict(both, session.layout, session.task)["coordinates"].float()
        if "pose_flip" in batch:
            n = len(items)
            coords = (coords[:n] + unflip(coords[n:], session.layout)) / 2
        coords = coords.cpu().numpy()
        for item, c in zip(items, coords):
            poses[int(item["sequence"])][int(item["frame"])] = c[0]
    results = []
    for i, sample in enumerate(samples):
        record = _base_record(i, sample, session.layout)
        record.update(output="pose_3d", shape=list(poses[i].shape), units="metres, root-relative (root joint = 0)",
                      joints=list(get_layout(session.layout).joint_names), flip_test=bool(examples.flip_test),
                      window_frames=examples.frames)
        results.append(Result(i, sample, record, {"pose_3d": poses[i]}))
    return results


def _forecast(session: Session, samples: list[dict], start: int | None) -> list[Result]:
    """Motion prediction: the K frames after the observed window, as last observed frame + predicted residuals."""
    params = session.recipe.spec.input.params
    observed_count, future_count = int(params["observed_frames"]), int(session.recipe.spec.output.frames)
    starts = motion_starts(samples, observed_count, start)
    examples = InferenceExamples(session.recipe, samples, session.layout, motion_starts=starts)
    residuals = {}
    for items, batch in _batches(session, examples):
        coords = session.model.predict(batch["pose"], session.layout, session.task)["coordinates"].float()
        for item, c in zip(items, coords.cpu().numpy()):
            residuals[int(item["sequence"])] = c.astype(np.float64)
    results = []
    for i, sample in enumerate(samples):
        observed, after = examples.motion_window(i, starts[i])
        future = observed[-1] + residuals[i]
        record = _base_record(i, sample, session.layout)
        fps = float(sample.get("fps", 30.0))
        record.update(observed_start=starts[i], observed_frames=observed_count, future_frames=future_count,
                      fps=fps, horizons_ms=[round(1000 * (k + 1) / fps, 1) for k in range(future_count)],
                      output="future", units="metres, in the space after the task's transforms")
        arrays = {"observed": observed.astype(np.float32), "future": future.astype(np.float32)}
        if len(after):
            errors = np.linalg.norm(future[: len(after)] - after, axis=-1).mean(-1)
            zero = np.linalg.norm(observed[-1][None] - after, axis=-1).mean(-1)
            record["ground_truth_frames"] = int(len(after))
            record["mpjpe_mm"] = [round(float(1000 * e), 2) for e in errors]
            record["zero_velocity_mpjpe_mm"] = [round(float(1000 * e), 2) for e in zero]
            arrays["ground_truth"] = after.astype(np.float32)
        results.append(Result(i, sample, record, arrays))
    return results


def _detect(session: Session, samples: list[dict], min_score: float) -> list[Result]:
    """Detection: windows of W raw frames every H frames, segments merged back into sequence frames."""
    from ..training.segments import merge_window_segments

    recipe = session.recipe
    options = recipe.spec.options
    examples = InferenceExamples(recipe, samples, session.layout)
    windows = defaultdict(list)
    for items, batch in _batches(session, examples):
        pred = session.model.predict(batch["pose"], session.layout, session.task, label_set=recipe.label_set)
        for item, segments in zip(items, pred["segments"]):
            windows[int(item["sequence"])].append((int(item["window_start"]), segments))
    results = []
    for i, sample in enumerate(samples):
        n = len(sample["keypoint"])
        merged = merge_window_segments(windows[i], merge=bool(options.get("merge_touching", True)),
                                       nms_tiou=options.get("nms_tiou", 0.5), num_frames=n)
        segments = [{"label": session.label_names[label], "index": int(label), "start": int(s), "end": int(e),
                     "score": round(float(score), 6)} for label, s, e, score in merged if score >= min_score]
        record = _base_record(i, sample, session.layout)
        record.update(windows=len(windows[i]), window=int(examples.params["window"]), hop=int(examples.params["hop"]),
                      segments=segments, frames_convention="[start, end) 0-based frames")
        names = sample.get("class_names")
        if sample.get("segments") is not None and names:
            record["ground_truth_segments"] = [{"label": str(names[g["label"]]), "start": int(g["start"]),
                                                "end": int(g["end"])} for g in sample["segments"]]
        results.append(Result(i, sample, record))
    return results


def encode_features(session: Session, samples: list[dict]) -> np.ndarray:
    """(N, 2d) pooled encoder features g (whole sequence resampled to T, the route of the model task)."""
    import torch

    examples = InferenceExamples(session.recipe, samples, session.layout)
    parts = []
    session.model.eval()
    with torch.no_grad():
        for _, batch in _batches(session, examples):
            parts.append(session.model.encode(batch["pose"], session.layout, session.task).pooled.float().cpu().numpy())
    return np.concatenate(parts)


def _retrieve(session: Session, samples: list[dict], gallery: list[dict] | None) -> list[Result]:
    """Nearest gallery sequences by cosine similarity of L2-normalised pooled features (DESIGN.md 12.6)."""
    if not gallery:
        raise ConfigError("retrieval needs --gallery PREPARED_DIR (the sequences to search)")
    queries = encode_features(session, samples)
    keys = encode_features(session, gallery)
    queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    keys /= np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
    similarity = queries @ keys.T
    results = []
    for i, sample in enumerate(samples):
        order = [j for j in np.argsort(-similarity[i], kind="stable")
                 if not (gallery[j].get("source") == sample.get("source")
                         and gallery[j].get("sample_id") == sample.get("sample_id"))][: session.top_k]
        neighbours = [{"rank": r + 1, "sample_id": str(gallery[j].get("sample_id", "")), "gallery_index": int(j),
                       "label": ground_truth_name(gallery[j]), "cosine": round(float(similarity[i, j]), 6)}
                      for r, j in enumerate(order)]
        record = _base_record(i, sample, session.layout)
        record.update(route_task=session.task, gallery_size=len(gallery), neighbours=neighbours,
                      prediction=neighbours[0]["label"] if neighbours else None)
        if "ground_truth" in record and record["prediction"] is not None:
            record["correct"] = same_action(session.model.vocabulary, record["prediction"], record["ground_truth"])
        results.append(Result(i, sample, record, {"feature": queries[i].astype(np.float32)}))
    return results
