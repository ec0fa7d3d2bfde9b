"""Builders for real source archives and trees used by the input-collector tests."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FORMATS", "SDIST", "Item", "make_archive", "make_tree", "set_old_mtimes"]

FORMATS = ["tar.gz", "tgz", "tar.bz2", "tar.xz", "tar", "zip"]


@dataclass(frozen=True)
class Item:
    """One entry of a test tree: a file (``data``), a directory, or a symlink (``target``)."""

    path: str
    data: bytes = b""
    executable: bool = False
    kind: str = "file"  # file | dir | symlink
    target: str = ""


#: A small but realistic sdist layout.
SDIST = [
    Item("PKG-INFO", b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"),
    Item("pyproject.toml", b'[build-system]\nrequires = ["setuptools"]\n'),
    Item("src/demo/__init__.py", b"VERSION = '1.0'\n"),
    Item("src/demo/core.py", b"def answer():\n    return 42\n" * 50),
    Item("scripts/run.sh", b"#!/bin/sh\necho hi\n", executable=True),
    Item("data/blob.bin", bytes(range(256)) * 64),
    Item("src", kind="dir"),
    Item("docs", kind="dir"),
    Item("src/demo/empty", kind="dir"),
    Item("src/demo/alias.py", kind="symlink", target="core.py"),
]


def make_archive(
    path: Path,
    items: Iterable[Item],
    *,
    top: str | None = "demo-1.0",
    mtime: int = 1_600_000_000,
    owner: int = 1000,
    reverse: bool = False,
    extra_mode: int = 0,
    explicit_dirs: bool = True,
) -> Path:
    """Write ``items`` as an archive whose type follows the suffix of ``path``.

    The knobs vary what must not count: timestamps, owners, member order, permission
    bits other than the owner's exec bit (``extra_mode`` is OR-ed into every mode), and
    whether directories have entries of their own.
    """
    members = list(items)
    if not explicit_dirs:
        # Entries of empty directories stay: those are content, not packing detail.
        implied = {
            "/".join(m.path.split("/")[:depth])
            for m in members
            for depth in range(1, m.path.count("/") + 1)
        }
        members = [m for m in members if m.kind != "dir" or m.path not in implied]
    if reverse:
        members.reverse()
    prefix = f"{top}/" if top else ""
    top_entry = bool(prefix) and explicit_dirs
    if path.name.endswith(".zip"):
        _write_zip(path, members, prefix, mtime, reverse, extra_mode, top_entry)
    else:
        _write_tar(path, members, prefix, mtime, owner, reverse, extra_mode, top_entry)
    return path


def _tar_mode(path: str) -> str:
    for suffix, mode in (
        (".tar.gz", "w:gz"),
        (".tgz", "w:gz"),
        (".tar.bz2", "w:bz2"),
        (".tar.xz", "w:xz"),
    ):
        if path.endswith(suffix):
            return mode
    return "w"


def _write_tar(
    path: Path,
    members: list[Item],
    prefix: str,
    mtime: int,
    owner: int,
    reverse: bool,
    extra_mode: int,
    top_entry: bool,
) -> None:
    with tarfile.open(path, _tar_mode(path.name)) as tar:  # type: ignore[call-overload]
        if top_entry and not reverse:
            tar.addfile(_info(prefix.rstrip("/"), tarfile.DIRTYPE, mtime, owner, 0o755))
        for item in members:
            name = prefix + item.path
            if item.kind == "dir":
                tar.addfile(_info(name, tarfile.DIRTYPE, mtime, owner, 0o755 | extra_mode))
            elif item.kind == "symlink":
                info = _info(name, tarfile.SYMTYPE, mtime, owner, 0o777)
                info.linkname = item.target
                tar.addfile(info)
            else:
                mode = (0o755 if item.executable else 0o644) | extra_mode
                info = _info(name, tarfile.REGTYPE, mtime, owner, mode)
                info.size = len(item.data)
                tar.addfile(info, io.BytesIO(item.data))
        if top_entry and reverse:
            tar.addfile(_info(prefix.rstrip("/"), tarfile.DIRTYPE, mtime, owner, 0o700))


def _info(name: str, kind: bytes, mtime: int, owner: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = mtime
    info.uid = info.gid = owner
    info.uname = info.gname = f"user{owner}"
    info.mode = mode
    return info


def _write_zip(
    path: Path,
    members: list[Item],
    prefix: str,
    mtime: int,
    reverse: bool,
    extra_mode: int,
    top_entry: bool,
) -> None:
    stamp = time.localtime(mtime)[:6]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        if top_entry and not reverse:
            zipped.writestr(_zinfo(prefix, stamp, stat.S_IFDIR | 0o755), b"")
        for item in members:
            name = prefix + item.path
            if item.kind == "dir":
                zipped.writestr(_zinfo(name + "/", stamp, stat.S_IFDIR | 0o755), b"")
            elif item.kind == "symlink":
                zipped.writestr(_zinfo(name, stamp, stat.S_IFLNK | 0o777), item.target.encode())
            else:
                mode = (0o755 if item.executable else 0o644) | extra_mode
                zipped.writestr(_zinfo(name, stamp, stat.S_IFREG | mode), item.data)
        if top_entry and reverse:
            zipped.writestr(_zinfo(prefix, stamp, stat.S_IFDIR | 0o700), b"")


def _zinfo(name: str, stamp: tuple[int, ...], mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
    info.create_system = 3  # unix, so external_attr carries the mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def make_tree(root: Path, items: Iterable[Item]) -> Path:
    """Create ``items`` as real files, folders and symlinks under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for item in items:
        target = root / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.kind == "dir":
            target.mkdir(exist_ok=True)
        elif item.kind == "symlink":
            os.symlink(item.target, target)
        else:
            target.write_bytes(item.data)
            target.chmod(0o755 if item.executable else 0o644)
    return root


def set_old_mtimes(root: Path, when: int = 1_500_000_000) -> None:
    """Age every regular file so the memo does not treat it as racily clean."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.utime(full, (when, when))
