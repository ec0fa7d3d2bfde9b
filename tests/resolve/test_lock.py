"""buildprint.lock: resolution with the real uv binary against real wheel folders; file format."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from packaging.tags import Tag

from buildprint.errors import InputError
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.lockfile import (
    Lock,
    LockedBuildDeps,
    PinnedWheel,
    dumps_lock,
    load_lock,
    save_lock,
)
from buildprint.resolve.pins import fetch_pinned, resolve, tags_for, uv_index_args
from tests.support.indexes import make_sdist, make_wheel, serve_index, sha256_of, write_pep503_tree

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def wheel_folder(tmp_path: Path) -> Path:
    """a 1.0 requires b>=1; b 1.0 and 2.0; c only as an sdist (build deps never use sdists)."""
    folder = tmp_path / "wheels"
    make_wheel(folder, "a", "1.0", requires=["b>=1"])
    make_wheel(folder, "b", "1.0")
    make_wheel(folder, "b", "2.0")
    make_sdist(folder, "c", "1.0")
    return folder


def test_resolve_pins_the_chain_with_artifact_hashes(wheel_folder: Path) -> None:
    index = PackageIndex(str(wheel_folder))
    pins = resolve(["a"], index, PY)
    by_name = {p.name: p for p in pins}
    assert [p.name for p in pins] == ["a", "b"]
    assert by_name["b"].version == "2.0"
    assert by_name["b"].filename == "b-2.0-py3-none-any.whl"
    assert by_name["b"].sha256 == sha256_of(wheel_folder / "b-2.0-py3-none-any.whl")
    assert by_name["a"].sha256 == sha256_of(wheel_folder / "a-1.0-py3-none-any.whl")
    assert by_name["a"].url == (wheel_folder / "a-1.0-py3-none-any.whl").resolve().as_uri()


def test_resolve_honours_upper_bounds_and_pep503_trees(tmp_path: Path, wheel_folder: Path) -> None:
    simple = write_pep503_tree(tmp_path / "repo", sorted(wheel_folder.glob("*.whl")))
    index = PackageIndex(simple.as_uri())
    assert uv_index_args(index)[:2] == ["--index-url", simple.resolve().as_uri()]
    pins = resolve(["a", "b<2"], index, PY)
    assert [(p.name, p.version) for p in pins] == [("a", "1.0"), ("b", "1.0")]
    assert pins[1].sha256 == sha256_of(wheel_folder / "b-1.0-py3-none-any.whl")


def test_find_links_feed_the_resolver(tmp_path: Path, wheel_folder: Path) -> None:
    extra = make_wheel(tmp_path / "extra", "b", "3.0")
    index = PackageIndex(str(wheel_folder), find_links=[str(extra.parent)])
    pins = resolve(["a"], index, PY)
    assert [(p.name, p.version, p.filename) for p in pins] == [
        ("a", "1.0", "a-1.0-py3-none-any.whl"),
        ("b", "3.0", "b-3.0-py3-none-any.whl"),
    ]


def test_sdist_only_requirement_fails_with_uvs_message(wheel_folder: Path) -> None:
    index = PackageIndex(str(wheel_folder))
    with pytest.raises(InputError) as err:
        resolve(["c"], index, PY, origin="packages/alpha.toml")
    message = str(err.value)
    assert err.value.file == "packages/alpha.toml"
    assert "cannot resolve build requirements c" in message
    assert "No solution found" in message  # uv's own explanation is passed on
    assert "index-url" in message


def test_unknown_requirement_and_bad_syntax(wheel_folder: Path) -> None:
    index = PackageIndex(str(wheel_folder))
    with pytest.raises(InputError, match="zzz"):
        resolve(["zzz>=1"], index, PY)
    with pytest.raises(InputError, match="invalid build requirement"):
        resolve(["a >>> 1"], index, PY)
    assert resolve([], index, PY) == []


def test_tags_for_other_python_versions() -> None:
    assert tags_for(PY)[0].interpreter.startswith(("cp", "pp", "py"))
    other = tags_for("3.9")
    assert other[0].interpreter == "cp39"
    assert Tag("py3", "none", "any") in other


@pytest.mark.servers
def test_resolve_against_http_index_keeps_credentials_out_of_the_lock(
    wheel_folder: Path,
) -> None:
    with serve_index(sorted(wheel_folder.glob("*.whl"))) as server:
        url = server.url.replace("http://", "http://u:tok3n@")
        pins = resolve(["a"], PackageIndex(url), PY)
    assert [(p.name, p.version) for p in pins] == [("a", "1.0"), ("b", "2.0")]
    assert pins[1].url == f"http://127.0.0.1:{server.port}/files/b-2.0-py3-none-any.whl"
    assert pins[1].sha256 == sha256_of(wheel_folder / "b-2.0-py3-none-any.whl")
    assert "tok3n" not in dumps_lock(Lock({"x": LockedBuildDeps(["a"], pins)}))


def test_resolve_keeps_preferred_pins_that_still_fit(wheel_folder: Path) -> None:
    """An earlier resolution is kept where it still satisfies the requirements (what keeps a
    re-lock without --upgrade from drifting); without it, the newest allowed versions."""
    index = PackageIndex(str(wheel_folder))
    old_b = PinnedWheel(
        "b",
        "1.0",
        "b-1.0-py3-none-any.whl",
        "file:///old/b.whl",
        sha256_of(wheel_folder / "b-1.0-py3-none-any.whl"),
    )
    kept = resolve(["a"], index, PY, preferences=[old_b])
    assert [(w.name, w.version) for w in kept] == [("a", "1.0"), ("b", "1.0")]

    newest = resolve(["a", "b>=1"], index, PY)
    assert [(w.name, w.version) for w in newest] == [("a", "1.0"), ("b", "2.0")]

    # A preference the requirements no longer allow gives way.
    moved = resolve(["a", "b>=2"], index, PY, preferences=[old_b])
    assert [(w.name, w.version) for w in moved] == [("a", "1.0"), ("b", "2.0")]


def test_fetch_pinned_verifies_against_the_lock(tmp_path: Path, wheel_folder: Path) -> None:
    index = PackageIndex(str(wheel_folder))
    (pin,) = resolve(["b<2"], index, PY)
    assert (
        fetch_pinned(pin, index, tmp_path / "env").read_bytes()
        == (wheel_folder / pin.filename).read_bytes()
    )
    # The folder's file changed since the lock was made: refused, nothing placed.
    make_wheel(wheel_folder, "b", "1.0", requires=["a"])
    with pytest.raises(InputError, match=r"sha256 mismatch for b-1\.0-py3-none-any\.whl"):
        fetch_pinned(pin, PackageIndex(str(wheel_folder)), tmp_path / "env2")
    assert not (tmp_path / "env2").exists()


def _sample_lock() -> Lock:
    wheel = PinnedWheel(
        "setuptools", "68.2.2", "setuptools-68.2.2-py3-none-any.whl", "https://x/s.whl", "a" * 64
    )
    other = PinnedWheel(
        "wheel", "0.42.0", "wheel-0.42.0-py3-none-any.whl", "https://x/w.whl", "b" * 64
    )
    lock = Lock()
    lock.set(
        "Zeta",
        LockedBuildDeps(['setuptools>=68; python_version >= "3.8"', "wheel"], [other, wheel]),
    )
    lock.set("alpha", LockedBuildDeps([], []))
    lock.set("mid_pkg", LockedBuildDeps(['mid; platform_version == "a\\b"'], [wheel]))
    return lock


def test_lock_round_trip_is_byte_stable(tmp_path: Path) -> None:
    path = tmp_path / "buildprint.lock"
    save_lock(path, _sample_lock())
    first = path.read_bytes()
    loaded = load_lock(path)
    assert list(loaded) == ["alpha", "mid-pkg", "zeta"]
    assert loaded["zeta"].requires == ['setuptools>=68; python_version >= "3.8"', "wheel"]
    assert [w.name for w in loaded["zeta"].wheels] == ["setuptools", "wheel"]
    assert loaded["mid-pkg"].requires == ['mid; platform_version == "a\\b"']
    save_lock(path, loaded)
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["buildprint.lock"]  # no temp files left
    data = tomllib.loads(first.decode())
    assert data["version"] == 1
    assert data["packages"]["zeta"]["wheels"][0]["sha256"] == "a" * 64


def test_missing_lock_is_empty(tmp_path: Path) -> None:
    assert len(load_lock(tmp_path / "buildprint.lock")) == 0


@pytest.mark.parametrize(
    ("mutate", "line", "fragment"),
    [
        (
            lambda t: t.replace('version = "68.2.2"', 'version = "68.2.2'),
            None,
            "malformed lock file",
        ),
        (lambda t: t.replace("a" * 64, "A" * 63), "[[packages.mid-pkg.wheels]]", "sha256"),
        (lambda t: t.replace("version = 1", "version = 7"), "version = 7", "format version"),
        (
            lambda t: t.replace(
                "[packages.alpha]\nrequires = []", "[packages.alpha]\nrequires = 3"
            ),
            "[packages.alpha]",
            "list of strings",
        ),
        (
            lambda t: t.replace('filename = "wheel-0.42.0-py3-none-any.whl"\n', ""),
            None,
            "lacks filename",
        ),
    ],
)
def test_malformed_lock_names_file_and_line(tmp_path: Path, mutate, line, fragment) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "buildprint.lock"
    save_lock(path, _sample_lock())
    text = mutate(path.read_text())
    path.write_text(text)
    with pytest.raises(InputError, match=fragment) as err:
        load_lock(path)
    assert err.value.file == str(path)
    assert err.value.line is not None
    lines = text.splitlines()
    if line is not None:
        assert lines[err.value.line - 1] == line
    assert f"{path}:{err.value.line}: " in str(err.value)


@pytest.mark.network
def test_resolve_real_pypi(tmp_path: Path) -> None:
    index = PackageIndex(None, cache_dir=tmp_path / "cache")
    pins = resolve(["setuptools>=68", "wheel"], index, PY)
    names = {p.name: p for p in pins}
    assert {"setuptools", "wheel"} <= set(names)
    assert int(names["setuptools"].version.split(".")[0]) >= 68
    for pin in pins:
        assert pin.filename.endswith(".whl") and len(pin.sha256) == 64
        assert pin.url.startswith("https://")
