"""Exact resume (docs/design.md D9): N steps straight == N/2 steps, SIGKILL, resume from the checkpoint, N/2 more steps:
bit-identical parameters on the CPU (dropout, DropPath and Gumbel routing on, so the RNG states matter too)."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from training_helpers import REPO, environment, load_weights, run, tiny_config, train_cmd

STEPS = 8
SETTINGS = dict(training={"steps": STEPS, "checkpoint_every": STEPS // 2, "log_every": 2},
                logging={"tensorboard": False, "plots": False})


def test_killed_run_resumes_to_identical_parameters(tmp_path):
    straight = tiny_config(tmp_path / "straight", **SETTINGS)
    result = run(train_cmd(straight))
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tiny_config(tmp_path / "killed", **SETTINGS)
    run_dir = tmp_path / "killed" / "run"
    latest = run_dir / "checkpoints" / "latest"
    process = subprocess.Popen([str(a) for a in train_cmd(killed)], cwd=REPO, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (latest.is_file() and latest.read_text().strip() == f"step-{STEPS // 2:06d}"):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "model").exists(), "the run ended before it was killed: the test proves nothing"
    state = json.loads((run_dir / "checkpoints" / f"step-{STEPS // 2:06d}" / "trainer_state.json").read_text())
    assert state["step"] == STEPS // 2 and not state["finished"]

    resumed = run(train_cmd(killed, "--resume_from_checkpoint", "auto"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    a, b = load_weights(tmp_path / "straight" / "run" / "model"), load_weights(run_dir / "model")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    straight_metrics = json.loads((tmp_path / "straight" / "run" / "final_metrics.json").read_text())
    assert json.loads((run_dir / "final_metrics.json").read_text()) == straight_metrics
    # the log of the resumed run continues where the checkpoint was taken
    steps = [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["kind"] == "train"]
    assert steps[-2:] == [6, 8]

    # resuming the finished run trains nothing and keeps (and reports) its final metrics
    again = run(train_cmd(killed, "--resume_from_checkpoint", "auto"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run_dir / "final_metrics.json").read_text()) == straight_metrics


def test_resume_needs_a_checkpoint(tmp_path):
    config = tiny_config(tmp_path, **SETTINGS)
    result = run(train_cmd(config, "--resume_from_checkpoint", str(tmp_path / "nothing-here")))
    assert result.returncode == 2
    assert "not a checkpoint" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("partial", [".step-000004.tmp", "step-000004"])
def test_latest_ignores_partial_checkpoints(tmp_path, partial, monkeypatch, capsys):
    """A checkpoint is complete only once renamed into place with its trainer_state.json; a `latest` naming anything
    else falls back to the newest complete one, with a warning (the files' contents: tests/test_checkpoint_safety)."""
    from ups_toolkit.training import checkpoint
    from ups_toolkit.training.checkpoint import resolve_checkpoint

    monkeypatch.setattr(checkpoint, "verify_checkpoint", lambda path, processes=None: {})
    root = tmp_path / "run" / "checkpoints"
    (root / "step-000002").mkdir(parents=True)
    (root / "step-000002" / "trainer_state.json").write_text("{}")
    (root / "latest").write_text("step-000002\n")
    (root / partial).mkdir()  # a save killed half-way
    assert resolve_checkpoint("auto", tmp_path / "run") == root / "step-000002"
    assert capsys.readouterr().err == ""
    (root / "latest").write_text(f"{partial}\n")
    assert resolve_checkpoint("auto", tmp_path / "run") == root / "step-000002"
    assert f"names {partial!r}, which is not a complete checkpoint" in capsys.readouterr().err
    assert resolve_checkpoint("auto", tmp_path / "elsewhere") is None


def test_resume_inside_a_finetuning_stage_is_exact(tmp_path):
    """The fine-tuning stage's schedule (its own steps and learning rate) is rebuilt from the config on resume, the
    checkpoint restoring only its position: resumed mid-stage, the fine-tuned model equals the uninterrupted one."""
    import shutil

    settings = dict(tasks=("action_recognition_3d",),
                    training={"steps": 4, "checkpoint_every": 2, "keep_checkpoints": 10, "log_every": 2},
                    finetune={"steps": 4, "lr": 5.0e-4}, logging={"tensorboard": False, "plots": False})
    straight = tiny_config(tmp_path / "straight", **settings)
    result = run(train_cmd(straight))
    assert result.returncode == 0, result.stderr[-3000:]
    config = tiny_config(tmp_path / "resumed", **settings)
    folder = tmp_path / "resumed" / "run"
    shutil.copytree(tmp_path / "straight" / "run", folder)
    shutil.rmtree(folder / "finetuned")
    checkpoint = folder / "checkpoints" / "step-000006"  # fine-tuning step 2 of 4
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["stage"] == 1 and state["step"] == 2
    resumed = run(train_cmd(config, "--resume_from_checkpoint", checkpoint))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_weights(tmp_path / "straight" / "run" / "finetuned" / "action_recognition_3d")
    b = load_weights(folder / "finetuned" / "action_recognition_3d")
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert a.keys() == b.keys() and not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
