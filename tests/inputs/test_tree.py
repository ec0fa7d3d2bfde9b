"""Tree digests: the canonical scheme over a directory, ignored debris, and the stat memo."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buildprint.errors import InputError
from buildprint.inputs.tree import TreeMemo, copy_tree, tree_digest
from tests.support.archives import SDIST, Item, make_tree, set_old_mtimes


@pytest.fixture
def sdist_tree(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "src-tree", SDIST)
    set_old_mtimes(root)
    return root


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files (not folders) ``os.open`` opens while the test runs.

    tree reads files only through ``os.open`` (relative to their folder's descriptor),
    so an empty list proves no file content was read.
    """
    seen: list[str] = []
    real_open: Callable[..., int] = os.open

    def counting_open(path: str | bytes, flags: int, *args: int, **kwargs: int | None) -> int:
        if not flags & os.O_DIRECTORY:
            seen.append(os.path.basename(os.fsdecode(path)))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    return seen


def test_metadata_does_not_count_but_content_does(sdist_tree: Path) -> None:
    before = tree_digest(sdist_tree)
    core = sdist_tree / "src/demo/core.py"
    os.utime(core, (1, 1))
    core.chmod(0o664)  # group write is not the exec bit
    assert tree_digest(sdist_tree).digest == before.digest
    core.write_bytes(core.read_bytes().replace(b"42", b"43", 1))
    assert tree_digest(sdist_tree).digest != before.digest


@pytest.mark.parametrize(
    "change",
    ["exec bit", "rename", "link target", "new empty dir", "new file"],
)
def test_structural_changes_change_the_digest(sdist_tree: Path, change: str) -> None:
    before = tree_digest(sdist_tree).digest
    if change == "exec bit":
        (sdist_tree / "scripts/run.sh").chmod(0o644)
    elif change == "rename":
        (sdist_tree / "data/blob.bin").rename(sdist_tree / "data/blob2.bin")
    elif change == "link target":
        (sdist_tree / "src/demo/alias.py").unlink()
        os.symlink("__init__.py", sdist_tree / "src/demo/alias.py")
    elif change == "new empty dir":
        (sdist_tree / "docs/more").mkdir()
    else:
        (sdist_tree / "docs/new.txt").write_bytes(b"")
    assert tree_digest(sdist_tree).digest != before


#: Debris at various depths: ignored in every tree. (``*.egg-info`` is apart: see below.)
DEBRIS = [
    Item(".git/objects/ab/cdef", b"blob"),
    Item(".git/HEAD", b"ref: refs/heads/main\n"),
    Item(".hg/store", b"x"),
    Item(".svn/entries", b"x"),
    Item("src/demo/__pycache__/core.cpython-311.pyc", b"\0"),
    Item("src/demo/old.pyc", b"\0"),
    Item(".tox/py311/bin/python", b"x"),
    Item(".nox/tests/x", b"x"),
    Item(".venv/pyvenv.cfg", b"x"),
    Item("build/lib/demo/stale.py", b"x"),
    Item("build/lib/demo/link.py", kind="symlink", target="stale.py"),
    Item("dist/demo-1.0.tar.gz", b"x"),
    Item(".buildprint/memo.json", b"{}"),
    Item(".pytest_cache/v/cache/lastfailed", b"{}"),
    Item("src/demo/.pytest_cache/README.md", b"x"),
    Item(".mypy_cache/3.11/demo.data.json", b"{}"),
    Item(".ruff_cache/0.4.0/123", b"x"),
    Item(".DS_Store", b"\0\0\0\1Bud1"),
    Item("docs/.DS_Store", b"\0\0\0\1Bud1"),
    Item(".coverage", b"SQLite format 3\0"),
    Item("docs/.git", b"gitdir: ../.git/modules/docs\n"),  # a submodule's .git file
    Item("docs/__pycache__", kind="symlink", target="."),
]
#: Names like debris that are sources: ``build``/``dist`` below the root, dot files
#: that are configuration, names that merely contain an ignored one.
LOOKALIKES = [
    Item("src/build/__init__.py", b""),
    Item("docs/dist/notes.txt", b"x"),
    Item(".gitignore", b"build/\n"),
    Item(".coveragerc", b"[run]\n"),
    Item("build.py", b""),
    Item("src/demo/data.pyc.txt", b"x"),
    Item("src/demo/buildinfo", kind="dir"),
]
EGG_INFO = [
    Item("src/demo.egg-info/PKG-INFO", b"Name: demo\n"),
    Item("src/demo.egg-info/SOURCES.txt", b"src/demo/data.txt\n"),
]


def _paths(root: Path) -> set[str]:
    """Every entry on disk below ``root``: files, folders, links (links not followed)."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


def test_debris_is_ignored_but_nested_build_folders_are_sources(sdist_tree: Path) -> None:
    before = tree_digest(sdist_tree)
    make_tree(sdist_tree, DEBRIS)
    assert tree_digest(sdist_tree) == before
    make_tree(sdist_tree, [Item("src/build/__init__.py", b"")])
    assert tree_digest(sdist_tree).digest != before.digest


def test_egg_info_counts_in_an_sdist_and_is_debris_in_a_checkout(tmp_path: Path) -> None:
    """An sdist's ``*.egg-info`` (its root holds ``PKG-INFO``) is what setuptools reads when
    building it; in a checkout it is what an earlier in-place build left behind."""
    sdist = make_tree(tmp_path / "sdist", SDIST)
    checkout = make_tree(tmp_path / "checkout", [i for i in SDIST if i.path != "PKG-INFO"])
    clean = {root: tree_digest(root) for root in (sdist, checkout)}
    for root in (sdist, checkout):
        make_tree(root, EGG_INFO)
    assert tree_digest(sdist).digest != clean[sdist].digest
    assert tree_digest(checkout) == clean[checkout]
    # A PKG-INFO that is not a regular file does not make an sdist.
    os.symlink("README", checkout / "PKG-INFO")
    with_link = tree_digest(checkout)
    (checkout / "src/demo.egg-info/SOURCES.txt").write_bytes(b"other\n")
    assert tree_digest(checkout) == with_link


@pytest.mark.parametrize("sdist", [True, False], ids=["sdist", "checkout"])
def test_the_copy_holds_exactly_the_digested_entries(tmp_path: Path, sdist: bool) -> None:
    base = SDIST if sdist else [i for i in SDIST if i.path != "PKG-INFO"]
    root = make_tree(tmp_path / "src-tree", [*base, *LOOKALIKES, *EGG_INFO, *DEBRIS])
    digested: list[str] = []
    digest = tree_digest(root, entries=digested)
    copied: list[str] = []
    copy = copy_tree(root, tmp_path / "copy", entries=copied)
    assert sorted(copied) == sorted(digested)
    assert _paths(tmp_path / "copy") == set(digested)
    assert copy == digest == tree_digest(tmp_path / "copy")
    expected = {i.path for i in [*base, *LOOKALIKES]} | {
        os.path.dirname(i.path) for i in [*base, *LOOKALIKES]
    }
    if sdist:
        expected |= {i.path for i in EGG_INFO} | {"src/demo.egg-info"}
    expected -= {""}
    assert set(digested) == expected


def test_the_copy_keeps_links_as_links_the_exec_bit_and_mtimes(
    sdist_tree: Path, tmp_path: Path
) -> None:
    (sdist_tree / "data/blob.bin").chmod(0o600)  # bits other than the exec bit: normalised
    (sdist_tree / "scripts/run.sh").chmod(0o700)
    copy = tmp_path / "copy"
    copy_tree(sdist_tree, copy)
    assert os.readlink(copy / "src/demo/alias.py") == "core.py"
    assert stat.S_IMODE((copy / "data/blob.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((copy / "scripts/run.sh").stat().st_mode) == 0o755
    source = (sdist_tree / "src/demo/core.py").stat()
    assert (copy / "src/demo/core.py").stat().st_mtime_ns == source.st_mtime_ns
    assert (copy / "src/demo/core.py").read_bytes() == (
        sdist_tree / "src/demo/core.py"
    ).read_bytes()


def test_copy_into_an_existing_folder_is_refused(sdist_tree: Path, tmp_path: Path) -> None:
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "mine").write_bytes(b"keep")
    with pytest.raises(InputError, match="cannot create"):
        copy_tree(sdist_tree, tmp_path / "copy")
    assert _paths(tmp_path / "copy") == {"mine"}


def test_links_inside_the_tree_are_recorded_not_followed(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "root",
        [
            Item("pkg/mod.py", b"x = 1\n"),
            Item("pkg/alias.py", kind="symlink", target="mod.py"),
            Item("docs/pkg", kind="symlink", target="../pkg"),
            Item("docs/up", kind="symlink", target="pkg/../docs"),  # via docs/pkg: root/docs
            Item("docs/dangling", kind="symlink", target="not-there"),
            Item("docs/chain", kind="symlink", target="pkg/alias.py"),
        ],
    )
    before = tree_digest(root)
    assert before.files == 6  # mod.py and five links; nothing behind the links counts twice
    (root / "pkg/mod.py").write_bytes(b"x = 2\n")
    after = tree_digest(root)
    assert after.digest != before.digest and after.files == before.files
    copy_tree(root, tmp_path / "copy")
    assert (tmp_path / "copy/docs/pkg").is_symlink()
    assert (tmp_path / "copy/docs/chain").read_bytes() == b"x = 2\n"


ESCAPING: dict[str, Callable[[Path, Path], str]] = {
    "absolute, outside": lambda outside, root: str(outside / "secret.txt"),
    "absolute, into the tree itself": lambda outside, root: str(root / "a.txt"),
    "dot-dot": lambda outside, root: "../outside/secret.txt",
    "dot-dot from below": lambda outside, root: "../../../outside",
    "through the root's own name": lambda outside, root: "../root/a.txt",
    "chain": lambda outside, root: "hop/../..",
}


@pytest.mark.parametrize("kind", sorted(ESCAPING))
def test_links_escaping_the_tree_are_refused_naming_link_and_target(
    tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"one")
    root = make_tree(tmp_path / "root", [Item("a.txt", b"a"), Item("sub/deeper", kind="dir")])
    target = ESCAPING[kind](outside, root)
    if kind == "chain":
        os.symlink(".", root / "hop")  # harmless alone; the link below leaves through it
    name = "sub/deeper/ext" if kind == "dot-dot from below" else "ext"
    os.symlink(target, root / name)
    with pytest.raises(InputError) as refused:
        tree_digest(root)
    assert refused.value.file == str(root)
    assert repr(name) in str(refused.value) and repr(target) in str(refused.value)
    with pytest.raises(InputError, match="outside the source tree"):
        copy_tree(root, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()  # the partial copy is removed


def test_a_link_loop_is_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", [Item("a.txt", b"a")])
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    with pytest.raises(InputError, match="outside the source tree"):
        tree_digest(root)


def test_links_in_ignored_folders_are_never_looked_at(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", [Item("a.txt", b"a")])
    (root / ".venv").mkdir()
    os.symlink("/usr/bin/python3", root / ".venv" / "python")
    copy = copy_tree(root, tmp_path / "copy")
    assert copy == tree_digest(root)
    assert _paths(tmp_path / "copy") == {"a.txt"}


def test_special_files_are_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "root", [Item("a.txt", b"a")])
    os.mkfifo(root / "pipe")
    with pytest.raises(InputError, match="pipe") as refused:
        tree_digest(root)
    assert refused.value.file == str(root)


def test_missing_root_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as missing:
        tree_digest(tmp_path / "nope")
    assert missing.value.file == str(tmp_path / "nope")


# -- memo ------------------------------------------------------------------------------------


def _files_opened(opens: list[str], root: Path) -> set[str]:
    """Root-relative paths of the files of ``root`` whose names were opened."""
    names = set(opens)
    found = {
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _dirs, files in os.walk(root)
        for name in files
        if name in names
    }
    return found


def test_warm_digest_reads_no_file_and_a_changed_file_is_read_again(
    sdist_tree: Path, tmp_path: Path, opens: list[str]
) -> None:
    memo_path = tmp_path / "memo.json"
    memo = TreeMemo.load(memo_path)
    cold = tree_digest(sdist_tree, memo)
    regular = {item.path for item in SDIST if item.kind == "file"}
    assert _files_opened(opens, sdist_tree) == regular
    memo.save()

    opens.clear()
    warm = tree_digest(sdist_tree, TreeMemo.load(memo_path))
    assert warm == cold
    assert _files_opened(opens, sdist_tree) == set()

    core = sdist_tree / "src/demo/core.py"
    core.write_bytes(b"changed\n")
    os.utime(core, (1_500_000_100, 1_500_000_100))
    opens.clear()
    changed = tree_digest(sdist_tree, memo)
    assert _files_opened(opens, sdist_tree) == {"src/demo/core.py"}
    assert changed.digest != cold.digest
    assert changed.digest == tree_digest(sdist_tree).digest  # memo-free walk agrees


def test_same_size_rewrite_with_new_mtime_is_read_again(sdist_tree: Path, opens: list[str]) -> None:
    memo = TreeMemo()
    tree_digest(sdist_tree, memo)
    init = sdist_tree / "src/demo/__init__.py"
    init.write_bytes(init.read_bytes().replace(b"1.0", b"2.0"))  # same size
    os.utime(init, (1_500_000_100, 1_500_000_100))
    opens.clear()
    tree_digest(sdist_tree, memo)
    assert _files_opened(opens, sdist_tree) == {"src/demo/__init__.py"}


def test_exec_bit_change_is_seen_without_reading(sdist_tree: Path, opens: list[str]) -> None:
    memo = TreeMemo()
    before = tree_digest(sdist_tree, memo)
    (sdist_tree / "data/blob.bin").chmod(0o755)
    opens.clear()
    after = tree_digest(sdist_tree, memo)
    assert _files_opened(opens, sdist_tree) == set()
    assert after.digest != before.digest
    assert after.digest == tree_digest(sdist_tree).digest


def test_recently_modified_files_are_not_memoised(sdist_tree: Path, opens: list[str]) -> None:
    fresh = sdist_tree / "src/demo/fresh.py"
    fresh.write_bytes(b"x = 1\n")  # mtime is now: could still be rewritten unseen
    memo = TreeMemo()
    tree_digest(sdist_tree, memo)
    opens.clear()
    tree_digest(sdist_tree, memo)
    assert _files_opened(opens, sdist_tree) == {"src/demo/fresh.py"}


def test_save_drops_entries_of_files_gone_and_is_atomic(sdist_tree: Path, tmp_path: Path) -> None:
    memo_path = tmp_path / "state" / "memo.json"
    memo = TreeMemo.load(memo_path)
    tree_digest(sdist_tree, memo)
    memo.save()
    saved = json.loads(memo_path.read_bytes())["entries"]
    assert "data/blob.bin" in saved
    (sdist_tree / "data/blob.bin").unlink()
    tree_digest(sdist_tree, memo)
    memo.save()
    saved = json.loads(memo_path.read_bytes())["entries"]
    assert "data/blob.bin" not in saved
    assert sorted(saved) == sorted(
        item.path for item in SDIST if item.kind == "file" and item.path != "data/blob.bin"
    )
    assert os.listdir(memo_path.parent) == ["memo.json"]  # no temp file left


@pytest.mark.parametrize("content", [b"", b"not json", b'{"format": "other"}', b'{"format": 1}'])
def test_corrupt_or_foreign_memo_is_empty(tmp_path: Path, content: bytes) -> None:
    memo_path = tmp_path / "memo.json"
    memo_path.write_bytes(content)
    assert len(TreeMemo.load(memo_path)) == 0


def test_memo_with_bad_entries_is_empty(tmp_path: Path, sdist_tree: Path) -> None:
    memo_path = tmp_path / "memo.json"
    memo = TreeMemo.load(memo_path)
    tree_digest(sdist_tree, memo)
    memo.save()
    data = json.loads(memo_path.read_bytes())
    data["entries"]["PKG-INFO"] = ["big", 0, 0, "x"]
    memo_path.write_text(json.dumps(data))
    assert len(TreeMemo.load(memo_path)) == 0
    assert len(TreeMemo.load(tmp_path / "missing.json")) == 0


def test_memo_does_not_trust_a_replaced_file_with_the_same_stat(
    sdist_tree: Path, opens: list[str]
) -> None:
    # A new file at the same path gets a new inode even if size and mtime match.
    memo = TreeMemo()
    tree_digest(sdist_tree, memo)
    init = sdist_tree / "src/demo/__init__.py"
    info = init.stat()
    replacement = sdist_tree / "src/demo/__init__.new"
    replacement.write_bytes(b"VERSION = '9.9'\n")
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
    held = os.open(init, os.O_RDONLY)  # keep the old inode alive so it is not reused
    try:
        os.replace(replacement, init)
        opens.clear()
        tree_digest(sdist_tree, memo)
    finally:
        os.close(held)
    assert "src/demo/__init__.py" in _files_opened(opens, sdist_tree)


def test_memo_counts_hits_and_reads_and_knows_when_it_changed(
    sdist_tree: Path, tmp_path: Path
) -> None:
    regular = sum(1 for item in SDIST if item.kind == "file")
    memo = TreeMemo.load(tmp_path / "memo.json")
    tree_digest(sdist_tree, memo)
    assert (memo.hits, memo.reads, memo.changed) == (0, regular, True)
    memo.save()
    assert not memo.changed

    loaded = TreeMemo.load(tmp_path / "memo.json")
    tree_digest(sdist_tree, loaded)
    assert (loaded.hits, loaded.reads, loaded.changed) == (regular, 0, False)

    (sdist_tree / "data/blob.bin").unlink()  # a file gone is a change, with nothing read
    tree_digest(sdist_tree, loaded)
    assert (loaded.hits, loaded.reads, loaded.changed) == (regular - 1, 0, True)
    tree_digest(sdist_tree, loaded)
    assert loaded.changed  # still unsaved


def test_memo_save_without_a_path_is_refused() -> None:
    with pytest.raises(ValueError):
        TreeMemo().save()


def test_reference_implementation_in_the_docs_agrees(sdist_tree: Path) -> None:
    """docs/source-digest.md is precise enough to recompute the digest independently."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "source-digest.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    assert namespace["digest"](str(sdist_tree)) == tree_digest(sdist_tree).digest
