"""CTR-GCN / InfoGCN NTU ``.npz`` files (``NTU60_CS.npz``, ``NTU60_CV.npz``, ``NTU120_CSub.npz``, ``NTU120_CSet.npz``;
docs/formats.md §3).

Keys ``x_train``, ``y_train``, ``x_test``, ``y_test``:

* ``x_*`` float32 (N, 300, 150): frames padded with zeros to 300; 150 = 2 persons x 25 joints (NTU-25) x xyz,
  person-major, so one frame reshapes to (2, 25, 3) and the array is already time-first (T, M, V, C). A one-person
  sample has its second half zero. Coordinates are camera metres translated by CTR-GCN's preparation.
* ``y_*`` one-hot (N, 60 | 120): label = the column of the 1.

Valid length: trailing all-zero frames are padding and are cut (CTR-GCN's feeder counts the non-zero frames, which
is the same number because its preparation never leaves an all-zero frame inside a sequence); a sample with no
non-zero frame is an error. The splits are fixed by the file: ``x_train`` -> ``train``, ``x_test`` -> ``test``
(protocol ``file``, the default). No names are stored, so ``sample_id`` is ``<split>_<index>`` and the subject /
view metadata are unknown.

The arrays are numeric, so no pickle is ever involved (object arrays are refused). An ``.npz`` written by
``np.savez`` stores its members uncompressed: they are memory-mapped (the NTU-60 file holds about 10 GB of float32);
a compressed archive (``np.savez_compressed``) is read into memory with :func:`safe_load_npz`.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ..safe_pickle import safe_load_npz
from .base import Converter, DatasetSpec

PARTS = {"train": "train", "test": "test"}  # key suffix -> split name
NUM_PERSONS, NUM_JOINTS, CHANNELS = 2, 25, 3
LABEL_SETS = {60: "ntu60", 120: "ntu120"}
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header: 30 bytes, name and extra lengths last


def open_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Numeric arrays of an ``.npz`` by key: memory-mapped when stored uncompressed, else read by safe_load_npz."""
    from numpy.lib import format as npformat

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFormatError(f"not a readable .npz archive ({e})", file=path) from None
    with archive:
        members = archive.infolist()
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        arrays = safe_load_npz(path)
        for key, array in arrays.items():
            if not isinstance(array, np.ndarray) or array.dtype.hasobject:
                raise DataFormatError(f"key {key!r} is not a numeric array", file=path)
        return arrays
    size = path.stat().st_size
    arrays = {}
    with open(path, "rb") as fh:
        for member in members:
            key = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
            fh.seek(member.header_offset)
            header = fh.read(_LOCAL_HEADER.size)
            if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise DataFormatError(f"damaged zip entry for key {key!r}", file=path)
            name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
            fh.seek(member.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
            try:
                version = npformat.read_magic(fh)
                read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
                shape, fortran, dtype = read_header(fh)
            except ValueError as e:
                raise DataFormatError(f"key {key!r} is not a .npy array ({e})", file=path) from None
            if dtype.hasobject:
                raise DataFormatError(f"key {key!r} is an object array; expected numbers", file=path)
            offset = fh.tell()
            needed = int(np.prod(shape)) * dtype.itemsize
            if offset + needed > size:
                raise DataFormatError(
                    f"key {key!r} is truncated: {needed} bytes of data announced, {size - offset} present", file=path
                )
            arrays[key] = (
                np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
                if needed else np.zeros(shape, dtype)
            )
    return arrays


def valid_length(frames: np.ndarray) -> int:
    """Frames up to the last one with a non-zero value (trailing zero frames are padding). (T, ...) -> int."""
    nonzero = np.flatnonzero(frames.reshape(len(frames), -1).any(axis=1))
    return int(nonzero[-1]) + 1 if len(nonzero) else 0


class CTRGCNNpzConverter(Converter):
    name = "ctrgcn-npz"
    version = "1"
    description = "CTR-GCN / InfoGCN NTU .npz (x_train (N, 300, 150), one-hot y_train, x_test, y_test)"
    protocols = {"file": lambda s: s["_part"]}

    def __init__(self, src, options):
        super().__init__(src, options)
        if not self.src.is_file():
            raise ConfigError(f"input {self.src} must be one .npz file (e.g. NTU60_CS.npz)")
        self._arrays: dict[str, np.ndarray] | None = None

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--label-set", choices=sorted(LABEL_SETS.values()),
            help="class names (default: by the number of one-hot columns, 60 -> ntu60, 120 -> ntu120)",
        )

    def split_of(self, sample):
        if not getattr(self.options, "split", None):
            return self.protocols["file"](sample)
        return super().split_of(sample)

    def arrays(self) -> dict[str, np.ndarray]:
        """The four arrays, shape-checked: x (N, T, 150) and y (N, K) with the same N and one K for both parts."""
        if self._arrays is None:
            arrays = open_npz_arrays(self.src)
            columns = set()
            for part in PARTS:
                x_key, y_key = f"x_{part}", f"y_{part}"
                for key in (x_key, y_key):
                    if key not in arrays:
                        raise DataFormatError(
                            f"missing key {key!r} (found: {', '.join(sorted(arrays)) or 'none'})", file=self.src
                        )
                x, y = arrays[x_key], arrays[y_key]
                width = NUM_PERSONS * NUM_JOINTS * CHANNELS
                if x.ndim != 3 or x.shape[2] != width:
                    raise DataFormatError(
                        f"{x_key} has shape {x.shape}, expected (N, T, {width}) = 2 persons x 25 joints x xyz",
                        file=self.src,
                    )
                if y.ndim != 2 or y.shape[0] != x.shape[0]:
                    raise DataFormatError(
                        f"{y_key} has shape {y.shape}, expected one-hot ({x.shape[0]}, classes)", file=self.src
                    )
                columns.add(y.shape[1])
            if len(columns) != 1:
                raise DataFormatError(
                    f"y_train and y_test have different class counts {sorted(columns)}", file=self.src
                )
            self._arrays = arrays
        return self._arrays

    def label_set(self) -> str:
        columns = self.arrays()["y_train"].shape[1]
        name = getattr(self.options, "label_set", None) or LABEL_SETS.get(columns)
        if name is None:
            raise DataFormatError(
                f"y has {columns} one-hot columns; expected 60 (NTU-60) or 120 (NTU-120), or pass --label-set",
                file=self.src,
            )
        if len(load_label_set(name)) != columns:
            raise DataFormatError(
                f"y has {columns} one-hot columns but label set {name!r} has {len(load_label_set(name))} classes",
                file=self.src,
            )
        return name

    def spec(self):
        return DatasetSpec(
            layout="ntu25",
            num_persons=NUM_PERSONS,
            channels=CHANNELS,
            class_names=load_label_set(self.label_set()),
            fps=30.0,
        )

    def items(self):
        arrays = self.arrays()
        return [(part, i) for part in PARTS for i in range(len(arrays[f"x_{part}"]))]

    def input_files(self):
        return [self.src]

    def read_item(self, item):
        part, i = item
        sample_id = f"{PARTS[part]}_{i:06d}"
        arrays = self.arrays()
        one_hot = np.asarray(arrays[f"y_{part}"][i])
        hot = np.flatnonzero(one_hot > 0)
        if len(hot) != 1 or one_hot[hot[0]] != 1 or np.count_nonzero(one_hot) != 1:
            raise DataFormatError(
                f"y_{part}[{i}] is not one-hot ({len(hot)} positive entries)", file=self.src, sample=sample_id
            )
        frames = np.asarray(arrays[f"x_{part}"][i], dtype=np.float32)
        num_frames = valid_length(frames)
        if num_frames == 0:
            raise DataFormatError(f"x_{part}[{i}] is all zeros: empty sequence", file=self.src, sample=sample_id)
        yield dict(
            keypoint=frames[:num_frames].reshape(num_frames, NUM_PERSONS, NUM_JOINTS, CHANNELS),
            label=int(hot[0]),
            sample_id=sample_id,
            source_file=str(self.src),
            _part=PARTS[part],
        )
