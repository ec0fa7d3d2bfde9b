"""Discovered inputs, audit and verify, on real builds traced by strace.

A C extension includes a header from a folder outside its project, found through
``C_INCLUDE_PATH`` (one package) or ``-I`` in ``CFLAGS`` (another). No settings file names the
header, so no signature moves when it changes: the build's discovered inputs must catch it.
Editing it makes the next plan build and name it; an unrelated header in the same folder, or a
touch, changes nothing. Several builds then share one signature (one per header content), and
a remote cache carries their discovered inputs: a machine whose header differs does not fetch
a wheel compiled against another.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildprint.builder.trace import tracer
from tests.support.cli import PackageSpec, copy_project, run_cli, snapshot, write_project
from tests.support.sdists import _C_SOURCE
from tests.support.servers.dask import signing_key

pytestmark = pytest.mark.skipif(
    not tracer().kind, reason=f"builds are not traced here: {tracer().problem}"
)

HEADER = "probe_extra.h"


def c_source(module: str) -> str:
    """The fixture extension, also including the outside header and using its value."""
    return (
        _C_SOURCE.replace("@MODULE@", f"{module}._speedups")
        .replace("#include <Python.h>", f'#include <Python.h>\n#include "{HEADER}"')
        .replace("return PyLong_FromLong(a + b);", "return PyLong_FromLong(a + b + EXTRA);")
    )


#: A setuptools package whose build writes the time and a random number into the wheel.
STAMP_SETUP = """\
import os
import time

from setuptools import setup
from setuptools.command.build_py import build_py


class Stamped(build_py):
    def run(self):
        super().run()
        with open(os.path.join(self.build_lib, "stamp", "_built.py"), "w") as handle:
            handle.write(f"BUILT_AT = {time.time_ns()}\\nNONCE = {os.urandom(8).hex()!r}\\n")


setup(cmdclass={"build_py": Stamped})
"""


def probe(name: str, settings: str) -> PackageSpec:
    """A C extension including the outside header (found as ``settings`` say)."""
    module = name.replace("-", "_")
    return PackageSpec(
        name, backend="c-ext", settings=settings, files={f"{module}/_speedups.c": c_source(module)}
    )


def specs(headers: Path) -> list[PackageSpec]:
    include = f'[env]\nC_INCLUDE_PATH = "{headers}"\n'
    shadowed = f'[env]\nC_INCLUDE_PATH = "{shadow_of(headers)}:{headers}"\n'
    return [
        probe("probe", shadowed),
        probe("probe-flags", f'[env]\nCFLAGS = "-I{headers}"\n'),
        probe("probe-unchecked", include + "[signature]\ndiscovered = false\n"),
        probe("probe-ignoring", include + f'[signature]\ndiscovered-ignore = ["{headers}/**"]\n'),
        PackageSpec("plain-st", backend="setuptools"),
        PackageSpec("stamp", backend="setuptools", files={"setup.py": STAMP_SETUP}),
    ]


def shadow_of(headers: Path) -> Path:
    """An include folder searched before ``headers`` (by ``probe``), empty at first."""
    return headers.with_name("local-include")


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("system") / "include"
    folder.mkdir()
    shadow_of(folder).mkdir()
    (folder / HEADER).write_text("#define EXTRA 0\n")
    (folder / "unrelated.h").write_text("#define UNRELATED 1\n")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path, headers: Path) -> Path:
    root = tmp_path_factory.mktemp("discovered") / "project"
    write_project(root, backend_wheels, specs(headers))
    done = run_cli(root, "build", "--json")
    assert done.code == 0, done.stdout + done.stderr
    assert {p["action"] for p in done.json()["packages"]} == {"built"}
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path, headers: Path) -> Iterator[Path]:
    """A copy of the built project; the headers are put back as they were afterwards."""
    saved = {p.name: p.read_bytes() for p in headers.iterdir()}
    yield copy_project(built, tmp_path / "project")
    for path in shadow_of(headers).iterdir():
        path.unlink()
    for path in headers.iterdir():
        if path.name not in saved:
            path.unlink()
    for name, data in saved.items():
        (headers / name).write_bytes(data)


def plan(project: Path) -> dict[str, dict[str, object]]:
    done = run_cli(project, "plan", "--json")
    assert done.code == 0, done.stdout + done.stderr
    return done.packages()


def actions(entries: dict[str, dict[str, object]]) -> dict[str, object]:
    return {name: entry["action"] for name, entry in entries.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_editing_the_header_rebuilds_exactly_the_packages_that_read_it(
    project: Path, headers: Path
) -> None:
    header = str(headers / HEADER)
    old = sha256(headers / HEADER)
    assert set(actions(plan(project)).values()) == {"reuse"}
    (headers / HEADER).write_text("#define EXTRA 1000\n")
    new = sha256(headers / HEADER)
    entries = plan(project)
    assert actions(entries) == {
        "probe": "build",
        "probe-flags": "build",
        "probe-unchecked": "reuse",  # discovered = false
        "probe-ignoring": "reuse",  # its discovered-ignore covers the folder
        "plain-st": "reuse",
        "stamp": "reuse",
    }
    assert entries["probe"]["changed"] == [f"discovered/{header}"]
    assert entries["probe-flags"]["changed"] == [f"discovered/{header}"]
    assert header in str(entries["probe"]["reason"])
    # The signature is the same: what moved is outside it.
    assert entries["probe"]["signature"] == entries["probe"]["closest"]

    why = run_cli(project, "why", "probe")
    assert why.code == 0, why.stderr
    assert f"discovered/{header}: {old[:12]}… → {new[:12]}…" in why.stdout
    why_json = run_cli(project, "why", "probe", "--json").json()
    assert why_json["changes"] == [{"path": f"discovered/{header}", "old": old, "new": new}]


def test_an_unrelated_header_or_a_touch_changes_nothing(project: Path, headers: Path) -> None:
    assert set(actions(plan(project)).values()) == {"reuse"}
    (headers / "unrelated.h").write_text("#define UNRELATED 2\n")
    (headers / "new-neighbour.h").write_text("#define NEIGHBOUR 1\n")
    stat = (headers / HEADER).stat()
    os.utime(headers / HEADER, ns=(stat.st_atime_ns + 10**10, stat.st_mtime_ns + 10**10))
    entries = plan(project)
    assert set(actions(entries).values()) == {"reuse"}, entries
    assert all(entry["changed"] == [] for entry in entries.values())


def test_a_header_appearing_earlier_on_the_search_path_rebuilds(
    project: Path, headers: Path
) -> None:
    shadow = shadow_of(headers) / HEADER
    (shadow_of(headers) / "other.h").write_text("#define OTHER 1\n")  # never looked for
    assert set(actions(plan(project)).values()) == {"reuse"}
    shadow.write_text("#define EXTRA 5\n")  # found before headers/probe_extra.h now
    entries = plan(project)
    assert entries["probe"]["action"] == "build"
    assert entries["probe"]["changed"] == [f"discovered/{shadow}"]
    assert entries["probe-flags"]["action"] == "reuse"  # it does not search that folder
    why = run_cli(project, "why", "probe", "--json").json()
    assert why["changes"] == [
        {"path": f"discovered/{shadow}", "old": None, "new": sha256(shadow), "added": True}
    ]
    built = run_cli(project, "build", "probe", "--json")
    assert built.code == 0 and built.packages()["probe"]["action"] == "built", built.stderr
    audit = run_cli(project, "audit", "probe", "--json").json()
    assert audit["discovered"][str(shadow)] == sha256(shadow)
    # The header it used before is no longer read: the shadow is found first.
    assert str(headers / HEADER) not in audit["discovered"]


def test_one_signature_keeps_a_build_per_header_content(project: Path, headers: Path) -> None:
    def build() -> dict[str, dict[str, object]]:
        done = run_cli(project, "build", "probe", "--json")
        assert done.code == 0, done.stdout + done.stderr
        return done.packages()

    def wheel_member() -> bytes:
        (wheel,) = (project / "wheelhouse").glob("probe-1.0-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            return next(
                archive.read(n)
                for n in archive.namelist()
                if n.startswith("probe/_speedups") and n.endswith(".so")
            )

    first = wheel_member()
    (headers / HEADER).write_text("#define EXTRA 1000\n")
    entry = build()["probe"]
    assert entry["action"] == "built" and entry["changed"] == [f"discovered/{headers / HEADER}"]
    variant, signature = str(entry["variant"]), str(entry["signature"])
    assert variant != signature
    second = wheel_member()
    assert second != first  # compiled against the new header
    # The two builds of one signature differ in what they read, and diff says so.
    compared = run_cli(project, "diff", signature, variant)
    assert compared.code == 0, compared.stderr
    assert f"discovered/{headers / HEADER}" in compared.stdout
    shown = run_cli(project, "show", variant, "--json").json()
    assert shown["signature"] == signature and HEADER in str(shown["discovered"])

    # Back to the old header: the first build is valid again, and placed.
    (headers / HEADER).write_text("#define EXTRA 0\n")
    entry = build()["probe"]
    assert entry["action"] == "reused" and "variant" not in entry
    assert wheel_member() == first
    # And forward again: the variant, built before, is reused (not rebuilt).
    (headers / HEADER).write_text("#define EXTRA 1000\n")
    entry = build()["probe"]
    assert entry["action"] == "reused" and entry["variant"] == variant, entry
    assert "system files" in str(entry["reason"])
    assert wheel_member() == second
    records = sorted(p.stem for p in (project / ".buildprint" / "ac").glob("*.json"))
    assert variant in records and entry["signature"] in records


def test_audit_lists_the_outside_header(project: Path, headers: Path) -> None:
    done = run_cli(project, "audit", "probe")
    assert done.code == 0, done.stderr
    text = done.stdout
    assert f"traced by {tracer().version}" in text
    discovered = text.split("discovered system files", 1)[1].split("\n\n", 1)[0]
    assert str(headers / HEADER) in discovered
    assert "unrelated.h" not in text  # never read
    assert "probe/_speedups.c" in text.split("source tree", 1)[1].split("\n\n", 1)[0]
    assert "C_INCLUDE_PATH" in text.split("declared:", 1)[1].splitlines()[0]
    assert "neither declared nor checked: nothing" in text

    data = run_cli(project, "audit", "probe", "--json").json()
    assert data["discovered"][str(headers / HEADER)] == sha256(headers / HEADER)
    assert "/usr/include/stdio.h" in data["discovered"]  # Python.h includes it
    assert data["reads"]["toolchain"] and data["unchecked"] == []
    # The interpreter's own headers are its build environment, not discovered.
    assert any(p.endswith("/Python.h") for p in data["reads"]["environment"])
    assert not any(p.endswith("/Python.h") for p in data["discovered"])

    ignoring = run_cli(project, "audit", "probe-ignoring", "--json").json()
    assert str(headers / HEADER) not in ignoring["discovered"]
    assert {
        "path": str(headers / HEADER),
        "why": f"ignored by discovered-ignore '{headers}/**'",
    } in ignoring["unchecked"]
    unchecked = run_cli(project, "audit", "probe-unchecked", "--json").json()
    assert unchecked["checked"] is False and unchecked["discovered"] == {}
    assert {"path": str(headers / HEADER), "why": "discovered = false"} in unchecked["unchecked"]


def test_audit_of_a_pure_python_package_finds_nothing_outside(project: Path) -> None:
    data = run_cli(project, "audit", "plain-st", "--json").json()
    reads = data["reads"]
    assert data["discovered"] == {} and reads["discovered"] == {}
    assert data["unchecked"] == []
    assert "plain_st/__init__.py" in reads["source"]
    assert reads["environment"]  # setuptools, from the build environment
    text = run_cli(project, "audit", "plain-st").stdout
    assert "discovered system files (0, checked before reuse)" in text


def test_audit_of_an_unknown_package_is_bad_input(project: Path) -> None:
    done = run_cli(project, "audit", "nosuch")
    assert done.code == 2
    assert "nosuch: no build of it in the store" in done.stderr and "Traceback" not in done.stderr


def test_verify_passes_on_the_fixtures_and_names_what_differs(project: Path) -> None:
    before = snapshot(project / ".buildprint" / "ac", project / "wheelhouse")
    done = run_cli(project, "verify", "probe", "probe-flags", "plain-st")
    assert done.code == 0, done.stdout + done.stderr
    for name in ("probe", "probe-flags", "plain-st"):
        assert f"{name} 1.0: reproducible" in done.stdout

    stamped = run_cli(project, "verify", "stamp")
    assert stamped.code == 1, stamped.stdout + stamped.stderr
    assert "stamp 1.0: NOT reproducible: 1 member(s)" in stamped.stdout
    assert "stamp/_built.py: text differs" in stamped.stdout
    assert "-BUILT_AT = " in stamped.stdout and "+BUILT_AT = " in stamped.stdout
    data = run_cli(project, "verify", "stamp", "--json").json()
    (entry,) = data["packages"]
    assert entry["reproducible"] is False
    assert [d["member"] for d in entry["differences"]] == ["stamp/_built.py"]
    assert "+NONCE = " in entry["differences"][0]["diff"]
    # Nothing stored, placed or replaced.
    assert snapshot(project / ".buildprint" / "ac", project / "wheelhouse") == before


def test_verify_all_and_bad_usage(project: Path, headers: Path) -> None:
    (headers / HEADER).write_text("#define EXTRA 5\n")  # probe and probe-flags: no valid build
    done = run_cli(project, "verify", "--all", "--json")
    assert done.code == 1  # stamp
    by_name = {p["name"]: p for p in done.json()["packages"]}
    assert by_name["probe"]["skipped"].startswith("no stored build valid here")
    assert by_name["plain-st"]["reproducible"] is True
    assert by_name["stamp"]["reproducible"] is False
    named = run_cli(project, "verify", "probe")
    assert named.code == 2 and "build it first" in named.stderr
    mixed = run_cli(project, "verify", "plain-st", "probe")  # refused before any rebuild
    assert mixed.code == 2 and mixed.stdout == "" and "probe: no stored build" in mixed.stderr
    assert run_cli(project, "verify").code == 2
    unknown = run_cli(project, "verify", "nosuch")
    assert unknown.code == 2 and "nosuch: not among the requirements" in unknown.stderr


@pytest.mark.servers
def test_a_remote_record_carries_its_discovered_inputs(
    built: Path, tmp_path: Path, headers: Path, http_url: str, project: Path
) -> None:
    private, public = signing_key(b"discovered")
    env = {"BUILDPRINT_SIGNING_KEY": private}

    def machine(name: str) -> Path:
        root = tmp_path / name
        shutil.copytree(built, root, ignore=shutil.ignore_patterns(".buildprint", "wheelhouse"))
        with (root / "buildprint.toml").open("a") as handle:
            handle.write(f'\n[[remote]]\nurl = "{http_url}"\nwrite = true\n')
            handle.write(f'trusted-keys = ["{public}"]\n')
        return root

    def packages(root: Path, command: str) -> dict[str, dict[str, object]]:
        done = run_cli(root, command, "probe", "plain-st", "--json", env=env)
        assert done.code == 0, done.stdout + done.stderr
        return done.packages()

    a = machine("a")
    assert set(actions(packages(a, "build")).values()) == {"built"}
    b = machine("b")  # the same system files: everything fetched
    assert actions(packages(b, "plan")) == {"probe": "fetch", "plain-st": "fetch"}

    (headers / HEADER).write_text("#define EXTRA 77\n")  # machine c's header differs
    c = machine("c")
    entries = packages(c, "plan")
    assert actions(entries) == {"probe": "build", "plain-st": "fetch"}
    assert entries["probe"]["changed"] == [f"discovered/{headers / HEADER}"]
    assert "a remote cache has it, built against other system files" in str(
        entries["probe"]["reason"]
    )
    entry = packages(c, "build")["probe"]
    assert entry["action"] == "built" and entry["variant"]  # and pushed, as a variant
    d = machine("d")  # a machine like c fetches c's build
    fetched = packages(d, "build")["probe"]
    assert fetched["action"] == "fetched" and fetched["variant"] == entry["variant"]
    record = json.loads((d / ".buildprint" / "ac" / f"{entry['variant']}.json").read_text())
    assert record["variant_of"] == entry["signature"]
    assert record["manifest"]["discovered"]["value"][str(headers / HEADER)] == sha256(
        headers / HEADER
    )
