"""Temporal action detection mAP (docs/design.md §12.5): the PKU-MMD official scorer and the VOC-style scorer.

Proposals are (video, label, start, end, confidence); ground truth is (video, label, start, end). Frames are in
the caller's convention; the PKU scorer uses the label files' own numbers (export [s, e) as (s, e - 1)).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


# ---------------------------------------------------------------------------------------------------------------
# PKU-MMD official (ECHO960/PKU-MMD evaluate.py, HEAD b492698)
def _pku_overlap(proposal, truth) -> float:
    """(min(e, e') - max(s, s')) / (max(e, e') - min(s, s')), no +1; negative when disjoint."""
    _, _, s_p, e_p, _ = proposal
    _, _, s_g, e_g = truth
    span = max(e_p, e_g) - min(s_p, s_g)
    return (min(e_p, e_g) - max(s_p, s_g)) / span if span > 0 else 0.0


def _pku_ap(proposals: list, truths: list, threshold: float) -> float:
    """AP of one list of proposals against one list of ground truths, walked from the least confident proposal."""
    if not proposals or not truths:
        return 0.0
    proposals = sorted(proposals, key=lambda p: p[4])  # ascending confidence (stable, as Python's sort)
    by_key = defaultdict(list)
    for g, (video, label, _, _) in enumerate(truths):
        by_key[(video, label)].append(g)
    match = [-1] * len(proposals)
    count = [0] * len(truths)
    for i, prop in enumerate(proposals):
        best, best_overlap = -1, -np.inf
        for g in by_key.get((prop[0], prop[1]), []):
            o = _pku_overlap(prop, truths[g])
            if o >= threshold and o >= best_overlap:  # later ties win, as in the reference loop
                best, best_overlap = g, o
        match[i] = best
        if best >= 0:
            count[best] += 1
    positive = sum(c > 0 for c in count)
    num_props, num_truths = len(proposals), len(truths)
    best_precision, old_recall = positive / num_props, positive / num_truths
    score = 0.0
    for i in range(len(proposals)):
        num_props -= 1
        if match[i] < 0:
            continue
        count[match[i]] -= 1
        if count[match[i]] == 0:
            positive -= 1
        precision = positive / num_props if num_props else 0.0
        recall = positive / num_truths
        best_precision = max(best_precision, precision)
        score += best_precision * (old_recall - recall)
        old_recall = recall
    return score


def detection_map_pku(proposals, truths, threshold: float = 0.5, classes=None) -> dict:
    """mAP_a (mean over classes of AP over all videos) and mAP_v (mean over videos of AP with classes pooled), in %.

    ``classes``: the classes averaged in mAP_a; the official script averages all 51 PKU-MMD classes (pass
    ``range(1, 52)``); by default the classes present in the ground truth (right for subsets).
    """
    proposals = [tuple(p) for p in proposals]
    truths = [tuple(t) for t in truths]
    classes = sorted({t[1] for t in truths}) if classes is None else list(classes)
    videos = sorted({t[0] for t in truths})
    ap_class = {
        c: _pku_ap([p for p in proposals if p[1] == c], [t for t in truths if t[1] == c], threshold) for c in classes
    }
    ap_video = {
        v: _pku_ap([p for p in proposals if p[0] == v], [t for t in truths if t[0] == v], threshold) for v in videos
    }
    return {
        "mAP_a": 100.0 * float(np.mean(list(ap_class.values()))) if classes else 0.0,
        "mAP_v": 100.0 * float(np.mean(list(ap_video.values()))) if videos else 0.0,
        "ap_per_class": ap_class,
        "ap_per_video": ap_video,
    }


# ---------------------------------------------------------------------------------------------------------------
# VOC style (JHang2020/Simple-Skeleton-Detection processor/evaluate_metrics.py)
def _voc_iou(a, b) -> float:
    """Inclusive-frame IoU: lengths count end - start + 1."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    changes = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[changes + 1] - r[changes]) * p[changes + 1]))


def detection_map_voc(proposals, truths, threshold: float = 0.5) -> dict:
    """Per class: descending confidence, greedy one-to-one matching at IoU >= threshold, VOC AP; mean over the
    classes present in the ground truth, in %."""
    per_class = {}
    for c in sorted({t[1] for t in truths}):
        gts = defaultdict(list)
        for video, label, s, e in truths:
            if label == c:
                gts[video].append((s, e))
        used = {v: np.zeros(len(g), bool) for v, g in gts.items()}
        props = sorted([p for p in proposals if p[1] == c], key=lambda p: -p[4])
        tp = np.zeros(len(props))
        for i, (video, _, s, e, _) in enumerate(props):
            candidates = gts.get(video, [])
            if not candidates:
                continue
            ious = np.array([_voc_iou((s, e), g) for g in candidates])
            best = int(np.argmax(ious))
            if ious[best] >= threshold and not used[video][best]:
                used[video][best] = True
                tp[i] = 1
        num_truths = sum(len(g) for g in gts.values())
        cum_tp = np.cumsum(tp)
        recall = cum_tp / num_truths
        precision = cum_tp / np.maximum(np.arange(1, len(props) + 1), 1)
        per_class[c] = _voc_ap(recall, precision) if len(props) else 0.0
    return {"mAP": 100.0 * float(np.mean(list(per_class.values()))) if per_class else 0.0, "ap_per_class": per_class}
