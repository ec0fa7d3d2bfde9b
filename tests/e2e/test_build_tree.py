"""End to end: the build tree is exactly the digested tree.

What the source digest ignores (``build/``, ``.git``, a checkout's ``*.egg-info``, tool
caches) never reaches a build; a folder's symlink leading out of it is refused; an sdist's
egg-info, which setuptools reads, is kept, so the wheel is the one ``pip wheel`` makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from buildprint.inputs.tree import tree_digest
from tests.support.cli import copy_project, plan, run_cli, snapshot
from tests.support.sdists import make_sdist

pytestmark = pytest.mark.slow  # builds three packages

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "1.0"
requires-python = ">=3.8"

[tool.setuptools]
packages = ["{name}"]
"""

# alpha's setup.py writes down the build tree as its first run finds it (setuptools runs
# setup.py again for each hook; later runs see what earlier ones made), in a module that
# ships in the wheel.
_RECORDING_SETUP = """\
import os
from setuptools import setup

if not os.path.exists("alpha/_tree.py"):
    seen = sorted(
        os.path.relpath(os.path.join(folder, name), ".")
        for folder, dirs, files in os.walk(".")
        for name in dirs + files
    )
    with open("alpha/_tree.py", "w") as out:
        out.write(f"TREE = {seen!r}\\n")
setup()
"""

# beta's build fails if it can see a VCS checkout (setuptools-scm would read its tags).
_NO_GIT_SETUP = """\
import os
from setuptools import setup

if os.path.exists(".git"):
    raise SystemExit("the build tree holds .git")
setup()
"""

#: alpha's folder: sources, and the debris an in-place build, a test run and git leave.
ALPHA = {
    "pyproject.toml": _PYPROJECT.format(name="alpha"),
    "setup.py": _RECORDING_SETUP,
    "alpha/__init__.py": '"""alpha."""\n',
    "alpha/data.txt": "not declared as package data\n",
    "alpha/alias.py": None,  # a symlink to __init__.py, inside the tree
    "build/lib/alpha/stale.py": "STALE = True\n",
    "alpha.egg-info/SOURCES.txt": "alpha/__init__.py\nalpha/data.txt\nbuild/lib/alpha/stale.py\n",
    "alpha.egg-info/PKG-INFO": "Metadata-Version: 2.1\nName: alpha\nVersion: 1.0\n",
    ".pytest_cache/v/cache/lastfailed": "{}\n",
    "alpha/__pycache__/__init__.cpython-311.pyc": "",
    ".git/HEAD": "ref: refs/heads/main\n",
}
BETA = {
    "pyproject.toml": _PYPROJECT.format(name="beta"),
    "setup.py": _NO_GIT_SETUP,
    "beta/__init__.py": '"""beta."""\n',
    ".git/HEAD": "ref: refs/heads/main\n",
    ".git/refs/tags/v9.9": "0" * 40 + "\n",
}
#: gamma's sdist, as setuptools-scm-style file finders make them: the data file is named
#: only in the egg-info's SOURCES.txt (no MANIFEST.in), which setuptools reads when it
#: builds the sdist. ``pip wheel`` therefore ships it; so must buildprint.
GAMMA = {
    "gamma/__init__.py": '"""gamma."""\n',
    "gamma/data.txt": "named in SOURCES.txt only\n",
    "gamma.egg-info/PKG-INFO": "Metadata-Version: 2.1\nName: gamma\nVersion: 1.0\n",
    "gamma.egg-info/SOURCES.txt": (
        "PKG-INFO\nREADME.txt\npyproject.toml\ngamma/__init__.py\ngamma/data.txt\n"
        "gamma.egg-info/PKG-INFO\ngamma.egg-info/SOURCES.txt\ngamma.egg-info/top_level.txt\n"
    ),
    "gamma.egg-info/top_level.txt": "gamma\n",
}


def _folder(root: Path, files: Mapping[str, str | None]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            os.symlink("__init__.py", path)
        else:
            path.write_text(text)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """alpha and beta from folders holding debris, gamma from an sdist; built once."""
    root = tmp_path_factory.mktemp("tree") / "project"
    (root / "packages").mkdir(parents=True)
    (root / "buildprint.toml").write_text(f'[project]\nindex-url = "{backend_wheels}"\n')
    _folder(root / "src" / "alpha", ALPHA)
    _folder(root / "src" / "beta", BETA)
    make_sdist(root / "dist", "gamma", "1.0", "setuptools", GAMMA)
    (root / "packages" / "alpha.toml").write_text('source = { path = "src/alpha" }\n')
    (root / "packages" / "beta.toml").write_text('source = { path = "src/beta" }\n')
    (root / "packages" / "gamma.toml").write_text('source = { path = "dist/gamma-1.0.tar.gz" }\n')
    (root / "requirements.txt").write_text("alpha==1.0\nbeta==1.0\ngamma==1.0\n")
    run_cli(root, "build", "--json")  # each test asserts on its own package's outcome
    return root


def _wheel(project: Path, name: str) -> zipfile.ZipFile:
    (wheel,) = (project / "wheelhouse").glob(f"{name}-1.0-*.whl")
    return zipfile.ZipFile(wheel)


def test_stale_build_output_of_a_folder_is_not_in_the_wheel(project: Path) -> None:
    names = _wheel(project, "alpha").namelist()
    assert "alpha/__init__.py" in names
    assert "alpha/stale.py" not in names
    # The stale SOURCES.txt (a checkout's egg-info is debris) did not package data.txt.
    assert "alpha/data.txt" not in names


def test_the_build_tree_is_exactly_the_digested_tree(project: Path) -> None:
    namespace: dict[str, list[str]] = {}
    exec(_wheel(project, "alpha").read("alpha/_tree.py"), namespace)
    digested: list[str] = []
    tree_digest(project / "src" / "alpha", entries=digested)
    assert namespace["TREE"] == sorted(digested)
    assert "alpha/alias.py" in digested  # links inside the tree are kept


def test_a_folder_checkout_is_built_without_its_git_folder(project: Path) -> None:
    result = run_cli(project, "plan", "--json")
    assert result.code == 0, result.stderr
    assert result.packages()["beta"]["action"] == "reuse", "beta was not built"
    assert any(n.startswith("beta/") for n in _wheel(project, "beta").namelist())


def test_an_sdist_keeps_its_egg_info_and_builds_what_pip_wheel_builds(
    project: Path, backend_wheels: Path, tmp_path: Path
) -> None:
    sdist = project / "dist" / "gamma-1.0.tar.gz"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            "--find-links",
            str(backend_wheels),
            "--wheel-dir",
            str(tmp_path),
            str(sdist),
        ],
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    )
    (reference,) = (zipfile.ZipFile(path) for path in tmp_path.glob("gamma-1.0-*.whl"))
    ours = _wheel(project, "gamma")
    # buildprint adds its manifest (and RECORD says so); every other file is pip's.
    added = {"gamma-1.0.dist-info/buildprint.json"}
    assert set(ours.namelist()) - added == set(reference.namelist())
    assert "gamma/data.txt" in reference.namelist()  # SOURCES.txt mattered
    for name in reference.namelist():
        if not name.endswith("/RECORD"):
            assert ours.read(name) == reference.read(name), name


def _absolute_link(folder: Path, outside: Path) -> tuple[str, str]:
    target = str(outside / "secret.py")
    os.symlink(target, folder / "alpha" / "secret.py")
    return "alpha/secret.py", target


def _relative_link(folder: Path, outside: Path) -> tuple[str, str]:
    target = os.path.relpath(outside / "secret.py", folder / "alpha")
    os.symlink(target, folder / "alpha" / "secret.py")
    return "alpha/secret.py", target


@pytest.mark.parametrize("command", ["plan", "build"])
@pytest.mark.parametrize("make_link", [_absolute_link, _relative_link], ids=["absolute", "dotdot"])
def test_a_folder_link_leading_out_of_the_tree_is_refused_and_nothing_changes(
    project: Path,
    tmp_path: Path,
    command: str,
    make_link: Callable[[Path, Path], tuple[str, str]],
) -> None:
    copy = copy_project(project, tmp_path / "project")
    assert plan(copy)  # the copy's folders are new paths: let a good run learn them first
    outputs = (copy / ".buildprint", copy / "wheelhouse")
    before = snapshot(*outputs)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.py").write_text("SECRET = 1\n")
    link, target = make_link(copy / "src" / "alpha", outside)

    result = run_cli(copy, command, "--json")

    assert result.code == 2, f"exit {result.code}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    for part in (str(copy / "src" / "alpha"), repr(link), repr(target), "outside"):
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"
    after = snapshot(*outputs)
    assert after == before, sorted(set(after) ^ set(before))


def test_an_sdist_s_egg_info_is_part_of_its_source(project: Path, tmp_path: Path) -> None:
    """A different SOURCES.txt in an sdist is a different source: it changes the wheel."""
    copy = copy_project(project, tmp_path / "project")
    assert plan(copy)["gamma"]["action"] == "reuse"
    changed = {**GAMMA, "gamma.egg-info/SOURCES.txt": "PKG-INFO\ngamma/__init__.py\n"}
    make_sdist(copy / "dist", "gamma", "1.0", "setuptools", changed)
    again = plan(copy)["gamma"]
    assert again["action"] == "build"
    assert "source" in again["changed"]
