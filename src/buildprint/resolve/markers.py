"""PEP 508 marker environments of the interpreter builds run with (``[project] python``),
which may not be the one running buildprint."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Iterable, Mapping

from packaging.markers import default_environment
from packaging.requirements import Requirement

__all__ = ["applies", "marker_environment", "this_environment"]

# The PEP 508 environment markers, computed as packaging does, by the interpreter itself.
_PROBE = """
import json, os, platform, sys
info = sys.implementation.version
version = "{0.major}.{0.minor}.{0.micro}".format(info)
if info.releaselevel != "final":
    version += info.releaselevel[0] + str(info.serial)
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": version,
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}))
"""


@functools.cache
def marker_environment(python: str) -> Mapping[str, str]:
    """The marker environment of ``python`` (run once per process and interpreter)."""
    out = subprocess.run(
        [python, "-I", "-c", _PROBE], check=True, capture_output=True, text=True
    ).stdout
    found: dict[str, str] = json.loads(out)
    return found


def this_environment() -> Mapping[str, str]:
    """The marker environment of the interpreter running buildprint."""
    return {key: str(value) for key, value in default_environment().items()}


def applies(
    requirement: Requirement, environment: Mapping[str, str], extras: Iterable[str] = ()
) -> bool:
    """Whether ``requirement`` applies in ``environment``: no marker, or its marker holds
    with no extra or with one of ``extras`` (the extras its requirer was asked for)."""
    marker = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in ("", *sorted(extras)))
