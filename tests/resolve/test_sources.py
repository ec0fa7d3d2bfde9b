"""SourceResolver over real sdists, local folder indexes, source archives and source folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from buildprint.errors import InputError
from buildprint.inputs.archive import archive_digest
from buildprint.inputs.records import SCHEME as SOURCE_SCHEME
from buildprint.inputs.tree import tree_digest
from buildprint.project.settings import SourceSpec
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.sources import SourceResolver
from buildprint.store.memo import Memo
from tests.support.archives import SDIST, make_archive, make_tree, set_old_mtimes
from tests.support.indexes import make_sdist, serve_index, sha256_of, write_pep503_tree

#: Files of the SDIST fixture the tree memo holds (regular files, not links or folders).
REGULAR = sum(1 for item in SDIST if item.kind == "file")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "packages").mkdir(parents=True)
    return root


@pytest.fixture
def settings_file(project: Path) -> Path:
    return project / "packages" / "alpha.toml"


def memo_in(project: Path) -> Memo:
    """The input memo where the engine keeps it: ``<store>/memo/inputs.json``."""
    return Memo(project / ".buildprint" / "memo" / "inputs.json")


def resolver(project: Path, index: PackageIndex | None = None) -> SourceResolver:
    """A fresh resolver (as each run makes one) over the memo in the project's store."""
    return SourceResolver(project, index or PackageIndex(None), memo_in(project))


# -- sdists from an index ------------------------------------------------------------------


def test_sdist_from_a_local_folder_index_is_digested_and_its_sha256_checked(
    project: Path, tmp_path: Path, settings_file: Path
) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    make_sdist(tmp_path / "files", "alpha", "0.9")
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", [sdist])))

    source = resolver(project, index).resolve(Requirement("alpha==1.0"), None, settings_file)

    expected = archive_digest(sdist)
    assert (source.name, source.version) == ("alpha", "1.0")
    assert (source.digest, source.files, source.size) == (
        expected.digest,
        expected.files,
        expected.size,
    )
    assert source.raw_sha256 == sha256_of(sdist)
    assert source.dist is not None and source.dist.filename == "alpha-1.0.tar.gz"
    assert source.location == sdist.resolve().as_uri()
    assert source.local is None
    assert resolver(project, index).fetch(source) == sdist.resolve()

    # The index publishes a sha256; a file that no longer has it is refused.
    sdist.write_bytes(sdist.read_bytes() + b"\0")
    with pytest.raises(InputError, match="sha256 mismatch") as refused:
        resolver(project, index).resolve(Requirement("alpha==1.0"), None, settings_file)
    assert sha256_of(sdist) in refused.value.message


def test_unpinned_requirement_takes_the_newest_matching_version(
    project: Path, tmp_path: Path, settings_file: Path
) -> None:
    files = [make_sdist(tmp_path / "files", "alpha", v) for v in ("1.0", "1.5", "2.0")]
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", files)))
    source = resolver(project, index).resolve(Requirement("alpha<2"), None, settings_file)
    assert source.version == "1.5"
    assert source.raw_sha256 == sha256_of(files[1])


def test_index_digest_is_memoized_by_the_published_sha256(
    project: Path, tmp_path: Path, settings_file: Path
) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", [sdist])))
    first = resolver(project, index)
    resolved = first.resolve(Requirement("alpha==1.0"), None, settings_file)
    first.memo.save()

    # The next run takes the digest from the memo: it does not open the archive at all
    # (fetching it, for a build, is when it is needed again).
    sdist.unlink()
    later = resolver(project, index)
    assert later.resolve(Requirement("alpha==1.0"), None, settings_file) == resolved
    with pytest.raises(InputError, match="missing on disk"):
        later.fetch(resolved)


# -- source archives and folders ({ path = ... }) -----------------------------------------


def test_path_source_archive_is_digested_in_place(project: Path, settings_file: Path) -> None:
    (project / "vendor").mkdir()
    archive = make_archive(project / "vendor" / "alpha-1.0.tar.gz", SDIST, top="alpha-1.0")
    spec = SourceSpec(path="vendor/alpha-1.0.tar.gz")

    source = resolver(project).resolve(Requirement("alpha"), spec, settings_file)

    expected = archive_digest(archive)
    assert source.version == "1.0"  # from the file name
    assert (source.digest, source.files, source.size) == (
        expected.digest,
        expected.files,
        expected.size,
    )
    assert source.raw_sha256 == sha256_of(archive)
    assert source.location == "vendor/alpha-1.0.tar.gz"  # project-relative
    assert source.local == project / "vendor" / "alpha-1.0.tar.gz"
    assert source.dist is None
    assert resolver(project).fetch(source) == source.local

    # Memoized by the file's state: new content is a new digest.
    make_archive(archive, [*SDIST[:-1]], top="alpha-1.0")
    changed = resolver(project).resolve(Requirement("alpha"), spec, settings_file)
    assert changed.digest == archive_digest(archive).digest != source.digest


def test_path_source_outside_the_project_is_located_by_its_path(
    project: Path, tmp_path: Path, settings_file: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    archive = make_archive(tmp_path / "elsewhere" / "alpha-2.0.zip", SDIST, top="alpha-2.0")
    spec = SourceSpec(path=str(archive))
    source = resolver(project).resolve(Requirement("alpha"), spec, settings_file)
    assert (source.version, source.location) == ("2.0", str(archive))


@pytest.fixture
def folder(project: Path) -> Path:
    root = make_tree(project / "src" / "alpha", SDIST)
    set_old_mtimes(root)  # older than the racy window, so the tree memo keeps every file
    return root


def test_folder_source_is_digested_as_a_tree(
    project: Path, folder: Path, settings_file: Path
) -> None:
    spec = SourceSpec(path="src/alpha")
    source = resolver(project).resolve(Requirement("alpha==1.0"), spec, settings_file)
    expected = tree_digest(folder)
    assert (source.digest, source.files, source.size) == (
        expected.digest,
        expected.files,
        expected.size,
    )
    assert source.raw_sha256 is None
    assert (source.location, source.local) == ("src/alpha", folder)


def test_unchanged_folder_is_not_read_again_and_a_changed_file_is(
    project: Path, folder: Path, settings_file: Path
) -> None:
    spec, requirement = SourceSpec(path="src/alpha"), Requirement("alpha==1.0")
    first = resolver(project)
    cold = first.resolve(requirement, spec, settings_file)
    assert (first.tree_memo(folder).hits, first.tree_memo(folder).reads) == (0, REGULAR)
    # Nothing is written to the store until the run's end saves it.
    assert not first.tree_memo_dir.exists()
    first.save()
    assert first.tree_memo_dir == project / ".buildprint" / "memo" / "trees"
    assert len(list(first.tree_memo_dir.iterdir())) == 1  # one memo file per folder

    second = resolver(project)
    assert second.resolve(requirement, spec, settings_file) == cold
    assert (second.tree_memo(folder).hits, second.tree_memo(folder).reads) == (REGULAR, 0)
    assert not second.tree_memo(folder).changed  # nothing new to save

    core = folder / "src" / "demo" / "core.py"
    core.write_bytes(b"def answer():\n    return 43\n")
    os.utime(core, (1_500_000_100, 1_500_000_100))
    third = resolver(project)
    changed = third.resolve(requirement, spec, settings_file)
    assert (third.tree_memo(folder).hits, third.tree_memo(folder).reads) == (REGULAR - 1, 1)
    assert changed.digest == tree_digest(folder).digest != cold.digest


# -- { url, sha256 } -----------------------------------------------------------------------


def test_url_source_with_the_right_sha256(
    project: Path, tmp_path: Path, settings_file: Path
) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    spec = SourceSpec(url=sdist.as_uri(), sha256=sha256_of(sdist))
    source = resolver(project).resolve(Requirement("alpha==1.0"), spec, settings_file)
    assert source.digest == archive_digest(sdist).digest
    assert (source.location, source.raw_sha256) == (sdist.as_uri(), sha256_of(sdist))


@pytest.mark.parametrize("where", ["file", "http"])
def test_url_source_with_a_wrong_sha256_is_refused(
    project: Path, tmp_path: Path, settings_file: Path, where: str
) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    wrong = "0" * 64
    index = PackageIndex(None, cache_dir=tmp_path / "downloads")
    with serve_index([sdist]) as server:
        url = sdist.as_uri() if where == "file" else f"{server.url[: -len('/simple')]}/files/"
        url += "" if where == "file" else sdist.name
        spec = SourceSpec(url=url, sha256=wrong)
        with pytest.raises(InputError) as refused:
            resolver(project, index).resolve(Requirement("alpha==1.0"), spec, settings_file)
    message = str(refused.value)
    assert refused.value.file == str(settings_file)  # where the wrong sha256 is written
    assert "alpha-1.0.tar.gz" in message
    assert wrong in message and sha256_of(sdist) in message
    # Nothing was memoized or kept from the refused file.
    assert memo_in(project).get(f"sha256:{SOURCE_SCHEME}:{wrong}") is None
    assert memo_in(project).get(f"sha256:{SOURCE_SCHEME}:{sha256_of(sdist)}") is None
    assert not any(p.is_file() for p in (tmp_path / "downloads").rglob("*"))


# -- what cannot be resolved ---------------------------------------------------------------


def test_a_version_the_index_does_not_have_is_named(
    project: Path, tmp_path: Path, settings_file: Path
) -> None:
    sdist = make_sdist(tmp_path / "files", "alpha", "1.0")
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", [sdist])))
    with pytest.raises(InputError) as missing:
        resolver(project, index).resolve(Requirement("alpha==3.0"), None, settings_file)
    assert "'alpha'" in missing.value.message and "3.0" in missing.value.message
    assert "offered: 1.0" in missing.value.message

    with pytest.raises(InputError, match=r"no version of alpha matches alpha>=5"):
        resolver(project, index).resolve(Requirement("alpha>=5"), None, settings_file)


@pytest.mark.parametrize(
    ("requirement", "spec", "expected"),
    [
        ("alpha", SourceSpec(path="src/alpha"), "cannot tell the version of alpha"),
        ("alpha===one", SourceSpec(path="src/alpha"), "invalid version .one."),
        ("alpha>=1", SourceSpec(url="https://example.invalid/a.tar.gz", sha256="0" * 64), "pinned"),
        ("alpha==1.0", SourceSpec(path="src/missing"), "does not exist"),
    ],
    ids=["folder-unpinned", "invalid-version", "url-unpinned", "missing-path"],
)
def test_sources_without_a_usable_version_or_file_name_the_settings_file(
    project: Path,
    folder: Path,
    settings_file: Path,
    requirement: str,
    spec: SourceSpec,
    expected: str,
) -> None:
    with pytest.raises(InputError, match=expected) as refused:
        resolver(project).resolve(Requirement(requirement), spec, settings_file)
    assert refused.value.file == str(settings_file)
    assert not (project / ".buildprint").exists()  # bad input writes nothing
