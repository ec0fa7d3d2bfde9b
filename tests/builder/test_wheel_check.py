"""The wheel a backend (or a ``build_wheel`` hook) returns is checked against the package
before anything is stored: name, version, tags, and the METADATA inside."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from packaging.tags import sys_tags

from buildprint import Engine
from buildprint.builder.wheel import check_built_wheel
from buildprint.errors import BuildFailed
from tests.support.cli import PackageSpec, write_project
from tests.support.indexes import make_wheel

SUPPORTED = frozenset(sys_tags())


def test_the_package_s_own_wheel_passes(tmp_path: Path) -> None:
    check_built_wheel(make_wheel(tmp_path, "Alpha_Pkg", "1.0"), "alpha-pkg", "1.0", SUPPORTED)
    check_built_wheel(make_wheel(tmp_path, "beta", "2.0.0"), "beta", "2.0", SUPPORTED)


@pytest.mark.parametrize(
    ("name", "version", "tag", "rename", "fragment"),
    [
        ("alpha", "1.0.post7", "py3-none-any", None, "it is alpha 1.0.post7"),
        ("zulu", "9.9", "py3-none-any", None, "it is zulu 9.9"),
        ("alpha", "1.0", "cp27-cp27m-win32", None, "are not ones this interpreter installs"),
        (
            "alpha",
            "1.0.post7",
            "py3-none-any",
            "alpha-1.0-py3-none-any.whl",
            "its METADATA says alpha 1.0.post7",
        ),
        ("alpha", "1.0", "py3-none-any", "alpha-1.0.whl", "not a wheel file name"),
    ],
)
def test_a_wheel_that_is_not_the_package_is_refused(
    tmp_path: Path, name: str, version: str, tag: str, rename: str | None, fragment: str
) -> None:
    wheel = make_wheel(tmp_path / "made", name, version, tag=tag)
    if rename is not None:
        wheel = wheel.rename(tmp_path / rename)
    with pytest.raises(BuildFailed) as refused:
        check_built_wheel(wheel, "alpha", "1.0", SUPPORTED)
    assert fragment in str(refused.value)
    assert "the build of alpha 1.0 returned" in str(refused.value)


HOOK = """\
import shutil
from pathlib import Path

HERE = Path(__file__).parent


def build_wheel(pkg, source_dir, out_dir, env, config_settings):
    out_dir.mkdir(parents=True, exist_ok=True)
    (made,) = (HERE / "made").glob("*.whl")
    return shutil.copy(made, out_dir)
"""


def test_a_hook_returning_another_release_fails_that_build_and_stores_nothing(
    tmp_path: Path, backend_wheels: Path
) -> None:
    root = write_project(
        tmp_path / "project",
        backend_wheels,
        [PackageSpec("alpha", settings='plugin = "plugins.alpha"\n'), PackageSpec("beta")],
    )
    (root / "plugins").mkdir()
    (root / "plugins" / "alpha.py").write_text(HOOK)
    make_wheel(root / "plugins" / "made", "alpha", "1.0.post7")
    with Engine(root) as engine:
        outcomes = {o.decision.node.name: o for o in engine.build()}
        records = engine.records()
    assert outcomes["alpha"].done == "failed"
    assert "returned alpha-1.0.post7-py3-none-any.whl: it is alpha 1.0.post7" in (
        outcomes["alpha"].error or ""
    )
    assert outcomes["beta"].done == "built"
    assert [r.name for r in records] == ["beta"]
    assert [p.name for p in (root / "wheelhouse").glob("*.whl")] == ["beta-1.0-py3-none-any.whl"]

    # The right wheel from the same hook is stored as usual.
    shutil.rmtree(root / "plugins" / "made")
    make_wheel(root / "plugins" / "made", "alpha", "1.0")
    with Engine(root) as engine:
        done = {o.decision.node.name: o.done for o in engine.build()}
    assert done == {"alpha": "built", "beta": "reused"}
