"""Benchmark: what checking every blob that leaves the store costs a warm build.

Run ``python3 bench/bench_verify.py [--packages 100] [--wheel-kb 400] [--rounds 5] [--keep]``.
It generates a project of N packages (small sdists made here, local paths, an empty index),
makes every package "already built" without building (the lock step pins the setuptools
wheel of the test suite's cache; each planned signature gets a stored record whose wheel
carries ``--wheel-kb`` of incompressible payload), then, round after round, times a warm
``Engine.build()`` with an empty wheelhouse — every wheel copied out of the store — two ways
in the same process, interleaved:

- verified: ``LocalStore.copy_blob`` as shipped (sha256 and size checked while copying);
- plain: ``copy_blob`` replaced by ``shutil.copyfile`` (no hash: what placing cost before).

It prints both (min and median) and their ratio against the target (verification at most
5 %), the warm no-op plan both ways (it must not change: a plan reads no blob, which an
audit hook checks), and the wheelhouse's placing time per wheel with the ``simple/`` pages and
the memo written after every wheel (as before batching) and once per run (now).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from buildprint import Engine
from buildprint.builder.wheel import artifact_digest, embed_manifest
from buildprint.builder.wheelhouse import Wheelhouse
from buildprint.project.settings import PackageSettings
from buildprint.resolve.lockfile import LockedBuildDeps, PinnedWheel
from buildprint.resolve.sources import ResolvedSource
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact

__all__ = ["main"]

WHEEL_CACHE = Path.home() / ".cache" / "buildprint-tests" / "wheels"
TARGET = 1.05  # verified / plain


def _name(number: int) -> str:
    return f"verify-pkg-{number:04d}"


def _module(number: int) -> str:
    return f"verify_pkg_{number:04d}"


def _sdist(path: Path, number: int) -> None:
    base = f"{_module(number)}-1.0.0"
    files = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {_name(number)}\nVersion: 1.0.0\n",
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{_name(number)}"\nversion = "1.0.0"\n',
        f"{_module(number)}/__init__.py": f"VALUE = {number}\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))


def generate_project(root: Path, count: int) -> None:
    """N packages with local sdists and an empty local index: no network."""
    for folder in ("sdists", "packages", "index"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "buildprint.toml").write_text('[project]\nindex-url = "index"\n')
    for number in range(count):
        sdist = root / "sdists" / f"{_module(number)}-1.0.0.tar.gz"
        _sdist(sdist, number)
        (root / "packages" / f"{_name(number)}.toml").write_text(
            f'source = {{ path = "sdists/{sdist.name}" }}\n'
        )
    (root / "requirements.txt").write_text("".join(f"{_name(n)}==1.0.0\n" for n in range(count)))


def _setuptools_pin() -> PinnedWheel:
    found = sorted(WHEEL_CACHE.glob("setuptools-*.whl"))
    if not found:
        raise SystemExit(f"no setuptools wheel in {WHEEL_CACHE}: run the test suite once")
    wheel = found[-1]
    return PinnedWheel(
        name="setuptools",
        version=wheel.name.split("-")[1],
        filename=wheel.name,
        url=wheel.resolve().as_uri(),
        sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
    )


def _fake_wheel(path: Path, number: int, payload: int) -> None:
    """A valid wheel with ``payload`` random bytes (stored, not compressed) in it."""
    import base64

    module = _module(number)
    info = f"{module}-1.0.0.dist-info"
    members = {
        f"{module}/__init__.py": f"VALUE = {number}\n".encode(),
        f"{module}/payload.bin": os.urandom(payload),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {_name(number)}\nVersion: 1.0.0\n".encode()
        ),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{n},sha256={b64(d)},{len(d)}\n" for n, d in members.items())
    record += f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", (1980, 1, 1, 0, 0, 0)), record)


def mark_all_built(root: Path, payload: int) -> None:
    """Lock every package (a stand-in lock step) and store a record per planned signature."""
    pin = _setuptools_pin()

    def lock_step(
        name: str,
        previous: LockedBuildDeps | None,
        source: ResolvedSource,
        patches: list[Path],
        settings: PackageSettings,
    ) -> LockedBuildDeps:
        del name, previous, source, patches, settings
        return LockedBuildDeps(requires=["setuptools>=61"], wheels=[pin])

    with Engine(root) as engine, tempfile.TemporaryDirectory(prefix="bench-wheels-") as tmp:
        engine.preparer.lock = lock_step  # type: ignore[method-assign]
        for decision in engine.plan():
            manifest = decision.manifest
            if decision.action != "build" or manifest is None:
                raise SystemExit(f"unexpected decision for {decision.node.name}: {decision.action}")
            number = int(decision.node.name.rsplit("-", 1)[1])
            raw = Path(tmp) / f"{_module(number)}-1.0.0-py3-none-any.whl"
            _fake_wheel(raw, number, payload)
            final = embed_manifest(raw, manifest.to_bytes(), Path(tmp) / "final")
            sha = engine.store.put_blob(final)
            engine.store.put_record(
                ActionRecord(
                    signature=manifest.signature,
                    name=decision.node.name,
                    version=decision.node.version,
                    manifest=manifest.to_json(),
                    artifacts=(
                        Artifact(final.name, sha, final.stat().st_size, artifact_digest(final)),
                    ),
                )
            )


@contextlib.contextmanager
def plain_copies() -> Iterator[None]:
    """``LocalStore.copy_blob`` as a plain ``shutil.copyfile`` (no hash, no size check)."""
    verified = LocalStore.copy_blob

    def plain(self: LocalStore, digest: str, dest: Path, *, size: int | None = None) -> str:
        del size
        shutil.copyfile(self._blob_file(digest), dest)
        return digest

    LocalStore.copy_blob = plain  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalStore.copy_blob = verified  # type: ignore[method-assign]


def _warm_build(root: Path) -> float:
    shutil.rmtree(root / "wheelhouse", ignore_errors=True)
    os.sync()  # no variant pays for flushing another's files
    started = time.perf_counter()
    with Engine(root) as engine:
        outcomes = engine.build()
    elapsed = time.perf_counter() - started
    if {o.done for o in outcomes} != {"reused"} or len(
        list((root / "wheelhouse").glob("*.whl"))
    ) != len(outcomes):
        raise SystemExit("the warm build did not reuse every package into the wheelhouse")
    return elapsed


def _warm_plan(root: Path) -> float:
    started = time.perf_counter()
    with Engine(root) as engine:
        decisions = engine.plan()
    elapsed = time.perf_counter() - started
    if {d.action for d in decisions} != {"reuse"}:
        raise SystemExit("the warm plan did not reuse everything")
    return elapsed


def _blob_reads(root: Path, action: Callable[[], object]) -> int:
    """How many files under the store's ``cas/`` ``action`` opens (an audit hook)."""
    cas = str(root / ".buildprint" / "cas")
    opened: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if watching[0] and event == "open" and str(args[0]).startswith(cas):
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # cannot be removed: switched off below
    try:
        action()
    finally:
        watching[0] = False
    return len(opened)


def placing_per_wheel(root: Path, *, flush_each: bool) -> float:
    """Seconds per wheel to place every stored wheel into an empty wheelhouse, flushing the
    pages and the memo after each wheel (before batching) or once (now)."""
    store = LocalStore(root / ".buildprint")
    records = list(store.records())
    target = root / "wheelhouse-placing"
    shutil.rmtree(target, ignore_errors=True)
    house = Wheelhouse(target)
    started = time.perf_counter()
    for record in records:
        for artifact in record.artifacts:
            house.place(
                artifact.filename,
                artifact.sha256,
                lambda dest, a=artifact: store.copy_blob(a.sha256, dest, size=a.size),
            )
        if flush_each:
            house.flush()
    house.flush()
    elapsed = time.perf_counter() - started
    store.close()
    shutil.rmtree(target, ignore_errors=True)
    return elapsed / len(records)


def _summary(times: Sequence[float]) -> str:
    return f"min {min(times):.3f} s, median {statistics.median(times):.3f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--wheel-kb", type=int, default=400, help="payload per wheel")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="work here (kept) instead of a temp folder")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)

    scratch = args.dir or Path(tempfile.mkdtemp(prefix="bench-verify-"))
    root = scratch / "project"
    try:
        generate_project(root, args.packages)
        mark_all_built(root, args.wheel_kb * 1024)
        _warm_build(root)  # the environment and memos warm, the lock complete
        print(
            f"{args.packages} packages, {args.wheel_kb} KB of payload per wheel, "
            f"{args.rounds} rounds"
        )

        verified, plain = [], []
        for _ in range(args.rounds):
            verified.append(_warm_build(root))
            with plain_copies():
                plain.append(_warm_build(root))
        ratio = min(verified) / min(plain)
        per_round = statistics.median(v / p for v, p in zip(verified, plain, strict=True))
        print("warm build, empty wheelhouse:")
        print(f"  verified (copy_blob, hashed while copying): {_summary(verified)}")
        print(f"  plain (shutil.copyfile):                    {_summary(plain)}")
        mark = "ok" if ratio <= TARGET else "MISSED"
        print(
            f"  ratio verified/plain: {ratio:.3f} (best rounds), {per_round:.3f} (median of "
            f"rounds); target <= {TARGET:.2f}: {mark}"
        )

        plans, plain_plans = [], []
        for _ in range(args.rounds):
            plans.append(_warm_plan(root))
            with plain_copies():
                plain_plans.append(_warm_plan(root))
        reads = _blob_reads(root, lambda: _warm_plan(root))
        print("warm no-op plan:")
        print(f"  verified: {_summary(plans)}; plain: {_summary(plain_plans)}")
        print(f"  blobs opened by a no-op plan: {reads} (must be 0)")
        if reads:
            print("  MISSED: a no-op plan read blobs")

        before = min(placing_per_wheel(root, flush_each=True) for _ in range(args.rounds))
        after = min(placing_per_wheel(root, flush_each=False) for _ in range(args.rounds))
        print("wheelhouse placing (verified copy + pages + memo), per wheel:")
        print(f"  pages and memo after every wheel (before batching): {before * 1000:.2f} ms")
        print(f"  pages and memo once per run (now):                  {after * 1000:.2f} ms")
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        elif args.dir is None:
            print(f"kept {scratch}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
