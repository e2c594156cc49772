"""Pictures of a training run: loss and metric curves, confusion matrices, the routing map (PNG, matplotlib Agg)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics_log(path: str | Path) -> list[dict]:
    """The records of a JSON-lines metrics log (``metrics.jsonl``)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_training_curves(records: list[dict], out: str | Path, title: str = "") -> Path:
    """Training loss per task against the step (left) and every evaluation metric against the step (right)."""
    plt = _pyplot()
    losses = defaultdict(list)
    evals = defaultdict(list)
    for r in records:
        if r.get("kind") == "train":
            for task, value in r.get("loss", {}).items():
                losses[task].append((r["step"], value))
        elif r.get("kind") == "eval":
            for task, metrics in r.get("metrics", {}).items():
                for name, value in metrics.items():
                    evals[f"{task}/{name}"].append((r["step"], value))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for task, points in sorted(losses.items()):
        steps, values = zip(*points)
        axes[0].plot(steps, values, label=task, lw=1.2)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss (token cross-entropy, + L1 when set)")
    axes[0].set_yscale("log")
    axes[0].set_title("training loss per task")
    if losses:
        axes[0].legend(fontsize=7)
    shown = [k for k in sorted(evals) if len(evals[k]) and _headline(k)]
    for key in shown:
        steps, values = zip(*evals[key])
        axes[1].plot(steps, values, marker="o", ms=3, label=key, lw=1.2)
    axes[1].set_xlabel("step")
    axes[1].set_title("evaluation (headline metrics)")
    if shown:
        axes[1].legend(fontsize=6)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out, plt)


def _headline(key: str) -> bool:
    name = key.split("/", 1)[1]
    return name in ("top1", "top1_mean", "mpjpe_mm", "mpjpe_mean_mm", "mAP_a@0.5")


def plot_confusion_matrix(matrix: np.ndarray, class_names: list[str], out: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows = true class, columns = predicted), counts written in the cells."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    k = len(class_names)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(0.35 * k + 3, 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, out, plt)


def routing_table(routes: dict) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """``model.routes()`` -> (tasks, layer labels, blocks (tasks, layers) int, probability of the chosen block)."""
    tasks = list(routes)
    layers = [f"{stream} {i}" for stream, items in routes[tasks[0]].items() for i in range(len(items))]
    blocks = np.array([[item["block"] for items in routes[t].values() for item in items] for t in tasks])
    confidence = np.array([[max(item["probabilities"]) for items in routes[t].values() for item in items]
                           for t in tasks])
    return tasks, layers, blocks, confidence


def plot_routing_map(routes: dict, out: str | Path, title: str = "") -> Path:
    """Task x layer heatmap: the colour is the block each task runs in each encoder layer, the number its routing
    probability at the current temperature."""
    plt = _pyplot()
    tasks, layers, blocks, confidence = routing_table(routes)
    num_blocks = max(len(items[0]["probabilities"]) for r in routes.values() for items in r.values())
    fig, ax = plt.subplots(figsize=(1.2 * len(layers) + 3, 0.45 * len(tasks) + 1.6))
    cmap = plt.get_cmap("tab10", max(num_blocks, 2))
    image = ax.imshow(blocks, cmap=cmap, vmin=-0.5, vmax=max(num_blocks, 2) - 0.5, aspect="auto")
    for i in range(len(tasks)):
        for j in range(len(layers)):
            ax.text(j, i, f"B{blocks[i, j]}\n{confidence[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white")
    ax.set_xticks(range(len(layers)), layers, fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    bar = fig.colorbar(image, ax=ax, ticks=range(max(num_blocks, 2)))
    bar.set_label("block")
    ax.set_title(title or "routing map (block per task and layer, probability)")
    fig.tight_layout()
    return _save(fig, out, plt)


def _save(fig, out, plt) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
