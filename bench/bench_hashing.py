"""Benchmark: canonical archive hashing vs bare zlib inflate, and file_digest vs hashlib.

Run ``python3 bench/bench_hashing.py``. Test data is generated once under bench/.data/
(gitignored). Each comparison alternates the two contenders and keeps the best of
several rounds, so a busy machine penalises both alike; ratios are throughput ratios
(higher is better for buildprint).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from buildprint.inputs.archive import archive_digest
from buildprint.inputs.files import file_digest

__all__ = ["main"]

DATA = Path(__file__).resolve().parent / ".data"


def _text_pool(rng: random.Random, size: int) -> bytes:
    """Source-like text: indented lines of identifiers, compresses about like real code."""
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(2, 10)))
        for _ in range(800)
    ]
    lines: list[str] = []
    total = 0
    while total < size:
        line = (
            "    " * rng.randint(0, 3) + " ".join(rng.choices(words, k=rng.randint(3, 10))) + "\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def make_sdist(path: Path, text_mb: int, random_mb: int) -> Path:
    """A large .tar.gz: many source-like text files, some random blobs, many tiny files."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20240601)
    pool = _text_pool(rng, 8 << 20)
    temp = path.with_suffix(".part")
    with tarfile.open(temp, "w:gz", compresslevel=6) as tar:

        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(f"bigpkg-1.0/{name}")
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))

        for i in range(text_mb * 10):  # 100 KB each
            start = rng.randrange(0, len(pool) - 100_000)
            add(f"src/mod{i // 100}/file{i}.py", pool[start : start + 100_000])
        for i in range(random_mb):
            add(f"data/blob{i}.bin", rng.randbytes(1 << 20))
        for i in range(2000):
            start = rng.randrange(0, len(pool) - 4000)
            add(
                f"tests/t{i // 50}/test_{i}.py",
                pool[start : start + rng.randint(200, 4000)],
                0o755 if i % 7 == 0 else 0o644,
            )
    temp.rename(path)
    return path


def bare_zlib_inflate(path: Path) -> int:
    """The baseline: stream the file through zlib and discard the output."""
    inflater = zlib.decompressobj(31)
    produced = 0
    with open(path, "rb", buffering=0) as raw:
        while chunk := raw.read(1 << 20):
            produced += len(inflater.decompress(chunk))
    return produced + len(inflater.flush())


def best_of(rounds: int, *contenders: Callable[[], object]) -> list[float]:
    """Best wall time of each contender, alternating them round by round."""
    best = [float("inf")] * len(contenders)
    for _ in range(rounds):
        for index, run in enumerate(contenders):
            start = time.perf_counter()
            run()
            best[index] = min(best[index], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-mb", type=int, default=300, help="uncompressed MB of text files")
    parser.add_argument("--random-mb", type=int, default=160, help="MB of incompressible files")
    parser.add_argument(
        "--file-mb", type=int, default=512, help="size of the file_digest test file"
    )
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    started = time.perf_counter()
    sdist = make_sdist(
        DATA / f"bigpkg-{args.text_mb}-{args.random_mb}.tar.gz", args.text_mb, args.random_mb
    )
    ready = time.perf_counter() - started
    print(
        f"archive: {sdist.name}, {sdist.stat().st_size / 1e6:.0f} MB (data ready in {ready:.1f} s)"
    )
    result = archive_digest(sdist)
    assert result.raw_sha256 == hashlib.sha256(sdist.read_bytes()).hexdigest()
    print(
        f"  {result.files} files, {result.size / 1e6:.0f} MB content, digest {result.digest[:16]}…"
    )
    print(f"  load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    t_zlib, t_ours = best_of(
        args.rounds, lambda: bare_zlib_inflate(sdist), lambda: archive_digest(sdist)
    )
    mb = sdist.stat().st_size / 1e6
    print(f"  bare zlib inflate      {t_zlib:6.3f} s  {mb / t_zlib:7.0f} MB/s (compressed)")
    print(f"  archive_digest         {t_ours:6.3f} s  {mb / t_ours:7.0f} MB/s (canonical + raw)")
    print(f"  ratio archive_digest/zlib throughput = {t_zlib / t_ours:.2f}  (target >= 0.85)")

    big = DATA / f"file-{args.file_mb}mb.bin"
    if not big.exists():
        big.parent.mkdir(parents=True, exist_ok=True)
        with open(big, "wb") as out:
            for _ in range(args.file_mb):
                out.write(os.urandom(1 << 20))

    def with_hashlib() -> str:
        with open(big, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    assert file_digest(big) == with_hashlib()
    t_lib, t_mine = best_of(args.rounds + 2, with_hashlib, lambda: file_digest(big))
    print(f"file: {big.name}")
    print(f"  hashlib.file_digest    {t_lib:6.3f} s  {args.file_mb / t_lib * 1.048576:7.0f} MB/s")
    print(f"  files.file_digest      {t_mine:6.3f} s  {args.file_mb / t_mine * 1.048576:7.0f} MB/s")
    print(f"  ratio file_digest/hashlib throughput = {t_lib / t_mine:.2f}  (target >= 0.95)")
    print(f"total bench time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
