"""Experiment configs: one YAML file in ``configs/`` describes a whole training run (pyskl style), command-line
``--key value`` overrides (dotted keys: ``--optim.lr 3e-4``, ``--tasks.action_recognition_3d.batch_size 8``), strict
validation, and the resolved config that is printed and saved with the run.

Validation runs in two stages, both before any model, dataset or optimizer exists:

1. :func:`load_config` (no torch, no datasets): every key known and of the right type, every task known and with a
   decoder, every dataset path present with the named split, its layout and coordinate kind accepted by the task,
   the label set accepted by the task and equal to the dataset's class names, transforms buildable, evaluation
   settings consistent with the task files. Paths under a ``synthetic`` folder that does not exist yet are checked
   against what :func:`ups_toolkit.data.synthetic.write_synthetic` will write there.
2. :func:`check_model_section` (imports the model's config class): the ``model`` keys against ``UPSConfig`` and
   ``DSTEConfig``.

Every problem raises :class:`~ups_toolkit.errors.ConfigError` whose message names the dotted key and where it came
from (``configs/demo.yaml: key 'optim.lr': ...`` or ``command line --optim.lr: ...``).

Strings may use ``{output_dir}`` and ``{synthetic}`` (the synthetic data folder); relative paths are relative to the
working directory.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data.prepared import DatasetDescription, describe_dataset
from ..errors import ConfigError, Where
from ..kinds import kind_of

# ----------------------------------------------------------------------------------------------------------------------
# value checkers: each takes (value, where) and returns the normalised value or raises ConfigError

_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _int(minimum: int | None = None, nullable: bool = False) -> Callable:
    def check(value, key, w):
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise w.error(key, f"expected an integer{' or null' if nullable else ''}, got {value!r}")
        if minimum is not None and value < minimum:
            raise w.error(key, f"expected an integer >= {minimum}, got {value}")
        return value
    return check


def _float(minimum: float | None = None, maximum: float | None = None, nullable: bool = False,
           exclusive_min: bool = False) -> Callable:
    def check(value, key, w):
        if value is None and nullable:
            return None
        # YAML 1.1 (PyYAML) reads 3e-4 as a string: accept numeric strings for float settings
        if isinstance(value, str) and _FLOAT.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise w.error(key, f"expected a number{' or null' if nullable else ''}, got {value!r}")
        value = float(value)
        if minimum is not None and (value < minimum or (exclusive_min and value == minimum)):
            raise w.error(key, f"expected a number {'>' if exclusive_min else '>='} {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise w.error(key, f"expected a number <= {maximum}, got {value}")
        return value
    return check


def _bool(value, key, w):
    if not isinstance(value, bool):
        raise w.error(key, f"expected true or false, got {value!r}")
    return value


def _str(nullable: bool = False) -> Callable:
    def check(value, key, w):
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise w.error(key, f"expected a non-empty string{' or null' if nullable else ''}, got {value!r}")
        return value
    return check


def _choice(*options) -> Callable:
    def check(value, key, w):
        if value not in options:
            raise w.error(key, f"expected one of {', '.join(map(str, options))}, got {value!r}")
        return value
    return check


def _float_list(nullable: bool = False, minimum=None, maximum=None, increasing: bool = False) -> Callable:
    def check(value, key, w):
        if value is None and nullable:
            return None
        if not isinstance(value, list) or not value:
            raise w.error(key, f"expected a non-empty list of numbers, got {value!r}")
        values = [_float(minimum, maximum)(v, f"{key}[{i}]", w) for i, v in enumerate(value)]
        if increasing and any(a >= b for a, b in zip(values, values[1:])):
            raise w.error(key, f"expected increasing values, got {value!r}")
        return values
    return check


def _str_list(nullable: bool = False) -> Callable:
    def check(value, key, w):
        if value is None and nullable:
            return None
        if not isinstance(value, list):
            raise w.error(key, f"expected a list of strings, got {value!r}")
        return [_str()(v, f"{key}[{i}]", w) for i, v in enumerate(value)]
    return check


def _mapping(value, key, w):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise w.error(key, f"expected a mapping, got {type(value).__name__}")
    return copy.deepcopy(value)


def _transform_list(value, key, w):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise w.error(key, f"expected a list of transform configs ({{type: Name, ...}}), got {value!r}")
    return copy.deepcopy(value)


def _obs_ratio(value, key, w):
    if value == "random":
        return value
    return _float(0.0, 1.0, exclusive_min=True)(value, key, w)


# ----------------------------------------------------------------------------------------------------------------------
# schema: nested dicts of checkers with defaults; SECTION marks a fixed sub-mapping, TASKS the per-task mapping


@dataclass(frozen=True)
class Leaf:
    check: Callable
    default: Any
    doc: str = ""


DATASET_REF = {
    "path": Leaf(_str(nullable=True), None, "prepared dataset folder or Parquet file(s)"),
    "split": Leaf(_str(nullable=True), None, "split name"),
    "target_path": Leaf(_str(nullable=True), None, "pose estimation: the 3D dataset paired by sample_id"),
}

TASK_SCHEMA = {
    "train": DATASET_REF,
    "eval": DATASET_REF,
    "label_set": Leaf(_str(nullable=True), None, "label set (default: the task's one matching the dataset)"),
    "weight": Leaf(_int(1), 1, "batches of this task per round-robin cycle"),
    "loss_weight": Leaf(_float(0.0), 1.0, "lambda_m, multiplies the task loss"),
    "l1_weight": Leaf(_float(0.0, nullable=True), None, "this task's soft-argmax L1 weight (default: "
                                                         "training.l1_weight)"),
    "batch_size": Leaf(_int(1), 16, "per process"),
    "eval_batch_size": Leaf(_int(1, nullable=True), None, "per process (default: evaluation.batch_size)"),
    "transforms": Leaf(lambda v, k, w: _transform_list(v, k, w) or [], [], "applied to the encoder input after temporal sampling"),
    "eval_transforms": Leaf(_transform_list, None, "deterministic transforms at evaluation (default: the "
                                                   "deterministic part of transforms)"),
    "overrides": Leaf(_mapping, {}, "deep-merged into the task file (e.g. output.frames, input.observed_frames)"),
    "train_obs_ratio": Leaf(_obs_ratio, "random", "early prediction: 'random' (one of the task's obs_ratios per "
                                                  "sample) or a fixed ratio"),
    "eval_obs_ratios": Leaf(_float_list(nullable=True, minimum=0.0, maximum=1.0, increasing=True), None,
                            "early prediction: ratios evaluated (default: the task's obs_ratios)"),
    "eval_frame_stride": Leaf(_int(1), 1, "pose estimation: every k-th frame of a test sequence is evaluated"),
    "eval_windows": Leaf(_int(1), 1, "motion prediction: evenly spaced windows per test sequence"),
    "max_eval_items": Leaf(_int(1, nullable=True), None, "cap on evaluation items (first ones)"),
}

SCHEMA = {
    "stage": Leaf(_choice("supervised"), "supervised", "pretrain configs: ups_toolkit.pretraining.config"),
    "seed": Leaf(_int(0), 0),
    "output_dir": Leaf(_str(), "runs/{config_name}"),
    "synthetic": {
        "enabled": Leaf(_bool, False, "generate the synthetic demo data into `dir` when it is missing"),
        "dir": Leaf(_str(), "{output_dir}/data"),
        "num_per_class": Leaf(_int(1), 8),
        "seed": Leaf(_int(0), 0),
    },
    "vocabulary": {
        "text_encoder": Leaf(_str(), "FacebookAI/roberta-base", "hub id, local folder or pkg:<module>"),
        "pooling": Leaf(_choice("mean", "cls"), "mean"),
        "max_length": Leaf(_int(1), 64),
        "cache_dir": Leaf(_str(nullable=True), None, "text-embedding cache (default: $UPS_CACHE_DIR or "
                                                     "~/.cache/ups_toolkit)"),
        "roots": Leaf(_str_list(), [], "user folders holding tokenizers/ and tasks/, searched first"),
    },
    "model": Leaf(_mapping, {}, "UPSConfig fields; `encoder` holds DSTEConfig fields and an optional `preset`"),
    "tasks": "TASKS",
    "optim": {
        "lr": Leaf(_float(0.0, exclusive_min=True), 3e-4),
        "weight_decay": Leaf(_float(0.0), 0.05),
        "betas": Leaf(_float_list(minimum=0.0, maximum=1.0), [0.9, 0.999]),
        "eps": Leaf(_float(0.0, exclusive_min=True), 1e-8),
        "warmup_ratio": Leaf(_float(0.0, 1.0), 0.05),
        "min_lr_ratio": Leaf(_float(0.0, 1.0), 0.01),
        "grad_clip": Leaf(_float(0.0, nullable=True), 1.0),
        "grad_accum": Leaf(_int(1), 1, "micro-batches of one task per optimizer step"),
        "decoder_lr_scale": Leaf(_float(0.0, exclusive_min=True), 1.0,
                                 "learning rate of the decoder (everything outside the encoder) / optim.lr"),
    },
    "training": {
        "steps": Leaf(_int(1), 1000, "optimizer steps of the joint stage"),
        "eval_every": Leaf(_int(0), 0, "evaluate every k steps (0: only at the end of a stage)"),
        "checkpoint_every": Leaf(_int(0), 0, "save_state every k steps (0: only at the end of a stage)"),
        "keep_checkpoints": Leaf(_int(1), 2),
        "log_every": Leaf(_int(1), 10),
        "num_workers": Leaf(_int(0), 0),
        "mixed_precision": Leaf(_choice("auto", "no", "bf16", "fp16"), "auto", "auto: bf16 on GPU, fp32 on CPU"),
        "cpu": Leaf(_bool, False, "force the CPU even when a GPU is present"),
        "l1_weight": Leaf(_float(0.0), 0.0, "lambda of the L1 on soft-argmax coordinates (metres) and "
                                                    "detection times (fraction of the window)"),
        "expect_processes": Leaf(_int(1, nullable=True), None, "fail unless launched on this many processes (a "
                                                               "guard against launchers that silently run one)"),
        "best_metric": Leaf(_str(nullable=True), None, "TASK/METRIC ranking evaluations (default: the first "
                                                       "task's headline)"),
    },
    "finetune": {
        "steps": Leaf(_int(0), 0, "per-task fine-tuning steps after the joint stage (0: no fine-tuning)"),
        "lr": Leaf(_float(0.0, nullable=True, exclusive_min=True), None, "default: optim.lr / 10"),
        "tasks": Leaf(_str_list(nullable=True), None, "default: every configured task"),
    },
    "evaluation": {
        "batch_size": Leaf(_int(1), 32),
        "horizons_ms": Leaf(_float_list(minimum=0.0, increasing=True), [80.0, 160.0, 320.0, 400.0]),
        "detection_tiou": Leaf(_float_list(minimum=0.0, maximum=1.0, increasing=True), [0.1, 0.3, 0.5, 0.7]),
        "top_k": Leaf(_int(1), 5),
    },
    "logging": {
        "tensorboard": Leaf(_bool, True),
        "plots": Leaf(_bool, True, "training curve, confusion matrices, routing maps (PNG)"),
    },
}


def _defaults(schema) -> dict:
    out = {}
    for key, spec in schema.items():
        if spec == "TASKS":
            out[key] = {}
        elif isinstance(spec, dict):
            out[key] = _defaults(spec)
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def _validate(data, schema, prefix: str, w: Where, *, optional_sections: tuple = ()) -> dict:
    if not isinstance(data, dict):
        raise w.error(prefix or "(top level)", f"expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(schema), key=str)
    if unknown:
        raise w.error(f"{prefix}{unknown[0]}", f"unknown key (allowed here: {', '.join(schema)})")
    out = {}
    for key, spec in schema.items():
        full = f"{prefix}{key}"
        value = data.get(key)
        if spec == "TASKS":
            out[key] = _validate_tasks(value, full, w)
        elif isinstance(spec, dict):
            if value is None and key in optional_sections:
                out[key] = None
            else:
                merged = _defaults(spec) if value is None else value
                if isinstance(merged, dict):
                    merged = {**_defaults(spec), **merged}
                out[key] = _validate(merged, spec, f"{full}.", w)
        else:
            out[key] = spec.check(spec.default if key not in data else value, full, w)
    return out


def _validate_tasks(value, key, w) -> dict:
    if not isinstance(value, dict) or not value:
        raise w.error(key, "expected a mapping task name -> task settings with at least one task")
    tasks = {}
    for name, settings in value.items():
        merged = {**_defaults(TASK_SCHEMA), **(settings or {})} if isinstance(settings, dict) or settings is None \
            else settings
        if isinstance(merged, dict):
            for ref in ("train", "eval"):
                if (settings or {}).get(ref) is None:
                    merged[ref] = None
        tasks[str(name)] = _validate(merged, TASK_SCHEMA, f"{key}.{name}.", w, optional_sections=("train", "eval"))
        for ref in ("train", "eval"):
            if tasks[str(name)][ref] is not None:
                for required in ("path", "split"):
                    if tasks[str(name)][ref][required] is None:
                        raise w.error(f"{key}.{name}.{ref}.{required}", "missing")
    return tasks


# ----------------------------------------------------------------------------------------------------------------------
# loading, overrides


def find_config(name_or_path: str) -> Path:
    """A config file path, or a name (``demo``) looked up in ``configs/`` (checkout, then installed copies)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml") and (path.parent != Path(".") or path.exists()):
        raise ConfigError(f"config file {name_or_path} does not exist")
    from ..resources import find_resource

    return find_resource("configs", path.name if path.suffix else f"{path.name}.yaml")


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """``["--optim.lr", "3e-4", "--training.steps=10"]`` -> ``[("optim.lr", 3e-4), ("training.steps", 10)]``.
    Values are YAML (numbers, true/false, null, [lists], {mappings})."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"command line: expected --key value, got {arg!r}")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"command line --{arg[2:]}: missing value")
            key, text = arg[2:], args[i + 1]
            i += 2
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, str) and _FLOAT.match(value.strip()):
            value = float(value) if any(c in value for c in ".eE") else int(value)
        out.append((key, value))
    return out


def _apply_override(data: dict, key: str, value, sources: dict) -> None:
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"command line --{key}: malformed key")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"command line --{key}: key {'.'.join(parts[:depth + 1])!r} is not a mapping")
        node = child
    node[parts[-1]] = value
    sources[key] = f"command line --{key}"


def _substitute(value, names: dict):
    if isinstance(value, str):
        out = value
        for name, replacement in names.items():
            out = out.replace("{" + name + "}", replacement)
        return out
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    return value


@dataclass
class ExperimentConfig:
    """A validated experiment config. ``data`` is the resolved mapping (defaults filled, placeholders replaced)."""

    data: dict
    source: str  # the YAML file
    name: str  # the config's stem
    overrides: list = field(default_factory=list)

    def __getitem__(self, key):
        return self.data[key]

    @property
    def output_dir(self) -> Path:
        return Path(self.data["output_dir"])

    @property
    def task_names(self) -> list[str]:
        return list(self.data["tasks"])

    def to_yaml(self) -> str:
        header = f"# resolved from {self.source}" + (
            f" with {' '.join(f'--{k} {json.dumps(v)}' for k, v in self.overrides)}" if self.overrides else "")
        return header + "\n" + yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None, width=120)

    def save(self, folder: str | Path) -> Path:
        from ..atomic import atomic_write_text

        path = Path(folder) / "config.yaml"
        atomic_write_text(path, self.to_yaml())
        return path


def load_config(name_or_path: str, overrides: list[str] | list[tuple[str, Any]] | None = None, *,
                check_data: bool = True) -> ExperimentConfig:
    """Read a config, apply overrides, validate (stage 1, light). ``check_data`` checks dataset paths, splits,
    layouts and label sets (off only for evaluating a model on data named elsewhere)."""
    from ..tokenization.specs import load_yaml

    path = find_config(name_or_path)
    raw = load_yaml(path)
    pairs = parse_overrides(overrides) if overrides and isinstance(overrides[0], str) else list(overrides or [])
    sources: dict[str, str] = {}
    for key, value in pairs:
        _apply_override(raw, key, value, sources)
    w = Where(str(path), sources)
    data = _validate(raw, SCHEMA, "", w)
    data["output_dir"] = data["output_dir"].replace("{config_name}", path.stem)
    synthetic_dir = _substitute(data["synthetic"]["dir"], {"output_dir": data["output_dir"]})
    data = _substitute(data, {"output_dir": data["output_dir"], "synthetic": synthetic_dir})
    config = ExperimentConfig(data=data, source=str(path), name=path.stem, overrides=pairs)
    check_semantics(config, w, check_data=check_data)
    return config


# ----------------------------------------------------------------------------------------------------------------------
# semantic checks (stage 1)


def _synthetic_description(config: ExperimentConfig, path: Path) -> DatasetDescription | None:
    """What write_synthetic will put at ``path`` when the synthetic folder is to be generated, else None."""
    syn = config["synthetic"]
    if not syn["enabled"]:
        return None
    root = Path(syn["dir"])
    if path.parent.resolve() != root.resolve():
        return None
    from ..data import synthetic

    if path.name not in synthetic.KINDS:
        return None
    spec = synthetic.dataset_spec(path.name)
    columns = ("keypoint", "label", "layout") + (("segments",) if spec.with_segments else ())
    return DatasetDescription(str(path), ("train", "test"), tuple(spec.class_names), spec.layout, spec.channels,
                              spec.fps, columns)


def dataset_description(config: ExperimentConfig, path: str, key: str, w: Where) -> DatasetDescription | None:
    p = Path(path)
    if not p.exists():
        planned = _synthetic_description(config, p)
        if planned is not None:
            return planned
        raise w.error(key, f"dataset path {path} does not exist")
    return describe_dataset(p)


def check_semantics(config: ExperimentConfig, w: Where | None = None, *, check_data: bool = True) -> None:
    from ..skeleton.transforms import build_transforms
    from ..tokenization.grammar import max_target_length
    from ..tokenization.specs import load_task, task_paths

    w = w or Where(config.source)
    data = config.data
    roots = data["vocabulary"]["roots"] or None
    known = task_paths(roots)
    frames = set()
    for name, settings in data["tasks"].items():
        key = f"tasks.{name}"
        if name not in known:
            raise w.error(key, f"unknown task; task files found: {', '.join(known) or 'none'}")
        spec = load_task(name, roots)
        if not spec.has_decoder:
            raise w.error(key, f"task {name!r} is encoder-only (output.grammar none): it has no training targets")
        if settings["overrides"]:
            try:
                spec = spec.with_overrides(settings["overrides"], f"{spec.path} with {config.source} {key}.overrides")
            except ConfigError as e:
                raise w.error(f"{key}.overrides", str(e)) from None
        frames.add(spec.input.frames)
        try:
            train_pipeline = build_transforms(settings["transforms"])
            if settings["eval_transforms"] is not None and build_transforms(settings["eval_transforms"]).random:
                raise w.error(f"{key}.eval_transforms", "evaluation transforms must be deterministic")
        except ConfigError as e:
            if str(e).startswith(w.source_of(key)):
                raise
            raise w.error(f"{key}.transforms", str(e)) from None
        for i, t in enumerate(settings["transforms"] + (settings["eval_transforms"] or [])):
            if t.get("type") in ("Resize", "CropResize"):
                raise w.error(f"{key}.transforms[{i}]", f"{t['type']}: temporal sampling is the task's "
                                                        f"(input.sampling {spec.input.sampling!r}); remove it")
        if kind_of(spec).coordinate_targets and train_pipeline.random:
            raise w.error(f"{key}.transforms", "a coordinate-output task needs deterministic transforms (a random "
                                               "geometric change of the input would not reach the target)")
        if settings["train"] is None and settings["eval"] is None:
            raise w.error(key, "give a 'train' and/or an 'eval' dataset")
        if settings["eval_obs_ratios"] is not None and "observe" not in kind_of(spec).inference_options:
            raise w.error(f"{key}.eval_obs_ratios", "only for observed-prefix tasks (early prediction)")
        if check_data:
            _check_task_data(config, name, spec, settings, w)
        if max_target_length(spec) <= 0:
            raise w.error(key, "the task has no target tokens")
    if len(frames) > 1:
        raise w.error("tasks", f"every task must feed the encoder the same number of frames, got {sorted(frames)}")
    best = data["training"]["best_metric"]
    if best is not None:
        task = best.split("/")[0]
        if "/" not in best or task not in data["tasks"]:
            raise w.error("training.best_metric", f"expected TASK/METRIC with a configured task, got {best!r}")
    ft = data["finetune"]["tasks"]
    for i, name in enumerate(ft or []):
        if name not in data["tasks"]:
            raise w.error(f"finetune.tasks[{i}]", f"{name!r} is not a configured task")
    if len(data["optim"]["betas"]) != 2:
        raise w.error("optim.betas", "expected two numbers [beta1, beta2]")


def _check_task_data(config, name, spec, settings, w) -> None:
    from ..resources import list_resources, load_label_set
    from ..tokenization.vocabulary import normalise_name

    key = f"tasks.{name}"
    kinds = set(spec.input.kinds)
    kind = kind_of(spec)
    first = None
    for ref_name in ("train", "eval"):
        ref = settings[ref_name]
        if ref is None:
            continue
        rkey = f"{key}.{ref_name}"
        desc = dataset_description(config, ref["path"], f"{rkey}.path", w)
        if desc is None:
            continue  # Parquet and other forms without metadata files: checked after loading
        if desc.splits and ref["split"] not in desc.splits:
            raise w.error(f"{rkey}.split", f"{ref['path']} has no split {ref['split']!r}; splits: "
                                           f"{', '.join(desc.splits)}")
        if desc.layout is not None and desc.layout not in spec.input.layouts:
            raise w.error(f"{rkey}.path", f"{ref['path']} has layout {desc.layout!r}; task {name!r} accepts "
                                          f"{', '.join(spec.input.layouts)}")
        if desc.channels is not None and f"{desc.channels}d" not in kinds:
            raise w.error(f"{rkey}.path", f"{ref['path']} holds {desc.channels}D keypoints; task {name!r} takes "
                                          f"{' or '.join(sorted(k.upper() for k in kinds))}")
        if kind.paired_3d_targets:
            target = ref["target_path"]
            if target is None and desc.columns and "keypoint_3d" not in desc.columns:
                raise w.error(f"{rkey}.target_path", f"{ref['path']} has no keypoint_3d column: name the 3D "
                                                     f"dataset paired by sample_id")
            if target is not None:
                tdesc = dataset_description(config, target, f"{rkey}.target_path", w)
                if tdesc is not None:
                    if tdesc.splits and ref["split"] not in tdesc.splits:
                        raise w.error(f"{rkey}.target_path", f"{target} has no split {ref['split']!r}")
                    if tdesc.channels not in (None, 3):
                        raise w.error(f"{rkey}.target_path", f"{target} holds {tdesc.channels}D keypoints, "
                                                             f"expected 3D targets")
                    if desc.layout and tdesc.layout and tdesc.layout != desc.layout:
                        raise w.error(f"{rkey}.target_path", f"layout {tdesc.layout!r} differs from the input's "
                                                             f"{desc.layout!r}")
        elif ref["target_path"] is not None:
            raise w.error(f"{rkey}.target_path", "only 2D-to-3D pose estimation pairs a target dataset")
        if kind.scores_horizons and ref_name == "eval" and desc.fps:
            _check_horizons(config, name, spec, float(desc.fps), w)
        for column, what in kind.required_columns.items():
            if desc.columns and column not in desc.columns:
                raise w.error(f"{rkey}.path", f"{ref['path']} has no {column!r} ({what})")
        if kind.uses_labels and desc.class_names is not None:
            first = first or desc
            if desc.class_names != first.class_names:
                raise w.error(f"{rkey}.path", f"class names differ from those of {first.path}")
    if first is None or not kind.uses_labels:
        return
    roots = config["vocabulary"]["roots"] or None
    names = [normalise_name(c) for c in first.class_names]
    label_set = settings["label_set"]
    files = list_resources("tokenizers", "labels", roots=roots)
    if label_set is None:
        # the task's default label sets first, then every label-set file: the one naming the data's classes
        for candidate in dict.fromkeys([*spec.output.label_sets, *files]):
            try:
                classes = load_label_set(candidate, roots=roots)
            except ConfigError:
                continue
            if [normalise_name(c) for c in classes] == names:
                settings["label_set"] = candidate
                return
        # no file names these classes: the dataset's own class names become a label set of the vocabulary
        own = data_label_set_name(first.path)
        if own in files:
            raise w.error(f"{key}.label_set", f"the class names of {first.path} match no label set, and its "
                                              f"folder name {own!r} is a label-set file with other classes: give "
                                              f"the label set a name of its own")
        settings["label_set"] = own
        return
    if label_set not in files:  # a label set the data defines (its ClassLabel names) under this name
        return
    try:
        classes = load_label_set(label_set, roots=roots)
    except ConfigError as e:
        raise w.error(f"{key}.label_set", str(e)) from None
    wanted = [normalise_name(c) for c in classes]
    if wanted != names:
        details = [] if len(wanted) == len(names) else [f"{len(wanted)} classes vs {len(names)} in the dataset"]
        i = next((i for i, (a, b) in enumerate(zip(wanted, names)) if a != b), None)
        if i is not None:
            details.append(f"class {i} is {classes[i]!r} in the label set but {first.class_names[i]!r} in the "
                           f"dataset")
        detail = "; ".join(details)
        raise w.error(f"{key}.label_set", f"label set {label_set!r} does not match the class names of "
                                          f"{first.path}: {detail}")


def data_label_set_name(path: str | Path) -> str:
    """The name of the label set a dataset's own class names form: its folder's name, lower-case, ``_`` between
    words (``data/My Actions`` -> ``my_actions``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", Path(path).name.lower()).strip("_")
    return slug or "dataset"


def _check_horizons(config, name, spec, fps: float, w) -> None:
    """Every evaluation horizon must fall on one of the K predicted frames at the data's frame rate."""
    from ..metrics.motion import horizon_frame_indices

    horizons = config["evaluation"]["horizons_ms"]
    try:
        indices = horizon_frame_indices(fps, horizons)
    except ValueError as e:
        raise w.error("evaluation.horizons_ms", f"{e} (task {name!r})") from None
    k = spec.output.frames
    for ms, index in zip(horizons, indices):
        if index >= k:
            raise w.error("evaluation.horizons_ms", f"{ms:g} ms is predicted frame {index + 1} at {fps:g} fps, but "
                                                    f"task {name!r} predicts K = {k} frames (set output.frames in "
                                                    f"tasks.{name}.overrides)")


# ----------------------------------------------------------------------------------------------------------------------
# stage 2: the model section


def check_model_section(config: ExperimentConfig) -> None:
    """Check ``model`` (and ``model.encoder``) keys against ``UPSConfig`` / ``DSTEConfig`` (imports torch)."""
    import dataclasses
    import inspect

    from ..models.configuration_ups import UPSConfig
    from ..models.dste import PRESETS, DSTEConfig

    w = Where(config.source)
    model = config["model"]
    allowed = set(inspect.signature(UPSConfig.__init__).parameters) - {"self", "kwargs", "encoder", "tasks",
                                                                       "task_specs"}
    for key in model:
        if key == "encoder":
            continue
        if key == "encoder_init":
            init = model[key]
            if init is not None and (not isinstance(init, str) or not Path(init).is_file()):
                raise w.error("model.encoder_init", f"expected an encoder file (a pretraining run's "
                                                    f"encoder.safetensors or a released USDRL checkpoint), "
                                                    f"got {init!r}: no such file")
            continue
        if key not in allowed:
            raise w.error(f"model.{key}", f"unknown key (UPSConfig fields: {', '.join(sorted(allowed))})")
    encoder = model.get("encoder") or {}
    if not isinstance(encoder, dict):
        raise w.error("model.encoder", "expected a mapping of DSTEConfig fields")
    fields = {f.name for f in dataclasses.fields(DSTEConfig)} | {"preset"}
    for key in encoder:
        if key not in fields:
            raise w.error(f"model.encoder.{key}", f"unknown key (DSTEConfig fields: {', '.join(sorted(fields))})")
    if "preset" in encoder and encoder["preset"] not in PRESETS:
        raise w.error("model.encoder.preset", f"unknown preset {encoder['preset']!r}; known: {', '.join(PRESETS)}")
