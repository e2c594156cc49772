"""Pictures of inference results (PNG, matplotlib Agg): top-k bars, 2D input beside the lifted 3D pose, observed and
predicted motion, a detection timeline against the ground truth. The skeleton GIF is in :mod:`.animation`, the
routing map in :mod:`.training`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tokenization.vocabulary import normalise_name
from .drawing import (
    draw_pose,
    limits,
    present_joints,
    pyplot,
    screen_coordinates,
    set_limits_2d,
    set_limits_3d,
    up_axis,
)


def _save(fig, out, plt, dpi: int = 100) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def plot_topk(panels: list[tuple[str, list[dict]]], out: str | Path, *, title: str = "",
              truth: str | None = None) -> Path:
    """Horizontal bars of the top-k probabilities, one panel per (subtitle, rows) -- rows as in results.json
    (``label``, ``probability``); the true class, when known, is drawn in green, the others in blue."""
    plt = pyplot()
    k = max(len(rows) for _, rows in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(5.2, 0.32 * k * len(panels) + 0.55 * len(panels) + 0.5),
                             squeeze=False)
    for ax, (subtitle, rows) in zip(axes[:, 0], panels):
        labels = [r["label"] for r in rows][::-1]
        probs = [100 * r["probability"] for r in rows][::-1]
        hit = [truth is not None and normalise_name(l) == normalise_name(truth) for l in labels]
        ax.barh(range(len(rows)), probs, color=["tab:green" if h else "tab:blue" for h in hit], height=0.7)
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        for y, p in enumerate(probs):
            ax.text(p + 1, y, f"{p:.1f}%", va="center", fontsize=7)
        ax.set_xlim(0, 112)
        ax.set_xlabel("probability (%)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        if subtitle:
            ax.set_title(subtitle, fontsize=9)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if title or truth:
        fig.suptitle(title + (f"  (truth: {truth})" if truth else ""), fontsize=10)
    fig.tight_layout()
    return _save(fig, out, plt)


def plot_lifting(pose_2d: np.ndarray, pose_3d: np.ndarray, layout_2d: str, layout_3d: str, out: str | Path, *,
                 num_frames: int = 4, title: str = "", fps: float = 30.0) -> Path:
    """Evenly spaced frames: the 2D input (top row, image coordinates) above the predicted 3D pose (bottom row,
    root-relative, seen from the camera's side at a slight angle). pose_2d (T, V, 2), pose_3d (T, J, 3)."""
    plt = pyplot()
    t = len(pose_3d)
    frames = np.unique(np.linspace(0, t - 1, min(num_frames, t)).round().astype(int))
    flat = screen_coordinates(pose_2d, layout_2d)
    visible = present_joints(pose_2d)
    lo2, hi2 = limits(flat[frames], visible[frames])
    up = up_axis(pose_3d, layout_3d)
    lifted = screen_coordinates(pose_3d, layout_3d, up)
    lo3, hi3 = limits(lifted[frames])
    fig = plt.figure(figsize=(2.3 * len(frames), 5.0))
    for col, f in enumerate(frames):
        ax = fig.add_subplot(2, len(frames), col + 1)
        draw_pose(ax, flat[f], layout_2d, visible=visible[f])
        set_limits_2d(ax, lo2, hi2)
        ax.set_title(f"input 2D, frame {f}\n({f / fps:.2f} s)", fontsize=8)
        ax3 = fig.add_subplot(2, len(frames), len(frames) + col + 1, projection="3d")
        draw_pose(ax3, lifted[f], layout_3d, three_d=True)
        set_limits_3d(ax3, lo3, hi3)
        ax3.set_title("predicted 3D", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.86, wspace=0.05, hspace=0.15)
    return _save(fig, out, plt)


def plot_motion(observed: np.ndarray, future: np.ndarray, layout: str, out: str | Path, *,
                truth: np.ndarray | None = None, fps: float = 30.0, title: str = "", observed_panels: int = 3,
                future_panels: int = 4) -> Path:
    """Observed frames (blue/red limbs) then predicted future frames (orange), the true future (green, dashed)
    over them when known. observed (O, V, 3), future (K, V, 3), truth (K' <= K, V, 3), metres."""
    plt = pyplot()
    obs_n, k = len(observed), len(future)
    shown_obs = np.unique(np.linspace(0, obs_n - 1, min(observed_panels, obs_n)).round().astype(int))
    shown_fut = np.unique(np.linspace(0, k - 1, min(future_panels, k)).round().astype(int))
    up = up_axis(observed, layout)
    obs_pts = screen_coordinates(observed, layout, up)
    fut_pts = screen_coordinates(future, layout, up)
    true_pts = screen_coordinates(truth, layout, up) if truth is not None and len(truth) else None
    everything = [obs_pts[shown_obs], fut_pts[shown_fut]] + ([true_pts] if true_pts is not None else [])
    lo, hi = limits(np.concatenate([e.reshape(-1, 3) for e in everything]))
    panels = len(shown_obs) + len(shown_fut)
    fig, axes = plt.subplots(1, panels, figsize=(1.9 * panels, 3.1), squeeze=False)
    axes = axes[0]
    for ax, f in zip(axes, shown_obs):
        draw_pose(ax, obs_pts[f], layout)
        set_limits_2d(ax, lo, hi)
        ax.set_title(f"observed\n{1000 * (f - obs_n + 1) / fps:+.0f} ms", fontsize=8)
    for ax, f in zip(axes[len(shown_obs):], shown_fut):
        if true_pts is not None and f < len(true_pts):
            draw_pose(ax, true_pts[f], layout, colour="tab:green", linestyle="--", lw=1.6, joints=False)
        draw_pose(ax, fut_pts[f], layout, colour="tab:orange")
        set_limits_2d(ax, lo, hi)
        ax.set_title(f"predicted\n{1000 * (f + 1) / fps:+.0f} ms", fontsize=8)
        ax.set_facecolor("#fff8ef")
    legend = "blue/red: observed, orange: predicted" + (", green dashed: true future" if true_pts is not None else "")
    fig.suptitle((title + "\n" if title else "") + legend, fontsize=9)
    fig.tight_layout()
    return _save(fig, out, plt)


def class_colours(names: list[str]) -> dict[str, tuple]:
    """A distinct colour per class: tab10, then (beyond 10 classes) the light shades of tab20."""
    plt = pyplot()
    if len(names) <= 10:
        return {name: plt.get_cmap("tab10")(i) for i, name in enumerate(names)}
    cmap = plt.get_cmap("tab20")
    return {name: cmap((2 * i) % 20 + (2 * i // 20) % 2) for i, name in enumerate(names)}


def _lanes(segments: list[dict]) -> list[int]:
    """A lane per segment so that segments overlapping in time sit side by side (greedy interval partitioning)."""
    ends: list[int] = []
    lanes = [0] * len(segments)
    for i in sorted(range(len(segments)), key=lambda i: (segments[i]["start"], segments[i]["end"])):
        seg = segments[i]
        lane = next((k for k, end in enumerate(ends) if end <= seg["start"]), len(ends))
        if lane == len(ends):
            ends.append(seg["end"])
        ends[lane] = seg["end"]
        lanes[i] = lane
    return lanes


def plot_detection_timeline(segments: list[dict], num_frames: int, out: str | Path, *,
                            truth: list[dict] | None = None, fps: float = 30.0, title: str = "") -> Path:
    """Predicted segments (opacity = score) on one row, the ground truth on another when given; segments as in
    results.json ({label, start, end[, score]}, [start, end) frames)."""
    plt = pyplot()
    rows = [("predicted", segments)] + ([("ground truth", truth)] if truth is not None else [])
    names = sorted({s["label"] for _, segs in rows for s in segs})
    colours = class_colours(names)
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(rows) + 1.5))
    for y, (_, segs) in enumerate(rows[::-1]):
        lanes = _lanes(segs)
        height = 0.7 / max(1, max(lanes, default=0) + 1)
        for s, lane in zip(segs, lanes):
            alpha = 0.35 + 0.65 * float(s.get("score", 1.0))
            bottom = y - 0.35 + lane * height
            ax.broken_barh([(s["start"], s["end"] - s["start"])], (bottom, height), facecolors=colours[s["label"]],
                           alpha=alpha, edgecolor="black", linewidth=0.4)
            if s["end"] - s["start"] > 0.06 * num_frames:
                text = s["label"] + (f" {s['score']:.2f}" if "score" in s else "")
                ax.text((s["start"] + s["end"]) / 2, bottom + height / 2, text, ha="center", va="center",
                        fontsize=6.5, clip_on=True)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows[::-1]], fontsize=8)
    ax.set_xlim(0, num_frames)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(f"frame ({fps:g} fps)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[n]) for n in names]
    if handles:
        ax.legend(handles, names, fontsize=6.5, ncol=min(5, len(names)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.35 if len(rows) > 1 else -0.5), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, plt)


def plot_neighbours(rows: list[dict], out: str | Path, *, title: str = "", truth: str | None = None) -> Path:
    """Cosine similarity of the nearest gallery sequences (retrieval), labelled by sample id and class."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 0.34 * len(rows) + 1.1))
    labels = [f"{r['sample_id']} ({r['label'] or '?'})" for r in rows][::-1]
    values = [r["cosine"] for r in rows][::-1]
    hits = [truth is not None and r["label"] is not None and normalise_name(r["label"]) == normalise_name(truth)
            for r in rows][::-1]
    ax.barh(range(len(rows)), values, color=["tab:green" if h else "tab:blue" for h in hits], height=0.7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7.5)
    for y, v in enumerate(values):
        ax.text(v + 0.01, y, f"{v:.3f}", va="center", fontsize=7)
    # pooled features share a large common part (cosines near 1): start the axis just below the smallest value
    low = max(-1.0, np.floor(100 * min(values)) / 100 - 0.01)
    ax.set_xlim(low, 1 + 0.12 * (1 - low))
    for y, v in enumerate(values):
        ax.texts[y].set_x(v + 0.01 * (1 - low))
    ax.set_xlabel(f"cosine similarity of pooled features (axis from {low:.2f})", fontsize=8)
    ax.xaxis.set_major_locator(plt.MaxNLocator(5))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title + (f"  (query: {truth})" if truth else ""), fontsize=9)
    fig.tight_layout()
    return _save(fig, out, plt)
