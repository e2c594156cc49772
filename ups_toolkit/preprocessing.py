"""``preprocessing.json``: what a saved model needs besides its weights to read new data exactly as training did.

Hugging Face keeps a feature extractor's settings in ``preprocessor_config.json`` beside the weights; this is ours.
``train.py`` writes it into every model folder it saves (``model/``, ``best/``, ``finetuned/<task>/``), one entry per
task:

| key | what |
|---|---|
| ``transforms`` | the evaluation transforms (``eval_transforms``, else the deterministic part of ``transforms``), applied after the temporal sampling |
| ``label_set`` | the label set the task was trained with (None for coordinate tasks) |
| ``label_names`` | its class names in class-index order, as the training data named them |
| ``layouts`` | the layouts of the training and evaluation data, preferred first |
| ``channels`` | C of that data (2 or 3) |

The task specs themselves (sampling, window sizes, observed/future frames, resolved coordinate ranges, the kind) are
in ``config.json`` (``task_specs``), so ``infer.py --model DIR`` and ``from_pretrained(DIR)`` need nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write_text
from .errors import ConfigError
from .skeleton.transforms import deterministic_part

PREPROCESSING_FILE = "preprocessing.json"
FORMAT = "ups-preprocessing"
VERSION = 1
FIELDS = ("transforms", "label_set", "label_names", "layouts", "channels")


def write_preprocessing(folder: str | Path, tasks: dict[str, dict]) -> Path:
    """``folder/preprocessing.json`` holding ``tasks`` ({task: {field: value}} with every field of FIELDS)."""
    for task, entry in tasks.items():
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise ValueError(f"preprocessing of task {task!r} lacks {', '.join(missing)}")
    document = {"format": FORMAT, "version": VERSION,
                "tasks": {t: {f: entry[f] for f in FIELDS} for t, entry in tasks.items()}}
    return atomic_write_text(Path(folder) / PREPROCESSING_FILE, json.dumps(document, indent=1) + "\n")


def read_preprocessing(folder: str | Path) -> dict[str, dict] | None:
    """{task: entry} from ``folder/preprocessing.json``; None when the folder has none (a model saved before the
    file existed); ConfigError naming the file when it is not one of ours."""
    path = Path(folder) / PREPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(document.get("tasks"),
                                                                                            dict):
        raise ConfigError(f"{path}: not a UPS preprocessing file (expected format {FORMAT!r} with 'tasks')")
    if document.get("version") != VERSION:
        raise ConfigError(f"{path}: preprocessing version {document.get('version')!r}; this toolkit reads {VERSION}")
    for task, entry in document["tasks"].items():
        missing = [f for f in FIELDS if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise ConfigError(f"{path}: task {task!r} lacks {', '.join(missing)}")
    return document["tasks"]


def task_preprocessing(state) -> dict:
    """The entry of one training :class:`~ups_toolkit.training.setup.TaskState`."""
    settings = state.settings
    transforms = settings["eval_transforms"]
    if transforms is None:
        transforms = deterministic_part(settings["transforms"])
    layouts, channels, names = [], [], []
    for split in (state.train_split, state.eval_split):
        if split is None:
            continue
        if split.layout not in layouts:
            layouts.append(split.layout)
        if split.channels not in channels:
            channels.append(int(split.channels))
        names = names or list(split.class_names)
    if state.label_set is None:
        names = []
    elif not names:
        from .resources import load_label_set

        names = list(load_label_set(state.label_set))
    return {"transforms": list(transforms), "label_set": state.label_set, "label_names": names,
            "layouts": layouts, "channels": channels}
