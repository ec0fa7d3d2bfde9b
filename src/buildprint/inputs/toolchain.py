"""The ``toolchain`` component: interpreter, ABI, platform and C compiler identity."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from buildprint.signature.canonical import CanonicalValue

__all__ = ["compiler_command", "compiler_identity", "interpreter_identity", "toolchain_value"]

# Run inside the build interpreter (which may differ from ours): only stdlib, prints JSON.
_PROBE = """
import json, platform, sys, sysconfig
from importlib.machinery import EXTENSION_SUFFIXES
print(json.dumps({
    "implementation": sys.implementation.name,
    "python": "%d.%d" % sys.version_info[:2],
    "full_version": platform.python_version(),
    "abi": (sysconfig.get_config_var("SOABI") or ""),
    "extension_suffix": EXTENSION_SUFFIXES[0] if EXTENSION_SUFFIXES else "",
    "platform": sysconfig.get_platform(),
    "libc": "-".join(platform.libc_ver()),
    "pointer_bits": 64 if sys.maxsize > 2**32 else 32,
}))
"""


@functools.cache
def interpreter_identity(python: str = sys.executable) -> dict[str, CanonicalValue]:
    """Identity of the interpreter builds run with. The patch release is recorded but not
    part of the ABI: CPython keeps its ABI stable within a minor series."""
    out = subprocess.run(
        [python, "-I", "-c", _PROBE], check=True, capture_output=True, text=True
    ).stdout
    data: dict[str, CanonicalValue] = json.loads(out)
    return data


def compiler_command(cc: str | None = None) -> list[str]:
    """The C compiler builds get: ``cc``, else ``$CC``, else ``cc`` (split like a shell)."""
    return shlex.split(cc or os.environ.get("CC") or "cc")


@functools.cache
def compiler_identity(cc: str | None = None) -> dict[str, CanonicalValue]:
    """``cc --version`` first line and ``-dumpmachine``; empty when there is no compiler."""
    command = compiler_command(cc)
    if not command or shutil.which(command[0]) is None:
        return {}
    try:
        version = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()
        machine = subprocess.run(
            [*command, "-dumpmachine"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {
        "cc": Path(command[0]).name,
        "version": version[0].strip() if version else "",
        "target": machine,
    }


def toolchain_value(python: str = sys.executable) -> dict[str, CanonicalValue]:
    """Component value, memoized per run (the probes are subprocesses)."""
    interp = interpreter_identity(python)
    return {
        "implementation": interp["implementation"],
        "python": interp["python"],
        "abi": interp["abi"],
        "platform": interp["platform"],
        "libc": interp["libc"],
        "compiler": compiler_identity(),
    }
