"""PEP 508 direct references as sources: the forms honoured and refused, archives (file://,
http served by a real local server), folders, and git repositories made with the git CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from buildprint.errors import InputError
from buildprint.inputs.archive import archive_digest
from buildprint.inputs.tree import tree_digest
from buildprint.project.project import parse_requirement, read_requirements
from buildprint.project.settings import SourceSpec
from buildprint.resolve.direct import check_direct_references, parse_direct
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.sources import SourceResolver
from buildprint.store.memo import Memo
from tests.support.git import git
from tests.support.indexes import make_sdist as make_index_sdist
from tests.support.indexes import serve_index, sha256_of
from tests.support.sdists import make_sdist

SHA = "ab" * 32


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "packages").mkdir(parents=True)
    return root


@pytest.fixture
def newer_on_the_index(tmp_path: Path) -> PackageIndex:
    """An index (a folder) offering pkg 3.0: a direct reference must never fall back to it."""
    make_sdist(tmp_path / "index", "pkg", "3.0", "setuptools")
    return PackageIndex(str(tmp_path / "index"), cache_dir=tmp_path / "store" / "downloads")


def resolver(project: Path, index: PackageIndex | None = None) -> SourceResolver:
    """A fresh resolver (as each run makes one) over the store in the project."""
    memo = Memo(project / ".buildprint" / "memo" / "inputs.json")
    return SourceResolver(project, index or PackageIndex(None), memo)


def at_line(text: str, file: Path, line: int = 4) -> Requirement:
    return parse_requirement(text, file=file, line=line)


def pyproject(name: str, version: str) -> str:
    return (
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        f'\n[project]\nname = "{name}"\nversion = "{version}"\n'
    )


def make_repo(path: Path, version: str = "2.0") -> Path:
    """A git repository whose branch ``main`` holds a package at ``version``."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "pyproject.toml").write_text(pyproject("pkg", version))
    (path / "pkg").mkdir()
    (path / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


def commit_change(repo: Path, text: str) -> str:
    (repo / "pkg" / "__init__.py").write_text(text)
    git(repo, "commit", "-q", "-am", "change")
    return git(repo, "rev-parse", "HEAD")


# -- forms refused, at the requirements file and line ----------------------------------------

REFUSED = [
    ("pkg @ https://h.example/pkg-2.0.tar.gz", "#sha256="),
    ("pkg @ https://h.example/pkg-2.0.tar.gz#sha256=abc", "64 hex digits"),
    (f"pkg @ https://h.example/pkg-2.0.tar.gz#md5={'a' * 32}", "'#md5=' is not supported"),
    (f"pkg @ https://h.example/pkg-2.0-py3-none-any.whl#sha256={SHA}", "is a wheel"),
    ("pkg @ file:///srv/pkg-2.0-py3-none-any.whl", "is a wheel"),
    (f"pkg @ https://h.example/download?id=3#sha256={SHA}", "must name an sdist archive"),
    (f"pkg @ https://h.example/pkg-2.0.tar.gz#sha256={SHA}&subdirectory=x", "subdirectory"),
    (f"pkg @ https://h.example/pkg-2.0.tar.gz#sha256={SHA}&egg=other", "'#egg=other'"),
    (f"pkg @ https://h.example/pkg-2.0.tar.gz#sha256={SHA}&colour=red", "unknown URL fragment"),
    (f"pkg @ https://h.example/pkg-2.0.tar.gz#sha256={SHA}&sha256={SHA}", "given twice"),
    ("pkg @ https://h.example:port/pkg-2.0.tar.gz", "malformed URL"),
    ("pkg @ https:///pkg-2.0.tar.gz", "no host"),
    ("pkg @ svn+https://h.example/repo/trunk", "svn references are not supported"),
    ("pkg @ hg+https://h.example/repo@v1", "hg references are not supported"),
    ("pkg @ bzr+https://h.example/repo", "bzr references are not supported"),
    ("pkg @ git+https://h.example/repo.git", "tag, branch or full commit after '@'"),
    ("pkg @ git+https://h.example/repo.git@", "tag, branch or full commit after '@'"),
    ("pkg @ git+ssh://git@h.example/repo.git@v1", "git over 'ssh' is not supported"),
    ("pkg @ git+http://h.example/repo.git@v1", "git over 'http' is not supported"),
    ("pkg @ git://h.example/repo.git@v1", "scheme 'git' is not supported"),
    ("pkg @ git+https://h.example/repo.git@--upload-pack=evil", "not a valid git ref"),
    ("pkg @ git+https://h.example/repo.git@a..b", "not a valid git ref"),
    (f"pkg @ git+https://h.example/repo.git@v1#sha256={SHA}", "does not apply to a git"),
    ("pkg @ git+https://h.example/repo.git@v1#subdirectory=../up", "relative path"),
    ("pkg @ git+file://host/srv/repo@v1", "absolute and local"),
    ("pkg @ ftp://h.example/pkg-2.0.tar.gz", "scheme 'ftp' is not supported"),
    ("pkg @ file://elsewhere/srv/pkg-2.0.tar.gz", "absolute and local"),
    ("pkg @ file:relative/pkg-2.0.tar.gz", "absolute and local"),
    ("pkg @ pkg-2.0.tar.gz", "not a URL"),
]


@pytest.mark.parametrize(("text", "expected"), REFUSED, ids=[t for t, _ in REFUSED])
def test_a_form_not_honoured_is_refused_at_its_file_and_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    requirements = tmp_path / "requirements.txt"
    with pytest.raises(InputError) as refused:
        parse_direct(at_line(text, requirements))
    assert refused.value.exit_code == 2
    assert (refused.value.file, refused.value.line) == (str(requirements), 4)
    assert expected in refused.value.message
    assert refused.value.message.startswith("pkg @ ")


def test_refusals_from_the_command_line_name_the_argument() -> None:
    text = "pkg @ svn+https://h.example/repo"
    with pytest.raises(InputError) as refused:
        parse_direct(parse_requirement(text))
    assert refused.value.file is None
    assert str(refused.value).startswith(f"requirement argument {text!r}: ")


def test_credentials_never_appear_in_a_refusal() -> None:
    with pytest.raises(InputError) as refused:
        parse_direct(parse_requirement("pkg @ https://bob:s3cret@h.example/pkg-2.0.tar.gz"))
    assert "s3cret" not in str(refused.value) and "bob" not in str(refused.value)
    assert "https://h.example/pkg-2.0.tar.gz" in str(refused.value)


def test_a_url_without_a_name_is_explained(tmp_path: Path) -> None:
    file = tmp_path / "requirements.txt"
    file.write_text("alpha==1.0\nhttps://h.example/pkg-2.0.tar.gz\n")
    with pytest.raises(InputError) as refused:
        read_requirements(file)
    assert (refused.value.file, refused.value.line) == (str(file), 2)
    assert "'NAME @ URL'" in refused.value.message


# -- forms honoured ----------------------------------------------------------------------------


def test_an_https_archive_keeps_its_digest_and_hides_credentials() -> None:
    ref = parse_direct(
        parse_requirement(
            f"Pkg @ https://bob:tok@h.example/files/pkg-2.0.tar.gz?x=1#sha256={SHA.upper()}"
        )
    )
    assert ref is not None
    assert (ref.name, ref.kind, ref.sha256) == ("pkg", "archive", SHA)
    assert ref.url == "https://bob:tok@h.example/files/pkg-2.0.tar.gz?x=1"  # fetched as given
    assert "tok" not in ref.shown and ref.filename == "pkg-2.0.tar.gz"


def test_a_git_reference_splits_url_ref_and_subdirectory() -> None:
    ref = parse_direct(
        parse_requirement(
            "pkg @ git+https://bob:tok@h.example/org/repo.git@release/2.x#subdirectory=py/pkg"
        )
    )
    assert ref is not None
    assert (ref.kind, ref.ref, ref.subdirectory) == ("git", "release/2.x", "py/pkg")
    assert ref.url == "https://bob:tok@h.example/org/repo.git"
    assert ref.shown == "git+https://h.example/org/repo.git@release/2.x#subdirectory=py/pkg"


def test_no_direct_reference_is_none() -> None:
    assert parse_direct(parse_requirement("pkg==2.0")) is None


def test_a_package_referenced_and_required_otherwise_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    file = tmp_path / "requirements.txt"
    file.write_text("pkg @ file:///srv/pkg-2.0.tar.gz\nother==1\npkg==3.0\n")
    requirements = read_requirements(file)
    with pytest.raises(InputError) as refused:
        check_direct_references(requirements)
    assert (refused.value.file, refused.value.line) == (str(file), 3)
    message = refused.value.message
    assert message.startswith("pkg==3.0: pkg is required twice")
    assert f"'pkg @ file:///srv/pkg-2.0.tar.gz' at {file}:1" in message
    # The same reference twice is the same requirement.
    check_direct_references([requirements[0], requirements[0], requirements[1]])


def test_a_refused_form_anywhere_is_found_before_anything_is_resolved(tmp_path: Path) -> None:
    file = tmp_path / "requirements.txt"
    file.write_text("good==1.0\nbad @ hg+https://h.example/r@v1\n")
    with pytest.raises(InputError) as refused:
        SourceResolver.check(read_requirements(file))
    assert refused.value.line == 2


# -- file:// archives and folders --------------------------------------------------------------


def test_a_file_sdist_is_the_source_not_the_newer_index_version(
    project: Path, tmp_path: Path, newer_on_the_index: PackageIndex
) -> None:
    sdist = make_sdist(tmp_path / "elsewhere", "pkg", "2.0", "setuptools")
    source = resolver(project, newer_on_the_index).resolve(
        parse_requirement(f"pkg @ {sdist.as_uri()}"), None, project / "packages" / "pkg.toml"
    )
    assert (source.name, source.version, source.local) == ("pkg", "2.0", sdist)
    assert source.digest == archive_digest(sdist).digest
    assert source.raw_sha256 == sha256_of(sdist)
    assert source.volatile is None and source.commit is None


def test_a_file_sdist_with_its_sha256_is_checked(project: Path, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "elsewhere", "pkg", "2.0", "setuptools")
    good = at_line(f"pkg @ {sdist.as_uri()}#sha256={sha256_of(sdist)}", tmp_path / "r.txt")
    settings = project / "packages" / "pkg.toml"
    assert resolver(project).resolve(good, None, settings).version == "2.0"

    wrong = at_line(f"pkg @ {sdist.as_uri()}#sha256={'0' * 64}", tmp_path / "r.txt", 7)
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(wrong, None, settings)
    assert (refused.value.file, refused.value.line) == (str(tmp_path / "r.txt"), 7)
    assert "does not match" in refused.value.message
    assert sha256_of(sdist) in refused.value.message and "0" * 64 in refused.value.message


@pytest.mark.parametrize("ext", [".tar.gz", ".zip"])
def test_an_archive_named_otherwise_takes_its_version_from_its_metadata(
    project: Path, tmp_path: Path, ext: str
) -> None:
    sdist = make_index_sdist(tmp_path / "elsewhere", "pkg", "2.0", ext)
    renamed = sdist.rename(sdist.with_name(f"v2.0{ext}"))  # e.g. a forge's tag archive
    source = resolver(project).resolve(
        parse_requirement(f"pkg @ {renamed.as_uri()}"), None, project / "packages" / "pkg.toml"
    )
    assert source.version == "2.0"
    assert source.digest == archive_digest(renamed).digest


def test_an_archive_of_another_package_is_refused(project: Path, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "elsewhere", "other", "2.0", "setuptools")
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(
            at_line(f"pkg @ {sdist.as_uri()}", tmp_path / "r.txt"),
            None,
            project / "packages" / "pkg.toml",
        )
    assert "'other'" in refused.value.message and refused.value.line == 4


def test_a_missing_file_is_named_at_the_requirement(project: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pkg-2.0.tar.gz"
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(
            at_line(f"pkg @ {missing.as_uri()}", tmp_path / "r.txt"),
            None,
            project / "packages" / "pkg.toml",
        )
    assert str(missing) in refused.value.message and refused.value.line == 4


def test_a_file_folder_is_a_folder_source_with_its_static_version(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "checkout" / "python"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(pyproject("pkg", "2.1"))
    (folder / "pkg" / "__init__.py").write_text("")
    for text in (f"pkg @ {folder.as_uri()}", f"pkg @ {folder.parent.as_uri()}#subdirectory=python"):
        source = resolver(project).resolve(
            parse_requirement(text), None, project / "packages" / "pkg.toml"
        )
        assert (source.version, source.local) == ("2.1", folder)
        assert source.digest == tree_digest(folder).digest


def test_a_folder_with_a_dynamic_version_says_how_to_give_one(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pkg-src"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[project]\nname = "pkg"\ndynamic = ["version"]\n')
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(
            at_line(f"pkg @ {folder.as_uri()}", tmp_path / "r.txt"),
            None,
            project / "packages" / "pkg.toml",
        )
    message = refused.value.message
    assert "declares its version dynamic" in message
    assert "[project]" in message and "packages/pkg.toml" in message


def test_a_direct_reference_and_a_settings_source_conflict(project: Path, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "elsewhere", "pkg", "2.0", "setuptools")
    settings = project / "packages" / "pkg.toml"
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(
            at_line(f"pkg @ {sdist.as_uri()}", tmp_path / "r.txt"),
            SourceSpec(path="dist/pkg-1.0.tar.gz"),
            settings,
        )
    assert refused.value.file == str(tmp_path / "r.txt") and str(settings) in str(refused.value)


# -- http(s) archives (a real local server) ------------------------------------------------------


def test_a_served_archive_is_downloaded_verified_and_cached(
    project: Path, tmp_path: Path, newer_on_the_index: PackageIndex
) -> None:
    sdist = make_sdist(tmp_path / "files", "pkg", "2.0", "setuptools")
    with serve_index([sdist]) as server:
        url = f"{server.url.removesuffix('/simple')}/files/{sdist.name}"
        good = parse_requirement(f"pkg @ {url}#sha256={sha256_of(sdist)}")
        source = resolver(project, newer_on_the_index).resolve(good, None, project / "x.toml")
        again = resolver(project, newer_on_the_index).resolve(good, None, project / "x.toml")
        downloads = server.hits("/files/")
        wrong = at_line(f"pkg @ {url}#sha256={'0' * 64}", tmp_path / "r.txt")
        with pytest.raises(InputError) as refused:
            resolver(project, newer_on_the_index).resolve(wrong, None, project / "x.toml")
    assert (source.version, source.location, source.raw_sha256) == ("2.0", url, sha256_of(sdist))
    assert source.digest == archive_digest(sdist).digest == again.digest
    assert downloads == 1  # the second run found it in the store's download cache
    assert refused.value.line == 4 and "0" * 64 in refused.value.message


def test_credentials_fetch_but_are_never_recorded(project: Path, tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "files", "pkg", "2.0", "setuptools")
    with serve_index([sdist]) as server:
        base = server.url.replace("http://", "http://bob:s3cret@")
        url = f"{base.removesuffix('/simple')}/files/{sdist.name}#sha256={sha256_of(sdist)}"
        index = PackageIndex(base, cache_dir=tmp_path / "downloads")
        direct = resolver(project, index).resolve(
            parse_requirement(f"pkg @ {url}"), None, project / "x.toml"
        )
        # The same holds for a file an index lists under a URL with credentials.
        listed = resolver(project, index).resolve(
            parse_requirement("pkg==2.0"), None, project / "x.toml"
        )
        sent = [auth for _, path, auth in server.requests if path.startswith("/files/")]
    assert sent and all(auth is not None and auth.startswith("Basic ") for auth in sent)
    for source in (direct, listed):
        assert "s3cret" not in str(source.provenance()) and "bob" not in source.location


# -- git ------------------------------------------------------------------------------------------


def test_a_git_branch_resolves_to_its_commit_checked_out_in_the_store(
    project: Path, tmp_path: Path, newer_on_the_index: PackageIndex
) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    requirement = parse_requirement(f"pkg @ git+{repo.as_uri()}@main")

    source = resolver(project, newer_on_the_index).resolve(requirement, None, project / "x.toml")

    checkout = project / ".buildprint" / "sources" / "git" / head
    assert (source.version, source.commit, source.ref, source.local) == (
        "2.0",
        head,
        "main",
        checkout,
    )
    assert source.provenance()["commit"] == head
    assert source.location == f"git+{repo.as_uri()}@{head}"
    assert not (checkout / ".git").exists()  # the tree only: what is digested is what is built
    assert source.digest == tree_digest(repo).digest  # the repository's .git is not counted
    assert source.volatile is not None and "'main'" in source.volatile
    assert sorted(p.name for p in checkout.parent.iterdir()) == [head]  # no temp folder left


def test_a_new_commit_on_the_branch_is_followed_by_the_next_run_only(
    project: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    requirement = parse_requirement(f"pkg @ git+{repo.as_uri()}@main")
    run = resolver(project)
    first = run.resolve(requirement, None, project / "x.toml")

    second_commit = commit_change(repo, "VALUE = 2\n")
    same_run = run.resolve(requirement, None, project / "x.toml")
    next_run = resolver(project).resolve(requirement, None, project / "x.toml")

    assert same_run == first  # plan and build of one run see one commit
    assert next_run.commit == second_commit != first.commit
    assert next_run.digest != first.digest
    assert next_run.digest == tree_digest(repo).digest


def test_tags_and_full_commits_are_honoured(project: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "-a", "v2.0", "-m", "release")  # annotated: its commit is recorded
    git(repo, "tag", "light")
    commit_change(repo, "VALUE = 2\n")
    for ref in ("v2.0", "light", "refs/tags/v2.0", first):
        source = resolver(project).resolve(
            parse_requirement(f"pkg @ git+{repo.as_uri()}@{ref}"), None, project / "x.toml"
        )
        assert source.commit == first, ref
    # A full commit cannot move: no snapshot volatility, and no git command once checked out.
    assert source.volatile is None
    os.rename(repo, tmp_path / "gone")
    again = resolver(project).resolve(
        parse_requirement(f"pkg @ git+{repo.as_uri()}@{first}"), None, project / "x.toml"
    )
    assert again.digest == source.digest


def test_a_subdirectory_of_a_repository(project: Path, tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    (repo / "python" / "pkg").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "python" / "pyproject.toml").write_text(pyproject("pkg", "4.1"))
    (repo / "python" / "pkg" / "__init__.py").write_text("")
    (repo / "README").write_text("the monorepo\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    source = resolver(project).resolve(
        parse_requirement(f"pkg @ git+{repo.as_uri()}@main#subdirectory=python"),
        None,
        project / "x.toml",
    )
    assert source.version == "4.1"
    assert source.digest == tree_digest(repo / "python").digest
    assert source.location.endswith("#subdirectory=python")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("nosuch", "no branch or tag 'nosuch'"),
        ("abc1234", "abbreviated commit"),
        ("0" * 40, "no commit"),
    ],
)
def test_a_ref_the_repository_does_not_have_is_refused_and_leaves_nothing(
    project: Path, tmp_path: Path, ref: str, expected: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(
            at_line(f"pkg @ git+{repo.as_uri()}@{ref}", tmp_path / "r.txt"),
            None,
            project / "x.toml",
        )
    assert expected in refused.value.message and refused.value.line == 4
    folder = project / ".buildprint" / "sources" / "git"
    assert not folder.exists() or not any(folder.iterdir())


def test_a_repository_without_a_static_version_is_refused(project: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "pyproject.toml").write_text('[project]\nname = "pkg"\ndynamic = ["version"]\n')
    commit = commit_change(repo, "VALUE = 3\n")
    with pytest.raises(InputError) as refused:
        resolver(project).resolve(
            at_line(f"pkg @ git+{repo.as_uri()}@main", tmp_path / "r.txt"),
            None,
            project / "x.toml",
        )
    assert f"commit {commit}" in refused.value.message
    assert "dynamic" in refused.value.message and "version" in refused.value.message


def test_user_git_configuration_does_not_change_the_checkout(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[core]\n\tautocrlf = true\n\teol = crlf\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "not-a-repo"))  # a caller's git variables
    source = resolver(project).resolve(
        parse_requirement(f"pkg @ git+{repo.as_uri()}@main"), None, project / "x.toml"
    )
    assert source.local is not None
    assert (source.local / "pkg" / "__init__.py").read_bytes() == b"VALUE = 1\n"
    assert source.digest == tree_digest(repo).digest
