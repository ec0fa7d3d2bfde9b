"""The build progress display (live on a terminal, plain lines elsewhere) and the summary."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from buildprint.builder.outcome import Outcome
from buildprint.cli import render
from buildprint.cli.progress import BuildProgress
from buildprint.plan.decision import Decision
from buildprint.plan.graph import PackageNode
from buildprint.project.settings import PackageSettings
from buildprint.resolve.lockfile import LockedBuildDeps
from buildprint.resolve.sources import ResolvedSource
from buildprint.signature.diff import ABSENT, Change
from buildprint.states import Done
from buildprint.store.record import ActionRecord, Artifact
from tests.support.cli import BUILDPRINT, PackageSpec, cli_env, write_project

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def plain(text: str) -> str:
    """Terminal output without colours, cursor movement or carriage returns."""
    return _ANSI.sub("", text)


def node(name: str, version: str = "1.0", deps: tuple[str, ...] = ()) -> PackageNode:
    source = ResolvedSource(name, version, f"dist/{name}-{version}.tar.gz", "ab" * 32, 3, 100, None)
    return PackageNode(
        name=name,
        version=version,
        settings=PackageSettings.model_validate({}),
        settings_file=Path(f"packages/{name}.toml"),
        source=source,
        patches=[],
        locked=LockedBuildDeps(requires=[], wheels=[]),
        deps=deps,
    )


def record(name: str, version: str = "1.0") -> ActionRecord:
    signature = f"{name:0<8}"[:8].encode().hex() * 4
    return ActionRecord(
        signature=signature,
        name=name,
        version=version,
        manifest={"signature": signature, "scheme": 1, "components": {}},
        artifacts=(Artifact(f"{name}-{version}-py3-none-any.whl", "cd" * 32, 10, "ef" * 32),),
    )


CHANGES = [
    Change("source", "old-digest", "new-digest"),
    Change("env/CFLAGS", "-O1", "-O2"),
    Change("patches/0002-fix-the-build.patch", ABSENT, "digest"),
]


def decision_for(name: str, kind: Done) -> Decision:
    """A decision as the planner makes them, for an outcome of ``kind``."""
    package = node(name)
    if kind == "reused":
        return Decision(
            package, "reuse", record=record(name), reason="same signature in the local store"
        )
    if kind == "fetched":
        return Decision(
            package, "fetch", record=record(name), reason="same signature in a remote cache"
        )
    if kind == "built":
        return Decision(package, "build", changes=tuple(CHANGES), reason="inputs changed")
    return Decision(package, "build", reason="never built")


def outcome_for(decision: Decision, kind: Done, seconds: float) -> Outcome:
    if kind == "failed":
        return Outcome(
            decision,
            "failed",
            error="compiler exploded: error: ‘x’ undeclared\nsecond line",
            seconds=seconds,
            log=Path(f"/store/logs/{decision.node.name}-1.0.log"),
        )
    rec = decision.record or record(decision.node.name)
    return Outcome(decision, kind, rec, seconds=seconds)


KINDS: list[Done] = ["reused", "fetched", "built", "built", "failed"]


def terminal() -> tuple[Console, StringIO]:
    buffer = StringIO()
    console = Console(
        file=buffer, force_terminal=True, force_interactive=True, width=100, color_system="standard"
    )
    return console, buffer


def test_live_display_from_worker_threads_shows_running_builds_counts_and_reasons() -> None:
    console, buffer = terminal()
    names = [f"pkg-{i:02d}" for i in range(20)]
    kinds = {name: KINDS[i % len(KINDS)] for i, name in enumerate(names)}
    all_started = threading.Barrier(len(names) + 1)
    release = threading.Event()

    with BuildProgress(console, refresh_per_second=50) as progress:
        for name in names:
            progress("pending", Decision(node(name), "pending", reason="waits for a worker"))

        def work(name: str) -> None:
            # Like the runner's pool: start and finish from many threads at once.
            decision = decision_for(name, kinds[name])
            progress("start", decision)
            all_started.wait(timeout=10)
            release.wait(timeout=10)
            progress("done", outcome_for(decision, kinds[name], 65.0 if name == "pkg-02" else 1.5))

        threads = [threading.Thread(target=work, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        all_started.wait(timeout=10)
        progress.refresh()
        frames = plain(buffer.getvalue())
        running_frame = frames[frames.rindex("0/20") :]  # the latest frame: all twenty started
        release.set()
        for thread in threads:
            thread.join(timeout=10)
        assert progress.counts == {"reused": 4, "fetched": 4, "built": 8, "failed": 4}

    # While everything was running: the bar, counts, and one line per package with why.
    assert "0/20" in running_frame
    assert "20 running" in running_frame
    assert "20 pending" not in running_frame and "0 pending" in running_frame
    # The first twelve started are shown (oldest first); which ones is up to the threads.
    running = re.findall(r"^\S (pkg-\d\d) 1\.0 +(\w+) +\d+\.\ds (.*?) *$", running_frame, re.M)
    assert len(running) == 12, running_frame
    for name, action, why in running:
        kind = kinds[name]
        assert action == {"reused": "reuse", "fetched": "fetch"}.get(kind, "build")
        assert (
            why
            == {
                "reused": "same signature in the local store",
                "fetched": "same signature in a remote cache",
                "built": "inputs changed: source, env/CFLAGS, patches/0002-fix-the-build.patch",
                "failed": "never built",
            }[kind]
        )
    # Twenty running packages do not fit: the rest are counted.
    assert "… and 8 more" in running_frame

    output = plain(buffer.getvalue())
    # Finished packages scrolled above the live area, with outcome, duration and reason.
    assert "✓ pkg-02 1.0 built in 1m05s — inputs changed: source, env/CFLAGS" in output
    assert "✓ pkg-01 1.0 fetched in 1.5s — same signature in a remote cache" in output
    # A failure line wraps rather than losing where its log is.
    assert (
        "✗ pkg-04 1.0 failed in 1.5s — compiler exploded: error: ‘x’ undeclared "
        "(log: /store/logs/pkg-04-1.0.log)"
    ) in " ".join(output.split())
    assert "second line" not in output
    # Reused packages are counted, not listed.
    assert "pkg-00 1.0 reused" not in output
    # The final frame stays: everything done, counts per outcome, nothing running.
    final = output[output.rindex("/20") - 2 :]
    assert final.startswith("20/20")
    assert "4 reused · 4 fetched · 8 built · 4 failed · 0 pending" in final
    assert "running" not in final
    # The cursor, hidden while live, is shown again.
    raw = buffer.getvalue()
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")


def test_many_threads_hammering_the_display_keep_exact_counts() -> None:
    console, buffer = terminal()
    names = [f"p{i}" for i in range(400)]
    with BuildProgress(console, refresh_per_second=200) as progress:
        for name in names:
            progress("pending", Decision(node(name), "pending", reason="waits"))

        def work(chunk: list[str]) -> None:
            for i, name in enumerate(chunk):
                kind: Done = "built" if i % 2 else "reused"
                decision = decision_for(name, kind)
                progress("start", decision)
                progress("done", outcome_for(decision, kind, 0.01))

        threads = [threading.Thread(target=work, args=(names[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert progress.counts == {"reused": 200, "fetched": 0, "built": 200, "failed": 0}
    output = plain(buffer.getvalue())
    assert "400/400" in output[output.rindex("/400") - 3 :]
    assert output.count(" built in ") == 200


def test_ctrl_c_stops_the_live_area_names_what_was_running_and_ignores_late_events() -> None:
    console, buffer = terminal()
    alpha = decision_for("alpha", "built")
    with pytest.raises(KeyboardInterrupt) as raised, BuildProgress(console) as progress:
        progress("pending", Decision(node("alpha"), "pending", reason="waits"))
        progress("start", alpha)
        raise KeyboardInterrupt
    after_exit = len(buffer.getvalue())
    progress("done", outcome_for(alpha, "built", 2.0))  # a worker finishing while unwinding

    raw = buffer.getvalue()
    assert len(raw) == after_exit, "an event after exit printed something"
    # What was running is noted on the interruption rather than printed here: the CLI says
    # it in its one "buildprint: interrupted while working on: alpha" line as it exits 130
    # (issue 12; tests/cli/test_interrupt.py runs that).
    assert raised.value.__notes__ == ["while working on: alpha"]
    assert "interrupted" not in plain(raw)
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")
    assert progress.counts["built"] == 0


def test_an_error_inside_the_run_stops_the_display_too() -> None:
    console, buffer = terminal()
    with pytest.raises(RuntimeError), BuildProgress(console) as progress:
        progress("start", decision_for("beta", "built"))
        raise RuntimeError("boom")
    assert "stopped while working on: beta" in plain(buffer.getvalue())
    assert progress._display is None


def test_plain_lines_when_the_console_is_not_a_terminal() -> None:
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=False, width=100)
    cases: dict[str, Done] = {"alpha": "built", "beta": "reused", "gamma": "failed"}
    with BuildProgress(console) as progress:
        assert not progress.live
        for name, kind in cases.items():
            decision = decision_for(name, kind)
            progress("start", decision)
            progress("done", outcome_for(decision, kind, 3.0))
    lines = buffer.getvalue().splitlines()
    assert "\x1b" not in buffer.getvalue()
    assert lines == [
        "… alpha 1.0: build (inputs changed: source, env/CFLAGS, patches/0002-fix-the-build.patch)",
        "✓ alpha 1.0 built in 3.0s — inputs changed: source, env/CFLAGS, "
        "patches/0002-fix-the-build.patch",
        "… gamma 1.0: build (never built)",
        "✗ gamma 1.0 failed in 3.0s — compiler exploded: error: ‘x’ undeclared "
        "(log: /store/logs/gamma-1.0.log)",
    ]


def test_long_change_lists_are_shortened_and_counted() -> None:
    paths = [f"env/VARIABLE_{i}" for i in range(10)]
    short = render.short_paths(paths, 40)
    assert short.startswith("env/VARIABLE_0, env/VARIABLE_1")
    assert short.endswith("more")
    shown = short.split(", +")[0].split(", ")
    assert short.endswith(f"+{len(paths) - len(shown)} more")
    assert len(short) <= 40 + len(", +10 more")
    assert render.short_paths(["a", "b"], 40) == "a, b"


def test_summary_table_counts_outcomes_and_gives_the_reason_per_package() -> None:
    cases: dict[str, Done] = {"alpha": "reused", "beta": "built", "gamma": "failed"}
    outcomes = [outcome_for(decision_for(name, kind), kind, 2.0) for name, kind in cases.items()]
    buffer = StringIO()
    Console(file=buffer, width=200, color_system=None).print(
        render.summary_table(outcomes, "build")
    )
    text = buffer.getvalue()
    assert "1 reused, 0 fetched, 1 built, 1 failed" in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2]}
    assert "same signature in the local store" in rows["alpha"]
    assert "inputs changed: source, env/CFLAGS, patches/0002-fix-the-build.patch" in rows["beta"]
    assert "compiler exploded" in rows["gamma"] and "gamma-1.0.log" in rows["gamma"]
    assert "2.0s" in rows["beta"]


def _read_pty(fd: int, process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Everything the child writes to its terminal until it exits and the pty drains."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError as exc:  # EIO: the child closed its end
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    return b"".join(chunks)


def test_cli_build_on_a_terminal_shows_the_live_display_and_exits_0(
    tmp_path: Path, backend_wheels: Path
) -> None:
    project = write_project(tmp_path / "project", backend_wheels, [PackageSpec("alpha")])
    controller, child = pty.openpty()
    # 30 rows x 120 columns, as a user's terminal would report.
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = cli_env({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"})
    for name in ("NO_COLOR", "CI", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    process = subprocess.Popen(
        [BUILDPRINT, "build"], cwd=project, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    try:
        raw = _read_pty(controller, process, timeout=240).decode("utf-8", "replace")
        code = process.wait(timeout=30)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()

    output = plain(raw)
    assert code == 0, output
    assert "\x1b[?25l" in raw, "no live area: the cursor was never hidden"
    assert "preparing the build graph…" in output  # before the runner lists the packages
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")
    assert "alpha 1.0 build" in output  # the running line
    assert "never built" in output
    assert "✓ alpha 1.0 built in " in output  # scrolled above the live area
    assert "1/1" in output and "1 built" in output
    # The closing summary table, with its counts.
    assert "0 reused, 0 fetched, 1 built, 0 failed" in output


# The wheel build tells the test it started, then takes three seconds.
SLOW_SETUP = """\
import os, sys, time
from pathlib import Path
from setuptools import setup
if "bdist_wheel" in sys.argv:
    Path(os.environ["SLOW_MARKER"]).write_text("started")
    time.sleep(3)
setup()
"""


def _controlling_terminal() -> None:
    # A session of its own with the pty as its terminal, so ^C is a real SIGINT from it.
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.slow
def test_ctrl_c_on_a_real_terminal_leaves_it_usable(tmp_path: Path, backend_wheels: Path) -> None:
    marker = tmp_path / "started"
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [
            PackageSpec(
                "sleepy",
                files={"setup.py": SLOW_SETUP},
                settings=f'env = {{ SLOW_MARKER = "{marker}" }}\n',
            )
        ],
    )
    controller, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen(
        [BUILDPRINT, "build"],
        cwd=project,
        env=cli_env({"TERM": "xterm-256color"}),
        stdin=child,
        stdout=child,
        stderr=child,
        preexec_fn=_controlling_terminal,
    )
    os.close(child)
    try:
        deadline = time.monotonic() + 120
        chunks = []
        while not marker.exists() and time.monotonic() < deadline:
            # Keep draining the terminal so the child never blocks on a full pty buffer.
            if select.select([controller], [], [], 0.05)[0]:
                chunks.append(os.read(controller, 65536))
        assert marker.exists(), "the build never started"
        os.write(controller, b"\x03")
        chunks.append(_read_pty(controller, process, timeout=120))
        code = process.wait(timeout=30)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    raw = b"".join(chunks).decode("utf-8", "replace")
    output = plain(raw)
    assert code != 0, output
    assert "sleepy 1.0 build" in output
    assert "interrupted while working on: sleepy" in output
    # The live area is gone for good: the cursor is shown again after it was last hidden,
    # and nothing redraws the bar after the interruption message.
    assert raw.rindex("\x1b[?25h") > raw.rindex("\x1b[?25l")
    assert "━" not in output[output.index("interrupted while working on") :]
