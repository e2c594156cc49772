"""Resume that cannot be turned against the user or lose a run (issue 17): no pickle from a checkpoint ever runs,
a damaged or unnamed newest checkpoint falls back to the newest complete one, a folder holding a run is never
wiped without --overwrite, and a resume under a config that alters the run is refused unless allowed (and then
recorded)."""

import json
import shutil

import pytest
import torch
import yaml
from training_helpers import load_weights, run, tiny_config, train_cmd

SETTINGS = dict(tasks=("action_recognition_3d",),
                training={"steps": 6, "log_every": 1, "checkpoint_every": 2, "keep_checkpoints": 5},
                logging={"tensorboard": False, "plots": False})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 6-step run with checkpoints at steps 2, 4 and 6 (the last one marks the run finished)."""
    folder = tmp_path_factory.mktemp("finished")
    result = run(train_cmd(tiny_config(folder, **SETTINGS)))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def copy_of(finished, tmp_path):
    """(config, run folder): a copy of the finished run under a config that differs only in output_dir."""
    config = tiny_config(tmp_path, **SETTINGS)
    shutil.copytree(finished, tmp_path / "run")
    return config, tmp_path / "run"


def error_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def same_weights(a_dir, b_dir) -> None:
    a, b = load_weights(a_dir), load_weights(b_dir)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


class Payload:
    """Unpickled with weights_only=False, it creates the marker file: proof that a checkpoint ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


# ----------------------------------------------------------------------------------------------------------------------
# no pickle from a checkpoint


def test_a_checkpoint_holds_no_pickle_of_ours(finished):
    checkpoint = finished / "checkpoints" / "step-000004"
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["scheduler"]["last_epoch"] == 4 and state["config"]["training"]["steps"] == 6


@pytest.mark.parametrize("craft", ["custom_checkpoint", "random_states", "older_format"])
def test_crafted_pickles_in_a_checkpoint_never_run(finished, tmp_path, craft):
    config, folder = copy_of(finished, tmp_path)
    checkpoint = folder / "checkpoints" / "step-000004"
    marker = tmp_path / "pwned"
    if craft == "random_states":
        target = checkpoint / "random_states_0.pkl"
    else:
        target = checkpoint / "custom_checkpoint_0.pkl"
        if craft == "older_format":  # what ups-toolkit wrote before: its state as custom_checkpoint_{0,1}.pkl
            state = json.loads((checkpoint / "trainer_state.json").read_text())
            for key in ("format", "scheduler", "config"):
                del state[key]
            (checkpoint / "trainer_state.json").write_text(json.dumps(state))
            torch.save({"base_lrs": [1e-3]}, checkpoint / "custom_checkpoint_1.pkl")
    torch.save({"payload": Payload(marker)}, target)
    before = snapshot(folder)
    result = run(train_cmd(config, "--resume_from_checkpoint", checkpoint))
    line = error_line(result)
    assert not marker.exists(), "the checkpoint ran code"
    assert str(checkpoint) in line and ("custom_checkpoint_0.pkl" in line or "random_states_0.pkl" in line), line
    assert snapshot(folder) == before  # refused before anything was written


def test_a_finished_run_of_an_older_version_is_still_reused_without_reading_its_pickles(finished, tmp_path):
    """benchmarks/realdata.py reruns `--resume_from_checkpoint auto` into finished folders to reuse them, also
    folders written before checkpoints lost their pickles: that reads trainer_state.json only."""
    config, folder = copy_of(finished, tmp_path)
    marker = tmp_path / "pwned"
    for checkpoint in (folder / "checkpoints").glob("step-*"):
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        for key in ("format", "scheduler", "config"):
            del state[key]
        (checkpoint / "trainer_state.json").write_text(json.dumps(state))
        for i in (0, 1):
            torch.save({"payload": Payload(marker)}, checkpoint / f"custom_checkpoint_{i}.pkl")
    model = (folder / "model" / "model.safetensors").stat().st_mtime_ns
    result = run(train_cmd(config, "--resume_from_checkpoint", "auto"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists(), "the checkpoint ran code"
    assert (folder / "model" / "model.safetensors").stat().st_mtime_ns == model


# ----------------------------------------------------------------------------------------------------------------------
# lost runs


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.bin"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_complete_one(finished, tmp_path, damaged):
    config, folder = copy_of(finished, tmp_path)
    path = folder / "checkpoints" / "step-000006" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a truncated file
    result = run(train_cmd(config, "--resume_from_checkpoint", "auto"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipping checkpoint {folder / 'checkpoints' / 'step-000006'}: {path}" in result.stderr, result.stderr
    assert f"resuming from {folder / 'checkpoints' / 'step-000004'}" in result.stderr
    # steps 5 and 6 trained again, exactly as the first time
    same_weights(finished / "model", folder / "model")
    assert (folder / "checkpoints" / "latest").read_text().strip() == "step-000006"


def test_no_usable_checkpoint_is_an_error_that_keeps_them(finished, tmp_path):
    config, folder = copy_of(finished, tmp_path)
    for checkpoint in (folder / "checkpoints").glob("step-*"):
        (checkpoint / "model.safetensors").write_bytes(b"")
    result = run(train_cmd(config, "--resume_from_checkpoint", "auto"))
    assert "no usable checkpoint" in error_line(result)
    assert len(list((folder / "checkpoints").glob("step-*"))) == 3


def test_missing_latest_resumes_from_the_newest_complete_checkpoint_and_deletes_none(finished, tmp_path):
    config, folder = copy_of(finished, tmp_path)
    shutil.rmtree(folder / "checkpoints" / "step-000006")
    (folder / "checkpoints" / "latest").unlink()
    result = run(train_cmd(config, "--resume_from_checkpoint", "auto"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "latest is missing" in result.stderr and "resuming from" in result.stderr, result.stderr
    assert (folder / "checkpoints" / "step-000002").is_dir()  # not thrown away by a restart from step 0
    same_weights(finished / "model", folder / "model")
    steps = [json.loads(l)["step"] for l in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(1) == 1  # the log continued: step 1 was not trained again


def test_a_finished_run_folder_is_never_retrained_without_overwrite(finished, tmp_path):
    config, folder = copy_of(finished, tmp_path)
    before = snapshot(folder)
    line = error_line(run(train_cmd(config)))
    assert f"{folder} holds a finished run" in line and "--overwrite" in line
    assert snapshot(folder) == before
    # what benchmarks/realdata.py does: rerun with --resume_from_checkpoint auto to reuse the finished result
    again = run(train_cmd(config, "--resume_from_checkpoint", "auto"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert (folder / "model" / "model.safetensors").stat().st_mtime_ns == \
        before["model/model.safetensors"][0]
    assert json.loads((folder / "final_metrics.json").read_text()) == \
        json.loads((finished / "final_metrics.json").read_text())
    # --overwrite trains it again (the same weights: same config, same seed)
    assert run(train_cmd(config, "--overwrite")).returncode == 0
    same_weights(finished / "model", folder / "model")


# ----------------------------------------------------------------------------------------------------------------------
# resume under a changed config


def test_resume_refuses_a_changed_config_naming_each_key_before_writing(finished, tmp_path):
    config, folder = copy_of(finished, tmp_path)
    checkpoint = folder / "checkpoints" / "step-000004"
    before = snapshot(folder)
    result = run(train_cmd(config, "--resume_from_checkpoint", checkpoint, "--optim.lr", "0.01", "--seed", "1",
                           "--model.decoder_layers", "2", "--training.log_every", "3"))
    line = error_line(result)
    for key in ("optim.lr 0.001 -> 0.01", "seed 0 -> 1", "model.decoder_layers 1 -> 2",
                "--allow_config_change seed,model.decoder_layers,optim.lr"):
        assert key in line, line
    assert "log_every" not in line  # how often it logs does not change the run
    assert snapshot(folder) == before


def test_an_allowed_lr_change_takes_effect_and_is_recorded(finished, tmp_path):
    config, folder = copy_of(finished, tmp_path)
    checkpoint = folder / "checkpoints" / "step-000004"
    result = run(train_cmd(config, "--resume_from_checkpoint", checkpoint, "--optim.lr", "0.005",
                           "--allow_config_change", "optim"))
    assert result.returncode == 0, result.stderr[-3000:]
    lr = {r["step"]: r["lr"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
          if r["kind"] == "train"}
    original = {r["step"]: r["lr"] for r in map(json.loads, (finished / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"}
    assert lr[4] == original[4] and lr[6] == pytest.approx(5 * original[6], rel=1e-9)
    record = json.loads((folder / "config_changes.jsonl").read_text())
    assert record["step"] == 4 and record["changes"] == {"optim.lr": {"old": 0.001, "new": 0.005}}
    assert yaml.safe_load((folder / "config.yaml").read_text())["optim"]["lr"] == 0.005


def test_more_steps_extend_a_finished_run_only_when_allowed(finished, tmp_path):
    config, folder = copy_of(finished, tmp_path)
    line = error_line(run(train_cmd(config, "--resume_from_checkpoint", "auto", "--training.steps", "8")))
    assert "training.steps 6 -> 8" in line and "--allow_config_change training.steps" in line
    result = run(train_cmd(config, "--resume_from_checkpoint", "auto", "--training.steps", "8",
                           "--allow_config_change", "training.steps"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "checkpoints" / "latest").read_text().strip() == "step-000008"
    state = json.loads((folder / "checkpoints" / "step-000008" / "trainer_state.json").read_text())
    assert state["finished"] and state["total_step"] == 8 and state["config"]["training"]["steps"] == 8
    steps = [r["step"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    record = json.loads((folder / "config_changes.jsonl").read_text())
    assert record["changes"] == {"training.steps": {"old": 6, "new": 8}}
    # now the run's config says 8 steps: the same resume needs no permission and trains nothing
    again = run(train_cmd(config, "--resume_from_checkpoint", "auto", "--training.steps", "8"))
    assert again.returncode == 0, again.stderr[-3000:]
