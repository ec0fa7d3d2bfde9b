"""compare_wheels (verify): which members differ, and how it says so."""

from __future__ import annotations

import zipfile
from pathlib import Path

from buildprint.builder.wheel import compare_wheels

DIST = "alpha-1.0.dist-info"


def wheel(path: Path, members: dict[str, bytes], executable: frozenset[str] = frozenset()) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            archive.writestr(info, data)
    return path


BASE = {
    "alpha/__init__.py": b"VERSION = 1\n",
    "alpha/_fast.so": b"\x7fELF\x00one",
    f"{DIST}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
    f"{DIST}/RECORD": b"alpha/__init__.py,sha256=x,12\n",
    f"{DIST}/buildprint.json": b'{"signature": "one"}',
}


def test_the_same_content_is_reproducible_whatever_the_manifest_or_record(tmp_path: Path) -> None:
    a = wheel(tmp_path / "a.whl", BASE)
    other = {**BASE, f"{DIST}/RECORD": b"other\n", f"{DIST}/buildprint.json": b"{}"}
    other[f"{DIST}/WHEEL"] = BASE[f"{DIST}/WHEEL"] + b"Build: 2\n"  # the build tag aside
    assert compare_wheels(a, wheel(tmp_path / "b.whl", other)) == []


def test_each_difference_is_named_with_a_diff_or_sizes(tmp_path: Path) -> None:
    a = wheel(tmp_path / "a.whl", BASE)
    changed = {k: v for k, v in BASE.items() if k != "alpha/_fast.so"}
    changed["alpha/__init__.py"] = b"VERSION = 2\n"
    changed["alpha/_fast.so"] = b"\x7fELF\x00two!"
    changed["alpha/extra.py"] = b""
    del changed[f"{DIST}/WHEEL"]
    b = wheel(tmp_path / "b.whl", changed, executable=frozenset({"alpha/_fast.so"}))
    found = {d.member: d for d in compare_wheels(a, b)}
    assert set(found) == {"alpha/__init__.py", "alpha/_fast.so", "alpha/extra.py", f"{DIST}/WHEEL"}
    text = found["alpha/__init__.py"]
    assert text.change == "changed" and "-VERSION = 1\n+VERSION = 2\n" in text.diff
    assert text.diff.startswith("--- stored/alpha/__init__.py\n+++ rebuilt/alpha/__init__.py\n")
    binary = found["alpha/_fast.so"]
    assert binary.diff == "" and binary.sizes == (8, 9) and binary.digests is not None
    assert found["alpha/extra.py"].change == "added"
    assert found[f"{DIST}/WHEEL"].change == "removed"


def test_a_mode_change_alone_is_a_difference(tmp_path: Path) -> None:
    a = wheel(tmp_path / "a.whl", BASE)
    b = wheel(tmp_path / "b.whl", BASE, executable=frozenset({"alpha/__init__.py"}))
    assert [(d.member, d.change) for d in compare_wheels(a, b)] == [("alpha/__init__.py", "mode")]
