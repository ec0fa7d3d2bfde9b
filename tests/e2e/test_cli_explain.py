"""End to end: ``why``, ``diff``, ``show`` and ``build -j 2`` through the CLI, human and JSON."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buildprint.builder.wheel import artifact_digest
from buildprint.signature.canonical import digest_bytes
from tests.support.cli import (
    CliRun,
    PackageSpec,
    build,
    copy_project,
    run_cli,
    unified_patch,
    write_project,
)

# Each build appends "start NAME" and "end NAME" to the file named by BUILD_EVENTS, so a test
# reads the order builds really ran in. When "<events>.barrier" exists, left's build waits for
# right's to start: it can only finish if the two run at the same time.
_EVENTS = """\
import os
import time


def event(what, name):
    path = os.environ.get("BUILD_EVENTS")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{what} {name}\\n")


def wait_for(line, seconds=60.0):
    path = os.environ["BUILD_EVENTS"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path) and line in open(path).read().splitlines():
            return
        time.sleep(0.05)
    raise SystemExit(f"{line!r} never happened while this build ran: builds did not overlap")
"""

# setuptools runs setup.py for the backend's get_requires call (while locking) too: only the
# wheel build records events.
LEFT_SETUP = f"""\
import sys

from setuptools import setup

{_EVENTS}
if "bdist_wheel" in sys.argv:
    event("start", "left")
    if os.path.exists(os.environ["BUILD_EVENTS"] + ".barrier"):
        wait_for("start right")
setup()
if "bdist_wheel" in sys.argv:
    event("end", "left")
"""

# top builds against left and right: importing them proves their wheels were installed.
TOP_SETUP = f"""\
import sys

from setuptools import setup

{_EVENTS}
if "bdist_wheel" in sys.argv:
    event("start", "top")
    import left
    import right
setup()
if "bdist_wheel" in sys.argv:
    event("end", "top")
"""

# right is built by the real flit_core, through an in-tree backend that records its events.
RIGHT_PYPROJECT = """\
[build-system]
requires = ["flit_core>=3.4,<5"]
build-backend = "recording"
backend-path = ["_backend"]

[project]
name = "right"
version = "1.0"
description = "right, a buildprint test package"
requires-python = ">=3.8"

[tool.flit.module]
name = "right"
"""

RIGHT_BACKEND = f"""\
from flit_core import buildapi
from flit_core.buildapi import *  # noqa: F403  (every other hook as flit defines it)

{_EVENTS}

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    event("start", "right")
    name = buildapi.build_wheel(wheel_directory, config_settings, metadata_directory)
    event("end", "right")
    return name
"""

pytestmark = pytest.mark.slow  # every case builds or runs the CLI a dozen times

#: The three inputs the explanation tests change in left, with their component paths.
CHANGED = ["env/LEFT_MODE", "patches/0001-doc.patch", "settings"]
PATCH = unified_patch("left/__init__.py", '"""left test package."""', '"""left, patched."""')

#: Wide enough that rich neither wraps nor folds the paths and values the tests look for.
WIDE = {"COLUMNS": "250"}


def specs(events: Path) -> list[PackageSpec]:
    env = f'BUILD_EVENTS = "{events}"'
    return [
        PackageSpec(
            "left",
            files={"setup.py": LEFT_SETUP},
            settings=f'env = {{ LEFT_MODE = "fast", {env} }}\n',
        ),
        PackageSpec(
            "right",
            backend="flit_core",
            files={"pyproject.toml": RIGHT_PYPROJECT, "_backend/recording.py": RIGHT_BACKEND},
            settings=f"env = {{ {env} }}\n",
        ),
        # Both edges in the default artifact mode.
        PackageSpec(
            "top",
            build_requires=("left", "right"),
            files={"setup.py": TOP_SETUP},
            settings=f"env = {{ {env} }}\n",
        ),
    ]


def events_file(project: Path) -> Path:
    """The events file a project's builds write to (named in left's settings)."""
    settings = tomllib.loads((project / "packages" / "left.toml").read_text())
    return Path(settings["env"]["BUILD_EVENTS"])


def events_of(project: Path) -> list[str]:
    path = events_file(project)
    return path.read_text().splitlines() if path.exists() else []


@dataclass(frozen=True)
class FirstBuild:
    """The module's project after its first ``build -j 2 --json``."""

    root: Path
    events: Path
    result: CliRun
    happened: list[str]


@pytest.fixture(scope="module")
def first_build(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> FirstBuild:
    """left, right and top built once with ``build -j 2 --json``; tests work on copies."""
    base = tmp_path_factory.mktemp("explain")
    events = base / "events.txt"
    root = write_project(base / "project", backend_wheels, specs(events))
    Path(f"{events}.barrier").touch()
    result = run_cli(root, "build", "-j", "2", "--json")
    Path(f"{events}.barrier").unlink()
    return FirstBuild(root, events, result, events.read_text().splitlines())


@pytest.fixture
def project(first_build: FirstBuild, tmp_path: Path) -> Path:
    copy = copy_project(first_build.root, tmp_path / "project")
    # Copies write to the same events file (its path is in the settings, so in signatures).
    first_build.events.unlink(missing_ok=True)
    return copy


def wheel_of(project: Path, name: str) -> Path:
    (wheel,) = (project / "wheelhouse").glob(f"{name}-1.0-*.whl")
    return wheel


def checked(result: CliRun) -> CliRun:
    assert result.code == 0, f"exit {result.code}:\n{result.stdout}\n{result.stderr}"
    return result


def manifest_json(project: Path, what: str) -> dict[str, Any]:
    data: dict[str, Any] = checked(run_cli(project, "show", what, "--json")).json()
    return data


def change_left(project: Path) -> None:
    """Change an env value, add a patch and change a settings value of left."""
    settings = project / "packages" / "left.toml"
    text = settings.read_text().replace('LEFT_MODE = "fast"', 'LEFT_MODE = "safe"')
    settings.write_text(text + 'config-settings = { editable_mode = "compat" }\n')
    (project / "patches" / "left").mkdir(parents=True)
    (project / "patches" / "left" / "0001-doc.patch").write_text(PATCH)


def expected_changes(project: Path) -> list[dict[str, Any]]:
    """The contract's ``changes`` entries for :func:`change_left`, old -> new."""
    patch_digest = digest_bytes((project / "patches" / "left" / "0001-doc.patch").read_bytes())
    return [
        {"path": "env/LEFT_MODE", "old": "fast", "new": "safe"},
        {"path": "patches/0001-doc.patch", "old": None, "new": patch_digest, "added": True},
        {
            "path": "settings",
            "old": {"config-settings": {}},
            "new": {"config-settings": {"editable_mode": "compat"}},
        },
    ]


# -- build -j 2 ------------------------------------------------------------------------------


def test_parallel_build_runs_independent_packages_together_and_the_dependent_after(
    first_build: FirstBuild,
) -> None:
    root, result, events = first_build.root, first_build.result, first_build.happened
    checked(result)
    entries = result.packages()
    assert [e["name"] for e in result.json()["packages"]] == ["left", "right", "top"]
    for name, entry in entries.items():
        assert entry["action"] == "built", entry
        assert entry["changed"] == []
        assert entry["reason"] == "never built"
        wheel = wheel_of(root, name)
        assert entry["wheel"] == wheel.name
        assert manifest_json(root, str(wheel))["signature"] == entry["signature"]

    # left waited (barrier) for right to start, so they overlapped; top started after both
    # ended, and was built once.
    assert sorted(events) == sorted(f"{w} {n}" for w in ("start", "end") for n in entries)
    assert events.index("start right") < events.index("end left")
    assert events.index("start top") > max(events.index("end left"), events.index("end right"))

    # top was built against exactly the left and right wheels the run stored.
    deps = manifest_json(root, str(wheel_of(root, "top")))["components"]["deps"]["value"]
    assert deps == {
        name: {"mode": "artifact", "artifact": artifact_digest(wheel_of(root, name))}
        for name in ("left", "right")
    }


def test_parallel_build_human_output_names_each_package_and_why(project: Path) -> None:
    events = events_file(project)
    # A new input in each independent package: both rebuild, together.
    left = project / "packages" / "left.toml"
    left.write_text(left.read_text().replace('"fast"', '"other"'))
    right = project / "packages" / "right.toml"
    right.write_text(right.read_text() + "rebuild = 1\n")
    Path(f"{events}.barrier").touch()
    try:
        result = checked(run_cli(project, "build", "-j", "2", env=WIDE))
    finally:
        Path(f"{events}.barrier").unlink()
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert set(rows) == {"left", "right", "top"}
    assert "built" in rows["left"] and "env/LEFT_MODE" in rows["left"]
    assert "built" in rows["right"] and "rebuild" in rows["right"]
    # Neither new input changes the wheels left and right build: top's inputs are the same
    # (early cutoff), so it is reused.
    assert "reused" in rows["top"]
    assert "1 reused, 0 fetched, 2 built, 0 failed" in result.stdout
    happened = events_of(project)
    assert happened.index("start right") < happened.index("end left")
    assert "start top" not in happened


# -- why -------------------------------------------------------------------------------------


def test_why_reports_each_changed_input_old_to_new(project: Path) -> None:
    change_left(project)
    why = checked(run_cli(project, "why", "left", "--json")).json()
    assert why["action"] == "build"
    assert why["changed"] == CHANGED
    assert why["changes"] == expected_changes(project)
    stored = checked(run_cli(project, "plan", "--json")).packages()
    assert why["signature"] == stored["left"]["signature"]
    assert stored["left"]["changed"] == CHANGED
    assert stored["top"]["action"] == "pending"

    human = checked(run_cli(project, "why", "left", env=WIDE)).stdout
    assert "left 1.0: build" in human
    assert "env/LEFT_MODE: fast → safe" in human
    assert "patches/0001-doc.patch: (absent) → " in human
    settings = '{"config-settings": {}} → {"config-settings": {"editable_mode": "compat"}}'
    assert f"settings: {settings}" in human


def test_why_of_a_dependent_recurses_into_the_dependency(project: Path) -> None:
    change_left(project)
    done = build(project, "left==1.0")
    assert {n: e["action"] for n, e in done.items()} == {"left": "built"}
    assert done["left"]["changed"] == CHANGED

    why = checked(run_cli(project, "why", "top", "--json")).json()
    assert why["action"] == "build"
    assert why["changed"] == ["deps/left"]
    (change,) = why["changes"]
    assert change["old"]["mode"] == change["new"]["mode"] == "artifact"
    assert change["new"]["artifact"] == artifact_digest(wheel_of(project, "left"))
    assert change["because"] == expected_changes(project)

    human = checked(run_cli(project, "why", "top", env=WIDE)).stdout
    assert "deps/left" in human and "env/LEFT_MODE: fast → safe" in human


def test_why_of_a_pending_dependent_names_its_stored_build(project: Path) -> None:
    stored = checked(run_cli(project, "plan", "--json")).packages()["top"]["signature"]
    change_left(project)
    why = checked(run_cli(project, "why", "top", "--json")).json()
    assert why["action"] == "pending"
    assert why["pending_on"] == ["left"]
    assert why["closest"] == stored
    assert why["changed"] == ["deps/left"]
    assert why["changes"][0]["new"]["artifact"] == "(after left is built)"
    human = checked(run_cli(project, "why", "top", env=WIDE)).stdout
    assert "no stored build" not in human and "provisional" in human


def test_why_of_an_unknown_package_exits_2(project: Path) -> None:
    result = run_cli(project, "why", "nosuch")
    assert result.code == 2
    assert "nosuch" in result.stderr and "Traceback" not in result.stderr


# -- diff (wheels, signatures, manifest files) -------------------------------------------------


def test_diff_of_wheels_signatures_and_manifest_files_reports_exactly_the_changes(
    project: Path, tmp_path: Path
) -> None:
    old_wheels = tmp_path / "old"
    old_wheels.mkdir()
    old_left = Path(shutil.copy2(wheel_of(project, "left"), old_wheels))
    old_top = Path(shutil.copy2(wheel_of(project, "top"), old_wheels))
    change_left(project)
    done = build(project, "-j", "2")
    assert {n: e["action"] for n, e in done.items()} == {
        "left": "built",
        "right": "reused",
        "top": "built",  # the patch changes left's wheel: artifact mode rebuilds top
    }
    assert done["left"]["changed"] == CHANGED
    assert done["top"]["changed"] == ["deps/left"]
    new_left, new_top = wheel_of(project, "left"), wheel_of(project, "top")
    old_sig = manifest_json(project, str(old_left))["signature"]
    new_sig = done["left"]["signature"]
    assert manifest_json(project, str(new_left))["signature"] == new_sig != old_sig

    # The same two manifests, three ways in: wheels, signatures, `show --json` files.
    old_file, new_file = tmp_path / "old.json", tmp_path / "new.json"
    old_file.write_text(checked(run_cli(project, "show", old_sig, "--json")).stdout)
    new_file.write_text(checked(run_cli(project, "show", new_sig, "--json")).stdout)
    assert json.loads(old_file.read_text())["signature"] == old_sig
    for a, b in ((old_left, new_left), (old_sig, new_sig), (old_file, new_file)):
        compared = checked(run_cli(project, "diff", str(a), str(b), "--json")).json()
        assert (compared["a"], compared["b"]) == (old_sig, new_sig)
        assert compared["changed"] == CHANGED
        assert compared["changes"] == expected_changes(project)
    human = checked(run_cli(project, "diff", str(old_left), new_sig, env=WIDE)).stdout
    assert f"{old_sig[:16]} → {new_sig[:16]}" in human
    assert "env/LEFT_MODE: fast → safe" in human
    assert "patches/0001-doc.patch: (absent) →" in human
    assert '"editable_mode": "compat"' in human
    assert "version" not in human and "source" not in human

    # top: only its dependency edge changed.
    compared = checked(run_cli(project, "diff", str(old_top), str(new_top), "--json")).json()
    assert compared["changed"] == ["deps/left"]
    (change,) = compared["changes"]
    assert change["new"]["artifact"] == artifact_digest(new_left)
    assert change["old"]["artifact"] == artifact_digest(old_left)

    # Reversed, the same paths with old and new swapped; a manifest against itself: nothing.
    back = checked(run_cli(project, "diff", new_sig, old_sig, "--json")).json()
    assert back["changed"] == CHANGED
    assert back["changes"][0] == {"path": "env/LEFT_MODE", "old": "safe", "new": "fast"}
    same = checked(run_cli(project, "diff", str(new_left), new_sig, "--json")).json()
    assert same["changed"] == [] and same["changes"] == []
    assert "no differences" in checked(run_cli(project, "diff", new_sig, new_sig)).stdout

    # After the build, why finds the package's own record: nothing differs.
    why = checked(run_cli(project, "why", "left", "--json")).json()
    assert (why["action"], why["changed"], why["closest"]) == ("reuse", [], new_sig)


def test_diff_of_a_missing_wheel_or_unknown_signature_exits_2(project: Path) -> None:
    signature = manifest_json(project, str(wheel_of(project, "left")))["signature"]
    missing = run_cli(project, "diff", "nosuch-1.0-py3-none-any.whl", signature)
    assert missing.code == 2 and "nosuch-1.0-py3-none-any.whl" in missing.stderr
    unknown = run_cli(project, "diff", signature, "0" * 64)
    assert unknown.code == 2 and "0" * 64 in unknown.stderr


def break_left(project: Path, *, when: str) -> None:
    """A patch making left's setup.py exit with an error when ``when`` (Python) is true."""
    (project / "patches" / "left").mkdir(parents=True)
    (project / "patches" / "left" / "0001-break.patch").write_text(
        unified_patch(
            "setup.py",
            "import sys",
            f'import sys; {when} and sys.exit("left is broken on purpose")',
        )
    )


def test_parallel_build_with_a_failure_builds_the_rest_and_fails_its_dependent(
    project: Path,
) -> None:
    break_left(project, when='"bdist_wheel" in sys.argv')  # fails its build, not its lock
    right = project / "packages" / "right.toml"
    right.write_text(right.read_text() + "rebuild = 1\n")
    result = run_cli(project, "build", "-j", "2", "--json")
    assert result.code == 1, result.stderr
    entries = result.packages()
    assert {n: e["action"] for n, e in entries.items()} == {
        "left": "failed",
        "right": "built",
        "top": "failed",
    }
    assert entries["left"]["changed"] == ["patches/0001-break.patch"]
    assert "left is broken on purpose" in Path(entries["left"]["log"]).read_text()
    assert "left" in entries["top"]["error"]
    assert entries["right"]["changed"] == ["rebuild"]
    assert wheel_of(project, "right").name == entries["right"]["wheel"]

    human = run_cli(project, "build", "-j", "2", env=WIDE)
    assert human.code == 1
    rows = {line.split()[1]: line for line in human.stdout.splitlines() if line.count("│") > 3}
    assert "failed" in rows["left"] and "failed" in rows["top"] and "reused" in rows["right"]
    assert "1 reused, 0 fetched, 0 built, 2 failed" in human.stdout
    assert "left" in human.stderr and "Traceback" not in human.stderr
    # Nothing failed was stored: the next plan builds left again.
    assert checked(run_cli(project, "plan", "--json")).packages()["left"]["action"] == "build"


def test_backend_failing_while_locking_fails_that_package_only(project: Path) -> None:
    break_left(project, when="True")  # setuptools runs setup.py for get_requires too
    right = project / "packages" / "right.toml"
    right.write_text(right.read_text() + "rebuild = 1\n")
    result = run_cli(project, "build", "-j", "2", "--json")
    assert result.code == 1, result.stderr
    assert "left is broken on purpose" in result.stderr + result.stdout
    logs = re.findall(r"log: (\S+\.log)", result.stderr + result.stdout)
    assert logs and all(Path(log).is_file() for log in logs)
    entries = result.packages()
    assert {n: e["action"] for n, e in entries.items()} == {
        "left": "failed",
        "right": "built",
        "top": "failed",
    }
