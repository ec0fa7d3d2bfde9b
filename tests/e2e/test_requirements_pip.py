"""End to end: requirements and indexes as pip reads them. The versions ``buildprint plan``
chooses are compared with real pip's (``pip install --dry-run --report`` on the same local
index, offline, ``--no-binary :all:`` since buildprint builds from sdists)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.cli import build, plan, run_cli, snapshot
from tests.support.indexes import make_sdist, make_wheel, sha256_of, write_pep503_tree
from tests.support.sdists import make_sdist as real_sdist

SETUPTOOLS_HERE = importlib.util.find_spec("setuptools") is not None


def pip_chooses(index: Path, requirements: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pip install --dry-run`` of ``requirements`` from ``index`` alone: no configuration,
    no variables, no network; metadata from the sdists (``--no-build-isolation``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    report = requirements.parent / "pip-report.json"
    report.unlink(missing_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--dry-run",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-binary",
            ":all:",
            "--report",
            str(report),
            "--index-url",
            index.resolve().as_uri(),
            "-r",
            str(requirements),
            *args,
        ],
        cwd=requirements.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def pip_versions(index: Path, requirements: Path, *args: str) -> dict[str, str]:
    done = pip_chooses(index, requirements, *args)
    assert done.returncode == 0, done.stderr
    data = json.loads((requirements.parent / "pip-report.json").read_text())
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in data["install"]}


def stored(project: Path) -> dict[str, bytes]:
    lock = project / "buildprint.lock"
    return {
        **snapshot(project / ".buildprint", project / "wheelhouse"),
        "lock": lock.read_bytes() if lock.exists() else b"",
    }


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """alpha 1.0, 1.1, 2.0; beta 1.0 (1.1 as a wheel only); six 1.15.0 and 1.16.0; epsilon
    and delta 1.0 (nothing should require them)."""
    folder = tmp_path / "files"
    for name, version in [
        ("alpha", "1.0"),
        ("alpha", "1.1"),
        ("alpha", "2.0"),
        ("beta", "1.0"),
        ("six", "1.15.0"),
        ("six", "1.16.0"),
        ("epsilon", "1.0"),
        ("delta", "1.0"),
    ]:
        make_sdist(folder, name, version)
    make_wheel(folder, "beta", "1.1")
    make_wheel(folder, "alpha", "1.1")
    return folder


@pytest.fixture
def index(tmp_path: Path, files: Path, backend_wheels: Path) -> Path:
    """A PEP 503 tree of the files and the build backends' wheels."""
    return write_pep503_tree(
        tmp_path / "repo", [*sorted(files.iterdir()), *sorted(backend_wheels.glob("*.whl"))]
    )


def new_project(root: Path, index: Path, toml: str = "") -> Path:
    root.mkdir(parents=True)
    (root / "buildprint.toml").write_text(f'[project]\nindex-url = "{index}"\n' + toml)
    return root


def test_constraints_merges_markers_and_wheel_only_releases_as_pip_reads_them(
    tmp_path: Path, index: Path
) -> None:
    project = new_project(tmp_path / "project", index)
    (project / "more").mkdir()
    (project / "more" / "pins.txt").write_text("six==1.16.0\n")
    (project / "constraints.txt").write_text("alpha<2\nepsilon==1.0\n")
    (project / "cli-constraints.txt").write_text("alpha!=1.1\n")
    requirements = project / "requirements.txt"
    requirements.write_text(
        "-c constraints.txt\n"
        "-r more/pins.txt\n"
        "alpha\n"
        "beta>=1\n"
        "six\n"
        'delta==1.0 ; python_version < "3"\n'
    )

    planned = plan(project, "-c", "cli-constraints.txt")

    chosen = {name: entry["version"] for name, entry in planned.items()}
    assert chosen == {"alpha": "1.0", "beta": "1.0", "six": "1.16.0"}
    assert "beta 1.0: newest with an sdist (1.1 has wheels only)" in planned["beta"]["reason"]
    if SETUPTOOLS_HERE:
        assert pip_versions(index, requirements, "-c", "cli-constraints.txt") == chosen
    # The table says so too, and `lock -c` takes constraints as plan does.
    table = run_cli(project, "plan", "-c", "cli-constraints.txt")
    assert table.code == 0, table.stderr
    assert "newest with an sdist" in table.stdout
    locked = run_cli(project, "lock", "--constraint", "cli-constraints.txt")
    assert locked.code == 0, locked.stderr
    assert "alpha 1.0:" in locked.stdout
    unconstrained = run_cli(project, "lock")
    assert "alpha 1.1:" in unconstrained.stdout


def test_pip_compile_output_with_hashes_and_a_tampered_hash(
    tmp_path: Path, index: Path, files: Path
) -> None:
    project = new_project(tmp_path / "project", index)

    def hashes(*names: str) -> str:
        return " \\\n".join(f"    --hash=sha256:{sha256_of(files / n)}" for n in names)

    (project / "constraints.txt").write_text("six>=1.16\n")
    requirements = project / "requirements.txt"
    text = textwrap.dedent(
        """\
        #
        # This file is autogenerated by pip-compile with Python 3.11
        # by the following command:
        #
        #    pip-compile --generate-hashes requirements.in
        #
        -c constraints.txt
        alpha==1.1 \\
        {alpha}
            # via -r requirements.in
        six==1.16.0 \\
        {six}
            # via -r requirements.in
        """
    )
    requirements.write_text(
        text.format(
            alpha=hashes("alpha-1.1-py3-none-any.whl", "alpha-1.1.tar.gz"),
            six=hashes("six-1.16.0.tar.gz"),
        )
    )

    chosen = {name: entry["version"] for name, entry in plan(project).items()}
    assert chosen == {"alpha": "1.1", "six": "1.16.0"}
    if SETUPTOOLS_HERE:
        assert pip_versions(index, requirements) == chosen

    # six's sdist is not the one hashed: refused at six's line, naming both digests.
    before = stored(project)
    requirements.write_text(
        text.format(
            alpha=hashes("alpha-1.1-py3-none-any.whl", "alpha-1.1.tar.gz"),
            six=hashes("six-1.15.0.tar.gz"),
        )
    )
    refused = run_cli(project, "build")
    assert refused.code == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    line = requirements.read_text().splitlines().index("six==1.16.0 \\") + 1
    assert f"requirements.txt:{line}: requirement six==1.16.0: six-1.16.0.tar.gz has sha256:" in (
        refused.stderr
    )
    assert sha256_of(files / "six-1.16.0.tar.gz") in refused.stderr
    assert sha256_of(files / "six-1.15.0.tar.gz") in refused.stderr
    assert stored(project) == before
    if SETUPTOOLS_HERE:
        pip = pip_chooses(index, requirements)
        assert pip.returncode != 0 and "DO NOT MATCH THE HASHES" in pip.stderr


def test_extra_indexes_from_the_settings_and_the_command_line(
    tmp_path: Path, backend_wheels: Path
) -> None:
    main = write_pep503_tree(
        tmp_path / "main", [real_sdist(tmp_path / "m", "gamma", "1.0", "setuptools")]
    )
    extra = write_pep503_tree(
        tmp_path / "extra", [real_sdist(tmp_path / "e", "gamma", "2.0", "setuptools")]
    )
    other = write_pep503_tree(
        tmp_path / "other", [real_sdist(tmp_path / "o", "gamma", "3.0", "setuptools")]
    )
    project = new_project(
        tmp_path / "project",
        main,
        f'extra-index-url = [\n  "{extra}",\n]\nfind-links = ["{backend_wheels}"]\n',
    )
    (project / "requirements.txt").write_text("gamma>=1\n")

    assert plan(project)["gamma"]["version"] == "2.0"  # the best version of every index
    assert plan(project, "--extra-index-url", str(other))["gamma"]["version"] == "3.0"

    (project / "requirements.txt").write_text("gamma==2.0\n")
    assert build(project)["gamma"]["action"] == "built"
    first = run_cli(project, "plan", "--json").json()["snapshot"]
    assert first.endswith("kept"), first
    assert run_cli(project, "plan", "--json").json()["snapshot"].startswith("used")
    # Another extra index is another key: the kept plan does not answer for it.
    again = run_cli(project, "plan", "--json", "--extra-index-url", str(other)).json()
    assert again["snapshot"].startswith("full plan"), again["snapshot"]
    assert again["packages"][0]["action"] == "reuse"


def _other_interpreter() -> tuple[str, str] | None:
    """Another CPython (path, "X.Y") that runs here, of another minor version."""
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = [shutil.which(f"python3.{minor}") for minor in range(14, 9, -1)]
    versions = Path(sys.base_prefix).parent  # a pyenv-style folder of installs
    found += [str(p) for p in sorted(versions.glob("3.*/bin/python3"))]
    for python in filter(None, found):
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        version = done.stdout.strip()
        # 3.10 and newer: what the fixture backend (setuptools) still supports.
        minor = int(version.split(".")[1]) if version.startswith("3.") else 0
        if done.returncode == 0 and version != ours and minor >= 10:
            return python, version
    return None


def test_markers_are_evaluated_for_the_build_interpreter(tmp_path: Path, index: Path) -> None:
    other = _other_interpreter()
    if other is None:
        pytest.skip("no other CPython of another minor version runs here")
    python, version = other
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    project = new_project(tmp_path / "project", index, f'python = "{python}"\n')
    (project / "requirements.txt").write_text(
        f'alpha==1.0 ; python_version == "{version}"\nbeta==1.0 ; python_version == "{ours}"\n'
    )
    assert set(plan(project)) == {"alpha"}
    (project / "buildprint.toml").write_text(f'[project]\nindex-url = "{index}"\n')
    assert set(plan(project)) == {"beta"}  # the interpreter running buildprint


@pytest.mark.slow
def test_constraints_narrow_install_dependencies_and_their_locked_versions(
    tmp_path: Path, backend_wheels: Path
) -> None:
    sdists = tmp_path / "sdists"
    app = (
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "app"\nversion = "1.0"\ndependencies = ["lib>=1"]\n'
        '[tool.setuptools]\npackages = ["app"]\n'
    )
    real_sdist(sdists, "app", "1.0", "setuptools", {"pyproject.toml": app})
    real_sdist(sdists, "lib", "1.0", "setuptools")
    real_sdist(sdists, "lib", "2.0", "setuptools")
    project = new_project(tmp_path / "project", backend_wheels, f'find-links = ["{sdists}"]\n')
    (project / "requirements.txt").write_text("app==1.0\n")
    (project / "constraints.txt").write_text("lib<2\n")

    assert plan(project, "--with-deps")["lib"]["version"] == "2.0"  # locked: lib 2.0
    narrowed = plan(project, "--with-deps", "-c", "constraints.txt")
    assert narrowed["lib"]["version"] == "1.0"  # the constraint wins over the lock's choice
