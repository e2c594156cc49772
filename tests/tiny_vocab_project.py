"""A tiny user project folder (``tokenizers/`` + ``tasks/``) for vocabulary, grammar and target tests.

Passed as ``roots=[folder]``, its files shadow the checkout's, so tests do not depend on the shipped label sets.
"""

from pathlib import Path

import yaml

COORDINATES = {
    "n_bins": 10,
    "axes": {"x": "The {ordinal} horizontal coordinate", "y": "The {ordinal} vertical coordinate",
             "z": "The {ordinal} depth coordinate"},
    "temporal": {"n_bins": 8, "prompt": "The {ordinal} temporal position"},
    "task_prompt": "{task}",
    "eot_prompt": "{task} ends here",
}
VOCABULARY = {
    "label_sets": ["gym", "yard"],
    "aliases": {"squat": ["squat down"]},
    "special_tokens": {"pad": "<pad>", "task": "<task:{name}>", "eot": "<eot:{name}>"},
}
LABEL_SETS = {
    "gym": ["Squat", "jump", "push_up"],
    "yard": ["squat_down", "Jump.", "wave"],
}
TASKS = {
    "recognise": {
        "name": "recognise", "display_name": "action recognition",
        "input": {"kind": "3d", "layouts": ["ntu25", "h36m17"], "frames": 64, "sampling": "whole_sequence"},
        "output": {"grammar": "action", "label_sets": ["gym", "yard"]},
        "metrics": ["top1_accuracy"],
    },
    "lift": {
        "name": "lift", "display_name": "pose lifting", "eot_prompt": "{task} is done",
        "input": {"kind": "2d", "layouts": ["h36m17", "ntu25"], "frames": 64, "sampling": "consecutive"},
        "output": {"grammar": "coordinates", "axes": ["x", "y", "z"], "frames": 1, "space": "root_relative",
                   "ranges": {"x": [-1.0, 1.0], "y": [-2.0, 0.5], "z": [0.0, 4.0]}},
        "metrics": ["mpjpe"],
    },
    "detect": {
        "name": "detect", "display_name": "detection",
        "input": {"kind": "3d", "layouts": ["ntu25"], "frames": 64, "sampling": "sliding_window",
                  "window": 8, "hop": 4},
        "output": {"grammar": "segments", "label_sets": ["yard"], "max_segments": 3, "n_time_bins": 8},
        "metrics": ["map_voc"],
    },
    "fetch": {
        "name": "fetch", "display_name": "retrieval",
        "input": {"kind": "3d", "layouts": ["ntu25"], "frames": 64, "sampling": "whole_sequence"},
        "output": {"grammar": "none"},
        "metrics": ["knn1_top1_accuracy"],
        "options": {"route_task": "recognise"},
    },
}


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_project(root: Path, *, coordinates=None, vocabulary=None, label_sets=None, tasks=None) -> Path:
    """Write the tiny project (or the given replacements) under ``root``; returns ``root``."""
    root = Path(root)
    write_yaml(root / "tokenizers" / "coordinates.yaml", coordinates or COORDINATES)
    write_yaml(root / "tokenizers" / "vocabulary.yaml", vocabulary or VOCABULARY)
    for name, classes in (label_sets or LABEL_SETS).items():
        write_yaml(root / "tokenizers" / "labels" / f"{name}.yaml", {"name": name, "classes": classes})
    for name, task in (tasks or TASKS).items():
        write_yaml(root / "tasks" / f"{name}.yaml", task)
    return root
