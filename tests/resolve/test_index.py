"""PackageIndex against real folders, PEP 503 trees and PEP 691/503 servers on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.version import Version

from buildprint.errors import InputError
from buildprint.resolve.index import DistFile, PackageIndex
from buildprint.urls import redact_url
from tests.support.indexes import make_sdist, make_wheel, serve_index, sha256_of, write_pep503_tree

ANY = [Tag("py3", "none", "any")]


@pytest.fixture
def dists(tmp_path: Path) -> list[Path]:
    """alpha 1.0 (tar.gz + zip sdists, a wheel), alpha 2.0 (wheel only), beta 0.5 (sdist)."""
    files = tmp_path / "files"
    return [
        make_sdist(files, "alpha", "1.0"),
        make_sdist(files, "alpha", "1.0", ext=".zip"),
        make_wheel(files, "alpha", "1.0"),
        make_wheel(files, "alpha", "2.0"),
        make_sdist(files, "beta", "0.5"),
    ]


def test_pep503_tree_lists_files_with_published_hashes(tmp_path: Path, dists: list[Path]) -> None:
    simple = write_pep503_tree(tmp_path / "repo", dists)
    index = PackageIndex(str(simple))

    files = {f.filename: f for f in index.files("Alpha")}
    assert set(files) == {p.name for p in dists if p.name.startswith("alpha")}
    tgz = files["alpha-1.0.tar.gz"]
    assert tgz.kind == "sdist" and tgz.version == Version("1.0") and tgz.name == "alpha"
    assert tgz.sha256 == sha256_of(dists[0])
    assert files["alpha-2.0-py3-none-any.whl"].kind == "wheel"
    assert index.versions("alpha") == [Version("1.0"), Version("2.0")]


def test_find_sdist_prefers_tar_gz_and_names_missing_versions(
    tmp_path: Path, dists: list[Path]
) -> None:
    index = PackageIndex(write_pep503_tree(tmp_path / "repo", dists).as_uri())
    assert index.find_sdist("alpha", "1.0").filename == "alpha-1.0.tar.gz"
    # 1.0.0 is the same version as 1.0
    assert index.find_sdist("alpha", "1.0.0").filename == "alpha-1.0.tar.gz"

    with pytest.raises(InputError) as err:
        index.find_sdist("alpha", "2.0")
    message = str(err.value)
    assert "'alpha'" in message and "2.0" in message and "offered: 1.0" in message
    assert "index-url" in message

    with pytest.raises(InputError, match=r"'gamma'.*no files"):
        index.find_sdist("gamma", "1")


def test_flat_folder_is_used_in_place_and_hashed_on_demand(
    tmp_path: Path, dists: list[Path]
) -> None:
    folder = dists[0].parent
    index = PackageIndex(str(folder))
    sdist = index.find_sdist("beta", "0.5")
    assert sdist.sha256 is None
    assert index.download(sdist) == dists[4].resolve()
    assert index.sha256(sdist) == sha256_of(dists[4])

    copied = index.download(sdist, tmp_path / "out")
    assert copied == tmp_path / "out" / "beta-0.5.tar.gz"
    assert copied.read_bytes() == dists[4].read_bytes()


def test_find_links_add_files_to_the_index(tmp_path: Path, dists: list[Path]) -> None:
    simple = write_pep503_tree(tmp_path / "repo", dists)
    extra = make_wheel(tmp_path / "extra", "alpha", "3.0")
    index = PackageIndex(str(simple), find_links=[str(extra.parent)])
    assert index.versions("alpha") == [Version("1.0"), Version("2.0"), Version("3.0")]
    assert index.find_wheel("alpha", "3.0", ANY).url == extra.resolve().as_uri()


def test_find_wheel_follows_tag_priority(tmp_path: Path) -> None:
    folder = tmp_path / "wheels"
    make_wheel(folder, "gamma", "1.0")
    make_wheel(folder, "gamma", "1.0", tag="cp311-cp311-linux_x86_64")
    make_wheel(folder, "gamma", "1.0", tag="cp39-cp39-win_amd64")
    index = PackageIndex(str(folder))
    linux = [Tag("cp311", "cp311", "linux_x86_64"), *ANY]

    assert index.find_wheel("gamma", "1.0", linux).filename.endswith("linux_x86_64.whl")
    assert index.find_wheel("gamma", "1.0", ANY).filename == "gamma-1.0-py3-none-any.whl"
    with pytest.raises(InputError, match="compatible") as err:
        index.find_wheel("gamma", "1.0", [Tag("cp312", "cp312", "macosx_11_0_arm64")])
    assert "gamma-1.0-cp39-cp39-win_amd64.whl" in str(err.value)


def test_tampered_local_file_is_refused(tmp_path: Path, dists: list[Path]) -> None:
    index = PackageIndex(str(write_pep503_tree(tmp_path / "repo", dists)))
    dists[0].write_bytes(b"not the published archive")
    sdist = index.find_sdist("alpha", "1.0")
    with pytest.raises(InputError, match=r"sha256 mismatch for alpha-1\.0\.tar\.gz"):
        index.download(sdist, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.servers
def test_pep691_json_server(tmp_path: Path, dists: list[Path]) -> None:
    with serve_index(dists, mode="json") as server:
        server.yanked.add("alpha-2.0-py3-none-any.whl")
        index = PackageIndex(server.url, cache_dir=tmp_path / "cache")
        files = {f.filename: f for f in index.files("alpha")}
        wheel = files["alpha-2.0-py3-none-any.whl"]
        assert wheel.yanked and wheel.requires_python == ">=3.8"
        assert wheel.url == f"http://127.0.0.1:{server.port}/files/{wheel.filename}"
        assert index.versions("alpha") == [Version("1.0")]  # 2.0 only has a yanked file

        sdist = index.find_sdist("alpha", "1.0")
        path = index.download(sdist, tmp_path / "out")
        assert path == tmp_path / "out" / "alpha-1.0.tar.gz"
        assert path.read_bytes() == dists[0].read_bytes()
        assert server.page_types == ["application/vnd.pypi.simple.v1+json"]


@pytest.mark.servers
def test_pep503_html_server(tmp_path: Path, dists: list[Path]) -> None:
    with serve_index(dists, mode="html") as server:
        server.yanked.add("alpha-1.0.zip")
        index = PackageIndex(server.url + "/")
        files = {f.filename: f for f in index.files("ALPHA")}
        assert files["alpha-1.0.zip"].yanked
        assert files["alpha-1.0.tar.gz"].requires_python == ">=3.8"
        assert files["alpha-1.0.tar.gz"].sha256 == sha256_of(dists[0])
        path = index.download(index.find_wheel("alpha", "2.0", ANY))
        assert path.read_bytes() == dists[3].read_bytes()
        # Listings are memoized: one page request however many lookups.
        index.find_sdist("alpha", "1.0")
        assert server.page_types == ["text/html"]


@pytest.mark.servers
def test_sha256_mismatch_from_server_leaves_nothing(tmp_path: Path, dists: list[Path]) -> None:
    wrong = "0" * 64
    with serve_index(dists, published={"alpha-1.0.tar.gz": wrong}) as server:
        index = PackageIndex(server.url, cache_dir=tmp_path / "cache")
        sdist = index.find_sdist("alpha", "1.0")
        with pytest.raises(InputError) as err:
            index.download(sdist, tmp_path / "out")
    message = str(err.value)
    assert "alpha-1.0.tar.gz" in message and wrong in message and sha256_of(dists[0]) in message
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(tmp_path / "files" in p.parents for p in leftovers), leftovers


@pytest.mark.servers
def test_cache_hit_makes_no_request(tmp_path: Path, dists: list[Path]) -> None:
    cache = tmp_path / "cache"
    with serve_index(dists) as server:
        first = PackageIndex(server.url, cache_dir=cache)
        wheel = first.find_wheel("alpha", "1.0", ANY)
        cached = first.download(wheel)
        assert server.hits("/files/") == 1
        assert first.download(wheel) == cached
        # A new client with the same cache: the listing is fetched, the file is not.
        second = PackageIndex(server.url, cache_dir=cache)
        out = second.download(second.find_wheel("alpha", "1.0", ANY), tmp_path / "out")
        assert server.hits("/files/") == 1
    assert cached.is_relative_to(cache) and sha256_of(cached) in str(cached)
    assert out.read_bytes() == dists[2].read_bytes()


@pytest.mark.servers
def test_credentials_are_sent_but_never_printed(tmp_path: Path, dists: list[Path]) -> None:
    with serve_index(dists) as server:
        url = server.url.replace("http://", "http://token:s3cret@")
        index = PackageIndex(url)
        with pytest.raises(InputError) as err:
            index.find_sdist("missing-pkg", "1.0")
        assert any(auth and auth.startswith("Basic ") for _m, _p, auth in server.requests)
    assert "s3cret" not in str(err.value) and "missing-pkg" in str(err.value)
    assert "127.0.0.1" in str(err.value)
    assert redact_url(url) == server.url


def test_unreachable_index_is_input_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    index = PackageIndex(f"http://user:pw-secret@127.0.0.1:{port}/simple", timeout=5)
    with pytest.raises(InputError, match="cannot reach the package index") as err:
        index.files("alpha")
    assert "pw-secret" not in str(err.value) and "index-url" in str(err.value)


def test_distfile_local_path_round_trips(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "dir with space", "delta", "1.0")
    (found,) = PackageIndex(str(wheel.parent)).files("delta")
    assert isinstance(found, DistFile) and found.is_local
    assert found.local_path == wheel.resolve()


def test_missing_local_locations_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="index folder does not exist") as err:
        PackageIndex(str(tmp_path / "nowhere")).files("alpha")
    assert err.value.file == str(tmp_path / "nowhere")
    index = PackageIndex(str(tmp_path), find_links=[str(tmp_path / "gone")])
    with pytest.raises(InputError, match="find-links location does not exist"):
        index.files("alpha")
