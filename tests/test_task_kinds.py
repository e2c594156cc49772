"""Task kinds (ups_toolkit.kinds): every shipped task file has exactly one kind, chosen once from its sampling and
grammar or named by its ``kind:``; a kind of the user's, in a module of their own, trains, evaluates and infers end
to end through train.py and infer.py with no change to the toolkit."""

import json
import sys
import textwrap

import pytest
import yaml
from training_helpers import environment, run, synthetic_root, tiny_config, train_cmd

from ups_toolkit.errors import ConfigError
from ups_toolkit.kinds import KINDS, TaskKind, find_kind, kind_of, register_kind
from ups_toolkit.tokenization.specs import load_task, parse_task

SHIPPED = {
    "action_recognition_3d": "recognition",
    "action_recognition_2d": "recognition",
    "early_action_prediction": "early_prediction",
    "pose_estimation_2d3d": "lifting",
    "motion_prediction": "motion_prediction",
    "temporal_action_detection": "detection",
    "retrieval": "retrieval",
}


@pytest.mark.parametrize("task,kind", sorted(SHIPPED.items()))
def test_each_shipped_task_has_its_kind(task, kind):
    spec = load_task(task)
    chosen = kind_of(spec)
    assert chosen.name == kind and chosen.spec is spec
    assert (chosen.sampling, chosen.grammar) == (spec.input.sampling, spec.output.grammar)


def test_a_kind_is_named_or_matched_and_errors_name_the_file():
    raw = dict(load_task("action_recognition_3d").raw)
    named = parse_task({**raw, "kind": "recognition"}, "x.yaml")
    assert kind_of(named).name == "recognition"
    with pytest.raises(ConfigError, match="x.yaml: key 'kind': unknown task kind 'nope'; registered: detection"):
        kind_of(parse_task({**raw, "kind": "nope"}, "x.yaml"))
    with pytest.raises(ConfigError, match="task kind 'lifting' reads sampling 'consecutive'.*'whole_sequence'"):
        kind_of(parse_task({**raw, "kind": "lifting"}, "x.yaml"))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_here'"):
        kind_of(parse_task({**raw, "kind": "no_such_module_here:thing"}, "x.yaml"))
    with pytest.raises(ConfigError, match="no task kind takes sampling 'consecutive' with grammar 'action'"):
        find_kind("consecutive", "action", where="y.yaml")


def test_two_default_kinds_cannot_claim_the_same_task_files():
    class Rival(TaskKind):
        name, sampling, grammar, headline = "rival", "whole_sequence", "action", ("top1", True)

    with pytest.raises(ConfigError, match="task kinds 'recognition' and 'rival' both claim sampling"):
        register_kind(Rival)
    assert "rival" not in KINDS


USER_KIND = '''
"""A kind of the user's: recognition from the second half of each sequence only."""
import numpy as np

from ups_toolkit.kinds import register_kind
from ups_toolkit.kinds.recognition import Recognition


@register_kind
class SecondHalfRecognition(Recognition):
    name = "second_half_recognition"
    by_default = False  # task files ask for it with kind: my_kinds:second_half_recognition
    diagnostics = ("observed_fraction_%",)  # reported whatever the task file's metrics: lists

    def example(self, examples, item, sample, keypoint, rng):
        return super().example(examples, item, sample, keypoint[len(keypoint) // 2:], rng)

    def score(self, state, arrays, **options):
        metrics, extras = super().score(state, arrays, **options)
        return {**metrics, "observed_fraction_%": 50.0}, extras

    def infer(self, session, samples, options):
        results = super().infer(session, samples, options)
        for result in results:
            result.record["observed"] = "second half"
        return results
'''


def test_a_kind_from_a_user_module_trains_evaluates_and_infers(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "my_kinds.py").write_text(textwrap.dedent(USER_KIND))
    task = yaml.safe_load(open(load_task("action_recognition_3d").path, encoding="utf-8"))
    task.update(name="second_half_recognition", display_name="second half recognition",
                kind="my_kinds:second_half_recognition")
    (tmp_path / "project" / "tasks").mkdir(parents=True)
    (tmp_path / "project" / "tasks" / "second_half_recognition.yaml").write_text(yaml.safe_dump(task))
    config = tiny_config(tmp_path / "run", tasks=("action_recognition_3d",), training={"steps": 4, "log_every": 2})
    data = yaml.safe_load(config.read_text())
    data["tasks"] = {"second_half_recognition": data["tasks"]["action_recognition_3d"]}
    data["vocabulary"]["roots"] = [str(tmp_path / "project")]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**environment(), "PYTHONPATH": str(tmp_path / "plugins")}  # where the user's module lives

    trained = run(train_cmd(config), env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    folder = tmp_path / "run" / "run"
    final = json.loads((folder / "final_metrics.json").read_text())["second_half_recognition"]
    assert final["observed_fraction_%"] == 50.0 and 0 <= final["top1"] <= 100
    stored = json.loads((folder / "model" / "config.json").read_text())["task_specs"]["second_half_recognition"]
    assert stored["kind"] == "my_kinds:second_half_recognition"

    out = tmp_path / "infer"
    data_dir = synthetic_root() / "ntu25_3d"
    inferred = run([sys.executable, "infer.py", "--task", "second_half_recognition", "--model", folder / "model",
                    "--input", data_dir, "--split", "test", "--limit", 2, "--out", out, "--quiet"], env=env)
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    records = json.loads((out / "results.json").read_text())["results"]
    assert len(records) == 2 and all(r["observed"] == "second half" and "prediction" in r for r in records)

    # without the module on the path, the same model is refused with one line naming the module
    refused = run([sys.executable, "infer.py", "--task", "second_half_recognition", "--model", folder / "model",
                   "--input", data_dir, "--split", "test", "--limit", 2, "--quiet"])
    assert refused.returncode == 2 and "cannot import 'my_kinds'" in refused.stderr


def test_inference_and_the_kinds_import_no_training_module():
    """infer.py's modules and the kinds stand on their own: nothing under ups_toolkit.training is imported."""
    code = ("import sys, importlib\n"
            "for m in ['cli', 'runner', 'recipe', 'examples', 'report', 'figures', 'inputs']:\n"
            "    importlib.import_module('ups_toolkit.inference.' + m)\n"
            "import ups_toolkit.kinds, ups_toolkit.preprocessing\n"
            "print(sorted(m for m in sys.modules if m.startswith('ups_toolkit.training')))")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_task_files_metrics_are_what_evaluation_reports():
    raw = dict(load_task("action_recognition_3d").raw)
    with pytest.raises(ConfigError, match=r"x.yaml: key 'metrics\[1\]': task kind 'recognition' does not compute "
                                          r"'bleu'; it computes: top1_accuracy, top5_accuracy, mean_class_accuracy"):
        kind_of(parse_task({**raw, "metrics": ["top1_accuracy", "bleu"]}, "x.yaml"))
    scores = {"top1": 50.0, "top5": 90.0, "mean_class": 40.0}
    assert kind_of(load_task("action_recognition_3d")).reported(scores) == scores
    only = kind_of(parse_task({**raw, "metrics": ["mean_class_accuracy"]}, "x.yaml"))
    assert only.reported(scores) == {"top1": 50.0, "mean_class": 40.0}  # the headline stays
    lifting = kind_of(load_task("pose_estimation_2d3d"))
    pose = {"mpjpe_mm": 1.0, "p_mpjpe_mm": 2.0, "n_mpjpe_mm": 3.0, "mpjpe_soft_mm": 4.0, "floor_mm": 0.5,
            "clip_rate_%": 0.0, "mpjpe_noflip_mm": 1.5}
    assert lifting.reported(pose) == pose
