"""What every converter shares: reading items one by one, validating each sample, skipping or failing on bad ones,
routing samples to the splits of a protocol, and an optional layout mapping at conversion time.

A converter subclass only says how to list the input items and how to read one item into samples (plain dicts in
the schema of :mod:`ups_toolkit.data.schema`). Adding a format = one module with one subclass + one registry line.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...skeleton import get_layout, map_layout
from ..schema import validate_sample


@dataclass
class DatasetSpec:
    """Static facts of one conversion: they fix the Arrow features before the first sample is read."""

    layout: str
    num_persons: int
    channels: int
    class_names: list[str]
    with_score: bool = False
    with_segments: bool = False
    with_frame_labels: bool = False
    with_img_shape: bool = False
    fps: float = 30.0
    extra_features: dict = field(default_factory=dict)


class Converter:
    #: registry key, e.g. "ntu-skeleton"
    name: str = ""
    #: bump when the output for the same input changes (it is part of the dataset fingerprint)
    version: str = "1"
    description: str = ""
    #: protocol name -> function(sample) -> split name (or None to leave the sample out)
    protocols: dict[str, Callable[[dict], str | None]] = {}

    def __init__(self, src: str | Path, options: argparse.Namespace):
        self.src = Path(src)
        self.options = options
        if not self.src.exists():
            raise ConfigError(f"input {self.src} does not exist")
        self.bad_items: list[str] = []
        self.warnings: list[str] = []  # notable but valid input (e.g. very short sequences), kept in ups_info.json

    # ---- to implement -------------------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Format-specific command-line options."""

    def spec(self) -> DatasetSpec:
        raise NotImplementedError

    def items(self) -> list:
        """The units read one at a time (usually files), in a deterministic order."""
        raise NotImplementedError

    def read_item(self, item) -> Iterable[dict]:
        """Samples of one item. Raise DataFormatError (naming file and line) for bad input."""
        raise NotImplementedError

    def input_files(self) -> list[Path]:
        """Every file whose bytes determine the output (for the fingerprint)."""
        return [p for p in self.items() if isinstance(p, Path)]

    # ---- shared machinery ---------------------------------------------------------------------------------------
    def output_spec(self) -> DatasetSpec:
        spec = self.spec()
        to_layout = getattr(self.options, "to_layout", None)
        if to_layout:
            spec.layout = get_layout(to_layout).name
        return spec

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(f"{self.name}:{self.version}".encode())
        digest.update(repr(sorted(vars(self.options).items(), key=lambda kv: kv[0])).encode())
        for path in sorted(self.input_files()):
            digest.update(str(path.name).encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    def split_of(self, sample: dict) -> str | None:
        protocol = getattr(self.options, "split", None)
        if not protocol:
            return "all"
        if protocol not in self.protocols:
            raise ConfigError(
                f"format {self.name!r} has no split protocol {protocol!r}; known: {', '.join(self.protocols) or 'none'}"
            )
        return self.protocols[protocol](sample)

    def samples(self, progress: bool = True) -> Iterator[dict]:
        """Validated samples, each with a ``_split`` key. Bad items fail the run unless ``--skip-bad`` is given."""
        from tqdm.auto import tqdm

        spec = self.spec()
        to_layout = getattr(self.options, "to_layout", None)
        skip_bad = getattr(self.options, "skip_bad", False)
        items = self.items()
        if not items:
            raise DataFormatError(f"no input found for format {self.name!r}", file=self.src)
        for item in tqdm(items, desc=f"convert {self.name}", unit="item", disable=not progress):
            try:
                produced = []
                for sample in self.read_item(item):
                    sample.setdefault("layout", spec.layout)
                    sample.setdefault("fps", spec.fps)
                    sample = validate_sample(sample, num_classes=len(spec.class_names))
                    if to_layout:
                        sample = self._map_layout(sample, to_layout)
                    produced.append(sample)
            except DataFormatError as e:
                if not skip_bad:
                    raise
                self.bad_items.append(str(e))
                continue
            for sample in produced:
                split = self.split_of(sample)
                if split is not None:
                    yield {**sample, "_split": split}

    def _map_layout(self, sample: dict, to_layout: str) -> dict:
        keypoint, score = map_layout(
            sample["keypoint"], sample["layout"], to_layout, sample.get("keypoint_score")
        )
        out = {**sample, "keypoint": keypoint, "layout": to_layout}
        if score is not None:
            out["keypoint_score"] = score
        return out


def pad_persons(keypoint: np.ndarray, num_persons: int, *, file=None, sample=None) -> np.ndarray:
    """(T, m, V, C) -> (T, num_persons, V, C): zero-fill absent persons; more than ``num_persons`` is an error."""
    t, m = keypoint.shape[:2]
    if m > num_persons:
        raise DataFormatError(f"{m} persons but the dataset keeps {num_persons}", file=file, sample=sample)
    if m == num_persons:
        return keypoint
    out = np.zeros((t, num_persons) + keypoint.shape[2:], keypoint.dtype)
    out[:, :m] = keypoint
    return out
