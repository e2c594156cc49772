"""PKU-MMD Phase 1 subset: temporal action detection in untrimmed two-person sequences, one UPS model.

    python benchmarks/pkummd_detection.py            # ~14 minutes on one CPU thread
    python benchmarks/pkummd_detection.py --quick    # a ~3-minute smoke run (not a result)

Protocol (docs/datasets.md §5): train on the 10 sequences of ``skeleton_train/`` (16,783 frames, 79 instances), test on
the 6 of ``skeleton_test/`` (12,761 frames, 51 instances); both folders follow the cross-subject split. 8 classes
occur (all two-person interactions), labels from the 51-class ``pku_mmd51`` set. The model sees windows of 256 raw
frames (every 128 frames at test time) resampled to 64 and decodes window-relative segments; evaluation.py merges
them per sequence and scores the final step with the official PKU-MMD scorer (ECHO960/PKU-MMD evaluate.py,
``ups_toolkit.metrics.detection_map_pku``): mAP_a (per class, averaged over the 8 classes present) and mAP_v (per
video) at tIoU 0.1/0.3/0.5/0.7, plus the VOC-style mAP@0.5.

Budget: 10 training sequences give 10 random windows per step (one per sequence), so the default run takes many
steps over few windows; STEPS is set so that training plus evaluation fit ~15 minutes on one thread.

Local baseline (computed here, same test sequences, same scorer): a sliding-window classifier. Windows of 60 frames
every 15 frames over the training sequences, each labelled with the class of the instance it overlaps most (or
background when that instance covers less than half the window); pooled joint features (mean of three temporal
thirds, std, mean absolute velocity of the normalised joints of both persons); a seeded multinomial logistic
regression. On a test sequence every window is classified, its label is given to the central 15 frames it stands for,
and runs of consecutive windows of the same non-background class become segments scored by that class's mean
probability.

Anchors: none apply to this 16-sequence subset (docs/datasets.md §5). Full PKU-MMD I xsub numbers (docs/design.md §13,
mAP_a / mAP_v at tIoU 0.5: USDRL TPAMI fine-tuned 75.7 / 74.9, Hi-TRS-3S 68.2 / 76.0) train on ~940 sequences and
are printed as context only, not as a comparison.
"""

from __future__ import annotations

import sys

import numpy as np

import realdata

STEPS, QUICK_STEPS = 1000, 40  # ~0.73 s per step of batch 10 on one thread: ~13 minutes of training
# move_to_front off: it would shift a person's frames in time inside a window (detection needs frames aligned)
NORMALISE = {"type": "PreNormalize3D", "move_to_front": False}
TRANSFORMS = [NORMALISE,
              {"type": "RandomApply", "p": 0.5, "transform": {"type": "Rotate", "max_angle": 0.3}},
              {"type": "RandomApply", "p": 0.5, "transform": {"type": "Shear", "magnitude": 0.2}}]
EVAL_TRANSFORMS = [NORMALISE]
TIOUS = [0.1, 0.3, 0.5, 0.7]
WINDOW, HOP = 60, 15  # the baseline's windows (frames at 30 fps)


def task_settings(data, batch_size: int = 10) -> dict:
    """The detection task as it appears in an experiment config (shared with ups_joint_vs_separate.py).
    ``data``: (train folder, test folder) from :func:`prepare`. A batch holds one random window per training
    sequence, so batch sizes above 10 give batches of 10."""
    train, test = data
    return {
        "temporal_action_detection": {
            "train": {"path": str(train), "split": "train"}, "eval": {"path": str(test), "split": "test"},
            "label_set": "pku_mmd51", "transforms": TRANSFORMS, "eval_transforms": EVAL_TRANSFORMS,
            "batch_size": batch_size,
            # soft-argmax L1 on the start/end tokens (window fractions): cross-entropy alone left the time tokens
            # unlearnt at this budget (mAP_a@0.5 1.1 without it, model outputs pinned to frames [0, 57))
            "l1_weight": 2.0,
        },
    }


def prepare(bench: realdata.Bench):
    """Two prepared folders: ``skeleton_train/`` (split ``train``) and ``skeleton_test/`` (split ``test``); the
    cross-subject split file names the splits, and every file of each folder falls on its side."""
    root = bench.source("PKU-MMD_v1_subset")
    options = ("--labels", str(root / "labels"), "--split-file", str(root / "split" / "cross-subject.txt"))
    train = bench.convert("pku-mmd", root / "skeleton_train", "pkummd_train", *options)
    test = bench.convert("pku-mmd", root / "skeleton_test", "pkummd_test", *options)
    return train, test


# ---- the sliding-window baseline ------------------------------------------------------------------------------------
def _sequences(path, split):
    from ups_toolkit.data.prepared import load_prepared

    out = []
    for sample in load_prepared(path, split=split):
        segments = [(int(s["label"]), int(s["start"]), int(s["end"])) for s in sample["segments"]]  # [start, end)
        out.append((np.asarray(sample["keypoint"], np.float32), segments, str(sample["layout"])))
    return out


def _starts(n: int) -> list[int]:
    return list(range(0, max(n - WINDOW, 0) + 1, HOP))


def _features(keypoint: np.ndarray, layout: str, start: int) -> np.ndarray:
    """Pooled features of one window: thirds' means, std and mean |velocity| of the normalised joints."""
    from ups_toolkit.skeleton.transforms import build_transform

    window = keypoint[start:start + WINDOW]
    x = build_transform(NORMALISE)({"keypoint": window, "layout": layout})["keypoint"]
    x = x.reshape(len(x), -1).astype(np.float64)  # (T, M*V*C)
    thirds = [part.mean(axis=0) for part in np.array_split(x, 3)]
    return np.concatenate(thirds + [x.std(axis=0), np.abs(np.diff(x, axis=0)).mean(axis=0)])


def _window_label(segments, start: int) -> int:
    """The class of the instance overlapping the window most; -1 (background) below half the window."""
    best, label = 0, -1
    for c, s, e in segments:
        overlap = min(e, start + WINDOW) - max(s, start)
        if overlap > best:
            best, label = overlap, c
    return label if best >= WINDOW / 2 else -1


def sliding_window_baseline(train_path, test_path, seed: int) -> dict:
    """mAP_a/mAP_v per tIoU (+ VOC mAP@0.5) of the sliding-window logistic-regression detector (module docstring)."""
    import torch

    from ups_toolkit.metrics import detection_map_pku, detection_map_voc

    rows, labels = [], []
    for keypoint, segments, layout in _sequences(train_path, "train"):
        for s in _starts(len(keypoint)):
            rows.append(_features(keypoint, layout, s))
            labels.append(_window_label(segments, s))
    classes = sorted(set(labels) - {-1})
    index = {c: i + 1 for i, c in enumerate(classes)}  # 0: background
    x = np.stack(rows)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.as_tensor([index.get(c, 0) for c in labels])
    torch.manual_seed(seed)
    linear = torch.nn.Linear(xt.shape[1], len(classes) + 1)
    optim = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):  # full batch: ~1,100 windows
        optim.zero_grad()
        torch.nn.functional.cross_entropy(linear(xt), yt).backward()
        optim.step()

    proposals, truths = [], []
    for seq, (keypoint, segments, layout) in enumerate(_sequences(test_path, "test")):
        truths += [(seq, c, s, e - 1) for c, s, e in segments]  # the PKU scorer reads inclusive end frames
        n, starts = len(keypoint), _starts(len(keypoint))
        feats = np.stack([_features(keypoint, layout, s) for s in starts])
        with torch.no_grad():
            prob = torch.softmax(linear(torch.as_tensor((feats - mean) / std, dtype=torch.float32)), -1).numpy()
        pred = prob.argmax(axis=1)
        # window i stands for its central HOP frames; the first and last windows also cover the sequence ends
        centre = [s + (WINDOW - HOP) // 2 for s in starts]
        bounds = [0] + centre[1:] + [n]
        i = 0
        while i < len(starts):
            j = i
            while j + 1 < len(starts) and pred[j + 1] == pred[i]:
                j += 1
            if pred[i] > 0:
                score = float(prob[i:j + 1, pred[i]].mean())
                proposals.append((seq, classes[pred[i] - 1], bounds[i], bounds[j + 1] - 1, score))
            i = j + 1
    metrics = {}
    for theta in TIOUS:
        result = detection_map_pku(proposals, truths, threshold=theta)
        metrics[f"mAP_a@{theta:g}"], metrics[f"mAP_v@{theta:g}"] = result["mAP_a"], result["mAP_v"]
    metrics["mAP_voc@0.5"] = detection_map_voc(proposals, truths, threshold=0.5)["mAP"]
    metrics["proposals"] = float(len(proposals))
    return metrics


def main() -> int:
    args = realdata.parser(__doc__).parse_args()
    bench = realdata.Bench("pkummd_detection", args)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    data = prepare(bench)
    task = "temporal_action_detection"
    config = bench.experiment("pkummd_detection", task_settings(data), steps,
                              evaluation={"detection_tiou": TIOUS})
    final, seconds = bench.train("pkummd_detection", config)
    model = final[task]
    baseline = sliding_window_baseline(*data, seed=args.seed)

    keys = [f"mAP_a@{t:g}" for t in TIOUS] + [f"mAP_v@{t:g}" for t in TIOUS] + ["mAP_voc@0.5"]
    print(f"\nPKU-MMD I subset detection (train 10 sequences / 79 instances, test 6 / 51; 8 classes), official "
          f"PKU-MMD scorer, {steps} steps of batch 10, final step, {args.threads} thread(s)")
    print(realdata.table([
        ["UPS (this toolkit)"] + [model[k] for k in keys] + [int(model["proposals"]), f"{seconds:.0f}"],
        [f"sliding-window logistic regression ({WINDOW}/{HOP} frames, local baseline)"]
        + [baseline[k] for k in keys] + [int(baseline["proposals"]), ""],
        ["published anchors: none apply to the subset (docs/datasets.md §5); full PKU-MMD I xsub, context only: "
         "USDRL / Hi-TRS-3S mAP_a@0.5 75.7 / 68.2, mAP_v@0.5 74.9 / 76.0"] + [""] * (len(keys) + 2),
    ], ["model"] + keys + ["proposals", "train s"]))
    bench.print_commands()
    out = bench.save({"tasks": {task: {"metrics": model, "train_seconds": seconds, "steps": steps}},
                      "sliding_window_baseline": baseline})
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
