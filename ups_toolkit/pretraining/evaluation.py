"""Self-supervised evaluations of a pretrained encoder (docs/design.md §12.6): frozen features, linear probe, kNN-1,
semi-supervised label subsets.

- Features: the encoder in eval mode, no gradients, each sample's whole valid sequence resized to T (no
  augmentation), pooled g = [max_T y_t ; max_S y_s] (N, 2d).
- Linear probe [code USDRL action_recognition.py]: Linear(2d, K), weights N(0, 0.01²), bias 0; SGD momentum 0.9,
  weight decay 0, batch 512, 160 epochs, lr × 0.1 at epochs 120 and 140 (lr per dataset: NTU-60 xsub 0.006, xview
  0.03, NTU-120 0.006, PKU-II 0.01). With a frozen eval-mode encoder and no augmentation every epoch sees the same
  features, so they are extracted once and the probe trains on them. The headline is the **final** epoch's top-1;
  the reference reports the best of its every-5-epoch tests, which we give only when asked, labelled as best-epoch.
- kNN-1: cosine 1-nearest neighbour of L2-normalised g, the training split as gallery
  (:func:`ups_toolkit.metrics.knn1_accuracy`).
- Semi-supervised: a random fraction of the training samples (fixed seed, not class-balanced); fine-tuning then
  unfreezes everything (the training loop's job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from ..metrics import knn1_accuracy, topk_accuracy
from ..skeleton.transforms import build_transforms


def extract_features(
    encoder,
    samples: Iterable[dict],
    *,
    transforms: Sequence[dict] | None = None,
    batch_size: int = 64,
    device=None,
    task_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of every sample: returns (features (N, 2d) float32, labels (N,) int64; −1 = unlabelled).

    ``samples``: schema dicts (a HF dataset in numpy format, a list …), each with ``keypoint`` (T, M, V, C),
    ``layout`` and ``label``. ``transforms``: deterministic config list applied per sample (e.g. PreNormalize3D,
    Resize, Bone); default ``[Resize(T)]`` — the whole valid sequence resampled to the encoder's T. The encoder runs
    in eval mode without gradients and gets its previous mode back. Consecutive samples of one layout are batched.
    """
    import torch

    config = encoder.config
    pipeline = build_transforms(list(transforms) if transforms is not None
                                else [{"type": "Resize", "size": config.num_frames}])
    if pipeline.random:
        raise ConfigError("extract_features: the transforms must be deterministic (no random augmentation)")
    device = device if device is not None else next(encoder.parameters()).device
    features, labels, pending, pending_layout = [], [], [], None

    def flush():
        persons = max(kp.shape[1] for kp in pending)
        pose = np.zeros((len(pending), pending[0].shape[0], persons) + pending[0].shape[2:], np.float32)
        for i, kp in enumerate(pending):
            pose[i, :, : kp.shape[1]] = kp
        out = encoder(torch.from_numpy(pose).to(device), layout=pending_layout, task_id=task_id)
        features.append(out.pooled.float().cpu().numpy())
        pending.clear()

    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for sample in samples:
                if pending and (sample["layout"] != pending_layout or len(pending) == batch_size):
                    flush()
                pending_layout = sample["layout"]
                pending.append(np.asarray(pipeline(sample)["keypoint"], np.float32))
                labels.append(int(sample.get("label", -1)))
            if pending:
                flush()
    finally:
        encoder.train(was_training)
    if not features:
        raise ValueError("extract_features: no samples")
    return np.concatenate(features), np.asarray(labels, np.int64)


@dataclass
class LinearProbeResult:
    """top1: test top-1 (%) after the final epoch (the headline). best_top1 / best_epoch: the best of the
    evaluated epochs — only with ``report_best``, and to be reported as "best epoch", never as the result.
    history: (epoch, test top-1) of every evaluated epoch."""

    top1: float
    epochs: int
    best_top1: float | None = None
    best_epoch: int | None = None
    history: list[tuple[int, float]] = field(default_factory=list)

    def summary(self) -> str:
        text = f"linear probe top-1 {self.top1:.2f} % (final epoch {self.epochs})"
        if self.best_top1 is not None:
            text += f"; best epoch {self.best_epoch}: {self.best_top1:.2f} % (best-epoch figure)"
        return text


def _labels(labels, num_classes: int, name: str) -> np.ndarray:
    labels = np.asarray(labels, np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} labels outside [0, {num_classes}) (first: {labels[bad][0]}); "
                         f"unlabelled samples (-1) cannot train or test a probe")
    return labels


def linear_probe(
    train_features,
    train_labels,
    test_features,
    test_labels,
    *,
    num_classes: int | None = None,
    lr: float = 0.01,
    epochs: int = 160,
    milestones: Sequence[int] = (120, 140),
    batch_size: int = 512,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    report_best: bool = False,
    eval_every: int = 5,
    seed: int = 0,
    device="cpu",
) -> LinearProbeResult:
    """Train Linear(D, K) on frozen features (N, D) with SGD + step decay; test top-1 (%) after the last epoch.

    ``report_best`` also tests every ``eval_every`` epochs (and the last) and returns the best, labelled.
    ``seed`` fixes the initialisation and the shuffling.
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    train_x = torch.as_tensor(np.asarray(train_features, np.float32), device=device)
    test_x = torch.as_tensor(np.asarray(test_features, np.float32), device=device)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(train_x.shape)}, {tuple(test_x.shape)}")
    k = int(num_classes) if num_classes is not None else int(np.max(train_labels)) + 1
    train_y = torch.as_tensor(_labels(train_labels, k, "train labels"), device=device)
    test_y = _labels(test_labels, k, "test labels")
    if len(train_y) != len(train_x) or len(test_y) != len(test_x):
        raise ValueError("features and labels differ in length")

    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(train_x.shape[1], k)
    nn.init.normal_(classifier.weight, std=0.01, generator=generator)
    nn.init.zeros_(classifier.bias)
    classifier.to(device)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)

    def test_top1() -> float:
        with torch.no_grad():
            scores = classifier(test_x).cpu().numpy()
        return topk_accuracy(scores, test_y, ks=(1,))[1]

    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(classifier(train_x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
        if report_best and (epoch % eval_every == 0 or epoch == epochs):
            history.append((epoch, test_top1()))
    final = history[-1][1] if history else test_top1()
    result = LinearProbeResult(top1=final, epochs=epochs, history=history)
    if report_best:
        result.best_epoch, result.best_top1 = max(history, key=lambda item: (item[1], -item[0]))
    return result


def semi_supervised_subset(num_samples: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of ``num_samples`` (e.g. 0.01 or 0.1 of the labels).

    round(fraction·N) samples, at least 1, drawn uniformly without replacement by ``np.random.default_rng(seed)``
    — not class-balanced (the reference's protocol), so a rare class may be absent at 1 %.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    count = max(1, int(round(fraction * num_samples)))
    return np.sort(np.random.default_rng(seed).permutation(num_samples)[:count])


__all__ = ["LinearProbeResult", "extract_features", "knn1_accuracy", "linear_probe", "semi_supervised_subset"]
