"""Experiment configs: overrides, defaults, and bad configs failing before anything heavy runs, naming the key."""

import sys

import pytest
import yaml
from training_helpers import REPO, run, tiny_config, train_cmd

from ups_toolkit.errors import ConfigError
from ups_toolkit.training.config import load_config, parse_overrides


def test_overrides_parse_yaml_values_and_dotted_keys():
    pairs = parse_overrides(["--optim.lr", "3e-4", "--training.steps=10", "--optim.betas", "[0.9, 0.99]",
                             "--logging.plots", "false", "--tasks.x.label_set", "ntu60"])
    assert pairs == [("optim.lr", 3e-4), ("training.steps", 10), ("optim.betas", [0.9, 0.99]),
                     ("logging.plots", False), ("tasks.x.label_set", "ntu60")]


def test_demo_config_validates_with_its_data_still_to_be_generated(tmp_path):
    """The demo's data is written on the fly: before it exists, its paths are checked against what the synthetic
    generator writes; the label set is found from the dataset's class names; placeholders are resolved."""
    out = tmp_path / "demo"
    config = load_config(str(REPO / "configs" / "demo.yaml"), ["--output_dir", str(out)])
    assert not out.exists()
    assert config["synthetic"]["dir"] == f"{out}/data"
    assert config["tasks"]["pose_estimation_2d3d"]["train"]["target_path"] == f"{out}/data/h36m17_3d"
    assert {s["label_set"] for s in config["tasks"].values() if s["label_set"]} == {"synthetic"}
    assert len(config.task_names) == 6
    assert config["optim"]["lr"] == 2e-3 and config["training"]["mixed_precision"] == "auto"
    # the saved, resolved config loads again and gives the same settings
    config.save(tmp_path)
    again = load_config(str(tmp_path / "config.yaml"))
    assert again.data == config.data


def test_a_config_is_found_by_name():
    assert load_config("demo").source.endswith("configs/demo.yaml")


@pytest.mark.parametrize("override, key, words", [
    (["--optim.lrr", "1"], "optim.lrr", "unknown key"),
    (["--optimizer.lr", "1"], "optimizer", "unknown key"),
    (["--training.steps", "ten"], "training.steps", "expected an integer"),
    (["--training.steps", "0"], "training.steps", ">= 1"),
    (["--optim.lr", "-1"], "optim.lr", "expected a number >"),
    (["--logging.plots", "yes please"], "logging.plots", "true or false"),
    (["--tasks.action_recognition_4d.weight", "1"], "tasks.action_recognition_4d", "unknown task"),
    (["--tasks.retrieval.eval", "{path: x, split: test}"], "tasks.retrieval", "encoder-only"),
    (["--tasks.action_recognition_3d.bach_size", "8"], "tasks.action_recognition_3d.bach_size", "unknown key"),
    (["--tasks.action_recognition_3d.label_set", "ntu60"], "tasks.action_recognition_3d.label_set",
     "class 0 is 'drink water' in the label set but 'wave right hand' in the dataset"),
    (["--tasks.action_recognition_3d.label_set", "kinetics400"], "tasks.action_recognition_3d.label_set",
     "label set 'kinetics400' does not match the class names of"),
    (["--tasks.action_recognition_3d.train.split", "validation"], "tasks.action_recognition_3d.train.split",
     "no split 'validation'"),
    (["--tasks.action_recognition_3d.transforms", "[{type: Resize, size: 64}]"],
     "tasks.action_recognition_3d.transforms[0]", "temporal sampling is the task's"),
    (["--tasks.action_recognition_3d.transforms", "[{type: Spin}]"], "tasks.action_recognition_3d.transforms",
     "unknown transform type 'Spin'"),
    (["--tasks.pose_estimation_2d3d.transforms", "[{type: Rotate}]"], "tasks.pose_estimation_2d3d.transforms",
     "deterministic"),
    (["--tasks.pose_estimation_2d3d.train.target_path", "null"], "tasks.pose_estimation_2d3d.train.target_path",
     "no keypoint_3d column"),
    (["--tasks.action_recognition_3d.overrides", "{output: {grammar: coordinates}}"],
     "tasks.action_recognition_3d.overrides", "output"),
    (["--training.best_metric", "top1"], "training.best_metric", "TASK/METRIC"),
    (["--tasks.pose_estimation_2d3d.l1_weight", "-1"], "tasks.pose_estimation_2d3d.l1_weight", ">= 0"),
])
def test_bad_settings_name_the_key(tmp_path, override, key, words):
    config = tiny_config(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_config(str(config), override)
    message = str(error.value)
    assert f"key {key!r}" in message and words in message, message


def test_missing_dataset_path_names_the_key(tmp_path):
    config = tiny_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["tasks"]["action_recognition_3d"]["eval"]["path"] = str(tmp_path / "nowhere")
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"key 'tasks.action_recognition_3d.eval.path': dataset path .*nowhere "
                                          r"does not exist"):
        load_config(str(config))


def test_motion_horizons_beyond_the_predicted_frames_are_refused(tmp_path):
    config = tiny_config(tmp_path, tasks=())
    data = yaml.safe_load(config.read_text())
    data["tasks"] = {"motion_prediction": {"train": {"path": "{synthetic}/h36m17_3d", "split": "train"},
                                           "eval": {"path": "{synthetic}/h36m17_3d", "split": "test"},
                                           "overrides": {"input": {"observed_frames": 20}}}}
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"key 'evaluation.horizons_ms': 400 ms is predicted frame 12 at 30 fps, "
                                          r"but task 'motion_prediction' predicts K = 10 frames"):
        load_config(str(config))
    load_config(str(config), ["--tasks.motion_prediction.overrides", "{output: {frames: 12}}"])


def test_model_keys_are_checked_against_the_model_config(tmp_path):
    from ups_toolkit.training.config import check_model_section

    config = tiny_config(tmp_path)
    check_model_section(load_config(str(config)))
    with pytest.raises(ConfigError, match=r"key 'model.d_modle': unknown key"):
        check_model_section(load_config(str(config), ["--model.d_modle", "64"]))
    with pytest.raises(ConfigError, match=r"key 'model.encoder.width': unknown key"):
        check_model_section(load_config(str(config), ["--model.encoder.width", "64"]))


def test_cli_bad_config_exits_2_with_one_line_before_training(tmp_path):
    """Through train.py as a user runs it: exit status 2, one line naming the key, no run folder created."""
    config = tiny_config(tmp_path)
    result = run(train_cmd(config, "--tasks.action_recognition_3d.train.path", str(tmp_path / "missing")))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "key 'tasks.action_recognition_3d.train.path'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    # a model-section mistake is caught after the light checks but still before any data, model or run folder
    result = run(train_cmd(config, "--model.decoder_layerz", "2"))
    assert result.returncode == 2 and "key 'model.decoder_layerz'" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_help_answers_without_heavy_imports():
    code = ("import sys; sys.argv = ['train.py', '--help']; import runpy\n"
            "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'datasets', 'transformers', 'accelerate') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    result = run([sys.executable, "-c", code])
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "--resume_from_checkpoint" in result.stdout
