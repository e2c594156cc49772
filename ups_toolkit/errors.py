"""Errors meant for users: each names the file, the sample or key, and what was expected.

The command-line entry points catch :class:`UPSError` and print its message on one line (no traceback),
then exit non-zero. Anything else is a bug and keeps its traceback.
"""


class UPSError(Exception):
    """Base class of every error the toolkit raises for bad input or bad configuration."""


class DataFormatError(UPSError):
    """A raw data file (or one sample in it) cannot be read: truncated, wrong counts, NaN, unknown layout ..."""

    def __init__(self, message: str, *, file=None, line=None, sample=None):
        where = []
        if file is not None:
            where.append(f"{file}" + (f":{line}" if line is not None else ""))
        if sample is not None:
            where.append(f"sample {sample!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file, self.line, self.sample = file, line, sample


class UnsafePickleError(UPSError):
    """A pickle referenced a global outside the allowed numpy/builtin set; nothing was executed."""


class ConfigError(UPSError):
    """A YAML definition or command-line option is malformed or inconsistent."""
