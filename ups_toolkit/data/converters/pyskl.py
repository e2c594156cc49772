"""pyskl / mmaction2 skeleton annotation pickles (docs/formats.md §2).

One pickle holds ``{'split': {split_name: [frame_dir, ...]}, 'annotations': [dict, ...]}`` (older mmaction2 files are
a bare list of annotations, without splits). Per annotation:

* ``keypoint`` (M, T, V, C) -> stored time-first (T, M, V, C) float32 (the NTU 3D files are float16);
* ``keypoint_score`` (M, T, V) when present (HRNet 2D files) -> (T, M, V);
* ``img_shape`` (h, w) -> ``img_shape`` [H, W]; ``label`` (0-based int); ``frame_dir`` (or ``filename``) ->
  ``sample_id``; an NTU name (``SsssCcccPpppRrrrAaaa``) also fills subject, view, setup and replication.

The file is read only through the restricted unpickler (:func:`~ups_toolkit.data.safe_pickle.safe_load_pickle`): a
pickle naming any global besides numpy arrays / dtypes is refused before anything runs.

Options:

* ``--layout``: the joint layout. Inferred when unambiguous: V = 25 with C = 3 -> ``ntu25`` (pyskl NTU 3D),
  V = 17 with C = 2 -> ``coco17`` (pyskl HRNet 2D); otherwise it must be given (V = 17 with C = 3 may be H36M-17).
* ``--label-set``: class names from ``tokenizers/labels/<name>.yaml``; without it classes are ``class_<i>`` for
  i = 0 .. max label.
* ``--num-persons N``: keep the first N persons of each annotation (pyskl stores them best first) and zero-pad the
  rest; default = the largest M in the file.

Splits come from the pickle's own split dict. ``--split P`` picks a protocol by its prefix: the split lists named
``P_train`` / ``P_val`` / ``P_test`` (NTU ``xsub_train``, ``xsub_val``; also ``P-train``) or ``trainP`` / ``valP`` /
``testP`` (UCF101 / HMDB51 ``train1``, ``test1`` with ``--split 1``) are written as splits ``train``, ``test`` and,
when a protocol has both a val and a test list, ``val``; a val list alone becomes ``test``. Annotations listed in none
of the chosen lists are left out. Without ``--split``, a pickle whose split names are only ``train`` / ``val`` /
``test`` (FineGYM) is split by the same renaming; any other pickle becomes one split ``all`` with every annotation.

Kinetics-400 pyskl files carry no keypoints (``raw_file`` / ``frame_inds`` / ``box_score`` point into separate
"kpfiles" that need pyskl's ``DecompressPose``): they are refused with an error saying so.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...resources import load_label_set
from ...skeleton import get_layout
from ..safe_pickle import safe_load_pickle
from .base import Converter, DatasetSpec, pad_persons
from .ntu_skeleton import NAME_PATTERN

# (V, C) -> layout when the data alone decides it.
INFERRED_LAYOUTS = {(25, 3): "ntu25", (17, 2): "coco17"}
SPLIT_PARTS = ("train", "val", "test")
# Keys of the Kinetics-400 annotations whose keypoints live in separate kpfiles.
KPFILE_KEYS = ("raw_file", "frame_inds", "box_score")


def split_part(split_name: str, prefix: str) -> str | None:
    """``train`` / ``val`` / ``test`` if ``split_name`` belongs to protocol ``prefix`` (see the module docstring)."""
    for part in SPLIT_PARTS:
        if split_name in (f"{prefix}_{part}", f"{prefix}-{part}", f"{part}{prefix}", f"{part}_{prefix}"):
            return part
    return None


def protocol_prefixes(split_names) -> list[str]:
    """Protocol prefixes a user can pass to ``--split`` for these split names (for error messages)."""
    found = []
    for name in split_names:
        match = re.fullmatch(r"(.+)[_-](train|val|test)|(train|val|test)_?(.+)", name)
        if match:
            prefix = match.group(1) or match.group(4)
            if prefix not in found:
                found.append(prefix)
    return found


def output_split_names(parts: set[str]) -> dict[str, str]:
    """Part -> written split name: a val list is the test split unless the protocol also has a test list."""
    return {part: ("test" if part == "val" and "test" not in parts else part) for part in parts}


class PysklConverter(Converter):
    name = "pyskl"
    version = "1"
    description = "pyskl / mmaction2 skeleton annotation pickle ({'split': ..., 'annotations': [...]})"
    # The protocols are the split names stored in each file, so there is no static table: see split_of.
    protocols = {}

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument(
            "--split", metavar="PREFIX",
            help="protocol from the pickle's split dict: xsub -> xsub_train/xsub_val, 1 -> train1/test1 "
            "(default: plain train/val/test names if that is all the file has, else one split 'all')",
        )
        parser.add_argument("--layout", help="joint layout (inferred for V=25,C=3 -> ntu25 and V=17,C=2 -> coco17)")
        parser.add_argument("--label-set", help="label set name in tokenizers/labels (default: class_<i> names)")
        parser.add_argument("--num-persons", type=int, help="persons kept per sample (default: the most in the file)")
        parser.add_argument("--fps", type=float, default=30.0, help="frame rate recorded in the dataset")

    def __init__(self, src, options):
        super().__init__(src, options)
        if not self.src.is_file():
            raise ConfigError(f"format 'pyskl' reads one annotation pickle file; {self.src} is a folder")
        if getattr(options, "num_persons", None) is not None and options.num_persons < 1:
            raise ConfigError(f"--num-persons must be at least 1, got {options.num_persons}")

    # ---- reading the pickle -------------------------------------------------------------------------------------
    @cached_property
    def _content(self) -> tuple[list[dict], dict[str, list[str]]]:
        """(annotations, split dict) of the pickle, checked for the overall structure."""
        data = safe_load_pickle(self.src)
        if isinstance(data, list):
            annotations, splits = data, {}
        elif isinstance(data, dict) and "annotations" in data:
            annotations, splits = data["annotations"], data.get("split") or {}
        else:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataFormatError(
                f"expected a dict with keys 'split' and 'annotations' (or a list of annotations), found {found}",
                file=self.src,
            )
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            raise DataFormatError("'annotations' must be a list of dicts", file=self.src)
        if not isinstance(splits, dict):
            raise DataFormatError(f"'split' must be a dict of id lists, found {type(splits).__name__}", file=self.src)
        if annotations and not any("keypoint" in a for a in annotations):
            if any(k in annotations[0] for k in KPFILE_KEYS):
                raise DataFormatError(
                    "the annotations have no 'keypoint' arrays: this is the Kinetics-400 pyskl layout, whose "
                    "keypoints live in separate kpfiles ('raw_file', 'frame_inds'); kpfiles are not supported",
                    file=self.src,
                )
            raise DataFormatError(
                f"no annotation has a 'keypoint' array (keys: {sorted(annotations[0])})", file=self.src
            )
        return annotations, {str(k): [str(i) for i in v] for k, v in splits.items()}

    @staticmethod
    def _sample_id(annotation: dict, index: int) -> str:
        return str(annotation.get("frame_dir") or annotation.get("filename") or f"annotation_{index}")

    @cached_property
    def _spec(self) -> DatasetSpec:
        annotations, _ = self._content
        shapes, labels = [], []
        for i, ann in enumerate(annotations):
            if "keypoint" in ann:
                shape = np.shape(ann["keypoint"])
                if len(shape) != 4:
                    raise DataFormatError(f"keypoint must be (M, T, V, C), got shape {shape}",
                                          file=self.src, sample=self._sample_id(ann, i))
                shapes.append(shape)
            labels.append(int(ann.get("label", -1)))
        persons, _, joints, channels = shapes[0]
        layout = self.options.layout or INFERRED_LAYOUTS.get((joints, channels))
        if layout is None:
            raise ConfigError(
                f"{self.src}: cannot tell the joint layout of {joints} joints x {channels} channels; "
                "pass --layout (e.g. coco17, h36m17, openpose18)"
            )
        if self.options.label_set:
            class_names = load_label_set(self.options.label_set)
        else:
            class_names = [f"class_{i}" for i in range(max(labels, default=-1) + 1)]
        self._split_assignment  # a --split that matches nothing fails here, before any output is written
        return DatasetSpec(
            layout=get_layout(layout).name,
            num_persons=self.options.num_persons or max(s[0] for s in shapes),
            channels=channels,
            class_names=class_names,
            with_score=any("keypoint_score" in a for a in annotations),
            with_img_shape=any("img_shape" in a for a in annotations),
            fps=self.options.fps,
        )

    def spec(self) -> DatasetSpec:
        spec = self._spec
        return DatasetSpec(**vars(spec))  # a copy: output_spec() edits the layout in place

    def items(self):
        return list(range(len(self._content[0])))

    def input_files(self):
        return [self.src]

    def read_item(self, index: int):
        annotations, _ = self._content
        ann = annotations[index]
        spec = self._spec
        sid = self._sample_id(ann, index)

        def fail(message):
            raise DataFormatError(message, file=self.src, sample=sid)

        if "keypoint" not in ann:
            kpfile = any(k in ann for k in KPFILE_KEYS)
            fail("no 'keypoint' array" + (" (its keypoints live in a separate kpfile: unsupported)" if kpfile else ""))
        keypoint = np.asarray(ann["keypoint"])
        if keypoint.ndim != 4 or keypoint.shape[3] != spec.channels:
            fail(f"keypoint must be (M, T, V, {spec.channels}) like the rest of the file, got shape {keypoint.shape}")
        persons = min(keypoint.shape[0], spec.num_persons)
        # (M, T, V, C) -> (T, M, V, C); the first persons are the best ones in pyskl's files.
        keypoint = keypoint[:persons].transpose(1, 0, 2, 3).astype(np.float32)
        sample = dict(
            keypoint=pad_persons(keypoint, spec.num_persons, file=self.src, sample=sid),
            label=int(ann.get("label", -1)),
            sample_id=sid,
            source_file=str(self.src),
        )
        if spec.with_score:
            if "keypoint_score" not in ann:
                fail("no 'keypoint_score' although other annotations of the file have one")
            score = np.asarray(ann["keypoint_score"])
            if score.shape != np.shape(ann["keypoint"])[:3]:
                fail(f"keypoint_score must be (M, T, V) = {np.shape(ann['keypoint'])[:3]}, got {score.shape}")
            score = score[:persons].transpose(1, 0, 2).astype(np.float32)
            sample["keypoint_score"] = pad_persons(score, spec.num_persons, file=self.src, sample=sid)
        if "img_shape" in ann:
            shape = [int(x) for x in ann["img_shape"]]
            if len(shape) != 2:
                fail(f"img_shape must be (h, w), got {ann['img_shape']!r}")
            sample["img_shape"] = shape
        ntu_name = NAME_PATTERN.fullmatch(sid)
        if ntu_name:
            setup, camera, performer, replication, _ = (int(g) for g in ntu_name.groups())
            sample.update(subject=f"P{performer:03d}", view=f"C{camera:03d}", setup=setup, replication=replication)
        yield sample

    # ---- splits from the file -----------------------------------------------------------------------------------
    @cached_property
    def _split_assignment(self) -> dict[str, str] | None:
        """sample_id -> written split name, or None for one split 'all'."""
        _, splits = self._content
        prefix = self.options.split
        if prefix:
            chosen = {split_part(name, prefix): name for name in splits if split_part(name, prefix)}
            if not chosen:
                hint = ", ".join(protocol_prefixes(splits)) or "none"
                raise ConfigError(
                    f"{self.src}: no split list matches --split {prefix!r}; the file's splits are "
                    f"{', '.join(splits) or 'none'} (protocol prefixes: {hint})"
                )
        elif splits and set(splits) <= set(SPLIT_PARTS):
            chosen = {name: name for name in splits}
        else:
            return None
        renamed = output_split_names(set(chosen))
        assignment = {}
        for part, list_name in chosen.items():
            for sample_id in splits[list_name]:
                if assignment.setdefault(sample_id, renamed[part]) != renamed[part]:
                    raise DataFormatError(
                        f"{sample_id!r} is listed in more than one split of the chosen protocol", file=self.src
                    )
        return assignment

    def split_of(self, sample: dict) -> str | None:
        assignment = self._split_assignment
        if assignment is None:
            return "all"
        return assignment.get(sample["sample_id"])
