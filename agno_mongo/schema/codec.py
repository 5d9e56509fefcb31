"""Reversible encoding of free-form values (session_data, metadata, run content) for MongoDB.

Agno hands us arbitrary nested data. MongoDB cannot store some of it at all (keys with NUL, ints
beyond 64 bits, sets, Decimal) and silently changes some of it (datetimes lose microseconds and
tzinfo, tuples come back as lists, keys with ``.`` or a leading ``$`` break update paths). ``encode``
turns a value into BSON that comes back exactly through ``decode``; what it cannot restore it refuses
with :class:`~agno_mongo.errors.InvalidInputError` naming the path. Nothing is ever silently changed.

Pure functions, no I/O.

Keys are percent-escaped, only where needed: ``%`` -> ``%25``, ``.`` -> ``%2E``, NUL -> ``%00``, a
leading ``$`` -> ``%24``, a lone surrogate -> ``%uD800``. Every ``%`` in a stored key therefore starts
an escape, so unescaping is unambiguous and ordinary keys are stored (and queryable) as they are.

Values BSON cannot keep become tagged subdocuments ``{"%agno": "<tag>", "v": ...}``. A user key
``%agno`` is stored as ``%25agno``, so user data can never look like a tag. Tags: ``int`` (beyond
64 bits; decimal text, hex past ~2700 digits), ``datetime`` and ``time`` (ISO text, exact to the
microsecond, plus ``zone`` for a ``ZoneInfo`` key, ``name`` for a named ``timezone``, ``offset_us``
for an offset with a fraction of a second, and ``fold``), ``date``, ``timedelta``, ``tuple``,
``set``, ``frozenset``, ``decimal``, ``uuid``, ``bytearray``, ``complex``, ``binary`` (a
``bson.Binary`` of subtype 0, which PyMongo would read back as plain ``bytes``) and ``str`` (a string
with lone surrogates, which UTF-8 cannot carry, as surrogate-pass bytes).

Tuples stay tuples: ``(1, 2) != [1, 2]`` in Python, a set of tuples could not be rebuilt from lists,
and agno's own ``to_dict`` output has no tuples, so the tag costs nothing on ordinary data.

Subclasses of the plain types (``StrEnum``, ``IntEnum``, ``OrderedDict``, ``defaultdict``, a
namedtuple, ``bson.Int64``) are stored as their base type: the value and equality survive, the class
does not (as with ``json.dumps``; restoring an arbitrary class would mean unpickling). Other types
must be exactly one of the types above or a BSON type that round-trips as itself (``ObjectId``,
``Decimal128``, ``Binary`` of another subtype, ``Timestamp``, ``Regex``, ``MinKey``, ``MaxKey``);
anything else (a compiled ``re.Pattern``, ``Code``, a ``datetime`` subclass, any other object) is
refused.

Floats are stored as BSON doubles, which keep NaN, the infinities and ``-0.0``. ``bytes`` are BSON
binary subtype 0, which PyMongo returns as ``bytes``. Ints beyond 32 bits come back from PyMongo as
``bson.Int64``; ``decode`` turns them back into ``int``.

``encode`` returns ``(encoded, changed)``. ``changed`` is False only when ``encoded`` is the very
object passed in and reading it back needs no ``decode``: the common case of plain JSON-like data
with ordinary keys costs one walk and no copy. Writers store a marker (``MARKER``) next to what they
wrote when ``changed`` is True, and readers decode only what carries it: see :func:`encode_fields`,
:func:`encode_run` and their ``decode_*`` twins.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from itertools import islice
from typing import Any, Final
from zoneinfo import ZoneInfo

from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

from agno_mongo.errors import AgnoMongoError, CorruptDocumentError, InvalidInputError

__all__ = [
    "CODEC_VERSION",
    "MARKER",
    "MAX_DEPTH",
    "TAG",
    "CorruptStoredValueError",
    "CorruptValueError",
    "decode",
    "decode_fields",
    "decode_run",
    "encode",
    "encode_fields",
    "encode_free_form",
    "encode_run",
    "escape_key",
]

TAG: Final = "%agno"
"""Key of a tagged subdocument. Encoded user keys never equal it (their ``%`` is escaped)."""

MARKER: Final = "_codec"
"""Field that says "decode me": ``{"_codec": {"session_data": 1}}`` on a document, ``"_codec": 1`` in a run."""
WRITE_TOKEN: Final = "_w"
"""Key of the token each write gives a stored run (see :mod:`agno_mongo.ops.runs`); never shown to agno."""
RUN_REV: Final = "_r"
"""The session revision at which a run was last written (see :mod:`agno_mongo.session_cache`)."""

CODEC_VERSION: Final = 1
"""Value stored under ``MARKER``; a later format would bump it."""

MAX_DEPTH: Final = 100
"""MongoDB's nesting limit for a whole document (every object and array counts one level)."""

_INT32: Final = 1 << 31
_INT64: Final = 1 << 63
_DECIMAL_INT_BITS: Final = 9000  # ~2700 digits, below Python's 4300-digit str(int) limit; larger ints use hex

_UNSAFE_KEY = re.compile(r"^\$|[%.\x00\ud800-\udfff]")
_ESCAPE = re.compile(r"%(u[0-9A-F]{4}|[0-9A-F]{2})?")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_SCALARS: Final = frozenset({float, bool, type(None), bytes})
"""Types stored as they are, whatever their value."""

_SAFE_KEYS: set[str] = set()
"""Keys already seen to need no escaping (agno's keys repeat in every run): a set lookup instead of a regex."""
_SAFE_KEYS_MAX: Final = 1 << 16

_NATIVE: Final = frozenset({ObjectId, Decimal128, Timestamp, Regex, MinKey, MaxKey})
"""BSON types PyMongo writes and reads back as the same type and value."""


class CorruptValueError(AgnoMongoError, ValueError):
    """A stored value is not something ``encode`` wrote (a bad escape or tag); ``field`` names the path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}")


class CorruptStoredValueError(CorruptDocumentError, CorruptValueError):
    """A :class:`CorruptValueError` met while reading a stored document, naming the document too.

    Both a :class:`~agno_mongo.errors.CorruptDocumentError` (``collection``, ``document_id``,
    ``field``) and a :class:`CorruptValueError` (``field`` is the path inside the document), so code
    catching either sees it.
    """

    @classmethod
    def wrap(cls, error: CorruptValueError, collection: str, document_id: object) -> CorruptStoredValueError:
        """``error`` with the document it was found in."""
        return cls(collection, document_id, error.field, error.detail)


class _Refused(Exception):
    """Raised deep inside a walk; each level adds its path part on the way out (paths cost nothing otherwise)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str] = []


def _key_part(key: object) -> str:
    return f".{key}" if isinstance(key, str) and _IDENTIFIER.match(key) else f"[{key!r}]"


def _join(path: str, parts: list[str]) -> str:
    return path + "".join(reversed(parts))


# --- keys -------------------------------------------------------------------------------------------


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"%{code:02X}" if code < 0x100 else f"%u{code:04X}"


def escape_key(key: str) -> str:
    """The stored form of a key: safe in a document and in a dotted update path, and reversible."""
    return _UNSAFE_KEY.sub(_escape_char, key)


def _store_key(key: str) -> str:
    """``key`` itself if it is safe (remembered for next time), else its escaped form."""
    if _UNSAFE_KEY.search(key) is not None:
        return escape_key(key)
    if len(_SAFE_KEYS) < _SAFE_KEYS_MAX:
        _SAFE_KEYS.add(key)
    return key


def _unescape_char(match: re.Match[str]) -> str:
    code = match.group(1)
    if code is None:
        raise _Refused(f"stray '%' in stored key {match.string!r}")
    return chr(int(code.removeprefix("u"), 16))


# --- encode -----------------------------------------------------------------------------------------


def encode(value: object, path: str = "value", *, max_depth: int = MAX_DEPTH) -> tuple[Any, bool]:
    """Return ``(encoded, changed)``: ``value`` as BSON that ``decode`` turns back into exactly ``value``.

    ``path`` names the value in errors (``session_data`` gives ``session_data.a.b[3]``). ``max_depth``
    is the nesting the value may use, counting itself as level 1 (MongoDB allows 100 for a whole
    document, so a field of a top-level subdocument gets 99). When ``changed`` is False, ``encoded`` is
    ``value`` itself and needs no decoding. Raises ``InvalidInputError`` for what cannot be restored.
    """
    encoder = _Encoder(max_depth)
    try:
        encoded = encoder.value(value, 1)
    except _Refused as refused:
        raise InvalidInputError(_join(path, refused.parts), refused.message) from None
    except RecursionError:
        raise InvalidInputError(path, "nested too deeply (a value that contains itself?)") from None
    return encoded, encoder.needs_decode or encoded is not value


class _Encoder:
    """One walk: ``value`` returns the input object itself wherever nothing had to change."""

    __slots__ = ("max_depth", "needs_decode")

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.needs_decode = False

    def value(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            if value.isascii() or _SURROGATE.search(value) is None:
                return value
            return self.tagged("str", value.encode("utf-8", "surrogatepass"), depth)
        if kind is int:
            if -_INT32 <= value < _INT32:
                return value
            if -_INT64 <= value < _INT64:
                self.needs_decode = True  # PyMongo reads int64 back as bson.Int64
                return value
            return self.tagged("int", _int_text(value), depth)
        if kind is float or kind is bool or value is None or kind is bytes:
            return value
        if kind is dict:
            return self.mapping(value, depth)
        if kind is list:
            return self.array(value, depth)
        return self.other(value, depth)

    def tagged(self, tag: str, payload: object, depth: int) -> dict[str, Any]:
        if depth > self.max_depth:
            raise _Refused(f"nested deeper than {self.max_depth} levels")
        return {TAG: tag, "v": payload}

    def mapping(self, mapping: Mapping[Any, Any], depth: int) -> object:
        if depth > self.max_depth:
            raise _Refused(f"nested deeper than {self.max_depth} levels")
        out: dict[str, Any] | None = None
        unchanged = 0
        for key, item in mapping.items():
            if key in _SAFE_KEYS:
                stored_key = key
            elif type(key) is str:
                stored_key = _store_key(key)
            elif isinstance(key, str):
                stored_key = escape_key(str.__str__(key))
            else:
                refused = _Refused(f"keys must be strings, got {type(key).__name__}")
                refused.parts.append(_key_part(key))
                raise refused
            kind = type(item)
            if kind in _SCALARS or (kind is str and item.isascii()) or (kind is int and -_INT32 <= item < _INT32):
                stored = item  # the common case, inlined: no call
            else:
                try:
                    stored = self.value(item, depth + 1)
                except _Refused as refused:
                    refused.parts.append(_key_part(key))
                    raise
            if out is None:
                if stored_key is key and stored is item:
                    unchanged += 1
                    continue
                out = dict(islice(mapping.items(), unchanged))
            out[stored_key] = stored
        if out is None:
            return mapping if type(mapping) is dict else dict(mapping)
        return out

    def array(self, items: list[Any], depth: int) -> object:
        if depth > self.max_depth:
            raise _Refused(f"nested deeper than {self.max_depth} levels")
        out: list[Any] | None = None
        for index, item in enumerate(items):
            kind = type(item)
            if kind in _SCALARS or (kind is str and item.isascii()) or (kind is int and -_INT32 <= item < _INT32):
                stored = item
            else:
                try:
                    stored = self.value(item, depth + 1)
                except _Refused as refused:
                    refused.parts.append(f"[{index}]")
                    raise
            if out is None:
                if stored is item:
                    continue
                out = items[:index]
            out.append(stored)
        if out is None:
            return items if type(items) is list else list(items)
        return out

    def elements(self, tag: str, items: Iterable[Any], depth: int, part: str | None) -> dict[str, Any]:
        """A tagged array: ``{"%agno": tag, "v": [...]}`` (the array is one level below the tag)."""
        doc = self.tagged(tag, None, depth)
        if depth + 1 > self.max_depth:
            raise _Refused(f"nested deeper than {self.max_depth} levels")
        stored: list[Any] = []
        for index, item in enumerate(items):
            try:
                stored.append(self.value(item, depth + 2))
            except _Refused as refused:
                refused.parts.append(f"[{index}]" if part is None else part)
                raise
        doc["v"] = stored
        return doc

    def other(self, value: Any, depth: int) -> Any:
        """Everything but the common JSON types: tags, native BSON types, subclasses, refusals."""
        kind = type(value)
        if kind is tuple:
            return self.elements("tuple", value, depth, None)
        if kind is set or kind is frozenset:
            return self.elements(kind.__name__, value, depth, "{*}")
        if kind is _dt.datetime or kind is _dt.time:
            return self.moment(value, depth)
        if kind is _dt.date:
            return self.tagged("date", value.isoformat(), depth)
        if kind is _dt.timedelta:
            return self.elements("timedelta", [value.days, value.seconds, value.microseconds], depth, None)
        if kind is Decimal:
            return self.tagged("decimal", str(value), depth)
        if kind is uuid.UUID:
            return self.tagged("uuid", str(value), depth)
        if kind is bytearray:
            return self.tagged("bytearray", bytes(value), depth)
        if kind is complex:
            return self.elements("complex", [value.real, value.imag], depth, None)
        if kind in _NATIVE:
            return value
        if kind is Binary:
            return value if value.subtype != 0 else self.tagged("binary", bytes(value), depth)
        if kind is Int64:
            return self.value(int.__int__(value), depth)
        if hasattr(value, "_type_marker"):
            raise _Refused(f"BSON type {kind.__name__} cannot be stored here")
        # Subclasses of the plain types: keep the value, drop the class (see the module docstring).
        if isinstance(value, str):
            return self.value(str.__str__(value), depth)
        if isinstance(value, int):
            return self.value(int.__int__(value), depth)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, bytes):
            return bytes(value)
        if isinstance(value, Mapping):
            return self.mapping(value, depth)
        if isinstance(value, list):
            return self.array(value, depth)
        if isinstance(value, tuple):
            return self.elements("tuple", value, depth, None)
        if isinstance(value, (set, frozenset)):
            tag = "frozenset" if isinstance(value, frozenset) else "set"
            return self.elements(tag, value, depth, "{*}")
        raise _Refused(
            f"cannot store a value of type {kind.__module__}.{kind.__qualname__}; use JSON-like values "
            "(dict, list, str, int, float, bool, None) or bytes, tuple, set, datetime, date, time, timedelta, "
            "Decimal, UUID"
        )

    def moment(self, value: _dt.datetime | _dt.time, depth: int) -> dict[str, Any]:
        """A datetime or time: ISO text keeps every microsecond and the UTC offset; the tzinfo kind is added."""
        zone = value.tzinfo
        if zone is not None and type(zone) is not _dt.timezone and type(zone) is not ZoneInfo:
            raise _Refused(
                f"tzinfo of type {type(zone).__name__} cannot be restored; use datetime.timezone or "
                "zoneinfo.ZoneInfo (with a key)"
            )
        doc = self.tagged("datetime" if type(value) is _dt.datetime else "time", value.isoformat(), depth)
        if zone is not None:
            if type(zone) is _dt.timezone:
                offset = zone.utcoffset(None)
                if offset.microseconds:  # fromisoformat misreads offsets under one second as UTC
                    doc["offset_us"] = offset // _dt.timedelta(microseconds=1)
                name = zone.tzname(None)
                if name != _dt.timezone(offset).tzname(None):
                    doc["name"] = self.value(name, depth + 1)  # any str, even with lone surrogates
            elif type(zone) is ZoneInfo and zone.key is not None:
                doc["zone"] = zone.key
            else:
                raise _Refused(
                    f"tzinfo of type {type(zone).__name__} cannot be restored; use datetime.timezone or "
                    "zoneinfo.ZoneInfo (with a key)"
                )
        if value.fold:
            doc["fold"] = 1
        return doc


def _int_text(number: int) -> str:
    if number.bit_length() < _DECIMAL_INT_BITS:
        return str(number)
    return f"-0x{-number:x}" if number < 0 else f"0x{number:x}"


# --- decode -----------------------------------------------------------------------------------------


def decode(value: Any, path: str = "value") -> Any:
    """Return the value ``encode`` was given, from its stored form as PyMongo reads it back.

    Safe on anything ``encode`` returned, changed or not. Raises ``CorruptValueError`` naming the path
    when the stored form holds a bad escape or tag (data not written by ``encode``).
    """
    try:
        return _decode(value)
    except _Refused as refused:
        raise CorruptValueError(_join(path, refused.parts), refused.message) from None


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return _decode_mapping(value) if TAG not in value else _untag(value)
    if kind is list:
        out: list[Any] | None = None
        for index, item in enumerate(value):
            if type(item) in _KEPT:
                restored = item
            else:
                try:
                    restored = _decode(item)
                except _Refused as refused:
                    refused.parts.append(f"[{index}]")
                    raise
            if out is None:
                if restored is item:
                    continue
                out = value[:index]
            out.append(restored)
        return value if out is None else out
    if kind is Int64:
        return int.__int__(value)
    if kind is not str and isinstance(value, Mapping):  # another document_class (SON, RawBSONDocument)
        return _decode_mapping(value) if TAG not in value else _untag(value)
    return value


def _decode_mapping(mapping: Mapping[str, Any]) -> Any:
    out: dict[str, Any] | None = None
    unchanged = 0
    for key, item in mapping.items():
        try:
            original_key = _ESCAPE.sub(_unescape_char, key) if "%" in key else key
            restored = item if type(item) in _KEPT else _decode(item)
        except _Refused as refused:
            refused.parts.append(_key_part(key))
            raise
        if out is None:
            if original_key is key and restored is item:
                unchanged += 1
                continue
            out = dict(islice(mapping.items(), unchanged))
        out[original_key] = restored
    return mapping if out is None else out


_KEPT: Final = _SCALARS | {str, int}
"""Types ``decode`` returns as they are (``bson.Int64`` is not among them: it becomes ``int``)."""

_TAG_FIELDS: Final = frozenset({TAG, "v"})
_MOMENT_FIELDS: Final = frozenset({TAG, "v", "zone", "name", "offset_us", "fold"})


def _untag(doc: Mapping[str, Any]) -> Any:
    tag = doc[TAG]
    extra = doc.keys() - (_MOMENT_FIELDS if tag in ("datetime", "time") else _TAG_FIELDS)
    if extra or "v" not in doc:
        raise _Refused(f"malformed {tag!r} value: fields {sorted(doc.keys())}")
    payload = doc["v"]
    try:
        return _restore(tag, payload, doc)
    except _Refused:
        raise
    except (TypeError, ValueError, OverflowError, ArithmeticError, LookupError) as error:
        raise _Refused(f"malformed {tag!r} value: {error}") from None


def _restore(tag: object, payload: Any, doc: Mapping[str, Any]) -> Any:
    if tag == "tuple":
        return tuple(_decode_items(payload))
    if tag == "set":
        return set(_decode_items(payload))
    if tag == "frozenset":
        return frozenset(_decode_items(payload))
    if tag in ("datetime", "time"):
        return _restore_moment(tag, _text(payload), doc)
    if tag == "int":
        return int(_text(payload), 0)
    if tag == "date":
        return _dt.date.fromisoformat(_text(payload))
    if tag == "timedelta":
        days, seconds, microseconds = _numbers(payload, int, 3)
        return _dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if tag == "decimal":
        return Decimal(_text(payload))
    if tag == "uuid":
        return uuid.UUID(_text(payload))
    if tag == "bytearray":
        if type(payload) is not bytes:
            raise TypeError("expected bytes")
        return bytearray(payload)
    if tag == "complex":
        real, imag = _numbers(payload, float, 2)
        return complex(real, imag)
    if tag == "binary":
        if type(payload) is not bytes:
            raise TypeError("expected bytes")
        return Binary(payload, 0)
    if tag == "str":
        if type(payload) is not bytes:
            raise TypeError("expected bytes")
        return payload.decode("utf-8", "surrogatepass")
    raise _Refused(f"unknown tag {tag!r} (written by a newer agno-mongo?)")


def _decode_items(payload: Any) -> list[Any]:
    if type(payload) is not list:
        raise TypeError("expected an array")
    items: list[Any] = []
    for index, item in enumerate(payload):
        try:
            items.append(_decode(item))
        except _Refused as refused:
            refused.parts.append(f"[{index}]")
            raise
    return items


def _text(payload: Any) -> str:
    if type(payload) is not str:
        raise TypeError("expected a string")
    return payload


def _numbers(payload: Any, kind: type[Any], count: int) -> list[Any]:
    if type(payload) is not list or len(payload) != count or not all(isinstance(x, kind) for x in payload):
        raise TypeError(f"expected {count} {kind.__name__} values")
    return [kind(x) for x in payload]


def _restore_moment(tag: object, text: str, doc: Mapping[str, Any]) -> _dt.datetime | _dt.time:
    moment: _dt.datetime | _dt.time = (_dt.datetime if tag == "datetime" else _dt.time).fromisoformat(text)
    if "zone" in doc:
        moment = moment.replace(tzinfo=ZoneInfo(_text(doc["zone"])))
    elif "name" in doc or "offset_us" in doc:
        offset = moment.utcoffset()
        if "offset_us" in doc:
            offset_us = doc["offset_us"]
            if not isinstance(offset_us, int) or isinstance(offset_us, bool):
                raise TypeError("offset_us must be an integer")
            offset = _dt.timedelta(microseconds=offset_us)
        if offset is None:
            raise ValueError("a timezone name without an offset")
        zone = _dt.timezone(offset, _text(_decode(doc["name"]))) if "name" in doc else _dt.timezone(offset)
        moment = moment.replace(tzinfo=zone)
    if "fold" in doc:
        if doc["fold"] != 1:
            raise ValueError("fold must be 1")
        moment = moment.replace(fold=1)
    return moment


# --- markers: what the write path stores so the read path can skip decode ---------------------------


def _check_version(version: object, path: str) -> None:
    if version != CODEC_VERSION:
        raise CorruptValueError(path, f"codec version {version!r} is not supported (expected {CODEC_VERSION})")


def _encode_named(
    values: Mapping[str, Any], names: Iterable[str], prefix: str, max_depth: int
) -> tuple[dict[str, Any], dict[str, int]]:
    """Each field in ``names`` encoded, and the markers of those a reader must decode."""
    encoded: dict[str, Any] = {}
    marks: dict[str, int] = {}
    for name in names:
        encoded[name], changed = encode(values.get(name), prefix + name, max_depth=max_depth)
        if changed:
            marks[name] = CODEC_VERSION
    return encoded, marks


def encode_fields(
    fields: Mapping[str, Any], *, max_depth: int = MAX_DEPTH - 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``$set`` and ``$unset`` parts that store top-level ``fields`` and keep their markers right.

    A changed field sets ``_codec.<name>``; an unchanged one unsets it (it was rewritten whole). The
    paths differ from the fields' own, so both parts go into one update with no conflict.
    """
    to_set, marks = _encode_named(fields, fields, "", max_depth)
    to_set.update({f"{MARKER}.{name}": version for name, version in marks.items()})
    to_unset = {f"{MARKER}.{name}": "" for name in fields if name not in marks}
    return to_set, to_unset


def encode_free_form(values: dict[str, Any], names: tuple[str, ...], prefix: str = "") -> dict[str, Any]:
    """``values`` with the free-form fields ``names`` encoded in place, and ``MARKER`` set to the
    ones a reader must decode (None when none).

    For writes that rewrite every free-form field of a document at once, so the marker is rewritten
    whole too (where :func:`encode_fields` updates it field by field); :func:`decode_fields` undoes
    it on read.
    """
    encoded, marks = _encode_named(values, names, prefix, MAX_DEPTH - 1)
    values.update(encoded)
    values[MARKER] = marks or None
    return values


def decode_fields(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document without ``MARKER``, with every marked field decoded; unmarked ones are untouched."""
    marks = stored.get(MARKER)
    out = {key: value for key, value in stored.items() if key != MARKER}
    if not marks:
        return out
    if not isinstance(marks, Mapping):
        raise CorruptValueError(MARKER, f"expected a subdocument, got {type(marks).__name__}")
    for name, version in marks.items():
        _check_version(version, f"{MARKER}.{name}")
        if name in out:
            out[name] = decode(out[name], name)
    return out


def encode_run(run: Mapping[str, Any], path: str = "run", *, max_depth: int = MAX_DEPTH - 2) -> Mapping[str, Any]:
    """A run as stored in the ``runs`` array: encoded, with ``"_codec": 1`` if a reader must decode it.

    Returns ``run`` itself when nothing changed. ``max_depth`` defaults to the room left below the
    session document and its ``runs`` array.
    """
    for reserved in (MARKER, WRITE_TOKEN, RUN_REV):
        if reserved in run:
            raise InvalidInputError(f"{path}.{reserved}", "is reserved for agno-mongo")
    encoded, changed = encode(run, path, max_depth=max_depth)
    if not isinstance(encoded, dict):  # pragma: no cover - a Mapping always encodes to a dict
        raise InvalidInputError(path, "must be a mapping")
    if not changed:
        return run
    return {**encoded, MARKER: CODEC_VERSION}


def decode_run(stored: Mapping[str, Any], path: str = "run") -> dict[str, Any]:
    """The run ``encode_run`` was given, from its stored form; no walk when it carries no marker."""
    if MARKER not in stored:
        run = stored if type(stored) is dict else dict(stored)
        run.pop(WRITE_TOKEN, None)
        run.pop(RUN_REV, None)
        return run
    _check_version(stored[MARKER], f"{path}.{MARKER}")
    restored = decode({key: value for key, value in stored.items() if key not in (MARKER, WRITE_TOKEN, RUN_REV)}, path)
    assert isinstance(restored, dict)
    return restored
