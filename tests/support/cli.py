"""End-to-end helpers: real projects on disk, the real ``buildprint`` console script."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.sdists import Backend, make_sdist

__all__ = [
    "CliRun",
    "PackageSpec",
    "bad_patch",
    "build",
    "copy_project",
    "fake_wheel_version",
    "plan",
    "repack_sdist",
    "run_cli",
    "snapshot",
    "start_cli",
    "unified_patch",
    "write_project",
    "write_sdist",
]

#: The console script installed with the package; the CLI contract is about this program.
BUILDPRINT = shutil.which("buildprint") or str(Path(sys.executable).parent / "buildprint")

#: Caller variables that would leak into signatures (host) and must not vary between runs.
_SCRUBBED = ("BUILDPRINT_HOST_SIGNATURE", "BUILDPRINT_SIGNING_KEY")


@dataclass(frozen=True)
class CliRun:
    """One finished ``buildprint`` process."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def packages(self) -> dict[str, dict[str, Any]]:
        """``plan/build --json`` entries by package name."""
        return {entry["name"]: entry for entry in self.json()["packages"]}


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(extra or {})
    return env


def run_cli(
    project: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> CliRun:
    """Run ``buildprint ARGS`` in ``project`` (as a user would, from the project folder)."""
    done = subprocess.run(
        [BUILDPRINT, *args],
        cwd=project,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


def start_cli(
    project: Path, *args: str, quiet: bool = False, **popen: Any
) -> subprocess.Popen[str]:
    """``buildprint ARGS`` in ``project``, started, not awaited: its output piped (as text),
    or discarded when ``quiet``; ``popen`` adds ``Popen`` arguments (``start_new_session``)."""
    output = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(
        [BUILDPRINT, *args],
        cwd=project,
        env=cli_env(),
        stdout=output,
        stderr=output,
        text=True,
        **popen,
    )


def _checked(
    project: Path, command: str, args: tuple[str, ...], env: Mapping[str, str] | None
) -> dict[str, dict[str, Any]]:
    result = run_cli(project, command, "--json", *args, env=env)
    assert result.code == 0, f"{command} exited {result.code}:\n{result.stdout}\n{result.stderr}"
    return result.packages()


def plan(
    project: Path, *args: str, env: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``buildprint plan --json`` (must exit 0), entries by name."""
    return _checked(project, "plan", args, env)


def build(
    project: Path, *args: str, env: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``buildprint build --json`` (must exit 0), entries by name."""
    return _checked(project, "build", args, env)


@dataclass(frozen=True)
class PackageSpec:
    """One fixture package: its sdist and its ``packages/<name>.toml`` text."""

    name: str
    version: str = "1.0"
    backend: Backend = "setuptools"
    build_requires: tuple[str, ...] = ()  # other packages of the project it builds against
    settings: str = ""
    files: Mapping[str, str] | None = None


def pyproject(spec: PackageSpec) -> str:
    """A setuptools ``pyproject.toml`` whose build requirements add ``spec.build_requires``."""
    module = spec.name.replace("-", "_")
    requires = ", ".join(f'"{r}"' for r in ("setuptools>=64", *spec.build_requires))
    return (
        f'[build-system]\nrequires = [{requires}]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{spec.name}"\nversion = "{spec.version}"\n'
        f'requires-python = ">=3.8"\n\n[tool.setuptools]\npackages = ["{module}"]\n'
    )


def write_sdist(root: Path, spec: PackageSpec) -> Path:
    files = dict(spec.files or {})
    if spec.build_requires:
        files.setdefault("pyproject.toml", pyproject(spec))
    return make_sdist(root / "dist", spec.name, spec.version, spec.backend, files)


def write_project(
    root: Path, index: Path, specs: list[PackageSpec], *, project_toml: str = ""
) -> Path:
    """A project folder: sdists in ``dist/``, settings with a path source for each package,
    a requirements file pinning them, and ``buildprint.toml`` pointing at ``index``."""
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "buildprint.toml").write_text(
        f'[project]\nindex-url = "{index}"\n' + textwrap.dedent(project_toml)
    )
    for spec in specs:
        sdist = write_sdist(root, spec)
        (root / "packages" / f"{spec.name}.toml").write_text(
            f'source = {{ path = "dist/{sdist.name}" }}\n' + textwrap.dedent(spec.settings)
        )
    (root / "requirements.txt").write_text("".join(f"{s.name}=={s.version}\n" for s in specs))
    return root


def copy_project(built: Path, dest: Path) -> Path:
    """A copy of a built project (store and wheelhouse included), cheaper than a rebuild."""
    shutil.copytree(built, dest, symlinks=True)
    return dest


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under ``folders``: relative name -> bytes (missing folders count as empty)."""
    found: dict[str, bytes] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                found[f"{folder.name}/{path.relative_to(folder)}"] = path.read_bytes()
    return found


def repack_sdist(sdist: Path, mtime: int = 1_234_567_890) -> str:
    """Rewrite ``sdist`` with the same members and bytes but reversed member order, other
    mtimes, owners and gzip header; return the new raw sha256 (it differs from the old)."""
    with tarfile.open(sdist) as archive:
        members = [(m, archive.extractfile(m).read() if m.isfile() else None) for m in archive]  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in reversed(members):
            info.mtime = mtime
            info.uid, info.gid, info.uname, info.gname = 1234, 1234, "someone", "staff"
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    with sdist.open("wb") as raw, gzip.GzipFile("x", "wb", 9, raw, mtime=mtime) as gz:
        gz.write(buffer.getvalue())
    return hashlib.sha256(sdist.read_bytes()).hexdigest()


def fake_wheel_version(wheel: Path, version: str, dest_dir: Path) -> Path:
    """A copy of ``wheel`` relabelled as ``version`` (dist-info, METADATA, RECORD): a second
    real, installable release of the same distribution, made offline."""
    name, old = wheel.name.split("-")[:2]
    target = dest_dir / wheel.name.replace(f"{name}-{old}-", f"{name}-{version}-")
    dest_dir.mkdir(parents=True, exist_ok=True)
    old_info, new_info = f"{name}-{old}.dist-info/", f"{name}-{version}.dist-info/"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            filename = item.filename.replace(old_info, new_info)
            if filename == new_info + "METADATA":
                data = data.replace(
                    f"\nVersion: {old}\n".encode(), f"\nVersion: {version}\n".encode()
                )
            if filename == new_info + "RECORD":
                # RECORD hashes stay valid for unchanged files; drop the lines of edited ones.
                lines = data.decode().replace(old_info, new_info).splitlines()
                data = (
                    "\n".join(
                        line
                        if not line.startswith(new_info + "METADATA,")
                        else new_info + "METADATA,,"
                        for line in lines
                    ).encode()
                    + b"\n"
                )
            out.writestr(filename, data)
    return target


def bad_patch(target: str) -> str:
    """A well-formed unified diff whose context does not exist in ``target``."""
    return (
        f"--- a/{target}\n+++ b/{target}\n@@ -1,2 +1,2 @@\n"
        "-this line is not there\n+nor is this one\n context that does not match\n"
    )


def unified_patch(target: str, old: str, new: str) -> str:
    """A one-line unified diff replacing line 1 (``old``) of ``target`` by ``new``."""
    return f"--- a/{target}\n+++ b/{target}\n@@ -1 +1 @@\n-{old}\n+{new}\n"
