"""Penn Action: 2D action recognition from ground-truth 2D joints, official split, one UPS model.

    python benchmarks/penn_recognition.py            # ~12 minutes on one CPU thread
    python benchmarks/penn_recognition.py --quick    # a ~2-minute smoke run (not a result)

Protocol (docs/datasets.md §2): official ``train`` flag split, 1,258 train / 1,068 test clips, 15 classes, 13 joints in
pixels (joints marked invisible keep their coordinates, as annotated). Inputs are centred and scaled per clip
(PreNormalize2D ``body``: no image size needed), the whole clip resampled to the task's 64 frames. Top-1 of the final
step (no model selection on the test split). The local baseline is kNN-1 on the same normalised joints (32 frames,
cosine). Anchors are loose context only (docs/datasets.md §2, [R-low]: they use RGB or estimated poses, not GT joints):
Nie et al. 2015 85.5, Iqbal et al. 2017 (pose-based) 79.0, Luvizon et al. 2018 (pose + appearance) 97.4.
"""

from __future__ import annotations

import sys

import realdata

STEPS, QUICK_STEPS = 1500, 60
TRANSFORMS = [{"type": "PreNormalize2D", "mode": "body"},
              {"type": "RandomApply", "p": 0.5, "transform": {"type": "Rotate", "max_angle": 0.2}},
              {"type": "RandomApply", "p": 0.5, "transform": {"type": "Shear", "magnitude": 0.2}}]
EVAL_TRANSFORMS = [{"type": "PreNormalize2D", "mode": "body"}]


def prepare(bench: realdata.Bench):
    return bench.convert("penn-action", bench.source("PennAction"), "penn_official", "--split", "official")


def task_settings(data, batch_size: int = 16) -> dict:
    """The Penn Action task as it appears in an experiment config (shared with ups_joint_vs_separate.py)."""
    return {"action_recognition_2d": {"train": {"path": str(data), "split": "train"},
                                      "eval": {"path": str(data), "split": "test"},
                                      "transforms": TRANSFORMS, "eval_transforms": EVAL_TRANSFORMS,
                                      "batch_size": batch_size}}


def main() -> int:
    args = realdata.parser(__doc__).parse_args()
    bench = realdata.Bench("penn_recognition", args)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    data = prepare(bench)
    config = bench.experiment("penn_action_recognition_2d", task_settings(data), steps,
                              optim=realdata.RECOGNITION_OPTIM)
    final, seconds = bench.train("penn_action_recognition_2d", config)
    metrics = final["action_recognition_2d"]
    baseline = realdata.knn1_baseline(data, EVAL_TRANSFORMS)

    print(f"\nPenn Action official split (train 1,258 / test 1,068), GT 2D joints, {steps} steps of batch 16, "
          f"final step, {args.threads} thread(s)")
    print(realdata.table([
        ["UPS (this toolkit), 2D recognition", metrics["top1"], metrics["mean_class"], f"{seconds:.0f}"],
        ["kNN-1 on normalised joints (local baseline)", baseline, "", ""],
        ["Nie 2015 / Iqbal 2017 (pose) / Luvizon 2018 [R-low, other inputs]", "85.5 / 79.0 / 97.4", "", ""],
    ], ["model", "top-1 %", "mean-class %", "train s"]))
    bench.print_commands()
    out = bench.save({"tasks": {"action_recognition_2d": {"metrics": metrics, "train_seconds": seconds,
                                                          "steps": steps}},
                      "knn1_baseline_top1": baseline})
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
