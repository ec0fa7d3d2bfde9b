"""Benchmark: what discovered inputs cost, checked at plan time and recorded at build time.

Run ``python3 bench/bench_discovered.py [--packages N] [--repeat R] [--demo-rounds K]``.

1. Checking. ``bench_plan``'s generated project of N packages, every package "already built";
   the warm no-op plan is timed (the kept plan, ``plan_entries``, and the full one, ``plan()``)
   with stored builds that read no system files, then again after every stored build is given
   ten discovered inputs, drawn from 200 shared headers (as C extensions share
   ``/usr/include``), then ten files of its own each (10,000 more files to stat). Target: at
   most 1.5x.
2. Recording. The demo set (``examples/demo``: six, markupsafe with gcc, idna; real PyPI sdists,
   so this part needs the network once) is built once to fill its store, then rebuilt with
   ``--force`` for every package, alternately traced and with ``BUILDPRINT_TRACE=off``, K rounds
   each. Target: tracing adds at most 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_plan import (  # noqa: E402
    _full_plan,
    _library_plan,
    _summary,
    _timed,
    generate_project,
    mark_all_built,
)
from buildprint import Engine  # noqa: E402
from buildprint.signature.canonical import digest_value  # noqa: E402

DEMO = REPO / "examples" / "demo"
INPUTS_PER_PACKAGE = 10


#: The shared scenario: each build's ten inputs drawn from this many system headers (C
#: extensions share /usr/include), instead of ten files of its own.
SHARED_POOL = 200


def add_discovered(root: Path, *, shared: bool = False) -> int:
    """Give every stored build ten discovered inputs (files of its own, or drawn from a
    shared pool); return how many files they name in all."""
    system = root / "system"
    names: set[str] = set()
    with Engine(root) as engine:
        for number, record in enumerate(list(engine.store.records())):
            inputs = {}
            for i in range(INPUTS_PER_PACKAGE):
                if shared:
                    header = system / "shared" / f"h{(number * 7 + i * 13) % SHARED_POOL}.h"
                else:
                    header = system / record.name / f"h{i}.h"
                header.parent.mkdir(parents=True, exist_ok=True)
                if not header.exists():
                    header.write_text(f"#define {header.parent.name.upper()}_{header.stem} 1\n")
                inputs[str(header)] = engine.system_files.digest(str(header))
                names.add(str(header))
            manifest = dict(record.manifest)
            manifest["discovered"] = {"digest": digest_value(inputs), "value": inputs}
            engine.store.put_record(replace(record, manifest=manifest))
    return len(names)


def plans(root: Path, repeat: int) -> tuple[list[float], list[float]]:
    """(kept-plan times, full-plan times), after one full plan that keeps its snapshot."""
    actions = _library_plan(root)
    if set(actions) != {"reuse"}:
        raise SystemExit(f"the warm plan does not reuse everything: {sorted(set(actions))}")
    time.sleep(0.1)  # files just written are "racily clean" for a plan started at once
    _library_plan(root)
    return _timed(lambda: _library_plan(root), repeat), _timed(lambda: _full_plan(root), repeat)


def checking(packages: int, repeat: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-discovered-"))
    try:
        generate_project(root, packages)
        mark_all_built(root)
        kept_before, full_before = plans(root, repeat)
        print(f"\nno-op plan of {packages} packages, ten discovered inputs each:")
        print(f"  kept plan, none                {_summary(kept_before)}")
        print(f"  full plan, none                {_summary(full_before)}")
        for shared in (True, False):
            files = add_discovered(root, shared=shared)
            kept_after, full_after = plans(root, repeat)
            what = f"{'shared' if shared else 'own'} ({files} files)"
            print(f"  kept plan, {what:20}{_summary(kept_after)}")
            print(f"  full plan, {what:20}{_summary(full_after)}")
            for kind, before, after in (
                ("kept", kept_before, kept_after),
                ("full", full_before, full_after),
            ):
                ratio = statistics.median(after) / statistics.median(before)
                verdict = "met" if ratio <= 1.5 else "MISSED"
                print(f"    {kind} plan ratio (median) {ratio:.2f}x (target <= 1.5x: {verdict})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build(project: Path, traced: bool) -> float:
    env = dict(os.environ)
    env.pop("BUILDPRINT_TRACE", None)
    if not traced:
        env["BUILDPRINT_TRACE"] = "off"
    forced = [arg for name in ("six", "markupsafe", "idna") for arg in ("--force", name)]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "buildprint", "build", *forced, "-p", str(project), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"demo build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    built = {p["name"]: p["action"] for p in json.loads(done.stdout)["packages"]}
    if set(built.values()) != {"built"}:
        raise SystemExit(f"demo build did not build everything: {built}")
    return seconds


def recording(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-record-"))
    try:
        project = tmp / "demo"
        shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns(".buildprint", "wheelhouse"))
        _build(project, traced=True)  # sdists downloaded, build environments made
        traced, untraced = [], []
        for _ in range(rounds):
            untraced.append(_build(project, traced=False))
            traced.append(_build(project, traced=True))
        ratio = statistics.median(traced) / statistics.median(untraced)
        overhead = (ratio - 1) * 100
        verdict = "met" if overhead <= 5 else "MISSED"
        print(f"\ncold build of the demo set (--force all three), {rounds} rounds each:")
        print(f"  untraced (BUILDPRINT_TRACE=off) {_summary(untraced)}")
        print(f"  traced                          {_summary(traced)}")
        print(f"  recording overhead (median) {overhead:+.1f}% (target <= 5%: {verdict})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--demo-rounds", type=int, default=5)
    parser.add_argument("--skip-demo", action="store_true", help="only the plan part")
    args = parser.parse_args()
    checking(args.packages, args.repeat)
    if not args.skip_demo:
        recording(args.demo_rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
