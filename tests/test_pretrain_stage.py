"""The pretraining stage (``train.py --stage pretrain``, docs/design.md D10) end to end on the small synthetic data:
training with a finite, decreasing MG-FD loss and the encoder export, exact resume after SIGKILL, a UPS run starting
its encoder from the export (``model.encoder_init``), the three evaluation commands, and config errors that name the
key (batch size 1 included)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from training_helpers import REPO, environment, load_weights, one_thread, run, synthetic_root, tiny_config, work_dir

ENCODER = {"preset": "tiny", "d_model": 16, "num_heads": 2, "num_frames": 64, "drop_path": 0.1}


def pretrain_config(folder, **sections):
    """A tiny pretraining config on the synthetic ntu25_3d train split (10 clips: 3 batches of 3 per epoch)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "stage": "pretrain",
        "seed": 0,
        "output_dir": str(folder / "run"),
        "data": {"path": str(synthetic_root() / "ntu25_3d"), "split": "train",
                 "transforms": [{"type": "PreNormalize3D"}]},
        "model": {"encoder": dict(ENCODER), "projector_hidden": 32, "projector_out": 32, "instance_out": 32},
        "optim": {"lr": 2.0e-3, "lr_milestones": [2]},
        "training": {"epochs": 3, "batch_size": 3, "log_every": 1},
        "logging": {"tensorboard": False, "plots": True},
    }
    for key, value in sections.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    path = folder / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def pretrain_cmd(config, *extra):
    return [sys.executable, "train.py", "--config", config, "--quiet", *extra]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One finished 9-step pretraining run, shared by the tests that read its outputs."""
    folder = tmp_path_factory.mktemp("pretrain")
    result = run(pretrain_cmd(pretrain_config(folder)))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run"


def test_pretrain_stage_trains_logs_and_exports(pretrained):
    records = [json.loads(l) for l in (pretrained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"]["mgfd"] for r in records if r["kind"] == "train"]
    assert len(losses) == 9 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    # step decay at epoch 2 (3 steps per epoch): lr x0.1 from step 6 on
    lrs = [r["lr"] for r in records]
    assert lrs[4] == pytest.approx(2e-3) and lrs[6] == pytest.approx(2e-4)
    assert (pretrained / "plots" / "training_curve.png").stat().st_size > 1000
    state = json.loads((pretrained / "checkpoints" / "step-000009" / "trainer_state.json").read_text())
    assert state["finished"] and state["step"] == 9
    from ups_toolkit.pretraining.model import read_encoder_file

    weights, config, metadata = read_encoder_file(pretrained / "encoder.safetensors")
    assert config.d_model == 16 and config.layouts == ("ntu25",) and metadata["modality"] == "joint"
    # the export is the encoder part of the final checkpoint
    full = load_weights(pretrained / "checkpoints" / "step-000009")
    assert all(torch.equal(v, full[f"encoder.{k}"]) for k, v in weights.items())


def test_killed_pretraining_resumes_to_identical_parameters(tmp_path, pretrained):
    # the straight run is the shared fixture (9 steps); here: killed after the step-4 checkpoint (mid-epoch 1)
    config = pretrain_config(tmp_path, training={"checkpoint_every": 4})
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest"
    process = subprocess.Popen([str(a) for a in pretrain_cmd(config)], cwd=REPO, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (latest.is_file() and latest.read_text().strip() == "step-000004"):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "encoder.safetensors").exists(), "the run ended before it was killed"
    again = run(pretrain_cmd(config))
    assert again.returncode == 2 and "unfinished run" in again.stderr
    resumed = run(pretrain_cmd(config, "--resume_from_checkpoint", "auto"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_weights(pretrained / "checkpoints" / "step-000009")
    b = load_weights(run_dir / "checkpoints" / "step-000009")
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert a.keys() == b.keys() and not different, different[:3]
    steps = [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-5:] == [5, 6, 7, 8, 9]


def test_encoder_export_initialises_a_ups_run(tmp_path, pretrained):
    from ups_toolkit.pretraining.model import read_encoder_file
    from ups_toolkit.training.config import load_config
    from ups_toolkit.training.loop import Trainer

    export = pretrained / "encoder.safetensors"
    model = {"encoder": {**ENCODER, "num_blocks": 2, "task_dim": 8}, "encoder_init": str(export),
             "d_model": 32, "decoder_layers": 1, "decoder_heads": 2, "ffn": 64}
    path = tiny_config(tmp_path, tasks=("action_recognition_3d",), model=model,
                       logging={"tensorboard": False, "plots": False})
    trainer = Trainer(load_config(str(path)), quiet=True)
    with one_thread():
        trainer.setup(None, False)
    dste = trainer.accelerator.unwrap_model(trainer.model).encoder.dste
    ours = dste.state_dict()
    weights, _, _ = read_encoder_file(export)
    for key, value in weights.items():
        if key.startswith("embeddings.") or key.endswith("pe"):
            assert torch.equal(ours[key], value), key
    # every routed block holds the pretrained layer (D7): compare block 0 and block 1 with the file
    layer_keys = [k for k in weights if not k.startswith("embeddings.") and not k.endswith("pe")]
    assert layer_keys
    for key in layer_keys:
        copies = [v for k, v in ours.items() if k.replace(".blocks.0.", ".").replace(".blocks.1.", ".") == key]
        assert len(copies) == 2 and all(torch.equal(c, weights[key]) for c in copies), key
    trainer.accelerator.end_training()

    # a file that does not fit this encoder: an error naming the file; a missing file: an error naming the key
    from ups_toolkit.errors import ConfigError, DataFormatError
    from ups_toolkit.models.dste import DSTE, DSTEConfig
    from ups_toolkit.training.config import check_model_section
    from ups_toolkit.training.setup import init_encoder

    wider = DSTE(DSTEConfig.from_preset("tiny", d_model=32, num_heads=2, num_blocks=2, task_dim=8))
    with pytest.raises(DataFormatError, match="shape") as error:
        init_encoder(wider, export, [])
    assert str(export) in str(error.value)
    config = load_config(str(path), ["--model.encoder_init", str(tmp_path / "nonexistent.safetensors")])
    with pytest.raises(ConfigError, match="model.encoder_init"):
        check_model_section(config)


@pytest.mark.parametrize("protocol, extra, label", [
    ("knn", [], "kNN-1 top-1"),
    ("linear", ["--epochs", "6", "--milestones", "4", "--report-best", "--standardize"], "linear probe top-1"),
    ("semi", ["--fraction", "0.5", "--epochs", "2", "--report-best"], "semi-supervised (0.5 of labels"),
])
def test_evaluation_commands(tmp_path, capsys, pretrained, protocol, extra, label):
    from ups_toolkit.pretraining.evaluate import main

    out = tmp_path / "result.json"
    for random_init in (False, True):
        argv = [protocol, "--encoder", str(pretrained / "encoder.safetensors"), "--data",
                str(synthetic_root() / "ntu25_3d"), "--transforms", "[{type: PreNormalize3D}]", "--out", str(out),
                *extra] + (["--random-init"] if random_init else [])
        with one_thread():
            assert main(argv) == 0
        stdout = capsys.readouterr().out
        assert label in stdout and stdout.startswith("random-init") == random_init
        data = json.loads(out.read_text())
        assert 0.0 <= data["top1"] <= 100.0 and data["random_init"] == random_init
        if "--report-best" in extra:
            assert "(best-epoch figure)" in stdout and data["best_epoch_top1"] >= data["top1"] - 1e-9
    if protocol == "semi":
        assert data["labelled"] == 5  # round(0.5 x 10) training clips, seed 0


def test_evaluation_command_errors_name_the_file(tmp_path):
    fake = tmp_path / "encoder.safetensors"
    fake.write_text("not safetensors")
    result = run([sys.executable, "-m", "ups_toolkit.pretraining.evaluate", "knn", "--encoder", fake,
                  "--data", synthetic_root() / "ntu25_3d"])
    assert result.returncode == 2 and str(fake) in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("override, key, words", [
    (["--training.batch_size", "1"], "training.batch_size", "at least 2 samples"),
    (["--optim.lr", "fast"], "optim.lr", "expected a number"),
    (["--training.epoch", "3"], "training.epoch", "unknown key"),
    (["--views.modalities", "[joint, depth]"], "views.modalities", "modalities"),
    (["--model.encoder.num_blocks", "2"], "model.encoder.num_blocks", "unrouted"),
    (["--data.split", "validation"], "data.split", "no split"),
    (["--training.batch_size", "64"], "training.batch_size", "fewer than one batch"),
])
def test_bad_pretrain_config_names_the_key(tmp_path, capsys, override, key, words):
    from ups_toolkit.training.cli import train_main

    config = pretrain_config(tmp_path)
    with one_thread():
        assert train_main(["--config", str(config), "--quiet", *override]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert key in line and words in line, line


def test_stage_flag_and_demo_config_validate():
    from ups_toolkit.pretraining.config import is_pretrain_config, load_pretrain_config

    demo = REPO / "configs" / "pretrain_demo.yaml"
    assert is_pretrain_config(str(demo))
    assert not is_pretrain_config(str(REPO / "configs" / "demo.yaml"))
    assert is_pretrain_config(str(REPO / "configs" / "demo.yaml"), [("stage", "pretrain")])
    config = load_pretrain_config(str(demo), ["--output_dir", str(work_dir() / "demo")])
    assert config["optim"]["weight_decay"] == 1e-5 and config["training"]["batch_size"] == 16
    paper = load_pretrain_config(str(REPO / "configs" / "usdrl_paper.yaml"), check_data=False)
    assert paper["training"]["batch_size"] == 356 and paper["optim"]["lr_milestones"] == [350]
    assert paper["model"]["instance_out"] == 4096 and paper["loss"]["xc_weight"] == 1e-3
