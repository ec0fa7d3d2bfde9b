"""``--with-deps``: install dependencies join the graph, resolved from the index and locked."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.support.cli import build, plan, run_cli
from tests.support.sdists import make_sdist

#: Every case resolves through setuptools metadata builds: 10 to 50 s each on 2 cores.
pytestmark = pytest.mark.slow

SETUPTOOLS = 'requires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'


def static_sdist(index: Path, name: str, version: str, dependencies: list[str]) -> Path:
    """An sdist declaring its dependencies in ``[project]`` (static metadata)."""
    module = name.replace("-", "_")
    pyproject = (
        f"[build-system]\n{SETUPTOOLS}\n[project]\n"
        f'name = "{name}"\nversion = "{version}"\ndependencies = {dependencies!r}\n\n'
        '[project.optional-dependencies]\nfast = ["speedy"]\n\n'
        f'[tool.setuptools]\npackages = ["{module}"]\n'
    ).replace("'", '"')
    return make_sdist(index, name, version, "setuptools", {"pyproject.toml": pyproject})


def dynamic_sdist(index: Path, name: str, version: str, dependencies: list[str]) -> Path:
    """An sdist whose dependencies only ``setup.py`` knows (read through the backend)."""
    module = name.replace("-", "_")
    setup = textwrap.dedent(
        f"""\
        from setuptools import setup
        setup(name={name!r}, version={version!r}, packages=[{module!r}],
              install_requires={dependencies!r})
        """
    )
    return make_sdist(
        index,
        name,
        version,
        "setuptools",
        {"pyproject.toml": f"[build-system]\n{SETUPTOOLS}", "setup.py": setup},
    )


@pytest.fixture
def project(tmp_path: Path, backend_wheels: Path) -> Path:
    """app needs lib (static metadata, a range) and helper (through setup.py); lib 1.0 and
    2.0 are on the index, and lib 2.0 needs helper too. speedy is only wanted by app[fast]."""
    sdists = tmp_path / "sdists"
    static_sdist(sdists, "app", "1.0", ["lib>=1,<3", "helper"])
    static_sdist(sdists, "lib", "1.0", [])
    static_sdist(sdists, "lib", "2.0", ["helper>=1"])
    dynamic_sdist(sdists, "helper", "1.0", [])
    static_sdist(sdists, "speedy", "1.0", [])
    root = tmp_path / "project"
    root.mkdir()
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\nfind-links = ["{sdists}"]\n'
    )
    (root / "requirements.txt").write_text("app==1.0\n")
    return root


def locked_dependencies(root: Path) -> dict[str, str]:
    data = tomllib.loads((root / "buildprint.lock").read_text())
    return dict(data.get("dependencies", {}))


def test_install_dependencies_are_built_and_locked(project: Path) -> None:
    without = plan(project)
    assert set(without) == {"app"}

    built = build(project, "--with-deps")
    assert {n: e["action"] for n, e in built.items()} == {
        "app": "built",
        "lib": "built",
        "helper": "built",
    }
    assert built["lib"]["version"] == "2.0"  # the newest that app allows
    assert locked_dependencies(project) == {"helper": "1.0", "lib": "2.0"}
    wheels = sorted(p.name.split("-")[0] for p in (project / "wheelhouse").glob("*.whl"))
    assert wheels == ["app", "helper", "lib"]

    # A newer lib on the index changes nothing: the choice is locked ...
    static_sdist(project.parent / "sdists", "lib", "2.5", ["helper>=1"])
    again = plan(project, "--with-deps")
    assert {n: e["action"] for n, e in again.items()} == {
        "app": "reuse",
        "lib": "reuse",
        "helper": "reuse",
    }
    # ... until the lock is upgraded.
    upgraded = run_cli(project, "lock", "--upgrade", "--with-deps")
    assert upgraded.code == 0, upgraded.stderr
    assert locked_dependencies(project)["lib"] == "2.5"
    assert plan(project, "--with-deps")["lib"]["action"] == "build"


def test_extras_pull_in_their_dependencies(project: Path) -> None:
    (project / "requirements.txt").write_text("app[fast]==1.0\n")
    entries = plan(project, "--with-deps")
    assert set(entries) == {"app", "lib", "helper", "speedy"}


def test_disagreeing_requirers_are_a_clear_error(project: Path) -> None:
    sdists = project.parent / "sdists"
    static_sdist(sdists, "other", "1.0", ["mid"])
    static_sdist(sdists, "mid", "1.0", ["lib<2"])  # found only after lib 2.0 was chosen
    (project / "requirements.txt").write_text("app==1.0\nother==1.0\n")
    result = run_cli(project, "plan", "--with-deps", "--json")
    assert result.code == 2, result.stderr
    assert "mid requires lib<2 but 2.0 is chosen" in result.stderr
    assert "Pin the dependency" in result.stderr
    # Pinning it settles it: app allows 1.0 too.
    (project / "requirements.txt").write_text("app==1.0\nother==1.0\nlib==1.0\n")
    entries = plan(project, "--with-deps")
    assert entries["lib"]["version"] == "1.0"
    assert set(entries) == {"app", "other", "mid", "lib", "helper"}
