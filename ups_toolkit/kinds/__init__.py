"""Kinds of task: one class per kind (recognition, early prediction, lifting, motion prediction, detection,
retrieval), chosen once from a task file by :func:`kind_of`. See :mod:`.base` for what a kind owns.

A new kind is a module with a :class:`TaskKind` subclass decorated by :func:`register_kind`, imported once (here for
the shipped kinds; a user's own module registers itself when imported, before the task file that needs it is read).
"""

from .base import KINDS, TaskKind, find_kind, kind_class, kind_of, register_kind
from . import recognition, early_prediction, lifting, motion_prediction, detection, retrieval  # noqa: E402,F401  (register)

__all__ = ["KINDS", "TaskKind", "find_kind", "kind_class", "kind_of", "register_kind"]
