"""Restricted unpickling for third-party files (pyskl pickles, ST-GCN label tuples, VideoPose3D object arrays).

Plain ``pickle.load`` executes whatever a file names. These loaders admit only numpy arrays, dtypes and builtin
containers; any other global raises :class:`UnsafePickleError` naming the file and the global, before anything runs.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataFormatError, UnsafePickleError

# (module, name) -> object. Both numpy 1 and numpy 2 spellings resolve to numpy 2's objects.
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("_codecs").encode,
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = np._core.multiarray._reconstruct
    _ALLOWED[(_module, "scalar")] = np._core.multiarray.scalar
# protocol-5 pickles rebuild arrays from a raw buffer through _frombuffer (no code runs)
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = np._core.numeric._frombuffer
# numpy 2 pickles dtypes of builtin scalar types through these classes
for _name in dir(np.dtypes):
    if _name.endswith("DType"):
        _ALLOWED[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, *, source: str = "<bytes>", **kwargs):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to unpickle global {module}.{name} "
                "(only numpy arrays and builtin containers are allowed; nothing was executed)"
            ) from None


def safe_load_pickle(path: str | Path):
    """Load a pickle file through :class:`RestrictedUnpickler` (latin1 for Python-2-era numpy pickles)."""
    path = Path(path)
    with open(path, "rb") as fh:
        return safe_loads(fh.read(), source=str(path))


def safe_loads(data: bytes, *, source: str = "<bytes>"):
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise DataFormatError(f"not a readable pickle ({type(e).__name__}: {e})", file=source) from None


def safe_load_npz(path: str | Path) -> dict:
    """Read every array of a ``.npz``; object arrays (pickled dicts/lists) go through the restricted unpickler.

    Replaces ``np.load(path, allow_pickle=True)``, which would execute arbitrary code from a user file.
    """
    path = Path(path)
    out = {}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFormatError(f"not a readable .npz archive ({e})", file=path) from None
    with archive:
        for member in archive.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            with archive.open(member) as fh:
                out[key] = _read_npy(fh, source=f"{path}[{key}]")
    return out


def safe_load_npy(path: str | Path) -> np.ndarray:
    path = Path(path)
    with open(path, "rb") as fh:
        return _read_npy(fh, source=str(path))


def _read_npy(fh, *, source: str) -> np.ndarray:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = npformat.read_array_header_2_0(fh)
    except ValueError as e:
        raise DataFormatError(f"not a .npy array ({e})", file=source) from None
    if dtype.hasobject:
        return safe_loads(fh.read(), source=source)
    data = fh.read()
    count = int(np.prod(shape)) if shape else 1
    if len(data) < count * dtype.itemsize:
        raise DataFormatError(
            f"truncated array: expected {count * dtype.itemsize} bytes of {dtype} data, found {len(data)}", file=source
        )
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C").copy()
