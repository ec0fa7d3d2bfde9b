"""End to end: PEP 508 direct references (``pkg @ URL``) are the package's source, never the
index's newer version; refused forms exit 2 at their file and line, touching nothing."""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from buildprint.builder.wheel import read_manifest
from tests.support.cli import build, copy_project, plan, run_cli, snapshot
from tests.support.git import git
from tests.support.indexes import serve_index, sha256_of
from tests.support.sdists import make_sdist


def new_project(root: Path, wheels: Path, requirements: str) -> Path:
    """A project whose find-links offer pkg 3.0: what a plain ``pkg`` would build."""
    make_sdist(root / "newer", "pkg", "3.0", "setuptools")
    project = root / "project"
    project.mkdir(parents=True)
    (project / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{wheels}"\nfind-links = ["{root / "newer"}"]\n'
    )
    (project / "requirements.txt").write_text(requirements)
    return project


def recorded_commit(wheel: Path) -> object:
    """The commit the manifest embedded in ``wheel`` records for its source."""
    embedded = read_manifest(wheel)
    assert embedded is not None
    source = json.loads(embedded)["recorded"]["source"]
    return source.get("commit")


def wheel_value(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read("pkg/__init__.py").decode()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """pkg built from a file:// sdist 2.0 (with its sha256) while the index offers 3.0."""
    root = tmp_path_factory.mktemp("direct")
    sdist = make_sdist(root / "elsewhere", "pkg", "2.0", "setuptools")
    project = new_project(
        root, backend_wheels, f"# what we build\npkg @ {sdist.as_uri()}#sha256={sha256_of(sdist)}\n"
    )
    assert plan(project, "pkg")["pkg"]["version"] == "3.0"  # what the index would give
    entry = build(project)["pkg"]
    assert (entry["action"], entry["version"]) == ("built", "2.0")
    return project


def test_a_file_sdist_reference_builds_that_version_not_the_index_one(built: Path) -> None:
    wheels = sorted(p.name for p in (built / "wheelhouse").glob("*.whl"))
    assert wheels == ["pkg-2.0-py3-none-any.whl"]
    assert plan(built)["pkg"]["action"] == "reuse"
    shown = run_cli(built, "show", "pkg", "--json")
    assert shown.code == 0, shown.stderr
    assert shown.json()["recorded"]["source"]["raw_sha256"] == sha256_of(
        built.parent / "elsewhere" / "pkg-2.0.tar.gz"
    )


def test_a_served_archive_with_its_sha256_is_the_source(
    tmp_path: Path, backend_wheels: Path
) -> None:
    sdist = make_sdist(tmp_path / "files", "pkg", "2.0", "setuptools")
    with serve_index([sdist]) as server:
        url = f"{server.url.removesuffix('/simple')}/files/{sdist.name}"
        project = new_project(tmp_path, backend_wheels, f"pkg @ {url}#sha256={sha256_of(sdist)}\n")
        entry = plan(project)["pkg"]
    assert (entry["action"], entry["version"]) == ("build", "2.0")
    assert server.hits("/files/") == 1


@pytest.mark.slow  # builds twice
def test_a_git_branch_is_built_at_its_commit_and_followed_by_the_next_plan(
    tmp_path: Path, backend_wheels: Path
) -> None:
    repo = tmp_path / "repo"
    source = make_sdist(tmp_path / "seed", "pkg", "2.0", "setuptools")
    repo.mkdir()
    subprocess.run(["tar", "xzf", str(source), "-C", str(repo), "--strip-components=1"], check=True)
    (repo / "PKG-INFO").unlink()  # a repository has no PKG-INFO: pyproject.toml says 2.0
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    first = git(repo, "rev-parse", "HEAD")
    project = new_project(tmp_path, backend_wheels, f"pkg @ git+{repo.as_uri()}@main\n")

    entry = build(project)["pkg"]
    assert (entry["action"], entry["version"]) == ("built", "2.0")
    wheel = project / "wheelhouse" / "pkg-2.0-py3-none-any.whl"
    assert recorded_commit(wheel) == first
    assert (project / ".buildprint" / "sources" / "git" / first).is_dir()

    (repo / "pkg" / "__init__.py").write_text('"""pkg."""\n\n__version__ = "2.0"\nNEW = 1\n')
    git(repo, "commit", "-q", "-am", "second")
    second = git(repo, "rev-parse", "HEAD")

    again = plan(project)["pkg"]
    assert again["action"] == "build" and "source" in again["changed"]
    rebuilt = build(project)["pkg"]
    assert rebuilt["action"] == "built" and rebuilt["signature"] != entry["signature"]
    assert recorded_commit(wheel) == second
    assert "NEW = 1" in wheel_value(wheel)
    # Pinned to the first commit, the first build is found again.
    (project / "requirements.txt").write_text(f"pkg @ git+{repo.as_uri()}@{first}\n")
    assert plan(project)["pkg"]["action"] == "reuse"


# -- bad input ------------------------------------------------------------------------------


def svn(project: Path, sdist: Path) -> tuple[str, list[str]]:
    return "pkg @ svn+https://svn.example/pkg/trunk", ["svn references are not supported"]


def git_without_ref(project: Path, sdist: Path) -> tuple[str, list[str]]:
    return "pkg @ git+https://git.example/pkg.git", ["tag, branch or full commit"]


def https_without_sha256(project: Path, sdist: Path) -> tuple[str, list[str]]:
    return "pkg @ https://files.example/pkg-2.0.tar.gz", ["#sha256="]


def wheel_url(project: Path, sdist: Path) -> tuple[str, list[str]]:
    return (
        f"pkg @ https://files.example/pkg-2.0-py3-none-any.whl#sha256={'a' * 64}",
        ["is a wheel"],
    )


def malformed(project: Path, sdist: Path) -> tuple[str, list[str]]:
    return "pkg @ https://files.example:http/pkg-2.0.tar.gz", ["malformed URL"]


def sha256_mismatch(project: Path, sdist: Path) -> tuple[str, list[str]]:
    return f"pkg @ {sdist.as_uri()}#sha256={'0' * 64}", ["does not match", "0" * 64]


def missing_branch(project: Path, sdist: Path) -> tuple[str, list[str]]:
    repo = project.parent / "empty-repo"
    if not repo.exists():
        repo.mkdir()
        git(repo, "init", "-q", "-b", "main")
        git(repo, "commit", "-q", "--allow-empty", "-m", "nothing")
    return f"pkg @ git+{repo.as_uri()}@no-such-branch", ["no branch or tag 'no-such-branch'"]


def also_in_settings(project: Path, sdist: Path) -> tuple[str, list[str]]:
    (project / "packages").mkdir(exist_ok=True)
    (project / "packages" / "pkg.toml").write_text('source = { path = "dist/pkg-2.0.tar.gz" }\n')
    return f"pkg @ {sdist.as_uri()}", ["packages/pkg.toml", "one place"]


#: A breakage: (the project, the good sdist) -> (requirement line, what the message names).
Case = Callable[[Path, Path], tuple[str, list[str]]]

CASES: list[Case] = [
    svn,
    git_without_ref,
    https_without_sha256,
    wheel_url,
    malformed,
    sha256_mismatch,
    missing_branch,
    also_in_settings,
]


@pytest.mark.parametrize("command", ["plan", "build"])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_a_bad_direct_reference_exits_2_at_its_line_and_changes_nothing(
    built: Path, tmp_path: Path, case: Case, command: str
) -> None:
    project = copy_project(built, tmp_path / "project")
    assert plan(project)["pkg"]["action"] == "reuse"
    text, expected = case(project, built.parent / "elsewhere" / "pkg-2.0.tar.gz")
    (project / "requirements.txt").write_text(f"# what we build\n\n{text}\n")
    outputs = (project / ".buildprint", project / "wheelhouse")
    before = snapshot(*outputs)

    result = run_cli(project, command, "--json")

    assert result.code == 2, f"exit {result.code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr
    for part in ["requirements.txt:3", *expected]:
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"
    after = snapshot(*outputs)
    assert sorted(after) == sorted(before), "files appeared or vanished in the store/wheelhouse"
    assert after == before, [k for k in before if after.get(k) != before[k]]


def test_a_bad_reference_on_the_command_line_names_the_argument(built: Path) -> None:
    outputs = (built / ".buildprint", built / "wheelhouse")
    before = snapshot(*outputs)
    text = "pkg @ hg+https://hg.example/pkg@v1"
    result = run_cli(built, "build", text)
    assert result.code == 2 and f"requirement argument {text!r}" in result.stderr
    assert "hg references are not supported" in result.stderr
    assert snapshot(*outputs) == before
