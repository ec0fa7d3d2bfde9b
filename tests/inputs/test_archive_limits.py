"""Archive limits (``max-unpacked-size``, ``max-expansion-ratio``) in digest and extraction,
and non-UTF-8 pass-through values in the ``env`` component."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from buildprint.errors import ArchiveError
from buildprint.inputs.archive import ArchiveLimits, archive_digest, use_limits
from buildprint.inputs.env import masked
from buildprint.inputs.extract import safe_extract

MIB = 1 << 20


def _tar(path: Path, size: int) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("demo-1.0/zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return path


def _zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("demo-1.0/zeros.bin", bytes(size))
    return path


@pytest.mark.parametrize("make", [_tar, _zip], ids=["tar.gz", "zip"])
def test_past_max_unpacked_is_refused_and_extraction_writes_nothing(
    tmp_path: Path, make: object
) -> None:
    suffix = ".tar.gz" if make is _tar else ".zip"
    archive = make(tmp_path / f"demo-1.0{suffix}", 3 * MIB)  # type: ignore[operator]
    limits = ArchiveLimits(max_unpacked=MIB)
    with pytest.raises(ArchiveError, match="max-unpacked-size") as caught:
        archive_digest(archive, limits=limits)
    assert caught.value.file == str(archive)
    dest = tmp_path / "dest"
    dest.mkdir()
    use_limits(archive, limits)  # as SourceResolver.fetch does for the builder
    with pytest.raises(ArchiveError, match="refusing to unpack"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []
    # Under the default limits the same archive is fine.
    assert archive_digest(archive, limits=ArchiveLimits()).digest


def test_expansion_ratio_applies_past_the_floor_only(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "demo-1.0.tar.gz", 3 * MIB)
    tight = ArchiveLimits(max_ratio=2, ratio_floor=MIB)
    with pytest.raises(ArchiveError, match=r"expands more than 2x"):
        archive_digest(archive, limits=tight)
    assert archive_digest(archive, limits=ArchiveLimits(max_ratio=2)).digest  # under 64 MiB


def test_non_utf8_pass_through_value_is_digested_as_its_bytes() -> None:
    odd = "caf\udce9"  # b"caf\xe9" from the environment, as PEP 383 hands it over
    assert masked("X", odd) == masked("X", odd)
    assert masked("X", odd) != masked("X", "café")
    assert masked("X", "café") == masked("X", "caf\udcc3\udca9")  # the same bytes
