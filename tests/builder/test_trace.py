"""Reading strace's output back: what was read, executed, loaded by the loader, written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from buildprint.builder.trace import TRACE_VARIABLE, parse_trace, tracer

TRACE = """\
execve("/usr/bin/gcc", ["gcc", "-Iinc", "a.c"], 0x7ffd /* 35 vars */) = 0
openat(AT_FDCWD</w>, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3</etc/ld.so.cache>
openat(AT_FDCWD</w>, "/lib/libc.so.6", O_RDONLY|O_CLOEXEC) = 3</usr/lib/libc.so.6>
openat(AT_FDCWD</w>, "a.c", O_RDONLY|O_NOCTTY) = 3</w/a.c>
openat(AT_FDCWD</w>, "inc/x.h", O_RDONLY|O_NOCTTY) = 4</w/inc/x.h>
openat(AT_FDCWD</w>, "/usr/lib/libc.so", O_RDONLY) = 5</usr/lib/libc.so>
openat(AT_FDCWD</w>, "/tmp/cc1.s", O_RDWR|O_CREAT|O_EXCL, 0600) = 3</tmp/cc1.s>
openat(AT_FDCWD</w>, "/tmp/cc1.s", O_RDONLY) = 3</tmp/cc1.s>
openat(AT_FDCWD</w>, "out", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 3</w/out>
openat2(AT_FDCWD</w>, "b.h", {flags=O_RDONLY|O_CLOEXEC, resolve=0}, 24) = 6</w/b\\303\\251.h>
creat("/w/a.out", 0755) = 7</w/a.out>
openat(AT_FDCWD</w>, "shadow/x.h", O_RDONLY|O_NOCTTY) = -1 ENOENT (No such file or directory)
openat(AT_FDCWD</w>, "/lib/libm.so.6", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file)
openat(AT_FDCWD</w>, "/w/new.o", O_WRONLY|O_CREAT, 0644) = -1 EACCES (Permission denied)
"""


def test_parse_sorts_each_open_by_its_flags(tmp_path: Path) -> None:
    (tmp_path / "trace.100").write_text(TRACE)
    (tmp_path / "trace.101").write_text(
        'execve("/usr/lib/gcc/cc1", ["cc1"], 0x1 /* 3 vars */) = 0\n'
    )
    reads = parse_trace(sorted(tmp_path.glob("trace.*")))
    assert reads.read == {
        "/etc/ld.so.cache",
        "/w/a.c",
        "/w/inc/x.h",
        "/usr/lib/libc.so",  # opened by the linker: an input
        "/w/bé.h",
    }
    assert reads.loaded == {"/usr/lib/libc.so.6"}  # by the dynamic loader
    assert reads.written == {"/tmp/cc1.s", "/w/a.out"}  # written, then read: never an input
    assert {Path(p).name for p in reads.executed} >= {"cc1"}
    # Looked for and missing: the build's search, not the loader's nor a failed write.
    assert reads.absent == {"/w/shadow/x.h"}


@pytest.mark.parametrize("kind", ["preload", "strace"])
@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_a_real_compile_reads_its_headers(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TRACE_VARIABLE, kind)
    tracer.cache_clear()
    try:
        tracing = tracer()
    finally:
        tracer.cache_clear()
    if tracing.kind != kind:
        pytest.skip(f"no {kind} tracer here: {tracing.problem}")
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "x.h").write_text("#define X 0\n")
    (tmp_path / "inc" / "unused.h").write_text("#define U 0\n")
    (tmp_path / "a.c").write_text('#include <stdio.h>\n#include "x.h"\nint main(void){return X;}\n')
    folder = tmp_path / "trace"
    folder.mkdir()
    command = tracing.command(["gcc", "-Iinc", "a.c", "-o", "a.out"], folder)
    subprocess.run(command, cwd=tmp_path, env=tracing.environ(os.environ, folder), check=True)
    reads = parse_trace(sorted(folder.glob("trace.*")))
    here = str(tmp_path.resolve())
    assert f"{here}/inc/x.h" in reads.read and f"{here}/a.c" in reads.read
    assert f"{here}/inc/unused.h" not in reads.read
    assert f"{here}/inc/stdio.h" in reads.absent  # -Iinc is searched before /usr/include
    assert "/usr/include/stdio.h" in reads.read
    assert f"{here}/a.out" in reads.written and f"{here}/a.out" not in reads.read
    assert any(p.endswith("/cc1") for p in reads.executed)
    assert any(Path(p).name.startswith("libc.so") for p in reads.loaded)  # gcc's own libc


def test_the_preload_tracer_lines_are_read_too(tmp_path: Path) -> None:
    (tmp_path / "kept.h").write_text("")
    (tmp_path / "trace.7").write_text(
        f"X\t/usr/bin/gcc\nR\t{tmp_path}/kept.h\nR\t{tmp_path}/out.o\nW\t{tmp_path}/out.o\n"
        "L\t/usr/lib/libc.so.6\nL\t/cache/libbuildprint-preload.so\n"
        f"N\t{tmp_path}/shadow/kept.h\n"
    )
    reads = parse_trace([tmp_path / "trace.7"])
    assert reads.read == {str((tmp_path / "kept.h").resolve())}
    assert reads.written == {str((tmp_path / "out.o").resolve())}
    assert reads.executed == {os.path.realpath("/usr/bin/gcc")}
    assert reads.loaded == {"/usr/lib/libc.so.6"}  # the tracer itself aside
    assert reads.absent == {str(tmp_path.resolve() / "shadow" / "kept.h")}
