"""Reading MATLAB v5 ``.mat`` annotation files (Penn Action, JHMDB) with errors that name the file and the key.

``scipy.io.loadmat`` is used without ``squeeze_me``: squeezing would turn a one-frame (1, 13) array into (13,), so
shapes are checked and scalars/strings unwrapped explicitly here instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataFormatError


def load_mat(path: str | Path, required: tuple[str, ...] = ()) -> dict:
    """Variables of a MATLAB v4/v5 file (``__header__`` and the like dropped); every ``required`` key must exist."""
    from scipy.io import loadmat  # scipy.io pulls in much of scipy: import on use

    path = Path(path)
    try:
        data = loadmat(str(path))
    except NotImplementedError as e:  # v7.3 files are HDF5
        raise DataFormatError(f"unsupported MATLAB file version ({e})", file=path) from None
    except (ValueError, TypeError, OSError, EOFError, IndexError) as e:
        raise DataFormatError(f"not a readable MATLAB .mat file ({type(e).__name__}: {e})", file=path) from None
    data = {k: v for k, v in data.items() if not k.startswith("__")}
    missing = [k for k in required if k not in data]
    if missing:
        raise DataFormatError(
            f"missing variable(s) {', '.join(map(repr, missing))}; found {', '.join(sorted(data)) or 'none'}", file=path
        )
    return data


def mat_string(data: dict, key: str, *, file) -> str:
    """A MATLAB char array (loaded as a (1,) array of str) -> str."""
    value = np.asarray(data[key])
    if value.dtype.kind != "U" or value.size != 1:
        raise DataFormatError(
            f"variable {key!r} must be a string, got {value.dtype} array of shape {value.shape}", file=file
        )
    return str(value.reshape(-1)[0]).strip()


def mat_number(data: dict, key: str, *, file) -> float:
    """A MATLAB scalar (loaded as a (1, 1) array) -> float."""
    value = np.asarray(data[key])
    if value.size != 1 or value.dtype.kind not in "iufb":
        raise DataFormatError(
            f"variable {key!r} must be one number, got {value.dtype} array of shape {value.shape}", file=file
        )
    return float(value.reshape(-1)[0])


def mat_array(data: dict, key: str, shape: tuple, *, file) -> np.ndarray:
    """A numeric array with an expected shape (``None`` = any size in that dimension) -> float64 array."""
    value = np.asarray(data[key])
    if value.dtype.kind not in "iufb":
        raise DataFormatError(f"variable {key!r} must be numeric, got {value.dtype}", file=file)
    if value.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, value.shape)):
        expected = "(" + ", ".join("T" if s is None else str(s) for s in shape) + ")"
        raise DataFormatError(f"variable {key!r} has shape {value.shape}, expected {expected}", file=file)
    return value.astype(np.float64)
