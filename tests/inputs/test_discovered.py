"""Discovered inputs: ignore patterns, stat-memoized digests, variant keys, sorting reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from buildprint.inputs.discovered import (
    MISSING,
    ReadReport,
    SystemFiles,
    classify,
    ignored_by,
    variant_key,
)
from buildprint.signature.canonical import digest_bytes

SIGNATURE = digest_bytes(b"a signature")


class DictMemo:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.puts = 0

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.puts += 1
        self.data[key] = value

    def save(self) -> None:
        pass


def test_patterns_match_folders_with_two_stars_and_names_with_one() -> None:
    assert ignored_by("/usr/share/zoneinfo/Europe/Paris", ["/usr/share/zoneinfo/**"])
    assert ignored_by("/usr/lib/x86_64-linux-gnu/gconv/x.so", ["/usr/lib/*/gconv/**"])
    assert ignored_by("/usr/lib/a/b/gconv/x.so", ["/usr/lib/*/gconv/**"]) is None
    assert ignored_by("/usr/include/foo.h", ["/usr/include/*.h"]) == "/usr/include/*.h"
    assert ignored_by("/usr/include/sys/foo.h", ["/usr/include/*.h"]) is None
    assert ignored_by("/usr/include/foo.hpp", ["/usr/include/foo.h"]) is None


def test_a_digest_is_reread_only_when_the_stat_moves(tmp_path: Path) -> None:
    header = tmp_path / "foo.h"
    header.write_text("#define A 1\n")
    memo = DictMemo()
    files = SystemFiles(memo)
    first = files.digest(str(header))
    assert first == hashlib.sha256(b"#define A 1\n").hexdigest()
    assert files.digest(str(header)) == first and memo.puts == 1  # answered by the memo
    stat = header.stat()
    os.utime(header, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a touch
    assert files.digest(str(header)) == first and memo.puts == 2  # read again, same digest
    header.write_text("#define A 2\n")
    assert files.digest(str(header)) == hashlib.sha256(b"#define A 2\n").hexdigest()
    header.unlink()
    assert files.digest(str(header)) == MISSING


def test_changed_names_what_moved_and_skips_what_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "a.h").write_text("a")
    (tmp_path / "b.h").write_text("b")
    files = SystemFiles()
    recorded = {str(tmp_path / n): files.digest(str(tmp_path / n)) for n in ("a.h", "b.h")}
    recorded[str(tmp_path / "gone.h")] = digest_bytes(b"gone")
    assert files.changed(recorded) == [(str(tmp_path / "gone.h"), digest_bytes(b"gone"), MISSING)]
    (tmp_path / "a.h").write_text("A")
    # One run looks at a file once (a plan is one moment); the next run sees the edit.
    assert len(files.changed(recorded)) == 1
    assert [p for p, _old, _new in SystemFiles().changed(recorded, [f"{tmp_path}/g*"])] == [
        str(tmp_path / "a.h")
    ]


def test_a_variant_key_follows_what_the_files_hold(tmp_path: Path) -> None:
    header = tmp_path / "foo.h"
    header.write_text("one")
    files = SystemFiles()
    first = variant_key(SIGNATURE, [str(header)], files)
    assert variant_key(SIGNATURE, [str(header)], files) == first
    assert variant_key(digest_bytes(b"other"), [str(header)], files) != first
    header.write_text("two")
    second = variant_key(SIGNATURE, [str(header)], files)
    assert second != first
    header.write_text("one")
    assert variant_key(SIGNATURE, [str(header)], files) == first


def test_classify_sorts_reads_into_groups(tmp_path: Path) -> None:
    tree, env, system = tmp_path / "tree", tmp_path / "env", tmp_path / "system"
    for folder in (tree / "pkg", env / "lib", system):
        folder.mkdir(parents=True)
    for path in (tree / "pkg" / "a.c", env / "lib" / "x.py", system / "foo.h", system / "cc"):
        path.write_text(path.name)
    report = classify(
        [
            str(tree / "pkg" / "a.c"),
            str(tree / "pkg"),  # a folder: not an input
            str(env / "lib" / "x.py"),
            str(system / "foo.h"),
            str(system / "cc"),
            "/etc/ld.so.cache",
            "/proc/self/status",
        ],
        [str(system / "libfoo.so.1"), str(env / "lib" / "libpython.so")],
        tree=str(tree),
        environment=[str(env)],
        toolchain=[str(system / "cc")],
        ignore=[],
        files=SystemFiles(),
        variables={"CFLAGS": "declared"},
        tracer="strace 6.1",
    )
    assert report.source == ("pkg/a.c",)
    assert report.environment == (str(env / "lib" / "x.py"),)
    assert report.toolchain == (str(system / "cc"),)
    assert report.discovered == {str(system / "foo.h"): digest_bytes(b"foo.h")}
    assert report.loaded == (str(system / "libfoo.so.1"),)  # the environment's own aside
    assert report.ignored == {
        "/etc/ld.so.cache": "/etc/ld.so.cache",
        "/proc/self/status": "/proc/**",
    }
    assert ReadReport.from_json(report.to_json()) == report

    ignoring = classify(
        [str(system / "foo.h")],
        [],
        tree=str(tree),
        environment=[],
        toolchain=[],
        ignore=[f"{system}/**"],
        files=SystemFiles(),
        variables={},
        tracer="",
    )
    assert ignoring.discovered == {} and ignoring.ignored == {str(system / "foo.h"): f"{system}/**"}

    searched = classify(
        [],
        [],
        absent=[
            str(system / "x.h"),
            str(system / "libz.so"),
            str(system / "a.py"),
            str(tree / "y.h"),
        ],
        tree=str(tree),
        environment=[],
        toolchain=[],
        ignore=[],
        files=SystemFiles(),
        variables={},
        tracer="",
    )
    # Headers and libraries must stay absent; a module or a file in the tree is not checked.
    assert searched.discovered == {str(system / "x.h"): MISSING, str(system / "libz.so"): MISSING}
