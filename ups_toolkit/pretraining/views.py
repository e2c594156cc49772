"""The four augmented views of one skeleton sample for USDRL pretraining (docs/design.md D10).

Each view is drawn independently by one transform pipeline (a config list of :mod:`ups_toolkit.skeleton.transforms`).
The default is the USDRL recipe (:func:`usdrl_view_transforms`):

1. ``CropResize``: s ~ U[0.1, 1], a crop of min(max(⌊n·s⌋, T), n) frames at a random start, resized to T.
2. With p 0.5 joint corruption — with p 0.5 ``JointMask`` (zero round(0.6·V) random joints: 15 of 25), else
   ``JointLinearMap`` (the same random 3×3 matrix on those joints) — else ``Shear`` (a…f ~ U(−1, 1)).
   Overall ¼ mask, ¼ linear map, ½ shear.

Randomness: view k of sample ``index`` in ``epoch`` uses ``np.random.default_rng([seed, epoch, index, k])``, so a
view depends on nothing else (not on the worker, the batch, nor the other views) and a resumed run redraws the same
views (docs/design.md D9).

Modalities (docs/design.md D10 "Multi-modal", our reading after UmURL). A view carries one or more modalities computed
from its augmented joints: ``joint``, ``bone`` (bone[v] = x[v] − x[parent(v)], the layout's default pairs: CTR-GCN /
USDRL for NTU) and ``motion`` (m[t] = x[t+1] − x[t], last frame 0, after the resize). With ``modalities`` = (m_0, …),
views 0..2 carry m_{k mod len} and view 3 carries all of them (the model fuses them):

- ``[joint]`` (the AAAI run): every view is joints;
- ``[joint, bone, motion]``: z_0 = joint(v1), z_1 = bone(v2), z_2 = motion(v3), z_3 = fusion of v4's three;
- ``[bone]`` or ``[motion]``: a one-modality run like the released code's ``--moda``.

A generated view is ``{modality: keypoint (T, M, V, C) float32}``; :func:`collate_views` stacks a batch into
``[{modality: (B, T, M, V, C)} for each view]``, the input of
:class:`~ups_toolkit.pretraining.model.USDRLPretrainingModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..skeleton.transforms import Bone, Compose, Motion, build_transforms

MODALITIES = ("joint", "bone", "motion")
NUM_VIEWS = 4


def usdrl_view_transforms(
    num_frames: int = 64,
    min_ratio: float = 0.1,
    max_ratio: float = 1.0,
    corruption_p: float = 0.5,
    mask_p: float = 0.5,
    corrupt_ratio: float = 0.6,
    shear: float = 1.0,
) -> list[dict]:
    """The USDRL view pipeline as a config list (what an experiment YAML holds under ``views.transforms``).

    ``corruption_p``: probability of joint corruption (else shear); ``mask_p``: probability, given corruption, of
    masking (else the random linear map); ``corrupt_ratio``: fraction of joints corrupted, round(ratio·V).
    """
    return [
        {"type": "CropResize", "size": num_frames, "min_ratio": min_ratio, "max_ratio": max_ratio},
        {"type": "RandomChoice", "weights": [corruption_p, 1.0 - corruption_p], "transforms": [
            {"type": "RandomChoice", "weights": [mask_p, 1.0 - mask_p], "transforms": [
                {"type": "JointMask", "ratio": corrupt_ratio},
                {"type": "JointLinearMap", "ratio": corrupt_ratio},
            ]},
            {"type": "Shear", "magnitude": shear},
        ]},
    ]


def view_modalities(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """The modalities each of the four views carries: views 0..2 one each (cycling), view 3 all of them.

    >>> view_modalities(["joint", "bone", "motion"])
    [('joint',), ('bone',), ('motion',), ('joint', 'bone', 'motion')]
    """
    modalities = tuple(modalities)
    if not modalities:
        raise ConfigError("modalities is empty; use e.g. [joint] or [joint, bone, motion]")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or len(set(modalities)) != len(modalities):
        raise ConfigError(f"modalities must be distinct names from {list(MODALITIES)}, got {list(modalities)}")
    return [(modalities[k % len(modalities)],) for k in range(NUM_VIEWS - 1)] + [modalities]


@dataclass
class ViewGenerator:
    """Draw the four views of a sample: ``generator(sample, epoch, index) -> [{modality: (T, M, V, C)}] * 4``.

    ``transforms``: a config list (or built transforms) applied to each view independently; default
    :func:`usdrl_view_transforms` with ``num_frames`` (every view must come out with ``num_frames`` frames, the
    encoder's T). ``modalities``: see the module docstring. ``bone_variant``:
    an alternative parent table of the layout for the bone modality.

    Example::

        views = ViewGenerator(num_frames=64, modalities=["joint", "bone", "motion"], seed=0)
        v = views(sample, epoch=3, index=17)   # v[1]["bone"].shape == (64, M, V, C)
    """

    transforms: list | None = None
    modalities: Sequence[str] = ("joint",)
    num_frames: int = 64
    seed: int = 0
    bone_variant: str | None = None

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        self._plan = view_modalities(self.modalities)
        config = usdrl_view_transforms(self.num_frames) if self.transforms is None else self.transforms
        self._pipeline: Compose = build_transforms(config)
        self._bone = Bone(self.bone_variant)
        self._motion = Motion()

    @property
    def plan(self) -> list[tuple[str, ...]]:
        """Modalities of views 0..3 (:func:`view_modalities`)."""
        return list(self._plan)

    def rng(self, epoch: int, index: int, view: int) -> np.random.Generator:
        """The generator of one view; a function of (seed, epoch, index, view) only."""
        return np.random.default_rng([int(self.seed), int(epoch), int(index), int(view)])

    def __call__(self, sample: dict, epoch: int, index: int) -> list[dict[str, np.ndarray]]:
        views = []
        for k, modalities in enumerate(self._plan):
            augmented = self._pipeline(sample, self.rng(epoch, index, k))
            frames = np.shape(augmented["keypoint"])[0]
            if frames != self.num_frames:
                raise ConfigError(
                    f"the view transforms produced {frames} frames but num_frames is {self.num_frames}; end the "
                    f"pipeline with a CropResize or Resize of size {self.num_frames}"
                )
            views.append({m: self._modality(augmented, m) for m in modalities})
        return views

    def _modality(self, augmented: dict, modality: str) -> np.ndarray:
        """(T, M, V, C) float32 of one modality, from the augmented joints of a view."""
        if modality == "bone":
            augmented = self._bone(augmented)
        elif modality == "motion":
            augmented = self._motion(augmented)
        return np.asarray(augmented["keypoint"], dtype=np.float32)


def collate_views(batch: Sequence[Sequence[dict[str, np.ndarray]]]) -> list[dict]:
    """Stack B samples' views: returns 4 dicts ``{modality: (B, T, M_max, V, C) float32 tensor}``.

    Persons are zero-padded to the most in the batch (absent persons are zeros in the schema anyway).
    """
    import torch

    if not batch:
        raise ValueError("collate_views got an empty batch")
    out = []
    for k in range(len(batch[0])):
        stacked = {}
        for modality in batch[0][k]:
            arrays = [np.asarray(views[k][modality], np.float32) for views in batch]
            shapes = {(a.shape[0],) + a.shape[2:] for a in arrays}
            if len(shapes) != 1:
                raise ValueError(f"views of one batch must share (T, V, C); view {k} {modality}: {sorted(shapes)}")
            persons = max(a.shape[1] for a in arrays)
            padded = np.zeros((len(arrays), arrays[0].shape[0], persons) + arrays[0].shape[2:], np.float32)
            for i, a in enumerate(arrays):
                padded[i, :, : a.shape[1]] = a
            stacked[modality] = torch.from_numpy(padded)
        out.append(stacked)
    return out


class PretrainingViewDataset:
    """Map-style dataset of views over any indexable dataset of schema samples (HF ``Dataset`` in numpy format,
    a list of dicts …): item i = ``{"views": generator(sample_i, epoch, i), "index": i}``.

    Call :meth:`set_epoch` before each epoch. DataLoader workers hold a copy of the dataset made when the iterator
    starts, so the new epoch reaches them unless ``persistent_workers=True`` (then keep the epoch out of the
    workers, or recreate the loader).
    """

    def __init__(self, samples, generator: ViewGenerator):
        self.samples = samples
        self.generator = generator
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return {"views": self.generator(self.samples[index], self.epoch, index), "index": index}

    @staticmethod
    def collate(items: Sequence[dict]) -> dict:
        """``{"views": collate_views(...), "index": (B,) long tensor}``, for ``DataLoader(collate_fn=...)``."""
        import torch

        return {"views": collate_views([item["views"] for item in items]),
                "index": torch.tensor([item["index"] for item in items])}


__all__ = [
    "MODALITIES",
    "NUM_VIEWS",
    "PretrainingViewDataset",
    "ViewGenerator",
    "collate_views",
    "usdrl_view_transforms",
    "view_modalities",
]
