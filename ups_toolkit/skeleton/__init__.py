"""Skeleton layouts, layout mappings and composable data transforms."""

from . import transforms
from .layouts import Layout, get_layout, layout_names, map_layout, mapping_matrix
from .transforms import *  # noqa: F401,F403 -- the transforms' public names

__all__ = ["Layout", "get_layout", "layout_names", "map_layout", "mapping_matrix", *transforms.__all__]
