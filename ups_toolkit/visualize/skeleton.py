"""Render a skeleton sequence as a strip of frames (PNG), 2D or 3D, bones from the layout's parent table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..skeleton import get_layout

PERSON_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def render_sequence(
    keypoint: np.ndarray,
    layout: str,
    out: str | Path,
    *,
    num_frames: int = 6,
    title: str = "",
    score: np.ndarray | None = None,
) -> Path:
    """Draw ``num_frames`` evenly spaced frames of a (T, M, V, C) sequence side by side and save a PNG.

    3D data (C = 3) is drawn as a front view (x right, y up), the usual camera frame of Kinect and H36M-style data;
    2D pixel data is drawn with y pointing down, as in the image. Absent persons (all zeros) are skipped, and joints
    with score 0 are left out of the bones.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keypoint = np.asarray(keypoint, dtype=np.float32)
    t, m, v, c = keypoint.shape
    spec = get_layout(layout)
    frames = np.unique(np.linspace(0, t - 1, min(num_frames, t)).round().astype(int))
    present = keypoint.reshape(t, m, -1).any(axis=2)
    visible = np.any(keypoint != 0, axis=-1) if score is None else np.asarray(score) > 0
    pts = keypoint[..., :2][visible]
    lo, hi = (pts.min(axis=0), pts.max(axis=0)) if len(pts) else (np.zeros(2), np.ones(2))
    pad = 0.08 * max(hi - lo) + 1e-6

    fig, axes = plt.subplots(1, len(frames), figsize=(2.2 * len(frames), 3.2), squeeze=False)
    for ax, f in zip(axes[0], frames):
        for p in range(m):
            if not present[f, p]:
                continue
            colour = PERSON_COLOURS[p % len(PERSON_COLOURS)]
            xy = keypoint[f, p, :, :2]
            for child, parent in spec.bones():
                if visible[f, p, child] and visible[f, p, parent]:
                    ax.plot(xy[[child, parent], 0], xy[[child, parent], 1], color=colour, lw=2)
            shown = visible[f, p]
            ax.scatter(xy[shown, 0], xy[shown, 1], s=6, color="black", zorder=3)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        if c == 2:
            ax.invert_yaxis()  # image coordinates: y grows downwards
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"frame {f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
