"""USDRL pretraining on NW-UCLA (cross-view), then linear probe and kNN-1: pretrained vs randomly initialised
encoder of the same architecture, same probe budget (docs/design.md D10, §12.6).

    python benchmarks/pretrain_nwucla.py            # ~10 minutes on 2 CPU cores (400 pretraining steps)
    python benchmarks/pretrain_nwucla.py --quick    # ~2 minutes (60 steps): a smoke run, not a benchmark

1. Converts ../shared/data/NW-UCLA with the xview split (train v01+v02 1,020, test v03 464) into a temporary folder.
2. Pretrains a small DSTE (d 64, 2 heads, T 32) with the USDRL recipe (four views, MG-FD with the AAAI weights,
   Adam + L2 1e-5, lr 5e-4) on the **train** split without labels, through ``train.py --stage pretrain``.
3. Linear probe (features z-scored with train statistics, SGD lr 0.1, 100 epochs, ×0.1 at 60 and 80, batch 512) and
   kNN-1 (cosine) for the pretrained encoder and for a freshly initialised one (seed 0). Final-epoch numbers are the
   result; the probe's best tested epoch is printed too, labelled as such.
Inputs are PreNormalize3D-ed, then resized to T. Prints a table and the commands it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "NW-UCLA"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--quick", action="store_true", help="60 pretraining steps, 30 probe epochs")
    parser.add_argument("--steps", type=int, default=None, help="pretraining steps (default 400, quick 60)")
    parser.add_argument("--workdir", default=None, help="keep the converted data and the run here")
    args = parser.parse_args()
    steps = args.steps or (60 if args.quick else 400)
    probe_epochs, milestones = (30, "20,25") if args.quick else (100, "60,80")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ups-pretrain-nwucla-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    data = work / "nwucla_xview"
    commands = []
    if not data.exists():
        cmd = [sys.executable, "-m", "ups_toolkit.data", "convert", "nw-ucla", args.source, str(data), "--split",
               "xview", "--quiet"]
        commands.append(cmd)
        subprocess.run(cmd, check=True, cwd=REPO, env=env)

    config = {
        "stage": "pretrain", "seed": 0, "output_dir": str(work / "run"),
        "data": {"path": str(data), "split": "train", "transforms": [{"type": "PreNormalize3D"}]},
        "model": {"encoder": {"preset": "tiny", "d_model": 64, "num_heads": 2, "num_frames": 32, "drop_path": 0.0},
                  "projector_hidden": 256, "projector_out": 256, "instance_out": 512},
        "optim": {"lr": 5.0e-4, "weight_decay": 1.0e-5, "lr_milestones": [10_000]},
        "training": {"epochs": 10_000, "max_steps": steps, "batch_size": 32, "log_every": 20},
        "logging": {"tensorboard": False, "plots": True},
    }
    config_path = work / "pretrain_nwucla.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    # resume auto: a finished run in --workdir is reused (nothing left to train), an interrupted one continues
    cmd = [sys.executable, "train.py", "--config", str(config_path), "--quiet", "--resume_from_checkpoint", "auto"]
    commands.append(cmd)
    subprocess.run(cmd, check=True, cwd=REPO, env=env)
    records = [json.loads(l) for l in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    done, pretrain_seconds = 0, 0.0
    for r in records:
        pretrain_seconds += r["seconds_per_step"] * (r["step"] - done)
        done = r["step"]

    import torch

    torch.set_num_threads(int(env["OMP_NUM_THREADS"]))  # more threads than cores thrash on a shared machine
    from ups_toolkit.pretraining.evaluate import build_parser, evaluate

    encoder = work / "run" / "encoder.safetensors"
    rows = []
    for random_init in (False, True):
        row = {"encoder": "random init" if random_init else f"USDRL, {steps} steps"}
        for protocol in ("linear", "knn"):
            argv = [protocol, "--encoder", str(encoder), "--data", str(data), "--transforms",
                    "[{type: PreNormalize3D}]"]
            if protocol == "linear":
                argv += ["--standardize", "--lr", "0.1", "--epochs", str(probe_epochs), "--milestones", milestones,
                         "--report-best"]
            if random_init:
                argv.append("--random-init")
            commands.append([sys.executable, "-m", "ups_toolkit.pretraining.evaluate", *argv])
            result = evaluate(build_parser().parse_args(argv))
            row[protocol] = result["top1"]
            if protocol == "linear":
                row["best"] = (result["best_epoch"], result["best_epoch_top1"])
        rows.append(row)

    print(f"\nNW-UCLA xview (train 1,020 / test 464), DSTE d 64 T 32, pretraining {steps} steps of batch 32 "
          f"({pretrain_seconds:.0f} s)")
    print(f"{'encoder':<22} {'linear top-1 (final)':>21} {'kNN-1 top-1':>12}   linear best epoch (labelled)")
    for row in rows:
        epoch, best = row["best"]
        print(f"{row['encoder']:<22} {row['linear']:>20.2f}% {row['knn']:>11.2f}%   epoch {epoch}: {best:.2f}%")
    print("\ncommands:")
    for cmd in commands:
        print("  " + " ".join(str(c) if " " not in str(c) else repr(str(c)) for c in cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
