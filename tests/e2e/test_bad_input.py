"""End to end: bad input exits 2 with a message naming the file (and line), touching nothing."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import (
    PackageSpec,
    bad_patch,
    build,
    copy_project,
    plan,
    run_cli,
    snapshot,
    write_project,
)

PLUGIN = '''\
"""alpha's build hooks."""


def signature(pkg, sig):
    sig.add("flavour", "plain")
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = tmp_path_factory.mktemp("built") / "project"
    spec = PackageSpec("alpha", settings='plugin = "plugins.alpha"\n')
    write_project(root, backend_wheels, [spec])
    (root / "plugins").mkdir()
    (root / "plugins" / "alpha.py").write_text(PLUGIN)
    assert build(root)["alpha"]["action"] == "built"
    return root


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def unknown_settings_key(project: Path) -> list[str]:
    _append(project / "packages" / "alpha.toml", 'colour = "red"\n')  # line 3
    return ["packages/alpha.toml:3", "colour"]


def bad_toml(project: Path) -> list[str]:
    (project / "buildprint.toml").write_text('[project]\nindex-url = "x"\nrequirements = [\n')
    return ["buildprint.toml:"]


def unknown_policy_component(project: Path) -> list[str]:
    _append(project / "packages" / "alpha.toml", '[signature]\nremove = ["hots"]\n')  # line 4
    return ["packages/alpha.toml:4", "hots"]


def unknown_dep_mode(project: Path) -> list[str]:
    _append(project / "packages" / "alpha.toml", '[signature.deps]\nsetuptools = "sideways"\n')
    return ["packages/alpha.toml:4", "signature.deps.setuptools"]


def patch_does_not_apply(project: Path) -> list[str]:
    folder = project / "patches" / "alpha"
    folder.mkdir(parents=True)
    (folder / "0001-broken.patch").write_text(bad_patch("alpha/__init__.py"))
    return ["0001-broken.patch"]


def plugin_raises(project: Path) -> list[str]:
    plugin = project / "plugins" / "alpha.py"
    plugin.write_text(plugin.read_text().replace('sig.add("flavour", "plain")', "1 / 0"))
    return ["plugins/alpha.py:5", "ZeroDivisionError"]


def missing_sdist(project: Path) -> list[str]:
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace("alpha-1.0.tar.gz", "alpha-9.9.tar.gz"))
    return ["packages/alpha.toml", "alpha-9.9.tar.gz"]


def url_sha_mismatch(project: Path) -> list[str]:
    sdist = (project / "dist" / "alpha-1.0.tar.gz").as_uri()
    (project / "packages" / "alpha.toml").write_text(
        f'source = {{ url = "{sdist}", sha256 = "{"0" * 64}" }}\nplugin = "plugins.alpha"\n'
    )
    return ["alpha-1.0.tar.gz", "sha256"]


def archive_escapes(project: Path) -> list[str]:
    sdist = project / "dist" / "alpha-1.0.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("alpha-1.0/PKG-INFO", b"Name: alpha\n"),
            ("alpha-1.0/../../evil", b"x"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sdist.write_bytes(buffer.getvalue())
    return ["alpha-1.0.tar.gz", "evil"]


CASES: list[Callable[[Path], list[str]]] = [
    unknown_settings_key,
    bad_toml,
    unknown_policy_component,
    unknown_dep_mode,
    patch_does_not_apply,
    plugin_raises,
    missing_sdist,
    url_sha_mismatch,
    archive_escapes,
]


@pytest.mark.parametrize("command", ["plan", "build"])
@pytest.mark.parametrize("breakage", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_exits_2_naming_the_file_and_changes_nothing(
    built: Path, tmp_path: Path, breakage: Callable[[Path], list[str]], command: str
) -> None:
    project = copy_project(built, tmp_path / "project")
    # The copy's sdist has a new inode, so the input memo (in the store) would learn it on
    # the first run whatever happens; let a good run do that before the snapshot.
    assert plan(project)["alpha"]["action"] == "reuse"
    expected = breakage(project)
    outputs = (project / ".buildprint", project / "wheelhouse")
    before = snapshot(*outputs)

    result = run_cli(project, command, "--json")

    assert result.code == 2, f"exit {result.code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    message = result.stderr
    assert "Traceback" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    after = snapshot(*outputs)
    assert sorted(after) == sorted(before), "files appeared or vanished in the store/wheelhouse"
    assert after == before, [k for k in before if after.get(k) != before[k]]
