"""HumanEva-I 2D->3D lifting (ground-truth 2D), trained as its own UPS model, next to a single-frame lifting MLP.

    python benchmarks/humaneva_lifting.py            # ~15 minutes on one CPU thread
    python benchmarks/humaneva_lifting.py --quick    # a ~3-minute smoke run (not a result)

Protocol (docs/datasets.md §3, docs/design.md §12.3): train ``Train/*`` (S1-S3), test ``Validate/*`` (S1-S3), actions
Walking, Jog, Box, all three cameras, ground-truth 2D inputs; 21 train / 24 test chunks x 3 cameras = 63 / 72
sequences, 10,041 / 10,569 frames. Task ``pose_estimation_2d3d``: 64 consecutive 2D frames (edge-replicated at the
chunk borders, so no chunk is dropped) -> the root-relative 3D pose of the centre frame. Reported: P-MPJPE
(Protocol #2, the HumanEva headline) and MPJPE in mm, averaged per action then over the 3 actions, on every
``EVAL_STRIDE``-th frame of each test sequence (eval_frame_stride; the same frames for the baseline), at the final
step (no model selection on the test split), with the quantisation floor of the coordinate bins.

Two deviations from VideoPose3D, both forced by the data folder:
* the npz holds no camera parameters, so the 3D targets stay in the world frame of the file (z up, root-relative)
  instead of each camera's frame. P-MPJPE is unaffected (it removes any rotation); MPJPE is the world-frame error.
* for the same reason flip test-time augmentation is off (``options.flip_test: false``): un-flipping negates x,
  which mirrors a camera-frame pose but not a world-frame one.
2D inputs are normalised like VideoPose3D's ``normalize_screen_coordinates`` (PreNormalize2D mode image, 640x480
HumanEva frames); no augmentation (a 2D rotation or flip would no longer match the world-frame target).

Budget: STEPS steps of batch 16 (each item a random centre frame of a random training sequence), l1_weight 2 on
the soft-argmax coordinates (the demo config's setting for coordinate tasks), seed 0, one CPU thread.

Local baseline (computed here, same test frames, same metric code ``ups_toolkit.metrics``): a single-frame lifting
MLP in the style of Martinez et al. (ICCV 2017): the normalised 2D joints of one frame -> root-relative 3D (world
frame), 3 hidden Linear+ReLU layers of 512 with dropout, Adam, BASELINE_STEPS steps of batch 256 on every training
frame, seeded.

Anchors: the HumanEva-I table of Pavllo et al. (VideoPose3D, CVPR 2019) is cited in docs/datasets.md §3 as [R] but no
number is quoted there or in docs/design.md, so none is printed ("not quoted"). They use camera-frame targets and
(for their headline) detected 2D, so they would not be like for like anyway.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import realdata

STEPS, QUICK_STEPS = 1500, 60  # ~0.45 s per step on one free CPU thread
EVAL_STRIDE, QUICK_EVAL_STRIDE = 5, 100  # stride 5: 2,145 test poses, ~30 s of decoding
BASELINE_STEPS, QUICK_BASELINE_STEPS = 3000, 200
ACTIONS = ["Walking", "Jog", "Box"]
IMG_SHAPE = [480, 640]  # HumanEva-I video frames, h x w (all 2D lies inside it)
TRANSFORMS = [{"type": "PreNormalize2D", "mode": "image", "img_shape": IMG_SHAPE}]
# world-frame targets: no flip TTA (see the docstring)
OVERRIDES = {"options": {"flip_test": False}}


def task_settings(data, batch_size: int = 16, eval_frame_stride: int = EVAL_STRIDE) -> dict:
    """The HumanEva-I lifting task as it appears in an experiment config (shared with ups_joint_vs_separate.py).
    The converted folder holds the 2D keypoints and their 3D partner (``keypoint_3d``) side by side, so no
    ``target_path`` is needed."""
    return {
        "pose_estimation_2d3d": {
            "train": {"path": str(data), "split": "train"},
            "eval": {"path": str(data), "split": "test"},
            "transforms": TRANSFORMS,
            "batch_size": batch_size,
            "eval_frame_stride": eval_frame_stride,
            "overrides": OVERRIDES,
            "l1_weight": 2.0,  # soft-argmax L1 (metres) beside the bin cross-entropy, as in the demo
        }
    }


def prepare(bench: realdata.Bench):
    # --split humaneva: Train/* -> "train", Validate/* -> "test"; one sample per (chunk, camera)
    return bench.convert("videopose3d", bench.source("HumanEva_I_videopose3d_npz"), "humaneva_wjb",
                         "--split", "humaneva", "--actions", ",".join(ACTIONS))


# ----------------------------------------------------------------------------------------------------------------------
# local baseline: single-frame lifting MLP


def _frames(data, split: str, stride: int | None):
    """(inputs (N, 30) normalised 2D, targets (N, 15, 3) root-relative metres, action names) of a split: every frame,
    or every ``stride``-th frame of each sequence (the evaluation items of the task, in the same order)."""
    from ups_toolkit.data.prepared import load_prepared
    from ups_toolkit.skeleton.transforms import build_transforms

    ds = load_prepared(data, split=split)
    names = ds.features["label"].names
    normalise = build_transforms(TRANSFORMS)
    xs, ys, actions = [], [], []
    for i in range(len(ds)):
        sample = ds[i]
        kp = np.asarray(sample["keypoint"], np.float32)  # (T, 1, 15, 2) pixels
        rows = np.arange(0, len(kp), stride or 1)
        x = normalise({"keypoint": kp[rows], "layout": str(sample["layout"])})["keypoint"][:, 0]
        y = np.asarray(sample["keypoint_3d"], np.float64)[rows, 0]
        xs.append(x.reshape(len(rows), -1))
        ys.append(y - y[:, :1])  # root (pelvis, joint 0) at the origin, as the task's targets
        actions += [names[int(sample["label"])]] * len(rows)
    return np.concatenate(xs), np.concatenate(ys), actions


def mlp_baseline(data, eval_stride: int, steps: int, seed: int) -> dict:
    """Train the single-frame MLP on every training frame; per-action and mean MPJPE / P-MPJPE (mm) on the test
    frames the model is scored on, with the metric functions of ups_toolkit.metrics."""
    import torch
    from torch import nn

    from ups_toolkit.metrics import mpjpe, p_mpjpe, per_action_mean

    torch.manual_seed(seed)
    x_train, y_train, _ = _frames(data, "train", None)
    x_test, y_test, actions = _frames(data, "test", eval_stride)
    width, joints = 512, y_train.shape[1]
    net = nn.Sequential(nn.Linear(x_train.shape[1], width), nn.ReLU(), nn.Dropout(0.1),
                        nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.1),
                        nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.1),
                        nn.Linear(width, joints * 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    xt, yt = torch.tensor(x_train), torch.tensor(y_train.reshape(len(y_train), -1), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(xt), (256,), generator=gen)
        loss = (net(xt[idx]) - yt[idx]).abs().mean()  # L1 in metres
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - started
    net.eval()
    with torch.no_grad():
        pred = net(torch.tensor(x_test)).double().numpy().reshape(y_test.shape)
    p1 = [mpjpe(p, t) for p, t in zip(pred, y_test)]
    p2 = [p_mpjpe(p, t) for p, t in zip(pred, y_test)]
    (p1_actions, p1_mean), (p2_actions, p2_mean) = per_action_mean(p1, actions), per_action_mean(p2, actions)
    return {"mpjpe_mm": 1000 * p1_mean, "p_mpjpe_mm": 1000 * p2_mean,
            "mpjpe_per_action_mm": {a: 1000 * v for a, v in p1_actions.items()},
            "p_mpjpe_per_action_mm": {a: 1000 * v for a, v in p2_actions.items()},
            "test_frames": len(y_test), "train_frames": len(y_train), "train_seconds": seconds, "steps": steps}


def main() -> int:
    args = realdata.parser(__doc__).parse_args()
    bench = realdata.Bench("humaneva_lifting", args)
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    stride = QUICK_EVAL_STRIDE if args.quick else EVAL_STRIDE
    data = prepare(bench)
    task = "pose_estimation_2d3d"
    config = bench.experiment("humaneva_pose_estimation_2d3d", task_settings(data, eval_frame_stride=stride), steps,
                              training={"l1_weight": 2.0})
    final, seconds = bench.train("humaneva_pose_estimation_2d3d", config)
    ups = final[task]
    baseline = mlp_baseline(data, stride, QUICK_BASELINE_STEPS if args.quick else BASELINE_STEPS, args.seed)

    per = [f"{baseline['p_mpjpe_per_action_mm'][a]:.1f}" for a in ACTIONS]
    print(f"\nHumanEva-I GT 2D -> 3D (train Train/* 63 seqs, test Validate/* 72 seqs, Walking/Jog/Box, 3 cameras), "
          f"every {stride}-th test frame ({baseline['test_frames']} poses), {steps} steps of batch 16, final step, "
          f"{args.threads} thread(s); world-frame root-relative targets, no flip TTA")
    print(realdata.table([
        ["UPS (this toolkit), 64-frame window", ups["p_mpjpe_mm"], "", ups["mpjpe_mm"], f"{seconds:.0f}"],
        ["single-frame MLP (local baseline)", baseline["p_mpjpe_mm"], " / ".join(per), baseline["mpjpe_mm"],
         f"{baseline['train_seconds']:.0f}"],
        ["VideoPose3D, Pavllo et al. CVPR 2019 [R, docs/datasets.md §3]", "not quoted", "", "not quoted", ""],
    ], ["model", "P-MPJPE mm (mean of 3 actions)", "P-MPJPE Walk / Jog / Box", "MPJPE mm", "train s"]))
    print(f"UPS: quantisation floor {ups['floor_mm']:.2f} mm, clip rate {ups['clip_rate_%']:.2f} %, "
          f"N-MPJPE {ups['n_mpjpe_mm']:.1f} mm, soft-argmax MPJPE {ups['mpjpe_soft_mm']:.1f} mm "
          f"(evaluation.py gives the mean over actions only). Baseline MPJPE Walk / Jog / Box: "
          + " / ".join(f"{baseline['mpjpe_per_action_mm'][a]:.1f}" for a in ACTIONS))
    bench.print_commands()
    out = bench.save({"tasks": {task: {"metrics": ups, "train_seconds": seconds, "steps": steps,
                                       "eval_frame_stride": stride}},
                      "mlp_baseline": baseline})
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
