"""What a saved model needs besides its weights to read new data exactly as training did.

The model folder holds it all: ``config.json`` the task specs (resolved coordinate ranges, ``input.observed_frames``
/ ``output.frames`` overrides, window sizes, the kind), so decoding and the temporal sampling come from the model
itself; ``preprocessing.json`` (:mod:`ups_toolkit.preprocessing`) the evaluation transforms, the label set and its
class names, and the layouts and channels of the training data. :func:`task_recipe` reads them from there; a
``--config`` that disagrees with them is refused, naming the key. Models saved before ``preprocessing.json`` existed
fall back to the run's ``config.yaml`` beside ``model/`` (or two levels above ``finetuned/<task>/``, or
``--config``), taking the evaluation transforms exactly as evaluation does (``eval_transforms``, else the
deterministic part of ``transforms``).

:func:`read_model_info` reads only ``config.json`` (no torch), so an unknown or untrained task and a missing or
broken model folder are reported before anything heavy is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..kinds import kind_of
from ..preprocessing import PREPROCESSING_FILE, read_preprocessing
from ..skeleton.transforms import deterministic_part

MODEL_FILES = ("config.json", "model.safetensors", "vocab.json")
RUN_CONFIG = "config.yaml"
ENCODER_ONLY_FALLBACK = "route_task"


@dataclass
class ModelInfo:
    """The parts of a saved model's ``config.json`` needed before loading it."""

    path: Path
    tasks: list[str]
    layouts: list[str]
    task_specs: dict
    encoder: dict

    def persons(self, layout: str) -> int:
        """Persons the encoder takes in a layout (DSTEConfig.persons: ``layout_persons``, else ``max_persons``)."""
        return int((self.encoder.get("layout_persons") or {}).get(layout, self.encoder.get("max_persons", 2)))


def read_model_info(model_dir: str | Path) -> ModelInfo:
    """Check the model folder and read its ``config.json``; ConfigError naming the file when it is not a saved UPS
    model. The weights and ``vocab.json`` are checked in full when the model is loaded."""
    path = Path(model_dir)
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise ConfigError(f"--model {path}: {what} (a model saved by train.py, e.g. runs/demo/model)")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise ConfigError(f"{path / missing[0]}: missing (a saved UPS model holds {', '.join(MODEL_FILES)})")
    config_file = path / "config.json"
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{config_file}: the model configuration is not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("model_type") != "ups":
        found = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{config_file}: not a UPS model (model_type {found!r}, expected 'ups')")
    tasks, encoder = data.get("tasks"), data.get("encoder")
    if not isinstance(tasks, list) or not isinstance(encoder, dict) or not isinstance(data.get("task_specs"), dict):
        raise ConfigError(f"{config_file}: corrupt UPS configuration (keys 'tasks', 'task_specs', 'encoder')")
    return ModelInfo(path, [str(t) for t in tasks], list(encoder.get("layouts") or []), data["task_specs"], encoder)


def find_run_config(model_dir: Path, explicit: str | None = None) -> Path | None:
    """``--config`` when given, else the ``config.yaml`` that train.py saved beside ``model/`` (``best/``) or two
    levels above ``finetuned/<task>/``; None when there is none."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config {explicit}: no such file (the config.yaml train.py saved in its output_dir)")
        return path
    for folder in (model_dir, model_dir.parent, model_dir.parent.parent):
        candidate = folder / RUN_CONFIG
        if candidate.is_file():
            return candidate
    return None


@dataclass
class TaskRecipe:
    """How to feed one task of a saved model.

    task: the task asked for; model_task: the model task whose route and preprocessing serve it (retrieval, an
    encoder-only task, uses its ``options.route_task``); spec: the TaskSpec (the model's stored one for decoder tasks);
    transforms: deterministic transform configs applied after the temporal sampling; label_set: the label set the
    task was trained with; layouts: layouts the model takes for this task, preferred first; channels: C of the
    training data (None: any the task accepts); source: where transforms and label set came from.
    """

    task: str
    model_task: str
    spec: object
    transforms: list[dict]
    label_set: str | None
    layouts: list[str]
    channels: tuple[int, ...]
    source: str
    notes: list[str] = field(default_factory=list)
    label_names: list[str] | None = None  # class names of label_set as the training data named them


def known_tasks() -> dict[str, Path]:
    from ..tokenization.specs import task_paths

    return task_paths()


def check_task(task: str, info: ModelInfo) -> str:
    """The model task serving ``task``: ``task`` itself, or for an encoder-only task its route task. ConfigError for
    an unknown task or one the model was not trained for."""
    from ..tokenization.specs import load_task

    known = known_tasks()
    if task not in known and task not in info.task_specs:
        raise ConfigError(f"unknown task {task!r}; tasks: {', '.join(sorted(known))}")
    if task in info.tasks and info.task_specs.get(task, {}).get("output", {}).get("grammar") != "none":
        return task
    spec = load_task(task) if task in known else None
    if spec is not None and not spec.has_decoder:
        route = spec.options.get(ENCODER_ONLY_FALLBACK)
        if route in info.tasks:
            return route
        raise ConfigError(f"task {task!r} runs the encoder with the route of {route!r}, which the model in "
                          f"{info.path} was not trained for (its tasks: {', '.join(info.tasks)})")
    raise ConfigError(f"the model in {info.path} was not trained for task {task!r} (its tasks: "
                      f"{', '.join(info.tasks)})")


def task_recipe(task: str, info: ModelInfo, run_config: Path | None, label_set: str | None = None, *,
                explicit_config: bool = False) -> TaskRecipe:
    """The preprocessing and decoding settings of ``task`` for the model described by ``info``: from the model
    folder's ``preprocessing.json``; for models saved before it existed, from the run's ``config.yaml``.
    ``explicit_config`` (``--config`` was given): a config that disagrees with the saved preprocessing is refused."""
    from ..tokenization.specs import load_task, parse_task

    model_task = check_task(task, info)
    if task == model_task:
        spec = parse_task(info.task_specs[task], f"{info.path / 'config.json'} task_specs[{task!r}]",
                          expected_name=task)
    else:
        spec = load_task(task)
    saved = read_preprocessing(info.path)
    if saved is not None and model_task in saved:
        entry = saved[model_task]
        where = info.path / PREPROCESSING_FILE
        if explicit_config and run_config is not None:
            _check_against_saved(run_config, model_task, entry, where)
        chosen = label_set if label_set is not None else entry["label_set"]
        chosen = spec.resolve_label_set(chosen) if kind_of(spec).uses_labels else None
        names = list(entry["label_names"]) if chosen == entry["label_set"] and entry["label_names"] else None
        accepted = [l for l in spec.input.layouts if l in info.layouts]
        layouts = [l for l in entry["layouts"] if l in info.layouts] or accepted
        channels = tuple(int(c) for c in entry["channels"]) or tuple(spec.input.channels)
        return TaskRecipe(task, model_task, spec, list(entry["transforms"]), chosen, layouts, channels, str(where),
                          label_names=names)
    if run_config is None:
        raise ConfigError(f"no run config beside {info.path} ({info.path.parent / RUN_CONFIG}) and no "
                          f"{PREPROCESSING_FILE} in it: the model folder does not store the input transforms; pass "
                          f"--config with the config.yaml train.py saved for this model")
    data, settings = _run_settings(run_config, model_task, info.path)
    transforms = settings.get("eval_transforms")
    if transforms is None:
        transforms = deterministic_part(settings.get("transforms") or [])
    chosen = label_set if label_set is not None else settings.get("label_set")
    if kind_of(spec).uses_labels:
        chosen = spec.resolve_label_set(chosen)
    else:
        chosen = None
    layouts, channels, notes = _trained_layouts(spec, info, settings, _training_folder(run_config, data))
    notes.append(f"{info.path} has no {PREPROCESSING_FILE} (saved by an older version): preprocessing read from "
                 f"{run_config}")
    return TaskRecipe(task, model_task, spec, list(transforms), chosen, layouts, channels, str(run_config), notes)


def _run_settings(run_config: Path, model_task: str, model_dir: Path) -> tuple[dict, dict]:
    """(the whole run config, its settings of ``model_task``) from a config.yaml; ConfigError naming the file."""
    import yaml

    try:
        data = yaml.safe_load(run_config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{run_config}: not valid YAML ({str(e).splitlines()[0]})") from None
    settings = (data or {}).get("tasks", {}).get(model_task) if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        raise ConfigError(f"{run_config}: no settings for task {model_task!r} (key 'tasks.{model_task}'); is it the "
                          f"config of the run that saved {model_dir}?")
    return data, settings


def _check_against_saved(run_config: Path, model_task: str, entry: dict, where: Path) -> None:
    """Refuse a ``--config`` whose preprocessing of ``model_task`` differs from what the model was trained with."""
    _, yaml_settings = _run_settings(run_config, model_task, where.parent)
    transforms = yaml_settings.get("eval_transforms")
    if transforms is None:
        transforms = deterministic_part(yaml_settings.get("transforms") or [])
    if list(transforms) != list(entry["transforms"]):
        raise ConfigError(f"--config {run_config}: key 'tasks.{model_task}.eval_transforms' gives {transforms}, but "
                          f"the model was trained with {entry['transforms']} ({where}); leave out --config")
    label_set = yaml_settings.get("label_set")
    if label_set is not None and label_set != entry["label_set"]:
        raise ConfigError(f"--config {run_config}: key 'tasks.{model_task}.label_set' is {label_set!r}, but the model "
                          f"was trained with {entry['label_set']!r} ({where}); leave out --config")


def _training_folder(run_config: Path, data: dict) -> Path | None:
    """The working folder train.py ran in, where the config's relative paths start: the run config sits in
    ``output_dir``, so going up one level per component of a relative ``output_dir`` gets there."""
    output_dir = Path(str(data.get("output_dir", "")))
    if not output_dir.parts or output_dir.is_absolute():
        return None
    folder = run_config.resolve().parent
    for _ in output_dir.parts:
        folder = folder.parent
    return folder


def _trained_layouts(spec, info: ModelInfo, settings: dict,
                     training_folder: Path | None) -> tuple[list[str], tuple[int, ...], list[str]]:
    """Layouts (preferred first) and channels the model saw for this task: those of the run's datasets when their
    metadata is still there, else every layout both the task and the encoder accept."""
    from ..data.prepared import describe_dataset

    layouts, channels = [], []
    for ref in (settings.get("train"), settings.get("eval")):
        if isinstance(ref, dict) and ref.get("path"):
            path = Path(ref["path"])
            if not path.exists() and training_folder is not None and not path.is_absolute():
                path = training_folder / path
            described = describe_dataset(path)
            if described is not None and described.layout:
                if described.layout not in layouts:
                    layouts.append(described.layout)
                if described.channels and described.channels not in channels:
                    channels.append(int(described.channels))
    notes = []
    accepted = [l for l in spec.input.layouts if l in info.layouts]
    layouts = [l for l in layouts if l in info.layouts] or accepted
    if not layouts:
        raise ConfigError(f"task {spec.name!r} takes layouts {', '.join(spec.input.layouts)} but the model's encoder "
                          f"has {', '.join(info.layouts)}")
    if not channels:
        channels = list(spec.input.channels)
        notes.append("training data not found: layout and channels taken from the task file")
    return layouts, tuple(channels), notes
