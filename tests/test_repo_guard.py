"""The `tokenizers/` folder must never shadow Hugging Face's `tokenizers` package (docs/design.md D1), and the
repository documents itself: no file cites notes outside it, every cited section of `docs/` exists."""

import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

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


# Notes that once lived outside the repository, spelled in pieces so that this file does not cite them itself.
OUTSIDE_NOTES = [f"{stem}.md" for stem in ("DESIGN", "FORMATS", "STACK", "STYLE", "CATALOG")]
OUTSIDE_NOTES.append("/".join(("shared", "docs")))  # joined at run time: a constant would be folded into the .pyc
DOC_REFERENCE = re.compile(r"docs/(design|formats|datasets|dependencies)\.md`?\)? (D\d+|§\d+(?:\.\d+)?)")


def tracked_text_files() -> dict[str, str]:
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if listing.returncode != 0:
        pytest.skip("not a git checkout")
    files = {}
    for name in listing.stdout.decode().split("\0"):
        path = REPO / name
        if name and path.is_file():
            data = path.read_bytes()
            if b"\0" not in data:  # text files only
                files[name] = data.decode("utf-8", errors="replace")
    return files


def test_no_file_points_outside_the_repository():
    """The design notes the code relies on are in docs/ (docs/architecture.md): nothing cites notes elsewhere."""
    offenders = [f"{name}: {note}" for name, text in tracked_text_files().items() for note in OUTSIDE_NOTES
                 if note in text]
    assert not offenders, "cite the notes in docs/ instead: " + ", ".join(offenders)


def doc_sections(text: str) -> set[str]:
    """The references a page of docs/ answers: D<n> from headings "(Dn)", §n from "## n.", §n.m from "**n.m "."""
    found = {f"D{m}" for m in re.findall(r"^#+ .*\(D(\d+)\)", text, re.M)}
    found |= {f"§{m}" for m in re.findall(r"^## (\d+)\.", text, re.M)}
    found |= {f"§{m}" for m in re.findall(r"^\*\*(\d+\.\d+) ", text, re.M)}
    return found


def test_every_cited_section_of_docs_exists():
    """A citation such as "docs/design.md D10" or "docs/formats.md §15" names a decision or section of that page."""
    files = tracked_text_files()
    sections = {page: doc_sections(files.get(f"docs/{page}.md", ""))
                for page in ("design", "formats", "datasets", "dependencies")}
    missing = sorted({f"{name}: docs/{page}.md {ref}" for name, text in files.items()
                      for page, ref in DOC_REFERENCE.findall(text) if ref not in sections[page]})
    assert not missing, "cited but not in docs/: " + ", ".join(missing)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A wheel built from the checkout, installed into a fresh virtual environment; returns (env_dir, workdir, env)
    with ``workdir`` an unrelated empty folder and ``env`` the environment variables without PYTHONPATH."""
    tmp_path = tmp_path_factory.mktemp("wheel")
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
    assert any(n.endswith("data/share/ups_toolkit/configs/demo.yaml") for n in names)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # The fresh environment sees this test environment's libraries (torch, transformers, ...) through a .pth file,
    # but not the checkout: a .pth line adds a folder without running the .pth files inside it, so an editable
    # install of ups-toolkit here stays invisible there.
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    our_site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (Path(venv_site) / "test-environment.pth").write_text("".join(f"{p}\n" for p in sorted(our_site)))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env_dir, workdir, env


def test_wheel_works_outside_the_checkout(wheel_env):
    """Build a wheel, install it into a fresh virtual environment, use it from an unrelated folder."""
    env_dir, workdir, env = wheel_env
    python = env_dir / "bin" / "python"
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
        [str(env_dir / "bin" / "ups-data"), "formats"], cwd=workdir, capture_output=True, text=True, env=env
    )
    assert formats.returncode == 0 and "ntu-skeleton" in formats.stdout, formats.stderr


def test_console_scripts_train_the_demo_and_infer_from_any_folder(wheel_env):
    """The README's main job through the installed console scripts, in a folder that is not the checkout."""
    env_dir, workdir, env = wheel_env
    bin_dir = env_dir / "bin"
    env = {**env, "OMP_NUM_THREADS": "1"}

    def run(*argv):
        return subprocess.run([str(a) for a in argv], cwd=workdir, capture_output=True, text=True, env=env,
                              timeout=900)

    train = run(bin_dir / "ups-train", "--config", "demo", "--training.steps", 20, "--quiet")
    assert train.returncode == 0, train.stderr[-3000:]
    model = workdir / "runs" / "demo" / "model"
    assert (model / "model.safetensors").is_file() and (workdir / "runs" / "demo" / "final_metrics.json").is_file()
    infer = run(bin_dir / "ups-infer", "--task", "action_recognition_3d", "--model", model, "--input",
                workdir / "runs" / "demo" / "data" / "ntu25_3d", "--split", "test", "--limit", 2, "--out", "out")
    assert infer.returncode == 0, infer.stderr[-3000:]
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert len(results["results"]) == 2 and all(r["top_k"] for r in results["results"])
    evaluate = run(bin_dir / "ups-evaluate", "--config", "demo", "--model", model, "--out", "eval.json", "--quiet")
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "action_recognition_3d" in json.loads((workdir / "eval.json").read_text())
    # the module form that `accelerate launch -m ups_toolkit.train` runs
    usage = run(bin_dir / "python", "-m", "ups_toolkit.train", "--help")
    assert usage.returncode == 0 and "--resume_from_checkpoint" in usage.stdout, usage.stderr
