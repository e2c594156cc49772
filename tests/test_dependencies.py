"""The installed libraries are the ones pyproject.toml declares: every dependency present, inside its declared range.

A red run names what it ran against: ``conftest.pytest_report_header`` prints the versions of the core libraries
at the top of every test run, and the failures here list each dependency that is missing or out of range."""

import sys
from importlib import metadata

from conftest import REPO, core_versions
from packaging.requirements import Requirement
from packaging.version import Version


def declared(extras=("test",)) -> list[Requirement]:
    """The base requirements and those of ``extras``, as the installed ups-toolkit declares them (its metadata is
    pyproject.toml's, as of the install)."""
    out = []
    for line in metadata.requires("ups-toolkit") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
            requirement.marker = None
            out.append(requirement)
    return out


def test_every_declared_dependency_is_installed_in_its_range():
    requirements = declared()
    assert {"torch", "transformers", "datasets", "accelerate", "tensorboard", "pytest"} <= {r.name for r in requirements}
    problems = []
    for requirement in requirements:
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement.name}: not installed (pyproject.toml asks for {requirement})")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name} {installed} is outside the declared range {requirement.specifier}")
    assert not problems, "; ".join(problems) + f" (python {sys.version.split()[0]})"


def test_the_constraint_files_pin_inside_the_declared_ranges():
    """constraints.txt (the newest set CI tests) and constraints-oldest.txt (the lower bounds) pin every direct
    dependency, each inside its declared range; the oldest file pins exactly the lower bounds."""
    ranges = {r.name.lower().replace("_", "-"): r for r in declared(("test", "demo"))}
    for name in ("constraints.txt", "constraints-oldest.txt"):
        pins = {}
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                requirement = Requirement(line)
                (spec,) = requirement.specifier
                assert spec.operator == "==", f"{name}: {line} is not an exact pin"
                pins[requirement.name.lower().replace("_", "-")] = spec.version
        for package, requirement in ranges.items():
            assert package in pins, f"{name} does not pin {package}"
            assert requirement.specifier.contains(pins[package]), f"{name}: {package}=={pins[package]} is outside " \
                                                                  f"{requirement.specifier}"
            if name == "constraints-oldest.txt":
                lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
                assert lower == [Version(pins[package])], f"{name}: {package}=={pins[package]} is not the " \
                                                          f"declared lower bound {requirement.specifier}"


def test_the_report_header_names_the_core_libraries():
    versions = core_versions()
    assert set(versions) >= {"python", "torch", "transformers", "datasets", "accelerate"}
    assert versions["transformers"] == metadata.version("transformers")
