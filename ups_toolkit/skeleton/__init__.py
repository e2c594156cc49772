"""Skeleton layouts, layout mappings and composable data transforms."""

from .layouts import Layout, get_layout, layout_names, map_layout, mapping_matrix

__all__ = ["Layout", "get_layout", "layout_names", "map_layout", "mapping_matrix"]
