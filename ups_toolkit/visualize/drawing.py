"""Drawing one skeleton on a matplotlib axes (2D or 3D), as seen from the camera.

Where "up" is comes from the data, not from a convention: for 3D keypoints the layout's spine joints
(``axes.spine_bottom`` -> ``axes.spine_top``) give the vertical axis and its sign, so Kinect frames (y up), OpenCV
camera frames (y down) and z-up world frames all stand upright. In a right-handed camera frame with z pointing away
from the camera, y up goes with x pointing to the camera's left (Kinect), y down with x to the right (OpenCV); the
screen's horizontal axis follows, so the view is the camera's. 2D keypoints are image coordinates (y down).
Limbs are coloured by side: left blue, right red, the trunk grey.
"""

from __future__ import annotations

import numpy as np

from ..skeleton import get_layout

SIDE_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "0.25"}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def up_axis(keypoint: np.ndarray, layout: str) -> tuple[int, float]:
    """(axis index, sign) of "up" in 3D keypoints (..., V, 3): the mean spine direction of the present frames;
    y up when the layout has no spine joints or no frame shows them."""
    spec = get_layout(layout)
    if "spine_bottom" not in spec.axes or "spine_top" not in spec.axes:
        return 1, 1.0
    points = np.asarray(keypoint, np.float64).reshape(-1, spec.num_joints, keypoint.shape[-1])
    bottom, top = points[:, spec.axes["spine_bottom"]], points[:, spec.axes["spine_top"]]
    valid = np.any(top != bottom, axis=-1)
    if not valid.any():
        return 1, 1.0
    direction = (top[valid] - bottom[valid]).mean(axis=0)
    axis = int(np.argmax(np.abs(direction)))
    return axis, float(np.sign(direction[axis]) or 1.0)


def screen_coordinates(keypoint: np.ndarray, layout: str, up: tuple[int, float] | None = None) -> np.ndarray:
    """(..., V, C) keypoints -> (..., V, 3) plot coordinates (horizontal, depth, up) as seen from the camera; 2D
    input gets depth 0. ``up``: a fixed (axis, sign) for several arrays drawn together (default: from the data)."""
    kp = np.asarray(keypoint, np.float64)
    if kp.shape[-1] == 2:
        return np.stack([kp[..., 0], np.zeros(kp.shape[:-1]), -kp[..., 1]], axis=-1)
    axis, sign = up if up is not None else up_axis(kp, layout)
    if axis == 1:  # camera frame: z away from the camera
        return np.stack([-sign * kp[..., 0], kp[..., 2], sign * kp[..., 1]], axis=-1)
    if axis == 2:  # world frame, z up
        return np.stack([kp[..., 0], kp[..., 1], sign * kp[..., 2]], axis=-1)
    return np.stack([kp[..., 1], kp[..., 2], sign * kp[..., 0]], axis=-1)


def bone_sides(layout: str) -> list[tuple[int, int, str]]:
    """(child, parent, side) of every bone; the side of the child joint's name."""
    spec = get_layout(layout)
    out = []
    for child, parent in spec.bones():
        name = spec.joint_names[child]
        side = "left" if name.startswith("left") else "right" if name.startswith("right") else "centre"
        out.append((child, parent, side))
    return out


def present_joints(keypoint: np.ndarray) -> np.ndarray:
    """(..., V) bool: a joint is present unless all its coordinates are 0 (the schema's absent joint)."""
    return np.any(np.asarray(keypoint) != 0, axis=-1)


def draw_pose(ax, points: np.ndarray, layout: str, *, visible=None, three_d: bool = False, colour=None,
              alpha: float = 1.0, lw: float = 2.0, linestyle: str = "-", joints: bool = True) -> list:
    """Draw one pose given in plot coordinates (V, 3) = (horizontal, depth, up); returns the artists.

    ``colour`` None colours limbs by side; ``visible`` (V,) bool leaves out bones touching an invisible joint."""
    visible = np.ones(len(points), bool) if visible is None else np.asarray(visible, bool)
    artists = []
    for child, parent, side in bone_sides(layout):
        if not (visible[child] and visible[parent]):
            continue
        pair = points[[child, parent]]
        c = colour or SIDE_COLOURS[side]
        if three_d:
            artists += ax.plot(pair[:, 0], pair[:, 1], pair[:, 2], color=c, lw=lw, alpha=alpha, ls=linestyle)
        else:
            artists += ax.plot(pair[:, 0], pair[:, 2], color=c, lw=lw, alpha=alpha, ls=linestyle,
                               solid_capstyle="round")
    if joints and visible.any():
        shown = points[visible]
        if three_d:
            artists.append(ax.scatter(shown[:, 0], shown[:, 1], shown[:, 2], s=6, color="black", alpha=alpha))
        else:
            artists.append(ax.scatter(shown[:, 0], shown[:, 2], s=6, color="black", alpha=alpha, zorder=3))
    return artists


def limits(points: np.ndarray, visible=None, margin: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per plot axis over the visible points of (..., V, 3), widened to a common span (equal aspect)."""
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    if visible is not None:
        pts = pts[np.asarray(visible, bool).reshape(-1)]
    if not len(pts):
        return np.full(3, -1.0), np.full(3, 1.0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + margin) + 1e-6
    return centre - half, centre + half


def set_limits_2d(ax, lo, hi) -> None:
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[2], hi[2])
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])


def set_limits_3d(ax, lo, hi) -> None:
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect((1, 1, 1), zoom=1.3)
    ax.view_init(elev=12, azim=-70)
    ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_pane_color((0.95, 0.95, 0.95, 0.6))
        axis._axinfo["grid"]["color"] = (0.85, 0.85, 0.85, 1.0)
