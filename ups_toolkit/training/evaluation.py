"""Score every task with its community's metrics (its kind's ``score``), identically on one process or many.

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

from .setup import TaskState


def headline(state: TaskState) -> tuple[str, bool]:
    """(metric that ranks evaluations of the task, higher is better): its kind's."""
    return state.kind.headline


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
    """Decode one evaluation batch (the task kind's ``predict_batch``); per-item tensors, the batch first."""
    return state.kind.predict_batch(model, state, batch, top_k)


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
    metrics, extras = state.kind.score(state, arrays, horizons_ms=horizons_ms, detection_tiou=detection_tiou,
                                       top_k=top_k)
    return state.kind.reported(metrics), extras  # what the task file's metrics: asks for, and the headline


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
