"""Hostile values survive storage exactly: ``agno_mongo.schema.codec`` in memory, through BSON and through a server.

Property tests draw nested dicts and lists with keys holding ``.``, ``$``, ``%``, NUL and lone surrogates,
ints beyond 64 bits, non-finite floats, datetimes of every precision and tzinfo kind, tuples, sets, Decimal,
bytes, and user dicts that look like the codec's own tags; each must come back identical (same types, same
tzinfo, same NaN-ness), or be refused with an error that names its path.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import OrderedDict, namedtuple
from collections.abc import Iterator
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.collection import Collection

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.codec import (
    CODEC_VERSION,
    MARKER,
    TAG,
    CorruptValueError,
    decode,
    decode_fields,
    decode_run,
    encode,
    encode_fields,
    encode_run,
    escape_key,
)

# --- exact comparison ---------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down; NaN equals NaN, -0.0 differs from 0.0, tzinfo must match."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (Decimal, Decimal128)):
        return str(a) == str(b)  # exact digits and exponent; == would raise on sNaN and ignore 1.0 vs 1.00
    if isinstance(a, (dt.datetime, dt.time)):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.fold == b.fold and same_tz(a.tzinfo, b.tzinfo)
    if isinstance(a, dict):
        return list(a) == list(b) and all(type(k) is str and same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def same_tz(a: dt.tzinfo | None, b: dt.tzinfo | None) -> bool:
    if a is None or b is None:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, ZoneInfo):
        return a.key == getattr(b, "key", None)
    return a.utcoffset(None) == b.utcoffset(None) and a.tzname(None) == b.tzname(None)


def bson_roundtrip(value: Any) -> Any:
    return bson.decode(bson.encode({"x": value}))["x"]


def assert_storable_keys(value: Any) -> None:
    """No key MongoDB could misread: none starts with ``$`` or holds ``.``, NUL or a lone surrogate."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert not key.startswith("$") and "." not in key and "\x00" not in key, key
            key.encode("utf-8")  # no lone surrogates
            assert_storable_keys(item)
    elif isinstance(value, list):
        for item in value:
            assert_storable_keys(item)


# --- strategies ---------------------------------------------------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
hostile_text = st.one_of(
    st.text(max_size=8),
    st.text(alphabet=st.sampled_from("$.%\x00a_u2E4F"), max_size=6),
    st.text(alphabet=st.one_of(st.characters(), surrogates), max_size=4),
)
keys = st.one_of(
    hostile_text,
    st.sampled_from([TAG, "%25", "%", "%2", "%zz", "$set", "$", "a.b", ".", "", MARKER, "\x00", "v", "%uD800"]),
)
big_ints = st.sampled_from(
    [2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**100, -(10**1000)]
)
offsets = st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59), max_value=dt.timedelta(hours=23, minutes=59))
timezones = st.one_of(
    st.none(),
    st.timezones(),
    st.builds(dt.timezone, offsets),
    st.builds(dt.timezone, offsets, hostile_text.filter(bool)),
    st.just(dt.UTC),
)
datetimes = st.datetimes(timezones=timezones)
times = st.times(timezones=timezones)
finite_decimals = st.decimals(allow_nan=False, allow_infinity=True)
hashables = st.recursive(
    st.one_of(
        st.integers(),
        hostile_text,
        st.binary(max_size=4),
        st.floats(allow_nan=False),
        datetimes,
        finite_decimals,
        st.uuids(),
        st.dates(),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_ints,
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]),
    hostile_text,
    st.binary(max_size=8),
    st.binary(max_size=4).map(bytearray),
    datetimes,
    times,
    st.dates(),
    st.timedeltas(),
    st.decimals(),
    st.uuids(),
    st.complex_numbers(),
    st.binary(min_size=12, max_size=12).map(ObjectId),
    st.sampled_from(["1.50", "-0", "NaN", "Infinity", "1E+6144"]).map(Decimal128),
    st.binary(max_size=4).map(lambda data: Binary(data, 5)),
    st.binary(max_size=4).map(lambda data: Binary(data, 0)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
        # user dicts shaped like the codec's own tags must stay user dicts
        st.fixed_dictionaries({TAG: st.sampled_from(["int", "tuple", "datetime", "str", "nope"]), "v": inner}),
    ),
    max_leaves=16,
)
plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31 - 1) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), inner, max_size=4)
    ),
    max_leaves=20,
)


# --- (a) property: encode -> BSON -> decode is the identity ---------------------------------------------


@settings(max_examples=400, deadline=None)
@given(values)
def test_any_value_survives_bson_exactly(value: Any) -> None:
    encoded, changed = encode(value, "value")
    assert_storable_keys(encoded)
    stored = bson_roundtrip(encoded)  # raises if not BSON-encodable
    assert same(decode(stored), value)
    assert same(decode(encoded), value)
    if not changed:
        assert encoded is value
        assert same(stored, value), "changed=False promises a reader may skip decode"


def unescaped(key: str) -> str:
    """The key the decoder restores from a stored key."""
    (original,) = decode({key: 1})
    return str(original)


@settings(max_examples=200, deadline=None)
@given(keys)
def test_key_escaping_is_reversible_and_safe(key: str) -> None:
    escaped = escape_key(key)
    assert unescaped(escaped) == key
    assert not escaped.startswith("$") and "." not in escaped and "\x00" not in escaped and escaped != TAG
    escaped.encode("utf-8")
    if not any(c in key for c in "%.\x00") and not key.startswith("$") and key.isascii():
        assert escaped is key or escaped == key


def test_escape_table() -> None:
    assert escape_key("%") == "%25"
    assert escape_key("a.b") == "a%2Eb"
    assert escape_key("$set") == "%24set"
    assert escape_key("a$b") == "a$b"  # only a leading $ is an operator
    assert escape_key("a\x00b") == "a%00b"
    assert escape_key("\ud800") == "%uD800"
    assert escape_key(TAG) == "%25agno"
    assert escape_key("100%.") == "100%25%2E"
    assert [unescaped(k) for k in ("%25", "a%2Eb", "%24set", "a%00b", "%uD800", "%25agno")] == [
        "%",
        "a.b",
        "$set",
        "a\x00b",
        "\ud800",
        TAG,
    ]


def test_hand_picked_hostile_values() -> None:
    value = {
        "a.b": {"$gt": 1, "%": [1, (2, 3)], "\x00": None},
        TAG: "int",
        "big": 2**64,
        "neg": -(2**63) - 1,
        "huge": -(1 << 20000),  # beyond str(int)'s digit limit: stored as hex
        "i64": 2**40,
        "nan": math.nan,
        "inf": [math.inf, -math.inf, -0.0],
        "naive": dt.datetime(2024, 5, 1, 12, 0, 0, 123456),
        "paris": dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
        "named": dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, microseconds=1), "odd")),
        "sub_second_offset": [dt.time(0, 0, tzinfo=dt.timezone(dt.timedelta(microseconds=s))) for s in (1, -1)],
        "bytes": b"\x00\xff",
        "tags": {frozenset({1, (2, "x")}), ("a",)},
        "dec": [Decimal("1.10"), Decimal("-0E+3"), Decimal("sNaN")],
        "lone": "\udcff",
        "nul": "a\x00b",
    }
    encoded, changed = encode(value, "session_data")
    assert changed
    stored = bson_roundtrip(encoded)
    assert set(stored) >= {"a%2Eb", "%25agno", "big"}
    assert stored["a%2Eb"] == {"%24gt": 1, "%25": [1, {TAG: "tuple", "v": [2, 3]}], "%00": None}
    assert stored["big"] == {TAG: "int", "v": str(2**64)}
    assert type(stored["i64"]) is Int64  # why int64-range ints mark a value changed: decode makes them int again
    assert stored["naive"] == {TAG: "datetime", "v": "2024-05-01T12:00:00.123456"}
    assert stored["paris"] == {TAG: "datetime", "v": "2024-10-27T02:30:00+01:00", "zone": "Europe/Paris", "fold": 1}
    assert stored["bytes"] == b"\x00\xff" and type(stored["bytes"]) is bytes
    restored = decode(stored, "session_data")
    assert same(restored, value)
    assert type(restored["i64"]) is int
    assert restored["paris"].utcoffset() == dt.timedelta(hours=1)


def test_subclasses_keep_value_and_lose_class() -> None:
    class Colour(StrEnum):
        RED = "red"

    class Size(IntEnum):
        BIG = 3

    Point = namedtuple("Point", "x y")  # noqa: PYI024
    value = {
        Colour.RED: Colour.RED,
        "size": Size.BIG,
        "ordered": OrderedDict(b=1, a=2),
        "point": Point(1, 2),
        "i64": Int64(5),
    }
    encoded, changed = encode(value)
    restored = decode(bson_roundtrip(encoded))
    assert changed and restored == value
    assert restored == {"red": "red", "size": 3, "ordered": {"b": 1, "a": 2}, "point": (1, 2), "i64": 5}
    assert [type(restored[k]) for k in restored] == [str, int, dict, tuple, int]
    assert [type(k) for k in restored] == [str] * 5


# --- (b) the same through a real server: insert, $set, $push --------------------------------------------


@pytest.fixture
def collection(mongodb_url: str, db_name: str) -> Iterator[Collection[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    yield client[db_name]["codec"]
    client.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=values, second=values)
def test_values_survive_the_server(collection: Collection[dict[str, Any]], first: Any, second: Any) -> None:
    key = uuid.uuid4().hex
    a, _ = encode(first, "first")
    b, _ = encode(second, "second")
    collection.insert_one({"_id": key, "x": a, "arr": [a]})
    collection.update_one({"_id": key}, {"$set": {"y": b, "nested.z": a}, "$push": {"arr": b}})
    stored = collection.find_one({"_id": key})
    assert stored is not None
    assert same(decode(stored["x"]), first)
    assert same(decode(stored["y"]), second)
    assert same(decode(stored["nested"]["z"]), first)
    restored = decode(stored["arr"])
    assert len(restored) == 2 and same(restored[0], first) and same(restored[1], second)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(session_data=values | plain, metadata=plain, content=values | plain)
def test_marked_fields_and_runs_survive_the_server(
    collection: Collection[dict[str, Any]], session_data: Any, metadata: Any, content: Any
) -> None:
    key = uuid.uuid4().hex
    run = {"run_id": "r1", "content": content}
    to_set, to_unset = encode_fields({"session_data": session_data, "metadata": metadata})
    update: dict[str, Any] = {"$set": to_set, "$push": {"runs": encode_run(run)}}
    if to_unset:
        update["$unset"] = to_unset
    collection.update_one({"_id": key}, update, upsert=True)
    stored = collection.find_one({"_id": key})
    assert stored is not None
    fields = decode_fields(stored)
    assert MARKER not in fields
    assert same(fields["session_data"], session_data) and same(fields["metadata"], metadata)
    assert same(decode_run(stored["runs"][0]), run)
    # a field rewritten with plain data drops its marker in the same update
    to_set, to_unset = encode_fields({"session_data": {"plain": 1}})
    collection.update_one({"_id": key}, {"$set": to_set, "$unset": to_unset})
    stored = collection.find_one({"_id": key})
    assert stored is not None and "session_data" not in stored.get(MARKER, {})
    assert decode_fields(stored)["session_data"] == {"plain": 1}


def test_hostile_document_through_server_with_positional_set(collection: Collection[dict[str, Any]]) -> None:
    run: dict[str, Any] = {
        "run_id": "r1",
        "content": {"$where": "1", "a.b": (1, 2), "at": dt.datetime(2024, 1, 1, 0, 0, 0, 1)},
    }
    stored_run = encode_run(run)
    assert stored_run[MARKER] == CODEC_VERSION and MARKER in stored_run
    collection.insert_one({"_id": "s", "runs": [encode_run({"run_id": "r0", "content": "plain"}), stored_run]})
    changed = {**run, "content": {**run["content"], "more": {1.5, 2.5}}}
    collection.update_one({"_id": "s", "runs.run_id": "r1"}, {"$set": {"runs.$": encode_run(changed)}})
    stored = collection.find_one({"_id": "s"})
    assert stored is not None
    plain_run, hostile = stored["runs"]
    assert MARKER not in plain_run and decode_run(plain_run) == {"run_id": "r0", "content": "plain"}
    assert same(decode_run(hostile), changed)


# --- (c) what cannot be restored is refused, naming the path --------------------------------------------


class _OddZone(dt.tzinfo):
    def utcoffset(self, _: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def tzname(self, _: dt.datetime | None) -> str:
        return "ODD"

    def dst(self, _: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)


class _Thing:
    pass


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({"a": {"b": [1, 2, 3, _Thing()]}}, "session_data.a.b[3]", "_Thing"),
        ({"a": {1: "x"}}, "session_data.a[1]", "keys must be strings"),
        ({"a.b": [{(1, 2): 0}]}, "session_data['a.b'][0][(1, 2)]", "keys must be strings"),
        ({"t": (1, [object()])}, "session_data.t[1][0]", "object"),
        ({"s": {_Thing()}}, "session_data.s{*}", "_Thing"),
        ({"when": dt.datetime(2024, 1, 1, tzinfo=_OddZone())}, "session_data.when", "tzinfo of type _OddZone"),
        ({"code": Code("return 1")}, "session_data.code", "BSON type Code"),
        ({"view": memoryview(b"x")}, "session_data.view", "memoryview"),
        ({"gen": (i for i in range(3))}, "session_data.gen", "generator"),
        ({"f": len}, "session_data.f", "builtin_function_or_method"),
    ],
)
def test_unsupported_values_are_refused_with_their_path(value: Any, path: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        encode(value, "session_data")
    assert caught.value.field == path
    assert message in str(caught.value)


def test_too_deep_and_cyclic_values_are_refused() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(120):
        node["k"] = node = {}
    with pytest.raises(InvalidInputError, match="nested deeper than 100 levels"):
        encode(deep, "metadata")
    encode(deep, "metadata", max_depth=200)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(InvalidInputError, match="nested deeper"):
        encode({"c": cycle}, "metadata")
    with pytest.raises(InvalidInputError, match="nested deeper than 2 levels"):
        encode({"a": {"b": (1,)}}, "x", max_depth=2)


def test_reserved_marker_in_a_run_is_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        encode_run({"run_id": "r", MARKER: 1})
    assert caught.value.field == f"run.{MARKER}"


@pytest.mark.parametrize(
    ("stored", "path"),
    [
        ({"a": {TAG: "from-the-future", "v": 1}}, "run.a"),
        ({"a": [{TAG: "int", "v": 5}]}, "run.a[0]"),
        ({"a": {TAG: "datetime", "v": "yesterday"}}, "run.a"),
        ({"a": {TAG: "tuple", "v": [1], "extra": 2}}, "run.a"),
        ({"a": {"b%zz": 1}}, "run.a['b%zz']"),
        ({"a": {TAG: "set", "v": [[1]]}}, "run.a"),
    ],
)
def test_corrupt_stored_values_are_reported_with_their_path(stored: Any, path: str) -> None:
    with pytest.raises(CorruptValueError) as caught:
        decode(stored, "run")
    assert caught.value.field == path


def test_unknown_marker_version_is_refused() -> None:
    with pytest.raises(CorruptValueError, match="codec version 2"):
        decode_run({"run_id": "r", MARKER: 2})
    with pytest.raises(CorruptValueError, match="codec version"):
        decode_fields({"metadata": {}, MARKER: {"metadata": 7}})


# --- (d) the fast path: plain data is neither copied nor marked -----------------------------------------


@settings(max_examples=200, deadline=None)
@given(plain)
def test_plain_data_is_returned_as_is(value: Any) -> None:
    encoded, changed = encode(value, "metadata")
    assert encoded is value and not changed
    assert decode(value) is value


def test_only_the_changed_branch_is_copied() -> None:
    untouched = {"role": "user", "content": "hi", "list": [1, 2.5, None, True, "x"]}
    value: dict[str, Any] = {"messages": [untouched, untouched], "state": {"weird.key": 1}, "n": 3}
    encoded, changed = encode(value)
    assert changed and encoded is not value
    assert encoded["messages"] is value["messages"] and encoded["messages"][0] is untouched
    assert encoded["state"] == {"weird%2Ekey": 1}
    assert value["state"] == {"weird.key": 1}, "the input is never mutated"
    assert list(encoded) == list(value)


def test_int64_range_is_not_copied_but_marked() -> None:
    value = {"ms": 1_700_000_000_000}
    encoded, changed = encode(value)
    assert encoded is value and changed
    run = {"run_id": "r", "created_at": 1_700_000_000, "content": "ok"}
    assert encode_run(run) is run and MARKER not in run
    assert decode_run(run) is run
