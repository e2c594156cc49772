"""kNN-1 retrieval accuracy on pooled encoder features (docs/design.md §12.6)."""

from __future__ import annotations

import numpy as np


def knn1_accuracy(train_features, train_labels, test_features, test_labels) -> float:
    """Top-1 (%) of cosine 1-nearest-neighbour on L2-normalised features; the training split is the gallery."""
    train = np.asarray(train_features, np.float64)
    test = np.asarray(test_features, np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {train.shape} and {test.shape}")
    train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    test = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    nearest = np.argmax(test @ train.T, axis=1)
    return float(100.0 * np.mean(np.asarray(train_labels)[nearest] == np.asarray(test_labels)))
