"""JHMDB puppet joints ``<class>/<clip>/joint_positions.mat``: 15 joints in 2D, one person (docs/formats.md §11).

Each MATLAB v5 file holds ``pos_img`` (2, 15, T) pixel coordinates (row 0 = x, row 1 = y) in 320 x 240 frames,
``pos_world`` (2, 15, T) the same normalised by frame size and puppet scale, ``scale`` (1, T) and ``viewpoint``
(compass string, e.g. ``S``, ``NE``). Occluded joints sit at neutral puppet positions: there is no visibility flag,
so no ``keypoint_score``.

Output: ``keypoint`` (T, 1, 15, 2) (layout ``jhmdb15``) in pixels with ``img_shape`` [240, 320] (default
``--coords img``) or in the normalised puppet frame (``--coords world``, no ``img_shape``); label = index of the class
folder name in ``tokenizers/labels/jhmdb.yaml``; ``view`` = viewpoint.

Splits: ``--split-dir DIR`` holding the official ``<class>_test_split<k>.txt`` lists (lines ``<clip>.avi 1|2``,
1 = train, 2 = test) and ``--split-index k`` (1..3) give splits ``train`` / ``test``; without them, one split ``all``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ..matfile import load_mat, mat_array, mat_string
from .base import Converter, DatasetSpec

NUM_JOINTS = 15
FRAME_WIDTH, FRAME_HEIGHT = 320, 240
SPLIT_CODES = {"1": "train", "2": "test"}


def pos_img_to_world(pos_img: np.ndarray, scale: np.ndarray, width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT):
    """JHMDB's normalisation of pixel joints (README_joint_positions.txt).

    pos_img (2, J, T) pixels (x; y), scale (T,) or (1, T) puppet scale per frame -> pos_world (2, J, T):
    x_w = (u / W - 0.5) * W / H / scale,  y_w = (v / H - 0.5) / scale.
    Both axes are thus in units of the frame height divided by the puppet scale, centred on the frame centre.
    """
    pos_img = np.asarray(pos_img, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    world = np.empty_like(pos_img)
    world[0] = (pos_img[0] / width - 0.5) * width / height / scale
    world[1] = (pos_img[1] / height - 0.5) / scale
    return world


def read_jhmdb_split(path: str | Path) -> dict[str, str]:
    """One ``<class>_test_split<k>.txt`` -> {clip name (without ``.avi``): "train" | "test"}."""
    path = Path(path)
    assignment = {}
    for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in SPLIT_CODES:
            raise DataFormatError(f"expected '<video>.avi 1|2', found {text.strip()!r}", file=path, line=number)
        clip = fields[0][:-4] if fields[0].endswith(".avi") else fields[0]
        if clip in assignment:
            raise DataFormatError(f"video {clip} is listed twice", file=path, line=number)
        assignment[clip] = SPLIT_CODES[fields[1]]
    return assignment


class JHMDBConverter(Converter):
    name = "jhmdb"
    version = "1"
    description = "JHMDB <class>/<clip>/joint_positions.mat (15 puppet joints, 2D)"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--coords", choices=["img", "world"], default="img",
            help="img = pos_img pixels (320x240 frames); world = pos_world (normalised by frame size and scale)",
        )
        parser.add_argument("--split-dir", help="folder of the official <class>_test_split<k>.txt lists")
        parser.add_argument("--split-index", type=int, choices=[1, 2, 3], help="official split k (default 1)")

    def __init__(self, src, options):
        super().__init__(src, options)
        self.split_dir = Path(options.split_dir) if getattr(options, "split_dir", None) else None
        split_index = getattr(options, "split_index", None)
        if self.split_dir is None and split_index is not None:
            raise ConfigError("--split-index needs --split-dir (the folder of <class>_test_split<k>.txt files)")
        if self.split_dir is not None and not self.split_dir.is_dir():
            raise ConfigError(f"--split-dir {self.split_dir} is not a folder")
        self.split_index = split_index or 1
        self._split_lists: dict[str, dict[str, str]] = {}

    @cached_property
    def class_names(self) -> list[str]:
        return load_label_set("jhmdb")  # read once, not per file

    def spec(self):
        return DatasetSpec(
            layout="jhmdb15",
            num_persons=1,
            channels=2,
            class_names=self.class_names,
            with_img_shape=self.options.coords == "img",
            fps=30.0,
        )

    def items(self):
        if self.src.is_file():
            return [self.src]
        return sorted(self.src.rglob("joint_positions.mat"))

    def split_file(self, class_name: str) -> Path:
        return self.split_dir / f"{class_name}_test_split{self.split_index}.txt"

    def input_files(self):
        files = list(self.items())
        if self.split_dir is not None:
            classes = sorted({p.parent.parent.name for p in files})
            files += [self.split_file(c) for c in classes if self.split_file(c).is_file()]
        return files

    def split_of(self, sample):
        if self.split_dir is None:
            return "all"
        return self._split_of_clip(sample["_class"], sample["sample_id"])

    def _split_of_clip(self, class_name: str, clip: str) -> str:
        if class_name not in self._split_lists:
            path = self.split_file(class_name)
            if not path.is_file():
                raise DataFormatError(f"no split list for class {class_name!r} (expected {path.name})", file=path)
            self._split_lists[class_name] = read_jhmdb_split(path)
        assignment = self._split_lists[class_name]
        if clip not in assignment:
            raise DataFormatError(f"video {clip}.avi is not listed", file=self.split_file(class_name))
        return assignment[clip]

    def read_item(self, path: Path):
        clip, class_name = path.parent.name, path.parent.parent.name
        class_names = self.class_names
        if class_name not in class_names:
            raise DataFormatError(
                f"class folder {class_name!r} is not a JHMDB class (expected <class>/<clip>/joint_positions.mat)",
                file=path,
            )
        if self.split_dir is not None:
            self._split_of_clip(class_name, clip)  # fail here, inside the --skip-bad guard, not when routing
        data = load_mat(path, ("pos_img",))
        for key in ("pos_img", "pos_world"):  # MATLAB drops a trailing singleton: a 1-frame clip is stored (2, 15)
            if key in data and np.shape(data[key]) == (2, NUM_JOINTS):
                data[key] = np.asarray(data[key])[..., None]
        pos_img = mat_array(data, "pos_img", (2, NUM_JOINTS, None), file=path)
        num_frames = pos_img.shape[2]
        if self.options.coords == "img":
            coords = pos_img
        elif "pos_world" in data:
            coords = mat_array(data, "pos_world", (2, NUM_JOINTS, num_frames), file=path)
        else:  # a file without pos_world: rebuild it exactly as the dataset defines it
            if "scale" not in data:
                raise DataFormatError("--coords world needs 'pos_world' or 'scale'; the file has neither", file=path)
            scale = mat_array(data, "scale", (1, num_frames), file=path)[0]
            if not (np.isfinite(scale).all() and (scale != 0).all()):
                raise DataFormatError("variable 'scale' has zero or non-finite entries", file=path)
            coords = pos_img_to_world(pos_img, scale)
        sample = dict(
            keypoint=coords.transpose(2, 1, 0)[:, None].astype(np.float32),  # (2, V, T) -> (T, 1, V, 2)
            label=class_names.index(class_name),
            sample_id=clip,
            view=mat_string(data, "viewpoint", file=path) if "viewpoint" in data else "",
            source_file=str(path),
            _class=class_name,
        )
        if self.options.coords == "img":
            sample["img_shape"] = [FRAME_HEIGHT, FRAME_WIDTH]
        yield sample
