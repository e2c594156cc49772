"""VideoPose3D ``data_3d_<name>.npz`` + ``data_2d_<name>_<keypoints>.npz`` -> paired 2D/3D lifting samples
(docs/formats.md §7: Human3.6M, HumanEva-I, custom sets).

Input: the 3D file, or a folder holding exactly one ``data_3d_*.npz``. The 2D file is ``--input-2d PATH`` or, by
default, ``data_2d_<name>_<keypoints>.npz`` beside the 3D file (``--keypoints``, default ``gt``). Both hold pickled
object arrays and are read through the restricted unpickler (``safe_load_npz``), never ``allow_pickle``.

Output: one sample per (subject, action chunk, camera):

* ``keypoint`` (T, 1, V, 2): the camera's 2D keypoints in pixels, trimmed to the 3D length when longer
  (detections of some Human3.6M sequences run past the mocap); a 2D sequence shorter than its 3D one is an error;
* ``keypoint_3d`` (T, 1, V, 3) metres (extra feature): the 3D positions in the world frame of the file; with
  ``--cameras`` they are moved into each camera's frame (VideoPose3D's convention for its targets). Root-relative
  targets are made later by the pose-estimation task, not here;
* metadata ``subject`` (``S1`` from ``Train/S1``), ``view`` = camera index (``"0"``, ``"1"`` ...), ``sample_id``
  = ``<subject key>/<action chunk>/cam<i>`` (``Train/S1/Walking 1 chunk0/cam0``), ``label`` = the action (first word
  of the chunk key), ``img_shape`` [H, W] when the camera file gives ``res_w``/``res_h``.

Layout: ``--layout`` or the 2D metadata's ``layout_name`` (``humaneva15`` -> ``humaneva15``, ``h36m`` ->
``h36m17``, ``coco`` -> ``coco17``); Human3.6M 2D files carry no ``layout_name`` and are ``h36m17`` (17 joints).
Human3.6M 3D arrays have the 32 mocap joints: we keep the 17 of ``h36m32->h36m17`` (docs/formats.md §15, the
``remove_joints`` of VideoPose3D's ``h36m_dataset.py``). VideoPose3D then "rewires" the shoulders to the thorax:
that changes only its parent table, not any position, and ``h36m17``'s parents already have it.

No 2D file: ``--project`` makes the 2D by projecting the world 3D through the cameras of ``--cameras`` (pinhole +
Human3.6M distortion, ``ups_toolkit/skeleton/camera.py``, whose docstring gives the YAML/JSON camera format: one
list of cameras per subject, keyed ``Train/S1``, ``S1`` or ``default``).

Protocols: ``humaneva`` (train ``Train/*``, test ``Validate/*``; docs/datasets.md §3) and ``h36m`` (train S1, S5,
S6, S7, S8, test S9, S11; docs/design.md §12.3). ``--actions Walking,Jog,Box`` keeps only those actions (the HumanEva
evaluation set). fps: ``--fps`` or 60 for HumanEva, 50 for Human3.6M.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from ...errors import ConfigError, DataFormatError
from ...resources import find_resource, load_label_set
from ...skeleton import get_layout, map_layout, mapping_matrix
from ...skeleton.camera import cameras_for, load_cameras
from ..safe_pickle import safe_load_npz
from .base import Converter, DatasetSpec

# metadata layout_name -> registered layout (VideoPose3D data/prepare_data_*.py, common/custom_dataset.py)
LAYOUT_NAMES = {"humaneva15": "humaneva15", "h36m": "h36m17", "coco": "coco17"}
# layout -> (label set, fps): HumanEva-I is 60 Hz (docs/datasets.md §3), Human3.6M mocap 50 Hz (docs/formats.md §7)
LAYOUT_DEFAULTS = {"humaneva15": ("humaneva", 60.0), "h36m17": ("h36m_actions", 50.0)}
# Human3.6M 3D arrays hold the 32 mocap joints; the registered mapping h36m32->h36m17 selects the 17 of the 2D
H36M_MOCAP_LAYOUT = "h36m32"
H36M_TRAIN_SUBJECTS = {"S1", "S5", "S6", "S7", "S8"}
H36M_TEST_SUBJECTS = {"S9", "S11"}


def _unwrap(value, what: str, file):
    """npz object entries come back as 0-d object arrays around the pickled dict."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    if not isinstance(value, dict):
        raise DataFormatError(f"{what} is {type(value).__name__}, expected a pickled dict", file=file)
    return value


def _split_humaneva(sample: dict) -> str:
    prefix = sample["sample_id"].split("/", 1)[0]
    if prefix == "Train":
        return "train"
    if prefix == "Validate":
        return "test"
    raise DataFormatError("protocol 'humaneva' needs subject keys 'Train/<S>' or 'Validate/<S>'",
                          sample=sample["sample_id"], file=sample["source_file"])


def _split_h36m(sample: dict) -> str:
    if sample["subject"] in H36M_TRAIN_SUBJECTS:
        return "train"
    if sample["subject"] in H36M_TEST_SUBJECTS:
        return "test"
    raise DataFormatError(f"protocol 'h36m' knows subjects S1, S5-S9, S11, not {sample['subject']!r}",
                          sample=sample["sample_id"], file=sample["source_file"])


class VideoPose3DConverter(Converter):
    name = "videopose3d"
    version = "1"
    description = "VideoPose3D data_3d/data_2d .npz (Human3.6M, HumanEva-I) -> paired 2D/3D lifting samples"
    protocols = {"humaneva": _split_humaneva, "h36m": _split_h36m}

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--keypoints", default="gt",
                            help="2D source: reads data_2d_<name>_<KEYPOINTS>.npz beside the 3D file (default gt)")
        parser.add_argument("--input-2d", help="explicit 2D .npz file (instead of --keypoints)")
        parser.add_argument("--cameras", help="camera file (YAML/JSON, see ups_toolkit/skeleton/camera.py): "
                                              "3D targets in each camera's frame, img_shape from res_w/res_h")
        parser.add_argument("--project", action="store_true",
                            help="make the 2D by projecting the 3D through --cameras (no 2D file is read)")
        parser.add_argument("--layout", help="layout of the 2D keypoints (default: from the 2D metadata)")
        parser.add_argument("--actions", help="comma-separated actions to keep, e.g. Walking,Jog,Box")
        parser.add_argument("--fps", type=float, help="frame rate (default: HumanEva 60, Human3.6M 50)")

    def __init__(self, src, options):
        super().__init__(src, options)
        if options.project and not options.cameras:
            raise ConfigError("--project needs --cameras (the cameras to project through)")
        if options.project and options.input_2d:
            raise ConfigError("--project and --input-2d exclude each other")
        self.path_3d = self._find_3d()
        self.path_2d = None if options.project else self._find_2d()
        self._positions_3d = self._positions_2d = self._metadata = self._cameras = None
        self._labels: tuple[str | None, list[str], dict] | None = None

    # ---- inputs -----------------------------------------------------------------------------------------------
    def _find_3d(self) -> Path:
        if self.src.is_file():
            return self.src
        found = sorted(self.src.glob("data_3d_*.npz"))
        if len(found) != 1:
            raise ConfigError(f"{self.src}: expected exactly one data_3d_*.npz, found "
                              f"{', '.join(p.name for p in found) or 'none'} (pass the 3D file itself)")
        return found[0]

    def _find_2d(self) -> Path:
        if self.options.input_2d:
            path = Path(self.options.input_2d)
        else:
            dataset = self.path_3d.stem.removeprefix("data_3d_")
            path = self.path_3d.with_name(f"data_2d_{dataset}_{self.options.keypoints}.npz")
        if not path.is_file():
            raise ConfigError(f"2D file {path} does not exist (choose it with --input-2d or --keypoints, "
                              "or make 2D from the 3D with --project --cameras FILE)")
        return path

    def _load(self) -> None:
        if self._positions_3d is not None:
            return
        data_3d = safe_load_npz(self.path_3d)
        if "positions_3d" not in data_3d:
            raise DataFormatError(f"no 'positions_3d' entry (found: {', '.join(data_3d)})", file=self.path_3d)
        self._positions_3d = _unwrap(data_3d["positions_3d"], "positions_3d", self.path_3d)
        if self.path_2d is not None:
            data_2d = safe_load_npz(self.path_2d)
            if "positions_2d" not in data_2d:
                raise DataFormatError(f"no 'positions_2d' entry (found: {', '.join(data_2d)})", file=self.path_2d)
            self._positions_2d = _unwrap(data_2d["positions_2d"], "positions_2d", self.path_2d)
            self._metadata = _unwrap(data_2d["metadata"], "metadata", self.path_2d) if "metadata" in data_2d else {}
        else:
            self._positions_2d, self._metadata = {}, {}
        if self.options.cameras:
            self._cameras = load_cameras(self.options.cameras)

    def input_files(self):
        files = [self.path_3d] + ([self.path_2d] if self.path_2d else [])
        return files + ([Path(self.options.cameras)] if self.options.cameras else [])

    # ---- layout, labels, spec ---------------------------------------------------------------------------------
    def layout_name(self) -> str:
        if self.options.layout:
            return get_layout(self.options.layout).name
        self._load()
        name = self._metadata.get("layout_name")
        if name is not None:
            if name not in LAYOUT_NAMES:
                raise ConfigError(f"{self.path_2d}: metadata layout_name {name!r} is not one we know "
                                  f"({', '.join(LAYOUT_NAMES)}); pass --layout")
            return LAYOUT_NAMES[name]
        num_joints = self._metadata.get("num_joints")
        if num_joints == 17 or (self.path_2d is None and self._joint_count_3d() in (17, 32)):
            return "h36m17"  # VideoPose3D's Human3.6M files have no layout_name
        if self.path_2d is None and self._joint_count_3d() == 15:
            return "humaneva15"
        raise ConfigError(f"cannot tell the joint layout of {self.path_2d or self.path_3d}; pass --layout")

    def _joint_count_3d(self) -> int:
        for actions in self._positions_3d.values():
            for array in actions.values():
                return int(np.shape(array)[1])
        raise DataFormatError("positions_3d is empty", file=self.path_3d)

    def _label_set(self) -> tuple[str | None, list[str], dict]:
        """(label set name, class names, aliases) of the layout's dataset; (None, [], {}) = unlabeled samples."""
        if self._labels is None:
            entry = LAYOUT_DEFAULTS.get(self.layout_name())
            if entry is None:
                self._labels = (None, [], {})
            else:
                path = find_resource("tokenizers", f"labels/{entry[0]}.yaml")
                aliases = yaml.safe_load(path.read_text()).get("aliases") or {}
                self._labels = (entry[0], load_label_set(entry[0]), aliases)
        return self._labels

    def spec(self):
        from datasets import Array4D

        layout = self.layout_name()
        fps = self.options.fps or LAYOUT_DEFAULTS.get(layout, (None, 30.0))[1]
        return DatasetSpec(
            layout=layout,
            num_persons=1,
            channels=2,
            class_names=self._label_set()[1],
            with_img_shape=bool(self._cameras),
            fps=fps,
            extra_features={"keypoint_3d": Array4D(shape=(None, 1, get_layout(layout).num_joints, 3),
                                                   dtype="float32")},
        )

    def _action_filter(self) -> set[str] | None:
        if not self.options.actions:
            return None
        return {a.strip().lower() for a in self.options.actions.split(",") if a.strip()}

    def items(self):
        self._load()
        keep = self._action_filter()
        return [(subject, action) for subject, actions in self._positions_3d.items() for action in actions
                if keep is None or action.split()[0].lower() in keep]

    # ---- samples ----------------------------------------------------------------------------------------------
    def _label(self, action_key: str, sample_id: str) -> int:
        set_name, classes, aliases = self._label_set()
        if set_name is None:
            return -1
        word = action_key.split()[0]
        for candidate in (word, word.lower(), aliases.get(word.lower())):
            if candidate in classes:
                return classes.index(candidate)
        raise DataFormatError(f"action {word!r} is not in label set {set_name!r}: {', '.join(classes)}",
                              file=self.path_3d, sample=sample_id)

    def _select_3d(self, positions: np.ndarray, layout: str, sample_id: str) -> np.ndarray:
        """(T, J, 3) of the file -> (T, V, 3) in ``layout``: identity, or the Human3.6M 32 -> 17 selection."""
        v = get_layout(layout).num_joints
        if positions.shape[1] == v:
            return positions
        mocap = get_layout(H36M_MOCAP_LAYOUT)
        if layout == "h36m17" and positions.shape[1] == mocap.num_joints:
            keep = np.argmax(mapping_matrix(H36M_MOCAP_LAYOUT, layout), axis=1)
            return positions[:, keep]
        raise DataFormatError(f"3D has {positions.shape[1]} joints but layout {layout!r} has {v}",
                              file=self.path_3d, sample=sample_id)

    def read_item(self, item):
        subject_key, action_key = item
        layout = self.layout_name()
        base_id = f"{subject_key}/{action_key}"
        positions = np.asarray(self._positions_3d[subject_key][action_key])
        if positions.ndim != 3 or positions.shape[2] != 3 or len(positions) == 0:
            raise DataFormatError(f"3D array has shape {positions.shape}, expected (T, J, 3) with T > 0",
                                  file=self.path_3d, sample=base_id)
        positions = self._select_3d(positions.astype(np.float64), layout, base_id)
        if not np.isfinite(positions).all():
            frame = int(np.argwhere(~np.isfinite(positions))[0][0])
            raise DataFormatError(f"non-finite 3D coordinates (first at frame {frame})", file=self.path_3d,
                                  sample=base_id)
        t = len(positions)
        cameras = cameras_for(self._cameras, subject_key, source=self.options.cameras) if self._cameras else None
        if self.options.project:
            views = [camera.world_to_pixels(positions) for camera in cameras]
        else:
            views = self._views_2d(subject_key, action_key, base_id)
            if cameras is not None and len(cameras) != len(views):
                raise ConfigError(f"{self.options.cameras}: {len(cameras)} cameras for subject {subject_key!r} but "
                                  f"the 2D file has {len(views)} views")
        label = self._label(action_key, base_id)
        for index, view in enumerate(views):
            sample_id = f"{base_id}/cam{index}"
            view = np.asarray(view)
            if view.ndim != 3 or view.shape[2] != 2:
                raise DataFormatError(f"2D array has shape {view.shape}, expected (T, V, 2)", file=self.path_2d,
                                      sample=sample_id)
            if len(view) < t:
                raise DataFormatError(f"2D has {len(view)} frames but 3D has {t} (2D may only be longer)",
                                      file=self.path_2d, sample=sample_id)
            target = positions if cameras is None else cameras[index].world_to_camera(positions)
            sample = dict(
                keypoint=view[:t, None].astype(np.float32),
                keypoint_3d=target[:, None].astype(np.float32),
                layout=layout,
                label=label,
                sample_id=sample_id,
                subject=subject_key.rsplit("/", 1)[-1],
                view=str(index),
                source_file=str(self.path_2d or self.path_3d),
            )
            if cameras is not None:
                camera = cameras[index]
                if camera.res_w is None or camera.res_h is None:
                    raise ConfigError(f"{self.options.cameras}: camera {index} of subject {subject_key!r} needs "
                                      "res_w and res_h (the image size stored with the 2D)")
                sample["img_shape"] = [camera.res_h, camera.res_w]
            yield sample

    def _views_2d(self, subject_key: str, action_key: str, sample_id: str) -> list:
        try:
            views = self._positions_2d[subject_key][action_key]
        except KeyError:
            raise DataFormatError("no 2D keypoints for this 3D sequence", file=self.path_2d,
                                  sample=sample_id) from None
        if not isinstance(views, (list, tuple)) or not views:
            raise DataFormatError(f"2D entry is {type(views).__name__}, expected a list of camera arrays",
                                  file=self.path_2d, sample=sample_id)
        return list(views)

    def _map_layout(self, sample: dict, to_layout: str) -> dict:
        """--to-layout maps the 3D target with the same joint table as the 2D keypoints."""
        out = super()._map_layout(sample, to_layout)
        out["keypoint_3d"], _ = map_layout(sample["keypoint_3d"], sample["layout"], to_layout)
        return out

    def output_spec(self):
        spec = super().output_spec()
        if getattr(self.options, "to_layout", None):
            from datasets import Array4D

            spec.extra_features["keypoint_3d"] = Array4D(
                shape=(None, 1, get_layout(spec.layout).num_joints, 3), dtype="float32")
        return spec
