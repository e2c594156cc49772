"""Registry of converters: format name -> "module:Class". Modules are imported only when used.

Adding a format = one module in this package with one :class:`~.base.Converter` subclass + one line here.
"""

from __future__ import annotations

import importlib
import importlib.util

from ...errors import ConfigError

CONVERTERS = {
    "ntu-skeleton": "ntu_skeleton:NTUSkeletonConverter",
    "pyskl": "pyskl:PysklConverter",
    "arrays": "arrays:ArraysConverter",
    "ctrgcn-npz": "ctrgcn_npz:CTRGCNNpzConverter",
    "stgcn-npy": "stgcn_npy:STGCNNpyConverter",
    "kinetics-json": "kinetics_json:KineticsJsonConverter",
    "nw-ucla": "nw_ucla:NWUCLAConverter",
    "pku-mmd": "pku_mmd:PKUMMDConverter",
    "penn-action": "penn_action:PennActionConverter",
    "jhmdb": "jhmdb:JHMDBConverter",
    "videopose3d": "videopose3d:VideoPose3DConverter",
    "expmap": "expmap:ExpmapConverter",
    "bvh": "bvh:BVHConverter",
}


def converter_class(name: str):
    if name not in CONVERTERS:
        raise ConfigError(f"unknown format {name!r}; known formats: {', '.join(sorted(CONVERTERS))}")
    module, _, cls = CONVERTERS[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def available_formats() -> list[str]:
    """Registered formats whose module is present (all of them in a complete checkout; a test checks that)."""
    names = []
    for name, target in sorted(CONVERTERS.items()):
        module = f"{__name__}.{target.partition(':')[0]}"
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names
