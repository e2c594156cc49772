"""Score every task with its community's metrics (DESIGN.md D11), identically on one process or many.

Each process decodes its shard of the evaluation items (``model.predict``: grammar-constrained greedy decoding);
per-item results are gathered with ``accelerator.gather_for_metrics`` (which drops the padding duplicates of the
last batch), put back in item order, and scored by the numpy metrics of :mod:`ups_toolkit.metrics` on every
process, so the numbers do not depend on the number of processes.

| task | metrics (keys) |
|---|---|
| recognition | ``top1``, ``top5``, ``mean_class`` (%), confusion matrix |
| early prediction | ``top1@r`` per observation ratio r, ``top1_mean`` (%) |
| pose estimation | ``mpjpe_mm``, ``p_mpjpe_mm``, ``n_mpjpe_mm`` (per action, then over actions; flip-averaged when the task's ``flip_test``), ``mpjpe_noflip_mm``, ``mpjpe_soft_mm`` (soft-argmax), ``floor_mm`` (quantisation floor), ``clip_rate_%`` |
| motion prediction | ``mpjpe@<h>ms`` and ``zero_velocity@<h>ms`` per horizon, ``mpjpe_mean_mm``, ``floor_mm``, ``clip_rate_%`` |
| detection | ``mAP_a@θ``, ``mAP_v@θ`` (PKU-MMD official scorer) per tIoU θ, ``mAP_voc@0.5`` |
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..metrics import (
    confusion_matrix,
    detection_map_pku,
    detection_map_voc,
    mean_class_accuracy,
    mpjpe_at_horizons,
    n_mpjpe,
    per_action_mean,
    topk_accuracy,
)
from ..metrics.pose import procrustes_align
from ..skeleton import get_layout
from ..tokenization.targets import quantisation_floor
from .segments import merge_window_segments, segments_array
from .setup import TaskState

HEADLINE = {  # metric ranking evaluations per grammar/sampling, and whether higher is better
    "whole_sequence": ("top1", True),
    "observed_prefix": ("top1_mean", True),
    "consecutive": ("mpjpe_mm", False),
    "observed_window": ("mpjpe_mean_mm", False),
    "sliding_window": ("mAP_a@0.5", True),
}


def headline(state: TaskState) -> tuple[str, bool]:
    return HEADLINE.get(state.spec.input.sampling, ("top1", True))


def higher_is_better(metric: str) -> bool:
    return not any(s in metric for s in ("mpjpe", "floor", "clip_rate", "zero_velocity", "loss"))


def make_eval_loader(state: TaskState, batch_size: int, num_workers: int, seed: int):
    """A plain (unprepared) DataLoader over a task's evaluation items, in item order."""
    import torch
    from torch.utils.data import DataLoader

    from .task_data import Collate, TaskDataset

    examples = state.eval_examples
    return DataLoader(TaskDataset(examples, seed, state.index), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, collate_fn=Collate(examples.codec.length),
                      generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------------
# per-batch predictions


def predict_batch(model, state: TaskState, batch: dict, top_k: int) -> dict:
    """Decode one evaluation batch; returns per-item tensors (all with the batch as first dimension)."""
    import torch

    layout = state.layout(train=False)
    grammar = state.grammar
    out = {"item": batch["item"]}
    if grammar == "action":
        codec = state.eval_examples.codec
        pred = model.predict(batch["pose"], layout, state.name, label_set=state.label_set, k=codec.num_classes)
        scores = torch.zeros(len(batch["item"]), codec.num_classes, device=pred["topk_probs"].device)
        scores.scatter_(1, pred["topk_labels"], pred["topk_probs"].float())
        out.update(scores=scores, label=batch["label"])
        if "ratio" in batch:
            out["ratio"] = batch["ratio"]
    elif grammar == "coordinates":
        pred = model.predict(batch["pose"], layout, state.name)
        out.update(coords=pred["coordinates"].float(), soft=pred["coordinates_expectation"].float(),
                   target=batch["coords"].float(), label=batch["label"])
        if "pose_flip" in batch:
            flipped = model.predict(batch["pose_flip"], layout, state.name)
            out["coords_flip"] = unflip(flipped["coordinates"].float(), layout)
    else:
        pred = model.predict(batch["pose"], layout, state.name, label_set=state.label_set)
        rows = [segments_array(s, state.spec.output.max_segments) for s in pred["segments"]]
        out.update(segments=torch.as_tensor(np.stack(rows), dtype=torch.float64, device=batch["pose"].device),
                   sequence=batch["sequence"], window_start=batch["window_start"])
    return out


def unflip(coords, layout: str):
    """Undo a left/right flip of the input on predicted 3D joints (..., J, 3): negate x and swap the joint pairs."""
    perm = get_layout(layout).flip_permutation()
    out = coords[..., perm, :].clone()
    out[..., 0] = -out[..., 0]
    return out


def collect_predictions(accelerator, model, state: TaskState, loader, top_k: int) -> dict[str, np.ndarray]:
    """Run the (prepared) loader, gather across processes, sort by item. numpy arrays keyed like predict_batch."""
    import torch

    parts = defaultdict(list)
    with torch.no_grad():
        for batch in loader:
            pred = predict_batch(model, state, batch, top_k)
            gathered = accelerator.gather_for_metrics(pred)
            for key, value in gathered.items():
                parts[key].append(value.cpu().numpy())
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    order = np.argsort(arrays["item"], kind="stable")
    return {key: value[order] for key, value in arrays.items()}


# ----------------------------------------------------------------------------------------------------------------------
# scoring


def score_task(state: TaskState, arrays: dict, *, horizons_ms, detection_tiou, top_k: int) -> tuple[dict, dict]:
    """(metrics {name: float}, extras {"confusion": matrix, ...}) of one task from its gathered predictions."""
    sampling = state.spec.input.sampling
    if state.grammar == "action":
        labels = arrays["label"].astype(np.int64)
        if sampling == "observed_prefix":
            return _score_early(arrays, labels), {}
        return _score_recognition(state, arrays["scores"], labels, top_k)
    if state.grammar == "coordinates":
        if sampling == "consecutive":
            return _score_pose(state, arrays), {}
        return _score_motion(state, arrays, horizons_ms), {}
    return _score_detection(state, arrays, detection_tiou), {}


def _score_recognition(state, scores, labels, top_k):
    k = min(top_k, scores.shape[1])
    acc = topk_accuracy(scores, labels, ks=(1, k))
    predictions = scores.argmax(axis=1)  # ties: argmax takes the lower index, as the ranking does
    metrics = {"top1": acc[1], f"top{k}": acc[k],
               "mean_class": mean_class_accuracy(predictions, labels, scores.shape[1])}
    return metrics, {"confusion": confusion_matrix(predictions, labels, scores.shape[1])}


def _score_early(arrays, labels):
    ratios = arrays["ratio"].astype(np.float64).round(6)
    metrics = {}
    for r in np.unique(ratios):
        rows = ratios == r
        metrics[f"top1@{r:g}"] = topk_accuracy(arrays["scores"][rows], labels[rows], ks=(1,))[1]
    metrics["top1_mean"] = float(np.mean(list(metrics.values())))
    return metrics


def _per_pose(errors_fn, pred, target) -> np.ndarray:
    return np.array([errors_fn(p, t) for p, t in zip(pred, target)])


def _pose_errors(pred, target) -> dict[str, np.ndarray]:
    """Per-pose errors (metres) of (N, F, J, 3) poses, P1/P2/P3 in the VideoPose3D convention."""
    p1 = np.linalg.norm(pred - target, axis=-1).mean(axis=(1, 2))
    # A prediction with every joint at one point (an untrained model) has no shape to rotate: its best similarity
    # alignment has scale 0 and puts every joint at the target's centroid (the limit the formula cannot compute).
    spread = np.linalg.norm(pred - pred.mean(axis=-2, keepdims=True), axis=-1).max(axis=(1, 2))
    aligned = np.broadcast_to(target.mean(axis=-2, keepdims=True), target.shape).copy()
    ok = spread > 1e-9
    if ok.any():
        aligned[ok] = procrustes_align(pred[ok], target[ok])
    p2 = np.linalg.norm(aligned - target, axis=-1).mean(axis=(1, 2))
    p3 = _per_pose(n_mpjpe, pred, target)
    return {"mpjpe": p1, "p_mpjpe": p2, "n_mpjpe": p3}


def _score_pose(state, arrays):
    target = arrays["target"].astype(np.float64)
    names = state.eval_split.class_names
    actions = [names[l] if 0 <= l < len(names) else "all" for l in arrays["label"].astype(int)]
    pred = arrays["coords"].astype(np.float64)
    if "coords_flip" in arrays:
        pred = (pred + arrays["coords_flip"].astype(np.float64)) / 2
    metrics = {}
    for name, errors in _pose_errors(pred, target).items():
        metrics[f"{name}_mm"] = 1000 * per_action_mean(errors, actions)[1]
    if "coords_flip" in arrays:
        p1 = np.linalg.norm(arrays["coords"] - target, axis=-1).mean(axis=(1, 2))
        metrics["mpjpe_noflip_mm"] = 1000 * per_action_mean(p1, actions)[1]
    soft = np.linalg.norm(arrays["soft"] - target, axis=-1).mean(axis=(1, 2))
    metrics["mpjpe_soft_mm"] = 1000 * per_action_mean(soft, actions)[1]
    metrics.update(_floor(state, target))
    return metrics


def _floor(state, target) -> dict:
    floor = quantisation_floor(target, state.eval_examples.codec.quantizer)
    return {"floor_mm": 1000 * floor["mean_euclidean_error"], "clip_rate_%": 100 * floor["clip_rate"]}


def _score_motion(state, arrays, horizons_ms):
    target = arrays["target"].astype(np.float64)
    pred = arrays["coords"].astype(np.float64)
    fps = state.eval_split.fps
    errors = mpjpe_at_horizons(pred, target, fps, tuple(horizons_ms))
    zero = mpjpe_at_horizons(np.zeros_like(target), target, fps, tuple(horizons_ms))
    metrics = {f"mpjpe@{ms:g}ms": 1000 * v for ms, v in errors.items()}
    metrics.update({f"zero_velocity@{ms:g}ms": 1000 * v for ms, v in zero.items()})
    metrics["mpjpe_mean_mm"] = float(np.mean([metrics[f"mpjpe@{ms:g}ms"] for ms in errors]))
    metrics.update(_floor(state, target))
    return metrics


def _score_detection(state, arrays, thresholds):
    options = state.spec.options
    windows = defaultdict(list)
    for seq, start, rows in zip(arrays["sequence"], arrays["window_start"], arrays["segments"]):
        windows[int(seq)].append((int(start), [tuple(r) for r in rows if r[0] >= 0]))
    proposals, truths = [], []
    for seq, segments in enumerate(state.eval_segments):
        for seg in segments:  # [s, e) stored, the PKU scorer reads inclusive label-file frames (s, e - 1)
            truths.append((seq, seg["label"], seg["start"], seg["end"] - 1))
        merged = merge_window_segments(windows.get(seq, []), merge=bool(options.get("merge_touching", True)),
                                       nms_tiou=options.get("nms_tiou", 0.5),
                                       num_frames=state.eval_split.num_frames(seq))
        proposals += [(seq, label, s, e - 1, score) for label, s, e, score in merged]
    metrics = {}
    for theta in thresholds:
        result = detection_map_pku(proposals, truths, threshold=theta)
        metrics[f"mAP_a@{theta:g}"] = result["mAP_a"]
        metrics[f"mAP_v@{theta:g}"] = result["mAP_v"]
    metrics["mAP_voc@0.5"] = detection_map_voc(proposals, truths, threshold=0.5)["mAP"]
    metrics["proposals"] = float(len(proposals))
    return metrics


# ----------------------------------------------------------------------------------------------------------------------
# everything


def evaluate_tasks(accelerator, model, states: list[TaskState], loaders: dict, config) -> tuple[dict, dict]:
    """Evaluate every task that has evaluation data. ``loaders``: task -> prepared evaluation loader.
    Returns ({task: metrics}, {task: extras}); the model keeps its training mode; the global torch RNG is
    untouched (so evaluating does not change the training that follows)."""
    import torch

    unwrapped = accelerator.unwrap_model(model)
    ev = config["evaluation"]
    results, extras = {}, {}
    with torch.random.fork_rng(devices=[]):
        for state in states:
            if state.name not in loaders:
                continue
            arrays = collect_predictions(accelerator, unwrapped, state, loaders[state.name], ev["top_k"])
            results[state.name], extras[state.name] = score_task(
                state, arrays, horizons_ms=ev["horizons_ms"], detection_tiou=ev["detection_tiou"], top_k=ev["top_k"])
    return results, extras


def format_table(results: dict, title: str = "") -> str:
    """A plain-text metrics table: task, metric, value."""
    rows = [(task, name, f"{value:.2f}") for task, metrics in results.items() for name, value in metrics.items()]
    if not rows:
        return "(no evaluation data)"
    widths = [max(len(r[i]) for r in rows + [("task", "metric", "value")]) for i in range(3)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [title] if title else []
    out += [line, " | ".join(h.ljust(w) for h, w in zip(("task", "metric", "value"), widths)), line]
    previous = None
    for task, name, value in rows:
        shown = task if task != previous else ""
        out.append(" | ".join([shown.ljust(widths[0]), name.ljust(widths[1]), value.rjust(widths[2])]))
        previous = task
    out.append(line)
    return "\n".join(out)
