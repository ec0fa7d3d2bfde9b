"""The default build compiles as ``pip wheel`` does: the interpreter's flags (``-DNDEBUG``,
``-O3``, ``-g`` …), with the path remapping added to them rather than replacing them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from buildprint import Engine
from buildprint.builder.backend import remap_source_flags
from tests.support.cli import PackageSpec, write_project

#: The c-ext fixture's module reports how it was compiled (``_speedups.flags()``).
PROBE = PackageSpec("probe", backend="c-ext")


def compiled_with(wheel: Path, where: Path) -> str:
    """What the wheel's extension reports: ``{'NDEBUG': 1, '__OPTIMIZE__': 1}`` and such."""
    target = where / "target"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    result = subprocess.run(
        [sys.executable, "-c", "import probe._speedups as s; print(sorted(s.flags().items()))"],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = write_project(tmp_path_factory.mktemp("flags") / "project", backend_wheels, [PROBE])
    with Engine(root) as engine:
        assert [o.done for o in engine.build()] == ["built"]
    return root


def test_default_build_compiles_like_pip_wheel(
    built: Path, backend_wheels: Path, tmp_path: Path
) -> None:
    (sdist,) = (built / "dist").glob("probe-*.tar.gz")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"),
            *("--find-links", str(backend_wheels), "-w", str(tmp_path / "pip"), str(sdist)),
        ],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    (by_pip,) = (tmp_path / "pip").glob("probe-*.whl")
    (ours,) = (built / "wheelhouse").glob("probe-*.whl")
    reference = compiled_with(by_pip, tmp_path / "a")
    assert reference == "[('NDEBUG', 1), ('__OPTIMIZE__', 1)]"  # the interpreter's flags
    assert compiled_with(ours, tmp_path / "b") == reference


def test_path_remapping_adds_to_the_flags_it_is_given(tmp_path: Path) -> None:
    stable = f"-ffile-prefix-map={tmp_path}/pkg-1.0=/buildprint/pkg-1.0"
    # Appended in CPPFLAGS, which setuptools adds to every compile (CFLAGS replaces its own).
    flags = remap_source_flags({"PATH": "/bin"}, tmp_path / "pkg-1.0")
    assert flags["CPPFLAGS"] == stable
    assert "CFLAGS" not in flags and "CXXFLAGS" not in flags
    given = remap_source_flags({"CFLAGS": "-O1", "CPPFLAGS": "-DX=1"}, tmp_path / "pkg-1.0")
    assert given["CFLAGS"] == "-O1"  # the user's setting, as pip would pass it
    assert given["CPPFLAGS"] == f"-DX=1 {stable}"
    assert flags["RUSTFLAGS"].startswith("--remap-path-prefix=")
    assert flags["PATH"] == "/bin"
