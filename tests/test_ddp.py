"""Two-process CPU training (docs/design.md D9, docs/dependencies.md §5): ``accelerate launch --multi_gpu
--num_processes 2`` with ``Accelerator(cpu=True)`` runs 2 ranks over gloo; the gathered evaluation equals a
single-process evaluation of the same model; the ``--cpu`` launcher that silently runs one process is caught by
``training.expect_processes``."""

import json
import sys

import pytest
from training_helpers import environment, run, tiny_config

TASKS = ("action_recognition_3d", "pose_estimation_2d3d", "temporal_action_detection")


def launch(processes: int, *args, cpu: bool = False, script=("-m", "ups_toolkit.train")):
    """``accelerate launch ... -m ups_toolkit.train ARGS`` (the README's multi-process command), or ``script``."""
    from training_helpers import free_port

    flags = ["--cpu"] if cpu else ["--multi_gpu"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_processes", processes,
           "--main_process_port", free_port(), *script, *args]
    # one thread per rank: two ranks share the two cores
    return run(cmd, env=environment(OMP_NUM_THREADS=1), timeout=900)


def test_two_cpu_processes_train_and_gather_the_same_metrics_as_one(tmp_path):
    config = tiny_config(tmp_path, tasks=TASKS, training={"steps": 4, "log_every": 2, "expect_processes": 2},
                         logging={"tensorboard": False, "plots": True})
    result = launch(2, "--config", config, "--quiet")
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "run"
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["processes"] for r in records if r["kind"] == "train"} == {2}
    gathered = json.loads((out / "final_metrics.json").read_text())
    assert set(gathered) == set(TASKS)

    # the same model scored by one process over the whole evaluation data
    single = run([sys.executable, "-m", "ups_toolkit.evaluate", "--model", out / "model", "--config", config,
                  "--training.expect_processes", "null", "--out", tmp_path / "single.json", "--quiet"])
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((tmp_path / "single.json").read_text())
    for task in TASKS:
        assert alone[task].keys() == gathered[task].keys()
        for metric, value in gathered[task].items():
            assert alone[task][metric] == pytest.approx(value, rel=1e-6, abs=1e-6), (task, metric)
    assert "action_recognition_3d" in single.stdout and "top1" in single.stdout  # the printed table


def test_cpu_launcher_running_one_process_is_caught(tmp_path):
    config = tiny_config(tmp_path, training={"steps": 2, "expect_processes": 2})
    result = launch(2, "--config", config, "--quiet", cpu=True, script=["train.py"])
    assert result.returncode != 0
    assert "key 'training.expect_processes': 2 processes expected, 1 running" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_two_process_run_resumed_mid_epoch_equals_the_uninterrupted_run(tmp_path):
    """Resume under 2-process DDP is exact: the run restarted from its step-3 checkpoint (mid-epoch 1: 10 clips in
    batches of 4 over 2 ranks = 2 batches per rank and epoch) ends bitwise equal to the run that never stopped. The
    epoch must reach the distributed sampler after batches are skipped, else the resumed run replays epoch 0's
    order."""
    import torch
    from training_helpers import load_weights

    settings = dict(training={"steps": 6, "log_every": 2, "checkpoint_every": 3, "keep_checkpoints": 5,
                              "expect_processes": 2},
                    logging={"tensorboard": False, "plots": False})
    tasks = ("action_recognition_3d",)
    straight = tiny_config(tmp_path / "straight", tasks=tasks, **settings)
    result = launch(2, "--config", straight, "--quiet")
    assert result.returncode == 0, result.stderr[-4000:]
    checkpoint = tmp_path / "straight" / "run" / "checkpoints" / "step-000003"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["loaders"] == {"action_recognition_3d": [1, 1]}, "not mid-epoch 1: the test proves nothing"

    resumed = tiny_config(tmp_path / "resumed", tasks=tasks, **settings)
    result = launch(2, "--config", resumed, "--quiet", "--resume_from_checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr[-4000:]
    a, b = load_weights(tmp_path / "straight" / "run" / "model"), load_weights(tmp_path / "resumed" / "run" / "model")
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"
