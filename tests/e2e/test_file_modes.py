"""What buildprint writes for others to read honours the umask, like any other program's
output: wheels, the ``simple/`` index and the lock file (a web server running as another user
serves the wheelhouse)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import BUILDPRINT, PackageSpec, cli_env, write_project


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_follow_the_umask(
    tmp_path: Path, backend_wheels: Path, umask: int, expected: int
) -> None:
    root = write_project(tmp_path / "project", backend_wheels, [PackageSpec("alpha")])
    done = subprocess.run(
        [BUILDPRINT, "build", "--json"],
        cwd=root,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (root / "wheelhouse").glob("*.whl")
    outputs = [
        wheel,
        root / "wheelhouse" / "simple" / "index.html",
        root / "wheelhouse" / "simple" / "alpha" / "index.html",
        root / "buildprint.lock",
    ]
    assert {str(p.relative_to(root)): oct(mode(p)) for p in outputs} == {
        str(p.relative_to(root)): oct(expected) for p in outputs
    }
