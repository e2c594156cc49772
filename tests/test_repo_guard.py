"""The `tokenizers/` folder must never shadow Hugging Face's `tokenizers` package (DESIGN.md D1)."""

import os
import subprocess
import sys
import venv

import pytest
from conftest import REPO


def test_tokenizers_folder_holds_no_python():
    assert not list((REPO / "tokenizers").rglob("*.py")), "tokenizers/ must hold data files only"


@pytest.mark.parametrize("flags", [[], ["-m", "pytest", "--version"]])
def test_hf_tokenizers_wins_from_repo_root(flags):
    # Run from the repository root, where the checkout is first on sys.path (as with `python train.py`).
    code = (
        "import tokenizers; assert hasattr(tokenizers, 'Tokenizer'), tokenizers.__path__; "
        "from transformers import AutoTokenizer; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    if flags:
        # python -m puts the working directory first on sys.path as well
        result = subprocess.run([sys.executable, *flags], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_wheel_works_outside_the_checkout(tmp_path):
    """Build a wheel, install it into a fresh virtual environment, use it from an unrelated folder."""
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheel_dir.glob("ups_toolkit-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    # a top-level `tokenizers` entry would overwrite Hugging Face's package on install
    assert not [n for n in names if n.startswith("tokenizers/")]
    assert any(n.endswith("data/share/ups_toolkit/tokenizers/labels/ntu120.yaml") for n in names)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = (
        "import ups_toolkit, sys; from pathlib import Path; "
        "assert str(Path(ups_toolkit.__file__)).startswith(sys.prefix), ups_toolkit.__file__; "
        "from ups_toolkit.resources import load_label_set; assert len(load_label_set('ntu120')) == 120; "
        "from ups_toolkit.skeleton import get_layout; assert get_layout('ntu25').num_joints == 25; "
        "import tokenizers; assert hasattr(tokenizers, 'Tokenizer'); print('ok')"
    )
    result = subprocess.run([str(python), "-c", check], cwd=workdir, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    formats = subprocess.run(
        [str(python), "-m", "ups_toolkit.data", "formats"], cwd=workdir, capture_output=True, text=True, env=env
    )
    assert formats.returncode == 0 and "ntu-skeleton" in formats.stdout, formats.stderr
