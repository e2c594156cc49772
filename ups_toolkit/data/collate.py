"""Padding collate for variable-length skeleton sequences: numpy in, torch out, converted once per batch."""

from __future__ import annotations

import numpy as np


def pad_collate(samples: list[dict]) -> dict:
    """Stack samples of different lengths and person counts.

    Returns ``keypoint`` (B, T_max, M_max, V, C) float32 zero-padded, ``frame_mask`` (B, T_max) bool (True = real
    frame), ``length`` (B,), ``label`` (B,) and, when every sample has one, ``keypoint_score`` (B, T_max, M_max, V).
    Other fields are returned as lists.
    """
    import torch

    if not samples:
        raise ValueError("pad_collate got an empty batch")
    arrays = [np.asarray(s["keypoint"], dtype=np.float32) for s in samples]
    joints = {a.shape[2:] for a in arrays}
    if len(joints) != 1:
        raise ValueError(f"samples in one batch must share (V, C); got {sorted(joints)}")
    t_max = max(a.shape[0] for a in arrays)
    m_max = max(a.shape[1] for a in arrays)
    v, c = arrays[0].shape[2:]
    batch = len(arrays)
    keypoint = np.zeros((batch, t_max, m_max, v, c), np.float32)
    frame_mask = np.zeros((batch, t_max), bool)
    for i, a in enumerate(arrays):
        keypoint[i, : a.shape[0], : a.shape[1]] = a
        frame_mask[i, : a.shape[0]] = True
    out = {
        "keypoint": torch.from_numpy(keypoint),
        "frame_mask": torch.from_numpy(frame_mask),
        "length": torch.tensor([a.shape[0] for a in arrays]),
        "label": torch.tensor([int(s.get("label", -1)) for s in samples]),
    }
    if all(s.get("keypoint_score") is not None for s in samples):
        score = np.zeros((batch, t_max, m_max, v), np.float32)
        for i, s in enumerate(samples):
            a = np.asarray(s["keypoint_score"], dtype=np.float32)
            score[i, : a.shape[0], : a.shape[1]] = a
        out["keypoint_score"] = torch.from_numpy(score)
    for key in samples[0]:
        if key not in out and key != "keypoint_score":
            out[key] = [s.get(key) for s in samples]
    return out
