"""Reading one line of numbers from a text format, with errors that name the file, the line and the value."""

from __future__ import annotations

import numpy as np

from ..errors import DataFormatError


def parse_number_row(fields: list[str], *, file, line: int, context: str = "") -> np.ndarray:
    """float64 array of ``fields``; a non-number or a NaN/inf value raises DataFormatError naming file and line.

    ``context`` prefixes the message (e.g. ``"frame 12: "``).
    """
    try:
        row = np.array(fields, dtype=np.float64)
    except ValueError:
        bad = next(f for f in fields if not _is_number(f))
        raise DataFormatError(f"{context}{bad.strip()!r} is not a number", file=file, line=line) from None
    finite = np.isfinite(row)
    if not finite.all():
        column = int(np.argmin(finite))
        raise DataFormatError(f"{context}value {column} is {fields[column].strip()}", file=file, line=line)
    return row


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
