"""End to end: what changes cause a build, what is reused, and what the CLI says about it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from buildprint.store.local import LocalStore
from tests.e2e.test_requirements_pip import _other_interpreter
from tests.support.cli import (
    PackageSpec,
    build,
    copy_project,
    fake_wheel_version,
    plan,
    repack_sdist,
    run_cli,
    unified_patch,
    write_project,
    write_sdist,
)

PLUGIN = '''\
"""alpha's build hooks."""

# The flavour is a plain build.


def update_env(pkg, env):
    env["ALPHA_FLAVOUR"] = "plain"
    return env
'''

ALPHA = PackageSpec(
    "alpha",
    settings='env = { CFLAGS = "-O2" }\nplugin = "plugins.alpha"\n',
)
# beta and gamma build against alpha: beta in the default artifact mode, gamma only by
# alpha's major.minor, and gamma does not use the host stack.
BETA = PackageSpec("beta", build_requires=("alpha",))
GAMMA = PackageSpec(
    "gamma",
    build_requires=("alpha",),
    settings='[signature]\nremove = ["host"]\n[signature.deps]\nalpha = "minor"\n',
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """alpha, beta, gamma built once; every case works on a copy."""
    root = tmp_path_factory.mktemp("built") / "project"
    write_project(root, backend_wheels, [ALPHA, BETA, GAMMA])
    (root / "plugins").mkdir()
    (root / "plugins" / "alpha.py").write_text(PLUGIN)
    first = build(root)
    assert {n: e["action"] for n, e in first.items()} == {
        "alpha": "built",
        "beta": "built",
        "gamma": "built",
    }
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    """A copy of the built project whose no-op plan is kept (the plan snapshot): so every
    case below also shows that its change makes the next plan a full one."""
    root = copy_project(built, tmp_path / "project")
    time.sleep(0.06)  # files copied this instant would be "racily clean" for the plan
    assert actions(plan(root)) == {"alpha": "reuse", "beta": "reuse", "gamma": "reuse"}
    assert (root / ".buildprint" / "memo" / "plan.json").exists()
    return root


def actions(entries: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: entry["action"] for name, entry in entries.items()}


def changed(entries: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {name: entry["changed"] for name, entry in entries.items()}


def wheel_text(project: Path, name: str, member: str) -> str:
    (wheel,) = (project / "wheelhouse").glob(f"{name}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode()


# -- the unchanged project ----------------------------------------------------------------


def test_unchanged_project_reuses_everything(project: Path) -> None:
    entries = plan(project)
    assert actions(entries) == {"alpha": "reuse", "beta": "reuse", "gamma": "reuse"}
    assert changed(entries) == {"alpha": [], "beta": [], "gamma": []}
    assert actions(build(project)) == {"alpha": "reused", "beta": "reused", "gamma": "reused"}


# -- source ----------------------------------------------------------------------------------


@pytest.mark.slow  # rebuilds several packages: over 10 s
def test_sdist_content_change_builds_alpha_and_its_artifact_dependents(project: Path) -> None:
    write_sdist(project, replace(ALPHA, files={"alpha/extra.py": "X = 1\n"}))
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["source"]
    # beta takes alpha's artifact digest, unknown until alpha is built; gamma only alpha's 1.0.
    assert entries["beta"]["action"] == "pending"
    assert entries["gamma"]["action"] == "reuse"

    done = build(project)
    assert actions(done) == {"alpha": "built", "beta": "built", "gamma": "reused"}
    assert done["alpha"]["changed"] == ["source"]
    assert done["beta"]["changed"] == ["deps/alpha"]
    assert done["gamma"]["changed"] == []
    assert actions(plan(project)) == {"alpha": "reuse", "beta": "reuse", "gamma": "reuse"}


def test_same_content_repacked_is_reused(project: Path) -> None:
    sdist = project / "dist" / "alpha-1.0.tar.gz"
    before = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert repack_sdist(sdist) != before
    entries = plan(project)
    assert actions(entries) == {"alpha": "reuse", "beta": "reuse", "gamma": "reuse"}
    assert changed(entries)["alpha"] == []
    assert actions(build(project))["alpha"] == "reused"


# -- patches ---------------------------------------------------------------------------------


@pytest.mark.slow  # rebuilds several packages: over 10 s
def test_patch_added_then_edited_builds_with_the_patch(project: Path) -> None:
    patch = project / "patches" / "alpha" / "0001-x.patch"
    patch.parent.mkdir(parents=True)
    first_line = '"""alpha test package."""'
    patch.write_text(unified_patch("alpha/__init__.py", first_line, '"""alpha, patched."""'))
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["patches/0001-x.patch"]
    done = build(project)
    assert done["alpha"]["action"] == "built"
    assert done["alpha"]["changed"] == ["patches/0001-x.patch"]
    assert done["beta"]["action"] == "built"  # alpha's output changed
    assert wheel_text(project, "alpha", "alpha/__init__.py").startswith('"""alpha, patched."""')

    patch.write_text(unified_patch("alpha/__init__.py", first_line, '"""alpha, re-patched."""'))
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["patches/0001-x.patch"]
    done = build(project)
    assert done["alpha"]["action"] == "built"
    assert done["alpha"]["changed"] == ["patches/0001-x.patch"]
    assert "re-patched" in wheel_text(project, "alpha", "alpha/__init__.py")


# -- env, plugin, settings, rebuild ---------------------------------------------------------


def test_env_change_builds_alpha_and_identical_output_does_not_cascade(project: Path) -> None:
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace('"-O2"', '"-O3"'))
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["env/CFLAGS"]
    assert entries["beta"]["action"] == "pending"
    done = build(project)
    assert done["alpha"]["action"] == "built"
    assert done["alpha"]["changed"] == ["env/CFLAGS"]
    # Same wheel content (CFLAGS means nothing to pure Python): beta is reused.
    assert done["beta"]["action"] == "reused"
    assert done["gamma"]["action"] == "reused"


def test_forced_dependency_rebuilt_to_identical_output_keeps_dependents(project: Path) -> None:
    entries = plan(project, "--force", "alpha")
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == []
    done = build(project, "--force", "alpha")
    assert actions(done) == {"alpha": "built", "beta": "reused", "gamma": "reused"}


def test_plugin_code_change_builds(project: Path) -> None:
    plugin = project / "plugins" / "alpha.py"
    plugin.write_text(plugin.read_text().replace('"plain"', '"fancy"'))
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    # The plugin's update_env now runs at plan time and its answer is part of the env
    # component (issue 10, defect 9), so the variable it sets shows as changed too. A changed
    # plugin is reported by the hook whose code changed, not as the whole component (issue 12).
    assert entries["alpha"]["changed"] == ["env/ALPHA_FLAVOUR", "plugin/hooks/update_env"]
    done = build(project)
    assert done["alpha"]["action"] == "built"
    assert done["alpha"]["changed"] == ["env/ALPHA_FLAVOUR", "plugin/hooks/update_env"]


def test_plugin_comment_change_is_reused(project: Path) -> None:
    plugin = project / "plugins" / "alpha.py"
    plugin.write_text(
        plugin.read_text().replace("# The flavour is a plain build.", "# Reworded comment.")
        + "\n\n# trailing note\n"
    )
    entries = plan(project)
    assert entries["alpha"]["action"] == "reuse"
    assert entries["alpha"]["changed"] == []
    assert build(project)["alpha"]["action"] == "reused"


def test_config_settings_change_builds(project: Path) -> None:
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text() + 'config-settings = { unused-by-setuptools = "1" }\n')
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["settings"]
    done = build(project)
    assert done["alpha"]["action"] == "built"
    assert done["alpha"]["changed"] == ["settings"]


def test_rebuild_bump_builds(project: Path) -> None:
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text() + "rebuild = 1\n")
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["rebuild"]
    assert build(project)["alpha"]["changed"] == ["rebuild"]


def test_reuse_by_version_reuses_and_reports_differences(project: Path) -> None:
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace('"-O2"', '"-O3"'))
    before = sorted(p.name for p in (project / ".buildprint").rglob("*") if p.is_file())
    entries = plan(project, "--reuse-by-version", "alpha")
    assert entries["alpha"]["action"] == "reuse"
    assert entries["alpha"]["changed"] == ["env/CFLAGS"]
    done = build(project, "--reuse-by-version", "alpha")
    assert actions(done) == {"alpha": "reused", "beta": "reused", "gamma": "reused"}
    assert done["alpha"]["changed"] == ["env/CFLAGS"]
    # Nothing was built: the store holds no new record.
    with LocalStore(project / ".buildprint") as store:
        assert len(store.find("alpha")) == 1
    assert before  # sanity: the store is where we looked


# -- locked build dependencies -----------------------------------------------------------------


def test_locked_build_dependency_change_builds(project: Path, backend_wheels: Path) -> None:
    lock = project / "buildprint.lock"
    text = lock.read_text()
    match = re.search(r'filename = "(setuptools-([^-]+)-py3-none-any\.whl)"', text)
    assert match is not None
    filename, version = match.group(1), match.group(2)
    other = fake_wheel_version(backend_wheels / filename, f"{version}.post1", project / "extra")
    sha = hashlib.sha256(other.read_bytes()).hexdigest()
    # Re-pin gamma's setuptools (only gamma: alpha and beta keep theirs).
    head, gamma = text.split("[packages.gamma]")
    gamma = re.sub(r'version = "[^"]+"', f'version = "{version}.post1"', gamma, count=1)
    gamma = gamma.replace(f'"{filename}"', f'"{other.name}"')
    gamma = re.sub(r'url = "[^"]+"', f'url = "{other.as_uri()}"', gamma, count=1)
    gamma = re.sub(r'sha256 = "[0-9a-f]{64}"', f'sha256 = "{sha}"', gamma, count=1)
    lock.write_text(head + "[packages.gamma]" + gamma)

    entries = plan(project)
    assert actions(entries) == {"alpha": "reuse", "beta": "reuse", "gamma": "build"}
    assert entries["gamma"]["changed"] == ["build-deps/setuptools"]
    done = build(project)
    assert done["gamma"]["action"] == "built"
    assert done["gamma"]["changed"] == ["build-deps/setuptools"]


# -- host --------------------------------------------------------------------------------------


@pytest.mark.slow  # rebuilds several packages: over 10 s
def test_host_change_builds_only_packages_that_keep_host(project: Path) -> None:
    host = {"BUILDPRINT_HOST_SIGNATURE": "cuda-12.4"}
    entries = plan(project, env=host)
    assert entries["alpha"]["action"] == "build"
    assert entries["alpha"]["changed"] == ["host/BUILDPRINT_HOST_SIGNATURE"]
    assert entries["beta"]["action"] == "pending"
    assert entries["gamma"]["action"] == "reuse"
    done = build(project, env=host)
    assert actions(done) == {"alpha": "built", "beta": "built", "gamma": "reused"}
    assert done["beta"]["changed"] == ["host/BUILDPRINT_HOST_SIGNATURE"]
    assert actions(plan(project, env=host)) == {
        "alpha": "reuse",
        "beta": "reuse",
        "gamma": "reuse",
    }


# -- dependency modes --------------------------------------------------------------------------


@pytest.mark.slow  # rebuilds several packages: over 10 s
def test_patch_level_bump_of_dependency_keeps_minor_mode_dependent(project: Path) -> None:
    bumped = PackageSpec("alpha", "1.0.1", settings=ALPHA.settings)
    sdist = write_sdist(project, bumped)
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace("alpha-1.0.tar.gz", sdist.name))
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("alpha==1.0", "alpha==1.0.1"))
    entries = plan(project)
    assert entries["alpha"]["action"] == "build"
    assert "version" in entries["alpha"]["changed"]
    assert entries["gamma"]["action"] == "reuse"  # alpha is still 1.0 at minor granularity
    done = build(project)
    assert actions(done) == {"alpha": "built", "beta": "built", "gamma": "reused"}
    assert done["beta"]["changed"] == ["deps/alpha"]


# -- artifacts: the wheel, its manifest, the wheelhouse index, a C extension ------------------


def test_wheel_carries_manifest_and_show_prints_it(project: Path) -> None:
    (wheel,) = (project / "wheelhouse").glob("alpha-1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".dist-info/buildprint.json")]
        embedded = json.loads(archive.read(member))
    signature = plan(project)["alpha"]["signature"]
    assert embedded["signature"] == signature
    shown = run_cli(project, "show", str(wheel), "--json")
    assert shown.code == 0, shown.stderr
    manifest = shown.json()
    assert manifest["signature"] == signature
    assert {"source", "env", "plugin", "build-deps"} <= set(manifest["components"])
    assert manifest["components"]["env"]["value"]["CFLAGS"] == "-O2"


def test_pip_installs_from_the_wheelhouse_index(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    index = (project / "wheelhouse" / "simple").as_uri()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-cache-dir", "--index-url", index, "--target", str(target), "alpha"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (target / "alpha" / "__init__.py").is_file()
    assert any(p.name.startswith("alpha-1.0.dist-info") for p in target.iterdir())


@pytest.mark.slow
def test_c_extension_builds_and_imports(tmp_path: Path, backend_wheels: Path) -> None:
    project = write_project(
        tmp_path / "cproject", backend_wheels, [PackageSpec("cfast", backend="c-ext")]
    )
    done = build(project)
    assert done["cfast"]["action"] == "built"
    (wheel,) = (project / "wheelhouse").glob("cfast-1.0-*.whl")
    assert "none-any" not in wheel.name  # a platform wheel
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", "import cfast; print(cfast.add(2, 40))"],
        env={"PYTHONPATH": str(target)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    assert actions(plan(project)) == {"cfast": "reuse"}


def test_reuse_by_version_needs_a_wheel_the_build_interpreter_installs(
    tmp_path: Path, backend_wheels: Path
) -> None:
    other = _other_interpreter()
    if other is None:
        pytest.skip("no other CPython of another minor version runs here")
    specs = [PackageSpec("cfast", backend="c-ext", settings='reuse = "version"\n')]
    project = write_project(tmp_path / "cproject", backend_wheels, specs)
    assert build(project)["cfast"]["action"] == "built"
    toml = project / "buildprint.toml"
    toml.write_text(toml.read_text().replace("[project]\n", f'[project]\npython = "{other[0]}"\n'))
    # The stored wheel is a cp3X extension of this interpreter: another one cannot install
    # it, whatever its version says.
    assert plan(project)["cfast"]["action"] == "build"
