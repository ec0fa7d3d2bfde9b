"""Reading strace's output back: what was read, executed, loaded by the loader, written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from buildprint.builder.trace import parse_trace, traced, tracer

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


@pytest.mark.skipif(tracer().path is None, reason="strace cannot trace here")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_a_real_compile_reads_its_headers(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "x.h").write_text("#define X 0\n")
    (tmp_path / "inc" / "unused.h").write_text("#define U 0\n")
    (tmp_path / "a.c").write_text('#include <stdio.h>\n#include "x.h"\nint main(void){return X;}\n')
    strace = tracer().path
    assert strace is not None
    command = traced(["gcc", "-Iinc", "a.c", "-o", "a.out"], strace, tmp_path / "trace")
    subprocess.run(command, cwd=tmp_path, check=True)
    reads = parse_trace(sorted(tmp_path.glob("trace.*")))
    here = str(tmp_path.resolve())
    assert f"{here}/inc/x.h" in reads.read and f"{here}/a.c" in reads.read
    assert f"{here}/inc/unused.h" not in reads.read
    assert "/usr/include/stdio.h" in reads.read
    assert f"{here}/a.out" in reads.written
    assert any(p.endswith("/cc1") for p in reads.executed)
