"""Training checkpoints: ``accelerator.save_state`` written atomically, a ``latest`` pointer, the last k kept, each
one verified before anything is loaded from it (docs/design.md D9).

Layout under ``<output_dir>/checkpoints/``::

    step-000050/          model.safetensors, optimizer.bin, random_states_<rank>.pkl (Accelerate's),
                          trainer_state.json (ours: stage, step, cycle position, loader positions, the scheduler's
                          position and the run's resolved config), routing.json (the route of every task)
    latest                one line: the name of the newest complete checkpoint

A checkpoint is written into ``.step-000050.tmp`` (every process writes its own RNG file there), flushed to disk,
then renamed into place; only then is ``latest`` rewritten (temporary file + ``os.replace``). A process killed at
any moment leaves either the previous checkpoint or the new one as ``latest``, never a partial one.

No pickle is ever loaded unsafely. Our own state is JSON (nothing is registered with
``register_for_checkpointing``, whose ``custom_checkpoint_*.pkl`` Accelerate loads with ``weights_only=False``); the
learning-rate schedule is rebuilt from the config and only its position is restored. Accelerate (1.2 to 1.16) loads
``optimizer.bin`` and ``random_states_*.pkl`` with ``torch.load(weights_only=True)`` and swallows a failure to read
the RNG file (the resume would silently stop being exact), so :func:`verify_checkpoint` reads each of them the same
safe way first, refuses any ``custom_checkpoint_*.pkl`` (older versions wrote them: their finished runs stay
reusable, as that reads ``trainer_state.json`` only) and checks ``model.safetensors``; ``resolve_checkpoint``
falls back from a damaged checkpoint to the newest complete one, with a warning naming what it skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from ..atomic import atomic_write_text, replace_directory
from ..errors import ConfigError

LATEST = "latest"
STATE_FILE = "trainer_state.json"
PREFIX = "step-"
# trainer_state.json format 2: the scheduler's position and the config inside, no custom_checkpoint_*.pkl beside it
FORMAT = 2


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
    """Save the full training state of every process as ``root/step-XXXXXX`` (``trainer_state``: a JSON-able dict,
    see :func:`trainer_record`; ``extra_files``: name -> text, e.g. ``routing.json``); returns its path."""
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
        (staging / STATE_FILE).write_text(json.dumps({**trainer_state, "format": FORMAT}, indent=1))
        for filename, text in (extra_files or {}).items():
            (staging / filename).write_text(text)
        _fsync_folder(staging)
        replace_directory(staging, final)
        atomic_write_text(root / LATEST, name + "\n")
        _prune(root, keep, protect=name)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, keep: int, protect: str) -> None:
    done = sorted(complete_checkpoints(root))
    for old in done[: max(0, len(done) - keep)]:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------------
# what a checkpoint holds besides Accelerate's files


def trainer_record(counters: dict, scheduler, config) -> dict:
    """The content of ``trainer_state.json``: the trainer's counters (its ``state_dict()``), the scheduler's position
    and the resolved config the run was trained with (compared on resume, :mod:`.config_change`)."""
    position = {"last_epoch": int(scheduler.last_epoch), "step_count": int(scheduler._step_count),
                "last_lr": [float(lr) for lr in scheduler.get_last_lr()]}  # last_lr: for the reader, not restored
    return {**counters, "scheduler": position, "config": config.data}


def restore_scheduler(scheduler, saved: dict, where: Path) -> None:
    """Put a LambdaLR rebuilt from the config (its lambda and base learning rates) at the saved position. The last
    step is replayed (``last_epoch - 1``, then ``step()``), so the optimizer's learning rates are computed the way
    they were before the checkpoint: bitwise the same when the config is unchanged, the new ones when a change of
    lr or schedule was allowed."""
    position = saved.get("scheduler")
    try:
        last_epoch, step_count = int(position["last_epoch"]), int(position["step_count"])
    except (TypeError, KeyError, ValueError):
        raise ConfigError(f"{where / STATE_FILE}: key 'scheduler': expected {{last_epoch, step_count}} integers, "
                          f"got {position!r}") from None
    if last_epoch < 0 or step_count < 1:
        raise ConfigError(f"{where / STATE_FILE}: key 'scheduler': negative position {position!r}")
    scheduler.last_epoch, scheduler._step_count = last_epoch - 1, step_count - 1
    scheduler.step()


# ----------------------------------------------------------------------------------------------------------------------
# finding and verifying a checkpoint


def complete_checkpoints(root: Path) -> list[Path]:
    """The checkpoints renamed into place (``step-*`` with a ``trainer_state.json``), oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).is_file())


def verify_checkpoint(path: Path, processes: int | None = None) -> dict:
    """Read everything a resume will read from checkpoint ``path``, safely, before anything is loaded into the
    model; returns its trainer state. Raises ConfigError naming the file and what is wrong with it."""
    import torch
    from accelerate.utils import load as accelerate_load  # weights_only=True plus numpy's RNG-state types
    from safetensors import safe_open

    path = Path(path)
    state_file = path / STATE_FILE
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{state_file}: unreadable ({e})") from None
    pickles = sorted(path.glob("custom_checkpoint_*.pkl"))
    if isinstance(state, dict) and "format" not in state and state.get("finished") is True:
        # the end of a finished run of an older ups-toolkit: resuming it only reuses the result (no load_state, no
        # config to compare), reading this JSON file and nothing else, so it stays usable; its pickles stay unread
        return state
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = f" with {pickles[0].name}" if pickles else ""
        raise ConfigError(f"{path}: a checkpoint of an older ups-toolkit{found}, whose trainer state is a pickle "
                          f"that is never loaded (it could run code); start the run again with --overwrite")
    for key, kind in (("total_step", int), ("scheduler", dict), ("config", dict)):
        if not isinstance(state.get(key), kind):
            raise ConfigError(f"{state_file}: key {key!r}: expected {kind.__name__}, got {state.get(key)!r:.60}")
    if pickles:
        raise ConfigError(f"{pickles[0]}: a pickle that ups-toolkit never writes (loading it could run code); "
                          f"refusing to resume from {path}")
    model = path / "model.safetensors"
    try:
        with safe_open(str(model), framework="pt") as fh:
            fh.keys()
    except Exception as e:  # noqa: BLE001  (SafetensorError, OSError: a missing or truncated file)
        raise ConfigError(f"{model}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    ranks = range(processes or int(os.environ.get("WORLD_SIZE", "1")))
    for name, loader in [("optimizer.bin", lambda f: torch.load(f, map_location="cpu", weights_only=True))] + [
            (f"random_states_{rank}.pkl", accelerate_load) for rank in ranks]:
        try:
            loaded = loader(str(path / name))
        except Exception as e:  # noqa: BLE001  (UnpicklingError for a pickle naming code, OSError, EOFError ...)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{path / name}: unreadable as a weights-only torch file ({first})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path / name}: expected a dict, got {type(loaded).__name__}")
    return state


def _warn(text: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:  # before the Accelerator exists: every process checks, one says so
        print(f"warning: {text}", file=sys.stderr, flush=True)


def _newest_usable(root: Path) -> Path | None:
    """The checkpoint to resume in ``root``: the one ``latest`` names, else (missing, or damaged) the newest complete
    one that verifies, with a warning naming each one skipped. None when there is no complete checkpoint; a
    ConfigError when there are some and none is usable (a fresh start would throw them away)."""
    complete = complete_checkpoints(root)[::-1]
    named = (root / LATEST).read_text().strip() if (root / LATEST).is_file() else None
    if named is None and complete:
        _warn(f"{root / LATEST} is missing; looking for the newest complete checkpoint")
    elif named is not None and root / named not in complete:
        _warn(f"{root / LATEST} names {named!r}, which is not a complete checkpoint; looking for the newest "
              f"complete one")
    else:
        complete.sort(key=lambda p: p.name != named)  # the one `latest` names first, the rest newest first
    problems = []
    for candidate in complete:
        try:
            verify_checkpoint(candidate)
        except ConfigError as e:
            problems.append(str(e))
            _warn(f"skipping checkpoint {candidate}: {e}")
            continue
        if problems or candidate.name != named:
            _warn(f"resuming from {candidate}")
        return candidate
    if problems:
        raise ConfigError(f"{root}: no usable checkpoint (newest: {problems[0]}); pass --overwrite to start again")
    return None


def resolve_checkpoint(spec: str | None, output_dir: str | Path) -> Path | None:
    """``--resume_from_checkpoint``: ``auto`` = the run's newest usable checkpoint (:func:`_newest_usable`), or None
    when there is none yet; a checkpoint folder (verified, no fallback: it was named); or a run folder /
    checkpoints folder (its newest usable one)."""
    if spec is None:
        return None
    if spec == "auto":
        return _newest_usable(Path(output_dir) / "checkpoints")
    path = Path(spec)
    if (path / STATE_FILE).is_file():
        verify_checkpoint(path)
        return path
    for root in (path / "checkpoints", path):
        found = _newest_usable(root)
        if found is not None:
            return found
    raise ConfigError(f"--resume_from_checkpoint {spec}: not a checkpoint (no {STATE_FILE}) nor a run folder with "
                      f"complete checkpoints")


def read_trainer_state(path: str | Path) -> dict:
    return json.loads((Path(path) / STATE_FILE).read_text())


def claim_output_dir(out: Path, run_outputs, *, resuming: bool, overwrite: bool) -> None:
    """Prepare ``out`` for a fresh run (supervised or pretraining).

    Without ``overwrite``, a fresh start refuses a folder that holds a run: a complete checkpoint (an unfinished
    run may be resumed, a finished one reused) or a finished run's ``final_metrics.json``; what a run killed before
    its first checkpoint left is removed. With ``overwrite`` the outputs of the earlier run (``run_outputs``, names
    inside ``out``) are removed; anything else (the synthetic data, say) stays. Nothing happens when ``resuming``.
    """
    if resuming:
        return
    if not overwrite:
        complete = complete_checkpoints(out / "checkpoints")
        try:
            finished = bool(read_trainer_state(complete[-1]).get("finished")) if complete else False
        except (OSError, ValueError, AttributeError):
            finished = False
        if finished:
            raise ConfigError(f"{out} holds a finished run: pass --resume_from_checkpoint auto to reuse it, "
                              f"--overwrite to train it again, or another output_dir")
        if not complete and (out / "final_metrics.json").is_file():
            raise ConfigError(f"{out} holds a finished run (final_metrics.json) without checkpoints: pass "
                              f"--overwrite to train it again, or another output_dir")
        if complete:
            raise ConfigError(f"{out} holds an unfinished run: pass --resume_from_checkpoint auto to continue "
                              f"it, or --overwrite to start again")
    if int(os.environ.get("RANK", "0")) == 0:  # before the Accelerator exists: only the first process deletes
        for name in run_outputs:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
