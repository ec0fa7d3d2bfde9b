"""The tree a build gets is the source its signature was composed from: a source replaced
between the plan and the build is refused, never built under the old signature."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from buildprint import Engine
from buildprint.errors import InputError
from tests.support.cli import PackageSpec, write_project
from tests.support.sdists import extract_sdist, make_sdist


def test_a_local_archive_replaced_after_the_plan_is_refused(
    tmp_path: Path, backend_wheels: Path
) -> None:
    root = write_project(tmp_path / "project", backend_wheels, [PackageSpec("alpha")])
    with Engine(root) as engine:
        (node,) = engine.graph()
        assert engine.preparer.source_tree(node.source, [], tmp_path / "ok").is_dir()
        (sdist,) = (root / "dist").glob("alpha-*.tar.gz")
        other = make_sdist(tmp_path / "other", "alpha", "1.0", "setuptools", {"extra.txt": "x"})
        shutil.copyfile(other, sdist)
        with pytest.raises(InputError, match="source archive of alpha changed"):
            engine.preparer.source_tree(node.source, [], tmp_path / "refused")


def test_a_source_folder_changed_after_the_plan_is_refused(
    tmp_path: Path, backend_wheels: Path
) -> None:
    sdist = make_sdist(tmp_path / "made", "beta", "1.0", "setuptools")
    folder = extract_sdist(sdist, tmp_path / "src")
    root = write_project(tmp_path / "project", backend_wheels, [])
    (root / "packages" / "beta.toml").write_text(f'source = {{ path = "{folder}" }}\n')
    (root / "requirements.txt").write_text("beta==1.0\n")
    with Engine(root) as engine:
        (node,) = engine.graph()
        (folder / "added.py").write_text("print('new')\n")
        with pytest.raises(InputError, match="source folder of beta changed"):
            engine.preparer.source_tree(node.source, [], tmp_path / "refused")
