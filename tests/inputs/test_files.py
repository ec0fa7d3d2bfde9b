"""file_digest: the raw sha256 of a file, on both read paths (one read, chunked)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from buildprint.errors import InputError
from buildprint.inputs import files
from buildprint.inputs.files import file_digest


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        files.SMALL_FILE - 1,
        files.SMALL_FILE,
        files.SMALL_FILE + 1,
        3 * files.SMALL_FILE + 7,
    ],
)
def test_file_digest_is_sha256_of_the_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


def test_file_digest_follows_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"content")
    os.symlink("real", tmp_path / "link")
    assert file_digest(tmp_path / "link") == hashlib.sha256(b"content").hexdigest()


def test_missing_file_and_directory_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as missing:
        file_digest(tmp_path / "nope")
    assert missing.value.file == str(tmp_path / "nope")
    with pytest.raises(InputError):
        file_digest(tmp_path)
