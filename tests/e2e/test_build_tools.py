"""Build tools in the graph: a build requirement that is one of the graph's packages is
installed into its dependents' build environments as the graph's own wheel (built first),
with its install requirements; ``prebuilt = true`` takes a package's wheel from the index
instead, sha256 locked, byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.e2e.test_corruption import _AUDITED_CLI
from tests.e2e.test_requirements_pip import _other_interpreter
from tests.support.cli import build, cli_env, plan, run_cli
from tests.support.indexes import make_wheel
from tests.support.sdists import make_sdist

SETUPTOOLS = 'requires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'


def _sdist(folder: Path, name: str, requires: str, dependencies: list[str]) -> Path:
    module = name.replace("-", "_")
    listed = ", ".join(f"'{d}'" for d in dependencies)  # TOML literal strings
    pyproject = (
        f"[build-system]\n{requires}\n[project]\n"
        f'name = "{name}"\nversion = "1.0"\ndependencies = [{listed}]\n\n'
        f'[tool.setuptools]\npackages = ["{module}"]\n'
    )
    return make_sdist(folder, name, "1.0", "setuptools", {"pyproject.toml": pyproject})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tool_project(tmp_path: Path, backend_wheels: Path) -> Path:
    """``app`` builds with ``plug`` (a setuptools package of the graph, whose install
    requirement ``helper`` is not in the graph: it comes from the index as a wheel)."""
    sdists = tmp_path / "sdists"
    _sdist(sdists, "plug", SETUPTOOLS, ["helper>=1"])
    requires = 'requires = ["setuptools>=64", "plug"]\nbuild-backend = "setuptools.build_meta"\n'
    _sdist(sdists, "app", requires, [])
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "helper", "1.0")
    root = tmp_path / "project"
    root.mkdir()
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\nfind-links = ["{sdists}", "{wheels}"]\n'
    )
    (root / "requirements.txt").write_text("app==1.0\nplug==1.0\n")
    return root


def test_a_build_requirement_of_the_graph_is_installed_as_its_built_wheel(
    tool_project: Path,
) -> None:
    built = build(tool_project)
    assert {n: e["action"] for n, e in built.items()} == {"plug": "built", "app": "built"}
    assert list(built) == ["plug", "app"]  # the tool first
    lock = tomllib.loads((tool_project / "buildprint.lock").read_text())
    app_pins = {w["name"] for w in lock["packages"]["app"]["wheels"]}
    # plug comes from the graph; setuptools and plug's own install requirement from the index.
    assert app_pins == {"setuptools", "helper"}
    assert lock["packages"]["plug"]["runtime"] == ["helper>=1"]
    edges = run_cli(tool_project, "plan", "--json").json()["edges"]
    assert {"dependent": "app", "dependency": "plug", "kind": "build", "mode": "artifact"} in (
        edges
    )
    assert {n: e["action"] for n, e in build(tool_project).items()} == {
        "plug": "reused",
        "app": "reused",
    }


def test_why_and_show_name_the_graph_dependency(tool_project: Path) -> None:
    build(tool_project)
    why = run_cli(tool_project, "why", "app")
    assert why.code == 0, why.stderr
    assert "same signature" in why.stdout
    # A graph dependency that cannot be locked: the message says why, never an empty name.
    broken = 'requires = []\nbuild-backend = "no_such_backend"\n'
    _sdist(tool_project.parent / "sdists", "plug", broken, ["helper>=1"])
    (tool_project / "buildprint.lock").unlink()
    for command in ("why", "show"):
        said = run_cli(tool_project, command, "app")
        assert "depends on , " not in said.stdout + said.stderr
        assert "its build requirement plug cannot be locked" in said.stdout + said.stderr


@pytest.fixture
def prebuilt_project(tmp_path: Path, backend_wheels: Path) -> Path:
    """``app`` requires ``dep`` at install time; ``dep`` is prebuilt (a wheel on the index,
    with no sdist at all)."""
    sdists = tmp_path / "sdists"
    _sdist(sdists, "app", SETUPTOOLS, ["dep>=1"])
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "dep", "1.0", requires=["helper"])
    make_wheel(wheels, "helper", "2.0")
    root = tmp_path / "project"
    (root / "packages").mkdir(parents=True)
    (root / "packages" / "dep.toml").write_text("prebuilt = true\n")
    (root / "packages" / "helper.toml").write_text("prebuilt = true\n")
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\nfind-links = ["{sdists}", "{wheels}"]\n'
    )
    (root / "requirements.txt").write_text("app==1.0\n")
    return root


def test_prebuilt_packages_come_from_the_index_sha256_locked(prebuilt_project: Path) -> None:
    wheels = prebuilt_project.parent / "wheels"
    built = build(prebuilt_project, "--with-deps")
    assert {n: e["action"] for n, e in built.items()} == dict.fromkeys(
        ["app", "dep", "helper"], "built"
    )
    assert "prebuilt" in built["dep"]["reason"]
    house = prebuilt_project / "wheelhouse"
    for name in ("dep-1.0-py3-none-any.whl", "helper-2.0-py3-none-any.whl"):
        assert _sha256(house / name) == _sha256(wheels / name)  # the index's bytes
    lock = tomllib.loads((prebuilt_project / "buildprint.lock").read_text())
    (pin,) = lock["packages"]["dep"]["wheels"]
    assert pin["sha256"] == _sha256(wheels / "dep-1.0-py3-none-any.whl")
    assert lock["packages"]["dep"]["runtime"] == ["helper"]
    assert {
        n: e["action"] for n, e in plan(prebuilt_project, "--with-deps").items()
    } == dict.fromkeys(["app", "dep", "helper"], "reuse")
    # Another file under the locked name is refused, not placed.
    shutil.rmtree(prebuilt_project / ".buildprint")
    shutil.rmtree(house)
    make_wheel(wheels, "dep", "1.0", requires=["helper", "other"])
    again = run_cli(prebuilt_project, "build", "--with-deps")
    assert again.code != 0
    assert "dep-1.0-py3-none-any.whl" in again.stderr and "sha256" in again.stderr
    assert not (house / "dep-1.0-py3-none-any.whl").exists()


def test_a_prebuilt_package_with_patches_is_refused(prebuilt_project: Path) -> None:
    (prebuilt_project / "patches" / "dep").mkdir(parents=True)
    (prebuilt_project / "patches" / "dep" / "0001-x.patch").write_text("--- a/x\n+++ b/x\n")
    refused = run_cli(prebuilt_project, "build", "--with-deps")
    assert refused.code == 2
    assert "packages/dep.toml" in refused.stderr and "prebuilt" in refused.stderr
    assert not (prebuilt_project / "buildprint.lock").exists()


def test_with_deps_markers_are_evaluated_for_the_build_interpreter(
    tmp_path: Path, backend_wheels: Path
) -> None:
    other = _other_interpreter()
    if other is None:
        pytest.skip("no other CPython of another minor version runs here")
    python, version = other
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    sdists = tmp_path / "sdists"
    wanted = [f'lib; python_version == "{version}"', f'other; python_version == "{ours}"']
    _sdist(sdists, "app", SETUPTOOLS, wanted)
    for name in ("lib", "other"):
        _sdist(sdists, name, SETUPTOOLS, [])
    root = tmp_path / "project"
    root.mkdir()
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\nfind-links = ["{sdists}"]\n'
        f'python = "{python}"\n'
    )
    (root / "requirements.txt").write_text("app==1.0\n")
    assert set(plan(root, "--with-deps")) == {"app", "lib"}


def test_a_build_cycle_is_broken_by_a_prebuilt_seed(tmp_path: Path, backend_wheels: Path) -> None:
    sdists, wheels = tmp_path / "sdists", tmp_path / "wheels"
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        requires = (
            f'requires = ["setuptools>=64", "{other}"]\nbuild-backend = "setuptools.build_meta"\n'
        )
        _sdist(sdists, name, requires, [])
    make_wheel(wheels, "beta", "1.0")
    root = tmp_path / "project"
    (root / "packages").mkdir(parents=True)
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\nfind-links = ["{sdists}", "{wheels}"]\n'
    )
    (root / "requirements.txt").write_text("alpha==1.0\nbeta==1.0\n")
    cycle = run_cli(root, "plan")
    assert cycle.code == 2
    assert "dependency cycle in build requirements: alpha -> beta -> alpha" in cycle.stderr
    (root / "packages" / "beta.toml").write_text("prebuilt = true\n")
    built = build(root)
    assert {n: e["action"] for n, e in built.items()} == {"beta": "built", "alpha": "built"}
    assert "prebuilt" in built["beta"]["reason"]
    edges = run_cli(root, "plan", "--json").json()["edges"]
    assert [(e["dependent"], e["dependency"]) for e in edges] == [("alpha", "beta")]


def test_from_source_adds_build_tools_narrowed_by_constraints(
    tmp_path: Path, backend_wheels: Path
) -> None:
    sdists = tmp_path / "sdists"
    for version in ("1.0", "2.0"):
        make_sdist(sdists, "plug", version, "setuptools")
    requires = 'requires = ["setuptools>=64", "plug"]\nbuild-backend = "setuptools.build_meta"\n'
    _sdist(sdists, "app", requires, [])
    root = tmp_path / "project"
    (root / "packages").mkdir(parents=True)
    # The fixture index has setuptools as a wheel only: the seed every package builds with.
    (root / "packages" / "setuptools.toml").write_text("prebuilt = true\n")
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\nfind-links = ["{sdists}"]\n'
        "from-source = true\n"
    )
    (root / "requirements.txt").write_text("app==1.0\n")
    (root / "constraints.txt").write_text("plug<2\n")
    built = build(root, "-c", "constraints.txt")
    assert {n: (e["action"], e["version"]) for n, e in built.items() if n != "setuptools"} == {
        "plug": ("built", "1.0"),
        "app": ("built", "1.0"),
    }
    assert built["setuptools"]["action"] == "built" and "prebuilt" in built["setuptools"]["reason"]


def test_a_noop_build_from_a_folder_index_reads_no_sdist(tool_project: Path) -> None:
    build(tool_project)
    # A folder of sdists publishes no sha256: each is digested once per state, then memoized.
    log = tool_project.parent / "opened"
    done = subprocess.run(
        [sys.executable, "-c", _AUDITED_CLI, str(log), "build", "--json"],
        cwd=tool_project,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {e["action"] for e in json.loads(done.stdout)["packages"]} == {"reused"}
    opened = log.read_text().splitlines()
    assert opened, "the audit hook saw nothing"
    assert [path for path in opened if path.endswith(".tar.gz")] == []
