"""Benchmark: the signature computation's share of a real cold build.

Run ``python3 bench/bench_overhead.py [--offline] [--keep]``. It copies ``examples/demo`` (three
PyPI sdists: pure Python, a C extension, a patched one, a plugin) to a scratch folder with an
empty store and builds it with ``Engine.build()``; with ``--offline``, or when PyPI cannot be
reached, it builds local fixture sdists (setuptools, a C extension, flit_core) against the
test suite's wheel cache instead. Signature work is the time spent deciding each package
(``Outcome.signature_seconds``: every component, plugin digest, compose, store lookup) plus the
time spent computing source archive digests while loading the graph; it is reported as a share
of the build's wall time and of the packages' own build time (``Outcome.seconds``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import buildprint.resolve.sources as sources
from buildprint import Engine
from buildprint.builder.outcome import Outcome

__all__ = ["main", "measure", "offline_project"]

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo"
WHEEL_CACHE = Path.home() / ".cache" / "buildprint-tests" / "wheels"
#: The function the source resolver computes archive digests with (timed by wrapping it).
_DIGEST_FUNCTION = "archive_digest"
IGNORED = shutil.ignore_patterns(".buildprint", "wheelhouse", "buildprint.lock", "__pycache__")


def pypi_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=timeout):
            return True
    except OSError:
        return False


def demo_project(dest: Path) -> Path:
    """A scratch copy of the demo without its store, wheelhouse or lock: a cold build."""
    shutil.copytree(DEMO, dest, ignore=IGNORED)
    return dest


def offline_project(dest: Path) -> Path:
    """Local fixture sdists built against the wheel cache: no network needed."""
    sys.path.insert(0, str(REPO))
    # The test suite's fixture factory: real, deterministic sdists for each backend.
    make_sdist: Callable[..., Path] = importlib.import_module("tests.support.sdists").make_sdist

    if not any(WHEEL_CACHE.glob("setuptools-*.whl")):
        raise SystemExit(f"offline mode needs setuptools/flit_core wheels in {WHEEL_CACHE}")
    (dest / "sdists").mkdir(parents=True)
    (dest / "packages").mkdir()
    plans = [("pure-alpha", "setuptools"), ("speedy-beta", "c-ext"), ("flit-gamma", "flit_core")]
    requirements = []
    for name, backend in plans:
        sdist = make_sdist(dest / "sdists", name, "1.0", backend)
        (dest / "packages" / f"{name}.toml").write_text(
            f'source = {{ path = "sdists/{sdist.name}" }}\nenv = {{ CFLAGS = "-O2" }}\n'
        )
        requirements.append(f"{name}==1.0\n")
    (dest / "requirements.txt").write_text("".join(requirements))
    (dest / "buildprint.toml").write_text(f'[project]\nindex-url = "{WHEEL_CACHE}"\n')
    return dest


@contextlib.contextmanager
def timing_archive_digests(total: list[float]) -> Iterator[None]:
    """Add the time of every source archive digest made while loading the graph to ``total``."""
    # Patched where the resolver looks it up, so only source digests are counted.
    original: Callable[..., Any] = getattr(sources, _DIGEST_FUNCTION)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - started

    setattr(sources, _DIGEST_FUNCTION, timed)
    try:
        yield
    finally:
        setattr(sources, _DIGEST_FUNCTION, original)


def measure(project: Path, jobs: int) -> tuple[list[Outcome], float, float]:
    """Cold-build ``project``; return the outcomes, the wall time and the archive digest time."""
    digest_time = [0.0]
    with timing_archive_digests(digest_time), Engine(project) as engine:
        started = time.perf_counter()
        outcomes = engine.build(jobs=jobs)
        wall = time.perf_counter() - started
    return outcomes, wall, digest_time[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--offline", action="store_true", help="local fixture sdists")
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="build workers (default 1)")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        offline = args.offline or not pypi_reachable()
        if offline:
            project = offline_project(scratch / "project")
            print(f"project: local fixture sdists in {project}")
        else:
            project = demo_project(scratch / "project")
            print(f"project: a cold copy of examples/demo in {project}")
        outcomes, wall, digests = measure(project, args.jobs)
        failed = [o for o in outcomes if o.done != "built"]
        if failed:
            for o in failed:
                print(f"{o.decision.node.name}: {o.done} {o.error or ''}", file=sys.stderr)
            return 1
        print(f"\n{'package':<12} {'version':<8} {'build s':>8} {'signature s':>12} {'share':>7}")
        for o in outcomes:
            share = 100 * o.signature_seconds / o.seconds if o.seconds else 0.0
            node = o.decision.node
            print(
                f"{node.name:<12} {node.version:<8} {o.seconds:8.2f} "
                f"{o.signature_seconds:12.4f} {share:6.2f}%"
            )
        decide = sum(o.signature_seconds for o in outcomes)
        packages = sum(o.seconds for o in outcomes)
        signature = decide + digests
        print(
            f"\nbuild() wall time {wall:.2f} s (includes locking build requirements and "
            f"downloads); packages' own time {packages:.2f} s"
        )
        print(
            f"signature work {signature * 1000:.1f} ms = deciding {decide * 1000:.1f} ms "
            f"+ source archive digests {digests * 1000:.1f} ms"
        )
        share_wall = 100 * signature / wall
        share_packages = 100 * decide / packages
        print(
            f"share: {share_wall:.2f}% of the build's wall time; deciding is "
            f"{share_packages:.2f}% of the packages' own time "
            f"(target < 2%: {'met' if share_wall < 2 else 'MISSED'})"
        )
        if args.keep:
            print(f"kept: {project}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
