"""Prepared datasets on disk: atomic writing, loading (Arrow folder or Parquet), Parquet export.

Writing goes to ``<out>.tmp-<pid>`` and is renamed into place only when complete, so an interrupted or failed
conversion never leaves a half dataset at ``<out>`` and never damages a dataset already there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_directory
from ..errors import ConfigError, DataFormatError, UPSError
from .schema import make_features

INFO_FILE = "ups_info.json"


def write_prepared(
    samples: Iterable[dict],
    out: str | Path,
    *,
    spec,
    fingerprint: str,
    info: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write samples (each with a ``_split`` key) as a ``DatasetDict`` at ``out``, atomically.

    ``spec`` is a :class:`~ups_toolkit.data.converters.base.DatasetSpec`. Returns the output path.
    """
    import datasets
    from datasets import Dataset, DatasetDict, Value
    from datasets.exceptions import DatasetGenerationError

    if not progress:
        datasets.disable_progress_bars()

    features = make_features(
        num_persons=spec.num_persons,
        num_joints=_num_joints(spec.layout),
        channels=spec.channels,
        class_names=spec.class_names,
        with_score=spec.with_score,
        with_segments=spec.with_segments,
        with_frame_labels=spec.with_frame_labels,
        with_img_shape=spec.with_img_shape,
        extra=spec.extra_features,
    )
    features["_split"] = Value("string")
    keys = list(features)

    def generate():
        for sample in samples:
            yield {k: sample.get(k) for k in keys}

    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as staged, tempfile.TemporaryDirectory(
        prefix=f"{out.name}.cache-", dir=out.parent
    ) as cache:
        # A fresh cache folder per run: no stale rows from an earlier conversion can come back.
        try:
            table = Dataset.from_generator(generate, features=features, cache_dir=cache, fingerprint=fingerprint)
        except DatasetGenerationError as e:
            # datasets wraps whatever the generator raised; a user error (bad file) must reach the CLI as itself,
            # so that it prints one line naming the file instead of a traceback.
            cause = _user_error(e)
            if cause is None:
                raise
            raise cause from None
        if len(table) == 0:
            raise DataFormatError("the conversion produced no samples", file=out)
        split_column = table["_split"]
        split_names = list(dict.fromkeys(split_column))
        parts = {}
        for name in split_names:
            indices = [i for i, s in enumerate(split_column) if s == name]
            parts[name] = table.select(indices).remove_columns("_split")
        DatasetDict(parts).save_to_disk(str(staged))
        meta = {
            "fingerprint": fingerprint,
            "layout": spec.layout,
            "num_persons": spec.num_persons,
            "channels": spec.channels,
            "class_names": list(spec.class_names),
            "fps": spec.fps,
            "splits": {name: len(part) for name, part in parts.items()},
            **(info or {}),
        }
        (staged / INFO_FILE).write_text(json.dumps(meta, indent=2))
        del table, parts
    return out


def _user_error(error: BaseException) -> UPSError | None:
    """The first :class:`UPSError` in the ``__cause__`` / ``__context__`` chain of ``error``, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UPSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _num_joints(layout: str) -> int:
    from ..skeleton import get_layout

    return get_layout(layout).num_joints


def load_prepared(path: str | Path, split: str | None = None):
    """Open a prepared dataset: a folder written by ``write_prepared`` / ``save_to_disk``, a Parquet file, or a
    folder of ``<split>.parquet`` files. Returns a ``DatasetDict`` (or one split) formatted as numpy."""
    from datasets import Dataset, DatasetDict, load_from_disk

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"prepared dataset {path} does not exist")
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        dataset = load_from_disk(str(path))
    else:
        files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
        if not files or any(f.suffix != ".parquet" for f in files):
            raise ConfigError(f"{path} is neither a prepared dataset folder nor Parquet file(s)")
        # One Dataset per file: load_dataset("parquet", data_files={...}) rejects the split name "all", which every
        # conversion without a split protocol writes.
        dataset = DatasetDict({f.stem: Dataset.from_parquet(str(f)) for f in files})
    if not isinstance(dataset, DatasetDict):
        dataset = DatasetDict({"all": dataset})
    dataset = dataset.with_format("numpy")
    if split is None:
        return dataset
    if split not in dataset:
        raise ConfigError(f"{path} has no split {split!r}; splits: {', '.join(dataset)}")
    return dataset[split]


def prepared_info(path: str | Path) -> dict:
    info_file = Path(path) / INFO_FILE
    return json.loads(info_file.read_text()) if info_file.exists() else {}


def export_parquet(path: str | Path, out: str | Path) -> list[Path]:
    """Write each split of a prepared dataset as ``<out>/<split>.parquet`` (features kept in the schema metadata)."""
    dataset = load_prepared(path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, part in dataset.items():
        target = out / f"{name}.parquet"
        tmp = target.with_suffix(".parquet.tmp")
        part.with_format(None).to_parquet(str(tmp))
        os.replace(tmp, target)
        written.append(target)
    info = Path(path) / INFO_FILE
    if info.exists():
        shutil.copyfile(info, out / INFO_FILE)
    return written


@dataclass(frozen=True)
class DatasetDescription:
    """What the light checks know about a prepared dataset without loading it."""

    path: str
    splits: tuple[str, ...]
    class_names: tuple[str, ...] | None
    layout: str | None
    channels: int | None
    fps: float | None
    columns: tuple[str, ...] = ()


def describe_dataset(path: str | Path) -> DatasetDescription | None:
    """From ``ups_info.json`` / ``dataset_dict.json`` / ``dataset_info.json``; None when the folder has none of
    them (Parquet; checked after loading)."""
    path = Path(path)
    info_file = path / "ups_info.json"
    dict_file = path / "dataset_dict.json"
    if not path.is_dir() or not (info_file.is_file() or dict_file.is_file()):
        return None
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    splits = tuple(json.loads(dict_file.read_text()).get("splits", [])) if dict_file.is_file() \
        else tuple(info.get("splits", {}))
    columns: tuple[str, ...] = ()
    class_names = info.get("class_names")
    channels = info.get("channels")
    for split in splits:
        features_file = path / split / "dataset_info.json"
        if features_file.is_file():
            features = json.loads(features_file.read_text()).get("features", {})
            columns = tuple(features)
            if class_names is None:
                class_names = (features.get("label") or {}).get("names")
            if channels is None and "keypoint" in features:
                channels = (features["keypoint"].get("shape") or [None])[-1]
            break
    return DatasetDescription(str(path), splits, tuple(class_names) if class_names is not None else None,
                              info.get("layout"), channels, info.get("fps"), columns)
