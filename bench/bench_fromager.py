"""Benchmark: buildprint against fromager, cold, on N tiny setuptools sdists (issue 10).

Run ``python3 bench/bench_fromager.py [--packages 100] [--jobs 1] [--keep] [--phases]``.

It makes N pure-Python setuptools sdists (``bpbench-pkg-000`` ..., version 1.0, one module,
``requires = ["setuptools>=61"]``; made by the test suite's ``tests/support/sdists.py``) and
serves them, with the setuptools wheel downloaded once from PyPI, as a PEP 503 index on
127.0.0.1. Then, in the same run and against that same index:

- fromager (installed from PyPI into its own cached virtualenv, not timed) runs
  ``build-sequence`` on a build-order file written here (what ``fromager bootstrap`` writes:
  setuptools as a pre-built wheel, then the N sdists), cold: fresh sdists/wheels/work dirs;
- buildprint runs ``build -j J --json`` in a fresh project (``requirements.txt`` pinning the N
  packages, ``buildprint.toml`` pointing ``index-url`` at the index), three times: cold (no
  lock, empty store: locking included), lock exists (a fresh project and store with the first
  run's ``buildprint.lock``), and a no-op rerun of that.

Both tools must produce N wheels (checked; the bench fails otherwise). External networks are
made unreachable during the timed runs (``HTTP(S)_PROXY`` to a closed local port,
``NO_PROXY`` for 127.0.0.1). ``--phases`` adds one more cold buildprint build, through the
library in a child interpreter, with its steps timed (locking, venvs, backend calls, store)
to show where the time goes. A fingerprint of buildprint's modules is taken around each
buildprint run: the table warns when the code changed on disk while the bench ran.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import html
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.sdists import make_sdist, module_name  # noqa: E402

__all__ = ["main"]

#: Venvs and downloads kept between runs (not timed).
DEFAULT_CACHE = Path.home() / ".cache" / "buildprint-bench"
VERSION = "1.0"
TARGET_RATIO = 0.5
#: A closed port: any request that is not for 127.0.0.1 fails at once instead of going out.
DEAD_PROXY = "http://127.0.0.1:9"


def dist_name(number: int) -> str:
    return f"bpbench-pkg-{number:03d}"


def _log(message: str) -> None:
    print(message, flush=True)


def _pyproject(name: str) -> str:
    return (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{VERSION}"\n'
        f'description = "{name}, a buildprint bench package"\nrequires-python = ">=3.8"\n\n'
        f'[tool.setuptools]\npackages = ["{module_name(name)}"]\n'
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the shared local index ------------------------------------------------------------------


def setuptools_wheels(cache: Path) -> list[Path]:
    """The setuptools wheel, downloaded once with pip into ``cache/wheels``."""
    folder = cache / "wheels"
    found = sorted(folder.glob("setuptools-*.whl"))
    if not found:
        _log(f"downloading the setuptools wheel into {folder} (once)")
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(folder),
                "setuptools",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"pip download setuptools failed:\n{proc.stderr[-3000:]}")
        found = sorted(folder.glob("setuptools-*.whl"))
    if not found:
        raise SystemExit(f"no setuptools wheel in {folder}")
    # The newest, if earlier runs left several.
    return [max(found, key=lambda p: parse_wheel_filename(p.name)[1])]


def make_index(root: Path, packages: int, wheels: Sequence[Path]) -> dict[str, list[Path]]:
    """A PEP 503 tree at ``root/simple``: N sdists and the given wheels, links with sha256."""
    files: dict[str, list[Path]] = {}
    simple = root / "simple"
    for number in range(packages):
        name = dist_name(number)
        folder = simple / name
        sdist = make_sdist(
            folder, name, VERSION, "setuptools", files={"pyproject.toml": _pyproject(name)}
        )
        files[name] = [sdist]
    for wheel in wheels:
        name = str(parse_wheel_filename(wheel.name)[0])
        (simple / name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, simple / name / wheel.name)
        files.setdefault(name, []).append(simple / name / wheel.name)
    for name, paths in files.items():
        links = "".join(
            f'<a href="{html.escape(p.name)}#sha256={_sha256(p)}">{html.escape(p.name)}</a><br>\n'
            for p in paths
        )
        (simple / name / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"
        )
    project_links = "".join(f'<a href="{n}/">{n}</a><br>\n' for n in sorted(files))
    (simple / "index.html").write_text(
        f"<!DOCTYPE html>\n<html><body>\n{project_links}</body></html>\n"
    )
    return files


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port); yield the ``.../simple/`` URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()


def offline_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment with every non-local HTTP(S) request sent to a closed port."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env[key] = DEAD_PROXY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


# -- fromager ----------------------------------------------------------------------------------


def fromager_venv(cache: Path, spec: str) -> tuple[Path, str]:
    """A virtualenv holding fromager (``spec`` from PyPI), kept in ``cache``; its version."""
    venv = cache / "fromager-venv"
    stamp = venv / "bench-spec.txt"
    fromager = venv / "bin" / "fromager"
    if not (fromager.exists() and stamp.exists() and stamp.read_text() == spec):
        _log(f"installing {spec} into {venv} (once; not timed)")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec], check=True
        )
        stamp.write_text(spec)
    version = subprocess.run(
        [str(fromager), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return venv, version


def build_order(index_url: str, files: dict[str, list[Path]], names: Sequence[str]) -> list[Any]:
    """The ``build-order.json`` that ``fromager bootstrap`` writes for these packages (build
    requirements first: setuptools, pre-built), as its ``build-sequence`` reads it."""
    entries: list[Any] = []
    for name, paths in sorted(files.items()):
        if name in names:
            continue
        wheel = paths[0]
        version = str(parse_wheel_filename(wheel.name)[1])
        entries.append(
            {
                "req": f"{name}>=61",
                "constraint": "",
                "dist": name,
                "version": version,
                "prebuilt": True,
                "source_url": f"{index_url}{name}/{wheel.name}",
                "source_url_type": "prebuilt",
            }
        )
    for name in names:
        sdist = files[name][0]
        entries.append(
            {
                "req": f"{name}=={VERSION}",
                "constraint": "",
                "dist": name,
                "version": VERSION,
                "prebuilt": False,
                "source_url": f"{index_url}{name}/{sdist.name}",
                "source_url_type": "sdist",
            }
        )
    return entries


_TOOK = re.compile(r"\b(\w+) took (\d+):(\d+):(\d+(?:\.\d+)?) to (.+?)\s*$")


def fromager_steps(logs: Path) -> dict[str, tuple[int, float]]:
    """fromager's own step timings (``metrics.timeit``) from its per-package debug logs."""
    steps: dict[str, list[float]] = defaultdict(list)
    for log in sorted(logs.glob("bpbench_pkg_*.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = _TOOK.search(line)
            if match:
                hours, minutes, seconds = match.group(2, 3, 4)
                value = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
                steps[match.group(5)].append(value)
    return {step: (len(v), sum(v)) for step, v in steps.items()}


@dataclass
class Run:
    tool: str
    phase: str
    seconds: float
    packages: int
    note: str = ""
    details: list[str] = field(default_factory=list)
    #: The 1-minute load average before and after the run (the machine is shared).
    load: tuple[float, float] = (0.0, 0.0)
    #: :func:`code_state` when the run started (buildprint runs).
    code: str = ""

    @property
    def per_package(self) -> float:
        return self.seconds / self.packages


def fromager_command(venv: Path, base: Path, jobs: int) -> list[str]:
    """``fromager`` with its folders under ``base`` and ``jobs`` workers (the subcommand
    follows)."""
    return [
        str(venv / "bin" / "fromager"),
        "--sdists-repo",
        str(base / "sdists-repo"),
        "--wheels-repo",
        str(base / "wheels-repo"),
        "--work-dir",
        str(base / "work"),
        "--settings-file",
        str(base / "settings.yaml"),  # absent: fromager's defaults
        "--settings-dir",
        str(base / "settings"),
        "--patches-dir",
        str(base / "patches"),
        "--variant",
        "cpu",
        "--jobs",
        str(jobs),
    ]


def run_fromager(
    venv: Path,
    base: Path,
    index_url: str,
    files: dict[str, list[Path]],
    names: list[str],
    jobs: int,
    options: Sequence[str] = (),
) -> Run:
    base.mkdir(parents=True)
    (base / "work").mkdir()
    (base / "settings").mkdir()
    (base / "patches").mkdir()
    # setuptools comes as a wheel, as the pre-built build dependency of every package.
    for other in files:
        if other not in names:
            (base / "settings" / f"{other}.yaml").write_text(
                "variants:\n  cpu:\n    pre_built: true\n"
            )
    order = base / "build-order.json"
    order.write_text(json.dumps(build_order(index_url, files, names), indent=2))
    command = [
        *fromager_command(venv, base, jobs),
        *options,
        "build-sequence",
        str(order),
    ]
    # fromager runs `uv` from PATH: the one installed beside it.
    env = offline_env({"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"})
    env.pop("VIRTUAL_ENV", None)
    output = base / "fromager-output.log"
    os.sync()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with output.open("wb") as out:
        proc = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base, check=False
        )
    seconds = time.perf_counter() - started
    text = output.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(
            f"fromager build-sequence failed ({proc.returncode}); output in {output}:\n"
            + "\n".join(text.splitlines()[-40:])
        )
    wheels = sorted((base / "wheels-repo" / "downloads").glob("bpbench_pkg_*.whl"))
    summary = json.loads((base / "work" / "build-sequence-summary.json").read_text())
    built = [e for e in summary if not e["skipped"] and not e["prebuilt"]]
    if len(wheels) != len(names) or len(built) != len(names):
        raise SystemExit(
            f"fromager made {len(wheels)} wheels ({len(built)} built) of {len(names)}; see {output}"
        )
    isolation = re.search(r"network isolation: (\w+)", text)
    note = f"network isolation {isolation.group(1) if isolation else '?'}"
    # fromager starts its own wheel server in a thread and asks it before it listens.
    refused = sum(
        1 for line in text.splitlines() if "Retrying" in line and "Connection refused" in line
    )
    if refused:
        note += (
            f"; {refused} retried requests (with backoff): its own wheel server was not "
            "listening yet"
        )
    run = Run("fromager", "build-sequence, cold", seconds, len(names), note)
    run.load = (load, os.getloadavg()[0])
    steps = fromager_steps(base / "work" / "logs")
    for step, (count, total) in sorted(steps.items(), key=lambda s: -s[1][1]):
        run.details.append(
            f"{step:<40} {count:5d} calls {total:8.2f} s {total / len(names):7.3f} s/pkg"
        )
    return run


# -- buildprint --------------------------------------------------------------------------------


def buildprint_command() -> list[str]:
    """``python -m buildprint`` where the package has a ``__main__``, else the CLI's entry."""
    if importlib.util.find_spec("buildprint.__main__") is not None:
        return [sys.executable, "-m", "buildprint"]
    return [sys.executable, "-c", "from buildprint.cli.main import main; main()"]


def buildprint_project(root: Path, index_url: str, names: Sequence[str]) -> Path:
    root.mkdir(parents=True)
    (root / "requirements.txt").write_text("".join(f"{n}=={VERSION}\n" for n in names))
    (root / "buildprint.toml").write_text(f'[project]\nindex-url = "{index_url}"\n')
    return root


def run_buildprint(
    project: Path, phase: str, names: list[str], jobs: int, uv_cache: Path, expect: str
) -> Run:
    command = [*buildprint_command(), "build", "-p", str(project), "-j", str(jobs), "--json"]
    env = offline_env({"UV_CACHE_DIR": str(uv_cache)})
    os.sync()
    load, code = os.getloadavg()[0], code_state()
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    changed = code_state() != code
    log = project / f"buildprint-{phase.split(',')[0].replace(' ', '-')}.log"
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(
            f"buildprint build ({phase}) failed ({proc.returncode}); output in {log}:\n"
            + proc.stderr[-4000:]
        )
    packages = json.loads(proc.stdout)["packages"]
    done = {p["name"]: p["action"] for p in packages}
    wrong = {n: done.get(n) for n in names if done.get(n) != expect}
    wheels = sorted(project.glob("wheelhouse/bpbench_pkg_*.whl"))
    if wrong or len(wheels) != len(names):
        shown = dict(list(wrong.items())[:5])
        first: dict[str, Any] = next((p for p in packages if p["name"] in wrong), {})
        why = f"; {first.get('name')}: {first.get('reason')!r}, changed {first.get('changed')}"
        raise SystemExit(
            f"buildprint ({phase}): {len(names) - len(wrong)} of {len(names)} {expect} "
            f"(others: {shown}){why if first else ''}; {len(wheels)} wheels in the "
            f"wheelhouse; see {log}"
        )
    own = sum(float(p.get("seconds", 0.0)) for p in packages)
    run = Run("buildprint", phase, seconds, len(names), load=(load, load_after), code=code)
    if changed:
        run.note = "buildprint's code changed on disk during this run"
    run.details.append(
        f"per-package seconds in --json (sign + {expect}): {own:.2f} s in all, "
        f"{own / len(names):.3f} s/pkg; the rest of the wall time ({seconds - own:.2f} s): "
        "interpreter start, graph (locking when there is no lock), plan"
    )
    return run


# -- buildprint, in-process with its steps timed (--phases) ------------------------------------

#: (module, attribute path, label, context set while it runs); missing ones are skipped.
_STEPS: tuple[tuple[str, str, str, str | None], ...] = (
    ("buildprint.engine", "Engine.graph", "graph() (sources, lock)", None),
    ("buildprint.builder.preparer", "Preparer.lock", "lock one package (all of it)", "lock"),
    ("buildprint.builder.scheduler", "Builder._build", "build one package (all of it)", "build"),
    ("buildprint.plan.planner", "Planner.decide", "decide (signature, store lookup)", None),
    ("buildprint.builder.preparer", "Preparer.source_tree", "source tree (extract, patch)", None),
    ("buildprint.builder.preparer", "resolve", "uv pip compile (resolve pins)", None),
    ("buildprint.builder.preparer", "Preparer.wheels", "fetch pinned wheels", None),
    ("buildprint.builder.environment", "BuildEnvironment.create", "uv venv", None),
    ("buildprint.builder.environment", "BuildEnvironment.install", "uv pip install", None),
    ("buildprint.builder.environment", "BuildEnvironment.remove", "remove venv", None),
    (
        "buildprint.builder.backend",
        "get_requires_for_build_wheel",
        "backend get_requires_for_build_wheel",
        None,
    ),
    ("buildprint.builder.backend", "build_wheel", "backend build_wheel", None),
    ("buildprint.builder.scheduler", "check_built_wheel", "check built wheel", None),
    ("buildprint.builder.scheduler", "embed_manifest", "embed manifest", None),
    ("buildprint.builder.scheduler", "artifact_digest", "artifact digest", None),
    ("buildprint.store.local", "LocalStore.put_blob", "store put_blob", None),
    ("buildprint.store.local", "LocalStore.put_record", "store put_record", None),
    ("buildprint.builder.wheelhouse", "Wheelhouse.add", "wheelhouse add", None),
)


@contextlib.contextmanager
def timed_steps(totals: dict[str, list[float]]) -> Iterator[None]:
    """Wrap the functions of :data:`_STEPS`; add each call's seconds to ``totals`` under
    ``<context>: <label>`` (context: whether it ran while locking or building a package)."""
    import importlib

    local = threading.local()
    guard = threading.Lock()
    undo: list[Callable[[], None]] = []

    def wrapper(original: Callable[..., Any], label: str, context: str | None) -> Any:
        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            outer = getattr(local, "context", "")
            key = f"{context or outer or 'run'}: {label}"
            if context:
                local.context = context
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                local.context = outer
                with guard:
                    totals[key].append(spent)

        return timed

    try:
        for module_name_, path, label, context in _STEPS:
            try:
                owner: Any = importlib.import_module(module_name_)
            except ImportError:
                continue
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part, None)
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None or not callable(original):
                continue
            setattr(owner, attr, wrapper(original, label, context))
            undo.append(functools.partial(setattr, owner, attr, original))
        yield
    finally:
        for restore in reversed(undo):
            restore()


def phases_run(project: Path, packages: int, jobs: int) -> list[str]:
    """One cold build in this process (the child ``--phases`` starts, in the environment it
    was given) with its steps timed; the report's lines."""
    from buildprint import Engine

    totals: dict[str, list[float]] = defaultdict(list)
    with timed_steps(totals):
        started = time.perf_counter()
        with Engine(project) as engine:
            outcomes = engine.build(jobs)
        wall = time.perf_counter() - started
    built = sum(1 for o in outcomes if o.done == "built")
    if built != packages:
        failed = next((o for o in outcomes if o.done != "built"), None)
        why = f"; {failed.decision.node.name}: {failed.done} {failed.error or ''}" if failed else ""
        raise SystemExit(f"--phases run: {built} of {packages} built{why}")
    lines = [
        f"in-process cold build (Engine.build, no interpreter start): {wall:.2f} s, "
        f"{wall / packages:.3f} s/pkg",
        "  (nested: 'lock one package' holds the lock: steps, 'build one package' the build:"
        " ones; graph() holds the locking)",
        f"  {'step':<52} {'calls':>5} {'total s':>9} {'s/pkg':>7} {'share':>6}",
    ]
    for key, values in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        total = sum(values)
        lines.append(
            f"  {key:<52} {len(values):5d} {total:9.2f} {total / packages:7.3f} "
            f"{100 * total / wall:5.1f}%"
        )
    return lines


def run_phases(project: Path, packages: int, jobs: int, uv_cache: Path) -> list[str]:
    """:func:`phases_run` in a fresh interpreter, so it runs buildprint's code as it is now,
    offline and with its own uv cache, like the timed runs."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--phases-child",
        str(project),
        "--packages",
        str(packages),
        "--jobs",
        str(jobs),
    ]
    env = offline_env({"UV_CACHE_DIR": str(uv_cache)})
    os.sync()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"--phases run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.splitlines()


def code_state() -> str:
    """A fingerprint of buildprint's modules as they are on disk (path, size, mtime): other
    people's edits during a run would make its phases run different code."""
    spec = importlib.util.find_spec("buildprint")
    digest = hashlib.sha256()
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for path in sorted(Path(folder).rglob("*.py")):
            info = path.stat()
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


# -- report ------------------------------------------------------------------------------------


def table(runs: Sequence[Run]) -> list[str]:
    fromager = next((r for r in runs if r.tool == "fromager"), None)
    issue = {"fromager": "1.61", "cold (locks too)": "1.25", "lock exists": "0.64"}
    lines = [
        f"{'tool':<11} {'phase':<22} {'total s':>9} {'s/package':>10} "
        f"{'buildprint/fromager':>20} {'issue s/pkg':>12} {'load 1m':>11}",
        "-" * 101,
    ]
    for run in runs:
        ratio = (
            f"{run.per_package / fromager.per_package:.2f}x"
            if fromager is not None and run.tool == "buildprint"
            else "—"
        )
        figure = issue.get(run.tool if run.tool == "fromager" else run.phase, "—")
        lines.append(
            f"{run.tool:<11} {run.phase:<22} {run.seconds:9.2f} {run.per_package:10.3f} "
            f"{ratio:>20} {figure:>12} {run.load[0]:5.1f}>{run.load[1]:<5.1f}"
        )
    lines.append(f"(load 1m: the load average before>after each run, on {os.cpu_count()} cores)")
    codes = {r.code for r in runs if r.code}
    if len(codes) > 1 or any("code changed" in r.note for r in runs):
        lines.append(
            "WARNING: buildprint's modules changed on disk between or during these runs "
            f"(states {', '.join(sorted(codes))}): its phases did not all run the same code"
        )
    lines.append("")
    lines.append(
        "issue 10's figures (s/package): fromager 1.61, buildprint 1.25 cold, 0.64 once the "
        f"lock exists; target: buildprint at most {TARGET_RATIO}x fromager"
    )
    if fromager is not None:
        for run in runs:
            if run.tool == "buildprint" and run.phase != "no-op rerun":
                share = run.per_package / fromager.per_package
                verdict = "met" if share <= TARGET_RATIO else "MISSED"
                lines.append(f"  buildprint {run.phase}: {share:.2f}x fromager -> {verdict}")
    return lines


def _remove_unless_failed(root: Path, failed: list[bool]) -> None:
    if failed[0]:
        print(f"(the run failed: {root} is kept for inspection)", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packages", type=int, default=100, help="sdists to build (100)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="parallel builds (1)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"({DEFAULT_CACHE})")
    parser.add_argument("--dir", type=Path, help="run folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    parser.add_argument("--fromager", default="fromager", help="pip spec (fromager)")
    parser.add_argument(
        "--fromager-option",
        action="append",
        default=[],
        metavar="OPT",
        help="extra global fromager option, e.g. --fromager-option=--no-network-isolation",
    )
    parser.add_argument(
        "--only", choices=("fromager", "buildprint"), help="run one tool (no ratios)"
    )
    parser.add_argument(
        "--phases", action="store_true", help="one more cold buildprint build, steps timed"
    )
    parser.add_argument("--phases-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phases_child is not None:
        for line in phases_run(args.phases_child, args.packages, args.jobs):
            print(line)
        return 0
    if args.packages < 1 or args.jobs < 1:
        parser.error("--packages and --jobs must be at least 1")
    cache = args.cache.expanduser().resolve()
    names = [dist_name(n) for n in range(args.packages)]

    failed: list[bool] = [True]  # cleared when the run gets to its end
    with contextlib.ExitStack() as stack:
        if args.dir is not None:
            root = args.dir.resolve()
            if root.exists() and any(root.iterdir()):
                raise SystemExit(f"{root} is not empty")
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="bench-fromager-"))
            if not args.keep:
                stack.callback(_remove_unless_failed, root, failed)
        _log(f"run folder: {root}")

        # -- setup, not timed ----------------------------------------------------------------
        wheels = setuptools_wheels(cache)
        venv, fromager_version = (None, "")
        if args.only != "buildprint":
            venv, fromager_version = fromager_venv(cache, args.fromager)
        files = make_index(root / "index", args.packages, wheels)
        index_url = stack.enter_context(serve(root / "index"))
        # Compile and warm buildprint's modules once, so the first timed run does not pay it.
        subprocess.run([*buildprint_command(), "--version"], check=True, capture_output=True)

        _log(f"{args.packages} sdists + {', '.join(w.name for w in wheels)} served at {index_url}")
        if fromager_version:
            _log(f"fromager: {fromager_version} ({venv})")
        _log(f"buildprint: {' '.join(buildprint_command()[:3])} ... (-j {args.jobs})\n")

        runs: list[Run] = []
        if args.only != "buildprint":
            assert venv is not None
            _log("fromager build-sequence, cold ...")
            runs.append(
                run_fromager(
                    venv,
                    root / "fromager",
                    index_url,
                    files,
                    names,
                    args.jobs,
                    args.fromager_option,
                )
            )
            _log(f"  {runs[-1].seconds:.2f} s")
        if args.only != "fromager":
            cold = buildprint_project(root / "bp-cold", index_url, names)
            _log("buildprint build, cold (no lock, empty store) ...")
            runs.append(
                run_buildprint(
                    cold, "cold (locks too)", names, args.jobs, root / "uv-cache-cold", "built"
                )
            )
            _log(f"  {runs[-1].seconds:.2f} s")
            lock = cold / "buildprint.lock"
            if not lock.is_file():
                raise SystemExit(f"the cold build wrote no {lock}")
            # A fresh project with the lock kept: nothing to delete before the timed run.
            locked = buildprint_project(root / "bp-locked", index_url, names)
            shutil.copy2(lock, locked / "buildprint.lock")
            _log("buildprint build, lock exists (empty store) ...")
            runs.append(
                run_buildprint(
                    locked, "lock exists", names, args.jobs, root / "uv-cache-locked", "built"
                )
            )
            _log(f"  {runs[-1].seconds:.2f} s")
            _log("buildprint build, no-op rerun ...")
            runs.append(
                run_buildprint(
                    locked, "no-op rerun", names, args.jobs, root / "uv-cache-locked", "reused"
                )
            )
            _log(f"  {runs[-1].seconds:.2f} s")
            cold_run, locked_run = runs[-3], runs[-2]
            cold_run.details.append(
                f"locking, estimated as cold - lock exists: "
                f"{cold_run.seconds - locked_run.seconds:.2f} s, "
                f"{(cold_run.seconds - locked_run.seconds) / args.packages:.3f} s/pkg"
            )

        _log(f"\n{args.packages} packages, -j {args.jobs}, one after the other in this run:\n")
        for line in table(runs):
            _log(line)
        for run in runs:
            if run.details or run.note:
                _log(f"\n{run.tool} {run.phase}{f' ({run.note})' if run.note else ''}:")
                for line in run.details:
                    _log(f"  {line}")

        if args.phases and args.only != "fromager":
            _log("\nbuildprint, one more cold build with its steps timed (--phases) ...")
            project = buildprint_project(root / "bp-phases", index_url, names)
            for line in run_phases(project, args.packages, args.jobs, root / "uv-cache-phases"):
                _log(line)
        if args.keep or args.dir is not None:
            _log(f"\nkept: {root}")
        failed[0] = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
