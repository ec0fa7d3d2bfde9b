"""Canonical encoding: deterministic, order-free, float-free."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildprint.signature.canonical import canonical_bytes, digest_value

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def shuffled(value: object, rng: random.Random) -> object:
    """The same value with every mapping's insertion order shuffled."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@given(json_values, st.integers(min_value=0, max_value=2**32))
def test_key_order_never_matters(value: object, seed: int) -> None:
    assert canonical_bytes(shuffled(value, random.Random(seed))) == canonical_bytes(value)


@given(json_values)
def test_encoding_is_deterministic_and_round_trips(value: object) -> None:
    encoded = canonical_bytes(value)
    assert canonical_bytes(json.loads(encoded)) == encoded


def test_known_bytes() -> None:
    assert (
        canonical_bytes({"b": [1, True, None], "a": "é"}) == '{"a":"é","b":[1,true,null]}'.encode()
    )
    assert digest_value({}) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.mark.parametrize("bad", [1.5, b"bytes", {1: "int key"}, object()])
def test_values_without_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        canonical_bytes(bad)
