"""The torch side of the task examples (:mod:`ups_toolkit.data.task_examples`): a dataset with per-(epoch, item)
generators, the epoch-ordered sampler and the collate function of the training and evaluation loaders."""

from __future__ import annotations

import numpy as np

from ..data.task_examples import TaskExamples


class TaskDataset:
    """``torch.utils.data.Dataset`` over a :class:`TaskExamples`: item i of epoch e draws from
    ``np.random.default_rng([seed, task_index, e, i])``. Call :meth:`set_epoch` before each epoch (workers copy
    the dataset when their iterator starts)."""

    def __init__(self, examples: TaskExamples, seed: int, task_index: int):
        self.examples, self.seed, self.task_index = examples, int(seed), int(task_index)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.task_index, self.epoch, int(index)])
        return self.examples.example(int(index), rng)


class EpochSampler:
    """Deterministic order: a permutation drawn from ``(seed, task_index, epoch)`` when ``shuffle``, else 0..n-1.
    The same on every process (Accelerate shards the batches)."""

    def __init__(self, length: int, seed: int, task_index: int, shuffle: bool):
        self.length, self.seed, self.task_index, self.shuffle = int(length), int(seed), int(task_index), shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.length))
        order = np.random.default_rng([self.seed, self.task_index, self.epoch, 104729]).permutation(self.length)
        return iter(order.tolist())


class Collate:
    """Examples of one task -> a batch of torch tensors.

    ``pose`` (N, T, M, V, C) float32; ``labels`` (N, L) int64 target tokens then PAD (L = the codec's fixed length,
    so every batch of a task has one shape; the model builds [BOS] + labels[:, :-1] and the weights itself); every
    other numeric field stacked as a tensor (``item``, ``label``, ``coords`` ...)."""

    def __init__(self, length: int, pad_id: int = 0):
        self.length, self.pad_id = int(length), int(pad_id)

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        batch = {"pose": torch.from_numpy(np.stack([e["pose"] for e in examples]).astype(np.float32))}
        if "target" in examples[0]:
            labels = np.full((len(examples), self.length), self.pad_id, dtype=np.int64)
            for row, example in enumerate(examples):
                labels[row, : len(example["target"])] = example["target"]
            batch["labels"] = torch.from_numpy(labels)
        for key in examples[0]:
            if key in ("pose", "target"):
                continue
            values = np.stack([np.asarray(e[key]) for e in examples])
            if values.dtype == np.float64:
                values = values.astype(np.float32)
            batch[key] = torch.from_numpy(values)
        return batch
