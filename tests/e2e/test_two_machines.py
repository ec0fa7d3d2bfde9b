"""Two machines sharing one remote cache (nginx WebDAV): A builds and pushes; B fetches every
package, builds nothing, and ends with byte-identical wheels. Untrusted or tampered entries are
never used: B builds instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from buildprint.cli.main import main
from tests.support.sdists import make_sdist
from tests.support.servers.nginx import NginxDav

pytestmark = pytest.mark.servers


def run(project: Path, *args: str) -> tuple[int, Any, str]:
    result = CliRunner().invoke(main, [*args, "-p", str(project)])
    output = result.stdout
    data = json.loads(output) if "--json" in args and output.startswith("{") else None
    return result.exit_code, data, result.output


def actions(data: Any) -> dict[str, str]:
    return {p["name"]: p["action"] for p in data["packages"]}


def machine(root: Path, source: Path, remote: str, *, write: bool, trusted: str = "") -> Path:
    """A copy of the project (sources, settings, lock) with its own store and wheelhouse."""
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(".buildprint", "wheelhouse"))
    text = (root / "buildprint.toml").read_text()
    keys = f'trusted-keys = ["{trusted}"]\n' if trusted else ""
    write_flag = "true" if write else "false"
    (root / "buildprint.toml").write_text(
        f'{text}\n[[remote]]\nurl = "{remote}"\nwrite = {write_flag}\n{keys}'
    )
    return root


@pytest.fixture
def project(tmp_path: Path, backend_wheels: Path) -> Path:
    root = tmp_path / "origin"
    make_sdist(root / "dist", "alpha", "1.0", "setuptools")
    make_sdist(root / "dist", "cfast", "1.0", "c-ext")
    (root / "buildprint.toml").write_text(f'[project]\nindex-url = "{backend_wheels}"\n')
    (root / "packages").mkdir()
    for name in ("alpha", "cfast"):
        (root / "packages" / f"{name}.toml").write_text(
            f'source = {{ path = "dist/{name}-1.0.tar.gz" }}\n'
        )
    (root / "requirements.txt").write_text("alpha==1.0\ncfast==1.0\n")
    code, _, output = run(root, "lock")  # the lock travels with the project, like a commit
    assert code == 0, output
    return root


def test_b_fetches_everything_and_gets_identical_wheels(
    tmp_path: Path, project: Path, http_url: str, nginx_server: NginxDav
) -> None:
    a = machine(tmp_path / "a", project, http_url, write=True)
    code, data, output = run(a, "build", "--json")
    assert code == 0, output
    assert actions(data) == {"alpha": "built", "cfast": "built"}
    key = run(a, "keys", "generate")[2].strip()
    assert key.startswith("ed25519:")

    b = machine(tmp_path / "b", project, http_url, write=False, trusted=key)
    code, data, output = run(b, "plan", "--json")
    assert code == 0, output
    assert actions(data) == {"alpha": "fetch", "cfast": "fetch"}
    logged = len(nginx_server.access_log.read_text().splitlines())
    code, data, output = run(b, "build", "--json")
    assert code == 0, output
    assert actions(data) == {"alpha": "fetched", "cfast": "fetched"}
    # Fetched up front, all at once: each record looked up once, each wheel downloaded once.
    requests = [
        line.split('"')[1].split()[:2]
        for line in nginx_server.access_log.read_text().splitlines()[logged:]
    ]
    gets = [path.rsplit("/", 2)[-2] for method, path in requests if method == "GET"]
    assert sorted(gets) == ["ac", "ac", "cas", "cas"], requests
    wheels_a = sorted((a / "wheelhouse").glob("*.whl"))
    wheels_b = sorted((b / "wheelhouse").glob("*.whl"))
    assert [w.name for w in wheels_a] == [w.name for w in wheels_b] and len(wheels_a) == 2
    for wa, wb in zip(wheels_a, wheels_b, strict=True):
        assert wa.read_bytes() == wb.read_bytes()
    # B's own store now has them: a second plan reuses locally.
    assert actions(run(b, "plan", "--json")[1]) == {"alpha": "reuse", "cfast": "reuse"}


def test_untrusted_or_tampered_entries_are_rebuilt(
    tmp_path: Path, project: Path, http_url: str, nginx_server: Any
) -> None:
    a = machine(tmp_path / "a", project, http_url, write=True)
    assert run(a, "build", "--json")[0] == 0
    key = run(a, "keys", "generate")[2].strip()

    # A machine that does not trust A's key uses nothing from the remote.
    stranger = machine(tmp_path / "stranger", project, http_url, write=False)
    code, data, output = run(stranger, "plan", "--json")
    assert code == 0, output
    assert actions(data) == {"alpha": "build", "cfast": "build"}
    assert "unknown key" in output or "untrusted" in output.lower()

    # Tamper with alpha's wheel on the server: B detects it and builds alpha instead.
    prefix = http_url.split("/open/", 1)[1]
    blobs = sorted((nginx_server.data / "open" / prefix / "cas").iterdir())
    assert blobs
    for blob in blobs:
        data_bytes = bytearray(blob.read_bytes())
        data_bytes[len(data_bytes) // 2] ^= 0xFF
        blob.write_bytes(bytes(data_bytes))
    b = machine(tmp_path / "b", project, http_url, write=False, trusted=key)
    code, data, output = run(b, "build", "--json")
    assert code == 0, output
    assert actions(data) == {"alpha": "built", "cfast": "built"}
    for wheel in (b / "wheelhouse").glob("*.whl"):
        assert wheel.read_bytes() == (a / "wheelhouse" / wheel.name).read_bytes()
