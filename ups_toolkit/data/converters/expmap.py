"""Exponential-map motion CSV (Human3.6M and CMU motion prediction) -> 3D joint positions (docs/formats.md §12, §13).

Input: a folder (or one file) of CSV text files, one frame per line: 99 values (Human3.6M, 33 triplets, skeleton
``h36m`` -> layout ``h36m32``) or 117 values (CMU, 39 triplets, skeleton ``cmu`` -> layout ``cmu38``). Triplet 0 is
the root translation in the skeleton's length unit (H36M mm, CMU ASF units of 1/0.45 inch), triplet 1 the global
rotation, triplet 1 + j the exp-map of joint j (radians). ``--skeleton auto`` (default) picks the skeleton from the
value count of the first file; every file must then have that count on every line.

Output per file: ``keypoint`` (T, 1, V, 3) joint positions in **metres** by forward kinematics with the skeleton's
bone offsets (``ups_toolkit/skeleton/kinematic_skeletons.yaml``, the reference tables), plus the extra feature
``expmap`` (T, D) float32: the file's values untouched (after ``--downsample``), for Euler-angle metrics.

* Global motion: the root is at the recorded translation and turned by the recorded global rotation, so positions
  are world positions (y up, as the skeletons are defined; the reference's plotting swap of y and z is not applied).
  ``--zero-root`` puts the root at the origin in every frame and keeps the global rotation; the motion-prediction
  protocols zero both before their 3D error (docs/design.md §12.4), which a task transform does from these positions.
* The reference FK (una-dinosauria/human-motion-prediction ``fkl``) also adds each joint's exp-map values (radians)
  to its bone offset in mm and takes the H36M root position from the global-rotation triplet (a quirk inherited
  from exp2xyz.m); we do not: bones keep their lengths exactly and the root follows triplet 0.
* ``--downsample K`` keeps frames 0, K, 2K, ... (the protocols use 2); fps is divided by K. Native rates: H36M 50 Hz
  (docs/formats.md §12); CMU 30 Hz (Li et al. resampled the CMU data to 30 Hz: chaneyddtt/Convolutional-Sequence-to-
  Sequence-Model-for-Human-Dynamics issue #4); ``--fps`` overrides the native rate.

Labels: the action is the file's folder name (CMU ``<split>/<action>/<action>_<k>.txt``) or its stem without the
``_<k>`` take number (H36M ``S<n>/<action>_<k>.txt``); label sets ``cmu_mocap`` (8) and ``h36m_actions`` (15).
Metadata: ``sample_id`` = path relative to the input folder without suffix, ``subject`` = an ``S<n>`` folder (H36M)
or empty, ``replication`` = the take number k. Protocols: ``folders`` (the ``train``/``test`` folder a file is in)
and ``h36m`` (test = subject S5, train = the other subjects, docs/design.md §12.4).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ...skeleton.kinematics import expmap_to_positions, get_kinematic_skeleton
from ..text_rows import parse_number_row
from .base import Converter, DatasetSpec

# skeleton name -> (label set, native fps); sources in the module docstring
SKELETONS = {
    "h36m": ("h36m_actions", 50.0),
    "cmu": ("cmu_mocap", 30.0),
}
TAKE_SUFFIX = re.compile(r"(.+)_(\d+)")
SUBJECT_FOLDER = re.compile(r"S\d+")
H36M_TEST_SUBJECTS = {"S5"}
SPLIT_FOLDERS = ("train", "test")


def read_expmap_csv(path: Path, expected_values: int | None = None) -> np.ndarray:
    """(T, D) float64 from a comma-separated file, one frame per line; blank lines are skipped.

    Every line must hold ``expected_values`` numbers (or as many as the first line when None), all finite.
    """
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not a text file ({e.reason})", file=path) from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(",")
        if expected_values is None:
            expected_values = len(fields)
        if len(fields) != expected_values:
            raise DataFormatError(f"{len(fields)} values, expected {expected_values} per line", file=path,
                                  line=number)
        rows.append(parse_number_row(fields, file=path, line=number))
    if not rows:
        raise DataFormatError("no frames (empty file)", file=path)
    return np.stack(rows)


def _split_from_folders(sample: dict) -> str:
    for part in reversed(Path(sample["source_file"]).parent.parts):
        if part.lower() in SPLIT_FOLDERS:
            return part.lower()
    raise DataFormatError("protocol 'folders' needs the file under a 'train/' or 'test/' folder",
                          file=sample["source_file"])


def _split_h36m(sample: dict) -> str:
    if not sample["subject"]:
        raise DataFormatError("protocol 'h36m' needs the file under an 'S<n>/' subject folder",
                              file=sample["source_file"])
    return "test" if sample["subject"] in H36M_TEST_SUBJECTS else "train"


class ExpmapConverter(Converter):
    name = "expmap"
    version = "1"
    description = "Human3.6M / CMU exponential-map CSV (motion prediction) -> 3D joint positions + exp-maps"
    protocols = {"folders": _split_from_folders, "h36m": _split_h36m}

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--skeleton", choices=["auto", *SKELETONS], default="auto",
                            help="h36m (99 values per line) or cmu (117); auto = from the first file")
        parser.add_argument("--downsample", type=int, default=1, help="keep every K-th frame (protocols use 2)")
        parser.add_argument("--zero-root", action="store_true", help="root at the origin in every frame")
        parser.add_argument("--fps", type=float, help="native frame rate (default: h36m 50, cmu 30)")

    def __init__(self, src, options):
        super().__init__(src, options)
        if options.downsample < 1:
            raise ConfigError(f"--downsample must be >= 1, got {options.downsample}")
        if options.fps is not None and not options.fps > 0:
            raise ConfigError(f"--fps must be positive, got {options.fps}")
        self._skeleton_name: str | None = None

    def skeleton_name(self) -> str:
        if self._skeleton_name is None:
            if self.options.skeleton != "auto":
                self._skeleton_name = self.options.skeleton
            else:
                items = self.items()
                if not items:
                    raise DataFormatError("no .txt exp-map files found", file=self.src)
                first = self._first_line_values(items[0])
                by_count = {get_kinematic_skeleton(n).values_per_frame: n for n in SKELETONS}
                if first not in by_count:
                    raise DataFormatError(
                        f"{first} values per line: not an exp-map skeleton (expected "
                        f"{' or '.join(f'{k} ({n})' for k, n in by_count.items())})", file=items[0], line=1)
                self._skeleton_name = by_count[first]
        return self._skeleton_name

    @staticmethod
    def _first_line_values(path: Path) -> int:
        with open(path, errors="replace") as fh:
            for line in fh:
                if line.strip():
                    return len(line.split(","))
        raise DataFormatError("no frames (empty file)", file=path)

    def spec(self):
        skeleton = get_kinematic_skeleton(self.skeleton_name())
        label_set, native_fps = SKELETONS[skeleton.name]
        from datasets import Array2D

        return DatasetSpec(
            layout=skeleton.layout,
            num_persons=1,
            channels=3,
            class_names=load_label_set(label_set),
            fps=(self.options.fps or native_fps) / self.options.downsample,
            extra_features={"expmap": Array2D(shape=(None, skeleton.values_per_frame), dtype="float32")},
        )

    def items(self):
        if self.src.is_file():
            return [self.src]
        return sorted(p for p in self.src.rglob("*.txt") if p.is_file())

    def _action(self, path: Path, class_names: list[str]) -> str:
        stem = TAKE_SUFFIX.fullmatch(path.stem)
        candidates = [path.parent.name, stem.group(1) if stem else path.stem]
        for name in candidates:
            if name in class_names:
                return name
        raise DataFormatError(
            f"action {candidates[-1]!r} (from folder {candidates[0]!r} / file name) is not in label set "
            f"{SKELETONS[self.skeleton_name()][0]!r}: {', '.join(class_names)}", file=path)

    def read_item(self, path: Path):
        skeleton = get_kinematic_skeleton(self.skeleton_name())
        spec = self.spec()
        values = read_expmap_csv(path, skeleton.values_per_frame)[:: self.options.downsample]
        action = self._action(path, spec.class_names)
        positions = expmap_to_positions(values, skeleton, zero_root=self.options.zero_root)
        relative = path.relative_to(self.src) if self.src.is_dir() else Path(path.name)
        subject = next((p for p in reversed(relative.parent.parts) if SUBJECT_FOLDER.fullmatch(p)), "")
        take = TAKE_SUFFIX.fullmatch(path.stem)
        yield dict(
            keypoint=positions[:, None].astype(np.float32),
            expmap=values.astype(np.float32),
            layout=skeleton.layout,
            label=spec.class_names.index(action),
            fps=spec.fps,
            sample_id=relative.with_suffix("").as_posix(),
            subject=subject,
            replication=int(take.group(2)) if take else -1,
            source_file=str(path),
        )
