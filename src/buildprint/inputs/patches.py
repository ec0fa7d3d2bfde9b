"""Patches of a package: ``patches/<name>/*.patch`` and ``patches/<name>-<version>/*.patch``."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.signature.canonical import digest_bytes

__all__ = ["find_patches", "patch_folders", "patches_value"]


def _matches(folder: str, name: str, version: str) -> bool:
    normalized = canonicalize_name(name)
    if canonicalize_name(folder) == normalized:
        return True
    base, sep, folder_version = folder.rpartition("-")
    return bool(sep) and canonicalize_name(base) == normalized and folder_version == version


def patch_folders(patches_dir: Path) -> list[Path]:
    """The folders of ``patches/``, listed once per run (a project may have thousands)."""
    try:
        return sorted(entry for entry in patches_dir.iterdir() if entry.is_dir())
    except OSError:
        return []


def find_patches(
    patches_dir: Path, name: str, version: str, folders: list[Path] | None = None
) -> list[Path]:
    """Patches for ``name`` at ``version``, in the order they are applied: by file name,
    across the unversioned and the versioned folder. Two patches with the same file name
    would make that order ambiguous, so that is an error. ``folders``: the listing of
    ``patches_dir`` from :func:`patch_folders`, when the caller looks up many packages."""
    found: dict[str, Path] = {}
    for folder in patch_folders(patches_dir) if folders is None else folders:
        if not _matches(folder.name, name, version):
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
