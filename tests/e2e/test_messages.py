"""Messages are printed as written: text in square brackets (``[signature]``, a backend's
``[error]``) is not taken for console markup and lost."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from buildprint.cli import render
from buildprint.plan.decision import PlanEntry
from tests.support.cli import PackageSpec, run_cli, write_project


def test_a_failure_message_keeps_its_square_brackets(tmp_path: Path, backend_wheels: Path) -> None:
    setup = "raise SystemExit('[project] and [signature] are gone? [red]no[/]')\n"
    spec = PackageSpec("loud", files={"setup.py": setup})
    project = write_project(tmp_path / "project", backend_wheels, [spec])
    failed = run_cli(project, "build")
    assert failed.code == 1
    assert "[project] and [signature] are gone? [red]no[/]" in failed.stderr


def test_a_reason_in_a_table_keeps_its_square_brackets() -> None:
    entry = PlanEntry("loud", "1.0", None, "build", reason="see [signature] env-pass-through")
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render.summary_table([entry], "plan"))
    console.print(render.changes_tree("[project] python changed", []))
    text = console.export_text()
    assert "see [signature] env-pass-through" in text
    assert "[project] python changed" in text
