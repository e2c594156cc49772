"""Northwestern-UCLA Multiview Action3D in the CTR-GCN JSON layout (Kinect v1, 20 joints; docs/formats.md §9).

Input: the ``NW-UCLA`` folder (or its ``all_sqe`` folder, or one file) holding ``all_sqe/aAA_sSS_eEE_vVV.json``::

    {"file_name": "a01_s01_e00_v01", "skeletons": T x 20 x 3 (Kinect camera frame, metres), "label": 1..10}

One person per sequence, so ``keypoint`` is (T, 1, 20, 3) in layout ``kinect_v1_20``. The label is the file's
``label`` minus 1 (CTR-GCN ``feeders/feeder_ucla.py``) and must agree with the action id of the name (a01..a12 without
a07 and a10). Name fields become metadata: subject ``s01``..``s10``, view ``v01``..``v03``, episode -> ``replication``.

Protocol ``xview`` (the only one the CTR-GCN lineage documents): train v01 + v02 (1,020), test v03 (464).

``val_label.pkl`` (464 dicts ``{file_name, length, label}``, the v03 files), found beside ``all_sqe`` or given with
``--val-label``, is a cross-check: a listed sequence whose label or length differs from its JSON is an error.

Sequences shorter than 10 frames (10 in the full set, two with T = 1) are kept and reported as warnings
(``self.warnings`` entries ``"<name> (<T> frames)"``, printed to stderr after the conversion): resampling to 64
frames only repeats their few frames. T = 0 is an error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ...resources import load_label_set
from ..safe_pickle import safe_load_pickle
from .base import Converter, DatasetSpec

NAME_PATTERN = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})")
# Action ids present in the dataset, in label order (label 1 = a01 ... label 10 = a12).
ACTION_IDS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
NUM_JOINTS = 20
SHORT_SEQUENCE = 10  # frames; docs/formats.md §17: "the converter reports T < 10"
XVIEW_TRAIN_VIEWS = {"v01", "v02"}


def parse_name(stem: str, path=None) -> dict:
    match = NAME_PATTERN.fullmatch(stem)
    if not match:
        raise DataFormatError("file name is not of the form aAA_sSS_eEE_vVV", file=path or stem)
    action, subject, episode, view = (int(g) for g in match.groups())
    if action not in ACTION_IDS:
        raise DataFormatError(f"action id a{action:02d} is not an NW-UCLA action {ACTION_IDS}", file=path or stem)
    return dict(action=action, subject=subject, episode=episode, view=view)


def read_sequence(path: Path) -> tuple[dict, np.ndarray]:
    """One JSON file -> (its dict, skeletons as float64 (T, 20, 3)); every structural problem names the file."""
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"not a readable JSON file ({e})", file=path) from None
    if not isinstance(record, dict) or "skeletons" not in record or "label" not in record:
        raise DataFormatError("expected a JSON object with keys 'skeletons' and 'label'", file=path)
    frames = record["skeletons"]
    if not isinstance(frames, list):
        raise DataFormatError("'skeletons' must be a list of frames", file=path)
    if len(frames) == 0:
        raise DataFormatError("empty sequence (0 frames)", file=path)
    for t, frame in enumerate(frames):
        if not isinstance(frame, list) or len(frame) != NUM_JOINTS:
            found = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise DataFormatError(f"frame {t} has {found} joints, expected {NUM_JOINTS}", file=path)
        for j, joint in enumerate(frame):
            if not isinstance(joint, list) or len(joint) != 3:
                raise DataFormatError(f"frame {t}, joint {j}: expected [x, y, z], found {joint!r}", file=path)
    try:
        skeletons = np.asarray(frames, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"non-numeric coordinates ({e})", file=path) from None
    return record, skeletons


class NWUCLAConverter(Converter):
    name = "nw-ucla"
    version = "1"
    description = "Northwestern-UCLA Multiview Action3D, CTR-GCN JSON (Kinect v1, 20 joints)"
    protocols = {"xview": lambda s: "train" if s["view"] in XVIEW_TRAIN_VIEWS else "test"}

    def __init__(self, src, options):
        super().__init__(src, options)
        self.warnings: list[str] = []
        self._val_labels: dict[str, dict] | None = None

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--val-label",
            help="CTR-GCN val_label.pkl to cross-check (default: SRC/val_label.pkl when present)",
        )

    def spec(self):
        return DatasetSpec(
            layout="kinect_v1_20", num_persons=1, channels=3, class_names=load_label_set("nw_ucla"), fps=30.0
        )

    def items(self):
        if self.src.is_file():
            return [self.src]
        return sorted(self.src.rglob("*.json"))

    def _val_label_path(self) -> Path | None:
        if getattr(self.options, "val_label", None):
            return Path(self.options.val_label)
        default = self.src / "val_label.pkl" if self.src.is_dir() else None
        return default if default is not None and default.is_file() else None

    def input_files(self):
        extra = self._val_label_path()
        return self.items() + ([extra] if extra else [])

    def val_labels(self) -> dict[str, dict]:
        """file_name -> {length, label} from val_label.pkl (empty when there is none)."""
        if self._val_labels is None:
            path = self._val_label_path()
            self._val_labels = {}
            if path is not None:
                entries = safe_load_pickle(path)
                if not isinstance(entries, list):
                    raise DataFormatError(f"expected a list of dicts, found {type(entries).__name__}", file=path)
                for i, entry in enumerate(entries):
                    if not isinstance(entry, dict) or not {"file_name", "length", "label"} <= set(entry):
                        raise DataFormatError(f"entry {i} is not a dict with file_name, length, label", file=path)
                    self._val_labels[str(entry["file_name"])] = entry
        return self._val_labels

    def read_item(self, path: Path):
        meta = parse_name(path.stem, path)
        record, skeletons = read_sequence(path)
        if record.get("file_name", path.stem) != path.stem:
            raise DataFormatError(f"'file_name' is {record['file_name']!r} but the file is {path.stem!r}", file=path)
        label = record["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 1 <= label <= len(ACTION_IDS):
            raise DataFormatError(f"'label' must be an integer 1..{len(ACTION_IDS)}, found {label!r}", file=path)
        if ACTION_IDS[label - 1] != meta["action"]:
            raise DataFormatError(
                f"label {label} means action a{ACTION_IDS[label - 1]:02d}, but the name says a{meta['action']:02d}",
                file=path,
            )
        num_frames = len(skeletons)
        check = self.val_labels().get(path.stem)
        if check is not None and (int(check["label"]) != label or int(check["length"]) != num_frames):
            raise DataFormatError(
                f"val_label.pkl says label {check['label']}, length {check['length']}; "
                f"the JSON has label {label}, {num_frames} frames",
                file=path,
            )
        yield dict(
            keypoint=skeletons[:, None].astype(np.float32),  # (T, 1, 20, 3)
            label=label - 1,
            sample_id=path.stem,
            subject=f"s{meta['subject']:02d}",
            view=f"v{meta['view']:02d}",
            replication=meta["episode"],
            source_file=str(path),
        )

    def samples(self, progress: bool = True):
        self.warnings.clear()
        for sample in super().samples(progress):
            # counted on accepted samples only, so a file rejected later is not also reported as short
            if len(sample["keypoint"]) < SHORT_SEQUENCE:
                self.warnings.append(f"{sample['sample_id']} ({len(sample['keypoint'])} frames)")
            yield sample
        if self.warnings:
            print(
                f"warning: kept {len(self.warnings)} sequences shorter than {SHORT_SEQUENCE} frames: "
                + ", ".join(self.warnings),
                file=sys.stderr,
            )
