"""Locking again after a source change keeps the pins that still fit (docs/lock.md): only
``lock --upgrade`` moves build requirements to newer versions."""

from __future__ import annotations

import shutil
from pathlib import Path

from buildprint import Engine
from tests.support.cli import PackageSpec, unified_patch, write_project
from tests.support.indexes import make_wheel


def pins(root: Path, *, upgrade: bool = False) -> dict[str, str]:
    with Engine(root) as engine:
        (node,) = engine.lock(upgrade=upgrade)
    assert node.lock_error is None
    return {w.name: w.version for w in node.locked.wheels}


def test_a_changed_source_keeps_its_pins_until_upgrade(
    tmp_path: Path, backend_wheels: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(backend_wheels, index)
    make_wheel(index, "helper-dep", "1.0")
    spec = PackageSpec("alpha", build_requires=("helper-dep",))
    root = write_project(tmp_path / "project", index, [spec])
    assert pins(root)["helper-dep"] == "1.0"

    make_wheel(index, "helper-dep", "2.0")  # a newer release appears on the index
    (root / "patches" / "alpha").mkdir(parents=True)
    (root / "patches" / "alpha" / "0001-readme.patch").write_text(
        unified_patch("README.txt", "alpha 1.0", "alpha 1.0, patched")
    )
    with Engine(root) as engine:
        lock_before = engine.lock_data.get("alpha")
    assert lock_before is not None
    relocked = pins(root)  # the patch changes the source: locked again, pins kept
    assert relocked["helper-dep"] == "1.0"
    with Engine(root) as engine:
        entry = engine.lock_data.get("alpha")
    assert entry is not None and entry.source != lock_before.source  # it was locked anew

    assert pins(root, upgrade=True)["helper-dep"] == "2.0"
