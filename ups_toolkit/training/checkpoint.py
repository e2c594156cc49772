"""Training checkpoints: ``accelerator.save_state`` written atomically, a ``latest`` pointer, the last k kept
(DESIGN.md D9).

Layout under ``<output_dir>/checkpoints/``::

    step-000050/          model.safetensors, optimizer.bin, random_states_<rank>.pkl, custom_checkpoint_<i>.pkl,
                          trainer_state.json (stage, step, cycle position, loader positions; read before loading),
                          routing.json (the route of every task at that step)
    latest                one line: the name of the newest complete checkpoint

A checkpoint is written into ``.step-000050.tmp`` (every process writes its own RNG file there), flushed to disk,
then renamed into place; only then is ``latest`` rewritten (temporary file + ``os.replace``). A process killed at
any moment leaves either the previous checkpoint or the new one as ``latest``, never a partial one. The pickles in a
checkpoint are Accelerate's own (RNG states, counters): load checkpoints only from run folders you wrote.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..atomic import atomic_write_text, replace_directory
from ..errors import ConfigError

LATEST = "latest"
STATE_FILE = "trainer_state.json"
PREFIX = "step-"


def checkpoint_name(total_step: int) -> str:
    return f"{PREFIX}{total_step:06d}"


def _fsync_folder(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(accelerator, root: str | Path, total_step: int, trainer_state: dict, keep: int,
                    extra_files: dict[str, str] | None = None) -> Path:
    """Save the full training state of every process as ``root/step-XXXXXX`` (plus ``extra_files``: name -> text,
    e.g. ``routing.json``); returns its path."""
    root = Path(root)
    name = checkpoint_name(total_step)
    final, staging = root / name, root / f".{name}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
        for filename, text in (extra_files or {}).items():
            (staging / filename).write_text(text)
        _fsync_folder(staging)
        replace_directory(staging, final)
        atomic_write_text(root / LATEST, name + "\n")
        _prune(root, keep, protect=name)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, keep: int, protect: str) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).is_file())
    for old in done[: max(0, len(done) - keep)]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(spec: str | None, output_dir: str | Path) -> Path | None:
    """``--resume_from_checkpoint``: ``auto`` = the run's ``latest`` checkpoint, or None when there is none yet;
    a checkpoint folder; or a run folder / checkpoints folder (its latest)."""
    if spec is None:
        return None
    if spec == "auto":
        root = Path(output_dir) / "checkpoints"
        return _latest(root) if (root / LATEST).is_file() else None
    path = Path(spec)
    if (path / STATE_FILE).is_file():
        return path
    for root in (path, path / "checkpoints"):
        if (root / LATEST).is_file():
            return _latest(root)
    raise ConfigError(f"--resume_from_checkpoint {spec}: not a checkpoint (no {STATE_FILE}) nor a run folder with "
                      f"checkpoints/{LATEST}")


def _latest(root: Path) -> Path:
    name = (root / LATEST).read_text().strip()
    path = root / name
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"{root / LATEST} names {name!r}, which is not a complete checkpoint")
    return path


def read_trainer_state(path: str | Path) -> dict:
    return json.loads((Path(path) / STATE_FILE).read_text())


def claim_output_dir(out: Path, run_outputs, *, resuming: bool, overwrite: bool) -> None:
    """Prepare ``out`` for a fresh run (supervised or pretraining).

    A fresh start owns ``out``: the outputs of an earlier finished run (``run_outputs``, names inside ``out``) are
    removed, anything else (the synthetic data, say) stays. An unfinished earlier run is kept unless ``overwrite``:
    it may be resumed. Nothing happens when ``resuming``.
    """
    if resuming:
        return
    if (out / "checkpoints" / "latest").is_file() and not overwrite:
        try:
            finished = read_trainer_state(resolve_checkpoint(str(out), out)).get("finished", False)
        except (ConfigError, OSError, ValueError):
            finished = False
        if not finished:
            raise ConfigError(f"{out} holds an unfinished run: pass --resume_from_checkpoint auto to continue "
                              f"it, or --overwrite to start again")
    if int(os.environ.get("RANK", "0")) == 0:  # before the Accelerator exists: only the first process deletes
        for name in run_outputs:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
