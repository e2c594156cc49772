"""Shared pieces of the training tests: small synthetic data, a tiny offline text encoder, tiny run configs, and a
runner for ``train.py`` / ``python -m ups_toolkit.evaluate`` as users call them.

The synthetic data and the text encoder are built once per pytest process (module-level cache): every training test
reuses them, and the text-embedding cache is shared, so the vocabulary is embedded once.
"""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from conftest import REPO, one_thread  # noqa: F401  (re-exported for the training tests)

_CACHE: dict = {}


def work_dir() -> Path:
    if "root" not in _CACHE:
        _CACHE["root"] = Path(tempfile.mkdtemp(prefix="ups-training-tests-"))
    return _CACHE["root"]


def synthetic_root() -> Path:
    """Synthetic demo data with 2 samples per class (15 train / 5 test clips per trimmed kind)."""
    if "synthetic" not in _CACHE:
        from ups_toolkit.data.synthetic import write_synthetic

        _CACHE["synthetic"] = write_synthetic(work_dir() / "synthetic", num_per_class=2, seed=0)
    return _CACHE["synthetic"]


def tiny_text_encoder() -> Path:
    """A 2-layer, 32-wide RoBERTa with a BPE tokenizer trained on the vocabulary's prompts (seconds to build and to
    embed 3,850 prompts with; the demo test uses the real MiniLM package)."""
    if "encoder" not in _CACHE:
        from tiny_text_encoder import build_tiny_roberta

        from ups_toolkit.tokenization import build_vocabulary

        prompts = [p for p in build_vocabulary().prompts if p is not None]
        _CACHE["encoder"] = build_tiny_roberta(work_dir() / "tiny_roberta", prompts)
    return _CACHE["encoder"]


TASKS = {
    "action_recognition_3d": {
        "train": {"path": "{synthetic}/ntu25_3d", "split": "train"},
        "eval": {"path": "{synthetic}/ntu25_3d", "split": "test"},
        "transforms": [{"type": "PreNormalize3D"}],
        "batch_size": 4,
    },
    "pose_estimation_2d3d": {
        "train": {"path": "{synthetic}/h36m17_2d", "target_path": "{synthetic}/h36m17_3d", "split": "train"},
        "eval": {"path": "{synthetic}/h36m17_2d", "target_path": "{synthetic}/h36m17_3d", "split": "test"},
        "transforms": [{"type": "PreNormalize2D", "mode": "image"}],
        "batch_size": 4,
        "eval_frame_stride": 20,
    },
    "temporal_action_detection": {
        "train": {"path": "{synthetic}/untrimmed", "split": "train"},
        "eval": {"path": "{synthetic}/untrimmed", "split": "test"},
        "transforms": [{"type": "PreNormalize3D"}],
        "batch_size": 2,
    },
}


def tiny_config(folder: Path, tasks=("action_recognition_3d", "pose_estimation_2d3d"), **sections) -> Path:
    """A run config on the small synthetic data with a tiny encoder and decoder; ``sections`` update the top-level
    sections (``training={"steps": 4}``). Returns the YAML path; the run goes to ``folder/run``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "seed": 0,
        "output_dir": str(folder / "run"),
        "synthetic": {"enabled": False, "dir": str(synthetic_root())},
        "vocabulary": {"text_encoder": str(tiny_text_encoder()), "cache_dir": str(work_dir() / "embeddings")},
        "model": {
            "encoder": {"preset": "tiny", "d_model": 16, "num_heads": 2, "num_blocks": 2, "task_dim": 8,
                        "drop_path": 0.1},
            "d_model": 32, "decoder_layers": 1, "decoder_heads": 2, "ffn": 64, "dropout": 0.1,
        },
        "tasks": {name: TASKS[name] for name in tasks},
        "optim": {"lr": 1.0e-3},
        "training": {"steps": 4, "log_every": 2},
        "evaluation": {"batch_size": 8},
        "logging": {"tensorboard": True, "plots": True},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(**extra) -> dict:
    """The test environment for a subprocess. One torch thread: tiny models gain nothing from more, and several
    test processes or ranks sharing two cores would otherwise spin against each other."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **{k: str(v) for k, v in extra.items()}}
    env.pop("PYTHONPATH", None)
    return env


def run(args: list, *, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command from the repository root (``python train.py ...`` as a user would), text output."""
    return subprocess.run([str(a) for a in args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env or environment())


def train_cmd(config: Path, *extra) -> list:
    return [sys.executable, "train.py", "--config", config, "--quiet", *extra]


def load_weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))
