"""Test environment: offline, caches in a temporary folder, real data from ../shared/data when present."""

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="ups-test-cache-")
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HOME": os.path.join(_CACHE, "hf"),
    "HF_DATASETS_CACHE": os.path.join(_CACHE, "datasets"),
    "MPLBACKEND": "Agg",
}.items():
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"


CORE_LIBRARIES = ("torch", "transformers", "datasets", "accelerate", "numpy", "safetensors", "tensorboard")


def core_versions() -> dict[str, str]:
    """{library: installed version} of Python and the libraries the toolkit is most sensitive to."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for name in CORE_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _versions_line() -> str:
    return "versions: " + ", ".join(f"{name} {version}" for name, version in core_versions().items())


def pytest_report_header(config):
    """The header of a run (not shown with -q) names what it tests against."""
    return _versions_line()


def pytest_terminal_summary(terminalreporter):
    """So does the last line before the result, with -q too: a red run says which library versions it ran."""
    terminalreporter.write_line(_versions_line())


def real_data(name: str) -> Path:
    """Path of a real dataset folder in ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not available")
    return path


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m ups_toolkit.data ARGS`` as a user would; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "ups_toolkit.data", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or REPO, env={**os.environ},
    )


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def make_converter(format_name: str, src, *argv: str, split=None, skip_bad: bool = False):
    """A converter object for ``format_name`` with options parsed from ``argv`` as the CLI would (in-process)."""
    import argparse

    from ups_toolkit.data.converters import converter_class

    cls = converter_class(format_name)
    parser = argparse.ArgumentParser()
    cls.add_arguments(parser)
    options = parser.parse_args([str(a) for a in argv])
    options.split, options.to_layout, options.skip_bad = split, None, skip_bad
    return cls(src, options)


@contextmanager
def one_thread():
    """One torch thread inside this process for a block (restored afterwards): tiny models gain nothing from a second
    thread, and on a busy 2-core machine two threads waiting for each other made tests up to 100× slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_one_thread():
    """``pytestmark = pytest.mark.usefixtures("torch_one_thread")``: a whole test module on one torch thread."""
    with one_thread():
        yield
