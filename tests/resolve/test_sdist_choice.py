"""Which sdist a requirement gets: the newest with an sdist when newer releases are wheels
only (said in a note), or an error naming the requirement's line; ``--hash`` values checked
against the archive; constraints checked against a version the index did not choose."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from buildprint.errors import InputError
from buildprint.project.project import Project, combine_requirements, read_requirements
from buildprint.project.settings import SourceSpec
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.sources import SourceResolver
from buildprint.store.memo import Memo
from tests.support.indexes import make_sdist, make_wheel, serve_index, sha256_of, write_pep503_tree


def resolver(root: Path, index: PackageIndex) -> SourceResolver:
    return SourceResolver(root, index, Memo(root / ".buildprint" / "memo" / "inputs.json"))


def requirement_of(root: Path, text: str) -> tuple[Path, Requirement]:
    """The one requirement ``text`` (a requirements file's text) makes, and the file."""
    file = root / "requirements.txt"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    constraints: list[Requirement] = []
    found = combine_requirements(read_requirements(file, None, constraints), constraints)
    assert len(found) == 1
    return file, found[0]


@pytest.fixture
def certifi_like(tmp_path: Path) -> PackageIndex:
    """pkg 1.0 and 1.1 with sdists; 1.2 and 2.0 wheels only; 1.3's sdist yanked."""
    files = tmp_path / "files"
    dists = [
        make_sdist(files, "pkg", "1.0"),
        make_sdist(files, "pkg", "1.1"),
        make_wheel(files, "pkg", "1.1"),
        make_wheel(files, "pkg", "1.2"),
        make_wheel(files, "pkg", "2.0"),
        make_wheel(files, "pkg", "1.3"),
    ]
    simple = write_pep503_tree(tmp_path / "repo", dists)
    yanked = make_sdist(files, "pkg", "1.3")
    page = simple / "pkg" / "index.html"
    link = f'<a href="{yanked.resolve().as_uri()}" data-yanked="">{yanked.name}</a>\n'
    page.write_text(page.read_text().replace("</body>", link + "</body>"))
    return PackageIndex(str(simple))


def test_the_newest_version_with_an_sdist_is_chosen_and_the_plan_note_says_why(
    tmp_path: Path, certifi_like: PackageIndex
) -> None:
    project = tmp_path / "project"
    file, requirement = requirement_of(project, "pkg>=1,<2\n")
    source = resolver(project, certifi_like).resolve(requirement, None, file)
    assert source.version == "1.1"
    assert source.note == (
        "pkg 1.1: newest with an sdist (1.2 has wheels only; 1.3 has only a yanked sdist)"
    )
    _, upto = requirement_of(project, "pkg<1.2\n")
    plain = resolver(project, certifi_like).resolve(upto, None, file)
    assert (plain.version, plain.note) == ("1.1", None)  # nothing newer was skipped


def test_no_matching_version_with_an_sdist_fails_at_the_requirements_line(
    tmp_path: Path, certifi_like: PackageIndex
) -> None:
    project = tmp_path / "project"
    file, requirement = requirement_of(project, "# what to build\npkg>=1.2\n")
    with pytest.raises(InputError) as refused:
        resolver(project, certifi_like).resolve(requirement, None, file)
    assert (refused.value.file, refused.value.line) == (str(file), 2)
    message = refused.value.message
    assert "no version of pkg that pkg>=1.2 allows has an sdist" in message
    assert "(2.0, 1.3, 1.2: wheels only)" in message
    assert "the newest version with an sdist is 1.1" in message


def test_a_package_with_no_sdist_at_all_says_so(tmp_path: Path) -> None:
    simple = write_pep503_tree(tmp_path / "repo", [make_wheel(tmp_path / "files", "pkg", "1.0")])
    project = tmp_path / "project"
    file, requirement = requirement_of(project, "pkg\n")
    with pytest.raises(InputError, match="the index has no sdist of it at all") as refused:
        resolver(project, PackageIndex(str(simple))).resolve(requirement, None, file)
    assert refused.value.line == 1


# -- --hash ---------------------------------------------------------------------------------


def test_the_archive_must_have_one_of_the_requirements_hashes(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    wheel = make_wheel(tmp_path / "files", "alpha", "1.0")
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", [sdist, wheel])))
    project = tmp_path / "project"
    good = (
        f"alpha==1.0 \\\n  --hash=sha256:{sha256_of(wheel)} \\\n"
        f"  --hash=sha256:{sha256_of(sdist)}\n"
    )
    file, requirement = requirement_of(project, good)
    assert resolver(project, index).resolve(requirement, None, file).raw_sha256 == sha256_of(sdist)

    _, wrong = requirement_of(project, f"# pinned\nalpha==1.0 --hash=sha256:{sha256_of(wheel)}\n")
    with pytest.raises(InputError) as refused:
        resolver(project, index).resolve(wrong, None, file)
    assert (refused.value.file, refused.value.line) == (str(file), 2)
    assert f"alpha-1.0.tar.gz has sha256:{sha256_of(sdist)}" in refused.value.message
    assert f"none of the --hash values (sha256:{sha256_of(wheel)})" in refused.value.message


def test_a_published_sha256_is_checked_before_anything_is_downloaded(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    project = tmp_path / "project"
    file, requirement = requirement_of(project, f"alpha==1.0 --hash=sha256:{'0' * 64}\n")
    with serve_index([sdist]) as server:
        index = PackageIndex(server.url, cache_dir=tmp_path / "downloads")
        with pytest.raises(InputError, match=sha256_of(sdist)):
            resolver(project, index).resolve(requirement, None, file)
        assert server.hits("/files/") == 0
    assert not (tmp_path / "downloads").exists()


def test_hashes_apply_to_url_and_path_sources_but_not_folders(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "project" / "dist", "alpha", "1.0")
    project = tmp_path / "project"
    index = PackageIndex(str(tmp_path / "empty-index"))
    settings = project / "packages" / "alpha.toml"
    _, requirement = requirement_of(project, f"alpha==1.0 --hash=sha256:{'1' * 64}\n")
    path_spec = SourceSpec(path="dist/alpha-1.0.tar.gz")
    with pytest.raises(InputError, match=f"has sha256:{sha256_of(sdist)}") as refused:
        resolver(project, index).resolve(requirement, path_spec, settings)
    assert refused.value.line == 1
    url_spec = SourceSpec(url="https://u:secret@host.example/alpha-1.0.tar.gz", sha256="2" * 64)
    with pytest.raises(InputError) as refused:
        resolver(project, index).resolve(requirement, url_spec, settings)
    assert "secret" not in str(refused.value)
    assert f"has sha256:{'2' * 64}" in refused.value.message
    folder = project / "src" / "alpha"
    folder.mkdir(parents=True)
    (folder / "PKG-INFO").write_text("Name: alpha\nVersion: 1.0\n")
    folder_spec = SourceSpec(path="src/alpha")
    with pytest.raises(InputError, match="is not an archive"):
        resolver(project, index).resolve(requirement, folder_spec, settings)
    _, plain = requirement_of(project, f"alpha==1.0 --hash=sha256:{sha256_of(sdist)}\n")
    assert resolver(project, index).resolve(plain, path_spec, settings).version == "1.0"


def test_check_hashes_resolves_only_the_requirements_with_hashes(tmp_path: Path) -> None:
    project = tmp_path / "project"
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", [sdist])))
    (project / "requirements.txt").parent.mkdir(parents=True)
    (project / "requirements.txt").write_text(f"missing==9\nalpha==1.0 --hash=sha256:{'3' * 64}\n")
    requirements = Project.load(project).requirements()
    with pytest.raises(InputError) as refused:  # 'missing' would fail too, but is not asked
        resolver(project, index).check_hashes(requirements, Project.load(project))
    assert refused.value.line == 2 and "--hash" in refused.value.message


# -- constraints on a version the index did not choose ------------------------------------------


def test_a_path_sources_version_must_satisfy_the_constraints(tmp_path: Path) -> None:
    project = tmp_path / "project"
    make_sdist(project / "dist", "alpha", "1.0")
    (project / "c.txt").parent.mkdir(parents=True, exist_ok=True)
    (project / "c.txt").write_text("alpha<1.0\n")
    file, requirement = requirement_of(project, "-c c.txt\nalpha\n")
    spec = SourceSpec(path="dist/alpha-1.0.tar.gz")
    index = PackageIndex(str(tmp_path / "empty-index"))
    with pytest.raises(InputError) as refused:
        resolver(project, index).resolve(requirement, spec, project / "packages" / "alpha.toml")
    assert (refused.value.file, refused.value.line) == (str(project / "c.txt"), 1)
    assert "alpha 1.0 (dist/alpha-1.0.tar.gz, required at" in refused.value.message
    assert f"{file}:2) is not a version it allows" in refused.value.message
