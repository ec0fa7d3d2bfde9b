"""Bootstrap from source, build tools included, fully offline: the closure of setuptools,
wheel, flit_core, packaging, a hatchling-built package (hatchling and what it needs from
source) and a C extension, built from local sdists only, in dependency order; reused on the
next run; a patch to setuptools rebuilds its build-dependents only when its wheel changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bootstrap import BOOTSTRAP_SDISTS
from tests.support.cli import CliRun, run_cli
from tests.support.sdists import make_sdist

pytestmark = pytest.mark.slow

#: Any connection leaves through a proxy nobody listens on: nothing is fetched from a network.
OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "UV_OFFLINE": "1",
}

CLOSURE = {
    "setuptools",
    "wheel",
    "flit-core",
    "packaging",
    "hatchling",
    "pathspec",
    "pluggy",
    "trove-classifiers",
    "tomlkit",
    "poetry-core",
    "calver",
    "setuptools-scm",
    "vcs-versioning",
    "hatchpkg",
    "cext",
}

#: What builds with setuptools installed: directly, or through a build tool that requires it
#: at install time (setuptools-scm does), pluggy and trove-classifiers among them.
SETUPTOOLS_DEPENDENTS = {
    "calver",
    "trove-classifiers",
    "pluggy",
    "setuptools-scm",
    "vcs-versioning",
    "cext",
}


def _actions(run: CliRun) -> dict[str, str]:
    assert run.code == 0, run.stderr
    return {name: entry["action"] for name, entry in run.packages().items()}


def test_bootstrap_from_source_offline(tmp_path: Path, bootstrap_sdists: Path) -> None:
    # One test, in steps: each step needs the store the one before it left.
    project = _bootstrap(tmp_path, bootstrap_sdists)
    _the_closure_builds_from_sdists_with_its_own_build_tools(project)
    _a_second_run_reuses_everything(project)
    _a_patch_to_setuptools_rebuilds_dependents_only_when_its_wheel_changes(project)


def _bootstrap(root: Path, bootstrap_sdists: Path) -> Path:
    index = root / "index"
    index.mkdir()
    for filename in BOOTSTRAP_SDISTS:
        shutil.copy2(bootstrap_sdists / filename, index / filename)
    make_sdist(index, "hatchpkg", "1.0", "hatchling")
    make_sdist(index, "cext", "1.0", "c-ext")
    assert not list(index.glob("*.whl"))  # sdists only: every wheel is built here
    project = root / "project"
    project.mkdir()
    (project / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{index}"\nfrom-source = true\n'
    )
    (project / "requirements.txt").write_text(
        "setuptools\nwheel\nflit-core\npackaging\nhatchpkg\ncext\n"
    )
    first = run_cli(project, "build", "--json", env=OFFLINE, timeout=900)
    assert _actions(first) == dict.fromkeys(CLOSURE, "built")
    return project


def _the_closure_builds_from_sdists_with_its_own_build_tools(bootstrapped: Path) -> None:
    lock = (bootstrapped / "buildprint.lock").read_text()
    assert "[[packages." not in lock  # no wheel pinned from an index: all built here
    plan = run_cli(bootstrapped, "plan", "--json", env=OFFLINE)
    assert plan.code == 0, plan.stderr
    edges = {(e["dependent"], e["dependency"], e["kind"]) for e in plan.json()["edges"]}
    # hatchling builds itself (backend-path) and names its build requirements through its
    # own backend; its dependents get it as the built wheel, with its install requirements.
    hatchling_env = {"hatchling", "packaging", "pathspec", "pluggy", "trove-classifiers", "tomlkit"}
    assert {d for (p, d, k) in edges if p == "hatchpkg" and k == "build"} == hatchling_env
    assert {d for (p, d, k) in edges if p == "hatchling" and k == "build"} == hatchling_env - {
        "hatchling"
    }
    assert {d for (p, d, k) in edges if p == "setuptools"} == set()  # self-hosting
    assert {d for (p, d, k) in edges if p == "flit-core"} == set()
    assert ("setuptools-scm", "vcs-versioning", "install") in edges
    assert all(e["mode"] == "artifact" for e in plan.json()["edges"] if e["kind"] == "build")
    order = run_cli(bootstrapped, "graph", "--order", env=OFFLINE)
    assert order.code == 0, order.stderr
    position = {line.split("==")[0]: i for i, line in enumerate(order.stdout.splitlines())}
    assert set(position) == CLOSURE
    assert all(position[d] < position[p] for (p, d, k) in edges if k == "build")
    dot = run_cli(bootstrapped, "graph", env=OFFLINE)
    assert dot.stdout.startswith("digraph buildprint {")
    assert '"hatchpkg" -> "hatchling" [style=solid, label="build (artifact)"];' in dot.stdout
    # The wheelhouse alone installs the closure, with pip, offline.
    target = bootstrapped.parent / "installed"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--find-links",
            str(bootstrapped / "wheelhouse"),
            "--target",
            str(target),
            *sorted(CLOSURE),
        ],
        check=True,
    )
    probe = "import cext, hatchpkg, hatchling, setuptools; print(setuptools.__version__)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "84.2.1"


def _a_second_run_reuses_everything(bootstrapped: Path) -> None:
    assert _actions(run_cli(bootstrapped, "build", "--json", env=OFFLINE)) == dict.fromkeys(
        CLOSURE, "reused"
    )


def _a_patch_to_setuptools_rebuilds_dependents_only_when_its_wheel_changes(
    bootstrapped: Path,
) -> None:
    patches = bootstrapped / "patches" / "setuptools"
    patches.mkdir(parents=True)
    # A file the wheel does not hold: setuptools is built again, to the same wheel content.
    (patches / "0001-tox.patch").write_text(
        "--- a/tox.ini\n+++ b/tox.ini\n@@ -1,2 +1,3 @@\n [testenv]\n"
        "+# a local note, in no wheel\n"
        " description = perform primary checks (tests, style, types, coverage)\n"
    )
    same = _actions(run_cli(bootstrapped, "build", "--json", env=OFFLINE, timeout=900))
    assert same == {**dict.fromkeys(CLOSURE, "reused"), "setuptools": "built"}
    # A module of the wheel: what builds with setuptools is built again, nothing else.
    (patches / "0002-module.patch").write_text(
        "--- a/setuptools/__init__.py\n+++ b/setuptools/__init__.py\n@@ -1,2 +1,3 @@\n"
        ' """Extensions to the \'distutils\' for large or complex distributions"""\n'
        "+# patched here\n"
        " # mypy: disable_error_code=override\n"
    )
    changed = _actions(run_cli(bootstrapped, "build", "--json", env=OFFLINE, timeout=900))
    rebuilt = {"setuptools", *SETUPTOOLS_DEPENDENTS}
    assert changed == {name: "built" if name in rebuilt else "reused" for name in CLOSURE}
    why = run_cli(bootstrapped, "plan", "--json", env=OFFLINE)
    assert {e["action"] for e in why.json()["packages"]} == {"reuse"}
