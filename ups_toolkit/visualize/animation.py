"""Skeleton animation as a GIF (matplotlib.animation.PillowWriter), 2D or 3D data seen from the camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .drawing import bone_sides, limits, present_joints, pyplot, screen_coordinates, set_limits_2d, SIDE_COLOURS

PERSON_ALPHA = (1.0, 0.55, 0.4, 0.3)


def animate_sequence(keypoint: np.ndarray, layout: str, out: str | Path, *, title: str = "",
                     frame_captions: list[str] | None = None, fps: float = 30.0, max_frames: int = 40,
                     size: float = 3.0, dpi: int = 80) -> Path:
    """Write a GIF of a (T, M, V, C) sequence: at most ``max_frames`` evenly spaced frames, played at the speed of
    the data (``fps``) within 4-20 frames per second. ``title`` stays on every frame (e.g. the predicted label);
    ``frame_captions`` (one per input frame) changes with the frame (e.g. the segment under way)."""
    from matplotlib.animation import PillowWriter

    plt = pyplot()
    keypoint = np.asarray(keypoint, np.float32)
    t, m = keypoint.shape[:2]
    frames = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    points = screen_coordinates(keypoint, layout)  # (T, M, V, 3)
    visible = present_joints(keypoint)
    lo, hi = limits(points, visible)

    fig, ax = plt.subplots(figsize=(size, size + 0.35), dpi=dpi)
    set_limits_2d(ax, lo, hi)
    for spine in ax.spines.values():
        spine.set_color("0.8")
    ax.set_title(title, fontsize=9)
    caption = ax.text(0.02, 0.02, "", transform=ax.transAxes, fontsize=7, color="0.2", va="bottom")
    bones = bone_sides(layout)
    lines = [[ax.plot([], [], color=SIDE_COLOURS[side], lw=2, alpha=PERSON_ALPHA[min(p, 3)],
                      solid_capstyle="round")[0] for _, _, side in bones] for p in range(m)]
    dots = [ax.plot([], [], "o", ms=2, color="black", alpha=PERSON_ALPHA[min(p, 3)])[0] for p in range(m)]
    fig.tight_layout()

    def draw(f):
        for p in range(m):
            xy, shown = points[f, p], visible[f, p]
            for line, (child, parent, _) in zip(lines[p], bones):
                if shown[child] and shown[parent]:
                    line.set_data(xy[[child, parent], 0], xy[[child, parent], 2])
                else:
                    line.set_data([], [])
            dots[p].set_data(xy[shown, 0], xy[shown, 2])
        text = f"frame {f + 1}/{t}"
        if frame_captions is not None:
            text += f"  {frame_captions[f]}"
        caption.set_text(text)

    playback = float(np.clip(fps * len(frames) / t, 4, 20))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The writer's own loop renders each frame once (FuncAnimation.save draws every frame twice).
    writer = PillowWriter(fps=playback)
    with writer.saving(fig, str(out), dpi=dpi):
        for f in frames:
            draw(int(f))
            writer.grab_frame()
    plt.close(fig)
    return out
