"""Penn Action ``labels/NNNN.mat`` annotations: 13 joints in 2D pixels, one person (docs/formats.md §10).

Each MATLAB v5 file holds one clip: ``action`` (class name), ``pose`` (camera view: front/back/left/right), ``x``,
``y`` (T, 13) pixel coordinates, ``visibility`` (T, 13) 0/1, ``bbox`` (T, 4), ``dimensions`` [H W T], ``nframes``
and ``train`` (1 = train, -1 = test, the official split).

Output: ``keypoint`` (T, 1, 13, 2) pixels (layout ``penn13``), ``keypoint_score`` = visibility (invisible joints still
carry coordinates, some outside the frame: they are kept, the score says not to trust them), ``img_shape`` [H, W],
label = index of ``action`` in ``tokenizers/labels/penn_action.yaml`` (alphabetical order, ours), ``view`` = pose.
``bbox`` is not used: it has T - 1 rows in 1154.mat and 1865.mat, so it is neither read nor checked.
Penn Action gives no frame rate; 30 fps is assumed (most of its YouTube sources).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ...resources import load_label_set
from ..matfile import load_mat, mat_array, mat_number, mat_string
from .base import Converter, DatasetSpec

NUM_JOINTS = 13
REQUIRED = ("action", "pose", "x", "y", "visibility", "dimensions", "train")
OFFICIAL_SPLIT = {1: "train", -1: "test"}


class PennActionConverter(Converter):
    name = "penn-action"
    version = "1"
    description = "Penn Action labels/NNNN.mat (13 joints, 2D pixels, visibility)"
    protocols = {"official": lambda s: s["_official_split"]}

    @cached_property
    def class_names(self) -> list[str]:
        return load_label_set("penn_action")  # read once, not per file

    def spec(self):
        return DatasetSpec(
            layout="penn13",
            num_persons=1,
            channels=2,
            class_names=self.class_names,
            with_score=True,
            with_img_shape=True,
            fps=30.0,
        )

    def items(self):
        if self.src.is_file():
            return [self.src]
        folder = self.src / "labels" if (self.src / "labels").is_dir() else self.src
        return sorted(folder.glob("*.mat"))

    def read_item(self, path: Path):
        data = load_mat(path, REQUIRED)
        action = mat_string(data, "action", file=path)
        class_names = self.class_names
        if action not in class_names:
            raise DataFormatError(f"action {action!r} is not a Penn Action class ({', '.join(class_names)})", file=path)
        x = mat_array(data, "x", (None, NUM_JOINTS), file=path)
        num_frames = len(x)
        y = mat_array(data, "y", (num_frames, NUM_JOINTS), file=path)
        visibility = mat_array(data, "visibility", (num_frames, NUM_JOINTS), file=path)
        if not np.isin(visibility, (0, 1)).all():
            raise DataFormatError("variable 'visibility' must hold only 0 and 1", file=path)
        dimensions = np.asarray(data["dimensions"]).reshape(-1)
        if dimensions.size != 3 or dimensions.dtype.kind not in "iuf":
            raise DataFormatError(f"variable 'dimensions' must be 3 numbers [H W T], got {dimensions!r}", file=path)
        height, width, dim_frames = (int(v) for v in dimensions)
        if dim_frames != num_frames:
            raise DataFormatError(f"'dimensions' says {dim_frames} frames but 'x' has {num_frames} rows", file=path)
        nframes = int(mat_number(data, "nframes", file=path)) if "nframes" in data else num_frames
        if nframes != num_frames:
            raise DataFormatError(f"'nframes' is {nframes} but 'x' has {num_frames} rows", file=path)
        flag = int(mat_number(data, "train", file=path))
        if flag not in OFFICIAL_SPLIT:
            raise DataFormatError(f"variable 'train' is {flag}, expected 1 (train) or -1 (test)", file=path)

        yield dict(
            keypoint=np.stack([x, y], axis=-1)[:, None].astype(np.float32),  # (T, 1, 13, 2)
            keypoint_score=visibility[:, None].astype(np.float32),  # (T, 1, 13)
            img_shape=[height, width],
            label=class_names.index(action),
            sample_id=path.stem,
            view=mat_string(data, "pose", file=path),
            source_file=str(path),
            _official_split=OFFICIAL_SPLIT[flag],
        )
