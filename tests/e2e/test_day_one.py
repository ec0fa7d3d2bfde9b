"""End to end, what a user meets on day one (issue 12): short signatures, ``why`` naming the
plugin hook that changed, and backend warnings kept in the package's log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from buildprint.signature.manifest import Component, Manifest
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord
from tests.support.cli import CliRun, PackageSpec, build, run_cli, write_project

pytestmark = pytest.mark.slow  # real builds, then a dozen CLI runs


def checked(result: CliRun) -> CliRun:
    assert result.code == 0, f"exit {result.code}:\n{result.stdout}\n{result.stderr}"
    return result


def refused(result: CliRun) -> str:
    """The one error line(s) of a run that must exit 2 without a traceback."""
    assert result.code == 2, f"exit {result.code}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("buildprint: error: "), result.stderr
    return result.stderr


# -- abbreviated signatures -----------------------------------------------------------------


def variants(record: ActionRecord) -> tuple[Manifest, Manifest]:
    """Two real manifests of ``record``'s package (what ``rebuild = k`` gives it) whose
    signatures share their first four digits: found in a few hundred tries (birthday)."""
    manifest = Manifest.from_json(record.manifest)
    seen: dict[str, Manifest] = {}
    for k in range(1, 100_000):
        components = {**manifest.components, "rebuild": Component.of("rebuild", k)}
        variant = Manifest(manifest.package, components, manifest.recorded)
        other = seen.setdefault(variant.signature[:4], variant)
        if other is not variant:
            return other, variant
    raise AssertionError("no two signatures shared four digits")


def test_signatures_may_be_abbreviated_wherever_one_is_taken(
    tmp_path: Path, backend_wheels: Path
) -> None:
    # "cafe" is a package name made of hex digits: as a requirement's name it stays a name.
    project = write_project(
        tmp_path / "project", backend_wheels, [PackageSpec("alpha"), PackageSpec("cafe")]
    )
    done = build(project)
    signature = done["alpha"]["signature"]
    full = checked(run_cli(project, "show", signature, "--json")).json()
    for short in (signature[:4], signature[:9].upper(), signature[:63]):
        assert checked(run_cli(project, "show", short, "--json")).json() == full
    assert checked(run_cli(project, "show", "cafe", "--json")).json()["package"]["name"] == "cafe"
    human = checked(run_cli(project, "diff", signature[:6], done["cafe"]["signature"][:6]))
    assert f"{signature[:16]} → {done['cafe']['signature'][:16]}" in human.stdout

    too_short = refused(run_cli(project, "show", signature[:3]))
    assert "too short: give at least 4 hex digits" in too_short
    unknown_prefix = next(
        p for p in ("0000", "ffff", "1234") if not any(s.startswith(p) for s in _stored(project))
    )
    unknown = refused(run_cli(project, "diff", signature[:8], unknown_prefix))
    assert f"no stored build has a signature starting with {unknown_prefix}" in unknown

    # Two more stored builds of alpha whose signatures start alike: that prefix is ambiguous.
    with LocalStore(project / ".buildprint") as store:
        (record,) = store.find("alpha")
        first, second = variants(record)
        for variant in (first, second):
            store.put_record(
                ActionRecord(
                    signature=variant.signature,
                    name=record.name,
                    version=record.version,
                    manifest=variant.to_json(),
                    artifacts=record.artifacts,
                )
            )
    prefix = first.signature[:4]
    matching = sorted(s for s in _stored(project) if s.startswith(prefix))
    assert len(matching) >= 2
    for command in (["show", prefix], ["diff", prefix, signature]):
        message = refused(run_cli(project, *command))
        assert f"signature abbreviation {prefix} is ambiguous: {len(matching)} stored builds" in (
            message
        )
        listed = message.splitlines()[1:]
        assert listed == [f"  alpha 1.0 {s[:12]}" for s in matching]

    # Longer prefixes tell them apart, in show and in both places of diff.
    a, b = _unique_prefix(first.signature, matching), _unique_prefix(second.signature, matching)
    assert checked(run_cli(project, "show", a, "--json")).json()["signature"] == first.signature
    compared = checked(run_cli(project, "diff", a, b, "--json")).json()
    assert (compared["a"], compared["b"]) == (first.signature, second.signature)
    assert compared["changed"] == ["rebuild"]


def _stored(project: Path) -> list[str]:
    with LocalStore(project / ".buildprint") as store:
        return store.record_signatures()


def _unique_prefix(signature: str, others: list[str]) -> str:
    for length in range(4, 65):
        if sum(s.startswith(signature[:length]) for s in others) == 1:
            return signature[:length]
    raise AssertionError(signature)


# -- why names the plugin hook ----------------------------------------------------------------

PLUGIN = '''\
"""mypkg's build hooks."""


def mode():
    return "fast"


def update_env(pkg, env):
    env["MYPKG_MODE"] = mode()
    return env
'''

#: Bits of a JSON value (the plugin component's) that must never reach the human output.
RAW_JSON = re.compile(r'[{}]|"code"|"module"|"third-party"|:update_env"')


def test_why_names_the_plugin_hook_whose_code_changed(tmp_path: Path, backend_wheels: Path) -> None:
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [PackageSpec("mypkg", settings='plugin = "plugins.mypkg"\n')],
    )
    (project / "plugins").mkdir()
    (project / "plugins" / "__init__.py").write_text("")
    plugin = project / "plugins" / "mypkg.py"
    plugin.write_text(PLUGIN)
    assert build(project)["mypkg"]["action"] == "built"

    # The hook's body changes, what it returns does not: only the plugin component differs.
    plugin.write_text(PLUGIN.replace('env["MYPKG_MODE"] = mode()', 'env["MYPKG_MODE"] = mode()[:]'))
    why = checked(run_cli(project, "why", "mypkg", "--json")).json()
    assert why["action"] == "build"
    assert why["changed"] == ["plugin/hooks/update_env"]
    (change,) = why["changes"]
    assert all(re.fullmatch("[0-9a-f]{64}", change[side]) for side in ("old", "new"))
    human = checked(run_cli(project, "why", "mypkg")).stdout
    line = next(line for line in human.splitlines() if "plugin" in line)
    assert line.endswith(
        f"plugin/hooks/update_env: hook update_env changed in plugins.mypkg "
        f"({change['old'][:8]}… → {change['new'][:8]}…)"
    ), human
    assert not RAW_JSON.search(human), human
    planned = checked(run_cli(project, "plan")).stdout
    assert "inputs changed: plugin/hooks/update_env" in planned

    # A helper the hook calls: named as what it is, the hook is unchanged.
    plugin.write_text(PLUGIN.replace('return "fast"', 'return "fa" + "st"'))
    why = checked(run_cli(project, "why", "mypkg", "--json")).json()
    assert why["changed"] == ["plugin/code/plugins.mypkg:mode"]
    human = checked(run_cli(project, "why", "mypkg")).stdout
    assert "plugin/code/plugins.mypkg:mode: plugins.mypkg.mode changed (" in human
    assert "update_env" not in human and not RAW_JSON.search(human), human

    # A hook added: said as such, with no digest to show on the side that has none.
    plugin.write_text(PLUGIN + "\n\ndef prepare_source(pkg, source_dir):\n    pass\n")
    human = checked(run_cli(project, "why", "mypkg")).stdout
    assert "plugin/hooks/prepare_source: hook prepare_source added to plugins.mypkg" in human
    assert not RAW_JSON.search(human), human


# -- backend warnings go to the package's log -----------------------------------------------------

# Both packages' setup.py print to stderr and warn, while locking (get_requires) and while
# building. late's wheel build waits until early's has ended and then some: with builds on two
# threads, a process-wide warnings.catch_warnings left by early's build would let late's
# warnings (re-raised by pyproject_hooks in buildprint) reach the terminal.
NOISY_SETUP = """\
import os
import sys
import time
import warnings
from pathlib import Path

from setuptools import setup

NAME = "{name}"
done = Path(os.environ["NOISY_DIR"], "early.done")
if NAME == "late" and "bdist_wheel" in sys.argv:
    deadline = time.monotonic() + 60
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
print(f"{{NAME.upper()}}-STDERR: the backend talks", file=sys.stderr)
print(f"{{NAME.upper()}}-STDOUT: and prints")
warnings.warn(f"{{NAME.upper()}}-WARNING: deprecated, says the backend")
setup()
if NAME == "early" and "bdist_wheel" in sys.argv:
    done.write_text("")
"""

NOISY_PLUGIN = """\
import warnings


def update_env(pkg, env):
    warnings.warn("PLUGIN-WARNING: this hook is in-process")
    return env
"""

MARKS = ("STDERR", "STDOUT", "WARNING")


def test_backend_output_and_warnings_go_to_the_package_log_not_the_terminal(
    tmp_path: Path, backend_wheels: Path
) -> None:
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    specs = [
        PackageSpec(
            name,
            files={"setup.py": NOISY_SETUP.format(name=name)},
            settings=f'env = {{ NOISY_DIR = "{noisy}" }}\n'
            + ('plugin = "plugins.noisy"\n' if name == "early" else ""),
        )
        for name in ("early", "late")
    ]
    project = write_project(tmp_path / "project", backend_wheels, specs)
    (project / "plugins").mkdir()
    (project / "plugins" / "__init__.py").write_text("")
    (project / "plugins" / "noisy.py").write_text(NOISY_PLUGIN)

    result = checked(run_cli(project, "build", "-j", "2"))
    assert (noisy / "early.done").exists()
    terminal = result.stdout + result.stderr
    for name in ("EARLY", "LATE"):
        for mark in MARKS:
            assert f"{name}-{mark}" not in terminal, terminal
    assert "BuildBackendWarning" not in terminal and "setup.py" not in terminal

    logs = project / ".buildprint" / "logs"
    for name, other in (("early", "LATE"), ("late", "EARLY")):
        log = (logs / f"{name}-1.0.log").read_text()
        upper = name.upper()
        assert f"{upper}-STDERR: the backend talks" in log and f"{upper}-STDOUT" in log
        assert (
            f"warning from the backend: BuildBackendWarning: {upper}-WARNING: deprecated, "
            "says the backend" in log
        ), log
        assert other not in log  # each build's warnings in its own log, none in another's
        lock_log = (logs / f"{name}-1.0-lock.log").read_text()
        assert f"{upper}-WARNING" in lock_log and f"{upper}-STDERR" in lock_log

    # In-process warnings (the plugin's update_env, at plan time) are not the backend's: they
    # are held while the progress runs and said once, after its last line.
    lines = result.stderr.splitlines()
    progress = [i for i, line in enumerate(lines) if line[:1] in ("…", "✓", "✗")]
    warned = [i for i, line in enumerate(lines) if "PLUGIN-WARNING" in line]
    assert len(progress) == 4 and len(warned) == 1, result.stderr
    assert warned[0] > max(progress)
    assert lines[warned[0]].startswith("warning: UserWarning: PLUGIN-WARNING: this hook is")
