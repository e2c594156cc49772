"""Finding the project's declarative data files (label sets, task definitions, experiment configs).

Search order (docs/design.md D1): paths the user gives, then the checkout's top-level folders (``tokenizers/``,
``tasks/``, ``configs/``), then the copies a wheel installs under ``<prefix>/share/ups_toolkit/``.

User paths come in two spellings: ``extra`` names folders of one kind directly (``my/tokenizers``), ``roots`` names
project folders that hold the kind folders (``my`` with ``my/tokenizers/labels/x.yaml`` and ``my/tasks/y.yaml``), so
one ``roots`` list serves label sets, task files and configs alike. ``extra`` is searched before ``roots``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .errors import ConfigError

KINDS = ("tokenizers", "tasks", "configs")
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def resource_dirs(
    kind: str, extra: list[str | Path] | None = None, *, roots: list[str | Path] | None = None
) -> list[Path]:
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}")
    candidates = [Path(p) for p in (extra or [])]
    candidates += [Path(r) / kind for r in (roots or [])]
    candidates.append(CHECKOUT_ROOT / kind)
    candidates.append(Path(sys.prefix) / "share" / "ups_toolkit" / kind)
    return [p for p in candidates if p.is_dir()]


def find_resource(
    kind: str, relative: str, extra: list[str | Path] | None = None, *, roots: list[str | Path] | None = None
) -> Path:
    """First existing ``<dir>/<relative>`` over :func:`resource_dirs`; a clear error lists where it looked."""
    dirs = resource_dirs(kind, extra, roots=roots)
    for d in dirs:
        candidate = d / relative
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(d) for d in dirs) or f"no {kind}/ folder found"
    raise ConfigError(f"{kind} file {relative!r} not found (looked in: {looked})")


def list_resources(
    kind: str, subfolder: str = "", extra: list[str | Path] | None = None, *, roots: list[str | Path] | None = None
) -> dict[str, Path]:
    """``{stem: path}`` of every ``*.yaml`` in ``<dir>/<subfolder>`` over :func:`resource_dirs`, sorted by stem;
    a stem found in several folders resolves like :func:`find_resource` (the first folder wins)."""
    found: dict[str, Path] = {}
    for d in resource_dirs(kind, extra, roots=roots):
        folder = d / subfolder if subfolder else d
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def load_label_set(
    name: str, extra: list[str | Path] | None = None, *, roots: list[str | Path] | None = None
) -> list[str]:
    """Class names of a label set in ``tokenizers/labels/<name>.yaml``, in class-index order."""
    path = find_resource("tokenizers", f"labels/{name}.yaml", extra, roots=roots)
    data = yaml.safe_load(path.read_text())
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"{path}: key 'classes' must be a list of class-name strings")
    return classes
