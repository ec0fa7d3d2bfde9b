"""``buildprint.lock``, the file: each package's build requirements and the wheels they pin."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from buildprint.errors import InputError
from buildprint.fsio import write_atomic
from buildprint.project.toml import line_of

__all__ = [
    "LOCK_FILENAME",
    "LOCK_FORMAT_VERSION",
    "Lock",
    "LockedBuildDeps",
    "PinnedWheel",
    "dumps_lock",
    "explain_cycle",
    "kept_lock_logs_on_cycle",
    "load_lock",
    "loads_lock",
    "save_lock",
]

LOCK_FILENAME = "buildprint.lock"
#: Bump when the file layout changes; older readers refuse newer files instead of guessing.
LOCK_FORMAT_VERSION = 1

_HEADER = (
    "# buildprint.lock: pinned build dependencies, written by `buildprint lock`.\n"
    "# Each [packages.<name>] holds the build requirements as declared and the exact wheels\n"
    "# they resolved to. Edit the declarations, then run `buildprint lock`; do not edit here.\n"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WHEEL_KEYS = ("name", "version", "filename", "url", "sha256")


@dataclass(frozen=True, order=True)
class PinnedWheel:
    """One exact build dependency: a wheel file and its sha256."""

    name: str
    version: str
    filename: str
    url: str
    sha256: str


@dataclass(frozen=True)
class LockedBuildDeps:
    """A package's build requirements as declared, and the wheels they resolved to."""

    requires: list[str]
    wheels: list[PinnedWheel]
    #: Content digest of the (patched) source the requirements were read from: when the
    #: source changes, its build requirements may have changed too, so it is locked again.
    source: str | None = None
    #: Install requirements (``Requires-Dist``), read when ``--with-deps`` needed them.
    runtime: list[str] | None = None


@dataclass
class Lock(Mapping[str, LockedBuildDeps]):
    """The lock file's content: package name (normalized) -> its pinned build dependencies;
    and the versions ``--with-deps`` chose for install dependencies nobody pinned."""

    packages: dict[str, LockedBuildDeps] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LockedBuildDeps:
        return self.packages[canonicalize_name(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.packages))

    def __len__(self) -> int:
        return len(self.packages)

    def set(self, name: str, deps: LockedBuildDeps) -> None:
        """Record ``deps`` for package ``name`` (names are normalized)."""
        self.packages[canonicalize_name(name)] = deps

    def remove(self, name: str) -> None:
        """Forget package ``name`` (no error if absent)."""
        self.packages.pop(canonicalize_name(name), None)


# -- file format ----------------------------------------------------------------------------


def _toml_str(value: str) -> str:
    """A TOML basic string (the subset of JSON escaping TOML accepts)."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def dumps_lock(lock: Lock) -> str:
    """The lock as TOML text: packages and wheels sorted by name, requirements as declared."""
    lines = [_HEADER, f"version = {LOCK_FORMAT_VERSION}\n"]
    if lock.dependencies:
        lines.append("\n[dependencies]\n")
        lines.extend(f"{name} = {_toml_str(v)}\n" for name, v in sorted(lock.dependencies.items()))
    for name in sorted(lock.packages):
        deps = lock.packages[name]
        lines.append(f"\n[packages.{name}]\n")
        if deps.requires:
            lines.append("requires = [\n")
            lines.extend(f"    {_toml_str(req)},\n" for req in deps.requires)
            lines.append("]\n")
        else:
            lines.append("requires = []\n")
        if deps.source is not None:
            lines.append(f"source = {_toml_str(deps.source)}\n")
        if deps.runtime is not None:
            lines.append("runtime = [" + ", ".join(_toml_str(r) for r in deps.runtime) + "]\n")
        for wheel in sorted(deps.wheels):
            lines.append(f"\n[[packages.{name}.wheels]]\n")
            for key in _WHEEL_KEYS:
                lines.append(f"{key} = {_toml_str(getattr(wheel, key))}\n")
    return "".join(lines)


def save_lock(path: Path, lock: Lock) -> None:
    """Write ``lock`` to ``path`` atomically (temp file, fsync, rename)."""
    write_atomic(path, dumps_lock(lock).encode("utf-8"))


def loads_lock(text: str, file: str | Path = LOCK_FILENAME) -> Lock:
    """Parse lock text; any problem is an :class:`InputError` naming ``file`` and the line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise InputError(
            f"malformed lock file: {exc}", file=file, line=int(match.group(1)) if match else None
        ) from None

    version = data.get("version")
    if version != LOCK_FORMAT_VERSION:
        raise InputError(
            f"unsupported lock format version {version!r} (this buildprint reads "
            f"{LOCK_FORMAT_VERSION}); regenerate it with `buildprint lock`",
            file=file,
            line=line_of(text, ["version"]),
        )
    unknown = sorted(set(data) - {"version", "packages", "dependencies"})
    if unknown:
        raise InputError(
            f"unknown top-level key {unknown[0]!r} in lock file",
            file=file,
            line=line_of(text, [unknown[0]]),
        )
    packages = data.get("packages", {})
    if not isinstance(packages, dict):
        raise InputError("`packages` must be a table", file=file, line=line_of(text, ["packages"]))
    lock = Lock()
    for raw_name, entry in packages.items():
        if not isinstance(entry, dict):
            raise InputError(
                f"packages.{raw_name} must be a table",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        extra = sorted(set(entry) - {"requires", "wheels", "source", "runtime"})
        if extra:
            raise InputError(
                f"unknown key {extra[0]!r} in packages.{raw_name}",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        requires = entry.get("requires")
        if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
            raise InputError(
                f"packages.{raw_name}.requires must be a list of strings",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        for req in requires:
            try:
                Requirement(req)
            except InvalidRequirement as exc:
                raise InputError(
                    f"packages.{raw_name}.requires: invalid requirement {req!r}: {exc}",
                    file=file,
                    line=line_of(text, ["packages", raw_name]),
                ) from None
        wheels_raw = entry.get("wheels", [])
        if not isinstance(wheels_raw, list):
            raise InputError(
                f"packages.{raw_name}.wheels must be an array of tables",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        wheels = [
            _parse_wheel(raw, text, raw_name, index, file) for index, raw in enumerate(wheels_raw)
        ]
        key = canonicalize_name(raw_name)
        if key in lock.packages:
            raise InputError(
                f"package {raw_name!r} appears twice (names are compared normalized)",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        source = entry.get("source")
        if source is not None and not isinstance(source, str):
            raise InputError(
                f"packages.{raw_name}.source must be a string",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        runtime = entry.get("runtime")
        if runtime is not None and (
            not isinstance(runtime, list) or not all(isinstance(r, str) for r in runtime)
        ):
            raise InputError(
                f"packages.{raw_name}.runtime must be a list of strings",
                file=file,
                line=line_of(text, ["packages", raw_name]),
            )
        lock.packages[key] = LockedBuildDeps(list(requires), wheels, source, runtime)
    dependencies = data.get("dependencies", {})
    if not isinstance(dependencies, dict) or not all(
        isinstance(v, str) for v in dependencies.values()
    ):
        raise InputError(
            '`dependencies` must be a table of name = "version"',
            file=file,
            line=line_of(text, ["dependencies"]),
        )
    lock.dependencies = {canonicalize_name(k): v for k, v in dependencies.items()}
    return lock


def _parse_wheel(raw: Any, text: str, package: str, index: int, file: str | Path) -> PinnedWheel:
    where = f"packages.{package}.wheels[{index}]"
    if not isinstance(raw, dict):
        raise InputError(
            f"{where} must be a table",
            file=file,
            line=line_of(text, ["packages", package, "wheels", index]),
        )
    missing = [k for k in _WHEEL_KEYS if k not in raw]
    if missing:
        raise InputError(
            f"{where} lacks {', '.join(missing)}",
            file=file,
            line=line_of(text, ["packages", package, "wheels", index]),
        )
    extra = sorted(set(raw) - set(_WHEEL_KEYS))
    if extra:
        raise InputError(
            f"{where}: unknown key {extra[0]!r}",
            file=file,
            line=line_of(text, ["packages", package, "wheels", index]),
        )
    values = {k: raw[k] for k in _WHEEL_KEYS}
    for key, value in values.items():
        if not isinstance(value, str) or not value:
            raise InputError(
                f"{where}.{key} must be a non-empty string",
                file=file,
                line=line_of(text, ["packages", package, "wheels", index]),
            )
    if not _SHA256.match(values["sha256"]):
        raise InputError(
            f"{where}.sha256 must be 64 lowercase hex digits, got {values['sha256']!r}",
            file=file,
            line=line_of(text, ["packages", package, "wheels", index]),
        )
    try:
        Version(values["version"])
    except InvalidVersion:
        raise InputError(
            f"{where}.version is not a valid version: {values['version']!r}",
            file=file,
            line=line_of(text, ["packages", package, "wheels", index]),
        ) from None
    if not values["filename"].endswith(".whl"):
        raise InputError(
            f"{where}.filename must be a .whl file",
            file=file,
            line=line_of(text, ["packages", package, "wheels", index]),
        )
    return PinnedWheel(**values)


def load_lock(path: Path) -> Lock:
    """Read ``path``; a missing file is an empty lock, a malformed one an :class:`InputError`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Lock()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError("lock file is not valid UTF-8", file=path, line=line) from None
    return loads_lock(text, file=path)


_CYCLE = re.compile(r"dependency cycle: (.+)")


def explain_cycle(error: InputError, lock: Lock, describe: Callable[[str], str]) -> InputError:
    """``error`` if it is not about a dependency cycle; else the same error saying, for each
    step of the cycle, which build requirement of which package (and where that package's
    source and settings are, ``describe(name)``) makes it. Nothing is locked or built."""
    found = _CYCLE.fullmatch(error.message)
    if found is None or error.file is not None:
        return error
    names = [name.strip() for name in found.group(1).split(" -> ")]
    steps = []
    for name, needs in pairwise(names):
        locked = lock.packages.get(canonicalize_name(name))
        declared = [
            r
            for r in (locked.requires if locked else [])
            if _requirement_name(r) == canonicalize_name(needs)
        ]
        said = f"requires {declared[0]!r}" if declared else f"needs {needs}"
        steps.append(f"{name} ({describe(name)}) {said} to build")
    return InputError(
        f"dependency cycle in build requirements: {found.group(1)}: "
        + "; ".join(steps)
        + ". A package cannot be built with itself: drop one of these build requirements "
        "(a patch of pyproject.toml [build-system] requires), or take one as a wheel from the "
        "index (leave it out of the requirements; with from-source, `prebuilt = true` in its "
        "packages/<name>.toml). Nothing was locked or built."
    )


def _requirement_name(text: str) -> str | None:
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return None


def is_cycle(error: InputError) -> bool:
    """Whether ``error`` is the graph's dependency cycle (as :func:`explain_cycle` says it)."""
    return error.message.startswith(("dependency cycle: ", "dependency cycle in build "))


@contextmanager
def kept_lock_logs_on_cycle(logs: Path) -> Iterator[None]:
    """Locking writes ``<name>-<version>-lock.log`` files into ``logs`` before the graph can
    know it has a cycle; when the block ends in a cycle, put those files back as they were (a
    cycle is bad input, which leaves the store as it was). Any other outcome keeps them: a
    backend failure's message points at its log."""
    existed = logs.is_dir()
    before = {p.name: p.read_bytes() for p in logs.glob("*-lock.log")} if existed else {}
    try:
        yield
    except InputError as exc:
        if not is_cycle(exc):
            raise
        for path in logs.glob("*-lock.log") if logs.is_dir() else []:
            if path.name not in before:
                path.unlink(missing_ok=True)
            elif path.read_bytes() != before[path.name]:
                write_atomic(path, before[path.name])
        for name, data in before.items():
            if not (logs / name).exists():
                write_atomic(logs / name, data)
        if not existed and logs.is_dir() and not any(os.scandir(logs)):
            logs.rmdir()
        raise
