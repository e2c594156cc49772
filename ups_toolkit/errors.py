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


class Where:
    """Builds the :class:`ConfigError` of a value: ``<source>: key '<dotted key>': <message>``.

    ``source`` names the file; ``sources`` (optional) maps dotted key prefixes to another source (a command-line
    override, an included file), the longest matching prefix winning.
    """

    def __init__(self, source, sources: dict[str, str] | None = None):
        self.source, self.sources = str(source), dict(sources or {})

    def source_of(self, key: str | None) -> str:
        parts = key.split(".") if key else []
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in self.sources:
                return self.sources[prefix]
        return self.source

    def error(self, key: str | None, message: str) -> ConfigError:
        source = self.source_of(key)
        return ConfigError(f"{source}: key {key!r}: {message}" if key else f"{source}: {message}")
