"""Resume under a changed config: which differences from the checkpoint's config alter the run, and refusing them.

A checkpoint keeps the resolved config it was trained with (``trainer_state.json``, key ``config``). On resume the
new config is compared with it key by key, before anything is written: a difference in a key that changes what the
run computes (model shape, data, seed, optimiser, schedule, steps, batch size, ... — every key but the few in
:data:`HARMLESS`) is refused with one line naming each changed key, unless ``--allow_config_change`` names it
(a key, or a section such as ``optim``). Allowed changes are recorded in ``<output_dir>/config_changes.jsonl``.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

from ..errors import ConfigError

# keys that change where things go or how often we look, never the weights a run computes
HARMLESS = ("output_dir", "logging.*", "training.log_every", "training.checkpoint_every", "training.keep_checkpoints",
            "training.num_workers", "training.expect_processes", "evaluation.batch_size", "tasks.*.eval_batch_size",
            "vocabulary.cache_dir")
ABSENT = "<absent>"


def _plain(value):
    """JSON's view of a value (tuples as lists), so a config read back from JSON compares equal to itself."""
    return json.loads(json.dumps(value))


def config_differences(old: dict, new: dict) -> dict[str, tuple]:
    """{dotted key: (old value, new value)} for every leaf that differs; a section present on one side only is one
    key (``tasks.X``), with :data:`ABSENT` on the other."""
    out: dict[str, tuple] = {}

    def walk(prefix: str, a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                walk(f"{prefix}{key}.", a.get(key, ABSENT), b.get(key, ABSENT))
        elif a != b:
            out[prefix[:-1]] = (a, b)

    walk("", _plain(old), _plain(new))
    return out


def parse_allowed(spec: str | None) -> tuple[str, ...]:
    """``--allow_config_change optim.lr,training.steps`` -> ("optim.lr", "training.steps")."""
    return tuple(k.strip() for k in (spec or "").split(",") if k.strip())


def _allowed(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key == a or key.startswith(a + ".") for a in allowed)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_config_change(saved: dict, config, allowed: tuple[str, ...], checkpoint) -> dict[str, tuple]:
    """Compare the checkpoint's config (``saved``) with the new ``config``; returns the run-altering changes that
    ``allowed`` permits (to be recorded); raises ConfigError naming every other one. ``saved`` None: the finished
    end of a run of an older ups-toolkit, which kept no config; nothing will train from it."""
    if saved is None:
        return {}
    changes = {k: v for k, v in config_differences(saved, config.data).items()
               if not any(fnmatchcase(k, pattern) for pattern in HARMLESS)}
    refused = [k for k in changes if not _allowed(k, allowed)]
    if refused:
        listed = ", ".join(f"{k} {_short(changes[k][0])} -> {_short(changes[k][1])}" for k in refused)
        raise ConfigError(f"{config.source}: the config differs from the one {checkpoint} was trained with: {listed}; "
                          f"resume with the same settings, continue deliberately with --allow_config_change "
                          f"{','.join(refused)}, or start again with --overwrite")
    return changes


def record_config_changes(out, checkpoint, step: int, changes: dict[str, tuple]) -> None:
    """Append the allowed changes to ``<out>/config_changes.jsonl`` (one JSON line per resume that changed the run),
    so the run folder says which settings held from which step on."""
    from pathlib import Path

    from ..atomic import atomic_write_text

    path = Path(out) / "config_changes.jsonl"
    before = path.read_text(encoding="utf-8") if path.is_file() else ""
    line = json.dumps({"checkpoint": str(checkpoint), "step": int(step),
                       "changes": {k: {"old": a, "new": b} for k, (a, b) in changes.items()}})
    atomic_write_text(path, before + line + "\n")


def save_run_config(accelerator, out, config, *, checkpoint, saved: dict | None, changes: dict[str, tuple],
                    quiet: bool) -> None:
    """The main process writes the run's resolved ``config.yaml`` (once every check has passed) and the accepted
    config changes of a resume; the others wait."""
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out)
        if changes:
            record_config_changes(out, checkpoint, saved["total_step"], changes)
        if not quiet:
            print(config.to_yaml(), flush=True)
    accelerator.wait_for_everyone()
