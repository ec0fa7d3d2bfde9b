"""A package's install requirements, read from its (patched) source before it is built.

``--with-deps`` needs them to add a package's dependencies to the graph. The cheapest
trustworthy answer wins: ``[project] dependencies`` in ``pyproject.toml`` when not dynamic
(PEP 621), else the sdist's ``PKG-INFO`` when its metadata is 2.2 or later and does not mark
``Requires-Dist`` dynamic (PEP 643), else the backend's ``prepare_metadata_for_build_wheel``.
"""

from __future__ import annotations

import email.parser
import tomllib
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from buildprint.errors import InputError

__all__ = ["install_requirements", "requires_dist"]


def requires_dist(metadata_text: str) -> list[str]:
    """``Requires-Dist`` of a core metadata file (``PKG-INFO`` / ``METADATA``)."""
    message = email.parser.Parser().parsestr(metadata_text, headersonly=True)
    return [str(value) for value in message.get_all("Requires-Dist") or []]


def _from_pyproject(source_dir: Path) -> list[str] | None:
    try:
        data = tomllib.loads((source_dir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    project = data.get("project")
    if not isinstance(project, dict):
        return None
    dynamic = project.get("dynamic", [])
    if "dependencies" in dynamic or "optional-dependencies" in dynamic:
        return None
    found = [str(r) for r in project.get("dependencies", [])]
    for extra, requirements in sorted(project.get("optional-dependencies", {}).items()):
        for text in requirements:
            found.append(_with_extra(str(text), str(extra)))
    return found


def _with_extra(text: str, extra: str) -> str:
    """``text`` required only with ``extra`` (its own marker kept)."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return text  # reported with its text by install_requirements
    marker = requirement.marker
    requirement.marker = None
    condition = f'extra == "{extra}"'
    return f"{requirement}; ({marker}) and {condition}" if marker else f"{requirement}; {condition}"


def _from_pkg_info(source_dir: Path) -> list[str] | None:
    try:
        text = (source_dir / "PKG-INFO").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    message = email.parser.Parser().parsestr(text, headersonly=True)
    try:
        version = Version(message.get("Metadata-Version", "1.0"))
    except ValueError:
        return None
    dynamic = {str(field).lower() for field in message.get_all("Dynamic") or []}
    if version < Version("2.2") or "requires-dist" in dynamic:
        return None
    return requires_dist(text)


def install_requirements(source_dir: Path, prepare_metadata: Callable[[], Path]) -> list[str]:
    """The install requirements (``Requires-Dist`` strings, markers included) of the source
    in ``source_dir``; ``prepare_metadata`` runs the backend and returns the ``.dist-info``
    folder, for sources whose metadata is not static."""
    found = _from_pyproject(source_dir)
    if found is None:
        found = _from_pkg_info(source_dir)
    if found is None:
        found = requires_dist(
            (prepare_metadata() / "METADATA").read_text(encoding="utf-8", errors="replace")
        )
    for text in found:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise InputError(
                f"invalid install requirement {text!r}: {exc}", file=source_dir
            ) from None
    return found
