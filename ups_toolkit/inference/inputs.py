"""The user's data as samples of the one schema (docs/design.md D2), whatever form it comes in.

Three forms, chosen per path given to ``--input``:

* ``--format NAME``: any format a converter reads (``python -m ups_toolkit.data formats``), with that converter's
  own options (``--format arrays --class-names names.txt``); the converter validates every sample.
* **a prepared dataset** (a folder written by ``python -m ups_toolkit.data convert``, or Parquet): one split
  (``--split``; required when there are several);
* **plain keypoint arrays**: ``.npy`` (the array), ``.npz`` (key ``keypoint``, optional ``keypoint_score``,
  ``label``, ``fps``, ``img_shape``; or a single array) or ``.json`` (a nested list, or an object with
  ``keypoint`` / ``keypoints`` / ``skeletons`` and the same optional keys), shaped (T, V, C) for one person or
  (T, M, V, C), joints in the order of ``--layout``. A folder is searched recursively for such files.

Every sample is checked by :func:`~ups_toolkit.data.schema.validate_sample` (empty sequence, NaN / inf, joint count
against the layout), so bad input fails with one line naming the file and the sample.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataFormatError
from ..skeleton import get_layout, layout_names

ARRAY_SUFFIXES = (".npy", ".npz", ".json")
KEYPOINT_KEYS = ("keypoint", "keypoints", "skeletons")


def is_prepared_dataset(path: Path) -> bool:
    """A folder written by ``write_prepared`` / ``save_to_disk``, a Parquet file, or a folder of Parquet files."""
    if path.is_file():
        return path.suffix == ".parquet"
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
                              or any(path.glob("*.parquet")))


def read_inputs(paths: list[str], *, fmt: str | None = None, converter_options: argparse.Namespace | None = None,
                layout: str | None = None, split: str | None = None, img_shape=None, fps: float | None = None,
                indices: list[int] | None = None, limit: int | None = None) -> list[dict]:
    """Samples of every input path, in the order given (files of a folder sorted). Each sample is a validated schema
    dict plus ``source`` (where it came from, for messages and the JSON) and ``class_names`` (the label names of its
    dataset, or None). ``indices`` / ``limit`` pick samples of the whole list (after reading)."""
    samples: list[dict] = []
    # one prepared dataset (possibly large): pick the rows before decoding them
    single_prepared = fmt is None and len(paths) == 1 and is_prepared_dataset(Path(paths[0]))
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"--input {given}: no such file or folder")
        if fmt is not None:
            samples += _from_converter(path, fmt, converter_options or argparse.Namespace())
        elif is_prepared_dataset(path):
            samples += _from_prepared(path, split, indices if single_prepared else None,
                                      limit if single_prepared else None)
        else:
            samples += _from_arrays(path, layout)
    if not samples:
        raise DataFormatError("no sample found in the input", file=", ".join(paths))
    if not single_prepared:
        samples = _select(samples, len(samples), indices, limit)
    for sample in samples:
        if img_shape is not None:
            sample["img_shape"] = [int(v) for v in img_shape]
        if fps is not None:
            sample["fps"] = float(fps)
    return samples


# ----------------------------------------------------------------------------------------------------------------------
# converters and prepared datasets


def _from_converter(path: Path, fmt: str, options: argparse.Namespace) -> list[dict]:
    from ..data.converters import converter_class

    cls = converter_class(fmt)
    options = argparse.Namespace(**{**vars(options), "split": None, "to_layout": None, "skip_bad": False})
    converter = cls(path, options)
    names = list(converter.spec().class_names)
    out = []
    for sample in converter.samples(progress=False):
        sample.pop("_split", None)
        out.append({**sample, "source": str(path), "class_names": names})
    return out


def _select(items: list, count: int, indices: list[int] | None, limit: int | None) -> list:
    """``items`` (or ``range(count)``) at ``indices`` (checked), then the first ``limit``."""
    if indices:
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise ConfigError(f"--index {bad[0]}: the input holds {count} samples (0..{count - 1})")
        items = [items[i] for i in indices]
    return items[:limit] if limit is not None else items


def _from_prepared(path: Path, split: str | None, indices: list[int] | None = None,
                   limit: int | None = None) -> list[dict]:
    from ..data.prepared import load_prepared

    dataset = load_prepared(path)
    if split is None:
        if len(dataset) > 1:
            raise ConfigError(f"{path} has splits {', '.join(dataset)}: name one with --split")
        split = next(iter(dataset))
    part = load_prepared(path, split)
    label = part.features["label"]
    names = list(label.names) if hasattr(label, "names") else None
    out = []
    for i in _select(list(range(len(part))), len(part), indices, limit):
        row = part[i]
        sample = {
            "keypoint": np.asarray(row["keypoint"], np.float32),
            "layout": str(row["layout"]),
            "label": int(row["label"]) if "label" in row else -1,
            "fps": float(row["fps"]) if "fps" in row else 30.0,
            "sample_id": str(row.get("sample_id") or f"{split}-{i}"),
            "source": f"{path}:{split}",
            "dataset_index": i,
            "class_names": names,
        }
        if row.get("keypoint_score") is not None:
            sample["keypoint_score"] = np.asarray(row["keypoint_score"], np.float32)
        if row.get("img_shape") is not None:
            sample["img_shape"] = [int(v) for v in np.asarray(row["img_shape"])]
        if row.get("segments") is not None:
            sample["segments"] = segment_dicts(row["segments"])
        out.append(_validate(sample, file=f"{path}:{split}"))
    return out


def segment_dicts(segments) -> list[dict]:
    """Segments as stored (Arrow rows, numpy scalars) -> [{label, start, end}] of Python ints."""
    return [{k: int(np.asarray(v)) for k, v in dict(s).items() if k in ("label", "start", "end")}
            for s in segments]


# ----------------------------------------------------------------------------------------------------------------------
# plain arrays


def _from_arrays(path: Path, layout: str | None) -> list[dict]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in ARRAY_SUFFIXES)
    if path.is_dir() and not files:
        raise DataFormatError(f"no {' / '.join(ARRAY_SUFFIXES)} files and no prepared dataset here (give a "
                              f"converter format with --format)", file=path)
    if files and path.is_file() and path.suffix not in ARRAY_SUFFIXES:
        raise DataFormatError(f"unknown input kind {path.suffix!r}: plain arrays are {', '.join(ARRAY_SUFFIXES)}; "
                              f"other formats need --format NAME (python -m ups_toolkit.data formats)", file=path)
    if layout is None:
        raise ConfigError(f"plain keypoint arrays ({path}) need --layout NAME, the joint order of the array "
                          f"({', '.join(layout_names())})")
    get_layout(layout)
    return [_read_array_file(f, layout) for f in files]


def _read_array_file(path: Path, layout: str) -> dict:
    from ..data.converters.arrays import as_time_first, raw_label
    from ..data.safe_pickle import safe_load_npy, safe_load_npz

    extra: dict = {}
    if path.suffix == ".npy":
        array = safe_load_npy(path)
    elif path.suffix == ".npz":
        content = safe_load_npz(path)
        key = next((k for k in KEYPOINT_KEYS if k in content), None)
        if key is None and len(content) == 1:
            key = next(iter(content))
        if key is None:
            raise DataFormatError(f"no keypoint array: expected key 'keypoint' (keys: {', '.join(content)})",
                                  file=path)
        array, extra = content[key], content
    else:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataFormatError(f"not valid JSON ({getattr(e, 'msg', e)})", file=path,
                                  line=getattr(e, "lineno", None)) from None
        if isinstance(content, dict):
            key = next((k for k in KEYPOINT_KEYS if k in content), None)
            if key is None:
                raise DataFormatError(f"no keypoint list: expected key 'keypoint' (keys: {', '.join(content)})",
                                      file=path)
            array, extra = content[key], content
        else:
            array = content
        try:
            array = np.asarray(array, dtype=np.float32)
        except (ValueError, TypeError):
            raise DataFormatError("the keypoint list is not a rectangular array of numbers (T x V x C or "
                                  "T x M x V x C)", file=path) from None
    array = np.asarray(array)
    if array.size == 0:
        raise DataFormatError(f"empty keypoint array (shape {array.shape})", file=path)
    keypoint = as_time_first(array, what="keypoint", file=path).astype(np.float32)
    sample = {"keypoint": keypoint, "layout": layout, "sample_id": path.stem, "label": -1, "source": str(path),
              "class_names": None, "fps": 30.0}
    if extra.get("keypoint_score") is not None:
        sample["keypoint_score"] = as_time_first(extra["keypoint_score"], what="keypoint_score", file=path,
                                                 has_channels=False).astype(np.float32)
    label = raw_label(extra.get("label"), file=path) if extra.get("label") is not None else None
    if isinstance(label, str):  # a class name; an index means nothing without the dataset's class list
        sample["class_names"], sample["label"] = [label], 0
    if extra.get("fps") is not None:
        sample["fps"] = float(np.asarray(extra["fps"]).reshape(()))
    if extra.get("img_shape") is not None:
        sample["img_shape"] = [int(v) for v in np.asarray(extra["img_shape"]).reshape(-1)[:2]]
    return _validate(sample, file=path)


def _validate(sample: dict, *, file) -> dict:
    from ..data.schema import validate_sample

    return validate_sample(sample, file=file)
