"""Plugin hooks that act on a build are covered by its signature: ``update_env`` runs at plan
time (tracked, its answer in the ``env`` component), ``build_wheel`` gets the environment the
backend would get, and a build-time hook that reads the caller's environment fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildprint import Engine
from tests.support.cli import PackageSpec, write_project
from tests.support.indexes import make_wheel

UPDATE_ENV = """\
import os


def update_env(pkg, env):
    return {**env, "FLAVOR": os.environ.get("FLAVOR_FROM_CALLER", "plain")}
"""

BUILD_WHEEL = """\
import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent


def build_wheel(pkg, source_dir, out_dir, env, config_settings):
    (HERE / "seen.json").write_text(json.dumps(env))
    subprocess.run(["sh", "-c", "true"], env=env, check=True)  # given the env: fine
    out_dir.mkdir(parents=True, exist_ok=True)
    (made,) = (HERE / "made").glob("*.whl")
    return shutil.copy(made, out_dir)
"""

PREPARE_SOURCE = """\
import os


def prepare_source(pkg, source_dir):
    (source_dir / "flavor.txt").write_text(os.environ.get("FLAVOR_FROM_CALLER", "plain"))
"""


def project(root: Path, index: Path, hook: str) -> Path:
    spec = PackageSpec("alpha", settings='plugin = "plugins.alpha"\nenv = { DECLARED = "1" }\n')
    write_project(root, index, [spec])
    (root / "plugins").mkdir()
    (root / "plugins" / "alpha.py").write_text(hook)
    return root


def signature(root: Path) -> str:
    with Engine(root) as engine:
        (decision,) = engine.plan()
    assert decision.signature is not None
    return decision.signature


def test_update_env_reading_the_caller_changes_the_signature(
    tmp_path: Path, backend_wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "project", backend_wheels, UPDATE_ENV)
    with Engine(root) as engine:
        (outcome,) = engine.build()
    assert outcome.done == "built" and outcome.record is not None
    assert outcome.record.manifest["components"]["env"]["value"]["FLAVOR"] == "plain"
    plain = outcome.record.signature
    assert signature(root) == plain  # unchanged: the same answer, reused

    monkeypatch.setenv("FLAVOR_FROM_CALLER", "spicy")
    with Engine(root) as engine:
        (decision,) = engine.plan()
    assert decision.action == "build" and decision.signature != plain
    assert "env/FLAVOR" in {change.path for change in decision.changes}


def test_build_wheel_hook_gets_the_constructed_environment(
    tmp_path: Path, backend_wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "project", backend_wheels, BUILD_WHEEL)
    make_wheel(root / "plugins" / "made", "alpha", "1.0")
    monkeypatch.setenv("HOME", str(tmp_path / "caller-home"))
    monkeypatch.setenv("SOMETHING_ELSE", "leak")
    with Engine(root) as engine:
        (outcome,) = engine.build()
    assert outcome.done == "built", outcome.error
    seen = json.loads((root / "plugins" / "seen.json").read_text())
    assert seen["DECLARED"] == "1"
    home = Path(seen["HOME"])
    assert home.name == "home" and ".alpha-1.0." in home.parent.name
    assert home.parent.parent == root / ".buildprint" / "work"
    assert seen["LC_ALL"] == "C.UTF-8"
    assert seen["PATH"].split(":")[0].startswith(str(root / ".buildprint" / "envs"))
    assert "-ffile-prefix-map=" in seen["CPPFLAGS"]
    assert "SOMETHING_ELSE" not in seen


def test_a_build_time_hook_reading_the_caller_environment_fails_that_build(
    tmp_path: Path, backend_wheels: Path
) -> None:
    root = project(tmp_path / "project", backend_wheels, PREPARE_SOURCE)
    with Engine(root) as engine:
        (outcome,) = engine.build()
        records = engine.records()
    assert outcome.done == "failed"
    assert "prepare_source hook (plugins.alpha) read FLAVOR_FROM_CALLER" in (outcome.error or "")
    assert "plugins/alpha.py" in (outcome.error or "")
    assert records == []
    assert list((root / "wheelhouse").glob("*.whl")) == []


def test_a_build_time_hook_starting_a_process_that_inherits_the_environment_fails(
    tmp_path: Path, backend_wheels: Path
) -> None:
    hook = BUILD_WHEEL.replace('["sh", "-c", "true"], env=env,', '["sh", "-c", "true"],')
    root = project(tmp_path / "project", backend_wheels, hook)
    make_wheel(root / "plugins" / "made", "alpha", "1.0")
    with Engine(root) as engine:
        (outcome,) = engine.build()
    assert outcome.done == "failed"
    assert "build_wheel hook (plugins.alpha) read the whole environment" in (outcome.error or "")
