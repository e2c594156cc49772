"""NW-UCLA cross-view: 3D action recognition and early action prediction, each trained as its own UPS model.

    python benchmarks/nwucla_recognition.py            # ~2 x 12 minutes on one CPU thread
    python benchmarks/nwucla_recognition.py --quick    # a ~3-minute smoke run (not a result)

Protocol (docs/datasets.md §1): train on views 1+2 (1,020 sequences), test on view 3 (464), top-1 of the final step (no
model selection on the test view). Early prediction evaluates the same test view with only the first 10 %, 20 %,
..., 100 % of each sequence observed (it is trained on random observed fractions of the training sequences).
Anchors (docs/datasets.md §1, [R], not re-checked): Shift-GCN 94.6 (Cheng et al. 2020), CTR-GCN 96.5 (Chen et al.
2021), InfoGCN 97.0 (Chi et al. 2022) top-1 -- full-budget GCNs trained for 65+ epochs on GPUs with four input
streams. The local baseline is kNN-1 on the raw normalised sequences (resized to 32 frames, cosine), computed
here.
"""

from __future__ import annotations

import sys

import realdata

STEPS, QUICK_STEPS = 1500, 60
TRANSFORMS = [{"type": "PreNormalize3D"},
              {"type": "RandomApply", "p": 0.5, "transform": {"type": "Rotate", "max_angle": 0.3}},
              {"type": "RandomApply", "p": 0.5, "transform": {"type": "Shear", "magnitude": 0.2}}]
EVAL_TRANSFORMS = [{"type": "PreNormalize3D"}]
RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def task_settings(data, batch_size: int = 16) -> dict:
    """The two NW-UCLA tasks as they appear in an experiment config (shared with ups_joint_vs_separate.py)."""
    ref = {"train": {"path": str(data), "split": "train"}, "eval": {"path": str(data), "split": "test"}}
    return {
        "action_recognition_3d": {**ref, "transforms": TRANSFORMS, "eval_transforms": EVAL_TRANSFORMS,
                                  "batch_size": batch_size},
        "early_action_prediction": {**ref, "transforms": TRANSFORMS, "eval_transforms": EVAL_TRANSFORMS,
                                    "batch_size": batch_size, "eval_obs_ratios": RATIOS},
    }


def prepare(bench: realdata.Bench):
    return bench.convert("nw-ucla", bench.source("NW-UCLA"), "nwucla_xview", "--split", "xview")


def main() -> int:
    args = realdata.parser(__doc__).parse_args()
    bench = realdata.Bench("nwucla_recognition", args)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    data = prepare(bench)
    settings = task_settings(data)
    results = {}
    for task in ("action_recognition_3d", "early_action_prediction"):
        config = bench.experiment(f"nwucla_{task}", {task: settings[task]}, steps, optim=realdata.RECOGNITION_OPTIM)
        final, seconds = bench.train(f"nwucla_{task}", config)
        results[task] = {"metrics": final[task], "train_seconds": seconds, "steps": steps}
    baseline = realdata.knn1_baseline(data, EVAL_TRANSFORMS)

    rec = results["action_recognition_3d"]["metrics"]
    early = results["early_action_prediction"]["metrics"]
    print(f"\nNW-UCLA cross-view (train v01+v02 1,020 / test v03 464), {steps} steps of batch 16, final step, "
          f"{args.threads} thread(s)")
    print(realdata.table([
        ["UPS (this toolkit), 3D recognition", rec["top1"], rec["mean_class"],
         f"{results['action_recognition_3d']['train_seconds']:.0f}"],
        ["kNN-1 on normalised joints (local baseline)", baseline, "", ""],
        ["Shift-GCN / CTR-GCN / InfoGCN [R, docs/datasets.md §1]", "94.6 / 96.5 / 97.0", "", ""],
    ], ["model", "top-1 %", "mean-class %", "train s"]))
    print("\nEarly action prediction, top-1 % by observed fraction (same test view):")
    print(realdata.table([["top-1 %"] + [early[f"top1@{r:g}"] for r in RATIOS] + [early["top1_mean"]]],
                         ["observed"] + [f"{r:.0%}" for r in RATIOS] + ["mean"]))
    bench.print_commands()
    out = bench.save({"tasks": results, "knn1_baseline_top1": baseline})
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
