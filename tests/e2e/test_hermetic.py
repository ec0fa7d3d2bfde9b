"""Same signature => same wheel content, whatever the caller's environment, the project's path,
the store, ``TMPDIR`` or locale; and the default build is the one ``pip wheel`` makes.

Every fixture backend (setuptools, hatchling, flit_core, a C extension) is built twice: once
plainly, once from another folder, with another store, and a caller environment full of
things that used to reach the build (a ``~/.pydistutils.cfg`` that renames the version and
adds a define, a compiler wrapper first on ``PATH`` and in ``CC``, ``CFLAGS``, ``TMPDIR``, a
locale, ``UV_VENV_SEED``). Nothing declared changed, so the signatures must be equal, and
then the wheels must hold the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.cli import PackageSpec, build, write_project

SPECS = [
    PackageSpec("plain-st", backend="setuptools"),
    PackageSpec("plain-hatch", backend="hatchling"),
    PackageSpec("plain-flit", backend="flit_core"),
    PackageSpec("probe", backend="c-ext"),
]

#: A wrapper that would compile unoptimised with asserts on, if a build ever ran it.
WRAPPER = '#!/bin/sh\nexec /usr/bin/gcc -O0 -UNDEBUG -DWRAPPED=1 "$@"\n'

#: setuptools reads this from $HOME: a version suffix and a define for every extension.
PYDISTUTILS = "[egg_info]\ntag_build = .post9\n\n[build_ext]\ndefine = WRAPPED\n"


def content(wheel: Path) -> dict[str, str]:
    """Member -> sha256, the embedded manifest and RECORD (which hashes it) aside."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            item.filename: hashlib.sha256(archive.read(item)).hexdigest()
            for item in archive.infolist()
            if not item.filename.endswith(("/RECORD", "/buildprint.json"))
        }


def hostile_env(root: Path) -> dict[str, str]:
    home, wrappers, tmp = root / "home", root / "wrappers", root / "tmp"
    for folder in (home, wrappers, tmp):
        folder.mkdir(parents=True)
    (home / ".pydistutils.cfg").write_text(PYDISTUTILS)
    for name in ("gcc", "cc", "x86_64-linux-gnu-gcc"):
        (wrappers / name).write_text(WRAPPER)
        (wrappers / name).chmod(0o755)
    return {
        "HOME": str(home),
        "PATH": f"{wrappers}{os.pathsep}{os.environ['PATH']}",
        "CC": str(wrappers / "gcc"),
        "CFLAGS": "-O0 -UNDEBUG",
        "LDSHARED": f"{wrappers / 'gcc'} -shared",
        "TMPDIR": str(tmp),
        "LANG": "de_DE.ISO-8859-1",
        "LC_ALL": "POSIX",
        "UV_VENV_SEED": "1",
        "PYTHONPATH": str(root),
    }


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = write_project(tmp_path_factory.mktemp("plain") / "project", backend_wheels, SPECS)
    assert {e["action"] for e in build(root).values()} == {"built"}
    return root


@pytest.mark.slow
def test_caller_environment_path_and_store_do_not_change_the_wheel(
    plain: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "some" / "other" / "checkout"
    shutil.copytree(plain, elsewhere, ignore=shutil.ignore_patterns(".buildprint", "wheelhouse"))
    store = tmp_path / "another-store"

    entries = build(elsewhere, "--store", str(store), env=hostile_env(tmp_path / "caller"))

    before = build(plain)  # reused: the same signatures, on the plain project
    for spec in SPECS:
        assert entries[spec.name]["action"] == "built", spec.name
        assert entries[spec.name]["signature"] == before[spec.name]["signature"], spec.name
        (ours,) = (elsewhere / "wheelhouse").glob(f"{spec.name.replace('-', '_')}-*.whl")
        (theirs,) = (plain / "wheelhouse").glob(f"{spec.name.replace('-', '_')}-*.whl")
        assert ours.name == theirs.name
        assert content(ours) == content(theirs), spec.name


@pytest.mark.slow
def test_pure_python_wheels_are_the_ones_pip_wheel_makes(
    plain: Path, backend_wheels: Path, tmp_path: Path
) -> None:
    for spec in SPECS:
        if spec.backend == "c-ext":
            continue  # compiled bytes embed pip's random build path; flags: test_compile_flags
        (sdist,) = (plain / "dist").glob(f"{spec.name.replace('-', '_')}-*.tar.gz")
        out = tmp_path / spec.name
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index"),
                *("--find-links", str(backend_wheels), "-w", str(out), str(sdist)),
            ],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        (by_pip,) = out.glob("*.whl")
        (ours,) = (plain / "wheelhouse").glob(f"{spec.name.replace('-', '_')}-*.whl")
        assert ours.name == by_pip.name
        assert content(ours) == content(by_pip), spec.name
