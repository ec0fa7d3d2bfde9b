"""Patches of a package: ``patches/<name>/*.patch`` and ``patches/<name>-<version>/*.patch``."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.signature.canonical import digest_bytes

__all__ = ["PatchFolders", "find_patches", "patches_value"]


class PatchFolders:
    """The folders of ``patches/``, indexed once by the package (and version) they serve, so
    looking up thousands of packages is not quadratic."""

    def __init__(self, patches_dir: Path) -> None:
        self.by_key: dict[tuple[str, str | None], list[Path]] = {}
        try:
            folders = sorted(entry for entry in patches_dir.iterdir() if entry.is_dir())
        except OSError:
            folders = []
        for folder in folders:
            # "name" serves every version; "name-version" one version. A name that itself
            # contains a dash ("foo-bar") is indexed both ways; the lookup decides.
            self.by_key.setdefault((canonicalize_name(folder.name), None), []).append(folder)
            base, sep, version = folder.name.rpartition("-")
            if sep and base:
                self.by_key.setdefault((canonicalize_name(base), version), []).append(folder)

    def for_package(self, name: str, version: str) -> list[Path]:
        normalized = canonicalize_name(name)
        return sorted(
            self.by_key.get((normalized, None), []) + self.by_key.get((normalized, version), [])
        )


def find_patches(
    patches_dir: Path, name: str, version: str, folders: PatchFolders | None = None
) -> list[Path]:
    """Patches for ``name`` at ``version``, in the order they are applied: by file name,
    across the unversioned and the versioned folder. Two patches with the same file name
    would make that order ambiguous, so that is an error. ``folders``: the index of
    ``patches_dir``, when the caller looks up many packages."""
    found: dict[str, Path] = {}
    index = PatchFolders(patches_dir) if folders is None else folders
    for folder in index.for_package(name, version):
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
