"""Tree digests: the canonical scheme over a directory, ignored debris, and the stat memo."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buildprint.errors import InputError
from buildprint.inputs.tree import TreeMemo, tree_digest
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


def test_debris_is_ignored_but_nested_build_folders_are_sources(sdist_tree: Path) -> None:
    before = tree_digest(sdist_tree)
    debris = [
        Item(".git/objects/ab/cdef", b"blob"),
        Item(".hg/store", b"x"),
        Item(".svn/entries", b"x"),
        Item("src/demo/__pycache__/core.cpython-311.pyc", b"\0"),
        Item("src/demo/old.pyc", b"\0"),
        Item(".tox/py311/bin/python", b"x"),
        Item(".nox/tests/x", b"x"),
        Item(".venv/pyvenv.cfg", b"x"),
        Item("src/demo.egg-info/PKG-INFO", b"x"),
        Item("build/lib/demo/core.py", b"x"),
        Item("dist/demo-1.0.tar.gz", b"x"),
        Item(".buildprint/memo.json", b"{}"),
    ]
    make_tree(sdist_tree, debris)
    assert tree_digest(sdist_tree) == before
    make_tree(sdist_tree, [Item("src/build/__init__.py", b"")])
    assert tree_digest(sdist_tree).digest != before.digest


def test_symlinks_are_recorded_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"one")
    root = make_tree(tmp_path / "root", [Item("a.txt", b"a")])
    os.symlink(outside, root / "ext")
    before = tree_digest(root)
    assert before.files == 2  # a.txt and the link; nothing behind the link
    (outside / "secret.txt").write_bytes(b"two")
    (outside / "more.txt").write_bytes(b"more")
    assert tree_digest(root) == before


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
