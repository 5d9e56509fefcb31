"""Service accounts (AgentOS ``agno_pat_`` machine tokens) through MongoDb / AsyncMongoDb.

Each store test runs once per client flavour (``store`` in conftest) against a real wire server. The
differential test plays one scenario through all seven methods on agno's own ``SqliteDb`` /
``AsyncSqliteDb`` (``oracle``) and compares every answer, refusals included. The unique constraints
(token hash; name among active accounts) are raced by threads and tasks, lost replies are proved with
:class:`~agno_mongo.testing.faults.ReplyDroppingProxy`, and AgentOS itself (FastAPI ``TestClient``)
mints a token, authenticates with it, and revokes it on our store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.schemas.service_accounts import ServiceAccount
from agno.os import AgentOS
from agno.os.routers.service_accounts.router import _is_integrity_error
from agno.os.routers.service_accounts.schema import ServiceAccountResponse
from agno.os.service_accounts import ServiceAccountVerifier, VerificationStatus, hash_token
from agno.os.settings import AgnoAPISettings
from fastapi.testclient import TestClient
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError
from sqlalchemy.exc import IntegrityError

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import service_accounts as ops
from agno_mongo.ops.command import Command, ReplyLost, Written
from agno_mongo.schema.service_accounts import ServiceAccountFields
from tests.conftest import Store, assert_refused, call
from tests.differential import assert_same_answers
from tests.plans import drive, lost

COLUMNS = [
    "id",
    "name",
    "user_id",
    "token_hash",
    "token_prefix",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "created_by",
]
"""agno's ``SERVICE_ACCOUNT_TABLE_SCHEMA`` columns, in its order."""


def account(account_id: str, name: str, created_at: int, **extra: Any) -> dict[str, Any]:
    """What AgentOS's ``POST /service-accounts`` passes: ``ServiceAccount(...).to_dict()``."""
    fields: dict[str, Any] = {
        "token_hash": f"hash-{account_id}",
        "token_prefix": f"agno_pat_{account_id}"[:16],
        "scopes": ["agents:run", "sessions:read"],
    }
    fields.update(extra)
    return ServiceAccount(id=account_id, name=name, created_at=created_at, **fields).to_dict()


A = account("sa-a", "ci", 100, created_by="admin")
B = account("sa-b", "deploy", 200, user_id="alice", expires_at=5000, created_by="alice")
C = account("sa-c", "bot", 200, user_id="bob", expires_at=3000, scopes=["agents:run"])  # created_at ties B's
D = account("sa-d", "legacy", 50, user_id="alice", expires_at=1000, revoked_at=60)  # created revoked
E = account("sa-e", "reader", 300, user_id="", expires_at=4000, last_used_at=350)  # owner "" is a real owner
F = account("sa-f", "legacy", 400, user_id="alice")  # D is revoked: its name is free
G = account("sa-g", "legacy", 400, user_id="alice", revoked_at=410)  # revoked accounts never hold a name
REFUSED = [
    account("sa-a", "other", 500, token_hash="hash-x1"),  # a taken id
    account("sa-x2", "other2", 500, token_hash="hash-sa-b"),  # a taken token hash
    account("sa-x3", "ci", 500),  # an active name
    account("sa-x4", "bot", 500, token_hash="hash-sa-c"),  # C's name (expired, not revoked: still held) and hash
    C,  # the very same dict again: a second create, not a resend
]


async def attempt_create(db: Any, record: dict[str, Any]) -> Any:
    """The create's answer, or what AgentOS's route sees of a refusal (``IntegrityError`` means 409)."""
    try:
        return await call(db.create_service_account(dict(record)))
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return ("refused", _is_integrity_error(error), isinstance(error, DuplicateKeyError | IntegrityError))


def grouped(page: tuple[list[dict[str, Any]], int], field: str) -> tuple[list[tuple[Any, list[str]]], int]:
    """A listing as runs of equal ``field`` values, each run's ids sorted.

    agno's SQL stores leave the order within a run of equal values to the engine (SQLite keeps
    insertion order when it sorts, and scans its ``created_at`` index backwards for ``desc``), so
    only the runs and their members are compared for the sorts that are not ``created_at``; our
    own tie order is asserted in ``test_ties_come_in_creation_order_and_pages_never_overlap``.
    """
    rows, total = page
    runs: list[tuple[Any, list[str]]] = []
    for row in rows:
        if runs and runs[-1][0] == row[field]:
            runs[-1][1].append(row["id"])
        else:
            runs.append((row[field], [row["id"]]))
    return [(value, sorted(ids)) for value, ids in runs], total


async def play(db: Any) -> list[Any]:
    """Every method, in an order that exercises each filter, sort, page and outcome."""
    out: list[Any] = []
    for record in (A, C, B, D, E):  # C before B: their created_at ties, and id order is not creation order
        out.append(await attempt_create(db, record))
    for record in REFUSED:
        out.append(await attempt_create(db, record))
    for record in (G, F):  # likewise
        out.append(await attempt_create(db, record))
    for account_id, user_id in (
        ("sa-a", None),
        ("sa-a", "alice"),  # workspace-level: every owner sees it
        ("sa-b", "alice"),
        ("sa-b", "bob"),
        ("sa-b", ""),
        ("sa-e", ""),
        ("sa-e", "alice"),
        ("sa-d", None),
        ("missing", None),
    ):
        out.append(await call(db.get_service_account(account_id, user_id=user_id)))
    for token_hash in ("hash-sa-a", "hash-sa-d", "hash-sa-g", "nope", ""):  # revoked ones too: the verifier checks
        out.append(await call(db.get_service_account_by_token_hash(token_hash)))
    for name, include_revoked in (
        ("ci", False),
        ("legacy", False),
        ("legacy", True),  # F and G share created_at: the newest created (F) answers
        ("bot", False),
        ("reader", True),
        ("missing", True),
    ):
        out.append(await call(db.get_service_account_by_name(name, include_revoked=include_revoked)))
    exact: list[dict[str, Any]] = [
        {},
        {"include_revoked": False},
        {"user_id": "alice"},
        {"user_id": "bob"},
        {"user_id": ""},
        {"user_id": "nobody"},
        {"user_id": "alice", "include_revoked": False},
        {"sort_by": "created_at", "sort_order": "asc"},
        {"sort_by": "token_hash"},  # not sortable: created_at
        {"sort_order": "ASC"},  # only exactly "asc" is ascending
        {"sort_order": "sideways"},
        {"limit": 2, "page": 1},
        {"limit": 2, "page": 2},
        {"limit": 2, "page": 3},
        {"limit": 2, "page": 4},
        {"limit": 3, "page": 2, "sort_order": "asc"},
        {"limit": 2, "page": 2, "user_id": "alice"},
        {"limit": 0},
        {"limit": 100},
    ]
    for kwargs in exact:
        out.append(await call(db.get_service_accounts(**kwargs)))
    for field in ("name", "last_used_at", "expires_at"):
        for order in ("asc", "desc"):
            out.append(grouped(await call(db.get_service_accounts(sort_by=field, sort_order=order)), field))
    out.append(await call(db.update_service_account("sa-a", return_record=False, last_used_at=1000)))
    out.append(await call(db.update_service_account("sa-b", last_used_at=900)))
    out.append(await call(db.update_service_account("sa-b", last_used_at=800)))  # set as given, as SQL does
    out.append(await call(db.update_service_account("sa-e", last_used_at=None)))
    out.append(await call(db.update_service_account("sa-a", revoked_at=1100)))
    out.append(await call(db.update_service_account("sa-a", revoked_at=1200)))  # a second revoke overwrites
    out.append(await call(db.update_service_account("sa-c", last_used_at=1300, revoked_at=1300)))
    out.append(await call(db.update_service_account("missing", revoked_at=1)))
    out.append(await call(db.update_service_account("missing", return_record=False, last_used_at=1)))
    out.append(await attempt_create(db, account("sa-h", "ci", 600)))  # A's revocation freed "ci"
    out.append(await attempt_create(db, account("sa-x5", "bot", 600)))  # so did C's
    for name, include_revoked in (("ci", False), ("ci", True), ("bot", True)):
        out.append(await call(db.get_service_account_by_name(name, include_revoked=include_revoked)))
    out.append(await call(db.get_service_accounts(include_revoked=False)))
    out.append(await call(db.get_service_accounts(sort_by="created_at", sort_order="asc", user_id="alice")))
    for order in ("asc", "desc"):
        out.append(
            grouped(await call(db.get_service_accounts(sort_by="last_used_at", sort_order=order)), "last_used_at")
        )
    out.append(await call(db.delete_service_account("sa-c")))
    out.append(await call(db.delete_service_account("sa-c")))
    out.append(await call(db.delete_service_account("missing")))
    out.append(await call(db.get_service_account("sa-c")))
    out.append(await call(db.get_service_account_by_token_hash("hash-sa-c")))
    out.append(await attempt_create(db, account("sa-x6", "bot2", 700, token_hash="hash-sa-c")))  # hash freed
    out.append(await call(db.get_service_accounts()))
    return out


async def test_every_method_answers_as_agnos_sqlite(store: Store, oracle: Any) -> None:
    ours = await play(store.db)
    theirs = await play(oracle)
    assert_same_answers(ours, theirs)  # every time in these accounts is given: nothing to mask
    assert ("refused", True, True) in ours


async def test_rows_have_agnos_keys_and_types_and_feed_agentos(store: Store, oracle: Any) -> None:
    for db in (store.db, oracle):
        for record in (A, E):
            await call(db.create_service_account(dict(record)))
    for account_id in ("sa-a", "sa-e"):
        mine = await call(store.db.get_service_account(account_id))
        reference = await call(oracle.get_service_account(account_id))
        assert list(mine) == list(reference) == COLUMNS
        assert {k: type(v) for k, v in mine.items()} == {k: type(v) for k, v in reference.items()}
        assert mine == reference
        assert ServiceAccount.from_dict(mine).to_dict() == mine  # what the verifier builds
        ServiceAccountResponse.from_dict(mine)  # what GET /service-accounts answers
    raw = store.raw.agno_service_accounts.find_one({"_id": "sa-a"})
    assert "id" not in raw and raw["active"] is True and raw["schema_version"] == 1
    assert isinstance(raw["created_ns"], int) and isinstance(raw["_op"], str)
    assert store.raw.agno_service_accounts.find_one({"_id": "sa-e"})["scopes"] == ["agents:run", "sessions:read"]


async def test_unique_constraints_refuse_with_an_integrity_error_and_write_nothing(store: Store) -> None:
    for record in (A, C):
        await call(store.db.create_service_account(dict(record)))
    before = sorted(store.raw.agno_service_accounts.find({}), key=lambda d: d["_id"])
    for record, field in (
        (account("sa-a", "other", 500, token_hash="hash-x1"), "id"),
        (account("sa-x", "other", 500, token_hash="hash-sa-c"), "token_hash"),
        (account("sa-y", "ci", 500), "name"),
        (dict(C), "id"),
    ):
        with pytest.raises(ops.ServiceAccountConflictError) as error:
            await call(store.db.create_service_account(record))
        assert error.value.field == field
        assert isinstance(error.value, DuplicateKeyError) and isinstance(error.value, IntegrityError)
        assert _is_integrity_error(error.value)  # AgentOS's POST /service-accounts answers 409
        assert field in str(error.value)
    assert sorted(store.raw.agno_service_accounts.find({}), key=lambda d: d["_id"]) == before
    # Revocation frees the name, for any number of revoked accounts; the token hash stays taken.
    await call(store.db.update_service_account("sa-a", revoked_at=150))
    assert "active" not in store.raw.agno_service_accounts.find_one({"_id": "sa-a"})
    await call(store.db.create_service_account(account("sa-a2", "ci", 160)))
    await call(store.db.update_service_account("sa-a2", revoked_at=170))
    await call(store.db.create_service_account(account("sa-a3", "ci", 180, revoked_at=180)))
    await call(store.db.create_service_account(account("sa-a4", "ci", 190)))
    with pytest.raises(ops.ServiceAccountConflictError):
        await call(store.db.create_service_account(account("sa-a5", "ci", 195)))
    with pytest.raises(ops.ServiceAccountConflictError) as error:
        await call(store.db.create_service_account(account("sa-z", "fresh", 200, token_hash="hash-sa-a")))
    assert error.value.field == "token_hash"
    active = [d["_id"] for d in store.raw.agno_service_accounts.find({"name": "ci", "active": True})]
    assert active == ["sa-a4"] and store.raw.agno_service_accounts.count_documents({"name": "ci"}) == 4
    assert (await call(store.db.get_service_account_by_name("ci")))["id"] == "sa-a4"


async def test_concurrent_creates_of_one_name_have_one_winner(store: Store) -> None:
    """AgentOS checks the name, then creates: racing mints all pass the check, and the partial unique
    index is what leaves one active account (the others are refused as agno's SQL would)."""
    n = 10

    def create(who: int) -> Any:
        return store.db.create_service_account(account(f"sa-{who}", "ci", 100 + who))

    async def outcome(who: int) -> str:
        try:
            await call(create(who))
        except ops.ServiceAccountConflictError as error:
            return f"refused:{error.field}"
        return "created"

    if store.is_async:
        answers = await asyncio.gather(*(outcome(who) for who in range(n)))
    else:
        barrier = threading.Barrier(n)

        def at_once(who: int) -> str:
            barrier.wait()
            return asyncio.run(outcome(who))

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(at_once, range(n)))
    assert sorted(answers) == ["created"] + ["refused:name"] * (n - 1), answers
    assert store.raw.agno_service_accounts.count_documents({}) == 1


async def test_ties_come_in_creation_order_and_pages_never_overlap(store: Store) -> None:
    """Accounts minted in one second share ``created_at`` and (never used) a null ``last_used_at``:
    ties come newest created first when descending (as SQLite's ``created_at`` index answers them),
    oldest first when ascending, and walking the pages yields each account exactly once."""
    ids = [f"sa-{(index * 7919) % 97:02d}-{index}" for index in range(9)]  # creation order is not id order
    assert sorted(ids) != ids and sorted(ids) != ids[::-1]
    for index, account_id in enumerate(ids):
        await call(store.db.create_service_account(account(account_id, f"n{index}", 1000)))
    for sort_by in ("created_at", "last_used_at", "expires_at"):
        for order, expected in (("desc", ids[::-1]), ("asc", ids)):
            rows, total = await call(store.db.get_service_accounts(sort_by=sort_by, sort_order=order, limit=100))
            assert [row["id"] for row in rows] == expected and total == 9, (sort_by, order)
            walked: list[str] = []
            for page in range(1, 6):
                rows, total = await call(
                    store.db.get_service_accounts(sort_by=sort_by, sort_order=order, limit=2, page=page)
                )
                walked += [row["id"] for row in rows]
                assert total == 9
            assert walked == expected
    newest = await call(store.db.get_service_account_by_name("n8", include_revoked=True))
    assert newest["id"] == ids[8]


async def test_listings_and_lookups_are_served_by_an_index(store: Store) -> None:
    await call(store.db.get_service_accounts())  # creates the indexes
    indexes = {index["name"]: index for index in store.raw.agno_service_accounts.list_indexes()}
    token_hash, active_name = indexes["token_hash"], indexes["active_name"]
    assert list(token_hash["key"]) == ["token_hash"] and token_hash["unique"] is True
    assert list(active_name["key"]) == ["name"] and active_name["unique"] is True
    assert active_name["partialFilterExpression"] == {"active": True}
    keys = [list(index["key"]) for index in indexes.values()]
    for field in ops.SORTABLE:
        assert [field, "created_ns", "_id"] in keys, field  # unscoped listing, sort and tie-break
        assert ["user_id", field, "created_ns", "_id"] in keys, field  # a user's listing
    assert ["name", "created_at", "created_ns", "_id"] in keys  # the newest account of a name


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    await call(store.db.create_service_account(dict(A)))
    refused: list[tuple[str, dict[str, Any], str]] = [
        ("create_service_account", {"account_data": ["not", "a", "dict"]}, "account_data"),
        ("create_service_account", {"account_data": {**B, "colour": "red"}}, "account_data.colour"),
        ("create_service_account", {"account_data": {k: v for k, v in B.items() if k != "name"}}, "account_data.name"),
        ("create_service_account", {"account_data": {**B, "id": {"$ne": None}}}, "account_data.id"),
        ("create_service_account", {"account_data": {**B, "id": ""}}, "account_data.id"),
        ("create_service_account", {"account_data": {**B, "token_hash": None}}, "account_data.token_hash"),
        ("create_service_account", {"account_data": {**B, "scopes": "agents:run"}}, "account_data.scopes"),
        ("create_service_account", {"account_data": {**B, "scopes": [1]}}, "account_data.scopes.0"),
        ("create_service_account", {"account_data": {**B, "created_at": "now"}}, "account_data.created_at"),
        ("create_service_account", {"account_data": {**B, "expires_at": 1 << 70}}, "account_data.expires_at"),
        ("create_service_account", {"account_data": {**B, "user_id": 7}}, "account_data.user_id"),
        ("get_service_account", {"service_account_id": {"$ne": None}}, "service_account_id"),
        ("get_service_account", {"service_account_id": "sa-a", "user_id": {"$in": ["a"]}}, "user_id"),
        ("get_service_account_by_token_hash", {"token_hash": {"$ne": None}}, "token_hash"),
        ("get_service_account_by_token_hash", {"token_hash": None}, "token_hash"),
        ("get_service_account_by_name", {"name": {"$regex": "."}}, "name"),
        ("get_service_account_by_name", {"name": "ci", "include_revoked": "yes"}, "include_revoked"),
        ("get_service_accounts", {"include_revoked": "no"}, "include_revoked"),
        ("get_service_accounts", {"limit": -1}, "limit"),
        ("get_service_accounts", {"limit": None}, "limit"),
        ("get_service_accounts", {"page": 0}, "page"),
        ("get_service_accounts", {"limit": 1 << 62, "page": 1 << 62}, "page"),
        ("get_service_accounts", {"sort_by": {"$x": 1}}, "sort_by"),
        ("get_service_accounts", {"sort_order": -1}, "sort_order"),
        ("get_service_accounts", {"user_id": {"$exists": True}}, "user_id"),
        ("update_service_account", {"service_account_id": "sa-a"}, "kwargs"),
        ("update_service_account", {"service_account_id": "sa-a", "name": "x"}, "name"),
        ("update_service_account", {"service_account_id": "sa-a", "scopes": ["agent_os:admin"]}, "scopes"),
        ("update_service_account", {"service_account_id": "sa-a", "revoked_at": None}, "revoked_at"),
        ("update_service_account", {"service_account_id": "sa-a", "last_used_at": "now"}, "last_used_at"),
        ("update_service_account", {"service_account_id": "sa-a", "last_used_at": 1.5}, "last_used_at"),
        ("update_service_account", {"service_account_id": {"$ne": 1}, "revoked_at": 1}, "service_account_id"),
        (
            "update_service_account",
            {"service_account_id": "sa-a", "return_record": 1, "revoked_at": 1},
            "return_record",
        ),
        ("delete_service_account", {"service_account_id": ""}, "service_account_id"),
        ("delete_service_account", {"service_account_id": None}, "service_account_id"),
    ]
    for method, kwargs, field in refused:
        await assert_refused(store, method, kwargs, field)
    assert list(store.raw.agno_service_accounts.find({}, {"_id": 1, "revoked_at": 1})) == [
        {"_id": "sa-a", "revoked_at": None}
    ]


async def test_agno_refuses_the_same_updates(oracle: Any) -> None:
    """agno's ``validate_service_account_update`` raises ``ValueError`` for what we refuse; ours is one too."""
    for kwargs in ({}, {"name": "x"}, {"revoked_at": None}):
        with pytest.raises(ValueError):
            await call(oracle.update_service_account("sa-a", **kwargs))


async def test_a_corrupt_account_raises_instead_of_authenticating(store: Store) -> None:
    """A hand-edited document that does not hold agno's types must not reach the verifier as a row:
    the lookup raises, and AgentOS's verifier fails closed (503), never open."""
    store.raw.agno_service_accounts.insert_one(
        {"_id": "bad", "name": "x", "token_hash": "h", "token_prefix": "p", "scopes": "agent_os:admin", "created_at": 1}
    )
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_service_account_by_token_hash("h"))
    assert (error.value.collection, error.value.document_id, error.value.field) == ("service_accounts", "bad", "scopes")
    verifier = ServiceAccountVerifier(store.db, cache_ttl_seconds=0)
    store.raw.agno_service_accounts.update_one({"_id": "bad"}, {"$set": {"token_hash": hash_token("agno_pat_x")}})
    assert (await verifier.verify("agno_pat_x")).status == VerificationStatus.UNAVAILABLE


async def test_the_verifier_accepts_revokes_and_expires_on_our_store(store: Store) -> None:
    """agno's ``ServiceAccountVerifier`` on our store: a live token verifies and its use is recorded;
    a revoked or expired one does not; an unknown one is invalid."""
    live, revoked, expired = "agno_pat_live", "agno_pat_revoked", "agno_pat_expired"
    await call(store.db.create_service_account(account("sa-1", "live", 100, token_hash=hash_token(live))))
    await call(store.db.create_service_account(account("sa-2", "gone", 100, token_hash=hash_token(revoked))))
    await call(store.db.update_service_account("sa-2", revoked_at=150))
    await call(
        store.db.create_service_account(account("sa-3", "old", 100, token_hash=hash_token(expired), expires_at=200))
    )
    verifier = ServiceAccountVerifier(store.db, cache_ttl_seconds=0)
    result = await verifier.verify(live)
    assert result.ok and result.account is not None and result.account.principal == "sa:live"
    assert isinstance(store.raw.agno_service_accounts.find_one({"_id": "sa-1"})["last_used_at"], int)
    for token in (revoked, expired, "agno_pat_unknown"):
        assert (await verifier.verify(token)).status == VerificationStatus.INVALID, token


# --- plans without a server --------------------------------------------------------------------------------


def test_create_is_an_insert_only_upsert_that_knows_its_own_token() -> None:
    fields = ServiceAccountFields.from_dict(dict(A))
    commands, answer = drive(ops.create_plan(fields), [None])
    (create,) = commands
    assert create.op == "find_one_and_update" and create.resend is True and answer is None
    document = create.kwargs["update"]["$setOnInsert"]
    assert list(create.kwargs["update"]) == ["$setOnInsert"] and document["_id"] == "sa-a" and document["active"]
    # The resend finds its own first arrival (its token): success. Another create's token: refused.
    plan = ops.create_plan(fields)
    first = next(plan)
    assert isinstance(first, Command)
    token = first.kwargs["update"]["$setOnInsert"]["_op"]
    assert token != document["_op"]  # every call has its own token
    with pytest.raises(StopIteration):
        plan.send({"_id": "sa-a", "_op": token})
    with pytest.raises(ops.ServiceAccountConflictError) as error:
        drive(ops.create_plan(fields), [{"_id": "sa-a", "_op": "someone else"}])
    assert error.value.field == "id"
    # A revoked account is stored without the marker, so it holds no name.
    assert "active" not in ServiceAccountFields.from_dict(dict(D)).document("t", 1)


def test_a_duplicate_key_names_its_constraint_and_an_id_race_is_sent_again() -> None:
    fields = ServiceAccountFields.from_dict(dict(A))

    def duplicate(pattern: dict[str, int]) -> DuplicateKeyError:
        return DuplicateKeyError("E11000", 11000, {"keyPattern": pattern, "errmsg": "E11000 duplicate key"})

    for pattern, field in (({"name": 1}, "name"), ({"token_hash": 1}, "token_hash")):
        with pytest.raises(ops.ServiceAccountConflictError) as error:
            drive(ops.create_plan(fields), [duplicate(pattern)])
        assert error.value.field == field
    commands, answer = drive(ops.create_plan(fields), [duplicate({"_id": 1}), None])
    assert len(commands) == 2 and commands[0] == commands[1] and answer is None
    message_only = DuplicateKeyError("E11000 duplicate key error collection: x index: active_name dup key", 11000)
    assert ops.conflict_field(message_only) == "name"


def test_updates_set_whole_values_and_revocation_drops_the_marker() -> None:
    assert ops.update_spec({"last_used_at": 5}) == {"$set": {"last_used_at": 5}}
    assert ops.update_spec({"revoked_at": 7}) == {"$set": {"revoked_at": 7}, "$unset": {"active": ""}}
    assert ops.update("x", {"last_used_at": 5}, False).resend is True
    assert ops.update("x", {"last_used_at": 5}, True).op == "find_one_and_update"


def test_delete_after_a_lost_reply_reads_whether_it_is_gone() -> None:
    command = ops.delete("sa-a")
    assert command.resend is False
    commands, answer = drive(ops.delete_plan("sa-a"), [lost(command), None])
    assert answer is True and [c.op for c in commands] == ["delete_one", "find_one"]
    commands, answer = drive(ops.delete_plan("sa-a"), [lost(command), {"_id": "sa-a"}, Written(deleted_count=0)])
    assert answer is True and len(commands) == 3  # it was there at the check read
    with pytest.raises(ReplyLost):
        drive(ops.delete_plan("sa-a"), [lost(command), {"_id": "sa-a"}] * ops.SEND_ROUNDS)
    assert drive(ops.delete_plan("sa-a"), [Written(deleted_count=0)])[1] is False


# --- lost replies on a real server -------------------------------------------------------------------------


def find_and_modify_of(account_id: str) -> Any:
    return lambda name, command: name == "findAndModify" and command.get("query", {}).get("_id") == account_id


async def test_a_create_whose_reply_is_lost_is_recognised_as_ours(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.get_service_accounts())  # indexes built before anything is armed
    proxy.drop_next(find_and_modify_of("sa-a"))
    assert await call(db.create_service_account(dict(A))) == A  # resent, and recognised by its token
    assert proxy.dropped and raw.agno_service_accounts.count_documents({}) == 1
    with pytest.raises(ops.ServiceAccountConflictError):  # a second create of the same dict is not a resend
        through.direct.create_service_account(dict(A))
    # A refused create whose reply is lost is still refused when resent, and writes nothing.
    proxy.drop_next(find_and_modify_of("sa-x"))
    with pytest.raises(ops.ServiceAccountConflictError) as error:
        await call(db.create_service_account(account("sa-x", "ci", 200)))
    assert error.value.field == "name" and len(proxy.dropped) == 2
    assert raw.agno_service_accounts.count_documents({}) == 1


async def test_updates_and_deletes_whose_replies_are_lost_answer_right(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    await call(db.create_service_account(dict(A)))
    proxy.drop_next("update")
    assert await call(db.update_service_account("sa-a", return_record=False, last_used_at=500)) is None
    proxy.drop_next(find_and_modify_of("sa-a"))
    row = await call(db.update_service_account("sa-a", revoked_at=600))
    assert row is not None and (row["last_used_at"], row["revoked_at"]) == (500, 600)
    stored = raw.agno_service_accounts.find_one({"_id": "sa-a"})
    assert (stored["last_used_at"], stored["revoked_at"], "active" in stored) == (500, 600, False)
    proxy.drop_next("delete")
    assert await call(db.delete_service_account("sa-a")) is True
    assert len(proxy.dropped) == 3 and raw.agno_service_accounts.count_documents({}) == 0
    assert await call(db.delete_service_account("sa-a")) is False


# --- AgentOS end to end ------------------------------------------------------------------------------------


ROOT = {"Authorization": "Bearer root-key"}


@pytest.fixture
def accounts(mongodb_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client[db_name].agno_service_accounts
    client.close()


def agentos_app(db: MongoDb | AsyncMongoDb) -> Any:
    """AgentOS guarded by a security key, with its verifier cache off (every request asks the store)."""
    settings = AgnoAPISettings(os_security_key="root-key", service_account_cache_ttl_seconds=0)
    agent = Agent(id="helper", name="Helper", db=db)  # never run: no model is called
    return AgentOS(id="sa-os", agents=[agent], db=db, settings=settings, telemetry=False).get_app()


def test_an_agno_pat_token_minted_on_our_store_authenticates_until_revoked(
    os_db: MongoDb | AsyncMongoDb, accounts: Any
) -> None:
    with TestClient(agentos_app(os_db)) as client:
        minted = client.post("/service-accounts", json={"name": "ci-bot"}, headers=ROOT)
        assert minted.status_code == 201, minted.text
        body = minted.json()
        token = body["token"]
        assert token.startswith("agno_pat_") and body["principal"] == "sa:ci-bot"
        stored = accounts.find_one({"_id": body["id"]})
        assert stored["token_hash"] == hash_token(token) and token not in str(stored)  # only the hash is kept
        assert (stored["active"], stored["revoked_at"], stored["last_used_at"]) == (True, None, None)
        pat = {"Authorization": f"Bearer {token}"}

        assert client.get("/config", headers=pat).status_code == 200  # config:read is a default scope
        assert isinstance(accounts.find_one({"_id": body["id"]})["last_used_at"], int)  # the verifier's touch
        assert client.get("/service-accounts", headers=pat).status_code == 403  # the stored scopes apply
        assert client.get("/config", headers={"Authorization": "Bearer agno_pat_unknown"}).status_code == 401

        listed = client.get("/service-accounts", headers=ROOT).json()
        assert listed["meta"]["total_count"] == 1 and [a["id"] for a in listed["data"]] == [body["id"]]
        again = client.post("/service-accounts", json={"name": "ci-bot"}, headers=ROOT)
        assert again.status_code == 409 and accounts.count_documents({}) == 1

        assert client.delete(f"/service-accounts/{body['id']}", headers=ROOT).status_code == 204
        assert client.get("/config", headers=pat).status_code == 401  # revoked: refused at once
        assert client.delete(f"/service-accounts/{body['id']}", headers=ROOT).status_code == 204  # idempotent
        assert client.delete("/service-accounts/missing", headers=ROOT).status_code == 404

        rotated = client.post("/service-accounts", json={"name": "ci-bot"}, headers=ROOT)  # the name is free again
        assert rotated.status_code == 201
        assert client.get("/config", headers={"Authorization": f"Bearer {rotated.json()['token']}"}).status_code == 200
        assert client.get("/config", headers=pat).status_code == 401
        listed = client.get("/service-accounts", headers=ROOT, params={"include_revoked": "false"}).json()
        assert [a["id"] for a in listed["data"]] == [rotated.json()["id"]]
    assert accounts.count_documents({"name": "ci-bot"}) == 2
    assert accounts.count_documents({"name": "ci-bot", "active": True}) == 1


def test_concurrent_mints_of_one_name_over_http_have_one_winner(os_db: MongoDb | AsyncMongoDb, accounts: Any) -> None:
    """Racing ``POST /service-accounts`` all pass the route's name check; the store's partial unique
    index refuses all but one, which AgentOS answers with 409 (its ``IntegrityError`` branch)."""
    n = 6
    with TestClient(agentos_app(os_db)) as client:
        barrier = threading.Barrier(n)

        def mint(_: int) -> int:
            barrier.wait()
            return client.post("/service-accounts", json={"name": "racer"}, headers=ROOT).status_code

        with ThreadPoolExecutor(n) as pool:
            codes = sorted(pool.map(mint, range(n)))
    assert codes == [201] + [409] * (n - 1), codes
    assert accounts.count_documents({"name": "racer"}) == 1
