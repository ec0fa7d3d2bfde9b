"""PEP 517 runner with real backends in real uv environments: wheels, reproducibility, isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Barrier, Thread

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pyproject_hooks import BuildBackendWarning

from buildprint.builder.backend import (
    CONSTRUCTED,
    LEGACY_BACKEND,
    BackendFailed,
    BuildSystem,
    build_wheel,
    get_requires_for_build_wheel,
    read_build_system,
    warnings_to_log,
)
from buildprint.builder.environment import BuildEnvironment
from buildprint.errors import BuildFailed, InputError
from buildprint.inputs.toolchain import DEFAULT_SEARCH_PATH
from tests.support.sdists import BACKENDS, Backend, extract_sdist, make_sdist, module_name

WheelPathsFor = Callable[[Backend], list[Path]]

# -- read_build_system (no subprocess) -----------------------------------------------------


def test_defaults_without_pyproject_or_build_system(tmp_path: Path) -> None:
    legacy = BuildSystem(["setuptools>=40.8.0"], LEGACY_BACKEND, None)
    assert read_build_system(tmp_path) == legacy

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert read_build_system(tmp_path) == legacy

    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools", "cffi"]\n')
    assert read_build_system(tmp_path) == BuildSystem(["setuptools", "cffi"], LEGACY_BACKEND, None)


def test_backend_path_is_read_and_must_stay_inside(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = []\nbuild-backend = "local:backend"\nbackend-path = ["_b"]\n'
    )
    assert read_build_system(tmp_path) == BuildSystem([], "local:backend", ["_b"])

    pyproject.write_text(
        '[build-system]\nrequires = []\nbuild-backend = "x"\n\nbackend-path = ["../out"]\n'
    )
    with pytest.raises(InputError, match="leaves the source tree") as caught:
        read_build_system(tmp_path)
    assert (caught.value.file, caught.value.line) == (str(pyproject), 5)


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ('[project]\nname = "x"\n[build-system]\nrequires = ["a",\n', 5, "malformed TOML"),
        ('[project]\nname = "x"\n\n[build-system]\nbuild-backend = "b"\n', 4, "no 'requires'"),
        ('[build-system]\nrequires = "setuptools"\n', 2, "list of strings"),
        ('[build-system]\nrequires = ["not a req!!"]\n', 2, "invalid requirement"),
        ('[build-system]\nrequires = []\n"build-backend" = "a b"\n', 3, "module:object"),
        ("# top\nbuild-system = 3\n", 2, "must be a table"),
    ],
)
def test_malformed_build_system_names_file_and_line(
    tmp_path: Path, text: str, line: int, match: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(InputError, match=match) as caught:
        read_build_system(tmp_path)
    assert caught.value.file == str(tmp_path / "pyproject.toml")
    assert caught.value.line == line


# -- real builds -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def envs(
    tmp_path_factory: pytest.TempPathFactory, wheel_paths_for: WheelPathsFor
) -> Iterator[dict[Backend, BuildEnvironment]]:
    """One environment per backend, shared by the module (the C extension uses setuptools')."""
    root = tmp_path_factory.mktemp("envs")
    made: dict[Backend, BuildEnvironment] = {}
    try:
        for backend in ("setuptools", "hatchling", "flit_core"):
            env = BuildEnvironment(root / backend).create()
            env.install(wheel_paths_for(backend))
            made[backend] = env
        made["c-ext"] = made["setuptools"]
        yield made
    finally:
        for env in made.values():
            env.remove()


def install_and_run(wheel: Path, where: Path, code: str) -> str:
    """pip-install ``wheel`` into a fresh target folder and run ``code`` against it."""
    target = where / "target"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--root-user-action=ignore"]
    subprocess.run(
        [*pip, "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_builds_an_installable_wheel_twice_identically(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment], backend: Backend
) -> None:
    name = f"demo-{backend.replace('_', '-')}"
    module = module_name(name)
    sdist = make_sdist(tmp_path / "sdists", name, "2.3.1", backend)
    env = envs[backend]

    wheels = []
    for run in ("first", "second"):
        # Same work path each time, re-extracted: the documented way to build.
        source = extract_sdist(sdist, tmp_path / "work")
        requires = get_requires_for_build_wheel(source, env)
        installed = {w.name for w in env.installed}
        assert all(canonicalize_name(Requirement(r).name) in installed for r in requires)
        wheels.append(build_wheel(source, env, tmp_path / run))

    first, second = wheels
    assert first.name.startswith(f"{module}-2.3.1-")
    assert first.read_bytes() == second.read_bytes(), f"{backend} rebuild differs"
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no staging left

    code = f"import {module} as m; print(m.__version__)"
    if backend == "c-ext":
        assert first.name.endswith(".whl") and "-py3-none-any" not in first.name
        code += "; print(m.add(2, 40)); print(m._speedups.__file__.endswith('.so'))"
    output = install_and_run(first, tmp_path, code).splitlines()
    assert output[0] == "2.3.1"
    if backend == "c-ext":
        assert output[1:] == ["42", "True"]


@pytest.mark.slow
def test_c_extension_is_identical_across_paths_with_remapped_source_path(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment]
) -> None:
    sdist = make_sdist(tmp_path / "sdists", "native", "1.0", "c-ext")
    wheels = []
    for place in ("a", "somewhere/else"):
        source = extract_sdist(sdist, tmp_path / place)
        # -g (one of the interpreter's flags) records the compile directory; the prefix map
        # rewrites it to /buildprint/<name>.
        wheels.append(
            build_wheel(
                source,
                envs["c-ext"],
                tmp_path / "out" / place,
                remap_source_path=True,
            )
        )
    assert wheels[0].read_bytes() == wheels[1].read_bytes()
    with zipfile.ZipFile(wheels[0]) as archive:
        [shared] = [n for n in archive.namelist() if n.endswith(".so")]
        binary = archive.read(shared)
    assert str(tmp_path).encode() not in binary


ENV_DUMP_SETUP = """\
import json, os
from setuptools import setup

with open("envdump/_buildenv.py", "w") as handle:
    handle.write("ENV = " + repr(json.dumps(dict(os.environ))) + "\\n")
setup()
"""


@pytest.mark.slow
def test_the_backend_gets_a_constructed_environment_and_nothing_of_the_callers(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Changed with the hermetic builds (issue 10): HOME, TMPDIR, LANG and PATH used to be
    # passed through from the caller; now every variable is buildprint's or declared.
    monkeypatch.setenv("CANARY_SECRET", "hunter2-do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    monkeypatch.setenv("LANG", "de_DE.ISO-8859-1")
    monkeypatch.setenv("HOME", str(tmp_path / "caller-home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path / 'wrappers'}{os.pathsep}{os.environ['PATH']}")
    sdist = make_sdist(tmp_path, "envdump", "1.0", "setuptools", files={"setup.py": ENV_DUMP_SETUP})
    source = extract_sdist(sdist, tmp_path / "work")
    env = envs["setuptools"]

    wheel = build_wheel(
        source,
        env,
        tmp_path / "out",
        extra_env={"BUILD_FLAVOR": "blue", "CFLAGS": "-O1"},
        source_date_epoch=1_234_567_890,
    )

    seen = json.loads(
        install_and_run(wheel, tmp_path, "import envdump._buildenv as b; print(b.ENV)")
    )
    assert seen["BUILD_FLAVOR"] == "blue"
    assert seen["CFLAGS"] == "-O1"
    assert seen["SOURCE_DATE_EPOCH"] == "1234567890"
    assert seen["LANG"] == seen["LC_ALL"] == "C.UTF-8"
    assert seen["HOME"] == str(env.home_dir) and seen["TMPDIR"] == str(env.tmp_dir)
    path = seen["PATH"].split(os.pathsep)
    assert path[0] == str(env.bin_dir)
    assert str(tmp_path / "wrappers") not in path
    assert set(path[1:]) <= set(DEFAULT_SEARCH_PATH)
    # Every variable the backend saw is one buildprint sets or one it was given (Python
    # itself may coerce LC_CTYPE, PEP 538; pyproject-hooks adds _PYPROJECT_HOOKS_*).
    extra = {k for k in seen if not k.startswith("_PYPROJECT_HOOKS_") and k != "LC_CTYPE"}
    assert extra == set(CONSTRUCTED) | {"BUILD_FLAVOR", "CFLAGS"}
    # SOURCE_DATE_EPOCH (2009-02-13 UTC) also set the wheel's zip timestamps.
    with zipfile.ZipFile(wheel) as archive:
        assert {info.date_time[:3] for info in archive.infolist()} == {(2009, 2, 13)}


def test_uv_variables_do_not_steer_environment_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_VENV_SEED", "1")  # would seed pip, setuptools and wheel
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "elsewhere"))
    with BuildEnvironment(tmp_path / "env") as env:
        site = next(env.path.glob("lib/python*/site-packages"))
        assert sorted(p.name for p in site.iterdir() if not p.name.startswith("_")) == []


@pytest.mark.slow
def test_config_settings_reach_the_backend(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment]
) -> None:
    sdist = make_sdist(tmp_path, "tagged", "1.0", "setuptools")
    source = extract_sdist(sdist, tmp_path / "work")

    wheel = build_wheel(
        source,
        envs["setuptools"],
        tmp_path / "out",
        config_settings={"--build-option": ["--build-number=7"]},
    )

    assert wheel.name == "tagged-1.0-7-py3-none-any.whl"


IN_TREE_BACKEND = """\
from setuptools.build_meta import *  # noqa: F403


def get_requires_for_build_wheel(config_settings=None):
    extra = (config_settings or {}).get("extra")
    return ["cffi>=1.15"] + ([extra] if extra else [])
"""


def test_in_tree_backend_and_config_settings_for_requires(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment]
) -> None:
    sdist = make_sdist(
        tmp_path,
        "intree",
        "1.0",
        "setuptools",
        files={
            "_backend/local_backend.py": IN_TREE_BACKEND,
            "pyproject.toml": textwrap.dedent(
                """\
                [build-system]
                requires = ["setuptools>=64"]
                build-backend = "local_backend"
                backend-path = ["_backend"]

                [project]
                name = "intree"
                version = "1.0"
                """
            ),
        },
    )
    source = extract_sdist(sdist, tmp_path / "work")

    requires = get_requires_for_build_wheel(
        source, envs["setuptools"], config_settings={"extra": "numpy>=2"}
    )

    assert requires == ["cffi>=1.15", "numpy>=2"]


FAILING_SETUP = """\
import sys

for number in range(50):
    print(f"progress line {number}", file=sys.stderr)
raise RuntimeError("boom: the build is broken")
"""


def test_a_failing_backend_raises_build_failed_with_the_log_tail(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment]
) -> None:
    sdist = make_sdist(tmp_path, "broken", "1.0", "setuptools", files={"setup.py": FAILING_SETUP})
    source = extract_sdist(sdist, tmp_path / "work")
    out = tmp_path / "out"

    with pytest.raises(BuildFailed) as caught:
        build_wheel(source, envs["setuptools"], out, log_path=tmp_path / "broken.log")

    error = caught.value
    assert isinstance(error, BackendFailed)
    assert error.exit_code == 1
    assert error.log_path == tmp_path / "broken.log"
    assert error.file == str(tmp_path / "broken.log")
    log = error.log_path.read_text()
    assert "progress line 0\n" in log
    assert "boom: the build is broken" in error.log_tail
    assert "boom: the build is broken" in str(error)
    assert len(error.log_tail.splitlines()) == 30
    assert "progress line 0\n" not in error.log_tail + "\n"
    assert list(out.iterdir()) == []  # no wheel, no staging folder


def test_a_hanging_backend_is_stopped_by_the_timeout(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment]
) -> None:
    hang = "import time\nprint('about to hang', flush=True)\ntime.sleep(60)\n"
    sdist = make_sdist(tmp_path, "hangs", "1.0", "setuptools", files={"setup.py": hang})
    source = extract_sdist(sdist, tmp_path / "work")

    started = time.monotonic()
    # 10 s, not less: on a loaded 2-core machine importing setuptools alone took over 1.5 s,
    # and the timeout then struck before setup.py printed anything.
    with pytest.raises(BackendFailed, match=r"timed out after 10 s") as caught:
        build_wheel(source, envs["setuptools"], tmp_path / "out", timeout=10)

    assert time.monotonic() - started < 40
    assert "about to hang" in caught.value.log_tail


def test_an_unknown_backend_is_a_build_failure(
    tmp_path: Path, envs: dict[Backend, BuildEnvironment]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "no_such_backend.api"\n'
    )

    with pytest.raises(BackendFailed, match="could not be imported") as caught:
        build_wheel(tmp_path / "src", envs["flit_core"], tmp_path / "out")

    assert caught.value.log_path == tmp_path / "src.build.log"
    assert "no_such_backend" in caught.value.log_path.read_text()


def test_environment_installs_only_the_given_wheels(
    tmp_path: Path, wheel_paths_for: WheelPathsFor
) -> None:
    wheels = wheel_paths_for("flit_core")
    with BuildEnvironment(tmp_path / "env") as env:
        env.install(wheels)
        probe = subprocess.run(
            [str(env.python), "-c", "import flit_core, sys; print(sys.prefix)"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert Path(probe.stdout.strip()) == env.path
        missing = subprocess.run([str(env.python), "-c", "import setuptools"], check=False)
        assert missing.returncode != 0
        assert [w.name for w in env.installed] == ["flit-core"]
        with pytest.raises(InputError) as caught:
            env.install([tmp_path / "nope-1.0-py3-none-any.whl"])
        assert caught.value.file == str(tmp_path / "nope-1.0-py3-none-any.whl")
    assert not env.path.exists()


def test_warnings_go_to_the_log_of_the_thread_that_emits_them(tmp_path: Path) -> None:
    """Builds run on several threads at once: each one's warnings land in its own log, even
    when one leaves while another is still inside (what catch_warnings got wrong), and a
    thread outside any build keeps the handler it had."""
    elsewhere: list[str] = []
    before = warnings.showwarning
    warnings.showwarning = lambda message, *args: elsewhere.append(str(message))
    both_inside, first_left = Barrier(2), Barrier(2)

    def build(name: str, leaves_first: bool) -> None:
        with warnings_to_log(tmp_path / f"{name}.log"):
            both_inside.wait(timeout=10)
            if leaves_first:
                warnings.warn_explicit(f"{name} early", BuildBackendWarning, "setup.py", 3)
        if leaves_first:
            first_left.wait(timeout=10)
            return
        first_left.wait(timeout=10)
        with warnings_to_log(tmp_path / f"{name}.log"):
            warnings.warn_explicit(f"{name} late", BuildBackendWarning, "setup.py", 4)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a caller's filters do not reach backend warnings
            threads = [Thread(target=build, args=a) for a in (("one", True), ("two", False))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            warnings.simplefilter("always")
            warnings.warn("not in any build", UserWarning, stacklevel=1)
    finally:
        warnings.showwarning = before
    one, two = ((tmp_path / f"{n}.log").read_text() for n in ("one", "two"))
    assert one == "warning from the backend: BuildBackendWarning: one early (setup.py:3)\n"
    assert two == "warning from the backend: BuildBackendWarning: two late (setup.py:4)\n"
    assert elsewhere == ["not in any build"]
