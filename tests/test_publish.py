"""Publishing the wheelhouse to a real pypiserver, then installing from it with pip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from buildprint.cli.main import main
from tests.support.sdists import make_sdist
from tests.support.servers.pypi import PypiServer


@pytest.mark.servers
def test_publish_then_pip_install(
    tmp_path: Path, backend_wheels: Path, pypi_server: PypiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = pypi_server
    make_sdist(tmp_path / "dist", "pubpkg", "1.0", "setuptools")
    (tmp_path / "buildprint.toml").write_text(f'[project]\nindex-url = "{backend_wheels}"\n')
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / "pubpkg.toml").write_text(
        'source = { path = "dist/pubpkg-1.0.tar.gz" }\n'
    )
    (tmp_path / "requirements.txt").write_text("pubpkg==1.0\n")
    runner = CliRunner()
    assert runner.invoke(main, ["build", "-p", str(tmp_path)]).exit_code == 0
    monkeypatch.setenv("BUILDPRINT_PUBLISH_USER", server.user)
    monkeypatch.setenv("BUILDPRINT_PUBLISH_PASSWORD", server.password)
    result = runner.invoke(
        main,
        ["publish", "--repository-url", server.url, "-p", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert "pubpkg-1.0-py3-none-any.whl: uploaded" in result.output
    assert server.password not in result.output
    again = runner.invoke(main, ["publish", "--repository-url", server.url, "-p", str(tmp_path)])
    assert "exists" in again.output
    target = tmp_path / "installed"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-cache-dir",
            "--index-url",
            f"{server.url.rstrip('/')}/simple/",
            "--target",
            str(target),
            "pubpkg==1.0",
        ],
        check=True,
        env={"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "HOME": str(tmp_path)},
    )
    assert list(target.glob("pubpkg-1.0.dist-info/buildprint.json"))
