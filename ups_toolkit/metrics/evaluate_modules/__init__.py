"""Local ``evaluate`` modules wrapping :mod:`ups_toolkit.metrics` (see README.md here)."""

from pathlib import Path

MODULES = ("ups_top_k_accuracy", "ups_pose_error", "ups_detection_map")


def module_path(name: str) -> str:
    """Path to give ``evaluate.load`` for one of :data:`MODULES`."""
    if name not in MODULES:
        raise ValueError(f"unknown evaluate module {name!r}; known: {', '.join(MODULES)}")
    return str(Path(__file__).resolve().parent / name / f"{name}.py")
