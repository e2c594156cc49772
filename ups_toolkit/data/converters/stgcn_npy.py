"""ST-GCN lineage arrays: ``{part}_data[_joint].npy`` (N, C, T, V, M) + ``{part}_label.pkl`` (+ ``_num_frame.npy``)
(ST-GCN, 2s-AGCN, MS-G3D, CrosSCLR, AimCLR, UmURL; docs/formats.md §4).

SRC is one folder (e.g. ``NTU-RGB-D-60-AGCN/xsub/``) holding, per part ``train`` and ``val`` (or ``test``):

* data: ``{part}_data_joint.npy`` (2s-AGCN, UmURL), else ``{part}_data.npy`` (ST-GCN), else ``{part}_position.npy``
  (CrosSCLR / AimCLR, resampled to 50 frames) -- float (N, C, T, V, M); ``_bone`` / ``_motion`` arrays are derived
  streams, not positions, and are not read;
* labels: ``{part}_label.pkl``, the pickled tuple ``(sample_names, labels)`` (restricted unpickler, no code runs),
  else ``{part}_label.npy`` (CrosSCLR / AimCLR: int (N, 1), no names);
* optional ``{part}_num_frame.npy`` (N,): valid frames (UmURL). Without it the valid length is the last non-zero
  frame: ST-GCN pads with zeros, while UmURL's preparation fills the padding by repeating the sequence, so its arrays
  need the num_frame file.

Parts map to splits ``train`` and ``test`` (``val`` -> ``test``; protocol ``file``, the default). The arrays are
memory-mapped (``np.load(mmap_mode="r", allow_pickle=False)``: numeric data only, an NTU-60 file is about 5 GB).

Layout (``--layout``, default by V: 25 -> ``ntu25``, 18 -> ``openpose18``). Channels (``--channels``): ``xyz`` for 3D
layouts; for the 2D layouts ``openpose18`` and ``coco17`` with C = 3 the third channel is the detector score
(``xy-score``: keypoint x, y + ``keypoint_score``), as ST-GCN's Kinetics arrays store it. Values are kept as stored
(ST-GCN's Kinetics arrays are already centred by -0.5; UmURL's NTU arrays are already view-normalised).

Metadata: sample names of the NTU form ``SsssCcccPpppRrrrAaaa[.skeleton]`` give subject, view, setup, replication;
other names are kept as ``sample_id`` (extension dropped); without names ``sample_id`` is ``<split>_<index>``.
Label set (``--label-set``, any ``tokenizers/labels`` name): default ``ntu60`` / ``ntu120`` for NTU-25 data (ntu120
when a label is >= 60), ``kinetics400`` for OpenPose-18.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ..safe_pickle import safe_load_pickle
from .base import Converter, DatasetSpec
from .ctrgcn_npz import valid_length
from .ntu_skeleton import NAME_PATTERN

PART_SPLITS = {"train": "train", "val": "test", "test": "test"}
DATA_NAMES = ("{part}_data_joint.npy", "{part}_data.npy", "{part}_position.npy")
DEFAULT_LAYOUTS = {25: "ntu25", 18: "openpose18"}
SCORE_LAYOUTS = {"openpose18", "coco17"}  # 2D layouts whose third stored channel is a detector confidence
NAME_EXTENSIONS = (".skeleton", ".json", ".npy")


def load_array(path: Path) -> np.ndarray:
    """Memory-map a numeric ``.npy`` (never unpickles); a damaged or object array names the file."""
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise DataFormatError("not a .npy file (no \\x93NUMPY magic)", file=path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise DataFormatError(f"not a readable numeric .npy array ({e})", file=path) from None
    if not isinstance(array, np.ndarray) or array.dtype.hasobject or array.dtype.names:
        raise DataFormatError("expected a plain numeric array", file=path)
    return array


def load_label_tuple(path: Path) -> tuple[list[str], list[int]]:
    """``{part}_label.pkl`` -> (sample names, integer labels)."""
    content = safe_load_pickle(path)
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise DataFormatError("expected the pickled tuple (sample_names, labels)", file=path)
    names, labels = content
    try:
        names = [str(n) for n in names]
        labels = [int(label) for label in labels]
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"sample names must be strings and labels integers ({e})", file=path) from None
    if len(names) != len(labels):
        raise DataFormatError(f"{len(names)} sample names but {len(labels)} labels", file=path)
    return names, labels


class _Part:
    """The files of one part and their arrays (data memory-mapped)."""

    def __init__(self, folder: Path, part: str):
        self.part, self.split = part, PART_SPLITS[part]
        candidates = [folder / name.format(part=part) for name in DATA_NAMES]
        self.data_file = next(path for path in candidates if path.is_file())
        self.label_file = folder / f"{part}_label.pkl"
        if not self.label_file.is_file():
            self.label_file = folder / f"{part}_label.npy"
        if not self.label_file.is_file():
            raise ConfigError(f"{self.data_file} has no label file {part}_label.pkl (or {part}_label.npy) beside it")
        num_frame = folder / f"{part}_num_frame.npy"
        self.num_frame_file = num_frame if num_frame.is_file() else None

        self.data = load_array(self.data_file)
        if self.data.ndim != 5 or self.data.shape[1] not in (2, 3):
            raise DataFormatError(
                f"shape {self.data.shape}: expected (N, C, T, V, M) with C = 2 or 3", file=self.data_file
            )
        n = len(self.data)
        if self.label_file.suffix == ".pkl":
            self.names, self.labels = load_label_tuple(self.label_file)
        else:  # CrosSCLR / AimCLR: int (N, 1), no names
            labels = load_array(self.label_file)
            if labels.dtype.kind not in "iu" or labels.ndim not in (1, 2) or labels.size != len(labels):
                raise DataFormatError(
                    f"expected integer labels (N,) or (N, 1), got {labels.dtype} {labels.shape}", file=self.label_file
                )
            self.names, self.labels = None, [int(v) for v in np.asarray(labels).reshape(-1)]
        if len(self.labels) != n:
            raise DataFormatError(f"{len(self.labels)} labels for {n} samples in {self.data_file.name}",
                                  file=self.label_file)
        self.num_frame = None
        if self.num_frame_file is not None:
            num_frame = load_array(self.num_frame_file)
            if num_frame.shape != (n,) or num_frame.dtype.kind not in "iuf":
                raise DataFormatError(
                    f"shape {num_frame.shape}: expected ({n},) frame counts", file=self.num_frame_file
                )
            self.num_frame = np.asarray(num_frame)

    @property
    def cvm(self) -> tuple[int, int, int]:
        _, c, _, v, m = self.data.shape
        return c, v, m

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.data_file, self.label_file, self.num_frame_file) if p is not None]


class STGCNNpyConverter(Converter):
    name = "stgcn-npy"
    version = "1"
    description = "ST-GCN / 2s-AGCN / CrosSCLR / AimCLR / UmURL arrays: {part}_data*.npy (N, C, T, V, M) + label pickle"
    protocols = {"file": lambda s: s["_part"]}

    def __init__(self, src, options):
        super().__init__(src, options)
        if not self.src.is_dir():
            raise ConfigError(f"input {self.src} must be a folder holding {{train,val}}_data*.npy and *_label.pkl")
        self._parts: list[_Part] | None = None

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--layout", help="joint layout (default by V: 25 -> ntu25, 18 -> openpose18)")
        parser.add_argument(
            "--channels", choices=["xyz", "xy", "xy-score"],
            help="meaning of the C axis (default: xy-score for openpose18/coco17 with C = 3, xy for C = 2, else xyz)",
        )
        parser.add_argument(
            "--label-set", help="label set name (default: ntu60/ntu120 for ntu25, kinetics400 for openpose18)"
        )

    def split_of(self, sample):
        if not getattr(self.options, "split", None):
            return self.protocols["file"](sample)
        return super().split_of(sample)

    def parts(self) -> list[_Part]:
        if self._parts is None:
            present = [
                part for part in PART_SPLITS
                if any((self.src / n.format(part=part)).is_file() for n in DATA_NAMES)
            ]
            if not present:
                raise DataFormatError(
                    "no {train,val,test}_data_joint.npy, _data.npy or _position.npy in this folder", file=self.src
                )
            if "val" in present and "test" in present:
                raise ConfigError(f"{self.src} holds both val and test arrays; both would become split 'test'")
            parts = [_Part(self.src, part) for part in present]
            first = parts[0]
            for part in parts[1:]:  # (C, V, M) must agree between the parts
                if part.cvm != first.cvm:
                    raise DataFormatError(
                        f"(C, V, M) = {part.cvm} but {first.data_file.name} has {first.cvm}", file=part.data_file
                    )
            self._parts = parts
        return self._parts

    def _shape(self) -> tuple[int, int, int]:
        return self.parts()[0].cvm

    def layout(self) -> str:
        c, v, _ = self._shape()
        name = getattr(self.options, "layout", None) or DEFAULT_LAYOUTS.get(v)
        if name is None:
            raise ConfigError(
                f"{self.parts()[0].data_file}: V = {v} joints has no default layout (known: {DEFAULT_LAYOUTS}); "
                "pass --layout"
            )
        return name

    def channels(self) -> str:
        c, _, _ = self._shape()
        mode = getattr(self.options, "channels", None)
        if mode is None:
            mode = "xy" if c == 2 else ("xy-score" if self.layout() in SCORE_LAYOUTS else "xyz")
        if (mode == "xy") != (c == 2):
            raise ConfigError(f"{self.parts()[0].data_file}: --channels {mode} does not fit arrays with C = {c}")
        return mode

    def label_set(self) -> str:
        name = getattr(self.options, "label_set", None)
        if name:
            return name
        layout = self.layout()
        if layout == "ntu25":
            return "ntu120" if max(max(p.labels, default=0) for p in self.parts()) >= 60 else "ntu60"
        if layout == "openpose18":
            return "kinetics400"
        raise ConfigError(f"no default label set for layout {layout!r}: pass --label-set")

    def spec(self):
        _, _, m = self._shape()
        mode = self.channels()
        return DatasetSpec(
            layout=self.layout(),
            num_persons=m,
            channels=3 if mode == "xyz" else 2,
            class_names=load_label_set(self.label_set()),
            with_score=mode == "xy-score",
            fps=30.0,
        )

    def items(self):
        return [(k, i) for k, part in enumerate(self.parts()) for i in range(len(part.data))]

    def input_files(self):
        return [f for part in self.parts() for f in part.files]

    def read_item(self, item):
        k, i = item
        part = self.parts()[k]
        name = part.names[i] if part.names is not None else None
        stem = name
        for extension in NAME_EXTENSIONS:
            if stem and stem.endswith(extension):
                stem = stem[: -len(extension)]
        sample_id = stem or f"{part.split}_{i:06d}"
        data = np.asarray(part.data[i], dtype=np.float32).transpose(1, 3, 2, 0)  # (C, T, V, M) -> (T, M, V, C)
        if part.num_frame is not None:
            count = part.num_frame[i]
            if not np.isfinite(count) or count != int(count) or not 1 <= count <= len(data):
                raise DataFormatError(
                    f"num_frame[{i}] = {count}: expected an integer 1..{len(data)}",
                    file=part.num_frame_file, sample=sample_id,
                )
            num_frames = int(count)
        else:
            num_frames = valid_length(data)
            if num_frames == 0:
                raise DataFormatError(f"sample {i} is all zeros: empty sequence", file=part.data_file, sample=sample_id)
        data = data[:num_frames]
        sample = dict(label=part.labels[i], sample_id=sample_id, source_file=str(part.data_file), _part=part.split)
        if self.channels() == "xy-score":
            sample["keypoint"], sample["keypoint_score"] = data[..., :2], data[..., 2]
        else:
            sample["keypoint"] = data
        match = NAME_PATTERN.fullmatch(stem or "")
        if match:
            setup, camera, performer, replication, _ = (int(g) for g in match.groups())
            sample.update(subject=f"P{performer:03d}", view=f"C{camera:03d}", setup=setup, replication=replication)
        yield sample
