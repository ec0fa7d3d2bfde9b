"""Patches of a package: ``patches/<name>/*.patch`` and ``patches/<name>-<version>/*.patch``."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.signature.canonical import digest_bytes

__all__ = ["find_patches", "patches_value"]


def _matches(folder: str, name: str, version: str) -> bool:
    normalized = canonicalize_name(name)
    if canonicalize_name(folder) == normalized:
        return True
    base, sep, folder_version = folder.rpartition("-")
    return bool(sep) and canonicalize_name(base) == normalized and folder_version == version


def find_patches(patches_dir: Path, name: str, version: str) -> list[Path]:
    """Patches for ``name`` at ``version``, in the order they are applied: by file name,
    across the unversioned and the versioned folder. Two patches with the same file name
    would make that order ambiguous, so that is an error."""
    if not patches_dir.is_dir():
        return []
    found: dict[str, Path] = {}
    for folder in sorted(patches_dir.iterdir()):
        if not folder.is_dir() or not _matches(folder.name, name, version):
            continue
        for patch in folder.glob("*.patch"):
            if patch.name in found:
                raise InputError(
                    f"patch {patch.name!r} exists in two folders "
                    f"({found[patch.name].parent.name} and {folder.name}); "
                    "rename one so the order is unambiguous",
                    file=patch,
                )
            found[patch.name] = patch
    return [found[n] for n in sorted(found)]


def patches_value(patches: list[Path]) -> dict[str, str]:
    """Component value: patch file name -> digest of its bytes (ordered by name)."""
    return {p.name: digest_bytes(p.read_bytes()) for p in patches}
