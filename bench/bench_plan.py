"""Benchmark: a warm no-op ``plan`` of 1,000 packages against an ``os.stat`` walk of their inputs.

Run ``python3 bench/bench_plan.py [--packages N] [--dir DIR] [--keep]``. It generates a project
of N packages, each with its own small sdist (made here), two patches, a settings file and a
plugin module; makes every package "already built" without building (a lock whose entries pin
one real setuptools wheel, and one stored record with a small valid wheel per planned
signature); then times a warm plan through the library and through the CLI, times a walk that
stats every input file, prints the ratio, and prints a cProfile of one warm library plan.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from buildprint import Engine
from buildprint.builder.patching import apply_patches
from buildprint.builder.wheel import artifact_digest, embed_manifest
from buildprint.inputs.extract import safe_extract
from buildprint.project.settings import PackageSettings
from buildprint.resolve.lockfile import LockedBuildDeps, PinnedWheel
from buildprint.resolve.sources import ResolvedSource
from buildprint.store.record import ActionRecord, Artifact

__all__ = ["generate_project", "main", "mark_all_built", "stat_walk"]

#: Where the test suite keeps real build-backend wheels (setuptools, wheel, hatchling, ...).
WHEEL_CACHE = Path.home() / ".cache" / "buildprint-tests" / "wheels"
INPUT_FOLDERS = ("sdists", "patches", "packages", "plugins")
TOP_FILES = ("buildprint.toml", "requirements.txt", "buildprint.lock")


def _module(number: int) -> str:
    return f"bench_pkg_{number:04d}"


def _dist_name(number: int) -> str:
    return f"bench-pkg-{number:04d}"


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def _sdist(path: Path, number: int) -> None:
    """A small valid sdist: PKG-INFO, a setuptools pyproject.toml and one module."""
    module, dist = _module(number), _dist_name(number)
    top = f"{module}-1.0.0"
    pyproject = (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'\n[project]\nname = "{dist}"\nversion = "1.0.0"\n'
        f'\n[tool.setuptools]\npackages = ["{module}"]\n'
    )
    pkg_info = f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n"
    with tarfile.open(path, "w:gz") as tar:
        _add_file(tar, f"{top}/PKG-INFO", pkg_info.encode())
        _add_file(tar, f"{top}/pyproject.toml", pyproject.encode())
        _add_file(tar, f"{top}/{module}/__init__.py", _module_text(number).encode())


def _module_text(number: int) -> str:
    return f'"""bench package {number}."""\nVALUE = {number}\n'


def _patches(number: int) -> tuple[str, str]:
    """Two unified diffs that apply in order to the sdist's module (``patch -p1``)."""
    module = _module(number)
    head = f"--- a/{module}/__init__.py\n+++ b/{module}/__init__.py\n"
    body = _module_text(number).splitlines()
    first = head + "@@ -1,2 +1,3 @@\n" + "".join(f" {x}\n" for x in body) + "+PATCHED_ONCE = True\n"
    second = (
        head
        + "@@ -1,3 +1,4 @@\n"
        + "".join(f" {x}\n" for x in [*body, "PATCHED_ONCE = True"])
        + "+PATCHED_TWICE = True\n"
    )
    return first, second


def generate_project(root: Path, count: int) -> list[str]:
    """Write a project of ``count`` packages under ``root``; return the requirement lines."""
    for folder in (*INPUT_FOLDERS, "index"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    # An empty local index: every source is a local path, so nothing touches the network.
    (root / "buildprint.toml").write_text('[project]\nindex-url = "index"\n')
    (root / "plugins" / "__init__.py").write_text('"""Bench plugins."""\n')
    # A helper every hook imports, so plugin digests follow a local import as real ones do.
    (root / "plugins" / "common.py").write_text(
        '"""Shared helper of the bench hooks."""\n\n\ndef tag(number: int) -> str:\n'
        '    return f"bench-{number % 7}"\n'
    )
    requirements = []
    for number in range(count):
        module, dist = _module(number), _dist_name(number)
        _sdist(root / "sdists" / f"{module}-1.0.0.tar.gz", number)
        patch_dir = root / "patches" / dist
        patch_dir.mkdir(exist_ok=True)
        first, second = _patches(number)
        (patch_dir / "0001-patched-once.patch").write_text(first)
        (patch_dir / "0002-patched-twice.patch").write_text(second)
        (root / "packages" / f"{dist}.toml").write_text(
            f'source = {{ path = "sdists/{module}-1.0.0.tar.gz" }}\n'
            f'plugin = "plugins.hooks_{number:04d}"\n'
            f'env = {{ CFLAGS = "-O2", BENCH_ID = "{number}" }}\n'
            'configs = { variant = "default" }\n'
        )
        (root / "plugins" / f"hooks_{number:04d}.py").write_text(
            f'"""Hooks for {dist}."""\n\nfrom plugins import common\n\n\n'
            f'def signature(pkg, sig):\n    sig.add("bench", common.tag({number}))\n\n\n'
            f'def update_env(pkg, env):\n    return {{**env, "BENCH_HOOK": "{number}"}}\n'
        )
        requirements.append(f"{dist}==1.0.0")
    (root / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    return requirements


def _setuptools_pin() -> PinnedWheel:
    """The lock's one build dependency: a real setuptools wheel from the local wheel cache."""
    found = sorted(WHEEL_CACHE.glob("setuptools-*.whl"))
    if not found:
        raise SystemExit(
            f"no setuptools wheel in {WHEEL_CACHE}: run the test suite once (it fills that "
            "folder), or copy one there (pip download setuptools --no-deps -d ...)"
        )
    wheel = found[-1]
    return PinnedWheel(
        name="setuptools",
        version=wheel.name.split("-")[1],
        filename=wheel.name,
        url=wheel.resolve().as_uri(),
        sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
    )


def _fake_wheel(path: Path, number: int) -> None:
    """A small valid wheel (module, METADATA, WHEEL, RECORD) standing in for a real build."""
    module, dist = _module(number), _dist_name(number)
    info = f"{module}-1.0.0.dist-info"
    members = {
        f"{module}/__init__.py": _module_text(number).encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={_urlsafe_sha256(data)},{len(data)}\n" for name, data in members.items()
    )
    record += f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
        zf.writestr(zipfile.ZipInfo(f"{info}/RECORD", (1980, 1, 1, 0, 0, 0)), record)


def _urlsafe_sha256(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def mark_all_built(root: Path) -> float:
    """Lock every package and store one record per planned signature, without building.

    The lock is written by the engine itself (so it is always in the current format, with the
    source keys it checks): its lock step, which would resolve build requirements in a fresh
    environment, is replaced by one returning the setuptools pin. Returns the seconds taken by
    that first (cold) plan.
    """
    pin = _setuptools_pin()

    def lock_step(
        name: str,
        previous: LockedBuildDeps | None,
        source: ResolvedSource,
        patches: list[Path],
        settings: PackageSettings,
        context: object,
    ) -> LockedBuildDeps:
        del name, previous, source, patches, settings, context
        return LockedBuildDeps(requires=["setuptools>=61"], wheels=[pin])

    started = time.perf_counter()
    with Engine(root) as engine:
        # An instance attribute shadows the method: the graph calls this instead of building
        # an environment per package (1,000 environments would take an hour).
        engine.preparer.lock = lock_step  # type: ignore[method-assign]
        decisions = engine.plan()
        cold = time.perf_counter() - started
        with tempfile.TemporaryDirectory(prefix="bench-wheels-") as tmp:
            for decision in decisions:
                manifest = decision.manifest
                if decision.action != "build" or manifest is None:
                    raise SystemExit(
                        f"unexpected first decision for {decision.node.name}: "
                        f"{decision.action} ({decision.reason})"
                    )
                number = int(decision.node.name.rsplit("-", 1)[1])
                raw = Path(tmp) / f"{_module(number)}-1.0.0-py3-none-any.whl"
                _fake_wheel(raw, number)
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
    return cold


def _check_patches_apply(root: Path) -> None:
    """Package 0's two patches really apply to its sdist (so the inputs are not decoys)."""
    with tempfile.TemporaryDirectory(prefix="bench-patch-") as tmp:
        tree = safe_extract(root / "sdists" / f"{_module(0)}-1.0.0.tar.gz", Path(tmp))
        apply_patches(tree, sorted((root / "patches" / _dist_name(0)).glob("*.patch")))
        text = (tree / _module(0) / "__init__.py").read_text()
        assert "PATCHED_TWICE = True" in text, text


def _input_files(root: Path) -> Iterator[str]:
    for name in TOP_FILES:
        yield os.path.join(root, name)
    for folder in INPUT_FOLDERS:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for filename in filenames:
                yield os.path.join(dirpath, filename)


def stat_walk(root: Path) -> int:
    """List the input folders and ``os.stat`` every input file; return the count."""
    count = 0
    for path in _input_files(root):
        os.stat(path)
        count += 1
    return count


def _timed(action: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return times


def _library_plan(root: Path) -> list[str]:
    """What ``plan`` prints (answered by the plan snapshot while nothing changed)."""
    with Engine(root) as engine:
        return [e.action for e in engine.plan_entries()]


def _full_plan(root: Path) -> list[str]:
    """Every signature composed again (what a plan costs when its snapshot cannot be used)."""
    with Engine(root) as engine:
        return [d.action for d in engine.plan()]


def _phases(root: Path) -> str:
    """One warm plan split into its phases (unprofiled): open, load the graph, decide."""
    started = time.perf_counter()
    engine = Engine(root)
    opened = time.perf_counter()
    try:
        nodes = engine.graph()
        loaded = time.perf_counter()
        engine.planner.plan(nodes)
        decided = time.perf_counter()
    finally:
        engine.close()
    return (
        f"  phases: Engine() {opened - started:.2f} s (settings, lock) + graph() "
        f"{loaded - opened:.2f} s (sources, patches) + plan() {decided - loaded:.2f} s "
        "(signatures: plugins, compose, store lookups)"
    )


def _cli_command() -> list[str]:
    script = Path(sysconfig.get_path("scripts")) / "buildprint"
    if script.exists():
        return [str(script)]
    found = shutil.which("buildprint")
    if found:
        return [found]
    return [sys.executable, "-c", "from buildprint.cli.main import main; main()"]


def _cli_plan(root: Path) -> list[str]:
    proc = subprocess.run(
        [*_cli_command(), "plan", "-p", str(root), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"buildprint plan failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [p["action"] for p in json.loads(proc.stdout)["packages"]]


def _summary(times: Sequence[float]) -> str:
    return f"min {min(times) * 1000:8.1f} ms   median {statistics.median(times) * 1000:8.1f} ms"


def _profile(root: Path, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    _library_plan(root)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write(f"--- top {top} by own time (tottime) ---\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write(f"--- top {top} by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(top)
    stats.dump_stats(str(root / "plan.prof"))
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packages", type=int, default=1000, help="packages (default 1000)")
    parser.add_argument("--dir", type=Path, help="project folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated project")
    parser.add_argument("--repeat", type=int, default=5, help="timed warm plans (default 5)")
    parser.add_argument("--top", type=int, default=25, help="profile rows (default 25)")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.dir is not None:
            root = args.dir.resolve()
            if root.exists() and any(root.iterdir()):
                raise SystemExit(f"{root} is not empty")
            root.mkdir(parents=True, exist_ok=True)
        else:
            tmp = tempfile.mkdtemp(prefix="bench-plan-")
            root = Path(tmp)
            if not args.keep:
                stack.callback(shutil.rmtree, tmp, True)
        started = time.perf_counter()
        generate_project(root, args.packages)
        _check_patches_apply(root)
        print(f"project: {root}")
        print(f"generated {args.packages} packages in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        cold = mark_all_built(root)
        print(
            f"cold plan (digests every sdist, loads every plugin) {cold:.2f} s; "
            f"lock + store filled in {time.perf_counter() - started:.1f} s"
        )

        files = stat_walk(root)
        stat_times = _timed(lambda: stat_walk(root), args.repeat)
        full_times = _timed(lambda: _full_plan(root), max(1, args.repeat // 2))
        _library_plan(root)  # the first warm plan is a full one, and keeps its snapshot
        actions: list[str] = []
        lib_times = _timed(
            lambda: actions.__setitem__(slice(None), _library_plan(root)), args.repeat
        )
        reused = actions.count("reuse")
        cli_actions: list[str] = []
        cli_times = _timed(
            lambda: cli_actions.__setitem__(slice(None), _cli_plan(root)), max(1, args.repeat // 2)
        )
        if reused != args.packages or cli_actions.count("reuse") != args.packages:
            raise SystemExit(
                f"warm plan did not reuse everything: library {reused}, "
                f"CLI {cli_actions.count('reuse')} of {args.packages}"
            )

        print(f"\nwarm no-op plan of {args.packages} packages (all 'reuse'):")
        print(f"  stat walk ({files} input files)  {_summary(stat_times)}")
        print(f"  library Engine(...).plan_entries() {_summary(lib_times)}")
        print(f"  CLI `buildprint plan --json`   {_summary(cli_times)}")
        ratio = min(lib_times) / min(stat_times)
        cli_ratio = min(cli_times) / min(stat_times)
        print(f"  ratio library/stat walk {ratio:.1f}x, CLI/stat walk {cli_ratio:.1f}x")
        print(
            f"  targets: plan under 1 s warm: library {'met' if min(lib_times) < 1 else 'MISSED'},"
            f" CLI {'met' if min(cli_times) < 1 else 'MISSED'}; within 3x of the stat walk: "
            f"{'met' if ratio <= 3 else 'MISSED'}"
        )
        print(
            f"  full plan, no snapshot (Engine(...).plan()) {_summary(full_times)}; "
            "what any change to an input costs"
        )
        print(_phases(root))
        print("\ncProfile of one warm library plan:")
        print(_profile(root, args.top))
        if args.keep or args.dir is not None:
            print(f"profile data: {root / 'plan.prof'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
