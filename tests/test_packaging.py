"""environment.yml is a thin wrapper over pyproject.toml, and the Makefile installs the same."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from ffcore.paths import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
ENV = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
MAKEFILE = (REPO_ROOT / "Makefile").read_text()


def _pyproject_requirements() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    return {r.name: r for r in reqs}


def _env_pip_lines() -> list[str]:
    pip = [d for d in ENV["dependencies"] if isinstance(d, dict)]
    assert len(pip) == 1, "environment.yml has exactly one pip: section"
    return pip[0]["pip"]


def test_environment_yml_is_a_thin_wrapper() -> None:
    conda = [d for d in ENV["dependencies"] if isinstance(d, str)]
    assert sorted(conda) == ["pip", "python=3.11"]
    lines = _env_pip_lines()
    editable = [line for line in lines if line.startswith("-e ")]
    assert len(editable) == 1
    extras = re.fullmatch(r"-e \.\[(.*)\]", editable[0]).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"])
    # Anything else it pins must be a runtime dependency that pyproject admits at that version.
    runtime = _pyproject_requirements()
    for line in lines:
        if line.startswith("-e "):
            continue
        name, version = line.split("==")
        assert name in runtime, f"{name} pinned in environment.yml but not a pyproject dependency"
        assert runtime[name].specifier.contains(version), f"pyproject does not admit {line}"


def test_makefile_installs_the_same_pins_and_extras() -> None:
    for line in _env_pip_lines():
        if line.startswith("-e "):
            extras = line[len("-e ") :]
            assert f"-e '{extras}'" in MAKEFILE
        else:
            assert line in MAKEFILE


def test_torch_capped_at_2_14_1() -> None:
    torch_req = _pyproject_requirements()["torch"]
    assert torch_req.specifier.contains("2.14.1")
    assert not torch_req.specifier.contains("2.14.2")
    assert not torch_req.specifier.contains("2.15.0")


def test_python_version() -> None:
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
