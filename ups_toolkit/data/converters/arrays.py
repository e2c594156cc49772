"""Your own keypoints as numpy arrays: the generic way into the toolkit, with no dataset-specific reader.

Two input forms:

(a) **A folder of per-sample files**, searched recursively; the sample id is the file stem.

    * ``.npz`` with key ``keypoint`` and optional ``label`` (class index or class name), ``keypoint_score`` and
      ``fps``; or ``.npy`` holding the keypoint array alone.
    * ``keypoint`` is time-first: (T, V, C) for one person or (T, M, V, C); C = 2 (pixels or normalised image
      coordinates) or 3 (metres). ``keypoint_score`` is (T, V) or (T, M, V).
    * Labels may also come from a mapping file ``labels.csv`` (rows ``stem,label``, header optional) or
      ``labels.json`` (``{stem: label}``) at the top of the folder, or named with ``--labels``. A label given both in
      a file and in the mapping must agree.
    * Files under a first-level folder named ``train``, ``val`` or ``test`` go to that split; all others to ``all``.

(b) **One ``.npz`` holding the whole dataset**:

    * ``keypoints``: an object array of N sequences, each (T_i, V, C) or (T_i, M, V, C); or a padded float array
      (N, T, V, C) / (N, T, M, V, C) with ``lengths`` (N,) = valid frames per sample (without ``lengths``, trailing
      all-zero frames are cut);
    * optional ``labels`` (N,) indices or names, ``class_names`` (K,), ``sample_ids`` (N,), ``splits`` (N,) split
      names, ``keypoint_scores`` (like ``keypoints`` without the C axis), ``fps`` (scalar or (N,)).

Object arrays are read only through the restricted unpickler (:func:`~ups_toolkit.data.safe_pickle.safe_load_npz`).

Options: ``--layout`` (required: the joint order of your arrays, one of ``python -m ups_toolkit.data formats``'
layouts in ``ups_toolkit/skeleton/layouts.yaml``), ``--class-names`` (a ``.txt`` file with one name per line, a JSON
list, a label-set YAML, or a label-set name from ``tokenizers/labels``), ``--fps`` (default 30, overridden by an
``fps`` in the data), ``--num-persons`` (keep the first N persons, zero-pad the rest; default: the most in the data).
Class names come from ``--class-names``, else ``class_names`` in a packed file, else the sorted distinct label names
when labels are strings, else ``class_<i>`` for i = 0 .. max label. Unlabelled samples get label -1.

Recipe: train on your own keypoints
-----------------------------------
1. Save one file per clip, joints in the order of a registered layout (e.g. COCO-17 from a 2D detector)::

       np.savez("my_data/train/clip_0001.npz", keypoint=kp, label="waving")   # kp: (T, 17, 2) float, pixels
       np.savez("my_data/test/clip_0101.npz", keypoint=kp2, label="clapping")

2. Convert (``--to-layout h36m17`` would also map the joints while converting)::

       python -m ups_toolkit.data convert arrays my_data prepared/my_data --layout coco17

3. Check it with ``python -m ups_toolkit.data info prepared/my_data``, then give ``prepared/my_data`` as the dataset
   path of a training run, or in your own loop: ``load_prepared("prepared/my_data", split="train")`` with
   ``torch.utils.data.DataLoader(..., collate_fn=ups_toolkit.data.collate.pad_collate)``.
"""

from __future__ import annotations

import csv
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ...skeleton import get_layout
from ..safe_pickle import safe_load_npy, safe_load_npz
from .base import Converter, DatasetSpec, pad_persons

SPLIT_FOLDERS = ("train", "val", "test")
LABEL_FILES = ("labels.csv", "labels.json")
CSV_HEADER_KEYS = {"stem", "name", "file", "filename", "sample", "sample_id", "id"}
# More persons than this in one array is taken as a wrong axis order, e.g. an ST-GCN (C, T, V, M) array read as
# (T, M, V, C) with T = C and M = the padded 300 frames (Kinetics-skeleton, the most crowded set, has <= 11 per frame).
MAX_PERSONS = 64


def as_time_first(array, *, what: str, file, sample=None, has_channels: bool = True) -> np.ndarray:
    """(T, V, C) or (T, M, V, C) -> (T, M, V, C) (without the C axis when ``has_channels`` is False)."""
    array = np.asarray(array)
    rank = 3 if has_channels else 2
    if array.ndim == rank:
        array = array[:, None]
    expected = "(T, V, C) or (T, M, V, C)" if has_channels else "(T, V) or (T, M, V)"
    if array.ndim != rank + 1 or not np.issubdtype(array.dtype, np.number):
        raise DataFormatError(f"{what} must be a numeric array {expected}, got {array.dtype} {array.shape}",
                              file=file, sample=sample)
    if has_channels and (array.shape[-1] not in (2, 3) or array.shape[1] > MAX_PERSONS):
        raise DataFormatError(
            f"{what} must be time-first {expected} with C = 2 or 3 and M <= {MAX_PERSONS}, got shape {array.shape} "
            "(arrays in (C, T, V, M) order need a transpose, or the stgcn-npy format)", file=file, sample=sample,
        )
    return array


def raw_label(value, *, file, sample=None):
    """A label as stored (numpy scalar, bytes, numeric string ...) -> int index, class-name str, or None."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise DataFormatError(f"label must be one value, got shape {value.shape}", file=file, sample=sample)
        value = value.reshape(()).item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.lstrip("-").isdigit() else text
    if isinstance(value, (bool, np.bool_)):
        raise DataFormatError(f"label {value!r} is a boolean", file=file, sample=sample)
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return int(value)
    raise DataFormatError(f"label {value!r} is neither a class index nor a class name", file=file, sample=sample)


def read_class_names(arg: str) -> list[str]:
    """Class names from a .txt (one per line), .json (list) or .yaml (label set) file, or a label-set name."""
    path = Path(arg)
    if not path.is_file():
        if "/" in arg or path.suffix:
            raise ConfigError(f"--class-names file {arg} does not exist")
        return load_label_set(arg)
    if path.suffix == ".json":
        names = json.loads(path.read_text())
    elif path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text())
        names = data.get("classes") if isinstance(data, dict) else data
    else:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: expected a non-empty list of class-name strings")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: class names are not unique")
    return names


def read_label_mapping(path: Path) -> dict[str, object]:
    """``labels.csv`` (``stem,label`` rows, optional header) or ``labels.json`` -> {stem: raw label}."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataFormatError(f"not valid JSON ({e.msg})", file=path, line=e.lineno) from None
        if not isinstance(data, dict):
            raise DataFormatError("expected an object {file stem: label}", file=path)
        return {str(k): raw_label(v, file=path, sample=k) for k, v in data.items()}
    mapping = {}
    with open(path, newline="") as fh:
        for number, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and row[0].strip().lower() in CSV_HEADER_KEYS:
                continue
            if len(row) != 2:
                raise DataFormatError(f"expected 2 columns 'stem,label', found {len(row)}", file=path, line=number)
            stem, label = row[0].strip(), raw_label(row[1], file=path)
            if stem in mapping:
                raise DataFormatError(f"{stem!r} is listed twice", file=path, line=number)
            mapping[stem] = label
    return mapping


class ArraysConverter(Converter):
    name = "arrays"
    version = "1"
    description = "your own keypoints: a folder of .npz/.npy files (one per sample) or one packed .npz"
    # Splits come from the data (train/val/test folders, or a 'splits' array): see split_of.
    protocols = {}

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--layout", required=True, help="joint layout of the arrays (e.g. coco17, ntu25)")
        parser.add_argument("--class-names", help="class names: .txt (one per line), .json list, .yaml, or label set")
        parser.add_argument("--labels", help="label mapping file stem -> label (.csv or .json; default: "
                                             "labels.csv / labels.json in the folder)")
        parser.add_argument("--fps", type=float, default=30.0, help="frame rate when the data does not give one")
        parser.add_argument("--num-persons", type=int, help="persons kept per sample (default: the most in the data)")

    def __init__(self, src, options):
        super().__init__(src, options)
        get_layout(options.layout)  # an unknown layout fails before anything is read
        if getattr(options, "num_persons", None) is not None and options.num_persons < 1:
            raise ConfigError(f"--num-persons must be at least 1, got {options.num_persons}")
        if options.labels and not Path(options.labels).is_file():
            raise ConfigError(f"--labels file {options.labels} does not exist")

    # ---- the two input forms ------------------------------------------------------------------------------------
    @cached_property
    def _packed(self) -> dict | None:
        """The arrays of a packed dataset file (form b), or None for per-sample files (form a)."""
        if not (self.src.is_file() and self.src.suffix == ".npz"):
            return None
        data = safe_load_npz(self.src)
        if "keypoints" in data:
            return data
        if "keypoint" in data:
            return None  # a single per-sample file
        raise DataFormatError(
            f"expected key 'keypoints' (a whole dataset) or 'keypoint' (one sample), found {sorted(data)}",
            file=self.src,
        )

    def _label_mapping_file(self) -> Path | None:
        if self.options.labels:
            return Path(self.options.labels)
        if self.src.is_dir():
            found = [self.src / name for name in LABEL_FILES if (self.src / name).is_file()]
            if len(found) > 1:
                raise ConfigError(f"{self.src} holds both labels.csv and labels.json: keep one or pass --labels")
            return found[0] if found else None
        return None

    @cached_property
    def _label_mapping(self) -> dict:
        path = self._label_mapping_file()
        return read_label_mapping(path) if path else {}

    def items(self):
        if self._packed is not None:
            return list(range(len(self._packed_samples[0])))
        if self.src.is_file():
            if self.src.suffix not in (".npz", ".npy"):
                raise ConfigError(f"format 'arrays' reads .npz / .npy files or a folder of them, not {self.src}")
            return [self.src]
        return sorted(p for p in self.src.rglob("*") if p.suffix in (".npz", ".npy") and p.is_file())

    def input_files(self):
        files = [self.src] if self._packed is not None else list(self.items())
        mapping = self._label_mapping_file()
        if mapping:
            files.append(mapping)
        if self.options.class_names and Path(self.options.class_names).is_file():
            files.append(Path(self.options.class_names))
        return files

    # ---- form (a): one file per sample --------------------------------------------------------------------------
    def _read_file(self, path: Path) -> dict:
        """One per-sample file -> {keypoint (T, M, V, C), keypoint_score (T, M, V) or None, label (raw, from the
        file), mapped_label (raw, from the mapping file), fps}."""
        if path.suffix == ".npy":
            data = {"keypoint": safe_load_npy(path)}
        else:
            data = safe_load_npz(path)
            if "keypoint" not in data:
                raise DataFormatError(f"no 'keypoint' array (keys: {sorted(data)})", file=path)
        keypoint = as_time_first(data["keypoint"], what="keypoint", file=path)
        score = data.get("keypoint_score")
        if score is not None:
            score = as_time_first(score, what="keypoint_score", file=path, has_channels=False)
            if score.shape != keypoint.shape[:3]:
                raise DataFormatError(
                    f"keypoint_score has shape {score.shape}, expected {keypoint.shape[:3]}", file=path
                )
        fps = data.get("fps")
        return {
            "keypoint": keypoint,
            "keypoint_score": score,
            "label": raw_label(data.get("label"), file=path),
            "mapped_label": self._label_mapping.get(self._relative_key(path), self._label_mapping.get(path.stem)),
            "fps": None if fps is None else float(np.asarray(fps).reshape(())),
        }

    def _relative_key(self, path: Path) -> str:
        """``train/clip_0001`` for ``<src>/train/clip_0001.npz`` (a mapping may name files this way)."""
        if self.src.is_dir():
            return path.relative_to(self.src).with_suffix("").as_posix()
        return path.stem

    # ---- form (b): one packed file ------------------------------------------------------------------------------
    @cached_property
    def _packed_samples(self) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """The packed file's sequences as (T_i, M, V, C) arrays and their scores (T_i, M, V), if any."""
        data = self._packed
        sequences = self._unpack(data["keypoints"], "keypoints", has_channels=True)
        scores = data.get("keypoint_scores")
        if scores is not None:
            scores = self._unpack(scores, "keypoint_scores", has_channels=False,
                                  lengths=[len(seq) for seq in sequences])
            if len(scores) != len(sequences):
                raise DataFormatError(f"{len(scores)} keypoint_scores for {len(sequences)} sequences", file=self.src)
        for key in ("labels", "sample_ids", "splits", "lengths"):
            if key in data and len(np.atleast_1d(data[key])) != len(sequences):
                raise DataFormatError(
                    f"'{key}' has {len(np.atleast_1d(data[key]))} entries for {len(sequences)} sequences",
                    file=self.src,
                )
        return sequences, scores

    def _unpack(self, array, key: str, *, has_channels: bool, lengths: list[int] | None = None) -> list[np.ndarray]:
        """An object array of sequences, or a padded array cut to its valid lengths -> list of time-first arrays.

        ``lengths`` (valid frames per sample) defaults to :meth:`_padded_lengths`.
        """
        if (isinstance(array, np.ndarray) and array.dtype == object) or isinstance(array, (list, tuple)):
            return [
                as_time_first(seq, what=f"{key}[{i}]", file=self.src, has_channels=has_channels)
                for i, seq in enumerate(array)
            ]
        array = np.asarray(array)
        if array.ndim not in ((4, 5) if has_channels else (3, 4)):
            expected = "(N, T, V, C) or (N, T, M, V, C)" if has_channels else "(N, T, V) or (N, T, M, V)"
            raise DataFormatError(
                f"'{key}' must be an object array of sequences or a padded array {expected}, got {array.shape}",
                file=self.src,
            )
        if lengths is None:
            lengths = self._padded_lengths(array)
        return [
            as_time_first(seq[:n], what=f"{key}[{i}]", file=self.src, has_channels=has_channels)
            for i, (seq, n) in enumerate(zip(array, lengths))
        ]

    def _padded_lengths(self, padded: np.ndarray) -> list[int]:
        """Valid frames of each row of a padded (N, T, ...) array: the file's ``lengths``, else up to the last frame
        with a non-zero value."""
        if "lengths" not in self._packed:
            nonzero = padded.reshape(padded.shape[0], padded.shape[1], -1).any(axis=2)
            return [int(row.nonzero()[0][-1]) + 1 if row.any() else 0 for row in nonzero]
        lengths = [int(n) for n in np.atleast_1d(self._packed["lengths"])]
        if len(lengths) != len(padded):
            raise DataFormatError(f"'lengths' has {len(lengths)} entries for {len(padded)} sequences", file=self.src)
        bad = [i for i, n in enumerate(lengths) if not 0 <= n <= padded.shape[1]]
        if bad:
            raise DataFormatError(
                f"lengths[{bad[0]}] = {lengths[bad[0]]} outside 0..{padded.shape[1]} (the padded length)", file=self.src
            )
        return lengths

    def _packed_entry(self, key: str, index: int):
        """Entry ``index`` of a per-sample array of the packed file; a single value applies to every sample."""
        value = self._packed.get(key)
        if value is None:
            return None
        value = np.atleast_1d(value)
        return value[0] if value.size == 1 else value[index]

    def _packed_sample_id(self, index: int) -> str:
        value = self._packed_entry("sample_ids", index)
        return f"sample_{index:06d}" if value is None else str(value)

    # ---- dataset spec from a scan of every sample ---------------------------------------------------------------
    @cached_property
    def _scan(self) -> dict:
        """Persons, channels, scores and raw labels of every sample (reads each per-sample file once)."""
        persons, channels, labels, with_score = [], {}, [], False
        if self._packed is not None:
            sequences, scores = self._packed_samples
            for i, seq in enumerate(sequences):
                persons.append(seq.shape[1])
                channels.setdefault(seq.shape[-1], self._packed_sample_id(i))
                labels.append(raw_label(self._packed_entry("labels", i), file=self.src,
                                        sample=self._packed_sample_id(i)))
            with_score = scores is not None
        else:
            for path in self.items():
                sample = self._read_file(path)
                persons.append(sample["keypoint"].shape[1])
                channels.setdefault(sample["keypoint"].shape[-1], path)
                labels += [sample["label"], sample["mapped_label"]]
                with_score = with_score or sample["keypoint_score"] is not None
        if len(channels) > 1:
            (c1, first), (c2, other) = list(channels.items())[:2]
            where = dict(file=other) if isinstance(other, Path) else dict(file=self.src, sample=other)
            raise DataFormatError(f"{c2} coordinates per joint, but {first} has {c1}: all samples must agree", **where)
        return {"persons": persons, "channels": next(iter(channels), 3), "labels": labels, "with_score": with_score}

    @cached_property
    def _class_names(self) -> list[str]:
        if self.options.class_names:
            return read_class_names(self.options.class_names)
        if self._packed is not None and "class_names" in self._packed:
            return [str(n) for n in np.atleast_1d(self._packed["class_names"])]
        labels = [label for label in self._scan["labels"] if label is not None]
        names = sorted({label for label in labels if isinstance(label, str)})
        if names and any(not isinstance(label, str) for label in labels):
            raise ConfigError(
                f"{self.src}: labels mix class names and class indices; pass --class-names to fix the index order"
            )
        return names or [f"class_{i}" for i in range(max(labels, default=-1) + 1)]

    def spec(self) -> DatasetSpec:
        scan = self._scan
        self._class_names  # mixed or unknown labels fail before anything is written
        return DatasetSpec(
            layout=get_layout(self.options.layout).name,
            num_persons=self.options.num_persons or max(scan["persons"], default=1),
            channels=scan["channels"],
            class_names=self._class_names,
            with_score=scan["with_score"],
            fps=self.options.fps,
        )

    def _label_index(self, label, *, file, sample=None) -> int:
        if label is None:
            return -1
        if isinstance(label, str):
            if label not in self._class_names:
                raise DataFormatError(f"label {label!r} is not one of the {len(self._class_names)} class names",
                                      file=file, sample=sample)
            return self._class_names.index(label)
        return label  # indices are range-checked by validate_sample

    # ---- samples ------------------------------------------------------------------------------------------------
    def read_item(self, item):
        spec = self.spec()
        if self._packed is not None:
            sid = self._packed_sample_id(item)
            sequences, scores = self._packed_samples
            keypoint, score = sequences[item], (scores[item] if scores is not None else None)
            if score is not None and score.shape != keypoint.shape[:3]:
                raise DataFormatError(f"keypoint_scores has shape {score.shape}, expected {keypoint.shape[:3]}",
                                      file=self.src, sample=sid)
            label = raw_label(self._packed_entry("labels", item), file=self.src, sample=sid)
            fps = self._packed_entry("fps", item)
            file, split = self.src, self._packed_entry("splits", item)
            sample = {"sample_id": sid, "_packed_split": None if split is None else str(split)}
        else:
            data = self._read_file(item)
            keypoint, score, label, fps = data["keypoint"], data["keypoint_score"], data["label"], data["fps"]
            file, sid = item, item.stem
            if data["mapped_label"] is not None:
                mapped = self._label_index(data["mapped_label"], file=self._label_mapping_file(), sample=sid)
                if label is not None and self._label_index(label, file=file) != mapped:
                    raise DataFormatError(
                        f"label {label!r} in the file disagrees with {data['mapped_label']!r} in "
                        f"{self._label_mapping_file()}", file=file,
                    )
                label = mapped
            sample = {"sample_id": sid}
        if spec.with_score and score is None:
            raise DataFormatError("no keypoint_score although other samples have one", file=file, sample=sid)
        persons = min(keypoint.shape[1], spec.num_persons)
        sample.update(
            keypoint=pad_persons(keypoint[:, :persons].astype(np.float32), spec.num_persons, file=file, sample=sid),
            label=self._label_index(label, file=file, sample=sid),
            fps=spec.fps if fps is None else float(fps),
            source_file=str(file),
        )
        if spec.with_score:
            sample["keypoint_score"] = pad_persons(score[:, :persons].astype(np.float32), spec.num_persons)
        yield sample

    def split_of(self, sample: dict) -> str | None:
        if self._packed is not None:
            return sample.get("_packed_split") or "all"
        if self.src.is_dir():
            top = Path(sample["source_file"]).relative_to(self.src).parts
            if len(top) > 1 and top[0] in SPLIT_FOLDERS:
                return top[0]
        return "all"
