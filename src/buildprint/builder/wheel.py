"""Wheel post-processing: embed the build manifest, read it back, digest a wheel's content."""

from __future__ import annotations

import base64
import contextlib
import csv
import difflib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from buildprint.errors import BuildFailed, InputError
from buildprint.fsio import new_temp_file
from buildprint.signature.canonical import digest_value

__all__ = [
    "MANIFEST_NAME",
    "MemberDifference",
    "artifact_digest",
    "check_built_wheel",
    "compare_wheels",
    "embed_manifest",
    "read_manifest",
    "tagged_filename",
]

#: File name of the embedded manifest inside ``<name>-<version>.dist-info/``.
MANIFEST_NAME = "buildprint.json"

#: Tag of the artifact-digest encoding; change it if what is hashed changes.
_DIGEST_SCHEME = "buildprint-wheel-content/1"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_NEW_MEMBER_ATTR = (stat.S_IFREG | 0o644) << 16
_CHUNK = 1 << 20
# Only the top-level dist-info folder is the wheel's metadata; a package may ship files
# named RECORD elsewhere, and those are content.
_METADATA_FILE = re.compile(r"[^/]+\.dist-info/(RECORD|" + re.escape(MANIFEST_NAME) + r")")
#: The wheel's WHEEL file, whose ``Build:`` line (the build tag) the artifact digest leaves out.
_WHEEL_FILE = re.compile(r"[^/]+\.dist-info/WHEEL")
# What reading a damaged archive can raise besides BadZipFile.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError)


def _open(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except FileNotFoundError:
        raise InputError("wheel not found", file=wheel) from None
    except OSError as exc:
        raise InputError(f"cannot read wheel: {exc.strerror}", file=wheel) from None
    except _ZIP_ERRORS as exc:
        raise InputError(f"not a valid wheel archive: {exc}", file=wheel) from None


def _dist_info(zf: zipfile.ZipFile, wheel: Path) -> str:
    """The ``<name>-<version>.dist-info`` folder holding the wheel's RECORD."""
    folders = sorted(
        {
            info.filename.split("/", 1)[0]
            for info in zf.infolist()
            if re.fullmatch(r"[^/]+\.dist-info/RECORD", info.filename)
        }
    )
    if len(folders) != 1:
        found = ", ".join(folders) or "none"
        raise InputError(
            f"wheel must have exactly one *.dist-info/RECORD (found {found})", file=wheel
        )
    return folders[0]


def _check_unique(zf: zipfile.ZipFile, wheel: Path) -> None:
    seen: set[str] = set()
    for info in zf.infolist():
        if info.filename in seen:
            raise InputError(f"wheel has duplicate member {info.filename!r}", file=wheel)
        seen.add(info.filename)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _manifest_date_time() -> tuple[int, int, int, int, int, int]:
    """Zip timestamp for the new member: SOURCE_DATE_EPOCH if set, else 1980-01-01."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw.strip() == "":
        return _ZIP_EPOCH
    try:
        epoch = int(raw)
    except ValueError:
        raise InputError(f"SOURCE_DATE_EPOCH must be an integer, got {raw!r}") from None
    # Zip dates cannot express anything before 1980 (or after 2107).
    epoch = max(epoch, 315532800)
    epoch = min(epoch, 4354819198)
    tm = time.gmtime(epoch)
    return (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)


def _rewrite_record(
    record: bytes,
    dist_info: str,
    manifest_json: bytes,
    wheel: Path,
    replaced: dict[str, bytes] | None = None,
) -> bytes:
    """RECORD with the manifest's line (just before RECORD's own) and, for each member in
    ``replaced`` (path -> its new bytes), its line's hash and size set anew in place."""
    record_path = f"{dist_info}/RECORD"
    manifest_path = f"{dist_info}/{MANIFEST_NAME}"
    replaced = replaced or {}
    try:
        rows = list(csv.reader(io.StringIO(record.decode("utf-8"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{record_path} is unreadable: {exc}", file=wheel) from None
    kept = [row for row in rows if row and row[0] not in {record_path, manifest_path}]
    for row in kept:
        if row[0] in replaced:
            data = replaced[row[0]]
            row[1:] = [_record_hash(data), str(len(data))]
    kept.append([manifest_path, _record_hash(manifest_json), str(len(manifest_json))])
    kept.append([record_path, "", ""])
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(kept)
    return out.getvalue().encode("utf-8")


def _drop_build(wheel_file: bytes) -> bytes:
    """The WHEEL file without its ``Build:`` header lines."""
    lines = wheel_file.splitlines(keepends=True)
    return b"".join(line for line in lines if not line.lower().startswith(b"build:"))


def _with_build(wheel_file: bytes, build_tag: int, wheel: Path) -> bytes:
    """The WHEEL file with ``Build: <build_tag>`` (any earlier one replaced), placed before the
    first ``Tag:`` line as bdist_wheel writes it, in the file's own line ending."""
    if b"\r\n" in wheel_file:
        newline = b"\r\n"
    elif b"\n" in wheel_file:
        newline = b"\n"
    else:
        raise InputError("its .dist-info/WHEEL file is empty or not a header file", file=wheel)
    lines = _drop_build(wheel_file).splitlines(keepends=True)
    build = f"Build: {build_tag}".encode("ascii") + newline
    at = next(
        (i for i, line in enumerate(lines) if line.lower().startswith(b"tag:")),
        next((i for i, line in enumerate(lines) if not line.strip()), len(lines)),
    )
    if at == len(lines) and lines and not lines[-1].endswith(b"\n"):
        lines[-1] += newline
    lines.insert(at, build)
    return b"".join(lines)


def tagged_filename(filename: str, build_tag: int) -> str:
    """``filename`` (a wheel's) with the build tag ``build_tag`` (PEP 427: ``name-version-
    build-python-abi-platform.whl``), replacing any it has; unchanged for 0 (no tag asked)."""
    if isinstance(build_tag, bool) or not isinstance(build_tag, int) or build_tag < 0:
        raise InputError(f"a build tag must be an integer >= 0 (0: none), not {build_tag!r}")
    if build_tag == 0:
        return filename
    parts = filename.removesuffix(".whl").split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise InputError(f"{filename} is not a wheel file name")
    if len(parts) == 6:
        del parts[2]
    parts.insert(2, str(build_tag))
    return "-".join(parts) + ".whl"


def embed_manifest(
    wheel: Path, manifest_json: bytes, dest_dir: Path, *, build_tag: int = 0
) -> Path:
    """Write ``wheel`` into ``dest_dir`` with the manifest embedded; return the new file.

    Adds ``<dist-info>/buildprint.json`` (replacing an earlier one) just before RECORD and
    updates RECORD. With ``build_tag`` N >= 1 (a package's ``rebuild = N``) the file is named
    with that PEP 427 build tag (``name-version-N-python-abi-platform.whl``, replacing one
    the backend gave) and ``<dist-info>/WHEEL`` says ``Build: N``; with 0 the file keeps its
    name and its WHEEL file. The output is a function of the input wheel, the manifest and
    the tag only: members keep their order, dates and attributes; the new member gets
    SOURCE_DATE_EPOCH (or 1980-01-01) and mode 0644. The file appears atomically.
    """
    wheel = Path(wheel)
    dest_dir = Path(dest_dir)
    name = tagged_filename(wheel.name, build_tag)  # a bad tag fails before anything is written
    try:
        parsed = json.loads(manifest_json.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"manifest is not UTF-8 JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InputError("manifest must be a JSON object")
    _manifest_date_time()  # a bad SOURCE_DATE_EPOCH fails before anything is written
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / name
    fd, tmp = new_temp_file(dest_dir, name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with _open(wheel) as src, zipfile.ZipFile(raw, "w") as out:
                _check_unique(src, wheel)
                dist_info = _dist_info(src, wheel)
                try:
                    replaced = _replaced_members(src, dist_info, build_tag, wheel)
                    _copy_with_manifest(src, out, dist_info, manifest_json, wheel, replaced)
                except _ZIP_ERRORS as exc:
                    raise InputError(f"damaged wheel archive: {exc}", file=wheel) from None
                except OSError as exc:
                    raise InputError(f"cannot rewrite wheel: {exc}", file=wheel) from None
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def _replaced_members(
    src: zipfile.ZipFile, dist_info: str, build_tag: int, wheel: Path
) -> dict[str, bytes]:
    """Members written with other bytes (path -> bytes): WHEEL, when a build tag is given."""
    if build_tag == 0:
        return {}
    path = f"{dist_info}/WHEEL"
    try:
        current = src.read(path)
    except KeyError:
        raise InputError(f"wheel has no {path}", file=wheel) from None
    return {path: _with_build(current, build_tag, wheel)}


def _copy_with_manifest(
    src: zipfile.ZipFile,
    out: zipfile.ZipFile,
    dist_info: str,
    manifest_json: bytes,
    wheel: Path,
    replaced: dict[str, bytes],
) -> None:
    record_path = f"{dist_info}/RECORD"
    manifest_path = f"{dist_info}/{MANIFEST_NAME}"
    for info in src.infolist():
        if info.filename == manifest_path:
            continue  # replaced: the new one goes just before RECORD
        if info.filename == record_path:
            manifest = _same_as(info, manifest_path)
            manifest.date_time = _manifest_date_time()
            # Fixed creator, mode and compression: the host must not leak into the bytes.
            manifest.create_system = 3
            manifest.external_attr = _NEW_MEMBER_ATTR
            manifest.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(manifest, manifest_json)
            record = _rewrite_record(src.read(info), dist_info, manifest_json, wheel, replaced)
            out.writestr(_same_as(info, record_path), record)
            continue
        if info.filename in replaced:
            out.writestr(_same_as(info, info.filename), replaced[info.filename])
            continue
        _copy_member(src, out, info)


def _same_as(info: zipfile.ZipInfo, name: str) -> zipfile.ZipInfo:
    """A fresh header for ``name`` with the date, creator, mode and compression of ``info``.

    Extra fields (extended timestamps, zip64 sizes) are dropped: they are rewritten or
    irrelevant, and keeping them would tie the output to the tool that made the input.
    """
    new = zipfile.ZipInfo(name, date_time=info.date_time)
    new.create_system = info.create_system
    new.external_attr = info.external_attr
    new.compress_type = info.compress_type
    return new


def _copy_member(src: zipfile.ZipFile, out: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    new = _same_as(info, info.filename)
    if info.is_dir():
        out.writestr(new, b"")
        return
    new.file_size = info.file_size  # lets zipfile pick zip64 up front for huge members
    # Streamed so a multi-gigabyte member never sits in memory.
    with src.open(info) as reader, out.open(new, "w") as writer:
        shutil.copyfileobj(reader, writer, _CHUNK)


def read_manifest(wheel: Path) -> bytes | None:
    """The embedded ``buildprint.json`` bytes, or None if the wheel has none."""
    wheel = Path(wheel)
    with _open(wheel) as zf:
        dist_info = _dist_info(zf, wheel)
        try:
            return zf.read(f"{dist_info}/{MANIFEST_NAME}")
        except KeyError:
            return None
        except _ZIP_ERRORS as exc:
            raise InputError(f"damaged wheel archive: {exc}", file=wheel) from None


def artifact_digest(wheel: Path) -> str:
    """Canonical digest of what the wheel installs, for ``artifact``-mode dependents.

    Hashes the sorted (archive path, content sha256, exec bit) of every file, leaving out
    ``*.dist-info/buildprint.json`` and ``*.dist-info/RECORD`` — RECORD only repeats the
    other hashes plus the manifest's — and the ``Build:`` line of ``*.dist-info/WHEEL`` (the
    build tag), so embedding a manifest or a build tag never changes the digest, nor do zip
    timestamps, member order or compression.
    """
    wheel = Path(wheel)
    entries: list[list[str | bool]] = []
    with _open(wheel) as zf:
        _check_unique(zf, wheel)
        _dist_info(zf, wheel)
        try:
            for info in zf.infolist():
                if info.is_dir() or _METADATA_FILE.fullmatch(info.filename):
                    continue
                hasher = hashlib.sha256()
                if _WHEEL_FILE.fullmatch(info.filename):
                    # The build tag names the file; a rebuild to the same content is the same
                    # artifact (no cascade), as an embedded manifest is.
                    hasher.update(_drop_build(zf.read(info)))
                else:
                    with zf.open(info) as reader:
                        while chunk := reader.read(_CHUNK):
                            hasher.update(chunk)
                executable = bool((info.external_attr >> 16) & 0o111)
                entries.append([info.filename, hasher.hexdigest(), executable])
        except _ZIP_ERRORS as exc:
            raise InputError(f"damaged wheel archive: {exc}", file=wheel) from None
    entries.sort()
    return digest_value({"scheme": _DIGEST_SCHEME, "files": entries})


def check_built_wheel(wheel: Path, name: str, version: str, supported: Collection[Tag]) -> None:
    """Refuse a wheel a backend (or a ``build_wheel`` hook) returned for package ``name``
    ``version`` unless its file name and its METADATA say that same distribution and version,
    and at least one of its tags is one the build interpreter ``supported`` installs: a
    mismatch would be stored under the package's signature as something it is not."""

    def refuse(what: str) -> BuildFailed:
        return BuildFailed(
            f"the build of {name} {version} returned {wheel.name}: {what}; nothing was stored",
            file=wheel,
        )

    try:
        got_name, got_version, _build, tags = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        raise refuse(f"not a wheel file name ({exc})") from None
    if got_name != canonicalize_name(name) or got_version != Version(version):
        raise refuse(f"it is {got_name} {got_version}")
    if not tags & set(supported):
        shown = ", ".join(sorted(str(t) for t in tags))
        raise refuse(f"its tags ({shown}) are not ones this interpreter installs")
    try:
        with _open(wheel) as zf:
            metadata = zf.read(f"{_dist_info(zf, wheel)}/METADATA").decode("utf-8", "replace")
    except (InputError, KeyError, *_ZIP_ERRORS) as exc:
        raise refuse(f"its metadata cannot be read ({exc})") from None
    headers = HeaderParser().parsestr(metadata)
    meta_name, meta_version = headers.get("Name", ""), headers.get("Version", "")
    try:
        same = canonicalize_name(meta_name) == got_name and Version(meta_version) == got_version
    except InvalidVersion:
        same = False
    if not same:
        raise refuse(f"its METADATA says {meta_name} {meta_version}")


@dataclass(frozen=True)
class MemberDifference:
    """One member in which two builds of a wheel differ (``verify``): present in one only,
    or with other bytes (a unified diff for text, sizes and digests for binaries) or mode."""

    member: str
    change: str  # "added" | "removed" | "changed" | "mode"
    diff: str = ""
    sizes: tuple[int, int] | None = None
    digests: tuple[str, str] | None = None


#: A unified diff longer than this is cut (the member still counts as different).
DIFF_LINES = 200


def compare_wheels(stored: Path, rebuilt: Path) -> list[MemberDifference]:
    """How ``rebuilt`` differs from ``stored`` in what it installs: the members the
    artifact digest covers (so the embedded manifest, RECORD and the build tag aside),
    by content and executable bit. Empty: the same content."""
    with _open(stored) as old, _open(rebuilt) as new:
        try:
            a, b = _members(old), _members(new)
            out = [MemberDifference(m, "removed") for m in sorted(a.keys() - b.keys())]
            out += [MemberDifference(m, "added") for m in sorted(b.keys() - a.keys())]
            for member in sorted(a.keys() & b.keys()):
                (old_info, old_data), (new_info, new_data) = a[member], b[member]
                if old_data != new_data:
                    out.append(_difference(member, old_data, new_data))
                elif _executable(old_info) != _executable(new_info):
                    out.append(MemberDifference(member, "mode"))
        except _ZIP_ERRORS as exc:
            raise InputError(f"damaged wheel archive: {exc}", file=rebuilt) from None
    return sorted(out, key=lambda d: d.member)


def _members(zf: zipfile.ZipFile) -> dict[str, tuple[zipfile.ZipInfo, bytes]]:
    out = {}
    for info in zf.infolist():
        if info.is_dir() or _METADATA_FILE.fullmatch(info.filename):
            continue
        data = zf.read(info)
        if _WHEEL_FILE.fullmatch(info.filename):
            data = _drop_build(data)
        out[info.filename] = (info, data)
    return out


def _executable(info: zipfile.ZipInfo) -> bool:
    return bool((info.external_attr >> 16) & 0o111)


def _difference(member: str, old: bytes, new: bytes) -> MemberDifference:
    sizes = (len(old), len(new))
    digests = (hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest())
    try:
        if b"\0" in old or b"\0" in new:  # text has no NUL; an ELF file may decode as UTF-8
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
        old_text, new_text = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return MemberDifference(member, "changed", sizes=sizes, digests=digests)
    lines = list(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            f"stored/{member}",
            f"rebuilt/{member}",
        )
    )
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more lines)\n"]
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return MemberDifference(member, "changed", diff=text, sizes=sizes, digests=digests)
