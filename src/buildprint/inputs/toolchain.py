"""The ``toolchain`` component: the interpreter and the tools a build invokes, by identity.

A build's ``PATH`` is constructed, not inherited (see docs/build-environment.md): the build
environment's ``bin``, then the folders where the tools below were found on the *search
path*, which is the package's declared ``PATH`` (its settings' ``env`` or a pass-through
variable) or else :data:`DEFAULT_SEARCH_PATH`. The same lookup gives both the build's
``PATH`` and what this component records, so the signature names exactly the binaries the
build will run:

- the compilers setuptools invokes: ``CC``, ``CXX`` and ``LDSHARED`` from the declared
  variables, else from the interpreter's own build configuration (``sysconfig``), each
  resolved to its real binary and identified by content digest, ``--version`` and
  ``-dumpmachine`` (never by the name it was spelled with);
- the other build tools of :data:`BUILD_TOOLS` found on the search path, by content digest;
- the interpreter: implementation, version, ABI, platform, libc, its binary's digest and its
  build configuration (``sysconfig`` ``CC``, ``CFLAGS``, ``LDSHARED`` … :data:`CONFIG_VARS`).

Binary digests and compiler probes are memoized by the file's stat, so an unchanged
toolchain costs a few ``stat`` calls.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from buildprint.fsio import stat_key
from buildprint.inputs.files import file_digest
from buildprint.signature.canonical import CanonicalValue

__all__ = [
    "BUILD_TOOLS",
    "COMPILER_VARS",
    "CONFIG_VARS",
    "DEFAULT_SEARCH_PATH",
    "Toolset",
    "interpreter_identity",
    "toolchain_value",
    "toolset",
]

#: Where tools are looked up when the package declares no ``PATH``.
DEFAULT_SEARCH_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)

#: Tools a build may call besides the compilers; each one found is identified by content,
#: and its folder is put on the build's ``PATH``.
BUILD_TOOLS = (
    "sh",
    "ar",
    "as",
    "ld",
    "make",
    "cmake",
    "ninja",
    "pkg-config",
    "gfortran",
    "rustc",
    "cargo",
)

#: The compiler roles setuptools fills from these variables (declared, else sysconfig).
COMPILER_VARS = {"cc": "CC", "cxx": "CXX", "ldshared": "LDSHARED"}

#: The interpreter's build configuration that compiles extensions (setuptools'
#: ``customize_compiler`` reads these).
CONFIG_VARS = (
    "CC",
    "CXX",
    "CFLAGS",
    "CCSHARED",
    "LDSHARED",
    "LDCXXSHARED",
    "LDFLAGS",
    "AR",
    "ARFLAGS",
    "EXT_SUFFIX",
)


class FileMemo(Protocol):
    """Where per-file probe results are kept between runs (the store's memo)."""

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


# Run inside the build interpreter (which may differ from ours): only stdlib, prints JSON.
_PROBE = """
import json, os, platform, sys, sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
print(json.dumps({
    "implementation": sys.implementation.name,
    "python": "{}.{}".format(*sys.version_info[:2]),
    "full_version": platform.python_version(),
    "abi": (sysconfig.get_config_var("SOABI") or ""),
    "extension_suffix": EXTENSION_SUFFIXES[0] if EXTENSION_SUFFIXES else "",
    "platform": sysconfig.get_platform(),
    "libc": "-".join(platform.libc_ver()),
    "pointer_bits": 64 if sys.maxsize > 2**32 else 32,
    "binary": os.path.realpath(sys.executable),
    "config": {name: sysconfig.get_config_var(name) for name in sys.argv[1:]},
}))
"""


@functools.cache
def interpreter_identity(python: str = sys.executable) -> dict[str, Any]:
    """What the build interpreter says about itself (see :data:`_PROBE`). The patch release
    is recorded but not part of the ABI: CPython keeps its ABI stable within a minor series."""
    out = subprocess.run(
        [python, "-I", "-c", _PROBE, *CONFIG_VARS], check=True, capture_output=True, text=True
    ).stdout
    data: dict[str, Any] = json.loads(out)
    data["config"] = {k: v for k, v in data["config"].items() if v is not None}
    return data


@dataclass(frozen=True)
class Toolset:
    """The tools one build configuration finds: per role or tool name, the path it was
    found at (``None``: not found) and the real binary behind it."""

    search_path: tuple[str, ...]
    declared_path: bool
    found: Mapping[str, tuple[str, str] | None]  # role/tool -> (found path, real path)

    @property
    def path(self) -> list[str]:
        """The build's ``PATH`` after the build environment's ``bin``: the declared search
        path as given, else the folders the tools were found in, in search order."""
        if self.declared_path:
            return list(self.search_path)
        folders = {os.path.dirname(found) for found, _real in filter(None, self.found.values())}
        return [entry for entry in self.search_path if entry in folders]

    @property
    def files(self) -> list[str]:
        """What the lookup rests on (for a plan snapshot): every path a tool was found at
        (a retargeted link changes what it stats as) and every search folder (a new
        binary appearing in one changes its mtime)."""
        paths = {found for found, _real in filter(None, self.found.values())}
        return sorted(paths | set(self.search_path))


def _search_path(declared: Mapping[str, str]) -> tuple[tuple[str, ...], bool]:
    given = declared.get("PATH")
    entries = given.split(os.pathsep) if given else DEFAULT_SEARCH_PATH
    usable = [e for e in entries if e and os.path.isabs(e) and os.path.isdir(e)]
    return tuple(dict.fromkeys(usable)), bool(given)


def _locate(program: str, search: Sequence[str]) -> tuple[str, str] | None:
    if os.path.isabs(program):
        found = program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    else:
        found = shutil.which(program, path=os.pathsep.join(search))
    return (found, os.path.realpath(found)) if found else None


def _program(value: str | None) -> str | None:
    """The program a compiler variable runs (its first word, as a shell splits it)."""
    try:
        words = shlex.split(value or "")
    except ValueError:
        return None
    return words[0] if words else None


@functools.cache
def _toolset(python: str, variables: tuple[tuple[str, str], ...]) -> Toolset:
    declared = dict(variables)
    search, declared_path = _search_path(declared)
    config = interpreter_identity(python)["config"]
    found: dict[str, tuple[str, str] | None] = {}
    for role, variable in COMPILER_VARS.items():
        program = _program(declared.get(variable) or config.get(variable))
        found[role] = _locate(program, search) if program else None
    for tool in BUILD_TOOLS:
        found[tool] = _locate(tool, search)
    return Toolset(search, declared_path, found)


def toolset(python: str, declared: Mapping[str, str]) -> Toolset:
    """The tools a build with these declared variables finds (memoized per process)."""
    names = ("PATH", *COMPILER_VARS.values())
    relevant = tuple(sorted((k, declared[k]) for k in names if k in declared))
    return _toolset(python, relevant)


def _probe_file(real: str, memo: FileMemo | None, *, compiler: bool) -> dict[str, CanonicalValue]:
    """Digest (and for a compiler, version and target) of the binary at ``real``, memoized
    by its stat; the probes run the real binary, so the name it was called by never shows."""
    key = f"{'compiler' if compiler else 'binary'}:{real}"
    state = stat_key(real)
    cached = memo.get(key) if memo is not None else None
    if cached is not None and cached.get("state") == state:
        value: dict[str, CanonicalValue] = cached["value"]
        return value
    value = {"sha256": file_digest(Path(real))}
    if compiler:
        value["version"] = _first_line([real, "--version"])
        value["target"] = _first_line([real, "-dumpmachine"])
    if memo is not None:
        memo.put(key, {"state": state, "value": value})
    return value


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = out.splitlines()
    if not lines:
        return ""
    # gcc names itself by argv[0] ("x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14) 12.2.0"):
    # the real binary's name is used, and dropped, so it does not count twice.
    first = lines[0].strip()
    program = os.path.basename(command[0])
    return first[len(program) :].strip() if first.startswith(program + " ") else first


def toolchain_value(
    python: str = sys.executable,
    declared: Mapping[str, str] | None = None,
    memo: FileMemo | None = None,
) -> dict[str, CanonicalValue]:
    """Component value for a build with ``declared`` variables (settings ``env`` and
    pass-through) run by ``python``."""
    interp = interpreter_identity(python)
    tools = toolset(python, declared or {})
    compilers: dict[str, CanonicalValue] = {}
    others: dict[str, CanonicalValue] = {}
    for name, hit in sorted(tools.found.items()):
        compiler = name in COMPILER_VARS
        value = _probe_file(hit[1], memo, compiler=compiler) if hit is not None else None
        if compiler:
            compilers[name] = value
        elif value is not None:
            others[name] = value["sha256"]
    return {
        "implementation": interp["implementation"],
        "python": interp["python"],
        "abi": interp["abi"],
        "platform": interp["platform"],
        "libc": interp["libc"],
        "interpreter": {
            "binary": _probe_file(interp["binary"], memo, compiler=False)["sha256"],
            "config": dict(interp["config"]),
        },
        "compilers": compilers,
        "tools": others,
    }
