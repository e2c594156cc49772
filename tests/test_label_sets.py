"""Label sets belong to datasets: a dataset whose class names no label-set file lists trains a shipped task with no
task-file change, its class names becoming action tokens of the vocabulary; the saved model decodes and names them
on its own."""

import json
import sys

import yaml
from training_helpers import run, synthetic_root, tiny_config, train_cmd

NEW_CLASSES = ["semaphore left", "semaphore right", "star jump", "deep squat", "high kick", "hop", "march",
               "applaud", "pirouette", "curtsy"]


def relabelled_copy(out):
    """The synthetic NTU-25 data with class names of its own (same samples, same label indices)."""
    from datasets import ClassLabel, load_from_disk

    source = synthetic_root() / "ntu25_3d"
    data = load_from_disk(str(source))
    data = data.cast_column("label", ClassLabel(names=NEW_CLASSES))
    data.save_to_disk(str(out))
    info = json.loads((source / "ups_info.json").read_text())
    info["class_names"] = NEW_CLASSES
    (out / "ups_info.json").write_text(json.dumps(info))
    return out


def test_a_dataset_with_new_class_names_trains_a_shipped_task_unchanged(tmp_path):
    data = relabelled_copy(tmp_path / "My Gym Moves")
    config = tiny_config(tmp_path / "run", tasks=("action_recognition_3d",), training={"steps": 4, "log_every": 2})
    settings = yaml.safe_load(config.read_text())
    settings["tasks"]["action_recognition_3d"].update(train={"path": str(data), "split": "train"},
                                                      eval={"path": str(data), "split": "test"})
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    trained = run(train_cmd(config))
    assert trained.returncode == 0, trained.stderr[-3000:]
    folder = tmp_path / "run" / "run"
    resolved = yaml.safe_load((folder / "config.yaml").read_text())
    assert resolved["tasks"]["action_recognition_3d"]["label_set"] == "my_gym_moves"  # named after the folder
    vocab = json.loads((folder / "model" / "vocab.json").read_text())
    assert [vocab["prompts"][i] for i in vocab["label_sets"]["my_gym_moves"]] == NEW_CLASSES
    assert [vocab["prompts"][i] for i in vocab["label_sets"]["synthetic"]][0] == "wave right hand"  # files stay
    model_config = json.loads((folder / "model" / "config.json").read_text())
    assert model_config["trained_label_sets"] == {"action_recognition_3d": "my_gym_moves"}
    assert [model_config["id2label"][str(i)] for i in range(10)] == NEW_CLASSES

    inferred = run([sys.executable, "infer.py", "--task", "action_recognition_3d", "--model", folder / "model",
                    "--input", data, "--split", "test", "--limit", 3, "--out", tmp_path / "infer", "--quiet"])
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    records = json.loads((tmp_path / "infer" / "results.json").read_text())["results"]
    assert all(r["prediction"] in NEW_CLASSES and r["ground_truth"] in NEW_CLASSES for r in records)

    # from Python, without a label set: the one the model was trained on
    import torch

    from ups_toolkit.models import UPSForSeq2Seq

    model = UPSForSeq2Seq.from_pretrained(folder / "model")
    assert model.codec("action_recognition_3d").label_set == "my_gym_moves"
    pose = torch.zeros(1, 64, 2, 25, 3)
    assert model.predict(pose, "ntu25", "action_recognition_3d", k=3)["topk_labels"].max() < len(NEW_CLASSES)
