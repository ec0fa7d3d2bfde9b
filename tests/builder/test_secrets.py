"""Secret canary: pass-through and secret-looking values never appear in manifests, output,
the store, the wheelhouse or logs — only their digests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from buildprint.cli.main import main
from tests.support.sdists import make_sdist


def _all_bytes(folder: Path) -> bytes:
    import zipfile

    chunks = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            chunks.append(data)
            if path.suffix == ".whl" or data[:2] == b"PK":
                try:
                    with zipfile.ZipFile(path) as zf:
                        chunks.extend(zf.read(n) for n in zf.namelist())
                except zipfile.BadZipFile:
                    pass
    return b"\n".join(chunks)


def test_secret_canary(
    tmp_path: Path, backend_wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pass_through = f"canary-pass-{uuid.uuid4().hex}"
    secret_setting = f"canary-setting-{uuid.uuid4().hex}"
    make_sdist(tmp_path / "dist", "alpha", "1.0", "setuptools")
    (tmp_path / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{backend_wheels}"\n'
        '[signature]\nenv-pass-through = ["DEPLOY_TOKEN"]\n'
    )
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / "alpha.toml").write_text(
        'source = { path = "dist/alpha-1.0.tar.gz" }\n'
        f'env = {{ API_KEY = "{secret_setting}", CFLAGS = "-O2" }}\n'
    )
    (tmp_path / "requirements.txt").write_text("alpha==1.0\n")
    monkeypatch.setenv("DEPLOY_TOKEN", pass_through)
    runner = CliRunner()
    outputs = []
    for args in (
        ["build", "--json"],
        ["plan", "--json"],
        ["show", "alpha", "--json"],
        ["why", "alpha", "--json"],
        ["build"],
        ["why", "alpha"],
    ):
        result = runner.invoke(main, [*args, "-p", str(tmp_path)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    text = "\n".join(outputs)
    assert '"CFLAGS": "-O2"' in text  # plain settings values are shown
    assert '"DEPLOY_TOKEN": {' in text and '"API_KEY": {' in text  # secrets only as digests
    # The project's own settings file holds the value; nothing buildprint writes may.
    everything = (
        text.encode()
        + _all_bytes(tmp_path / ".buildprint")
        + _all_bytes(tmp_path / "wheelhouse")
        + (tmp_path / "buildprint.lock").read_bytes()
    )
    assert pass_through.encode() not in everything
    assert secret_setting.encode() not in everything
    # The pass-through value changes the signature all the same.
    monkeypatch.setenv("DEPLOY_TOKEN", pass_through + "x")
    result = runner.invoke(main, ["plan", "--json", "-p", str(tmp_path)])
    assert '"env/DEPLOY_TOKEN"' in result.output and '"action": "build"' in result.output
