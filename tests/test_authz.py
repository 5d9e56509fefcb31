"""Authorization storage (agno's ``*_authz_*`` contract) through MongoDb / AsyncMongoDb.

Each test runs once per client flavour (``store`` in conftest) against a real wire server. The
differential tests play one scenario that calls every one of the 32 methods on agno's own
``SqliteDb`` / ``AsyncSqliteDb`` (``oracle``) and compare every answer exactly (shape, order, counts,
pages), timestamps the stores stamp themselves aside. Concurrency: N writers race
``set_authz_role_policies`` / ``replace_authz_subject_roles`` / ``upsert_authz_policy`` on one role or
subject. Lost replies: every write is resendable; :class:`ReplyDroppingProxy` shows a resend after the
server applied the first arrival changes nothing. ``delete_authz_role`` is stepped one command at a
time to show no intermediate state grants more than before or after.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from agno.db.base import AsyncBaseDb, BaseDb
from agno.db.schemas.authz import AUTHZ_TABLE_SCHEMAS
from agno.os.authz._db import supports_authz
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.errors import CorruptDocumentError
from agno_mongo.ops import authz as ops
from agno_mongo.ops.command import Written
from tests import plans
from tests.conftest import Store, assert_refused, call
from tests.differential import normalised

METHODS = sorted(
    name
    for name in vars(BaseDb)
    if "authz" in name and callable(vars(BaseDb)[name]) and not name.endswith("_table_name")
)


def test_the_contract_has_32_methods_and_both_classes_implement_them() -> None:
    assert len(METHODS) == 32, METHODS
    for name in METHODS:
        assert getattr(MongoDb, name) is not getattr(BaseDb, name), name
        assert getattr(AsyncMongoDb, name) is not getattr(AsyncBaseDb, name), name


async def prepared(oracle: Any) -> Any:
    """agno's store with its six authz tables created (AsyncSqliteDb writes nothing to a missing table)."""
    for table_type in AUTHZ_TABLE_SCHEMAS:
        table = oracle._get_table(table_type, create_table_if_not_found=True)
        await call(table)
    return oracle


def user(email: str | None, name: str | None, created_at: int, metadata: Any = None, **extra: Any) -> dict[str, Any]:
    """A directory row as agno's ``UserDirectory._write`` sends it."""
    return {
        "email": email,
        "name": name,
        "disabled": False,
        "created_at": created_at,
        "updated_at": created_at,
        "metadata": metadata,
        **extra,
    }


DAY = 86400
USERS = [
    ("u3", user("b@x.io", None, 10 * DAY + 5, {"team": "red", "a.b": {"$x": [1, 2]}})),
    ("u1", user(None, "Zed", 10 * DAY + 5)),
    ("u2", user("A@X.io", "amy", 10 * DAY + 5, {})),
    ("u0", user("b@x.io", "bob", 9 * DAY, ("tuple", 1))),
    ("u4", user(None, None, 12 * DAY, "just text")),
    ("u5", user("50%_off@shop", "Ünïcode", 12 * DAY + 7, {"n": 1 << 70})),
]

AUDIT = [
    {"event_id": "e3", "created_at": 10, "actor": "admin", "action": "role.set", "target": "viewer", "after": "[1]"},
    {"event_id": "e1", "created_at": 10, "actor": None, "action": "role.assigned", "target": "alice"},
    {"event_id": "e2", "created_at": 10, "actor": "Admin", "action": "user.disabled", "target": "50%_off"},
    {"event_id": "e0", "created_at": 5, "actor": "root", "action": "role.removed", "target": None, "before": "[]"},
]
DECISIONS = [
    {"event_id": "d1", "created_at": 7, "actor": "alice", "action": "access.allowed", "target": "GET /agents"},
    {
        "event_id": "d2",
        "created_at": 8,
        "actor": "bob",
        "action": "access.denied",
        "target": "POST /agents/x/runs",
        "token_ref": "jti-1",
        "required": '["agents:x:run"]',
        "scopes": "[]",
    },
]


async def play(db: Any) -> list[tuple[str, Any]]:
    """Every authz method, in an order that exercises each branch; ``(label, answer)`` per call."""
    out: list[tuple[str, Any]] = []

    async def do(label: str, method: str, *args: Any, **kwargs: Any) -> None:
        out.append((label, await call(getattr(db, method)(*args, **kwargs))))

    # policy
    editor = [
        ("agents:*", "run", "allow"),
        ("agents:*", "read", "allow"),
        ("agents:x", "run", "deny"),
        ("agents:*", "run", "deny"),  # the same grant again: the last effect wins
        ("a.b", "$x", "allow"),
    ]
    await do("set editor", "set_authz_role_policies", "editor", editor)
    await do("set viewer", "set_authz_role_policies", "viewer", [("agents:*", "read", "allow")])
    for role in ("editor", "viewer", "nobody"):
        await do(f"policies {role}", "get_authz_role_policies", role)
    await do("policies many", "get_authz_policies", ["viewer", "editor", "nobody", "viewer"])
    await do("policies none", "get_authz_policies", [])
    await do("add", "upsert_authz_policy", role="viewer", resource="teams:*", action="read", effect="allow")
    await do("flip", "upsert_authz_policy", role="viewer", resource="agents:*", action="read", effect="deny")
    await do("new role", "upsert_authz_policy", role="fresh", resource="x", action="y", effect="allow")
    await do("again", "upsert_authz_policy", role="fresh", resource="x", action="y", effect="allow")
    await do("policies viewer 2", "get_authz_role_policies", "viewer")
    await do("policies fresh", "get_authz_role_policies", "fresh")
    await do("del resource", "delete_authz_policy", role="editor", resource="agents:x")
    await do("policies editor 2", "get_authz_role_policies", "editor")
    await do("del action", "delete_authz_policy", role="editor", action="read")
    await do("policies editor 3", "get_authz_role_policies", "editor")
    await do("del both", "delete_authz_policy", role="editor", resource="a.b", action="$x")
    await do("del nothing", "delete_authz_policy", role="editor", resource="none", action="run")
    await do("policies editor 4", "get_authz_role_policies", "editor")
    await do("del all", "delete_authz_policy", role="fresh")
    await do("fresh is role", "authz_name_is_role", "fresh")
    await do("set empty", "set_authz_role_policies", "emptied", [])
    await do("emptied is role", "authz_name_is_role", "emptied")
    await do("roles 1", "list_authz_roles")
    # grouping
    for subject, role in [
        ("alice", "editor"),
        ("alice", "viewer"),
        ("alice", "editor"),
        ("bob", "viewer"),
        ("team", "viewer"),
        ("carol", "team"),
        ("zoe", "viewer"),
    ]:
        await do(f"assign {subject} {role}", "assign_authz_role", subject, role)
    for subject in ("alice", "bob", "nobody"):
        await do(f"direct {subject}", "get_authz_direct_roles", subject)
    await do("many", "get_authz_direct_roles_many", ["alice", "bob", "nobody", "alice", "carol"])
    await do("many none", "get_authz_direct_roles_many", [])
    out.append(("subjects viewer", sorted(await call(db.list_authz_role_subjects("viewer")))))
    for name in ("viewer", "alice", "team", "editor", "nobody", "assigned-only"):
        await do(f"is role {name}", "authz_name_is_role", name)
    await do("unassign", "unassign_authz_role", "alice", "viewer")
    await do("unassign again", "unassign_authz_role", "alice", "viewer")
    await do("unassign unknown", "unassign_authz_role", "zed", "viewer")
    await do("direct alice 2", "get_authz_direct_roles", "alice")
    await do("replace", "replace_authz_subject_roles", "alice", "admin")
    await do("replace new", "replace_authz_subject_roles", "dave", "viewer")
    await do("replace same", "replace_authz_subject_roles", "dave", "viewer")
    await do("direct alice 3", "get_authz_direct_roles", "alice")
    await do("direct dave", "get_authz_direct_roles", "dave")
    await do("roles 2", "list_authz_roles")
    # role metadata
    meta = {"name": "Viewer", "description": "reads", "is_default": True, "created_at": 1, "updated_at": 1}
    await do("meta viewer", "upsert_authz_role_meta", "viewer", meta)
    await do("meta team", "upsert_authz_role_meta", "team", {**meta, "name": None, "is_default": False})
    await do("meta editor", "upsert_authz_role_meta", "editor", {"is_default": False, "created_at": 2, "updated_at": 2})
    await do("meta update", "upsert_authz_role_meta", "viewer", {**meta, "name": "V2", "updated_at": 5})
    await do("meta get", "get_authz_role_meta", "viewer")
    await do("meta get editor", "get_authz_role_meta", "editor")
    await do("meta get none", "get_authz_role_meta", "nobody")
    await do("meta list", "list_authz_role_meta")
    await do("meta delete", "delete_authz_role_meta", "editor")
    await do("meta delete again", "delete_authz_role_meta", "editor")
    await do("meta list 2", "list_authz_role_meta")
    # deleting a role: its policy, both directions of its grouping, its metadata
    await do("delete team", "delete_authz_role", "team")
    for name in ("carol", "team"):
        await do(f"after team {name}", "get_authz_direct_roles", name)
    await do("team is role", "authz_name_is_role", "team")
    await do("meta team gone", "get_authz_role_meta", "team")
    await do("delete viewer", "delete_authz_role", "viewer")
    await do("delete unknown", "delete_authz_role", "unknown")
    await do("viewer subjects", "list_authz_role_subjects", "viewer")
    await do("viewer policies", "get_authz_role_policies", "viewer")
    await do("after viewer", "get_authz_direct_roles_many", ["bob", "zoe", "dave", "alice"])
    await do("roles 3", "list_authz_roles")
    await do("meta list 3", "list_authz_role_meta")
    # the user directory
    for user_id, values in USERS:
        await do(f"user {user_id}", "upsert_authz_user", user_id, dict(values))
    await do("get u3", "get_authz_user", "u3")
    await do("get u0", "get_authz_user", "u0")
    await do("get u5", "get_authz_user", "u5")
    await do("get none", "get_authz_user", "nobody")
    profile = {**USERS[1][1], "name": "Zed 2", "disabled": True, "updated_at": 10 * DAY + 9}
    await do("edit u1", "upsert_authz_user", "u1", profile)  # disabled never overwritten
    await do("get u1", "get_authz_user", "u1")
    await do("disable u2", "set_authz_user_disabled", "u2", True)
    await do("edit u2", "upsert_authz_user", "u2", {**USERS[2][1], "disabled": False})  # stays disabled
    await do("edit u3", "upsert_authz_user", "u3", {**USERS[0][1], "metadata": None, "name": "Trey"})
    await do("get u3 2", "get_authz_user", "u3")  # metadata None kept what was stored
    await do(
        "partial u4",
        "upsert_authz_user",
        "u4",
        {"email": "four@x.io", "disabled": True, "created_at": 3, "updated_at": 4},
    )
    await do("get u4", "get_authz_user", "u4")
    for user_id in ("u2", "u1", "nobody"):
        await do(f"disabled {user_id}", "is_authz_user_disabled", user_id)
    sorts = ["created_at", "updated_at", "id", "email", "name", "disabled", "bogus"]
    for sort_by in sorts:
        for order in ("desc", "asc", "ASC"):
            await do(f"list {sort_by} {order}", "list_authz_users", sort_by=sort_by, order=order)
    for kwargs in [
        {},
        {"include_disabled": False},
        {"search": "X.IO"},
        {"search": "b@"},
        {"search": "50%"},
        {"search": "%"},
        {"search": "_"},
        {"search": "u"},
        {"search": "ünï"},  # SQLite folds ASCII only: no match for the capital Ü
        {"search": "Ünï"},
        {"search": ""},
        {"limit": 2},
        {"limit": 2, "offset": 2},
        {"limit": 2, "offset": 4},
        {"limit": 2, "offset": 9},
        {"limit": 0},
        {"limit": 3, "offset": 1, "sort_by": "email", "order": "asc"},
        {"limit": 2, "offset": 3, "sort_by": "name"},
        {"include_disabled": False, "search": "x", "sort_by": "id", "order": "asc"},
    ]:
        await do(f"list {kwargs}", "list_authz_users", **kwargs)
        if "limit" not in kwargs:
            count_kwargs = {k: v for k, v in kwargs.items() if k in ("include_disabled", "search")}
            await do(f"count {kwargs}", "count_authz_users", **count_kwargs)
    await do("status", "count_authz_users_by_status")
    await do("ids", "list_authz_user_ids")
    await do("ids enabled", "list_authz_user_ids", include_disabled=False)
    await do("by day", "count_authz_users_by_day")
    await do("by day from", "count_authz_users_by_day", starting_at=10 * DAY + 5)
    await do("by day window", "count_authz_users_by_day", starting_at=10 * DAY, ending_before=12 * DAY)
    await do("by day empty", "count_authz_users_by_day", starting_at=100 * DAY)
    await do("delete u5", "delete_authz_user", "u5")
    await do("delete u5 again", "delete_authz_user", "u5")
    await do("get u5 gone", "get_authz_user", "u5")
    await do("tombstone", "set_authz_user_disabled", "ghost", True)
    await do("ghost disabled", "is_authz_user_disabled", "ghost")
    await do("enable ghost", "set_authz_user_disabled", "ghost", False)
    await do("ghost disabled 2", "is_authz_user_disabled", "ghost")
    await do("status 2", "count_authz_users_by_status")
    await do("ghost", "get_authz_user", "ghost")  # the stamped times are masked below
    # audit trails
    for event in AUDIT:
        await do(f"event {event['event_id']}", "record_authz_audit_event", dict(event))
    await do("event dup", "record_authz_audit_event", {**AUDIT[0], "action": "changed"})  # ignored
    for event in DECISIONS:
        await do(f"decision {event['event_id']}", "record_authz_decision", dict(event))
    for decisions in (False, True):
        for sort_by in ("created_at", "actor", "action", "target", "event_id", "bogus", "token_ref"):
            for order in ("desc", "asc", "DESC", "sideways"):
                await do(
                    f"read {decisions} {sort_by} {order}",
                    "read_authz_audit_events",
                    sort_by=sort_by,
                    order=order,
                    decisions=decisions,
                )
        for kwargs in [{"search": "ROLE"}, {"search": "admin"}, {"search": "50%"}, {"search": "GET /"}, {}]:
            await do(f"read {decisions} {kwargs}", "read_authz_audit_events", decisions=decisions, **kwargs)
            await do(f"count {decisions} {kwargs}", "count_authz_audit_events", decisions=decisions, **kwargs)
        for limit, offset in ((1, 0), (2, 1), (2, 3), (0, 0), (5, 10)):
            await do(
                f"page {decisions} {limit} {offset}", "read_authz_audit_events", limit, offset, decisions=decisions
            )
    return out


STAMPED = {"ghost", "tombstone", "enable ghost", "disable u2", "status 2"}


def masked(answers: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Times the stores stamp themselves (the kill switch's ``updated_at``, a tombstone's) masked, in
    user listings too (u2 was disabled); the listings' order is still compared."""
    out = []
    for label, answer in answers:
        if label in STAMPED or label.startswith("list "):
            answer = normalised(answer)
        out.append((label, answer))
    return out


async def test_every_method_answers_as_agnos_sqlite_store(store: Store, oracle: Any) -> None:
    expected = await play(await prepared(oracle))
    actual = await play(store.db)
    assert len(actual) == len(expected)
    for (label, mine), (_, theirs) in zip(masked(actual), masked(expected), strict=True):
        assert mine == theirs, label


async def test_listings_whose_order_depends_on_the_clock_match_too(store: Store, oracle: Any) -> None:
    """The kill switch stamps ``updated_at`` now, so the listing by ``updated_at`` moves the user first."""
    for db in (await prepared(oracle), store.db):
        for user_id, values in USERS[:3]:
            await call(db.upsert_authz_user(user_id, dict(values)))
        await call(db.set_authz_user_disabled("u1", True))
        await call(db.set_authz_user_disabled("new", True))
    for kwargs in ({"sort_by": "updated_at"}, {"sort_by": "updated_at", "order": "asc"}, {"sort_by": "email"}):
        theirs = [row["id"] for row in await call(oracle.list_authz_users(**kwargs))]
        mine = [row["id"] for row in await call(store.db.list_authz_users(**kwargs))]
        assert mine == theirs, kwargs


async def test_list_authz_role_subjects_is_sorted(store: Store, oracle: Any) -> None:
    """agno's SQLite answers the holders in assignment order (its rowid), which the contract leaves open
    and its one caller (``NativePolicyEngine.role_subjects``) sorts; ours come sorted. Same set."""
    for db in (await prepared(oracle), store.db):
        await call(db.assign_authz_role("s1", "zz"))
        await call(db.assign_authz_role("s3", "a"))
        for subject in ("s3", "s1", "s2"):
            await call(db.assign_authz_role(subject, "r"))
    assert await call(oracle.list_authz_role_subjects("r")) == ["s3", "s1", "s2"]
    assert await call(store.db.list_authz_role_subjects("r")) == ["s1", "s2", "s3"]


# --- agno's support check -----------------------------------------------------------------------------------


async def test_agno_sees_authorization_support(store: Store) -> None:
    """``agno.os.authz._db.supports_authz``: probes a sync store by calling, an async one by override."""
    assert supports_authz(store.db)
    assert await call(store.db.authz_name_is_role("__agno_authz_probe__")) is False


# --- documents ----------------------------------------------------------------------------------------------


async def test_one_document_per_name_holds_its_policies_and_its_roles(store: Store) -> None:
    db = store.db
    await call(db.set_authz_role_policies("team", [("agents:*", "run", "allow")]))
    await call(db.assign_authz_role("team", "viewer"))
    await call(db.assign_authz_role("carol", "team"))
    names = store.raw.agno_authz_policy
    assert names.find_one({"_id": "team"}) == {
        "_id": "team",
        "policies": [{"resource": "agents:*", "action": "run", "effect": "allow"}],
        "roles": ["viewer"],
    }
    assert names.find_one({"_id": "carol"}) == {"_id": "carol", "roles": ["team"]}
    store.commands.clear()
    await call(db.set_authz_role_policies("team", [("a", "b", "deny"), ("c", "d", "allow")]))
    await call(db.replace_authz_subject_roles("carol", "admin"))
    assert store.commands.writes() == ["update", "update"]  # one single-document write each
    assert {index["name"] for index in names.list_indexes()} >= {"_id_", "roles_subject", "carries_policy"}


async def test_reads_are_never_cached(store: Store) -> None:
    """A change made by another process (here: straight in MongoDB) is seen on the next call."""
    db = store.db
    await call(db.assign_authz_role("alice", "admin"))
    assert await call(db.get_authz_direct_roles("alice")) == ["admin"]
    store.raw.agno_authz_policy.update_one({"_id": "alice"}, {"$set": {"roles": []}})
    assert await call(db.get_authz_direct_roles("alice")) == []
    await call(db.upsert_authz_user("u", user(None, None, 1)))
    store.raw.agno_authz_users.update_one({"_id": "u"}, {"$set": {"disabled": True}})
    assert await call(db.is_authz_user_disabled("u")) is True


async def test_a_corrupt_document_is_not_handed_to_agno(store: Store) -> None:
    store.raw.agno_authz_policy.insert_one({"_id": "bad", "policies": [{"resource": 1}]})
    with pytest.raises(CorruptDocumentError) as error:
        await call(store.db.get_authz_role_policies("bad"))
    assert error.value.document_id == "bad"
    store.raw.agno_authz_users.insert_one({"_id": "u", "disabled": "yes", "created_at": 1, "updated_at": 1})
    with pytest.raises(CorruptDocumentError):
        await call(store.db.get_authz_user("u"))


# --- bad input ----------------------------------------------------------------------------------------------

META_OK = {"is_default": False, "created_at": 1, "updated_at": 1}
USER_OK = {"disabled": False, "created_at": 1, "updated_at": 1}
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("get_authz_policies", {"roles": "admin"}, "roles"),
    ("get_authz_policies", {"roles": [{"$ne": None}]}, "roles[0]"),
    ("get_authz_role_policies", {"role": {"$gt": ""}}, "role"),
    ("set_authz_role_policies", {"role": "r", "rows": [("a", "b")]}, "rows[0]"),
    ("set_authz_role_policies", {"role": "r", "rows": [("a", "b", None)]}, "rows[0].effect"),
    ("set_authz_role_policies", {"role": "r", "rows": "abc"}, "rows"),
    ("set_authz_role_policies", {"role": None, "rows": []}, "role"),
    ("upsert_authz_policy", {"role": "r", "resource": "a", "action": 1, "effect": "allow"}, "action"),
    ("upsert_authz_policy", {"role": "r", "resource": "\ud800", "action": "a", "effect": "allow"}, "resource"),
    ("delete_authz_policy", {"role": "r", "resource": {"$exists": True}}, "resource"),
    ("get_authz_direct_roles", {"subject": 7}, "subject"),
    ("get_authz_direct_roles_many", {"subjects": ["a", None]}, "subjects[1]"),
    ("list_authz_role_subjects", {"role": ["a"]}, "role"),
    ("authz_name_is_role", {"name": None}, "name"),
    ("assign_authz_role", {"subject": "a", "role": {"$ne": 1}}, "role"),
    ("unassign_authz_role", {"subject": b"a", "role": "r"}, "subject"),
    ("replace_authz_subject_roles", {"subject": "a", "role": None}, "role"),
    ("delete_authz_role", {"role": {"$regex": "."}}, "role"),
    ("get_authz_role_meta", {"slug": None}, "slug"),
    ("upsert_authz_role_meta", {"slug": "r", "values": {**META_OK, "is_default": "yes"}}, "values.is_default"),
    ("upsert_authz_role_meta", {"slug": "r", "values": {**META_OK, "created_at": None}}, "values.created_at"),
    ("upsert_authz_role_meta", {"slug": "r", "values": {"slug": "other"}}, "values.slug"),
    ("upsert_authz_role_meta", {"slug": "r", "values": {**META_OK, "colour": "red"}}, "values.colour"),
    ("upsert_authz_role_meta", {"slug": "r", "values": ["name"]}, "values"),
    ("delete_authz_role_meta", {"slug": 1}, "slug"),
    ("get_authz_user", {"user_id": {"$ne": None}}, "user_id"),
    ("list_authz_users", {"limit": -1}, "limit"),
    ("list_authz_users", {"offset": "1"}, "offset"),
    ("list_authz_users", {"sort_by": {"$x": 1}}, "sort_by"),
    ("list_authz_users", {"sort_by": "user_metadata"}, "sort_by"),
    ("list_authz_users", {"order": 1}, "order"),
    ("list_authz_users", {"include_disabled": "no"}, "include_disabled"),
    ("list_authz_users", {"search": {"$regex": "."}}, "search"),
    ("count_authz_users", {"search": 5}, "search"),
    ("list_authz_user_ids", {"include_disabled": None}, "include_disabled"),
    ("count_authz_users_by_day", {"starting_at": "yesterday"}, "starting_at"),
    ("count_authz_users_by_day", {"ending_before": 1 << 64}, "ending_before"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "disabled": 1}}, "values.disabled"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "id": "v"}}, "values.id"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "created_at": 1.5}}, "values.created_at"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "email": {"$x": 1}}}, "values.email"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "created_at": None}}, "values.created_at"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "metadata": {1, 2}}}, "values.metadata"),
    ("upsert_authz_user", {"user_id": "u", "values": {**USER_OK, "user_metadata": "{}"}}, "values.user_metadata"),
    ("set_authz_user_disabled", {"user_id": "u", "disabled": "true"}, "disabled"),
    ("set_authz_user_disabled", {"user_id": None, "disabled": True}, "user_id"),
    ("delete_authz_user", {"user_id": ["u"]}, "user_id"),
    ("is_authz_user_disabled", {"user_id": {"$exists": True}}, "user_id"),
    ("record_authz_audit_event", {"values": {"created_at": 1, "action": "a"}}, "values.event_id"),
    ("record_authz_audit_event", {"values": {"event_id": "e", "created_at": 1}}, "values.action"),
    ("record_authz_audit_event", {"values": {"event_id": "e", "created_at": "1", "action": "a"}}, "values.created_at"),
    (
        "record_authz_audit_event",
        {"values": {"event_id": "e", "created_at": 1, "action": "a", "token_ref": "t"}},
        "values.token_ref",
    ),
    (
        "record_authz_decision",
        {"values": {"event_id": "e", "created_at": 1, "action": "a", "before": "x"}},
        "values.before",
    ),
    ("record_authz_decision", {"values": {"event_id": {"$gt": ""}, "created_at": 1, "action": "a"}}, "values.event_id"),
    ("read_authz_audit_events", {"limit": -5}, "limit"),
    ("read_authz_audit_events", {"order": None}, "order"),
    ("read_authz_audit_events", {"decisions": "yes"}, "decisions"),
    ("count_authz_audit_events", {"search": ["x"]}, "search"),
]


@pytest.mark.parametrize(("method", "kwargs", "field"), REFUSED, ids=[f"{m}-{f}" for m, _, f in REFUSED])
async def test_bad_input_is_refused_before_any_command(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


async def test_agnos_not_null_columns_are_required_even_for_an_existing_row(store: Store, oracle: Any) -> None:
    """agno's upsert is an ``INSERT ... ON CONFLICT``, so the proposed row needs every NOT NULL column
    even when the row exists (SQLite raises IntegrityError); ours refuses it before any command."""
    from sqlalchemy.exc import IntegrityError

    oracle = await prepared(oracle)
    for db in (oracle, store.db):
        await call(db.upsert_authz_user("u", user(None, None, 1)))
        await call(db.upsert_authz_role_meta("r", {"is_default": False, "created_at": 1, "updated_at": 1}))
    for values in ({"email": "e@x"}, {}, {"disabled": True, "created_at": 1}):
        with pytest.raises(IntegrityError):
            await call(oracle.upsert_authz_user("u", dict(values)))
    with pytest.raises(IntegrityError):
        await call(oracle.upsert_authz_role_meta("r", {"name": "R"}))
    await assert_refused(store, "upsert_authz_user", {"user_id": "u", "values": {"email": "e@x"}}, "values.disabled")
    await assert_refused(store, "upsert_authz_user", {"user_id": "u", "values": {}}, "values.disabled")
    await assert_refused(
        store, "upsert_authz_user", {"user_id": "u", "values": {"disabled": True, "created_at": 1}}, "values.updated_at"
    )
    await assert_refused(store, "upsert_authz_role_meta", {"slug": "r", "values": {"name": "R"}}, "values.is_default")


# --- plans without a server ---------------------------------------------------------------------------------

# These plans' tests never asked a plan to use every answer it is given.
drive = partial(plans.drive, use_every_answer=False)


def test_every_authz_write_is_resendable() -> None:
    """No write of this domain answers differently on a second arrival, so none is resend=False."""
    from pymongo.errors import DuplicateKeyError

    commands, _ = drive(
        ops.upsert_policy_plan("r", "a", "b", "allow"),
        [Written(matched_count=0), DuplicateKeyError("dup", 11000), Written(matched_count=1)],
    )
    assert [c.kwargs["update"] for c in commands] == [
        {"$set": {"policies.$.effect": "allow"}},
        {"$push": {"policies": {"resource": "a", "action": "b", "effect": "allow"}}},
        {"$set": {"policies.$.effect": "allow"}},
    ]
    built = [
        *commands,
        ops.set_policies("r", []),
        ops.delete_policy("r", None, None),
        ops.assign("s", "r"),
        ops.unassign("s", "r"),
        ops.replace_roles("s", "r"),
        ops.set_disabled("u", True, 1),
        ops.record_event(ops.AUDIT, {"event_id": "e"}),
        *drive(ops.delete_role_plan("r"), [Written(deleted_count=1), Written(), Written()])[0],
    ]
    assert all(command.resend for command in built)


def test_a_search_is_a_literal_ascii_folding_substring() -> None:
    assert ops.search_pattern("a.B%_\0é") == "[aA]\\.[bB]%_\\x00é"
    assert ops.search_pattern("x" * 300) == "[xX]" * 200


# --- concurrency --------------------------------------------------------------------------------------------

WRITERS = 8


def full_set(writer: int) -> list[tuple[str, str, str]]:
    return [(f"agents:w{writer}-{k}", "run", "allow" if k % 2 else "deny") for k in range(6)]


async def race(store: Store, calls: list[Any]) -> None:
    """Run zero-argument callables at once: threads on the sync class, tasks on the async one."""
    if store.is_async:
        await asyncio.gather(*(fn() for fn in calls))
        return
    barrier = threading.Barrier(len(calls))

    def run(fn: Any) -> None:
        barrier.wait()
        fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        for future in [pool.submit(run, fn) for fn in calls]:
            future.result()


async def test_racing_policy_replacements_leave_exactly_one_writers_full_set(store: Store) -> None:
    db = store.db
    for _ in range(3):
        await race(store, [lambda w=w: db.set_authz_role_policies("r", full_set(w)) for w in range(WRITERS)])
        stored = await call(db.get_authz_role_policies("r"))
        assert any(stored == sorted(full_set(w)) for w in range(WRITERS)), stored


async def test_a_reader_never_sees_a_mix_or_an_empty_role(store: Store) -> None:
    db = store.db
    sets = [sorted(full_set(0)), sorted(full_set(1))]
    await call(db.set_authz_role_policies("r", sets[0]))
    seen: list[Any] = []

    async def reads() -> None:
        for _ in range(30):
            seen.append(await call(db.get_authz_role_policies("r")))

    def reads_sync() -> None:
        for _ in range(30):
            seen.append(db.get_authz_role_policies("r"))

    writers = [lambda i=i: db.set_authz_role_policies("r", sets[i % 2]) for i in range(30)]
    if store.is_async:

        async def write_all() -> None:
            for writer in writers:
                await writer()

        await asyncio.gather(reads(), write_all())
    else:
        await race(store, [reads_sync, lambda: [writer() for writer in writers]])
    assert seen and all(value in sets for value in seen)


async def test_racing_role_replacements_leave_exactly_one_role(store: Store) -> None:
    db = store.db
    await call(db.assign_authz_role("alice", "old"))
    await race(store, [lambda w=w: db.replace_authz_subject_roles("alice", f"role{w}") for w in range(WRITERS)])
    roles = await call(db.get_authz_direct_roles("alice"))
    assert len(roles) == 1 and roles[0] in {f"role{w}" for w in range(WRITERS)}
    await race(store, [lambda w=w: db.replace_authz_subject_roles(f"new{w % 2}", f"r{w}") for w in range(WRITERS)])
    for subject in ("new0", "new1"):
        assert len(await call(db.get_authz_direct_roles(subject))) == 1


async def test_racing_grants_on_a_new_role_lose_none(store: Store) -> None:
    """N writers each add a different grant to a role nobody created yet, and flip one shared grant:
    every grant lands once (the create race on ``_id`` is resolved, not reported)."""
    db = store.db
    calls = [
        lambda w=w: db.upsert_authz_policy(role="fresh", resource=f"res{w}", action="run", effect="allow")
        for w in range(WRITERS)
    ] + [
        lambda w=w: db.upsert_authz_policy(role="fresh", resource="shared", action="run", effect=f"e{w}")
        for w in range(WRITERS)
    ]
    await race(store, calls)
    stored = await call(db.get_authz_role_policies("fresh"))
    assert [row for row in stored if row[0] != "shared"] == sorted((f"res{w}", "run", "allow") for w in range(WRITERS))
    assert len([row for row in stored if row[0] == "shared"]) == 1
    await race(store, [lambda w=w: db.assign_authz_role("newcomer", f"r{w}") for w in range(WRITERS)])
    assert await call(db.get_authz_direct_roles("newcomer")) == sorted(f"r{w}" for w in range(WRITERS))


async def test_a_profile_edit_racing_a_revocation_never_un_revokes(store: Store) -> None:
    db = store.db
    await call(db.upsert_authz_user("u", user("u@x", "U", 1)))
    calls = [lambda: db.set_authz_user_disabled("u", True)] + [
        lambda i=i: db.upsert_authz_user("u", {**user("u@x", f"U{i}", 1), "disabled": False}) for i in range(WRITERS)
    ]
    await race(store, calls)
    assert await call(db.is_authz_user_disabled("u")) is True


# --- deleting a role, one step at a time --------------------------------------------------------------------


def effective(db: MongoDb, subject: str) -> set[tuple[str, str, str]]:
    """Every (resource, action, effect) ``subject`` gets through its roles, transitively (as agno's
    native engine walks them)."""
    seen: set[str] = set()
    stack = list(db.get_authz_direct_roles(subject))
    while stack:
        role = stack.pop()
        if role not in seen:
            seen.add(role)
            stack.extend(db.get_authz_direct_roles(role))
    return {(r, a, e) for _, r, a, e in db.get_authz_policies(sorted(seen))}


def test_no_step_of_deleting_a_role_grants_more_than_before_or_after(mongodb_url: str, db_name: str) -> None:
    """``team`` denies one action and inherits ``viewer``; carol holds ``team``. Every state between the
    commands of ``delete_authz_role`` gives carol a subset of what she had before or has after, never
    the inherited grants without the deny."""
    client: MongoClient[Any] = MongoClient(mongodb_url)
    db = MongoDb(db_client=client, db_name=db_name)
    try:
        db.set_authz_role_policies("viewer", [("agents:*", "run", "allow")])
        db.set_authz_role_policies("team", [("agents:secret", "run", "deny")])
        db.assign_authz_role("team", "viewer")
        db.assign_authz_role("carol", "team")
        db.upsert_authz_role_meta("team", {"name": "T", "is_default": False, "created_at": 1, "updated_at": 1})
        before = effective(db, "carol")
        plan = ops.delete_role_plan("team")
        states = []
        step = next(plan)
        while True:
            result = db._execute(step)
            states.append((effective(db, "carol"), db.authz_name_is_role("team")))
            try:
                step = plan.send(result)
            except StopIteration:
                break
        after = effective(db, "carol")
        assert before == {("agents:*", "run", "allow"), ("agents:secret", "run", "deny")} and after == set()
        for granted, _ in states:
            assert granted in (before, after)
        assert states[0][0] == after  # the first step already revokes everything the role gave
        assert db.get_authz_role_meta("team") is None and not db.authz_name_is_role("team")
    finally:
        client.close()


# --- lost replies -------------------------------------------------------------------------------------------


def update_of(doc_id: str, key: str = "$push") -> Any:
    def match(name: str, command: dict[str, Any]) -> bool:
        updates = command.get("updates") or []
        return name == "update" and any(u.get("q", {}).get("_id") == doc_id and key in u.get("u", {}) for u in updates)

    return match


async def test_writes_whose_replies_are_lost_are_resent_harmlessly(through: SimpleNamespace) -> None:
    db, proxy, raw = through.db, through.proxy, through.raw
    # Indexes built before anything is armed.
    for method in ("list_authz_roles", "list_authz_role_meta", "list_authz_user_ids"):
        await call(getattr(db, method)())
    await call(db.read_authz_audit_events())
    await call(db.read_authz_audit_events(decisions=True))

    proxy.drop_next(update_of("r"))  # the guarded $push of a new grant: applied, reply lost
    await call(db.upsert_authz_policy(role="r", resource="a", action="run", effect="allow"))
    assert raw.agno_authz_policy.find_one({"_id": "r"})["policies"] == [
        {"resource": "a", "action": "run", "effect": "allow"}
    ]
    proxy.drop_next(update_of("alice", "$addToSet"))
    await call(db.assign_authz_role("alice", "r"))
    assert raw.agno_authz_policy.find_one({"_id": "alice"})["roles"] == ["r"]
    proxy.drop_next(update_of("ghost", "$set"))
    await call(db.set_authz_user_disabled("ghost", True))
    assert raw.agno_authz_users.count_documents({"_id": "ghost", "disabled": True}) == 1
    proxy.drop_next("insert")
    await call(db.record_authz_audit_event({"event_id": "e1", "created_at": 1, "action": "a"}))
    assert raw.agno_authz_audit.count_documents({}) == 1
    proxy.drop_next(update_of("r", "$set"))
    await call(db.set_authz_role_policies("r", [("b", "run", "deny"), ("a", "run", "allow")]))
    assert await call(db.get_authz_role_policies("r")) == [("a", "run", "allow"), ("b", "run", "deny")]
    proxy.drop_next(update_of("alice", "$set"))
    await call(db.replace_authz_subject_roles("alice", "r"))
    assert raw.agno_authz_policy.find_one({"_id": "alice"})["roles"] == ["r"]
    proxy.drop_next("delete")
    await call(db.delete_authz_role("r"))
    assert raw.agno_authz_policy.find_one({"_id": "alice"})["roles"] == []
    assert raw.agno_authz_policy.count_documents({"_id": "r"}) == 0
    assert len(proxy.dropped) == 7


def served(index: list[tuple[str, int]], equal: set[str], sort: list[tuple[str, int]]) -> bool:
    """Whether ``index`` serves ``sort`` after equality on ``equal`` (its prefix), in either direction."""
    keys = list(index)
    while keys and keys[0][0] in equal:
        keys.pop(0)
    flipped = [(field, -direction) for field, direction in sort]
    if not equal and sort in ([("_id", 1)], [("_id", -1)]):
        return True  # the _id index
    return keys[: len(sort)] in (sort, flipped)


INDEXES = {
    ops.NAMES: ops.NAMES_INDEXES,
    ops.META: ops.META_INDEXES,
    ops.USERS: ops.USER_INDEXES,
    ops.AUDIT: ops.EVENT_INDEXES,
    ops.DECISIONS: ops.EVENT_INDEXES,
}


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("list_authz_users", {}),
        ("list_authz_users", {"order": "asc", "include_disabled": False}),
        ("list_authz_users", {"sort_by": "updated_at"}),
        ("list_authz_users", {"sort_by": "id", "order": "asc"}),
        ("list_authz_user_ids", {}),
        ("read_authz_audit_events", {}),
        ("read_authz_audit_events", {"order": "asc", "decisions": True}),
        ("read_authz_audit_events", {"sort_by": "event_id"}),
        ("list_authz_role_meta", {}),
        ("list_authz_role_subjects", {"role": "r"}),
    ],
)
def test_the_default_listings_are_served_by_an_index(method: str, kwargs: dict[str, Any]) -> None:
    """The listings AgentOS pages through sort on an index (filter equality + sort, tie-breaker
    included). Sorting users by email/name or events by actor/action/target is an in-memory top-k sort,
    as it is in agno's SQL tables, which index none of those columns."""
    from agno_mongo.contract.authz import AuthzContract

    commands, _ = drive(getattr(AuthzContract(), method)(**kwargs), [[]])
    (command,) = commands
    sort = list(command.kwargs["sort"])
    equal = {key for key, value in command.kwargs["filter"].items() if not isinstance(value, dict)}
    assert any(served(list(index.document["key"].items()), equal, sort) for index in INDEXES[command.collection])
