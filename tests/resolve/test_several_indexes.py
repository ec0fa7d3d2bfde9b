"""Several indexes (``extra-index-url``): one pool of files where the best version wins, the
same in PackageIndex (sdists) and in ``uv pip compile`` (build requirements)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from buildprint.errors import InputError
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.pins import resolve, uv_index_args
from buildprint.resolve.sources import SourceResolver
from buildprint.store.memo import Memo
from tests.support.indexes import make_sdist, make_wheel, serve_index, sha256_of, write_pep503_tree

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def tree(root: Path, files: list[Path]) -> Path:
    return write_pep503_tree(root, files)


def test_every_index_offers_files_and_the_best_version_wins(tmp_path: Path) -> None:
    main_files = [
        make_sdist(tmp_path / "m", "alpha", "1.0"),
        make_sdist(tmp_path / "m", "beta", "1.0"),
    ]
    extra_files = [
        make_sdist(tmp_path / "e", "alpha", "2.0"),
        make_sdist(tmp_path / "e", "beta", "1.0"),  # the same file name as the main index's
        make_sdist(tmp_path / "e", "gamma", "0.1"),
    ]
    main, extra = tree(tmp_path / "main", main_files), tree(tmp_path / "extra", extra_files)
    index = PackageIndex(str(main), extra_index_urls=[str(extra), str(main) + "/"])

    assert index.extra_index_urls == (str(extra),)  # the main index is not listed again
    assert index.versions("alpha") == [Version("1.0"), Version("2.0")]
    assert (
        index.find_sdist("alpha", "2.0").local_path
        == (tmp_path / "e" / "alpha-2.0.tar.gz").resolve()
    )
    # A file name both offer comes from the first: the main index, then extras in order.
    assert (
        index.find_sdist("beta", "1.0").local_path == (tmp_path / "m" / "beta-1.0.tar.gz").resolve()
    )
    assert [f.filename for f in index.files("gamma")] == ["gamma-0.1.tar.gz"]
    assert f"extra-index-url {extra}" in index.describe()
    assert index.key == f"{main} {extra}"
    assert PackageIndex(str(main)).key == str(main)  # memo keys as before without extras
    assert index.extra_index_paths == [extra]


def test_an_extra_index_over_http_and_a_ranged_requirement(tmp_path: Path) -> None:
    main = tree(tmp_path / "main", [make_sdist(tmp_path / "m", "alpha", "1.0")])
    newer = make_sdist(tmp_path / "e", "alpha", "1.5")
    memo = Memo(tmp_path / "store" / "memo" / "inputs.json")
    settings = tmp_path / "packages" / "alpha.toml"
    with serve_index([newer]) as server:
        index = PackageIndex(str(main), extra_index_urls=[server.url], cache_dir=tmp_path / "dl")
        source = SourceResolver(tmp_path, index, memo).resolve(
            Requirement("alpha>=1"), None, settings
        )
        assert (source.version, source.raw_sha256) == ("1.5", sha256_of(newer))
        assert source.location == f"http://127.0.0.1:{server.port}/files/alpha-1.5.tar.gz"
        # The choice was memoized under both indexes: the main one alone does not have it.
        alone = SourceResolver(tmp_path, PackageIndex(str(main)), memo)
        with pytest.raises(InputError, match=r"no sdist of version 1\.5"):
            alone.resolve(Requirement("alpha==1.5"), None, settings)


def test_uv_index_args_list_every_index_in_the_same_order(tmp_path: Path) -> None:
    main = tree(tmp_path / "main", [make_wheel(tmp_path / "m", "a", "1.0")])
    flat = tmp_path / "flat"
    make_wheel(flat, "b", "1.0")
    extra = tree(tmp_path / "extra", [make_wheel(tmp_path / "e", "c", "1.0")])
    links = tmp_path / "links"
    links.mkdir()

    assert uv_index_args(PackageIndex(str(main))) == ["--index-url", main.resolve().as_uri()]
    assert uv_index_args(PackageIndex(str(flat))) == ["--no-index", "--find-links", str(flat)]
    several = PackageIndex(
        str(main), [str(links)], extra_index_urls=["https://extra.example/simple", str(extra)]
    )
    # uv ranks --extra-index-url above --index-url: the last index goes last.
    assert uv_index_args(several) == [
        "--index-url",
        extra.resolve().as_uri(),
        "--extra-index-url",
        main.resolve().as_uri(),
        "--extra-index-url",
        "https://extra.example/simple",
        "--index-strategy",
        "unsafe-best-match",
        "--find-links",
        str(links),
    ]
    assert uv_index_args(PackageIndex(str(flat), extra_index_urls=[str(extra)])) == [
        "--index-url",
        extra.resolve().as_uri(),
        "--find-links",
        str(flat),
        "--index-strategy",
        "unsafe-best-match",
    ]


def test_uv_takes_build_requirements_from_every_index_as_package_index_does(
    tmp_path: Path,
) -> None:
    # tool 1.0 on the main index, tool 2.0 (and its dependency) only on the extra one.
    main = tree(tmp_path / "main", [make_wheel(tmp_path / "m", "tool", "1.0")])
    extra_files = [
        make_wheel(tmp_path / "e", "tool", "2.0", requires=["helper"]),
        make_wheel(tmp_path / "e", "helper", "0.3"),
    ]
    extra = tree(tmp_path / "extra", extra_files)
    index = PackageIndex(str(main), extra_index_urls=[str(extra)])

    pins = resolve(["tool"], index, PY)

    assert [(p.name, p.version) for p in pins] == [("helper", "0.3"), ("tool", "2.0")]
    assert max(index.versions("tool")) == Version("2.0")  # the same choice
    assert pins[1].sha256 == sha256_of(tmp_path / "e" / "tool-2.0-py3-none-any.whl")
    # With a flat folder as the main index, the extra index still answers.
    flat = tmp_path / "flat"
    make_wheel(flat, "tool", "1.0")
    pins = resolve(["tool"], PackageIndex(str(flat), extra_index_urls=[str(extra)]), PY)
    assert ("tool", "2.0") in [(p.name, p.version) for p in pins]
