"""The action-cache record format: canonical bytes, round trips, and what malformed input raises."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildprint.errors import StoreError
from buildprint.signature.canonical import digest_bytes
from buildprint.store.record import RECORD_FORMAT, ActionRecord, Artifact, is_digest, utc_now

SIG = digest_bytes(b"signature")
SHA = digest_bytes(b"wheel bytes")
CONTENT = digest_bytes(b"wheel content")


def _artifact(**changes: Any) -> Artifact:
    fields: dict[str, Any] = {
        "filename": "alpha-1.0-py3-none-any.whl",
        "sha256": SHA,
        "size": 123,
        "content_digest": CONTENT,
    }
    return Artifact(**(fields | changes))


def _record(**changes: Any) -> ActionRecord:
    fields: dict[str, Any] = {
        "signature": SIG,
        "name": "alpha",
        "version": "1.0",
        "manifest": {"signature": SIG, "components": {"source": {"digest": SHA, "value": "x"}}},
        "artifacts": (_artifact(),),
        "created": "2024-05-01T12:00:00Z",
    }
    return ActionRecord(**(fields | changes))


def _json(record: ActionRecord) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(record.to_bytes())
    return value


def _bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# -- digests and times -------------------------------------------------------------------


def test_is_digest_accepts_only_lowercase_hex_sha256() -> None:
    assert is_digest(SHA)
    assert is_digest("0" * 64)
    for value in (SHA.upper(), SHA[:-1], SHA + "0", "sha256:" + SHA, "g" * 64, "", None, 7):
        assert not is_digest(value), value
    assert not is_digest(SHA.encode())  # bytes are not a digest string


def test_utc_now_is_iso_8601_utc_to_the_second() -> None:
    text = utc_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 5


# -- round trips -------------------------------------------------------------------------


def test_record_round_trips_through_canonical_bytes() -> None:
    record = _record()
    data = record.to_bytes()
    assert ActionRecord.from_bytes(data) == record
    # Canonical: sorted keys, no whitespace; the same record gives the same bytes.
    assert data == json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")).encode()
    assert _record().to_bytes() == data
    assert _json(record) == {
        "format": RECORD_FORMAT,
        "signature": SIG,
        "name": "alpha",
        "version": "1.0",
        "manifest": record.manifest,
        "artifacts": [
            {
                "filename": "alpha-1.0-py3-none-any.whl",
                "sha256": SHA,
                "size": 123,
                "content_digest": CONTENT,
            }
        ],
        "created": "2024-05-01T12:00:00Z",
    }


def test_artifact_round_trips_through_json() -> None:
    artifact = _artifact()
    assert Artifact.from_json(artifact.to_json()) == artifact


def test_unknown_top_level_keys_are_ignored() -> None:
    obj = _json(_record()) | {"written_by": "buildprint 9.0", "extra": [1, 2]}
    assert ActionRecord.from_bytes(_bytes(obj)) == _record()


def test_artifacts_given_as_a_list_become_a_tuple() -> None:
    record = _record(artifacts=[_artifact()])
    assert record.artifacts == (_artifact(),)
    assert record == _record()


def test_created_defaults_to_now_and_is_read_back_as_written() -> None:
    fields = {k: v for k, v in _json(_record()).items() if k not in {"format", "created"}}
    fields["artifacts"] = tuple(Artifact.from_json(a) for a in fields["artifacts"])
    fresh = ActionRecord(**fields)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fresh.created)
    assert fresh.to_bytes() != _record().to_bytes()  # created is recorded...
    assert ActionRecord.from_bytes(fresh.to_bytes()) == fresh  # ...and read back as is


@given(
    name=st.text(min_size=1, max_size=20),
    version=st.text(max_size=10),
    sizes=st.lists(st.integers(min_value=0, max_value=2**62), max_size=4),
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
)
def test_any_valid_record_round_trips(
    name: str, version: str, sizes: list[int], value: object
) -> None:
    artifacts = tuple(
        _artifact(filename=f"f{i}.whl", sha256=digest_bytes(b"%d" % i), size=size)
        for i, size in enumerate(sizes)
    )
    record = _record(name=name, version=version, manifest={"value": value}, artifacts=artifacts)
    assert ActionRecord.from_bytes(record.to_bytes()) == record


# -- component digests -------------------------------------------------------------------


def test_component_digests_takes_each_component_digest_and_skips_odd_entries() -> None:
    manifest = {
        "components": {
            "source": {"digest": SHA, "value": "x"},
            "env": {"digest": CONTENT},
            "odd": "not an object",
            "no-digest": {"value": 1},
            "number": {"digest": 5},
        }
    }
    assert _record(manifest=manifest).component_digests() == {"source": SHA, "env": CONTENT}
    assert _record(manifest={}).component_digests() == {}
    assert _record(manifest={"components": []}).component_digests() == {}


# -- malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b'{"format": "buildprint-rec', "not UTF-8 JSON"),
        (b"[]", "must be a JSON object"),
        (b"{}", "record format None"),
        (_bytes({"format": "buildprint-record/2"}), "record format 'buildprint-record/2'"),
    ],
    ids=["not utf-8", "truncated", "array", "no format", "newer format"],
)
def test_undecodable_or_foreign_bytes_raise_store_error(data: bytes, message: str) -> None:
    with pytest.raises(StoreError, match=re.escape(message)):
        ActionRecord.from_bytes(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signature": None}, "record lacks 'signature'"),
        ({"name": None}, "record lacks 'name'"),
        ({"manifest": None}, "record lacks 'manifest'"),
        ({"artifacts": None}, "record lacks 'artifacts'"),
        ({"created": None}, "record lacks 'created'"),
        ({"version": 1}, "record field 'version' must be str"),
        ({"manifest": []}, "record field 'manifest' must be dict"),
        ({"artifacts": {}}, "record field 'artifacts' must be list"),
        ({"signature": "../../etc/passwd"}, "is not a digest"),
        ({"signature": SIG.upper()}, "is not a digest"),
        ({"name": ""}, "empty name"),
        ({"manifest": {"signature": CONTENT}}, f"manifest claims signature {CONTENT}"),
        ({"artifacts": ["alpha.whl"]}, "artifact entry must be an object"),
    ],
)
def test_malformed_record_fields_raise_store_error(change: dict[str, Any], message: str) -> None:
    obj = _json(_record())
    for key, value in change.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    with pytest.raises(StoreError, match=re.escape(message)):
        ActionRecord.from_bytes(_bytes(obj))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": "1"}, "record artifact field 'size' must be int"),
        ({"size": True}, "record artifact field 'size' must be int"),  # bool is not a size
        ({"size": -1}, "negative size"),
        ({"sha256": "../../etc/passwd"}, "sha256 '../../etc/passwd' is not a digest"),
        ({"content_digest": SHA[:10]}, "content_digest"),
        ({"filename": "../alpha.whl"}, "is not a plain file name"),
        ({"filename": "dir\\alpha.whl"}, "is not a plain file name"),
        ({"filename": ".."}, "is not a plain file name"),
        ({"filename": "."}, "is not a plain file name"),
        ({"filename": ""}, "is not a plain file name"),
        ({"filename": None}, "record artifact lacks 'filename'"),
        ({"content_digest": None}, "record artifact lacks 'content_digest'"),
    ],
)
def test_malformed_artifacts_raise_store_error(change: dict[str, Any], message: str) -> None:
    obj = _json(_record())
    entry = obj["artifacts"][0]
    for key, value in change.items():
        if value is None:
            del entry[key]
        else:
            entry[key] = value
    with pytest.raises(StoreError, match=re.escape(message)):
        ActionRecord.from_bytes(_bytes(obj))


def test_values_are_checked_when_made_not_only_when_read() -> None:
    with pytest.raises(StoreError, match="not a plain file name"):
        _artifact(filename="a/b.whl")
    with pytest.raises(StoreError, match="not a digest"):
        _artifact(sha256="abc")
    with pytest.raises(StoreError, match="not a digest"):
        _record(signature="x" * 64)
    with pytest.raises(StoreError, match="manifest must be an object"):
        _record(manifest=["not", "a", "dict"])
    # A manifest without a signature (or with a non-string one) is the record's business only.
    assert _record(manifest={}).manifest == {}
    assert _record(manifest={"signature": 1}).signature == SIG


def test_a_variant_is_stored_under_its_own_key_and_names_its_signature() -> None:
    key = digest_bytes(b"variant key")
    reads = digest_bytes(b"read report")
    record = _record(signature=key, variant_of=SIG, reads=reads)
    assert record.manifest_signature == SIG
    again = ActionRecord.from_bytes(record.to_bytes())
    assert again == record and again.variant_of == SIG and again.reads == reads
    # An ordinary record's bytes have neither field (older readers see what they always did).
    assert b"variant_of" not in _record().to_bytes() and b'"reads"' not in _record().to_bytes()
    with pytest.raises(StoreError, match="manifest claims signature"):
        _record(signature=key)  # a key that is not its manifest's signature, and no variant_of
    with pytest.raises(StoreError, match="variant_of is not a digest"):
        _record(signature=key, variant_of="nope")


def test_discovered_inputs_are_read_from_the_manifest() -> None:
    part = {"digest": SHA, "value": {"/usr/include/foo.h": CONTENT}}
    manifest = {"signature": SIG, "components": {}, "discovered": part}
    assert _record(manifest=manifest).discovered == {"/usr/include/foo.h": CONTENT}
    assert _record().discovered is None
