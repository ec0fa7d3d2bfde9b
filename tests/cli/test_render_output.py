"""Rendering for people: changes in words, wide output off a terminal, and what the build
progress holds back until it is done (warnings, log records)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from io import StringIO

from rich.console import Console

from buildprint.cli import render
from buildprint.cli.progress import BuildProgress
from buildprint.signature.diff import ABSENT, Change


def printed(renderable: object, width: int = 200) -> str:
    buffer = StringIO()
    Console(file=buffer, force_terminal=False, width=width).print(renderable)
    return buffer.getvalue()


def test_plugin_changes_read_as_words_with_short_digests_never_as_json() -> None:
    changes = [
        Change("plugin/hooks/update_env", "1" * 64, "2" * 64, note="hook update_env changed in m"),
        Change("plugin/hooks/build_wheel", ABSENT, "3" * 64, note="hook build_wheel added to m"),
        Change(
            "plugin",
            None,
            {"module": "plugins.m", "code": {"plugins.m:update_env": "1" * 64}, "third-party": {}},
        ),
        Change("plugin", {"module": "plugins.m", "code": {}}, ABSENT),
        Change("env/CFLAGS", "-O2", "-O3"),
    ]
    lines = printed(render.changes_tree("alpha 1.0", changes)).splitlines()
    assert lines == [
        "alpha 1.0",
        f"├── plugin/hooks/update_env: hook update_env changed in m ({'1' * 8}… → {'2' * 8}…)",
        "├── plugin/hooks/build_wheel: hook build_wheel added to m",
        "├── plugin: (none) → plugins.m (hooks update_env)",
        "├── plugin: plugins.m (no hooks) → (none)",
        "└── env/CFLAGS: -O2 → -O3",
    ]


def test_values_are_printed_as_they_are_not_as_markup() -> None:
    text = printed(render.changes_tree("x", [Change("env/FLAGS", "[bold]a[/]", "[red]b")]))
    assert "env/FLAGS: [bold]a[/] → [red]b" in text


def test_consoles_off_a_terminal_are_wide_and_on_one_keep_its_width() -> None:
    # Run in a child whose stdout and stderr are pipes (as a script or CI sees buildprint).
    code = (
        "from buildprint.cli import render\n"
        "print(render.console().width, render.console(stderr=True).width)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert done.stdout.split() == [str(render.PIPED_WIDTH)] * 2
    terminal = Console(file=StringIO(), force_terminal=True, width=90)
    assert terminal.is_terminal and terminal.width == 90  # what render.console keeps


def test_progress_holds_warnings_and_log_records_until_it_ends() -> None:
    buffer = StringIO()
    console = Console(file=buffer, force_terminal=False, width=100)
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with BuildProgress(console):
            for _ in range(3):  # the same warning from the same place: said once
                warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
            logging.getLogger("buildprint.store").warning("blob %s damaged", "ab12")
            logging.getLogger("buildprint.store").info("not worth saying")
            assert buffer.getvalue() == ""  # nothing between the progress lines
        assert warnings.showwarning is before  # given back
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("warning: DeprecationWarning: a library's deprecation (")
    assert lines[1] == "warning: blob ab12 damaged"
    # After the display, log records are the logging module's business again.
    handlers = logging.getLogger().handlers
    assert not any(type(h).__name__ == "_HeldRecords" for h in handlers)
