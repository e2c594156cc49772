"""The one sample schema every task reads (docs/design.md D2), as Hugging Face ``datasets`` features.

A sample is a plain dict. ``keypoint`` is time-first (T, M, V, C) float32 because ``Array4D`` allows a variable size
only in its first dimension; absent persons and joints are 0. Labels are 0-based, -1 = unlabeled. Segments of
untrimmed data are [start, end) in 0-based frames.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataFormatError
from ..skeleton import get_layout

# Fields every sample carries, with their defaults when a format does not know them.
METADATA_DEFAULTS = {
    "sample_id": "",
    "subject": "",
    "view": "",
    "setup": -1,
    "replication": -1,
    "source_file": "",
}


def make_features(
    *,
    num_persons: int,
    num_joints: int,
    channels: int,
    class_names: list[str],
    with_score: bool = False,
    with_segments: bool = False,
    with_frame_labels: bool = False,
    with_img_shape: bool = False,
    extra: dict | None = None,
):
    """Build the ``datasets.Features`` of a prepared dataset. Optional fields are present only when asked for."""
    from datasets import Array3D, Array4D, ClassLabel, Features, List, Value

    fields = {
        "keypoint": Array4D(shape=(None, num_persons, num_joints, channels), dtype="float32"),
        "layout": Value("string"),
        "label": ClassLabel(names=list(class_names)),
        "fps": Value("float32"),
        "sample_id": Value("string"),
        "subject": Value("string"),
        "view": Value("string"),
        "setup": Value("int32"),
        "replication": Value("int32"),
        "source_file": Value("string"),
    }
    if with_score:
        fields["keypoint_score"] = Array3D(shape=(None, num_persons, num_joints), dtype="float32")
    if with_segments:
        fields["segments"] = List({"label": Value("int32"), "start": Value("int32"), "end": Value("int32")})
    if with_frame_labels:
        fields["frame_labels"] = List(Value("int32"))
    if with_img_shape:
        fields["img_shape"] = List(Value("int32"))
    fields.update(extra or {})
    return Features(fields)


def validate_sample(sample: dict, *, num_classes: int | None = None, file=None) -> dict:
    """Check one sample against the schema and return it with float32 arrays and metadata defaults filled in.

    Raises :class:`DataFormatError` naming the file and sample for: empty sequence, wrong rank, a joint count that
    does not match the layout, NaN or inf coordinates, a score array of the wrong shape, a label out of range,
    segments outside the sequence.
    """
    sid = sample.get("sample_id") or None
    file = file if file is not None else (sample.get("source_file") or None)

    def fail(msg):
        raise DataFormatError(msg, file=file, sample=sid)

    layout_name = sample.get("layout")
    if not layout_name:
        fail("no layout given")
    try:
        layout = get_layout(layout_name)
    except Exception as e:  # ConfigError with the list of known layouts
        fail(str(e))
    kp = np.asarray(sample["keypoint"])
    if kp.ndim != 4:
        fail(f"keypoint must be (T, M, V, C), got shape {kp.shape}")
    t, m, v, c = kp.shape
    if t == 0:
        fail("empty sequence (0 frames)")
    if m == 0:
        fail("no person slot (M = 0)")
    if v != layout.num_joints:
        fail(f"layout {layout.name!r} has {layout.num_joints} joints but the data has {v}")
    if c not in (2, 3):
        fail(f"expected 2 or 3 coordinates per joint, got {c}")
    kp = kp.astype(np.float32, copy=False)
    bad = ~np.isfinite(kp)
    if bad.any():
        frame, person, joint, _ = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(kp[tuple(np.argwhere(bad)[0])]) else "inf"
        fail(f"{int(bad.sum())} non-finite coordinates ({kind} first at frame {frame}, person {person}, joint {joint})")
    out = {**METADATA_DEFAULTS, **sample, "keypoint": kp}
    if "keypoint_score" in sample and sample["keypoint_score"] is not None:
        score = np.asarray(sample["keypoint_score"], dtype=np.float32)
        if score.shape != (t, m, v):
            fail(f"keypoint_score must have shape {(t, m, v)}, got {score.shape}")
        if not np.isfinite(score).all():
            fail("non-finite keypoint_score values")
        out["keypoint_score"] = score
    label = int(sample.get("label", -1))
    if label < -1 or (num_classes is not None and label >= num_classes):
        fail(f"label {label} outside -1..{(num_classes or 0) - 1}")
    out["label"] = label
    for seg in sample.get("segments") or []:
        if not 0 <= seg["start"] < seg["end"] <= t:
            fail(f"segment [{seg['start']}, {seg['end']}) outside the sequence of {t} frames or empty")
        if num_classes is not None and not 0 <= seg["label"] < num_classes:
            fail(f"segment label {seg['label']} outside 0..{num_classes - 1}")
    if "frame_labels" in sample and sample["frame_labels"] is not None and len(sample["frame_labels"]) != t:
        fail(f"frame_labels has {len(sample['frame_labels'])} entries for {t} frames")
    out["fps"] = float(sample.get("fps", 30.0))
    return out
