"""Atomic writes: a file or folder appears complete at its final path, or not at all.

Every writer of lasting output (prepared datasets, the synthetic demo data, caches, vocabularies, checkpoints) goes
through here, so an interrupted run never leaves a half-written file and never damages what was there before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def replace_directory(src: str | Path, dst: str | Path) -> None:
    """Move folder ``src`` to ``dst``. An existing ``dst`` is swapped aside first and removed only after the move,
    and put back if the move fails."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(old, dst)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextmanager
def atomic_directory(out: str | Path, *, overwrite: bool = False, fsync: bool = False):
    """Yield an empty staging folder ``<out>.tmp-<pid>``; when the block ends without error it becomes ``out``.

    An existing ``out`` is refused unless ``overwrite``; with ``overwrite`` it is replaced only once the new folder
    is complete. On error (or KeyboardInterrupt) the staging folder is removed and ``out`` is untouched.
    ``fsync`` flushes every file to disk before the rename (checkpoints).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"output {out} already exists (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if fsync:
            _fsync_tree(staging)
        replace_directory(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates mode 0600; give the file the mode an ordinary open() would (0666 minus the umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
