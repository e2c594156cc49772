"""Kinetics-skeleton per-clip JSON of ST-GCN (OpenPose-18, 2D; docs/formats.md §5).

Input: one clip, or a folder searched recursively for clips ``<id>.json``::

    {"data": [{"frame_index": 1, "skeleton": [{"pose": [x0, y0, ..., x17, y17], "score": [18 floats]}, ...]}, ...],
     "label": "abseiling", "label_index": 0}

and optionally the label files ``kinetics_{train,val}_label.json`` (``--label-file``, repeatable) mapping
``id -> {has_skeleton, label, label_index}``. With label files, only the clips they list with ``has_skeleton: true``
are read (the others are skipped and reported), and a clip they do not list is an error, as in ST-GCN's feeder.

Conversion (the ST-GCN feeder rule, yysijie/st-gcn ``feeder/feeder_kinetics.py``, in our time-first schema):

* ``frame_index`` is 1-based: frame ``i`` goes to row ``i - 1``; T = the largest ``frame_index`` (a frame missing
  from the list is empty). Frames with no skeleton stay in the sequence as zeros.
* per frame, the first ``--observe-persons`` skeletons (default 5, ST-GCN's ``num_person_in``; 0 = all) are sorted
  by total score, highest first (ties keep file order), and the best ``--num-persons`` (default 2) are kept.
* coordinates are kept as stored: x / 340 and y / 256 of the 340x256 video (about 0..1; ST-GCN subtracts 0.5 in its
  feeder, we do not). ``--pixels`` scales them to pixels instead. ``img_shape`` is [256, 340] (H, W) either way.
  Joints with score 0 are (0, 0), as OpenPose writes undetected joints (and as the feeder enforces).
* ``keypoint`` (T, M, 18, 2) + ``keypoint_score`` (T, M, 18), layout ``openpose18``, 30 fps.

Labels: the ``label`` string is looked up in the 400-name list ``tokenizers/labels/kinetics400.yaml``, because some
public copies rewrote ``label_index`` (docs/datasets.md §7: the five train samples carry 0-4); such a disagreement is
reported as a warning. A clip without any label is unlabeled (-1).

Splits (protocol ``file``, the default): a clip under a folder named ``kinetics_train*`` is ``train``, under
``kinetics_val*`` is ``test``; otherwise the label file that lists it decides (``*train*`` -> train, ``*val*`` ->
test); otherwise ``all``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from .base import Converter, DatasetSpec

NUM_JOINTS = 18
IMAGE_HEIGHT, IMAGE_WIDTH = 256, 340  # ST-GCN's Kinetics-skeleton videos were resized to 340x256
LABEL_FILE_PATTERN = re.compile(r"kinetics_.*_label\.json")  # never a clip: YouTube ids have 11 characters


def split_from_name(name: str) -> str | None:
    if name.startswith("kinetics_train"):
        return "train"
    if name.startswith("kinetics_val"):
        return "test"
    return None


def load_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFormatError(f"not a readable {what} ({e})", file=path) from None


def read_frames(record: dict, path: Path, observe: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip dict -> keypoint (T, keep, 18, 2) and score (T, keep, 18), float64, persons chosen per frame by score."""
    frames = record.get("data")
    if not isinstance(frames, list):
        raise DataFormatError("expected key 'data' with a list of frames", file=path)
    if not frames:
        raise DataFormatError("empty sequence (no frames in 'data')", file=path)
    chosen: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for n, frame in enumerate(frames):
        index = frame.get("frame_index") if isinstance(frame, dict) else None
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise DataFormatError(f"data[{n}]: 'frame_index' must be an integer >= 1, found {index!r}", file=path)
        if index in chosen:
            raise DataFormatError(f"data[{n}]: frame_index {index} appears twice", file=path)
        skeletons = frame.get("skeleton")
        if not isinstance(skeletons, list):
            raise DataFormatError(f"frame_index {index}: 'skeleton' must be a list", file=path)
        people = []
        for m, person in enumerate(skeletons[:observe] if observe > 0 else skeletons):
            where = f"frame_index {index}, skeleton {m}"
            pose = person.get("pose") if isinstance(person, dict) else None
            score = person.get("score") if isinstance(person, dict) else None
            if not isinstance(pose, list) or len(pose) != 2 * NUM_JOINTS:
                found = len(pose) if isinstance(pose, list) else pose
                raise DataFormatError(
                    f"{where}: 'pose' has {found} values, expected {2 * NUM_JOINTS} ({NUM_JOINTS} joints x (x, y))",
                    file=path,
                )
            if not isinstance(score, list) or len(score) != NUM_JOINTS:
                found = len(score) if isinstance(score, list) else score
                raise DataFormatError(f"{where}: 'score' has {found} values, expected {NUM_JOINTS}", file=path)
            try:
                pose, score = np.asarray(pose, np.float64).reshape(NUM_JOINTS, 2), np.asarray(score, np.float64)
            except (TypeError, ValueError):
                raise DataFormatError(f"{where}: non-numeric pose or score", file=path) from None
            # checked here, not only on the kept persons: a damaged value anywhere means a damaged file
            if not (np.isfinite(pose).all() and np.isfinite(score).all()):
                raise DataFormatError(f"{where}: non-finite pose or score value (NaN or inf)", file=path)
            people.append((pose, score))
        # Highest total score first; a stable sort keeps file order among ties.
        order = sorted(range(len(people)), key=lambda i: -people[i][1].sum())
        chosen[index] = [people[i] for i in order[:keep]]
    num_frames = max(chosen)
    keypoint = np.zeros((num_frames, keep, NUM_JOINTS, 2))
    score = np.zeros((num_frames, keep, NUM_JOINTS))
    for index, people in chosen.items():
        for m, (pose, conf) in enumerate(people):
            keypoint[index - 1, m] = pose
            score[index - 1, m] = conf
    keypoint[score == 0] = 0  # undetected joints are (0, 0); the ST-GCN feeder zeroes them explicitly
    return keypoint, score


class KineticsJsonConverter(Converter):
    name = "kinetics-json"
    version = "1"
    description = "Kinetics-skeleton per-clip JSON of ST-GCN (OpenPose-18, 2D, up to --num-persons by score)"
    protocols = {"file": lambda s: s["_part"]}

    def __init__(self, src, options):
        super().__init__(src, options)
        self.warnings: list[str] = []
        self._labels: dict[str, tuple[dict, Path]] | None = None
        self._class_index = {name: i for i, name in enumerate(load_label_set("kinetics400"))}
        if options.num_persons < 1 or options.observe_persons < 0:
            raise ConfigError(
                f"--num-persons must be >= 1 and --observe-persons >= 0, got {options.num_persons}, "
                f"{options.observe_persons}"
            )

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--label-file", action="append", default=[],
            help="kinetics_{train,val}_label.json (repeatable): clips to read, labels, has_skeleton",
        )
        parser.add_argument("--num-persons", type=int, default=2, help="persons kept per frame, best score first")
        parser.add_argument(
            "--observe-persons", type=int, default=5,
            help="only the first N skeletons of a frame compete (ST-GCN num_person_in); 0 = all",
        )
        parser.add_argument("--pixels", action="store_true", help="scale x by 340 and y by 256 (pixels)")

    def spec(self):
        return DatasetSpec(
            layout="openpose18",
            num_persons=self.options.num_persons,
            channels=2,
            class_names=load_label_set("kinetics400"),
            with_score=True,
            with_img_shape=True,
            fps=30.0,
        )

    def split_of(self, sample):
        if not getattr(self.options, "split", None):
            return self.protocols["file"](sample)
        return super().split_of(sample)

    # ---- inputs ---------------------------------------------------------------------------------------------------
    def label_entries(self) -> dict[str, tuple[dict, Path]]:
        """Clip id -> (label-file entry, label file), merged over every ``--label-file``."""
        if self._labels is None:
            self._labels = {}
            for name in self.options.label_file:
                path = Path(name)
                if not path.is_file():
                    raise ConfigError(f"label file {path} does not exist")
                table = load_json(path, "label JSON")
                if not isinstance(table, dict):
                    raise DataFormatError("expected an object {clip id: {has_skeleton, label, label_index}}", file=path)
                for clip, entry in table.items():
                    if not isinstance(entry, dict):
                        raise DataFormatError(f"entry {clip!r} is not an object", file=path)
                    if clip in self._labels:
                        raise DataFormatError(f"clip {clip!r} is also listed in {self._labels[clip][1]}", file=path)
                    self._labels[clip] = (entry, path)
        return self._labels

    def _clip_files(self) -> list[Path]:
        if self.src.is_file():
            return [self.src]
        label_files = {Path(p).resolve() for p in self.options.label_file}
        return sorted(
            p for p in self.src.rglob("*.json")
            if not LABEL_FILE_PATTERN.fullmatch(p.name) and p.resolve() not in label_files
        )

    def items(self):
        clips = self._clip_files()
        labels = self.label_entries()
        if not labels:
            return clips
        kept, empty = [], []
        for clip in clips:
            entry = labels.get(clip.stem, ({}, None))[0]
            (empty if entry.get("has_skeleton", True) is False else kept).append(clip)
        if empty:
            self.warnings.append(f"{len(empty)} clips skipped: has_skeleton false in the label file")
        return kept

    def input_files(self):
        return self._clip_files() + [Path(p) for p in self.options.label_file]

    # ---- one clip -------------------------------------------------------------------------------------------------
    def _label(self, record: dict, path: Path) -> int:
        index_of = self._class_index
        labels = self.label_entries()
        if labels:
            if path.stem not in labels:
                files = ", ".join(str(p) for p in self.options.label_file)
                raise DataFormatError(f"clip {path.stem!r} is not listed in the label file(s) {files}", file=path)
            entry, source = labels[path.stem]
            if isinstance(record.get("label"), str) and "label" in entry and record["label"] != entry["label"]:
                raise DataFormatError(
                    f"the clip says label {record['label']!r}, {source} says {entry['label']!r}", file=path
                )
        else:
            entry, source = record, path
        name, index = entry.get("label"), entry.get("label_index")
        if name is None and index is None:
            return -1
        if name is not None:
            if not isinstance(name, str) or name not in index_of:
                raise DataFormatError(f"label {name!r} is not a Kinetics-400 class name", file=source)
            if index is not None and index != index_of[name]:
                self.warnings.append(f"{path.stem}: label_index {index} -> {index_of[name]} ({name})")
            return index_of[name]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(index_of):
            raise DataFormatError(f"label_index {index!r} outside 0..{len(index_of) - 1}", file=source)
        return index

    def _part(self, path: Path) -> str:
        for folder in reversed(path.parent.parts):
            split = split_from_name(folder)
            if split:
                return split
        source = self.label_entries().get(path.stem, (None, None))[1]
        if source is not None:
            if "train" in source.name:
                return "train"
            if "val" in source.name:
                return "test"
        return "all"

    def read_item(self, path: Path):
        record = load_json(path, "clip JSON")
        if not isinstance(record, dict):
            raise DataFormatError("expected a JSON object with key 'data'", file=path)
        label = self._label(record, path)
        keypoint, score = read_frames(record, path, self.options.observe_persons, self.options.num_persons)
        if not score.any():
            raise DataFormatError(
                "no skeleton in any frame (give the label file to skip has_skeleton: false clips, or --skip-bad)",
                file=path,
            )
        if self.options.pixels:
            keypoint = keypoint * np.array([IMAGE_WIDTH, IMAGE_HEIGHT])
        yield dict(
            keypoint=keypoint.astype(np.float32),
            keypoint_score=score.astype(np.float32),
            label=label,
            sample_id=path.stem,
            img_shape=[IMAGE_HEIGHT, IMAGE_WIDTH],
            source_file=str(path),
            _part=self._part(path),
        )

    def samples(self, progress: bool = True):
        self.warnings.clear()
        yield from super().samples(progress)
        for warning in self.warnings:
            print(f"warning: {warning}", file=sys.stderr)
