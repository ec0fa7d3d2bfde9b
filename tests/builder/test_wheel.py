"""Embedding the manifest into real wheels built by pip, and the wheel artifact digest."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from buildprint.builder.wheel import MANIFEST_NAME, artifact_digest, embed_manifest, read_manifest
from buildprint.errors import InputError

MANIFEST_A = json.dumps({"signature": "a" * 64, "components": {}}).encode()
MANIFEST_B = json.dumps({"signature": "b" * 64, "components": {"rebuild": 1}}).encode()


def _build_wheel(project: Path, out: Path) -> Path:
    """Build ``project`` into a wheel with pip, offline and without build isolation."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(out),
            str(project),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def _write_project(root: Path, greeting: str) -> Path:
    pkg = root / "src" / "tinypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"GREETING = {greeting!r}\n")
    (pkg / "data.txt").write_text("payload\n")
    (root / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "[project]\n"
        'name = "tinypkg"\n'
        'version = "1.0"\n'
        "[tool.setuptools.package-data]\n"
        'tinypkg = ["data.txt"]\n'
    )
    return root


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheelproj")
    project = _write_project(root / "proj", "hello")
    return _build_wheel(project, root / "out")


def _record_rows(zf: zipfile.ZipFile) -> list[list[str]]:
    (record_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    return list(csv.reader(io.StringIO(zf.read(record_name).decode())))


def _assert_record_valid(wheel: Path) -> None:
    """Every member but RECORD is listed with the right sha256 and size; nothing else is."""
    with zipfile.ZipFile(wheel) as zf:
        rows = _record_rows(zf)
        listed = {row[0] for row in rows}
        members = {info.filename for info in zf.infolist() if not info.is_dir()}
        assert listed == members
        for path, hash_field, size in rows:
            if path.endswith(".dist-info/RECORD"):
                assert (hash_field, size) == ("", "")
                continue
            data = zf.read(path)
            algo, _, encoded = hash_field.partition("=")
            assert algo == "sha256"
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert encoded == expected.decode()
            assert int(size) == len(data)


def _rezip(src: Path, dest: Path, *, reverse: bool, date: tuple[int, ...]) -> Path:
    """Copy a wheel's members into a new zip with other order, timestamps and compression."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        infos = zin.infolist()
        for info in reversed(infos) if reverse else infos:
            new = zipfile.ZipInfo(info.filename, date_time=date)  # type: ignore[arg-type]
            new.external_attr = info.external_attr
            new.compress_type = zipfile.ZIP_STORED
            zout.writestr(new, zin.read(info))
    return dest


def test_embedded_wheel_has_valid_record_and_installs(built_wheel: Path, tmp_path: Path) -> None:
    embedded = embed_manifest(built_wheel, MANIFEST_A, tmp_path / "dest")

    assert embedded == tmp_path / "dest" / built_wheel.name
    assert read_manifest(embedded) == MANIFEST_A
    assert read_manifest(built_wheel) is None
    _assert_record_valid(embedded)

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(target), str(embedded)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    imported = subprocess.run(
        [sys.executable, "-c", "import tinypkg; print(tinypkg.GREETING)"],
        env={"PYTHONPATH": str(target)},
        check=True,
        capture_output=True,
        text=True,
    )
    assert imported.stdout.strip() == "hello"
    (installed,) = target.glob(f"tinypkg-1.0.dist-info/{MANIFEST_NAME}")
    assert installed.read_bytes() == MANIFEST_A


def test_embedding_is_deterministic_and_replaces_previous_manifest(
    built_wheel: Path, tmp_path: Path
) -> None:
    once = embed_manifest(built_wheel, MANIFEST_B, tmp_path / "one").read_bytes()
    again = embed_manifest(built_wheel, MANIFEST_B, tmp_path / "two").read_bytes()
    assert once == again

    first = embed_manifest(built_wheel, MANIFEST_A, tmp_path / "a")
    replaced = embed_manifest(first, MANIFEST_B, tmp_path / "b")
    # Re-embedding yields exactly the bytes of embedding into the pristine wheel.
    assert replaced.read_bytes() == once
    with zipfile.ZipFile(replaced) as zf:
        names = zf.namelist()
        assert sum(n.endswith(MANIFEST_NAME) for n in names) == 1
        assert names[-1].endswith(".dist-info/RECORD")
        assert names[-2].endswith(f".dist-info/{MANIFEST_NAME}")
        assert zf.getinfo(names[-2]).date_time == (1980, 1, 1, 0, 0, 0)
        with zipfile.ZipFile(built_wheel) as orig:
            # Original members keep their order and timestamps.
            assert [n for n in names if not n.endswith(MANIFEST_NAME)] == orig.namelist()
            for info in orig.infolist():
                assert zf.getinfo(info.filename).date_time == info.date_time
    _assert_record_valid(replaced)


def test_source_date_epoch_dates_the_manifest_member(
    built_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14T22:13:20Z
    embedded = embed_manifest(built_wheel, MANIFEST_A, tmp_path)
    with zipfile.ZipFile(embedded) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(MANIFEST_NAME)]
        assert zf.getinfo(name).date_time == (2023, 11, 14, 22, 13, 20)

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InputError, match="SOURCE_DATE_EPOCH"):
        embed_manifest(built_wheel, MANIFEST_A, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_artifact_digest_ignores_manifest_and_packaging(built_wheel: Path, tmp_path: Path) -> None:
    plain = artifact_digest(built_wheel)
    with_a = embed_manifest(built_wheel, MANIFEST_A, tmp_path / "a")
    with_b = embed_manifest(with_a, MANIFEST_B, tmp_path / "b")
    assert artifact_digest(with_a) == plain
    assert artifact_digest(with_b) == plain

    shuffled = _rezip(with_b, tmp_path / built_wheel.name, reverse=True, date=(2001, 2, 3, 4, 5, 6))
    assert shuffled.read_bytes() != with_b.read_bytes()
    assert artifact_digest(shuffled) == plain


def test_artifact_digest_follows_content_and_exec_bit(built_wheel: Path, tmp_path: Path) -> None:
    plain = artifact_digest(built_wheel)

    changed = _write_project(tmp_path / "proj2", "bonjour")
    other = _build_wheel(changed, tmp_path / "out2")
    assert artifact_digest(other) != plain

    # A rebuild of identical sources gives the same digest even though the zip differs.
    same = _build_wheel(_write_project(tmp_path / "proj3", "hello"), tmp_path / "out3")
    assert artifact_digest(same) == plain

    exec_copy = tmp_path / "exec" / built_wheel.name
    exec_copy.parent.mkdir()
    with zipfile.ZipFile(built_wheel) as zin, zipfile.ZipFile(exec_copy, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "tinypkg/data.txt":
                info.external_attr = (0o100755) << 16
            zout.writestr(info, data)
    assert artifact_digest(exec_copy) != plain


def test_bad_wheels_raise_input_error_naming_the_file(built_wheel: Path, tmp_path: Path) -> None:
    not_zip = tmp_path / "broken-1.0-py3-none-any.whl"
    not_zip.write_bytes(b"this is not a zip archive")
    for call in (artifact_digest, read_manifest):
        with pytest.raises(InputError) as info:
            call(not_zip)
        assert info.value.file == str(not_zip)
    with pytest.raises(InputError) as info:
        embed_manifest(not_zip, MANIFEST_A, tmp_path / "out")
    assert info.value.file == str(not_zip)
    assert list((tmp_path / "out").iterdir()) == []  # no temp file left behind

    no_record = tmp_path / "norecord-1.0-py3-none-any.whl"
    with zipfile.ZipFile(no_record, "w") as zf:
        zf.writestr("norecord/__init__.py", "")
    with pytest.raises(InputError, match="RECORD") as info:
        artifact_digest(no_record)
    assert info.value.file == str(no_record)

    # Flip bytes inside a member's compressed data: the CRC check must catch it.
    data = bytearray(built_wheel.read_bytes())
    with zipfile.ZipFile(built_wheel) as zf:
        offset = zf.getinfo("tinypkg/__init__.py").header_offset
    name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
    start = offset + 30 + name_len + extra_len
    data[start + 2] ^= 0xFF
    damaged = tmp_path / "damaged" / built_wheel.name
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        artifact_digest(damaged)
    assert info.value.file == str(damaged)

    with pytest.raises(InputError, match="JSON object"):
        embed_manifest(built_wheel, b"[1, 2]", tmp_path / "out")


def test_embedding_in_place_keeps_modes_and_leaves_no_temp_files(
    built_wheel: Path, tmp_path: Path
) -> None:
    work = tmp_path / "wheelhouse"
    work.mkdir()
    local = work / built_wheel.name
    with zipfile.ZipFile(built_wheel) as zin, zipfile.ZipFile(local, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "tinypkg/data.txt":
                info.external_attr = (0o100755) << 16
            zout.writestr(info, data)
    before = artifact_digest(local)

    assert embed_manifest(local, MANIFEST_A, work) == local
    assert sorted(p.name for p in work.iterdir()) == [built_wheel.name]
    assert read_manifest(local) == MANIFEST_A
    assert artifact_digest(local) == before
    with zipfile.ZipFile(local) as zf:
        assert zf.getinfo("tinypkg/data.txt").external_attr >> 16 == 0o100755
        manifest_info = zf.getinfo(f"tinypkg-1.0.dist-info/{MANIFEST_NAME}")
        assert manifest_info.external_attr >> 16 == 0o100644
    _assert_record_valid(local)
