"""Build environments are shared by every build that installs the same wheels, made once,
never changed, and a half-made one is made again."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from buildprint import Engine
from buildprint.builder.environment import EnvironmentPool
from tests.support.cli import PackageSpec, write_project


def test_builds_with_the_same_locked_wheels_share_one_environment(
    tmp_path: Path, backend_wheels: Path
) -> None:
    root = write_project(
        tmp_path / "project", backend_wheels, [PackageSpec(f"pkg-{n}") for n in range(3)]
    )
    with Engine(root) as engine:
        assert [o.done for o in engine.build()] == ["built"] * 3
    envs = [p for p in (root / ".buildprint" / "envs").iterdir() if p.is_dir()]
    assert len(envs) == 1  # one set of locked wheels (setuptools), one environment
    assert (envs[0] / EnvironmentPool.MARK).is_file()
    # Compiled once, as pip installs: every backend call imports bytecode, none writes any.
    assert list(envs[0].glob("lib/python*/site-packages/setuptools/__pycache__/*.pyc"))
    assert not list((root / ".buildprint" / "work").glob("pkg-*"))  # scratch folders gone


def test_a_half_made_environment_is_made_again(tmp_path: Path, backend_wheels: Path) -> None:
    (wheel,) = backend_wheels.glob("setuptools-*.whl")
    wanted = [(wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest())]
    pool = EnvironmentPool(tmp_path / "envs", shutil.which("python3") or "python3")
    made = pool.get(wanted, lambda: [wheel])
    (made.path / EnvironmentPool.MARK).unlink()  # as a run killed while installing leaves it
    shutil.rmtree(next(made.path.glob("lib/python*/site-packages/setuptools")))

    again = pool.get(wanted, lambda: [wheel])
    assert again.path == made.path
    assert next(again.path.glob("lib/python*/site-packages/setuptools")).is_dir()
    calls: list[Path] = []

    def files() -> list[Path]:
        calls.append(wheel)
        return [wheel]

    pool.get(wanted, files)  # complete: its files are not even asked for
    assert calls == []
