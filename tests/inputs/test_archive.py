"""Canonical archive digests: what counts, what does not, and refusal of unsafe archives."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildprint.errors import ArchiveError, InputError
from buildprint.inputs.archive import archive_digest
from buildprint.inputs.extract import safe_extract
from buildprint.inputs.records import SourceDigest
from buildprint.inputs.tree import tree_digest
from tests.support.archives import FORMATS, SDIST, Item, make_archive


def _replace(items: list[Item], where: str, **changes: object) -> list[Item]:
    return [dataclasses.replace(item, **changes) if item.path == where else item for item in items]  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_repacking_with_other_metadata_and_order_keeps_the_digest(tmp_path: Path, fmt: str) -> None:
    original = archive_digest(make_archive(tmp_path / f"a.{fmt}", SDIST))
    repacked = archive_digest(
        make_archive(
            tmp_path / f"b.{fmt}",
            SDIST,
            mtime=1_234_567_890,
            owner=0,
            reverse=True,
            extra_mode=0o022 | stat.S_IXGRP,  # group bits, even group-exec, do not count
            explicit_dirs=False,
        )
    )
    assert repacked.digest == original.digest
    assert (repacked.files, repacked.size) == (original.files, original.size)
    # The raw archive bytes differ, and provenance says so.
    assert repacked.raw_sha256 != original.raw_sha256


def test_every_format_gives_the_same_digest_for_the_same_content(tmp_path: Path) -> None:
    digests = {
        fmt: archive_digest(make_archive(tmp_path / f"a.{fmt}", SDIST)).digest for fmt in FORMATS
    }
    assert len(set(digests.values())) == 1, digests


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_raw_sha256_is_the_sha256_of_the_archive_file(tmp_path: Path, fmt: str) -> None:
    archive = make_archive(tmp_path / f"a.{fmt}", SDIST)
    assert archive_digest(archive).raw_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


MUTATIONS: dict[str, Callable[[list[Item]], list[Item]]] = {
    "one changed byte": lambda items: _replace(
        items,
        "src/demo/core.py",
        data=b"def answer():\n    return 43\n" + b"def answer():\n    return 42\n" * 49,
    ),
    "renamed file": lambda items: _replace(items, "src/demo/core.py", path="src/demo/kernel.py"),
    "flipped exec bit": lambda items: _replace(items, "scripts/run.sh", executable=False),
    "changed link target": lambda items: _replace(items, "src/demo/alias.py", target="__init__.py"),
    "file became a link": lambda items: _replace(
        items, "data/blob.bin", kind="symlink", target="x"
    ),
    "removed empty dir": lambda items: [item for item in items if item.path != "docs"],
}


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_content_change_changes_the_digest(tmp_path: Path, fmt: str, mutation: str) -> None:
    before = archive_digest(make_archive(tmp_path / f"a.{fmt}", SDIST))
    after = archive_digest(make_archive(tmp_path / f"b.{fmt}", MUTATIONS[mutation](list(SDIST))))
    assert after.digest != before.digest


@pytest.mark.parametrize("fmt", FORMATS)
def test_archive_digest_equals_the_digest_of_the_extracted_tree(tmp_path: Path, fmt: str) -> None:
    archive = make_archive(tmp_path / f"demo.{fmt}", SDIST)
    root = safe_extract(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "demo-1.0"
    assert (root / "scripts/run.sh").stat().st_mode & stat.S_IXUSR
    assert os.readlink(root / "src/demo/alias.py") == "core.py"
    assert (root / "src/demo/empty").is_dir()
    from_archive = archive_digest(archive)
    from_tree = tree_digest(root)
    assert from_tree.digest == from_archive.digest
    assert (from_tree.files, from_tree.size) == (from_archive.files, from_archive.size)
    assert (from_archive.files, from_archive.size) == (
        7,
        sum(len(item.data) for item in SDIST if item.kind == "file"),
    )
    # Only the source root was created in dest: no staging folder is left behind.
    assert os.listdir(tmp_path / "out") == ["demo-1.0"]


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_archive_without_single_top_dir_extracts_into_dest(tmp_path: Path, fmt: str) -> None:
    archive = make_archive(tmp_path / f"flat.{fmt}", SDIST, top=None)
    root = safe_extract(archive, tmp_path / "out")
    assert root == tmp_path / "out"
    assert (root / "PKG-INFO").is_file()
    assert tree_digest(root).digest == archive_digest(archive).digest
    # Stripping the top directory makes a flat and a nested packing of one tree agree.
    nested = archive_digest(make_archive(tmp_path / f"nested.{fmt}", SDIST))
    assert archive_digest(archive).digest == nested.digest


#: Debris at various depths: in neither the digest nor the extracted tree.
DEBRIS = [
    Item("src/demo/__pycache__/core.cpython-311.pyc", b"\x00\x01"),
    Item("src/demo/stale.pyc", b"\x00"),
    Item("build/lib/demo/core.py", b"old"),
    Item("build/lib/demo/alias.py", kind="symlink", target="core.py"),
    Item("dist/demo-0.9.tar.gz", b"old"),
    Item(".git/HEAD", b"ref: refs/heads/main\n"),
    Item("docs/.git", b"gitdir: ../.git/modules/docs\n"),
    Item(".pytest_cache/v/cache/lastfailed", b"{}"),
    Item("src/demo/.mypy_cache/3.11/x.json", b"{}"),
    Item(".ruff_cache/0.4.0/1", b"x"),
    Item(".DS_Store", b"\0\0\0\1Bud1"),
    Item("src/.DS_Store", b"\0\0\0\1Bud1"),
    Item(".coverage", b"SQLite format 3\0"),
    Item(".venv/bin/python", kind="symlink", target="python3"),
]
#: What setuptools' sdist command adds: content of an sdist, debris anywhere else.
EGG_INFO = [
    Item("src/demo.egg-info/PKG-INFO", b"x"),
    Item("src/demo.egg-info/SOURCES.txt", b"y"),
]


def _expected(items: list[Item]) -> set[str]:
    """The paths of ``items`` and of their folders."""
    found: set[str] = set()
    for item in items:
        parts = item.path.split("/")
        found.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return found


def test_build_debris_in_an_sdist_does_not_count(tmp_path: Path) -> None:
    clean = archive_digest(make_archive(tmp_path / "a.tar.gz", SDIST))
    dirty = archive_digest(make_archive(tmp_path / "b.tar.gz", SDIST + DEBRIS))
    assert dirty.digest == clean.digest
    # A nested folder named like a root-level output folder is real source.
    nested = archive_digest(
        make_archive(tmp_path / "c.tar.gz", [*SDIST, Item("src/build/x.py", b"1")])
    )
    assert nested.digest != clean.digest


def test_egg_info_counts_in_an_sdist_only(tmp_path: Path) -> None:
    """An archive whose root holds ``PKG-INFO`` is an sdist: its egg-info is what setuptools
    reads when building it. Without ``PKG-INFO`` (a VCS snapshot) it is build debris."""
    with_info = archive_digest(make_archive(tmp_path / "a.tar.gz", SDIST + EGG_INFO))
    assert with_info.digest != archive_digest(make_archive(tmp_path / "b.tar.gz", SDIST)).digest
    snapshot = [item for item in SDIST if item.path != "PKG-INFO"]
    assert (
        archive_digest(make_archive(tmp_path / "c.zip", snapshot + EGG_INFO)).digest
        == archive_digest(make_archive(tmp_path / "d.zip", snapshot)).digest
    )


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
@pytest.mark.parametrize("sdist", [True, False], ids=["sdist", "snapshot"])
@pytest.mark.parametrize("top", ["demo-1.0", None], ids=["top", "flat"])
def test_the_extracted_tree_holds_exactly_the_digested_entries(
    tmp_path: Path, fmt: str, sdist: bool, top: str | None
) -> None:
    base = SDIST if sdist else [item for item in SDIST if item.path != "PKG-INFO"]
    sources = [*base, Item("src/build/x.py", b"1"), Item("docs/dist/notes.txt", b"n")]
    archive = make_archive(tmp_path / f"a.{fmt}", [*sources, *EGG_INFO, *DEBRIS], top=top)
    digested: list[str] = []
    digest = archive_digest(archive, entries=digested)
    root = safe_extract(archive, tmp_path / "out")
    on_disk = {
        os.path.relpath(os.path.join(folder, name), root)
        for folder, dirs, files in os.walk(root)
        for name in dirs + files
    }
    assert on_disk == set(digested) == _expected(sources + (EGG_INFO if sdist else []))
    assert tree_digest(root).digest == digest.digest


def test_an_escaping_link_is_refused_even_among_ignored_members(tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path / "a.tar.gz", [*SDIST, Item("build/evil", kind="symlink", target="../../x")]
    )
    with pytest.raises(ArchiveError, match="build/evil"):
        archive_digest(archive)
    with pytest.raises(ArchiveError, match="build/evil"):
        safe_extract(archive, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == []


# -- unsafe archives ---------------------------------------------------------------------------


def _tar_with(path: Path, *extra: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> Path:
    """A tar.gz holding a harmless file (a careless extractor writes it), then ``extra``."""
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("demo-1.0/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        for info in extra:
            payload = (data or {}).get(info.name, b"")
            info.size = len(payload) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return path


def _tinfo(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


def _zip_with(path: Path, *members: tuple[str, int, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("demo-1.0/ok.txt", b"ok")
        for name, mode, payload in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zipped.writestr(info, payload)
    return path


def _unsafe_tar(kind: str, path: Path, box: Path) -> tuple[Path, str]:
    if kind == "dotdot":
        name = "demo-1.0/../../escaped.txt"
        return _tar_with(path, _tinfo(name), data={name: b"pwned"}), name
    if kind == "absolute":
        name = str(box / "absolute.txt")
        return _tar_with(path, _tinfo(name), data={name: b"pwned"}), name
    if kind == "symlink":
        name = "demo-1.0/link"
        return _tar_with(path, _tinfo(name, tarfile.SYMTYPE, "../../outside")), name
    if kind == "absolute-symlink":
        name = "demo-1.0/link"
        return _tar_with(path, _tinfo(name, tarfile.SYMTYPE, str(box))), name
    if kind == "chained-symlink":
        # Each link alone looks harmless; together b resolves to dest's parent.
        name = "demo-1.0/b"
        links = (
            _tinfo("demo-1.0/a", tarfile.SYMTYPE, "."),
            _tinfo(name, tarfile.SYMTYPE, "a/../.."),
        )
        return _tar_with(path, *links), name
    if kind == "through-symlink":
        name = "demo-1.0/link/escaped.txt"
        link = _tinfo("demo-1.0/link", tarfile.SYMTYPE, "sub")
        return _tar_with(path, link, _tinfo(name), data={name: b"pwned"}), name
    if kind == "hardlink":
        name = "demo-1.0/hard"
        return _tar_with(path, _tinfo(name, tarfile.LNKTYPE, "../../etc/passwd")), name
    if kind == "absolute-hardlink":
        name = "demo-1.0/hard"
        return _tar_with(path, _tinfo(name, tarfile.LNKTYPE, "/etc/passwd")), name
    if kind == "device":
        name = "demo-1.0/null"
        return _tar_with(path, _tinfo(name, tarfile.CHRTYPE)), name
    if kind == "fifo":
        name = "demo-1.0/pipe"
        return _tar_with(path, _tinfo(name, tarfile.FIFOTYPE)), name
    raise AssertionError(kind)


def _unsafe_zip(kind: str, path: Path, box: Path) -> tuple[Path, str]:
    reg = stat.S_IFREG | 0o644
    if kind == "dotdot":
        name = "demo-1.0/../../escaped.txt"
        return _zip_with(path, (name, reg, b"pwned")), name
    if kind == "absolute":
        name = str(box / "absolute.txt")
        return _zip_with(path, (name, reg, b"pwned")), name
    if kind == "symlink":
        name = "demo-1.0/link"
        return _zip_with(path, (name, stat.S_IFLNK | 0o777, b"../../outside")), name
    if kind == "absolute-symlink":
        name = "demo-1.0/link"
        return _zip_with(path, (name, stat.S_IFLNK | 0o777, str(box).encode())), name
    if kind == "chained-symlink":
        name = "demo-1.0/b"
        link = stat.S_IFLNK | 0o777
        return _zip_with(path, ("demo-1.0/a", link, b"."), (name, link, b"a/../..")), name
    if kind == "through-symlink":
        name = "demo-1.0/link/escaped.txt"
        through = ("demo-1.0/link", stat.S_IFLNK | 0o777, b"sub")
        return _zip_with(path, through, (name, reg, b"pwned")), name
    if kind == "device":
        name = "demo-1.0/null"
        return _zip_with(path, (name, stat.S_IFCHR | 0o666, b"")), name
    if kind == "fifo":
        name = "demo-1.0/pipe"
        return _zip_with(path, (name, stat.S_IFIFO | 0o666, b"")), name
    raise AssertionError(kind)


UNSAFE_TAR = [
    "dotdot",
    "absolute",
    "symlink",
    "absolute-symlink",
    "chained-symlink",
    "through-symlink",
    "hardlink",
    "absolute-hardlink",
    "device",
    "fifo",
]
UNSAFE_ZIP = [kind for kind in UNSAFE_TAR if "hardlink" not in kind]  # zip has no hard links


def _assert_refused(archive: Path, member: str, box: Path) -> None:
    dest = box / "dest"
    dest.mkdir()
    with pytest.raises(ArchiveError) as refused:
        safe_extract(archive, dest)
    assert refused.value.file == str(archive)
    assert member in str(refused.value)
    # Nothing next to dest, nothing left inside it (not even the staging folder).
    assert sorted(os.listdir(box)) == ["dest"]
    assert os.listdir(dest) == []
    with pytest.raises(ArchiveError) as digest_refused:
        archive_digest(archive)
    assert member in str(digest_refused.value)


@pytest.mark.parametrize("kind", UNSAFE_TAR)
def test_unsafe_tar_is_refused_and_nothing_is_written(tmp_path: Path, kind: str) -> None:
    box = tmp_path / "box"
    box.mkdir()
    archive, member = _unsafe_tar(kind, tmp_path / "evil.tar.gz", box)
    _assert_refused(archive, member, box)


@pytest.mark.parametrize("kind", UNSAFE_ZIP)
def test_unsafe_zip_is_refused_and_nothing_is_written(tmp_path: Path, kind: str) -> None:
    box = tmp_path / "box"
    box.mkdir()
    archive, member = _unsafe_zip(kind, tmp_path / "evil.zip", box)
    _assert_refused(archive, member, box)


def test_links_that_stay_inside_the_tree_are_kept(tmp_path: Path) -> None:
    items = [
        Item("pkg/mod.py", b"x = 1\n"),
        Item("pkg/alias.py", kind="symlink", target="mod.py"),
        Item("docs/pkg", kind="symlink", target="../pkg"),
        Item("docs/dangling", kind="symlink", target="not-there"),
    ]
    archive = make_archive(tmp_path / "ok.tar.gz", items)
    with tarfile.open(tmp_path / "ok.tar.gz") as tar:
        assert {m.name for m in tar.getmembers() if m.issym()} == {
            "demo-1.0/pkg/alias.py",
            "demo-1.0/docs/pkg",
            "demo-1.0/docs/dangling",
        }
    root = safe_extract(archive, tmp_path / "out")
    assert (root / "docs/pkg/mod.py").read_bytes() == b"x = 1\n"
    assert tree_digest(root).digest == archive_digest(archive).digest


def test_hard_links_become_copies_with_the_same_digest_as_the_tree(tmp_path: Path) -> None:
    path = tmp_path / "hard.tar"
    with tarfile.open(path, "w") as tar:
        first = _tinfo("demo-1.0/a.txt")
        first.size = 5
        tar.addfile(first, io.BytesIO(b"hello"))
        tar.addfile(_tinfo("demo-1.0/b.txt", tarfile.LNKTYPE, "demo-1.0/a.txt"))
    root = safe_extract(path, tmp_path / "out")
    assert (root / "b.txt").read_bytes() == b"hello"
    assert (root / "a.txt").stat().st_ino != (root / "b.txt").stat().st_ino
    assert tree_digest(root).digest == archive_digest(path).digest


# -- broken archives -----------------------------------------------------------------------------


def _truncate(path: Path, keep: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


def _assert_broken(archive: Path, box: Path) -> None:
    with pytest.raises(ArchiveError) as broken:
        archive_digest(archive)
    assert broken.value.file == str(archive)
    dest = box / "dest"
    with pytest.raises(ArchiveError):
        safe_extract(archive, dest)
    assert os.listdir(dest) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archive_is_an_archive_error(tmp_path: Path, fmt: str) -> None:
    archive = make_archive(tmp_path / f"a.{fmt}", SDIST)
    _truncate(archive, archive.stat().st_size // 2)
    _assert_broken(archive, tmp_path)


def test_tar_cut_at_a_member_boundary_is_an_archive_error(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.tar", SDIST)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    # Cut right after the third member's data: every header so far is intact, only
    # the rest of the archive and its end-of-archive blocks are missing.
    third = members[3]
    _truncate(archive, third.offset_data + (third.size + 511) // 512 * 512)
    _assert_broken(archive, tmp_path)


def test_tar_with_a_garbage_header_is_an_archive_error(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.tar", SDIST)
    with tarfile.open(archive) as tar:
        offset = tar.getmembers()[3].offset
    data = bytearray(archive.read_bytes())
    data[offset : offset + 512] = b"\xab" * 512
    archive.write_bytes(bytes(data))
    _assert_broken(archive, tmp_path)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_corrupted_byte_is_an_archive_error(tmp_path: Path, fmt: str) -> None:
    items = [Item("big.bin", os.urandom(1 << 16)), *SDIST]
    archive = make_archive(tmp_path / f"a.{fmt}", items)
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0xFF
    archive.write_bytes(bytes(data))
    _assert_broken(archive, tmp_path)


def test_unknown_extension_and_missing_file_are_input_errors(tmp_path: Path) -> None:
    odd = tmp_path / "demo-1.0.rar"
    odd.write_bytes(b"Rar!")
    with pytest.raises(ArchiveError, match="unsupported archive type"):
        archive_digest(odd)
    with pytest.raises(ArchiveError):
        safe_extract(odd, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError) as missing:
        archive_digest(tmp_path / "nope.tar.gz")
    assert missing.value.file == str(tmp_path / "nope.tar.gz")


def test_extracting_over_an_existing_root_is_refused(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "a.tar.gz", SDIST)
    (tmp_path / "out" / "demo-1.0").mkdir(parents=True)
    with pytest.raises(ArchiveError, match="already contains"):
        safe_extract(archive, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["demo-1.0"]


def test_source_digest_is_frozen(tmp_path: Path) -> None:
    result = archive_digest(make_archive(tmp_path / "a.zip", SDIST))
    assert isinstance(result, SourceDigest)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.digest = "0" * 64  # type: ignore[misc]


# -- property: order and timestamps never count -------------------------------------------------

_names = st.sampled_from(["a", "b", "c", "d.py", "e.txt", "ß", "z-1"])
_paths = st.lists(_names, min_size=1, max_size=3).map("/".join)
_files = st.dictionaries(
    _paths, st.tuples(st.binary(max_size=64), st.booleans()), min_size=1, max_size=8
)


def _consistent(files: dict[str, tuple[bytes, bool]]) -> list[Item]:
    """Drop paths that are also directories of other paths, so the tree is valid."""
    names = set(files)
    keep = [n for n in names if not any(other.startswith(n + "/") for other in names)]
    return [Item(n, files[n][0], files[n][1]) for n in sorted(keep)]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=_files,
    order=st.randoms(use_true_random=False),
    mtimes=st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=2),
    fmt=st.sampled_from(["tar", "zip"]),
)
def test_member_order_and_mtimes_never_matter(
    tmp_path_factory: pytest.TempPathFactory,
    files: dict[str, tuple[bytes, bool]],
    order: object,
    mtimes: list[int],
    fmt: str,
) -> None:
    items = _consistent(files)
    shuffled = list(items)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    folder = tmp_path_factory.mktemp("prop")
    first = archive_digest(
        make_archive(folder / f"a.{fmt}", items, mtime=max(mtimes[0], 315_532_800))
    )
    second = archive_digest(
        make_archive(
            folder / f"b.{fmt}", shuffled, mtime=max(mtimes[1], 315_532_800), explicit_dirs=False
        )
    )
    assert first.digest == second.digest
    assert first.files == len(items)
