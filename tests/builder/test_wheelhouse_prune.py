"""The wheelhouse keeps what the requirements name: after a run, the other versions and build
tags of the packages it placed are removed (pages and memo with them), unless
``wheelhouse-keep = "all"``; packages the run did not touch, and failed ones, keep theirs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from buildprint import fsio
from buildprint.builder.wheelhouse import Wheelhouse
from tests.support.cli import (
    PackageSpec,
    build,
    copy_project,
    run_cli,
    write_project,
    write_sdist,
)


def _place(house: Wheelhouse, tmp_path: Path, filename: str) -> None:
    source = tmp_path / "source"
    source.write_bytes(f"bytes of {filename}".encode())
    house.add(source, filename, fsio.copy_file_hashing(source, tmp_path / "copy"))


def _wheels(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.whl"))


def _links(folder: Path, project: str) -> list[str]:
    page = (folder / "simple" / project / "index.html").read_text()
    return sorted(line.split('">')[1].split("<")[0] for line in page.splitlines() if "<a " in line)


def test_prune_removes_other_versions_and_build_tags_of_the_projects_placed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "wheelhouse"
    house = Wheelhouse(root)
    names = [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.1-py3-none-any.whl",  # the version placed now, but another build tag
        "alpha-1.1-1-py3-none-any.whl",  # placed now
        "alpha-1.1-1-cp311-cp311-linux_x86_64.whl",  # the same release for other tags
        "my_pkg-0.9-py3-none-any.whl",
        "my_pkg-1.0-py3-none-any.whl",  # placed now, named "My.Pkg" by the run
        "beta-0.9-py3-none-any.whl",  # not in the run: left alone
        "beta-1.0-py3-none-any.whl",
    ]
    for name in names:
        _place(house, tmp_path, name)
    house.flush()
    (root / "notes.txt").write_text("not a wheel")
    beta_page = (root / "simple" / "beta" / "index.html").read_bytes()

    removed = house.prune(
        {"alpha": {"alpha-1.1-1-py3-none-any.whl"}, "My.Pkg": {"my_pkg-1.0-py3-none-any.whl"}}
    )

    assert sorted(removed) == [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.1-py3-none-any.whl",
        "my_pkg-0.9-py3-none-any.whl",
    ]
    assert _wheels(root) == [
        "alpha-1.1-1-cp311-cp311-linux_x86_64.whl",
        "alpha-1.1-1-py3-none-any.whl",
        "beta-0.9-py3-none-any.whl",
        "beta-1.0-py3-none-any.whl",
        "my_pkg-1.0-py3-none-any.whl",
    ]
    assert (root / "notes.txt").exists()
    assert _links(root, "alpha") == [
        "alpha-1.1-1-cp311-cp311-linux_x86_64.whl",
        "alpha-1.1-1-py3-none-any.whl",
    ]
    assert _links(root, "my-pkg") == ["my_pkg-1.0-py3-none-any.whl"]
    assert (root / "simple" / "beta" / "index.html").read_bytes() == beta_page
    memo = json.loads((root / "simple" / ".placed.json").read_text())
    assert sorted(memo) == _wheels(root)
    # Nothing superseded any more: a second prune removes nothing.
    assert Wheelhouse(root).prune({"alpha": {"alpha-1.1-1-py3-none-any.whl"}}) == []


def test_prune_forgets_wheels_removed_by_hand(tmp_path: Path) -> None:
    root = tmp_path / "wheelhouse"
    house = Wheelhouse(root)
    for name in ("alpha-1.0-py3-none-any.whl", "alpha-1.0-py2-none-any.whl"):
        _place(house, tmp_path, name)
    house.flush()
    (root / "alpha-1.0-py2-none-any.whl").unlink()
    assert Wheelhouse(root).prune({"alpha": {"alpha-1.0-py3-none-any.whl"}}) == []
    memo = json.loads((root / "simple" / ".placed.json").read_text())
    assert sorted(memo) == ["alpha-1.0-py3-none-any.whl"]


# -- through the CLI -------------------------------------------------------------------------

ALPHA, BETA = PackageSpec("alpha"), PackageSpec("beta")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = write_project(
        tmp_path_factory.mktemp("prune") / "project", backend_wheels, [ALPHA, BETA]
    )
    assert {e["action"] for e in build(root).values()} == {"built"}
    return root


def _bump_alpha(project: Path, version: str, **changes: object) -> None:
    """alpha at ``version`` (a new sdist, its settings and the requirement pointing at it)."""
    sdist = write_sdist(project, replace(ALPHA, version=version, **changes))  # type: ignore[arg-type]
    settings = project / "packages" / "alpha.toml"
    text = settings.read_text()
    start = text.index("dist/") + len("dist/")
    settings.write_text(text[:start] + sdist.name + text[text.index('"', start) :])
    requirements = project / "requirements.txt"
    lines = requirements.read_text().splitlines()
    pinned = [f"alpha=={version}" if line.startswith("alpha==") else line for line in lines]
    requirements.write_text("\n".join(pinned) + "\n")


def test_a_new_version_replaces_the_old_wheel_and_its_index_entry(
    built: Path, tmp_path: Path
) -> None:
    project = copy_project(built, tmp_path / "project")
    house = project / "wheelhouse"
    # A wheel of the user's own, of a package buildprint does not build: never touched.
    (house / "zeta-1.0-py3-none-any.whl").write_bytes(
        (house / "beta-1.0-py3-none-any.whl").read_bytes()
    )
    _bump_alpha(project, "1.1")
    done = build(project)
    assert (done["alpha"]["action"], done["beta"]["action"]) == ("built", "reused")
    assert _wheels(house) == [
        "alpha-1.1-py3-none-any.whl",
        "beta-1.0-py3-none-any.whl",
        "zeta-1.0-py3-none-any.whl",
    ]
    assert _links(house, "alpha") == ["alpha-1.1-py3-none-any.whl"]
    memo = json.loads((house / "simple" / ".placed.json").read_text())
    assert "alpha-1.0-py3-none-any.whl" not in memo and "alpha-1.1-py3-none-any.whl" in memo
    # pip, given the wheelhouse's index, finds 1.1 and no longer 1.0.
    index = (house / "simple").as_uri()
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-cache-dir", "--no-deps", "--index-url", index]  # fmt: skip
    new = subprocess.run(
        [*pip, "--target", str(tmp_path / "a"), "alpha"], capture_output=True, check=False
    )
    assert new.returncode == 0, new.stderr
    assert list((tmp_path / "a").glob("alpha-1.1.dist-info"))
    old = subprocess.run(
        [*pip, "--target", str(tmp_path / "b"), "alpha==1.0"], capture_output=True, check=False
    )
    assert old.returncode != 0

    # A run that builds beta only leaves alpha's wheels as they are, whatever they are.
    (house / "alpha-0.1-py3-none-any.whl").write_bytes(b"an old alpha, not this run's")
    assert build(project, "beta==1.0")["beta"]["action"] == "reused"
    assert "alpha-0.1-py3-none-any.whl" in _wheels(house)


def test_a_failed_build_keeps_the_wheel_it_would_have_replaced(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    _bump_alpha(project, "1.1", files={"setup.py": "raise SystemExit('this build fails')\n"})
    failed = run_cli(project, "build", "--json")
    assert failed.code == 1
    assert failed.packages()["alpha"]["action"] == "failed"
    assert _wheels(project / "wheelhouse") == [
        "alpha-1.0-py3-none-any.whl",
        "beta-1.0-py3-none-any.whl",
    ]


def test_wheelhouse_keep_all_keeps_every_version(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    toml = project / "buildprint.toml"
    toml.write_text(toml.read_text() + 'wheelhouse-keep = "all"\n')
    _bump_alpha(project, "1.1")
    assert build(project)["alpha"]["action"] == "built"
    assert _wheels(project / "wheelhouse") == [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.1-py3-none-any.whl",
        "beta-1.0-py3-none-any.whl",
    ]
    assert _links(project / "wheelhouse", "alpha") == [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.1-py3-none-any.whl",
    ]


def test_a_bad_wheelhouse_keep_is_named_at_its_line(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    toml = project / "buildprint.toml"
    lines = toml.read_text().splitlines()
    toml.write_text(toml.read_text() + 'wheelhouse-keep = "latest"\n')
    before = _wheels(project / "wheelhouse")
    _bump_alpha(project, "1.1")
    result = run_cli(project, "build")
    assert result.code == 2
    assert f"{toml}:{len(lines) + 1}:" in result.stderr and "wheelhouse-keep" in result.stderr
    assert _wheels(project / "wheelhouse") == before
