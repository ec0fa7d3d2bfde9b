"""Fixture backends as wheels, available offline: the cache, and the wheel set per backend."""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.support.sdists import Backend

__all__ = ["BACKEND_ROOTS", "WHEELS_ENV", "backend_wheels", "wheel_paths_for"]

#: Environment variable that moves the persistent wheel cache.
WHEELS_ENV = "BUILDPRINT_TEST_WHEELS"

#: Distributions each fixture backend needs installed; their dependencies are added from
#: the wheels' own metadata.
BACKEND_ROOTS: dict[str, tuple[str, ...]] = {
    "setuptools": ("setuptools", "wheel"),
    "c-ext": ("setuptools", "wheel"),
    "hatchling": ("hatchling",),
    "flit_core": ("flit_core",),
}

_DOWNLOAD = ("setuptools", "wheel", "hatchling", "flit_core")


def _cache_dir() -> Path:
    configured = os.environ.get(WHEELS_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "buildprint-tests" / "wheels"


def _index(folder: Path) -> dict[NormalizedName, Path]:
    """Newest wheel per distribution in ``folder``."""
    best: dict[NormalizedName, tuple[Version, Path]] = {}
    for path in folder.glob("*.whl"):
        name, version, _build, _tags = parse_wheel_filename(path.name)
        if name not in best or version > best[name][0]:
            best[name] = (version, path)
    return {name: path for name, (_version, path) in best.items()}


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(
            n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        )
        message = email.parser.BytesParser().parsebytes(archive.read(metadata_name))
    requirements = [Requirement(value) for value in message.get_all("Requires-Dist") or []]
    # Dependencies that apply to this interpreter without extras.
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def _closure(folder: Path, roots: tuple[str, ...]) -> list[Path]:
    available = _index(folder)
    chosen: dict[NormalizedName, Path] = {}
    pending = [canonicalize_name(root) for root in roots]
    while pending:
        name = pending.pop()
        if name in chosen:
            continue
        if name not in available:
            raise LookupError(f"no wheel for {name} in {folder}")
        chosen[name] = available[name]
        pending.extend(canonicalize_name(r.name) for r in _requires(available[name]))
    return sorted(chosen.values())


def _complete(folder: Path) -> bool:
    try:
        for roots in BACKEND_ROOTS.values():
            _closure(folder, roots)
    except LookupError:
        return False
    return True


@pytest.fixture(scope="session")
def backend_wheels() -> Path:
    """A folder of wheels for every fixture backend (setuptools, wheel, hatchling and its
    dependencies, flit_core), filled from PyPI once into a persistent cache.

    ``BUILDPRINT_TEST_WHEELS`` moves the cache; ``.ci/run`` can pre-fill it with
    ``python -m pip download --only-binary :all: --dest DIR setuptools wheel hatchling flit_core``.
    """
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if not _complete(folder):
        # Download beside the cache and move in, so an interrupted fill leaves no partial wheel.
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as staging:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--only-binary",
                    ":all:",
                    "--dest",
                    staging,
                    *_DOWNLOAD,
                ],
                check=True,
            )
            for wheel in Path(staging).glob("*.whl"):
                os.replace(wheel, folder / wheel.name)
        assert _complete(folder), f"backend wheels still incomplete in {folder}"
    return folder


@pytest.fixture(scope="session")
def wheel_paths_for(backend_wheels: Path) -> Callable[[Backend], list[Path]]:
    """``wheel_paths_for(backend)``: the wheel files to install into a BuildEnvironment."""

    def paths(backend: Backend) -> list[Path]:
        return _closure(backend_wheels, BACKEND_ROOTS[backend])

    return paths
