"""docs/adding_a_task.md end to end: the example project docs/examples/body_part_in_motion (a label set, a task file,
a config, a data-preparation script) trains and infers with the toolkit as it is, no code change.

The steps run as a user runs them (``python -m ups_toolkit.data synth``, ``python prepare_data.py``, ``python
train.py``, ``infer.py``) in a copy of the example folder, with its config cut down to a tiny model, the tiny offline
text encoder and 4 steps. A 4-step model is not expected to be accurate, so only structure is checked: the new
task's tokens in the saved vocabulary, and an inference answer that is one of the body-part labels.
"""

import json
import shutil
import sys

import yaml
from conftest import REPO
from training_helpers import environment, run, tiny_text_encoder, work_dir

EXAMPLE = REPO / "docs" / "examples" / "body_part_in_motion"
BODY_PARTS = ["left arm", "right arm", "left leg", "right leg", "head", "torso"]


def _tiny_config(project):
    """The example's train.yaml with the model, encoder and schedule of the training tests (paths stay the example's,
    relative to the project folder)."""
    config = yaml.safe_load((project / "train.yaml").read_text())
    assert config["vocabulary"]["roots"] == ["."]  # the example finds its own tokenizers/ and tasks/
    config["vocabulary"].update(text_encoder=str(tiny_text_encoder()), cache_dir=str(work_dir() / "embeddings"))
    config["model"] = {
        "encoder": {"preset": "tiny", "d_model": 16, "num_heads": 2, "num_blocks": 2, "task_dim": 8},
        "d_model": 32, "decoder_layers": 1, "decoder_heads": 2, "ffn": 64,
    }
    config["tasks"]["body_part_in_motion"]["batch_size"] = 4
    config["training"] = {"steps": 4, "log_every": 2}
    config["logging"] = {"tensorboard": False, "plots": False}
    path = project / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_example_project_trains_and_infers_without_code(tmp_path):
    project = tmp_path / "body_part_in_motion"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    env = environment()

    def in_project(*args):
        import subprocess

        result = subprocess.run([str(a) for a in args], cwd=project, capture_output=True, text=True, timeout=600,
                                env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    # 4. prepare data: the synthetic demo data, then the example's own script relabels it
    in_project(sys.executable, "-m", "ups_toolkit.data", "synth", "data/synthetic", "--num-per-class", "2")
    prepared = in_project(sys.executable, "prepare_data.py", "data/synthetic/ntu25_3d", "data/body_parts")
    # 2 samples of each of the 4 single-part actions: one train and one test each
    assert "train: 4 samples left arm 1, right arm 1, right leg 1, head 1" in prepared.stdout
    assert "test: 4 samples left arm 1, right arm 1, right leg 1, head 1" in prepared.stdout

    # 5. train with train.py from the checkout, in the project folder (its relative paths and roots: ["."])
    config = _tiny_config(project)
    in_project(sys.executable, REPO / "train.py", "--config", config, "--quiet")
    model_dir = project / "runs" / "body_part_in_motion" / "model"
    vocab = json.loads((model_dir / "vocab.json").read_text())
    assert "body_part_in_motion" in vocab["tasks"]
    assert [vocab["prompts"][i] for i in vocab["label_sets"]["body_parts"]] == BODY_PARTS
    assert "body part in motion" in vocab["prompts"] and "body part in motion ends here" in vocab["prompts"]
    task_specs = json.loads((model_dir / "config.json").read_text())["task_specs"]
    assert task_specs["body_part_in_motion"]["output"]["label_sets"] == ["body_parts"]

    # 6. infer with infer.py on the test split: each answer is a body part
    out = project / "infer"
    result = run([sys.executable, "infer.py", "--task", "body_part_in_motion", "--model", model_dir,
                  "--input", project / "data" / "body_parts", "--split", "test", "--out", out, "--quiet"], env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads((out / "results.json").read_text())["results"]
    assert len(records) == 4
    for record in records:
        assert record["prediction"] in BODY_PARTS
        assert record["ground_truth"] in {"left arm", "right arm", "right leg", "head"}
        assert [row["label"] for row in record["top_k"]][0] == record["prediction"]
