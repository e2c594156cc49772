"""Detection windows and their merging into video-level segments (docs/design.md D5, detection row).

A long sequence is cut into windows of W raw frames every H frames; the decoder predicts window-relative segments
[start, end) with a score (the probability of the ACTION token). :func:`window_starts` lists the windows,
:func:`window_targets` the ground truth a window is trained on, :func:`merge_window_segments` turns the per-window
predictions of one sequence back into segments: shift to sequence frames, join touching same-class segments,
per-class temporal NMS.
"""

from __future__ import annotations

import numpy as np


def window_starts(num_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows covering a sequence: 0, hop, 2·hop, ... until a window reaches the last frame.
    A sequence shorter than one window has the single window 0 (zero-padded past the end)."""
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(starts[-1] + hop)
    return starts


def window_targets(segments, start: int, window: int, min_inside_fraction: float) -> list[tuple[int, int, int]]:
    """Ground-truth segments of the window [start, start + window): those with at least ``min_inside_fraction`` of
    their length inside, clipped to the window and made window-relative. Returns (label, start, end) rows."""
    out = []
    for seg in segments:
        label, s, e = int(seg["label"]), int(seg["start"]), int(seg["end"])
        inside = min(e, start + window) - max(s, start)
        if e > s and inside > 0 and inside >= min_inside_fraction * (e - s):
            out.append((label, max(s, start) - start, min(e, start + window) - start))
    return sorted(out, key=lambda r: (r[1], r[2], r[0]))


def temporal_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """IoU of two [start, end) frame intervals."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def merge_touching(segments: list[tuple[int, int, int, float]]) -> list[tuple[int, int, int, float]]:
    """Join same-class segments where one ends exactly where the next starts (a segment cut at a window border).
    Rows (label, start, end, score); the joined score is the length-weighted mean."""
    out = []
    for label, start, end, score in sorted(segments, key=lambda r: (r[0], r[1], r[2], -r[3])):
        if out and out[-1][0] == label and out[-1][2] == start:
            _, s0, e0, sc0 = out[-1]
            length = (e0 - s0) + (end - start)
            out[-1] = (label, s0, end, (sc0 * (e0 - s0) + score * (end - start)) / length)
        else:
            out.append((label, start, end, score))
    return out


def temporal_nms(segments: list[tuple[int, int, int, float]], tiou: float) -> list[tuple[int, int, int, float]]:
    """Per class, keep segments by descending score (ties: the longer first, e.g. a segment seen whole in one window
    over its clipped copy in the next), dropping any with tIoU >= ``tiou`` to a kept one."""
    kept = []
    for row in sorted(segments, key=lambda r: (-r[3], r[1] - r[2], r[1], r[0])):
        if all(k[0] != row[0] or temporal_iou((k[1], k[2]), (row[1], row[2])) < tiou for k in kept):
            kept.append(row)
    return sorted(kept, key=lambda r: (r[1], r[2], r[0]))


def merge_window_segments(windows, *, merge: bool = True, nms_tiou: float | None = 0.5, num_frames: int | None = None):
    """``windows``: iterable of (window_start, [(label, start, end, score), ...] window-relative). Returns the
    sequence's segments (label, start, end, score) in sequence frames, clipped to ``num_frames`` when given."""
    rows = []
    for offset, segments in windows:
        for label, start, end, score in segments:
            s, e = int(start) + int(offset), int(end) + int(offset)
            if num_frames is not None:
                s, e = max(0, min(s, num_frames)), max(0, min(e, num_frames))
            if e > s:
                rows.append((int(label), s, e, float(score)))
    if merge:
        rows = merge_touching(rows)
    if nms_tiou is not None:
        rows = temporal_nms(rows, nms_tiou)
    return rows


def segments_array(segments, max_segments: int) -> np.ndarray:
    """(max_segments, 4) float64 rows [label, start, end, score], padded with label -1 (for gathering)."""
    out = np.full((max_segments, 4), -1.0)
    for i, seg in enumerate(list(segments)[:max_segments]):
        out[i] = [seg.label, seg.start, seg.end, seg.score] if hasattr(seg, "label") else list(seg)[:4]
    return out
