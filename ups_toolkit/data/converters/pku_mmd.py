"""PKU-MMD untrimmed skeleton sequences, Phase 1 and Phase 2 (docs/formats.md §6).

Input layout (as the dataset is distributed):

* ``SRC/XXXX-V.txt`` (Phase 1, ``0002-L``) or ``SRC/A##N##-V.txt`` (Phase 2): one frame per line, 150 floats =
  2 persons x 25 Kinect v2 joints (NTU order) x xyz in camera metres; person 2 is all zeros when absent. 30 fps.
* ``--labels DIR``: ``DIR/<video>.txt``, one action instance per line ``class,start,end,confidence`` with class
  1..51 and confidence 0/1/2. ``start`` and ``end`` are read as 0-based skeleton-line indices with an inclusive end
  (frame 0 occurs), so an instance becomes the segment [start, end + 1) [ours]; the official scorer uses the raw
  numbers, which ``(start, end - 1)`` of a segment gives back.
* ``--split-file FILE``: ``cross-subject.txt`` / ``cross-view.txt``: a ``Training videos:`` line, a comma-separated
  id list, a ``Validataion videos:`` line (sic) and its list -> splits ``train`` / ``test``.

Output: by default one untrimmed sample per video (``label`` -1, ``segments`` and per-frame ``frame_labels`` with -1
for background) for temporal detection; with ``--trim`` one clip per labelled instance (``label`` = class - 1) for
recognition. Without ``--labels`` the videos are unlabelled streams (no segment fields).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ..xlsx import read_xlsx_rows
from ..text_rows import parse_number_row
from .base import Converter, DatasetSpec

VIDEO_NAME = re.compile(r"(?P<sequence>\d{4}|A\d{2}N\d{2})-(?P<view>[LMR])")
NUM_CLASSES = 51
NUM_PERSONS, NUM_JOINTS = 2, 25
VALUES_PER_FRAME = NUM_PERSONS * NUM_JOINTS * 3
CONFIDENCES = (0, 1, 2)
# Header lines of the split lists; "Validataion" is the official spelling, the others are accepted for hand-made lists.
TRAIN_HEADERS = ("training videos",)
TEST_HEADERS = ("validataion videos", "validation videos", "testing videos", "test videos")


@dataclass(frozen=True)
class PKUInstance:
    """One line of a label file, as written: ``action`` 1..51, ``start``/``end`` frame indices (end inclusive)."""

    action: int
    start: int
    end: int
    confidence: int
    line: int

    @property
    def segment(self) -> dict:
        """The instance in the schema's convention: 0-based label, frames [start, end)."""
        return {"label": self.action - 1, "start": self.start, "end": self.end + 1}


def read_pku_labels(path: str | Path, num_classes: int = NUM_CLASSES) -> list[PKUInstance]:
    """Parse one label file into its instances, in file order.

    Every non-blank line must be ``class,start,end,confidence`` (integers; spaces around commas allowed) with
    class in 1..num_classes, 0 <= start <= end and confidence in {0, 1, 2}; otherwise :class:`DataFormatError`
    names the file and line (e.g. ``0043-L.txt:21``, where start 4925 > end 4036).
    """
    path = Path(path)
    instances = []
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if fields and fields[-1] == "":  # a trailing comma is harmless
            fields.pop()
        if len(fields) != 4:
            raise DataFormatError(
                f"expected 4 comma-separated fields 'class,start,end,confidence', "
                f"found {len(fields)}: {text.strip()!r}",
                file=path, line=number,
            )
        try:
            action, start, end, confidence = (int(f) for f in fields)
        except ValueError:
            raise DataFormatError(f"non-integer field in {text.strip()!r}", file=path, line=number) from None
        if not 1 <= action <= num_classes:
            raise DataFormatError(f"class {action} outside 1..{num_classes}", file=path, line=number)
        if start < 0 or start > end:
            raise DataFormatError(
                f"bad interval: start {start}, end {end} (need 0 <= start <= end)", file=path, line=number
            )
        if confidence not in CONFIDENCES:
            raise DataFormatError(f"confidence {confidence} is not 0, 1 or 2", file=path, line=number)
        instances.append(PKUInstance(action, start, end, confidence, number))
    return instances


def read_pku_split(path: str | Path) -> dict[str, list[str]]:
    """Parse a split list into ``{"train": [video ids], "test": [video ids]}`` (file order).

    Raises :class:`DataFormatError` naming file and line for ids before any header, malformed ids, a missing list
    or a video listed twice.
    """
    path = Path(path)
    split = {"train": [], "test": []}
    current = None
    seen: dict[str, int] = {}
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
        header = text.strip().rstrip(":").strip().lower()
        if header in TRAIN_HEADERS:
            current = "train"
            continue
        if header in TEST_HEADERS:
            current = "test"
            continue
        ids = [v.strip() for v in text.split(",") if v.strip()]
        if not ids:
            continue
        if current is None:
            raise DataFormatError("video ids before a 'Training videos:' line", file=path, line=number)
        for video in ids:
            if not VIDEO_NAME.fullmatch(video):
                raise DataFormatError(f"{video!r} is not a PKU-MMD video id (0002-L, A01N01-M)", file=path, line=number)
            if video in seen:
                raise DataFormatError(
                    f"video {video} is listed twice (first on line {seen[video]})", file=path, line=number
                )
            seen[video] = number
            split[current].append(video)
    for name, header in (("train", "Training videos:"), ("test", "Validataion videos:")):
        if not split[name]:
            raise DataFormatError(f"no video ids under a {header!r} line", file=path)
    return split


def read_pku_actions(path: str | Path) -> list[str]:
    """Class names from ``Actions.xlsx`` (columns ``Label``, ``Action``), ordered by action id 1..N."""
    rows = read_xlsx_rows(path)
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["label", "action"]:
        raise DataFormatError("first row must be the header 'Label', 'Action'", file=path)
    names = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) < 2 or not row[0].strip():
            continue
        try:
            action = int(float(row[0]))  # numbers may be stored as text or as numbers ("12" or "12.0")
        except ValueError:
            raise DataFormatError(f"row {number}: label {row[0]!r} is not an integer", file=path) from None
        if action != len(names) + 1:
            raise DataFormatError(f"row {number}: label {action}, expected {len(names) + 1}", file=path)
        names.append(row[1].strip())
    return names


def read_pku_skeleton(path: str | Path) -> np.ndarray:
    """One skeleton file -> float32 (T, 2, 25, 3), camera metres.

    Every line is a frame, so line k is frame k - 1 (label frame numbers index these lines): a blank line inside
    the file would shift every later frame and is rejected; trailing blank lines are ignored.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not a text file ({e})", file=path) from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataFormatError("empty skeleton file (0 frames)", file=path)
    frames = np.empty((len(lines), VALUES_PER_FRAME), np.float32)
    for number, text in enumerate(lines, 1):
        values = text.split()
        if len(values) != VALUES_PER_FRAME:
            raise DataFormatError(
                f"expected {VALUES_PER_FRAME} values (2 persons x 25 joints x xyz), found {len(values)}",
                file=path, line=number,
            )
        frames[number - 1] = parse_number_row(values, file=path, line=number)
    return frames.reshape(len(lines), NUM_PERSONS, NUM_JOINTS, 3)


class PKUMMDConverter(Converter):
    name = "pku-mmd"
    version = "1"
    description = "PKU-MMD Phase 1/2 untrimmed skeleton txt (+ label files, split lists); --trim for clips"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--labels", help="folder of label files <video>.txt (class,start,end,confidence)")
        parser.add_argument("--split-file", help="cross-subject.txt / cross-view.txt -> splits train / test")
        parser.add_argument("--trim", action="store_true", help="one clip per labelled instance (recognition)")

    def __init__(self, src, options):
        super().__init__(src, options)
        self.labels_dir = Path(options.labels) if getattr(options, "labels", None) else None
        if self.labels_dir is not None and not self.labels_dir.is_dir():
            raise ConfigError(f"--labels {self.labels_dir} is not a folder")
        self.trim = bool(getattr(options, "trim", False))
        if self.trim and self.labels_dir is None:
            raise ConfigError("--trim cuts clips at the labelled instances: give --labels DIR")
        self.split_file = Path(options.split_file) if getattr(options, "split_file", None) else None
        self._split_of_video: dict[str, str] = {}
        if self.split_file is not None:
            if not self.split_file.is_file():
                raise ConfigError(f"--split-file {self.split_file} does not exist")
            for split, videos in read_pku_split(self.split_file).items():
                self._split_of_video.update(dict.fromkeys(videos, split))

    def spec(self):
        untrimmed_labels = self.labels_dir is not None and not self.trim
        return DatasetSpec(
            layout="ntu25",
            num_persons=NUM_PERSONS,
            channels=3,
            class_names=load_label_set("pku_mmd51"),
            with_segments=untrimmed_labels,
            with_frame_labels=untrimmed_labels,
            fps=30.0,
        )

    def items(self):
        if self.src.is_file():
            return [self.src]
        # Only files named like videos: the distributed folders also hold README.txt and the like.
        return sorted(p for p in self.src.glob("*.txt") if VIDEO_NAME.fullmatch(p.stem))

    def input_files(self):
        files = list(self.items())
        if self.labels_dir is not None:
            label_files = [self.labels_dir / f"{p.stem}.txt" for p in files]
            files += [f for f in label_files if f.is_file()]
        if self.split_file is not None:
            files.append(self.split_file)
        return files

    def split_of(self, sample):
        if self.split_file is None:
            return "all"
        return self._split_of_video[sample["_video"]]

    def read_item(self, path: Path):
        video = path.stem
        name = VIDEO_NAME.fullmatch(video)
        if name is None:
            raise DataFormatError("file name is not a PKU-MMD video id (0002-L.txt, A01N01-M.txt)", file=path)
        if self.split_file is not None and video not in self._split_of_video:
            raise DataFormatError(f"video {video} is in neither list of the split file", file=self.split_file)
        keypoint = read_pku_skeleton(path)
        num_frames = len(keypoint)
        meta = dict(view=name["view"], source_file=str(path), _video=video)

        if self.labels_dir is None:
            yield dict(keypoint=keypoint, label=-1, sample_id=video, **meta)
            return
        label_file = self.labels_dir / f"{video}.txt"
        if not label_file.is_file():
            raise DataFormatError(f"no label file for video {video} (expected {label_file})", file=path)
        instances = read_pku_labels(label_file)
        for inst in instances:
            if inst.end >= num_frames:
                raise DataFormatError(
                    f"instance ends at frame {inst.end} but {path.name} has {num_frames} frames (0..{num_frames - 1})",
                    file=label_file, line=inst.line,
                )

        if self.trim:
            for inst in instances:
                yield dict(
                    keypoint=keypoint[inst.start : inst.end + 1],
                    label=inst.action - 1,
                    sample_id=f"{video}_{inst.line:03d}",  # label-file line: traceable to the annotation
                    **meta,
                )
            return

        # Instances of one video do not overlap in PKU-MMD; if a file has overlaps, the later line wins per frame.
        frame_labels = np.full(num_frames, -1, np.int32)
        for inst in instances:
            frame_labels[inst.start : inst.end + 1] = inst.action - 1
        yield dict(
            keypoint=keypoint,
            label=-1,
            sample_id=video,
            segments=[inst.segment for inst in sorted(instances, key=lambda i: (i.start, i.end, i.line))],
            frame_labels=frame_labels.tolist(),
            **meta,
        )
