"""Pretraining run configs (``stage: pretrain``): one YAML file describes a USDRL pretraining run (docs/design.md D10),
validated as strictly as the supervised configs (:mod:`ups_toolkit.training.config`, whose checkers, ``--key value``
overrides, placeholders and error messages are reused).

Sections::

    stage: pretrain
    seed, output_dir, synthetic            as in the supervised configs
    data:      path, split, transforms     prepared dataset; deterministic transforms before the views (e.g.
                                           PreNormalize3D)
    views:     transforms, modalities, bone_variant
                                           the four-view pipeline (null: the USDRL recipe at model T);
                                           [joint] = the AAAI run, [joint, bone, motion] = multi-modal (D10)
    model:     encoder {preset, DSTEConfig fields}, projector_hidden, projector_out, instance_out
    loss:      MG-FD weights (default: the AAAI code, L = 5·S + V + 1e-3·X; xc_weight 0 = TPAMI)
    optim:     Adam with L2 weight decay (not AdamW), lr, step decay (lr_milestones in epochs, gamma)
    training:  epochs, max_steps, batch_size (per process, >= 2), checkpointing, logging, precision

Every problem raises :class:`~ups_toolkit.errors.ConfigError` naming the dotted key and its source, before any model
or dataset is built. No torch import here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError, Where
from ..training.config import (
    SCHEMA as SUPERVISED_SCHEMA,
    ExperimentConfig,
    Leaf,
    _apply_override,
    _bool,
    _choice,
    _float,
    _float_list,
    _int,
    _mapping,
    _str,
    _str_list,
    _substitute,
    _transform_list,
    _validate,
    dataset_description,
    find_config,
    parse_overrides,
)


def _batch_size(value, key, w):
    value = _int(1)(value, key, w)
    if value < 2:
        raise w.error(key, f"USDRL pretraining needs at least 2 samples per batch and process (the projectors' "
                           f"BatchNorm and MG-FD's variance and covariance are batch statistics; B = 1 gives NaN), "
                           f"got {value}")
    return value


def _int_list(value, key, w):
    if not isinstance(value, list):
        raise w.error(key, f"expected a list of integers, got {value!r}")
    values = [_int(0)(v, f"{key}[{i}]", w) for i, v in enumerate(value)]
    if any(a >= b for a, b in zip(values, values[1:])):
        raise w.error(key, f"expected increasing epochs, got {value!r}")
    return values


PRETRAIN_SCHEMA = {
    "stage": Leaf(_choice("pretrain"), "pretrain"),
    "seed": Leaf(_int(0), 0),
    "output_dir": Leaf(_str(), "runs/{config_name}"),
    "synthetic": SUPERVISED_SCHEMA["synthetic"],
    "data": {
        "path": Leaf(_str(nullable=True), None, "prepared dataset folder or Parquet file(s) (labels unused)"),
        "split": Leaf(_str(), "train"),
        "transforms": Leaf(lambda v, k, w: _transform_list(v, k, w) or [], [],
                           "deterministic transforms applied before the view pipeline (e.g. PreNormalize3D)"),
    },
    "views": {
        "transforms": Leaf(_transform_list, None, "per-view pipeline; null: the USDRL recipe (CropResize to T, "
                                                  "then mask / 3x3 map / shear)"),
        "modalities": Leaf(_str_list(), ["joint"], "[joint] (AAAI), or e.g. [joint, bone, motion]"),
        "bone_variant": Leaf(_str(nullable=True), None, "alternative parent table of the layout for bones"),
    },
    "model": {
        "encoder": Leaf(_mapping, {"preset": "paper"}, "DSTEConfig fields and an optional preset; num_blocks 1"),
        "projector_hidden": Leaf(_int(1, nullable=True), None, "default 2d"),
        "projector_out": Leaf(_int(1, nullable=True), None, "temporal / spatial projector output, default 2d"),
        "instance_out": Leaf(_int(1, nullable=True), None, "instance projector output, default 4d"),
    },
    "loss": {
        "sim_weight": Leaf(_float(0.0), 5.0),
        "vac_weight": Leaf(_float(0.0), 1.0),
        "xc_weight": Leaf(_float(0.0), 1e-3, "0: the TPAMI loss L = 5S + V"),
        "granularity_weights": {
            "t": Leaf(_float(0.0), 0.5),
            "s": Leaf(_float(0.0), 0.5),
            "i": Leaf(_float(0.0), 1.0),
        },
    },
    "optim": {
        "lr": Leaf(_float(0.0, exclusive_min=True), 5e-4),
        "weight_decay": Leaf(_float(0.0), 1e-5, "L2 (Adam's weight_decay), on every parameter as the reference"),
        "betas": Leaf(_float_list(minimum=0.0, maximum=1.0), [0.9, 0.999]),
        "eps": Leaf(_float(0.0, exclusive_min=True), 1e-8),
        "lr_milestones": Leaf(_int_list, [350], "0-based epochs from which lr is multiplied by gamma once more "
                                                "(350 = 'x0.1 at epoch 351' of the reference)"),
        "gamma": Leaf(_float(0.0, 1.0), 0.1),
        "grad_clip": Leaf(_float(0.0, nullable=True), None, "the reference does not clip"),
    },
    "training": {
        "epochs": Leaf(_int(1), 451),
        "max_steps": Leaf(_int(1, nullable=True), None, "stop after this many optimizer steps (demos, budgets)"),
        "batch_size": Leaf(_batch_size, 356, "per process; the last incomplete batch of an epoch is dropped"),
        "checkpoint_every": Leaf(_int(0), 0, "save_state every k steps (0: only at the end)"),
        "keep_checkpoints": Leaf(_int(1), 2),
        "log_every": Leaf(_int(1), 10),
        "num_workers": Leaf(_int(0), 0),
        "mixed_precision": Leaf(_choice("auto", "no", "bf16", "fp16"), "auto", "auto: bf16 on GPU, fp32 on CPU; "
                                                                            "MG-FD always fp32"),
        "cpu": Leaf(_bool, False),
        "expect_processes": Leaf(_int(1, nullable=True), None),
    },
    "logging": SUPERVISED_SCHEMA["logging"],
}


def is_pretrain_config(name_or_path: str, overrides: list[tuple[str, Any]] | None = None) -> bool:
    """True when the file (or a ``--stage`` override) says ``stage: pretrain``; a light YAML read."""
    from ..tokenization.specs import load_yaml

    for key, value in overrides or []:
        if key == "stage":
            return value == "pretrain"
    raw = load_yaml(find_config(name_or_path))
    return isinstance(raw, dict) and raw.get("stage") == "pretrain"


def load_pretrain_config(name_or_path: str, overrides: list[str] | list[tuple[str, Any]] | None = None, *,
                         check_data: bool = True) -> ExperimentConfig:
    """Read a pretraining config, apply ``--key value`` overrides, validate (no torch). ``check_data``: the dataset
    path and split exist (or will be written by ``synthetic``)."""
    from ..skeleton.transforms import build_transforms
    from ..tokenization.specs import load_yaml
    from .views import view_modalities

    path = find_config(name_or_path)
    raw = load_yaml(path) or {}
    pairs = parse_overrides(overrides) if overrides and isinstance(overrides[0], str) else list(overrides or [])
    sources: dict[str, str] = {}
    for key, value in pairs:
        _apply_override(raw, key, value, sources)
    w = Where(str(path), sources)
    if isinstance(raw, dict) and raw.get("stage") is None:
        raw["stage"] = "pretrain"  # train.py --stage pretrain on a file without the key
    data = _validate(raw, PRETRAIN_SCHEMA, "", w)
    data["output_dir"] = data["output_dir"].replace("{config_name}", path.stem)
    synthetic_dir = _substitute(data["synthetic"]["dir"], {"output_dir": data["output_dir"]})
    data = _substitute(data, {"output_dir": data["output_dir"], "synthetic": synthetic_dir})
    config = ExperimentConfig(data=data, source=str(path), name=path.stem, overrides=pairs)

    if data["data"]["path"] is None:
        raise w.error("data.path", "missing (the prepared dataset to pretrain on)")
    try:
        view_modalities(data["views"]["modalities"])
    except ConfigError as e:
        raise w.error("views.modalities", str(e)) from None
    for key in ("data.transforms", "views.transforms"):
        section, name = key.split(".")
        value = data[section][name]
        if value is None:
            continue
        try:
            pipeline = build_transforms(value)
        except ConfigError as e:
            raise w.error(key, str(e)) from None
        if key == "data.transforms" and pipeline.random:
            raise w.error(key, "must be deterministic (the random augmentation is the view pipeline's)")
    encoder = data["model"]["encoder"]
    if int(encoder.get("num_blocks", 1)) != 1:
        raise w.error("model.encoder.num_blocks", "pretraining takes an unrouted encoder (1); a UPS model copies "
                                                  "the weights into its H blocks when it loads them")
    if len(data["optim"]["betas"]) != 2:
        raise w.error("optim.betas", "expected two numbers [beta1, beta2]")
    if check_data:
        desc = dataset_description(config, data["data"]["path"], "data.path", w)
        if desc is not None and desc.splits and data["data"]["split"] not in desc.splits:
            raise w.error("data.split", f"{data['data']['path']} has no split {data['data']['split']!r}; splits: "
                                        f"{', '.join(desc.splits)}")
    return config


def check_encoder_section(config: ExperimentConfig, layout: str, persons: int, joints: int):
    """DSTEConfig from ``model.encoder`` and the data (layout, persons); ConfigError naming the key otherwise."""
    import dataclasses

    from ..models.dste import PRESETS, DSTEConfig

    w = Where(config.source, {k: f"command line --{k}" for k, _ in config.overrides})
    encoder = dict(config["model"]["encoder"])
    fields = {f.name for f in dataclasses.fields(DSTEConfig)}
    for key in encoder:
        if key not in fields | {"preset"}:
            raise w.error(f"model.encoder.{key}", f"unknown key (DSTEConfig fields: {', '.join(sorted(fields))})")
    preset = encoder.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise w.error("model.encoder.preset", f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    encoder.setdefault("layouts", [layout])
    if layout not in encoder["layouts"]:
        raise w.error("model.encoder.layouts", f"the data has layout {layout!r}")
    encoder.setdefault("max_persons", persons)
    encoder.setdefault("max_spatial_tokens", encoder["max_persons"] * joints)
    try:
        return DSTEConfig.from_preset(preset, **encoder) if preset else DSTEConfig(**encoder)
    except (ConfigError, TypeError) as e:
        raise w.error("model.encoder", str(e)) from None


__all__ = ["PRETRAIN_SCHEMA", "check_encoder_section", "is_pretrain_config", "load_pretrain_config"]
