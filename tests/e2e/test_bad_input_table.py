"""End to end, one table: each bad input exits 2 with a message naming the file and line (or,
for a mere oddity, warns and exits 0), never shows a traceback, and leaves the store, the
wheelhouse and ``buildprint.lock`` byte for byte as they were."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli import (
    PackageSpec,
    build,
    copy_project,
    plan,
    run_cli,
    write_project,
    write_sdist,
)
from tests.support.sdists import make_sdist

PLUGIN = '''\
"""alpha's build hooks."""


def signature(pkg, sig):
    sig.add("flavour", "plain")
'''

MIB = 1 << 20


@dataclass(frozen=True)
class Case:
    """What a breakage expects: the exit code, text the message must hold, and extra
    environment variables for the run."""

    expected: list[str]
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)
    #: The run may rightly write (not bad input at all): only exit code and output count.
    changes: bool = False


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


def _project_setting(project: Path, line: str) -> int:
    """Add ``line`` under ``[project]`` of buildprint.toml; its line number."""
    settings = project / "buildprint.toml"
    lines = settings.read_text().splitlines()
    at = lines.index("[project]") + 1
    lines.insert(at, line)
    settings.write_text("\n".join(lines) + "\n")
    return at + 1


# -- requirements files ----------------------------------------------------------------


def includes_itself(project: Path) -> Case:
    _append(project / "requirements.txt", "-r requirements.txt\n")  # line 2
    return Case(["requirements.txt:2", "cycle"])


def longer_include_cycle(project: Path) -> Case:
    _append(project / "requirements.txt", "-r more/a.txt\n")
    (project / "more").mkdir()
    (project / "more" / "a.txt").write_text("# a\n-r b.txt\n")
    (project / "more" / "b.txt").write_text("-r ../requirements.txt\n")
    return Case(["more/b.txt:1", "cycle", "requirements.txt:2 -> more/a.txt:2 -> more/b.txt:1"])


def editable_line(project: Path) -> Case:
    _append(project / "requirements.txt", "-e ./dist\n")
    return Case(["requirements.txt:2", "-e", "editable"])


def other_pip_option(project: Path) -> Case:
    _append(project / "requirements.txt", "--extra-index-url https://example.invalid/simple\n")
    return Case(["requirements.txt:2", "--extra-index-url"])


def hash_mismatch(project: Path) -> Case:
    text = (project / "requirements.txt").read_text().strip()
    (project / "requirements.txt").write_text(f"{text} \\\n    --hash=sha256:{'0' * 64}\n")
    actual = hashlib.sha256((project / "dist" / "alpha-1.0.tar.gz").read_bytes()).hexdigest()
    return Case(["requirements.txt:1", "--hash", f"sha256:{'0' * 64}", f"sha256:{actual}"])


def hash_not_sha256(project: Path) -> Case:
    _append(project / "requirements.txt", f"beta==1.0 --hash=sha512:{'0' * 128}\n")
    return Case(["requirements.txt:2", "--hash=sha512", "sha256 digests only"])


def required_twice_incompatibly(project: Path) -> Case:
    _append(project / "requirements.txt", "-r more.txt\n")
    (project / "more.txt").write_text("# pins\nalpha==2.0\n")
    return Case(["more.txt:2", "alpha==2.0 conflicts with alpha==1.0", "requirements.txt:1"])


def _constraints(project: Path, text: str) -> None:
    _append(project / "requirements.txt", "-c constraints.txt\n")
    (project / "constraints.txt").write_text(text)


def constraint_excludes_the_pin(project: Path) -> Case:
    _constraints(project, "alpha<1\n")
    return Case(["constraints.txt:1", "alpha<1 conflicts with alpha==1.0", "requirements.txt:1"])


def constraint_with_extras(project: Path) -> Case:
    _constraints(project, "# extras\nalpha[fast]<2\n")
    return Case(["constraints.txt:2", "constraints cannot have extras"])


def constraint_is_a_url(project: Path) -> Case:
    _constraints(project, f"alpha @ https://example.invalid/alpha-1.0.tar.gz#sha256={'0' * 64}\n")
    return Case(["constraints.txt:1", "cannot be a URL"])


def requirements_in_a_constraints_file(project: Path) -> Case:
    _constraints(project, "-r requirements.txt\n")
    return Case(["constraints.txt:1", "-r requirements.txt in a constraints file"])


def constraints_file_missing(project: Path) -> Case:
    _append(project / "requirements.txt", "--constraint nowhere.txt\n")
    return Case(["requirements.txt:2", "-c nowhere.txt: no such file"])


# -- the interpreter -------------------------------------------------------------------


def python_is_a_version(project: Path) -> Case:
    line = _project_setting(project, 'python = "3.12"')
    return Case([f"buildprint.toml:{line}", "python = '3.12'"])


def python_command_not_runnable(project: Path) -> Case:
    # On PATH or not (a pyenv shim may be there and refuse to run): never a traceback.
    found = shutil.which("python3.12")
    if (
        found
        and subprocess.run([found, "-c", ""], capture_output=True, check=False).returncode == 0
    ):
        pytest.skip("python3.12 runs here: not bad input on this machine")
    line = _project_setting(project, 'python = "python3.12"')
    return Case([f"buildprint.toml:{line}", "python = 'python3.12'"])


def python_command_missing(project: Path) -> Case:
    line = _project_setting(project, 'python = "python-buildprint-no-such"')
    return Case([f"buildprint.toml:{line}", "no such command on PATH"])


def python_path_missing(project: Path) -> Case:
    line = _project_setting(project, 'python = "/nonexistent/python3"')
    return Case([f"buildprint.toml:{line}", "/nonexistent/python3", "no such file"])


# -- plugins and the environment -------------------------------------------------------


def _add_update_env(project: Path, body: str) -> int:
    plugin = project / "plugins" / "alpha.py"
    text = plugin.read_text()
    plugin.write_text(text + f"\n\ndef update_env(pkg, env):\n    return {body}\n")
    return text.count("\n") + 3  # the def line


def update_env_not_a_mapping(project: Path) -> Case:
    line = _add_update_env(project, '["A=1"]')
    return Case([f"plugins/alpha.py:{line}", "update_env", "returned list"])


def update_env_not_strings(project: Path) -> Case:
    line = _add_update_env(project, '{**env, "JOBS": 4}')
    return Case([f"plugins/alpha.py:{line}", "update_env", "JOBS=4 (int)"])


def pass_through_not_utf8(project: Path) -> Case:
    # Not bad input: the bytes reach the build as they are (a POSIX environment is bytes),
    # and the signature digests them deterministically. The run must simply work.
    _append(project / "buildprint.toml", '[signature]\nenv-pass-through = ["BP_ODD"]\n')
    return Case(['"alpha"'], code=0, env={"BP_ODD": "caf\udce9"}, changes=True)


# -- the index ------------------------------------------------------------------------


def _index_url(project: Path, url: str) -> int:
    settings = project / "buildprint.toml"
    lines = settings.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("index-url"))
    lines[line - 1] = f"index-url = {url!r}"
    settings.write_text("\n".join(lines) + "\n")
    return line


def garbage_index_url(project: Path) -> Case:
    line = _index_url(project, "ht!tp:/ /garbage here")
    return Case([f"buildprint.toml:{line}", "index-url", "no such folder"])


def index_url_with_spaces(project: Path) -> Case:
    line = _index_url(project, "https://exa mple/simple")
    return Case([f"buildprint.toml:{line}", "index-url", "not a valid URL"])


def index_url_other_scheme(project: Path) -> Case:
    line = _index_url(project, "ftp://example.invalid/simple")
    return Case([f"buildprint.toml:{line}", "index-url", "not an index"])


def index_url_unreachable(project: Path) -> Case:
    # Well formed, so only uv finds out, resolving a new package's build requirements from a
    # scratch copy of its pyproject.toml: the message names the setting, not that copy.
    line = _index_url(project, "http://127.0.0.1:9/simple")
    _add_package(project, "beta")
    return Case(
        [f"buildprint.toml:{line}:", "cannot resolve build requirements", "beta-1.0/pyproject"]
    )


def index_lacks_the_name(project: Path) -> Case:
    _append(project / "requirements.txt", "no-such-package==1.0\n")
    return Case(["requirements.txt:2", "no-such-package"])


def index_lacks_the_version(project: Path) -> Case:
    _append(project / "requirements.txt", "setuptools==0.1\n")
    # The index holds setuptools as a wheel only: the message lists what it offers.
    return Case(["requirements.txt:2", "setuptools", "0.1", "offers only wheels"])


def no_version_matches(project: Path) -> Case:
    _append(project / "requirements.txt", "wheel>=999\n")
    return Case(["requirements.txt:2", "wheel>=999", "offered:"])


def ranged_has_only_wheels(project: Path) -> Case:
    _append(project / "requirements.txt", "wheel>=0.1\n")
    # The index holds wheel as a wheel only, in every version.
    return Case(["requirements.txt:2", "has an sdist", "the index has no sdist of it at all"])


def extra_index_url_other_scheme(project: Path) -> Case:
    line = _project_setting(project, 'extra-index-url = ["ftp://example.invalid/simple"]')
    return Case([f"buildprint.toml:{line}", "extra-index-url", "not an index"])


def extra_index_url_missing_folder(project: Path) -> Case:
    line = _project_setting(
        project, 'extra-index-url = [\n  "https://ok.example/simple",\n  "no-such-folder",\n]'
    )
    return Case([f"buildprint.toml:{line + 2}:", "extra-index-url 'no-such-folder'", "no such"])


def _add_package(project: Path, name: str) -> None:
    sdist = write_sdist(project, PackageSpec(name))
    (project / "packages" / f"{name}.toml").write_text(
        f'source = {{ path = "dist/{sdist.name}" }}\n'
    )
    _append(project / "requirements.txt", f"{name}==1.0\n")


# -- packages ---------------------------------------------------------------------------


def build_dependency_cycle(project: Path) -> Case:
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        sdist = project / "dist" / f"{name}-1.0.tar.gz"
        sdist.unlink(missing_ok=True)
        spec = PackageSpec(name, build_requires=(other,))
        pyproject = (
            '[build-system]\nrequires = ["setuptools>=64", "' + other + '"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "1.0"\n\n'
            f'[tool.setuptools]\npackages = ["{name}"]\n'
        )
        make_sdist(project / "dist", spec.name, "1.0", "setuptools", {"pyproject.toml": pyproject})
    (project / "packages" / "beta.toml").write_text('source = { path = "dist/beta-1.0.tar.gz" }\n')
    _append(project / "requirements.txt", "beta==1.0\n")
    return Case(
        [
            "dependency cycle in build requirements: alpha -> beta -> alpha",
            "alpha (packages/alpha.toml, source dist/alpha-1.0.tar.gz) requires 'beta'",
            "beta (packages/beta.toml, source dist/beta-1.0.tar.gz) requires 'alpha'",
        ]
    )


def settings_for_no_requirement(project: Path) -> Case:
    (project / "packages" / "gamma.toml").write_text('source = { path = "dist/gamma.tar.gz" }\n')
    return Case(["packages/gamma.toml", "gamma", "no requirement"], code=0)


# -- archives past the limits ------------------------------------------------------------


def _bomb_tar(path: Path, size: int) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("alpha-1.0/PKG-INFO", b"Name: alpha\nVersion: 1.0\n"),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("alpha-1.0/zeros.bin")
        info.size = size
        tar.addfile(info, _Zeros(size))


def _bomb_zip(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("alpha-1.0/PKG-INFO", "Name: alpha\nVersion: 1.0\n")
        with zipped.open("alpha-1.0/zeros.bin", "w", force_zip64=True) as out:
            chunk = bytes(MIB)
            for _ in range(size // MIB):
                out.write(chunk)


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def _bomb(project: Path, suffix: str, size: int, setting: str) -> str:
    name = f"alpha-1.0{suffix}"
    (project / "dist" / "alpha-1.0.tar.gz").unlink()
    (_bomb_zip if suffix == ".zip" else _bomb_tar)(project / "dist" / name, size)
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace("alpha-1.0.tar.gz", name))
    _project_setting(project, setting)
    return name


def too_big_tar(project: Path) -> Case:
    name = _bomb(project, ".tar.gz", 50 * MIB, 'max-unpacked-size = "10MiB"')
    return Case([name, "max-unpacked-size", "10 MiB"])


def too_big_zip(project: Path) -> Case:
    name = _bomb(project, ".zip", 50 * MIB, 'max-unpacked-size = "10MiB"')
    return Case([name, "max-unpacked-size", "10 MiB"])


def expands_too_far_tar(project: Path) -> Case:
    name = _bomb(project, ".tar.gz", 72 * MIB, "max-expansion-ratio = 20")
    return Case([name, "max-expansion-ratio", "20x"])


def expands_too_far_zip(project: Path) -> Case:
    name = _bomb(project, ".zip", 72 * MIB, "max-expansion-ratio = 20")
    return Case([name, "max-expansion-ratio", "20x"])


def bad_size_setting(project: Path) -> Case:
    line = _project_setting(project, 'max-unpacked-size = "lots"')
    return Case([f"buildprint.toml:{line}", "max-unpacked-size"])


CASES: list[Callable[[Path], Case]] = [
    includes_itself,
    longer_include_cycle,
    editable_line,
    other_pip_option,
    hash_mismatch,
    hash_not_sha256,
    required_twice_incompatibly,
    constraint_excludes_the_pin,
    constraint_with_extras,
    constraint_is_a_url,
    requirements_in_a_constraints_file,
    constraints_file_missing,
    python_is_a_version,
    python_command_not_runnable,
    python_command_missing,
    python_path_missing,
    update_env_not_a_mapping,
    update_env_not_strings,
    pass_through_not_utf8,
    garbage_index_url,
    index_url_with_spaces,
    index_url_other_scheme,
    index_url_unreachable,
    index_lacks_the_name,
    index_lacks_the_version,
    no_version_matches,
    ranged_has_only_wheels,
    extra_index_url_other_scheme,
    extra_index_url_missing_folder,
    build_dependency_cycle,
    settings_for_no_requirement,
    too_big_tar,
    too_big_zip,
    expands_too_far_tar,
    expands_too_far_zip,
    bad_size_setting,
]


def sha256_listing(project: Path) -> dict[str, str]:
    """sha256 of every file under the store and the wheelhouse, and of buildprint.lock."""
    found: dict[str, str] = {}
    for top in (project / ".buildprint", project / "wheelhouse", project / "buildprint.lock"):
        paths = [top] if top.is_file() else sorted(top.rglob("*")) if top.exists() else []
        for path in paths:
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[path.relative_to(project).as_posix()] = digest
    return found


@pytest.mark.parametrize("command", ["plan", "build"])
@pytest.mark.parametrize("breakage", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input(
    built: Path, tmp_path: Path, breakage: Callable[[Path], Case], command: str
) -> None:
    project = copy_project(built, tmp_path / "project")
    # The copy's files have new inodes: let a good run of the same command teach the input
    # memo (and the wheelhouse its digests) first, so that only what the bad run does counts.
    good = (plan if command == "plan" else build)(project)
    assert good["alpha"]["action"] in ("reuse", "reused")
    case = breakage(project)
    before = sha256_listing(project)
    assert "buildprint.lock" in before

    result = run_cli(project, command, "--json", env=case.env)

    output = result.stdout + result.stderr
    assert result.code == case.code, f"exit {result.code}\n{output}"
    assert "Traceback" not in output
    for part in case.expected:
        assert part in (output if case.changes else result.stderr), f"{part!r} not in {output!r}"
    if case.changes:
        return
    after = sha256_listing(project)
    if case.code == 0:  # a warning only: the plan may be kept anew, nothing else changes
        before, after = ({k: v for k, v in d.items() if "memo/" not in k} for d in (before, after))
    assert sorted(after) == sorted(before), "files appeared or vanished"
    assert after == before, [k for k in before if after.get(k) != before[k]]
