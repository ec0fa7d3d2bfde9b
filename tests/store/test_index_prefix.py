"""Abbreviated signatures: a unique prefix resolves through the index, by an indexed range."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from buildprint.errors import InputError
from buildprint.store.index import (
    LISTED_CANDIDATES,
    MIN_ABBREVIATION,
    PREFIX_COUNT,
    PREFIX_QUERY,
    reads_as_signature,
)
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord

RecordFactory = Callable[..., ActionRecord]


def stored(local: LocalStore, make_record: RecordFactory, signature: str, name: str) -> str:
    """A record under ``signature`` (a chosen one, so that prefixes collide), stored."""
    record = make_record(local, name=name)
    manifest = {**record.manifest, "signature": signature}
    local.put_record(dataclasses.replace(record, signature=signature, manifest=manifest))
    return signature


def test_a_unique_prefix_of_four_or_more_digits_resolves_in_either_case(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    with LocalStore(tmp_path / "store") as local:
        alpha = stored(local, make_record, "abcd" + "1" * 60, "alpha")
        beta = stored(local, make_record, "abce" + "2" * 60, "beta")
        stored(local, make_record, "0" * 64, "gamma")
        assert local.resolve_signature("abcd") == alpha
        assert local.resolve_signature("ABCE22") == beta
        assert local.resolve_signature(alpha) == alpha  # a whole signature is its own prefix
        assert local.resolve_signature("0000") == "0" * 64

    # Another process (a fresh index object) resolves the same from the file.
    with LocalStore(tmp_path / "store") as again:
        assert again.resolve_signature("abcd1") == alpha


def test_too_short_unknown_and_non_hex_prefixes_are_bad_input(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    with LocalStore(tmp_path / "store") as local:
        stored(local, make_record, "abcd" + "1" * 60, "alpha")
        with pytest.raises(InputError, match=f"too short: give at least {MIN_ABBREVIATION} hex"):
            local.resolve_signature("abc")
        with pytest.raises(InputError, match="no stored build has a signature starting with ffff"):
            local.resolve_signature("ffff")
        with pytest.raises(InputError, match="no stored build has a signature starting with abcd2"):
            local.resolve_signature("abcd2")
        with pytest.raises(InputError, match="is not a signature"):
            local.resolve_signature("abcx")
        with pytest.raises(InputError) as raised:
            local.resolve_signature("ffff")
        assert raised.value.exit_code == 2 and raised.value.file == str(tmp_path / "store")
    assert reads_as_signature("ABCD") and reads_as_signature("a" * 64)
    assert not reads_as_signature("a" * 65) and not reads_as_signature("numpy")


def test_an_ambiguous_prefix_lists_at_most_ten_candidates_by_signature(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    with LocalStore(tmp_path / "store") as local:
        signatures = sorted(
            stored(local, make_record, f"beef{i:02x}" + "0" * 58, f"pkg-{i}") for i in range(13)
        )
        stored(local, make_record, "beee" + "0" * 60, "neighbour")  # just below the range
        stored(local, make_record, "bef0" + "0" * 60, "neighbour-2")  # just above it
        with pytest.raises(InputError) as raised:
            local.resolve_signature("BEEF")
    message = raised.value.message
    head, *lines = message.splitlines()
    assert head == (
        "signature abbreviation beef is ambiguous: 13 stored builds start with it "
        "(give more digits):"
    )
    listed = signatures[:LISTED_CANDIDATES]
    by_signature = {s: f"pkg-{int(s[4:6], 16)}" for s in signatures}
    assert lines == [f"  {by_signature[s]} 1.0 {s[:12]}" for s in listed] + ["  … and 3 more"]
    assert "neighbour" not in message


def test_candidates_show_as_many_digits_as_tell_them_apart(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    first, second = "c0ffee" + "0" * 10 + "1" * 48, "c0ffee" + "0" * 10 + "2" * 48
    with LocalStore(tmp_path / "store") as local:
        stored(local, make_record, first, "alpha")
        stored(local, make_record, second, "beta")
        with pytest.raises(InputError) as raised:
            local.resolve_signature("c0ffee")
        # 16 shared digits: 17 are shown, where 12 would print the same text twice.
        lines = raised.value.message.splitlines()[1:]
        assert lines == [f"  alpha 1.0 {first[:17]}", f"  beta 1.0 {second[:17]}"]
        assert local.resolve_signature(first[:17]) == first


def test_a_record_removed_is_no_longer_a_candidate(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    with LocalStore(tmp_path / "store") as local:
        alpha = stored(local, make_record, "dead" + "1" * 60, "alpha")
        beta = stored(local, make_record, "dead" + "2" * 60, "beta")
        with pytest.raises(InputError, match="ambiguous: 2 stored builds"):
            local.resolve_signature("dead")
        assert local.remove_record(alpha)
        assert local.resolve_signature("dead") == beta


def test_prefix_lookups_search_the_primary_key_index_never_scan(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    with LocalStore(tmp_path / "store") as local:
        for i in range(50):
            stored(local, make_record, f"{i:04x}" + "a" * 60, "alpha")
    with sqlite3.connect(tmp_path / "store" / "index.sqlite") as conn:
        for sql, params in (
            (PREFIX_QUERY, ("00a", "00ag", 11)),
            (PREFIX_COUNT, ("00a", "00ag")),
        ):
            plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            assert len(plan) == 1, plan
            assert plan[0].startswith("SEARCH records USING"), plan
            assert "INDEX sqlite_autoindex_records_1 (signature>? AND signature<?)" in plan[0]
            assert "SCAN" not in plan[0]
        assert conn.execute(PREFIX_COUNT, ("00a", "00ag")).fetchone() == (0,)
        assert conn.execute(PREFIX_COUNT, ("002", "002g")).fetchone() == (16,)
