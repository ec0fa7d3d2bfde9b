"""Benchmark: bootstrap a real closure from source, buildprint against fromager (issue 12).

Run ``python3 bench/bench_bootstrap.py [--keep] [--cache DIR] [--cold-runs 1] [--noop-runs 3]
[-j 1] [--phases] [--fromager SPEC]``.

The closure is the one of ``tests/e2e/test_bootstrap.py``: the 13 pinned PyPI sdists of
``tests/support/bootstrap.py`` (setuptools, wheel, flit_core, packaging, hatchling, pathspec,
pluggy, trove-classifiers, tomlkit, poetry-core, calver, setuptools-scm, vcs-versioning;
downloaded once into the test suite's cache by its ``fill_cache()``, sha256 checked) and two
fixture sdists made by ``tests/support/sdists.py``: ``hatchpkg`` (hatchling) and ``cext`` (a C
extension, setuptools). All 15 sdists, and no wheel at all, are served as a PEP 503 index
(links with ``#sha256=``) on 127.0.0.1 by this process. The top-level requirements, for both
tools: ``setuptools wheel flit-core packaging hatchpkg cext`` (unpinned).

- **buildprint**: a fresh project (``buildprint.toml``: ``index-url`` = the local index,
  ``from-source = true``; that ``requirements.txt``), ``buildprint build --json`` with the
  console script of the interpreter running the bench; cold (fresh project: empty store, no
  lock, fresh ``UV_CACHE_DIR``), then no-op reruns in the same project. Checked: all 15
  ``built`` cold, all 15 ``reused`` after, 15 wheels in the wheelhouse.
- **fromager** (installed from PyPI into ``<cache>/fromager-venv`` by ``bench_fromager.py``'s
  helper, untimed): ``fromager ... bootstrap -r requirements.txt``. fromager 0.77 resolves
  every package against ``https://pypi.org/simple`` unless its per-package settings say
  otherwise, and has no global option for it, so the bench writes
  ``settings/<name>.yaml`` for each of the 15 projects the index serves, with
  ``resolver_dist: {sdist_server_url: <local index>, include_sdists: true, include_wheels:
  false}``. fromager builds build dependencies (backends included) from source by default
  and installs them only from its own wheel server (its ``wheels-repo``); nothing is marked
  ``pre_built``. Cold: fresh sdists/wheels/work folders (its uv cache is in the work folder).
  No-op: the same command again over that output -- fromager's rerun: it resolves every
  requirement again (against the index), finds each wheel in ``wheels-repo/downloads`` and
  builds none. Checked: cold, 15 wheels built (``built wheel for version``) and a
  ``build-order.json`` of 15 sdist entries from the local index, none pre-built; no-op, 15
  ``found existing wheel``, no wheel built, the wheel files untouched.

fromager 0.77.0 builds the whole closure from source, offline, from that index: nothing is
left out of either tool's figures (if it ever cannot, the bench fails naming the package and
the log; it never times a partial closure as the whole one). Both tools build the same 15
(name, version) pairs (checked).

External networks are unreachable during the timed runs (``HTTP(S)_PROXY``/``ALL_PROXY`` to a
closed local port, ``NO_PROXY`` for 127.0.0.1, as ``bench_fromager.py`` does). Runs are
interleaved so that a change of load on the shared machine hits both tools: ``--cold-runs``
rounds of one cold run each (fresh folders every round, the tool that goes first
alternating), then ``--noop-runs`` rounds of one no-op each over the last cold round's
output. The table shows the best run of each tool and phase, every run, and the ratios of
the best runs and of the medians. Targets (issue 12): buildprint cold at most 0.5x
fromager's, no-op at most 0.1x; a miss is printed as ``MISSED``, not an error.

Both tools run with their defaults otherwise: fromager with its network isolation
(``unshare -cn`` around builds, when the kernel allows it; reported), one package at a time
(``-j`` is its limit within one build: ``MAKEFLAGS`` and the like); buildprint with ``-j``
parallel builds (1 by default). ``PYTHONDONTWRITEBYTECODE`` is removed from both tools'
environments (a plain shell's), and buildprint's own byte-code goes to ``<cache>/pycache``
(``PYTHONPYCACHEPREFIX``), so that the editable install neither recompiles its modules at
every start nor writes into the source tree; fromager's installed modules have their
``.pyc`` from pip. ``--version`` of each tool is timed too: the start-up floor of a no-op.
``--phases`` adds one more cold buildprint build in a child interpreter with its steps
timed (``bench_fromager.py``'s ``run_phases``: locking, environments, backend hooks, store).
The bench exits non-zero when a tool fails or a check above does not hold (the work folder
is then kept, and the message names the log).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_fromager import (  # noqa: E402
    DEFAULT_CACHE,
    Run,
    _remove_unless_failed,
    _sha256,
    code_state,
    fromager_command,
    fromager_venv,
    offline_env,
    run_phases,
    serve,
)
from tests.support.bootstrap import BOOTSTRAP_SDISTS, fill_cache  # noqa: E402
from tests.support.sdists import Backend, make_sdist  # noqa: E402

__all__ = ["main"]

#: The two fixture packages built with the closure: (name, backend), version 1.0.
FIXTURES: tuple[tuple[str, Backend], ...] = (("hatchpkg", "hatchling"), ("cext", "c-ext"))
FIXTURE_VERSION = "1.0"
REQUIREMENTS = ("setuptools", "wheel", "flit-core", "packaging", "hatchpkg", "cext")
TARGET_COLD = 0.5
TARGET_NOOP = 0.1


def _log(message: str = "") -> None:
    print(message, flush=True)


def closure() -> dict[str, str]:
    """Canonical name -> version of every package of the closure (what both must build)."""
    versions = {
        str(name): str(version)
        for name, version in (parse_sdist_filename(f) for f in BOOTSTRAP_SDISTS)
    }
    versions.update((name, FIXTURE_VERSION) for name, _ in FIXTURES)
    return versions


# -- the shared local index (sdists only) -----------------------------------------------------


def make_index(root: Path, sdists_cache: Path) -> dict[str, Path]:
    """A PEP 503 tree at ``root/simple``: the pinned sdists and the two fixtures, no wheel."""
    simple = root / "simple"
    files: dict[str, Path] = {}
    for filename in BOOTSTRAP_SDISTS:
        name = str(parse_sdist_filename(filename)[0])
        (simple / name).mkdir(parents=True, exist_ok=True)
        files[name] = simple / name / filename
        shutil.copy2(sdists_cache / filename, files[name])
    for name, backend in FIXTURES:
        files[name] = make_sdist(simple / name, name, FIXTURE_VERSION, backend)
    for name, path in files.items():
        link = f'<a href="{html.escape(path.name)}#sha256={_sha256(path)}">{path.name}</a><br>'
        (simple / name / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{link}\n</body></html>\n"
        )
    projects = "".join(f'<a href="{n}/">{n}</a><br>\n' for n in sorted(files))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{projects}</body></html>\n")
    assert not list(simple.rglob("*.whl"))
    return files


def _load() -> float:
    return os.getloadavg()[0]


def tool_env(extra: dict[str, str]) -> dict[str, str]:
    """:func:`offline_env` (plus ``extra``) without ``PYTHONDONTWRITEBYTECODE``: each tool runs
    as from a plain shell. (The sessions on this machine set it; with it, the editable
    buildprint would compile its modules from source at every start, while fromager's,
    installed by pip, have their ``.pyc``; and fromager's builds, which get the caller's
    environment, would not write byte-code as they do by default.)"""
    env = offline_env(extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _timed(command: Sequence[str], log: Path, env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Run ``command`` (output to ``log``) after an ``os.sync()``; wall seconds, exit code."""
    os.sync()
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False
        )
    return time.perf_counter() - started, proc.returncode


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- buildprint --------------------------------------------------------------------------------


def buildprint_script() -> list[str]:
    """The ``buildprint`` console script of the interpreter running the bench (not a shim)."""
    script = Path(sysconfig.get_path("scripts")) / "buildprint"
    if script.is_file():
        return [str(script)]
    found = shutil.which("buildprint")
    if found is None:
        raise SystemExit("no buildprint console script: run `python3 -m pip install -e .` first")
    return [found]


def buildprint_project(root: Path, index_url: str) -> Path:
    root.mkdir(parents=True)
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{index_url}"\nfrom-source = true\n'
    )
    (root / "requirements.txt").write_text("".join(f"{r}\n" for r in REQUIREMENTS))
    return root


def buildprint_env(uv_cache: Path, pycache: Path) -> dict[str, str]:
    """buildprint's byte-code goes to ``pycache`` (``PYTHONPYCACHEPREFIX``), not into the
    source tree of the editable install. It reaches buildprint's own interpreter only: builds
    and uv get an environment buildprint constructs (``docs/build-environment.md``)."""
    return tool_env({"UV_CACHE_DIR": str(uv_cache), "PYTHONPYCACHEPREFIX": str(pycache)})


def run_buildprint(
    project: Path, phase: str, expect: str, jobs: int, env: dict[str, str], want: dict[str, str]
) -> Run:
    """``buildprint build --json`` in ``project``; every package of ``want`` must be
    ``expect`` (``built`` or ``reused``) at its version, with its wheel in the wheelhouse."""
    command = [*buildprint_script(), "build", "-p", str(project), "-j", str(jobs), "--json"]
    log = project.parent / f"buildprint-{phase.replace(' ', '-')}.log"
    load, code = _load(), code_state()
    os.sync()
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    run = Run("buildprint", phase, seconds, len(want), load=(load, _load()), code=code)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if code_state() != code:
        run.note = "buildprint's code changed on disk during this run"
    if proc.returncode != 0:
        raise SystemExit(
            f"buildprint build ({phase}) failed ({proc.returncode}); output in {log}:\n"
            + proc.stderr[-4000:]
        )
    packages: list[dict[str, Any]] = json.loads(proc.stdout)["packages"]
    got = {str(canonicalize_name(p["name"])): p for p in packages}
    wrong = {
        n: (got[n]["action"], got[n].get("version")) if n in got else None
        for n in want
        if n not in got or got[n]["action"] != expect or got[n].get("version") != want[n]
    }
    extra = sorted(set(got) - set(want))
    wheels = {str(parse_wheel_filename(w.name)[0]) for w in (project / "wheelhouse").glob("*.whl")}
    if wrong or extra or not set(want) <= wheels:
        first = next((got[n] for n in wrong if n in got), None)
        why = (
            f"; {first['name']}: {first.get('reason')!r}, changed {first.get('changed')}"
            if first is not None
            else ""
        )
        raise SystemExit(
            f"buildprint ({phase}): expected all {len(want)} {expect}; wrong: {wrong}, "
            f"unexpected: {extra}{why}; wheels missing from the wheelhouse: "
            f"{sorted(set(want) - wheels)}; see {log}"
        )
    own = sum(float(p.get("seconds", 0.0)) for p in packages)
    run.details.append(f"{expect}: {', '.join(sorted(got))}")
    run.details.append(
        f"per-package seconds in --json (sign + {expect}): {own:.2f} s; the rest of the wall "
        f"time, {seconds - own:.2f} s: start, graph (locking, when there is no lock), plan"
    )
    return run


# -- fromager ----------------------------------------------------------------------------------


def fromager_folder(base: Path, index_url: str, names: Sequence[str]) -> Path:
    """Settings that send every package's resolution to the local index, sdists only."""
    for sub in ("settings", "patches", "work"):
        (base / sub).mkdir(parents=True)
    for name in names:
        (base / "settings" / f"{name.replace('-', '_')}.yaml").write_text(
            "resolver_dist:\n"
            f"  sdist_server_url: {index_url}\n"
            "  include_sdists: true\n"
            "  include_wheels: false\n"
        )
    (base / "requirements.txt").write_text("".join(f"{r}\n" for r in REQUIREMENTS))
    return base


def _wheel_files(base: Path) -> dict[str, tuple[str, int]]:
    """``wheels-repo/downloads``: canonical name -> (file name, mtime_ns)."""
    return {
        str(parse_wheel_filename(w.name)[0]): (w.name, w.stat().st_mtime_ns)
        for w in (base / "wheels-repo" / "downloads").glob("*.whl")
    }


def fromager_env(venv: Path) -> dict[str, str]:
    # fromager runs `uv` from PATH: the one installed beside it.
    env = tool_env({"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})
    env.pop("VIRTUAL_ENV", None)
    return env


_LOGGED = re.compile(r"\bINFO ([A-Za-z0-9_.-]+): (built wheel for version|found existing wheel)")


def run_fromager(
    venv: Path, base: Path, phase: str, expect: str, jobs: int, index_url: str, want: dict[str, str]
) -> Run:
    """``fromager bootstrap`` in ``base`` (cold: fresh folders; no-op: over their output)."""
    command = [
        *fromager_command(venv, base, jobs),
        "bootstrap",
        "-r",
        str(base / "requirements.txt"),
    ]
    env = fromager_env(venv)
    before = _wheel_files(base)
    log = base / f"fromager-{phase.replace(' ', '-')}.log"
    load = _load()
    seconds, code = _timed(command, log, env, base)
    run = Run("fromager", phase, seconds, len(want), load=(load, _load()))
    text = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(
            f"fromager bootstrap ({phase}) failed ({code}): it cannot bootstrap this closure "
            f"from the local index as set up here; output in {log}:\n{_tail(log)}"
        )
    events: dict[str, set[str]] = {"built wheel for version": set(), "found existing wheel": set()}
    for match in _LOGGED.finditer(text):
        events[match.group(2)].add(str(canonicalize_name(match.group(1))))
    built, found = events["built wheel for version"], events["found existing wheel"]
    after = _wheel_files(base)
    versions = {n: str(parse_wheel_filename(f)[1]) for n, (f, _) in after.items()}
    problems: list[str] = []
    if {n: versions.get(n) for n in want} != want or set(after) != set(want):
        problems.append(f"wheels in wheels-repo/downloads: {sorted(after)} ({versions})")
    if expect == "built":
        order = json.loads((base / "work" / "build-order.json").read_text())
        entries = {str(canonicalize_name(e["dist"])): e for e in order}
        sourced = {
            n
            for n, e in entries.items()
            if not e["prebuilt"]
            and e["source_url_type"] == "sdist"
            and str(e["source_url"]).startswith(index_url)
        }
        if built != set(want):
            problems.append(f"built {sorted(built)}, missing {sorted(set(want) - built)}")
        if sourced != set(want) or set(entries) != set(want):
            problems.append(f"build-order.json: {sorted(entries)}, from local sdists {sourced}")
    else:
        if built:
            problems.append(f"rebuilt {sorted(built)}")
        if found != set(want):
            problems.append(f"found existing wheels only for {sorted(found)}")
        if after != before:
            problems.append("wheel files rewritten")
    if problems:
        raise SystemExit(f"fromager ({phase}): {'; '.join(problems)}; see {log}")
    isolation = re.search(r"network isolation: (\w+)", text)
    run.note = f"network isolation {isolation.group(1) if isolation else '?'}"
    refused = sum(1 for line in text.splitlines() if "Retrying" in line and "refused" in line)
    if refused:
        run.note += f"; {refused} retried requests (its own wheel server not listening yet)"
    run.details.append(f"{expect}: {', '.join(sorted(built if expect == 'built' else found))}")
    return run


# -- report ------------------------------------------------------------------------------------


def startup_floor(command: Sequence[str], env: dict[str, str], rounds: int = 3) -> float:
    """Best wall time of ``command`` (``--version``): the interpreter start and imports (the
    first round also writes buildprint's byte-code, once)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, env=env, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def _ratio(a: float, b: float, target: float) -> str:
    share = a / b
    return f"{share:.2f}x (target <= {target}x: {'met' if share <= target else 'MISSED'})"


def _seconds(runs: Sequence[Run], tool: str, kind: str) -> list[float]:
    return [r.seconds for r in runs if r.tool == tool and r.phase.startswith(kind)]


def report(
    runs: Sequence[Run], floors: dict[str, float], want: dict[str, str], jobs: int
) -> list[str]:
    lines = [
        f"{len(want)} packages, all from sdists, -j {jobs}; runs in this order: "
        + ", ".join(f"{r.tool} {r.phase}" for r in runs),
        "",
        f"{'tool':<11} {'cold s':>8} {'no-op s':>8} {'built / reused':>15} "
        f"{'load 1m':>8}  all runs s (cold | no-op)",
        "-" * 100,
    ]
    best: dict[str, tuple[float, float]] = {}
    for tool in ("fromager", "buildprint"):
        cold, noop = _seconds(runs, tool, "cold"), _seconds(runs, tool, "no-op")
        best[tool] = (min(cold), min(noop))
        loads = [r.load[0] for r in runs if r.tool == tool]
        lines.append(
            f"{tool:<11} {min(cold):8.2f} {min(noop):8.2f} "
            f"{f'{len(want)} / {len(want)}':>15} {statistics.median(loads):8.1f}  "
            + " ".join(f"{x:.2f}" for x in cold)
            + " | "
            + " ".join(f"{x:.2f}" for x in noop)
        )
    (f_cold, f_noop), (b_cold, b_noop) = best["fromager"], best["buildprint"]
    medians = {
        kind: statistics.median(_seconds(runs, "buildprint", kind))
        / statistics.median(_seconds(runs, "fromager", kind))
        for kind in ("cold", "no-op")
    }
    lines += [
        "(cold s, no-op s: the best run of each; load 1m: the median 1-minute load average at"
        f" the start of the tool's runs, on {os.cpu_count()} cores; the machine is shared)",
        "",
        f"buildprint/fromager cold:  {_ratio(b_cold, f_cold, TARGET_COLD)}; "
        f"ratio of medians {medians['cold']:.2f}x",
        f"buildprint/fromager no-op: {_ratio(b_noop, f_noop, TARGET_NOOP)}; "
        f"ratio of medians {medians['no-op']:.2f}x",
        "",
        "start-up floor (best `--version`: interpreter start and imports): "
        + ", ".join(f"{tool} {s:.2f} s" for tool, s in floors.items()),
    ]
    codes = {r.code for r in runs if r.code}
    if len(codes) > 1 or any("code changed" in r.note for r in runs):
        lines.append(
            "WARNING: buildprint's modules changed on disk during the bench "
            f"(states {', '.join(sorted(codes))}): its runs did not all run the same code"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"the fromager virtualenv and buildprint's byte-code, kept ({DEFAULT_CACHE})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold runs per tool (1)")
    parser.add_argument("--noop-runs", type=int, default=3, help="no-op reruns per tool (3)")
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        help="buildprint -j, fromager --jobs (its limit within one build) (1)",
    )
    parser.add_argument("--fromager", default="fromager", help="pip spec (fromager)")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="one more cold buildprint build, its steps timed (bench_fromager.py's --phases)",
    )
    args = parser.parse_args(argv)
    if min(args.cold_runs, args.noop_runs, args.jobs) < 1:
        parser.error("--cold-runs, --noop-runs and --jobs must be at least 1")
    cache = args.cache.expanduser().resolve()
    want = closure()

    failed: list[bool] = [True]  # cleared when the run gets to its end
    with contextlib.ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="bench-bootstrap-"))
        if not args.keep:
            stack.callback(_remove_unless_failed, root, failed)
        _log(f"work folder: {root}")

        # -- setup, not timed ----------------------------------------------------------------
        sdists = fill_cache()  # the test suite's cache (BUILDPRINT_TEST_SDISTS moves it)
        venv, fromager_version = fromager_venv(cache, args.fromager)
        make_index(root / "index", sdists)
        index_url = stack.enter_context(serve(root / "index"))
        pycache = cache / "pycache"
        floors = {
            "fromager": startup_floor(
                [str(venv / "bin" / "fromager"), "--version"], fromager_env(venv)
            ),
            "buildprint": startup_floor(
                [*buildprint_script(), "--version"], buildprint_env(root / "uv-none", pycache)
            ),
        }
        _log(f"{len(want)} sdists (no wheels) from {sdists} served at {index_url}")
        _log(f"fromager: {fromager_version} ({venv})")
        _log(f"buildprint: {buildprint_script()[0]}\n")

        runs: list[Run] = []

        def step(run: Run) -> None:
            runs.append(run)
            _log(f"  {run.seconds:.2f} s")

        # -- cold: fresh folders each round, the first tool alternating ----------------------
        for number in range(1, args.cold_runs + 1):
            phase = "cold" if args.cold_runs == 1 else f"cold {number}"
            fromager_base = fromager_folder(
                root / "fromager" / f"cold-{number}", index_url, sorted(want)
            )
            bp_root = root / "buildprint" / f"cold-{number}"
            project = buildprint_project(bp_root / "project", index_url)
            bp_env = buildprint_env(bp_root / "uv-cache", pycache)
            for tool in ("fromager", "buildprint")[:: 1 if number % 2 else -1]:
                if tool == "fromager":
                    _log(f"fromager bootstrap, {phase} ...")
                    step(
                        run_fromager(
                            venv, fromager_base, phase, "built", args.jobs, index_url, want
                        )
                    )
                else:
                    _log(f"buildprint build, {phase} ...")
                    step(run_buildprint(project, phase, "built", args.jobs, bp_env, want))
        # -- no-op: again over the last cold round's output, in turn -------------------------
        for number in range(1, args.noop_runs + 1):
            phase = f"no-op {number}"
            _log(f"fromager bootstrap, {phase} ...")
            step(run_fromager(venv, fromager_base, phase, "reused", args.jobs, index_url, want))
            _log(f"buildprint build, {phase} ...")
            step(run_buildprint(project, phase, "reused", args.jobs, bp_env, want))

        _log()
        for line in report(runs, floors, want, args.jobs):
            _log(line)
        _log()
        shown: set[tuple[str, str]] = set()
        for run in runs:
            kind = run.phase.split()[0]
            if (run.tool, kind) not in shown:
                shown.add((run.tool, kind))
                _log(f"{run.tool} {run.phase}{f' ({run.note})' if run.note else ''}:")
                for line in run.details:
                    _log(f"  {line}")
        if args.phases:
            _log("\nbuildprint, one more cold build with its steps timed (--phases) ...")
            phases = buildprint_project(root / "buildprint" / "phases", index_url)
            for line in run_phases(phases, len(want), args.jobs, root / "buildprint" / "uv-phases"):
                _log(line)
        if args.keep:
            _log(f"\nkept: {root}")
        failed[0] = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
