"""Auth tokens (agno's Google tools and xAI SuperGrok sign-in) through MongoDb / AsyncMongoDb.

Each store test runs once per client flavour (``store`` in conftest) against a real wire server. The
differential test plays one scenario through the three methods on agno's own ``SqliteDb`` /
``AsyncSqliteDb`` (``oracle``): ``(provider, user_id, service)`` is one slot, ``None`` and ``""``
being the same one, stored and answered as ``""``. Racing writers of one new triple leave one
document; lost replies are proved with :class:`~agno_mongo.testing.faults.ReplyDroppingProxy`; and
agno's own callers (Google's token helpers, xAI's ``XAITokenManager``) keep their tokens on our store.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from agno.models.xai.oauth import XAITokenManager
from agno.tools.google.auth.tokens import delete_token_from_db, save_token_to_db
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import auth_tokens as ops
from agno_mongo.ops.command import ReplyLost, Written
from agno_mongo.ops.owned import CREATE_RACE_ROUNDS
from agno_mongo.schema.auth_tokens import AuthTokenFields, token_key
from tests.conftest import Store, assert_refused, call
from tests.differential import assert_same_answers, normalised
from tests.plans import drive

COLUMNS = ["id", "provider", "user_id", "service", "token_data", "granted_scopes", "created_at", "updated_at"]
"""agno's ``AUTH_TOKEN_TABLE_SCHEMA`` columns, in its order."""
IDS = frozenset({"id"})


def token(provider: str, user_id: str | None, service: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A token dict as agno's callers build one (they always pass ``granted_scopes``)."""
    return {
        "provider": provider,
        "user_id": user_id,
        "service": service,
        "token_data": data,
        "granted_scopes": [],
    } | extra


GOOGLE = token("google", None, "google", {"encrypted": "gAAAA-google"}, granted_scopes=["gmail.readonly"])
XAI_USER = token("xai", "u1", "supergrok", {"encrypted": "gAAAA-u1"}, granted_scopes=["openid", "api:access"])
XAI_SLOT = token("xai", "", "supergrok", {"access_token": "plain", "expires_at": 99, "id_token": None})
PENDING = token("xai", "u1", "supergrok_pending", {"device_code": "dc", "nested": {"$odd key": [1, {"a.b": 2}]}})


def answer_of_upsert(answer: dict[str, Any] | None) -> Any:
    """An upsert's answer without its ``id``: agno's SQL stores answer a fresh ``uuid4`` on every call,
    even when they replaced a row whose id they kept (see ``test_upsert_answers_the_stored_row``)."""
    return None if answer is None else normalised({k: v for k, v in answer.items() if k != "id"})


async def play(db: Any) -> list[Any]:
    """Every method, with each slot shape: no user, a user, the ``""`` slot, a second service."""
    out: list[Any] = []
    out.append(await call(db.get_auth_token("google", None, "google")))
    for record in (GOOGLE, XAI_USER, XAI_SLOT, PENDING):
        out.append(answer_of_upsert(await call(db.upsert_auth_token(dict(record)))))
    for provider, user_id, service in (
        ("google", None, "google"),
        ("google", "", "google"),  # None and "" are one slot, answered with user_id ""
        ("xai", "u1", "supergrok"),
        ("xai", None, "supergrok"),
        ("xai", "", "supergrok"),
        ("xai", "u1", "supergrok_pending"),
        ("xai", "u2", "supergrok"),
        ("xai", "u1", "google"),
        ("google", None, "xai"),
    ):
        out.append(normalised(await call(db.get_auth_token(provider, user_id, service)), ids=IDS))
    # A replace keeps the row (id, key, created_at) and sets token_data, granted_scopes, updated_at.
    replaced = token("google", "", "google", {"encrypted": "gAAAA-rotated"}, granted_scopes=["gmail.send"])
    out.append(answer_of_upsert(await call(db.upsert_auth_token(replaced))))
    out.append(
        answer_of_upsert(
            await call(db.upsert_auth_token(token("xai", "u1", "supergrok", {"v": 2}, granted_scopes=None)))
        )
    )
    out.append(
        answer_of_upsert(await call(db.upsert_auth_token(token("xai", None, "supergrok", {"v": 3}, created_at=5))))
    )
    for provider, user_id, service in (
        ("google", None, "google"),
        ("xai", "u1", "supergrok"),
        ("xai", "", "supergrok"),
    ):
        out.append(normalised(await call(db.get_auth_token(provider, user_id, service)), ids=IDS))
    out.append(await call(db.delete_auth_token("google", "", "google")))  # the row stored for user None
    out.append(await call(db.delete_auth_token("google", None, "google")))
    out.append(await call(db.delete_auth_token("xai", "u1", "supergrok_pending")))
    out.append(await call(db.delete_auth_token("xai", "u9", "supergrok")))
    out.append(await call(db.get_auth_token("google", None, "google")))
    out.append(normalised(await call(db.get_auth_token("xai", "u1", "supergrok")), ids=IDS))
    out.append(answer_of_upsert(await call(db.upsert_auth_token(dict(GOOGLE)))))  # a new row after the delete
    out.append(normalised(await call(db.get_auth_token("google", None, "google")), ids=IDS))
    return out


async def test_every_method_answers_as_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await play(store.db)
    theirs = await play(oracle)
    assert_same_answers(ours, theirs)


async def test_rows_have_agnos_keys_and_types(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        await call(db.upsert_auth_token(dict(GOOGLE)))
        await call(db.upsert_auth_token(dict(PENDING)))
    for key in (("google", None, "google"), ("xai", "u1", "supergrok_pending")):
        mine = await call(store.db.get_auth_token(*key))
        reference = await call(oracle.get_auth_token(*key))
        assert list(mine) == list(reference) == COLUMNS
        assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in reference.items()}
        assert mine["user_id"] == reference["user_id"] == ("" if key[1] is None else key[1])
        assert mine["created_at"] == mine["updated_at"] and isinstance(mine["created_at"], int)
    # One document per triple, _id derived from it, user None stored as "", token_data a subdocument.
    raw = store.raw.agno_auth_tokens.find_one({"_id": token_key("google", None, "google")})
    assert (raw["provider"], raw["user_id"], raw["service"]) == ("google", "", "google")
    assert raw["token_data"] == {"encrypted": "gAAAA-google"} and raw["schema_version"] == 1
    assert raw["_id"] == token_key("google", "", "google")
    pending = store.raw.agno_auth_tokens.find_one({"_id": token_key("xai", "u1", "supergrok_pending")})
    assert "%24odd key" in pending["token_data"]["nested"] and pending["_codec"] == {"token_data": 1}
    assert [index["name"] for index in store.raw.agno_auth_tokens.list_indexes()] == ["_id_"]


async def test_upsert_answers_the_stored_row(store: Store, oracle: Any) -> None:
    """Our upsert answers the row as stored, which is what ``get_auth_token`` then reads. agno's SQL
    stores answer the dict they tried to insert: after a replace its ``id`` is a fresh ``uuid4`` that
    is not the stored row's and its ``created_at`` is not the stored one, and a ``granted_scopes`` left
    out is missing from it (agno's callers only test the answer for ``None``)."""
    first = await call(store.db.upsert_auth_token(token("xai", "u1", "supergrok", {"v": 1}, created_at=5)))
    second = await call(
        store.db.upsert_auth_token({"provider": "xai", "user_id": "u1", "service": "supergrok", "token_data": {"v": 2}})
    )
    stored = await call(store.db.get_auth_token("xai", "u1", "supergrok"))
    assert second == stored and second["id"] == first["id"] and second["created_at"] == 5
    assert (second["token_data"], second["granted_scopes"]) == ({"v": 2}, None)

    sql_first = await call(oracle.upsert_auth_token(token("xai", "u1", "supergrok", {"v": 1}, created_at=5)))
    sql_second = await call(
        oracle.upsert_auth_token({"provider": "xai", "user_id": "u1", "service": "supergrok", "token_data": {"v": 2}})
    )
    sql_stored = await call(oracle.get_auth_token("xai", "u1", "supergrok"))
    assert sql_stored["id"] == sql_first["id"] != sql_second["id"]  # agno's answer names no stored row
    assert sql_stored["created_at"] == 5 != sql_second["created_at"]
    assert "granted_scopes" not in sql_second and sql_stored["granted_scopes"] is None
    assert normalised({k: v for k, v in stored.items() if k != "id"}) == normalised(
        {k: v for k, v in sql_stored.items() if k != "id"}
    )


async def test_concurrent_upserts_of_one_new_triple_leave_one_document(store: Store) -> None:
    n = 10

    def upsert(who: int) -> Any:
        return store.db.upsert_auth_token(token("xai", "u1", "supergrok", {"writer": who}))

    if store.is_async:
        answers = await asyncio.gather(*(call(upsert(who)) for who in range(n)))
    else:
        barrier = threading.Barrier(n)

        def at_once(who: int) -> Any:
            barrier.wait()
            return upsert(who)

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(at_once, range(n)))
    assert all(answer is not None for answer in answers)
    assert len({answer["id"] for answer in answers}) == 1
    (stored,) = list(store.raw.agno_auth_tokens.find({}))
    assert stored["token_data"]["writer"] in range(n)  # the last writer's, whole


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    await call(store.db.upsert_auth_token(dict(GOOGLE)))
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("upsert_auth_token", {"token": ["not", "a", "dict"]}, "token"),
        ("upsert_auth_token", {"token": {**GOOGLE, "colour": "red"}}, "token.colour"),
        ("upsert_auth_token", {"token": {k: v for k, v in GOOGLE.items() if k != "provider"}}, "token.provider"),
        ("upsert_auth_token", {"token": {**GOOGLE, "service": None}}, "token.service"),
        ("upsert_auth_token", {"token": {**GOOGLE, "user_id": {"$ne": None}}}, "token.user_id"),
        ("upsert_auth_token", {"token": {**GOOGLE, "token_data": "secret"}}, "token.token_data"),
        ("upsert_auth_token", {"token": {**GOOGLE, "token_data": None}}, "token.token_data"),
        ("upsert_auth_token", {"token": {**GOOGLE, "granted_scopes": "a b"}}, "token.granted_scopes"),
        ("upsert_auth_token", {"token": {**GOOGLE, "created_at": "now"}}, "token.created_at"),
        ("upsert_auth_token", {"token": {**GOOGLE, "token_data": {"k": object()}}}, "token.token_data.k"),
        ("get_auth_token", {"provider": {"$ne": None}, "user_id": None, "service": "google"}, "provider"),
        ("get_auth_token", {"provider": "google", "user_id": 7, "service": "google"}, "user_id"),
        ("get_auth_token", {"provider": "google", "user_id": None, "service": None}, "service"),
        ("delete_auth_token", {"provider": None, "user_id": None, "service": "google"}, "provider"),
        ("delete_auth_token", {"provider": "google", "user_id": ["u"], "service": "google"}, "user_id"),
        ("delete_auth_token", {"provider": "google", "user_id": None, "service": "\ud800"}, "service"),
    ]
    for method, kwargs, field in refused:
        await assert_refused(store, method, kwargs, field)
    (stored,) = list(store.raw.agno_auth_tokens.find({}))
    assert stored["token_data"] == GOOGLE["token_data"]


async def test_a_corrupt_token_raises_instead_of_being_handed_out(store: Store) -> None:
    store.raw.agno_auth_tokens.insert_one(
        {"_id": token_key("google", None, "google"), "provider": "google", "user_id": "", "service": "google"}
    )
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_auth_token("google", None, "google"))
    assert (error.value.collection, error.value.field) == ("auth_tokens", "token_data")


# --- agno's own callers on our store -----------------------------------------------------------------------


def test_googles_token_helpers_keep_their_token_here(mongodb_url: str, db_name: str) -> None:
    """``save_token_to_db`` / ``delete_token_from_db`` (agno's Google toolkits, sync only) on MongoDb."""
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    creds = SimpleNamespace(
        token="at",
        refresh_token="rt",
        token_uri="https://oauth2.example/token",
        client_id="cid",
        client_secret="cs",
        expiry=None,
    )
    assert save_token_to_db(db, creds, ["gmail.readonly"], encryption_key=None, encrypt_tokens=False) is True
    row = db.get_auth_token("google", None, "google")
    assert row is not None and row["user_id"] == "" and row["granted_scopes"] == ["gmail.readonly"]
    assert row["token_data"] == {
        "token": "at",
        "refresh_token": "rt",
        "token_uri": "https://oauth2.example/token",
        "client_id": "cid",
        "client_secret": "cs",
    }
    creds.token = "at2"
    assert save_token_to_db(db, creds, ["gmail.readonly", "gmail.send"], encryption_key=None, encrypt_tokens=False)
    row2 = db.get_auth_token("google", None, "google")
    assert row2 is not None and row2["token_data"]["token"] == "at2" and row2["id"] == row["id"]
    assert delete_token_from_db(db) is True
    assert db.get_auth_token("google", None, "google") is None and delete_token_from_db(db) is False


def xai_token_endpoint(request: httpx.Request) -> httpx.Response:
    """xAI's token endpoint, for a device-code grant and a refresh (the IdP, not the store, is faked)."""
    form = dict(item.split("=", 1) for item in request.content.decode().split("&"))
    suffix = "1" if form["grant_type"].endswith("device_code") else "2"
    return httpx.Response(
        200, json={"access_token": f"access-{suffix}", "refresh_token": f"refresh-{suffix}", "expires_in": 21600}
    )


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_xai_sign_in_persists_refreshes_and_signs_out_on_our_store(
    flavour: str, mongodb_url: str, db_name: str
) -> None:
    """``XAITokenManager`` with ``db=``: a device-code poll stores the user's token; a second manager
    (another process) reads it from the store; a forced refresh replaces it; sign-out deletes it."""
    raw: MongoClient[Any] = MongoClient(mongodb_url)
    collection = raw[db_name].agno_auth_tokens
    try:
        db: MongoDb | AsyncMongoDb
        if flavour == "sync":
            db = MongoDb(db_url=mongodb_url, db_name=db_name)
            manager = XAITokenManager(
                db=db, encrypt_tokens=False, http_client=httpx.Client(transport=httpx.MockTransport(xai_token_endpoint))
            )
            result = manager.poll_once("device-code", user_id="u1")
            reader = XAITokenManager(db=MongoDb(db_url=mongodb_url, db_name=db_name), encrypt_tokens=False)
            assert reader.get_access_token("u1") == "access-1"
            assert manager.force_refresh("u1") == "access-2"
            stored = collection.find_one({"_id": token_key("xai", "u1", "supergrok")})
            assert stored is not None and stored["token_data"]["refresh_token"] == "refresh-2"
            manager.sign_out("u1")
        else:
            db = AsyncMongoDb(db_url=mongodb_url, db_name=db_name)
            transport = httpx.MockTransport(xai_token_endpoint)
            manager = XAITokenManager(
                db=db, encrypt_tokens=False, async_http_client=httpx.AsyncClient(transport=transport)
            )
            result = await manager.apoll_once("device-code", user_id="u1")
            reader = XAITokenManager(db=AsyncMongoDb(db_url=mongodb_url, db_name=db_name), encrypt_tokens=False)
            assert await reader.aget_access_token("u1") == "access-1"
            assert await manager.aforce_refresh("u1") == "access-2"
            stored = collection.find_one({"_id": token_key("xai", "u1", "supergrok")})
            assert stored is not None and stored["token_data"]["refresh_token"] == "refresh-2"
            await manager.asign_out("u1")
        assert result.token_data is not None and result.token_data["access_token"] == "access-1"
        assert (stored["provider"], stored["user_id"], stored["service"]) == ("xai", "u1", "supergrok")
        assert stored["granted_scopes"] == [
            "openid",
            "profile",
            "email",
            "offline_access",
            "grok-cli:access",
            "api:access",
        ]
        assert collection.count_documents({}) == 0
    finally:
        raw.close()


# --- plans without a server --------------------------------------------------------------------------------


def test_the_upsert_is_one_resendable_command_on_the_triples_id() -> None:
    fields = AuthTokenFields.from_dict(dict(XAI_USER))
    commands, answer = drive(ops.upsert_plan(fields, 77), [{"_id": "k"}])
    (upsert,) = commands
    assert upsert.op == "find_one_and_update" and upsert.resend is True and answer == {"_id": "k"}
    assert upsert.kwargs["filter"] == {"_id": token_key("xai", "u1", "supergrok")} and upsert.kwargs["upsert"]
    assert upsert.kwargs["update"]["$set"]["updated_at"] == 77
    assert set(upsert.kwargs["update"]["$setOnInsert"]) == {
        "provider",
        "user_id",
        "service",
        "created_at",
        "schema_version",
    }
    # A create race's duplicate key on _id: sent again, and the resend matches.
    commands, answer = drive(ops.upsert_plan(fields, 77), [DuplicateKeyError("E11000", 11000), {"_id": "k"}])
    assert len(commands) == 2 and commands[0] == commands[1] and answer == {"_id": "k"}
    with pytest.raises(DuplicateKeyError):
        drive(ops.upsert_plan(fields, 77), [DuplicateKeyError("E11000", 11000)] * CREATE_RACE_ROUNDS)


def test_the_key_is_one_per_triple_with_none_as_the_empty_user() -> None:
    assert token_key("xai", None, "supergrok") == token_key("xai", "", "supergrok")
    keys = {token_key(*triple) for triple in (("a", "b", "c"), ("a", "bc", ""), ("ab", "", "c"), ("a", "", "bc"))}
    assert len(keys) == 4  # no two triples share a key, however their parts run together


def test_delete_after_a_lost_reply_reads_whether_it_is_gone() -> None:
    command = ops.delete("k")
    assert command.resend is False
    lost = ReplyLost(command, OSError("connection reset"))
    commands, answer = drive(ops.delete_plan("k"), [lost, None])
    assert answer is True and [c.op for c in commands] == ["delete_one", "find_one"]
    commands, answer = drive(ops.delete_plan("k"), [lost, {"_id": "k"}, Written(deleted_count=1)])
    assert answer is True and len(commands) == 3
    with pytest.raises(ReplyLost):
        drive(ops.delete_plan("k"), [lost, {"_id": "k"}] * ops.SEND_ROUNDS)
    assert drive(ops.delete_plan("k"), [Written(deleted_count=0)])[1] is False


# --- lost replies on a real server -------------------------------------------------------------------------


async def test_upserts_and_deletes_whose_replies_are_lost_answer_right(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    proxy.drop_next("findAndModify")
    first = await call(db.upsert_auth_token(dict(XAI_USER)))  # resent: the same values, the same answer
    assert proxy.dropped and first is not None and first["token_data"] == XAI_USER["token_data"]
    proxy.drop_next("findAndModify")
    second = await call(db.upsert_auth_token(token("xai", "u1", "supergrok", {"v": 2})))
    assert second is not None and second["token_data"] == {"v": 2} and second["id"] == first["id"]
    (stored,) = list(raw.agno_auth_tokens.find({}))
    assert stored["token_data"] == {"v": 2} and stored["created_at"] == first["created_at"]
    proxy.drop_next("delete")
    assert await call(db.delete_auth_token("xai", "u1", "supergrok")) is True
    assert len(proxy.dropped) == 3 and raw.agno_auth_tokens.count_documents({}) == 0
    assert await call(db.delete_auth_token("xai", "u1", "supergrok")) is False
