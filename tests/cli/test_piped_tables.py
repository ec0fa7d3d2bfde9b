"""Piped output keeps its columns: each table row, tree line and listing is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import CliRun, PackageSpec, run_cli, write_project

pytestmark = pytest.mark.slow  # a real build, then several CLI runs

#: 68 characters: far past the 80-column layout rich falls back to off a terminal.
LONG = "a-package-with-a-really-very-long-name-for-testing-the-table-columns"


def checked(result: CliRun) -> CliRun:
    assert result.code == 0, f"exit {result.code}:\n{result.stdout}\n{result.stderr}"
    return result


def rows(stdout: str) -> list[str]:
    """A table's body rows: lines with a cell border and no heading (heavy) box drawing."""
    return [line for line in stdout.splitlines() if "│" in line and "┃" not in line]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = tmp_path_factory.mktemp("piped") / "project"
    return write_project(root, backend_wheels, [PackageSpec(LONG), PackageSpec("short")])


def test_build_plan_and_cache_ls_print_one_line_per_package_when_piped(project: Path) -> None:
    # run_cli captures stdout and stderr: pipes, not a terminal, and no COLUMNS is given.
    built = checked(run_cli(project, "build", env={"COLUMNS": ""}))
    table = rows(built.stdout)
    assert len(table) == 2, built.stdout
    long_row, short_row = table
    assert f"│ {LONG} " in long_row and " 1.0 " in long_row and " built " in long_row
    assert "never built" in long_row
    assert short_row.startswith("│ short ") and " built " in short_row
    # Every row, the heading and the borders are as wide as each other: the columns line up.
    box = [line for line in built.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert len({len(line) for line in box}) == 1, built.stdout
    assert "0 reused, 0 fetched, 2 built, 0 failed" in built.stdout
    # The progress lines on stderr are whole lines too.
    assert f"✓ {LONG} 1.0 built in " in built.stderr

    planned = checked(run_cli(project, "plan"))
    table = rows(planned.stdout)
    assert len(table) == 2, planned.stdout
    assert f"│ {LONG} " in table[0] and "same signature in the local store" in table[0]

    listed = checked(run_cli(project, "cache", "ls")).stdout.splitlines()
    wheel = f"{LONG.replace('-', '_')}-1.0-py3-none-any.whl"
    (line,) = [entry for entry in listed if entry.startswith(f"{LONG} 1.0 ")]
    assert line.endswith(f" {wheel}")
    assert len(listed) == 2, listed


def test_show_and_why_keep_long_lines_whole_when_piped(project: Path) -> None:
    checked(run_cli(project, "build"))
    signature = checked(run_cli(project, "show", LONG, "--json")).json()["signature"]
    shown = checked(run_cli(project, "show", LONG)).stdout.splitlines()
    assert shown[0].startswith(f"{LONG} 1.0  signature {signature}  (scheme ")
    assert all(line.count("│") in (0, 4) for line in shown), shown  # no folded cell

    settings = project / "packages" / f"{LONG}.toml"
    settings.write_text(settings.read_text() + "rebuild = 1\n")
    try:
        why = checked(run_cli(project, "why", LONG)).stdout.splitlines()
    finally:
        settings.write_text(settings.read_text().replace("rebuild = 1\n", ""))
    assert why[0] == (f"{LONG} 1.0: build (inputs changed); compared with {signature[:16]}"), why
    assert why[1:] == ["└── rebuild: 0 → 1"]
