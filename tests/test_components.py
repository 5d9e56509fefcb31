"""The component catalog (components, config versions, links) on PyMongo, PyMongo async and Motor.

agno declares these methods as plain (sync) methods even on ``AsyncBaseDb`` and calls them
synchronously, so they are bound on ``MongoDb`` only; on the async flavours the same plans are run
with :func:`~agno_mongo.drivers.run_async` (what ``AsyncMongoDb`` would bind), which proves them on
PyMongo async and Motor too.

The differential tests play each scenario on agno's own ``SqliteDb`` (the only agno store of this
domain that runs in-process; ``AsyncSqliteDb`` does not implement it) and compare every answer.
Also: a transaction cut by a dropped reply (nothing half-written), lost replies of a commit, of a
compare-and-set write inside a transaction and of a one-document write (answered once), a server
without transactions (``ReplicaSetRequiredError``, nothing written), N writers racing a
compare-and-set on one component (exactly one wins per round, no link lost) and the cycle check's
write-skew guard. ``save()`` / ``load()`` and the AgentOS routes: tests/test_agentos_components.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from agno.db.base import (
    ComponentArchivedError,
    ComponentCycleError,
    ComponentDependencyError,
    ComponentDraftRequiredError,
    ComponentLastConfigError,
    ComponentType,
    ComponentVersionConflictError,
)
from agno.db.sqlite import SqliteDb
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb, MongoDb, ReplicaSetRequiredError
from agno_mongo.contract.components import ComponentContract
from agno_mongo.drivers import run_async, run_sync
from agno_mongo.errors import InvalidInputError
from agno_mongo.ops import components as ops
from agno_mongo.ops.command import Plan
from tests.conftest import Store
from tests.differential import normalised

TIMES = frozenset({"created_at", "updated_at", "deleted_at"})
AGENT, TEAM = ComponentType.AGENT, ComponentType.TEAM
ERRORS = (
    ComponentVersionConflictError,
    ComponentArchivedError,
    ComponentDependencyError,
    ComponentCycleError,
    ComponentDraftRequiredError,
    ComponentLastConfigError,
    ValueError,
)
"""Most specific first: an outcome is the first of these the exception is."""


async def api(db: MongoDb | AsyncMongoDb, method: str, **kwargs: Any) -> Any:
    """Call a catalog method: bound on ``MongoDb``; on ``AsyncMongoDb`` the same plan, awaited."""
    if isinstance(db, AsyncMongoDb):
        return await run_async(db, getattr(ComponentContract, method)(db, **kwargs))
    return getattr(db, method)(**kwargs)


def outcome(call: Any) -> Any:
    try:
        return ("ok", call())
    except ERRORS as error:
        return ("raised", next(kind.__name__ for kind in ERRORS if isinstance(error, kind)))


@pytest.fixture
def sqlite(tmp_path: Any) -> Iterator[SqliteDb]:
    """agno's SqliteDb: the reference for this domain on every flavour."""
    db = SqliteDb(db_file=str(tmp_path / "oracle.sqlite"))
    for table_type in ("components", "component_configs", "component_links", "schedules"):
        db._get_table(table_type, create_table_if_not_found=True)
    yield db
    db.close()


class Both:
    """Plays each call on the store and on SqliteDb and asserts the answers agree."""

    def __init__(self, store: Store, oracle: SqliteDb) -> None:
        self.store, self.oracle = store, oracle

    async def __call__(self, method: str, **kwargs: Any) -> Any:
        theirs = outcome(lambda: getattr(self.oracle, method)(**kwargs))
        try:
            ours: Any = ("ok", await api(self.store.db, method, **kwargs))
        except ERRORS as error:
            ours = ("raised", next(kind.__name__ for kind in ERRORS if isinstance(error, kind)))
        assert normalised(ours, times=TIMES) == normalised(theirs, times=TIMES), (method, kwargs)
        return ours[1]


FROZEN = 1_750_000_000
"""The epoch second both stores stamp in the differential tests."""


class FrozenTime:
    """The ``time`` module with ``time()`` fixed at :data:`FROZEN`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time(self) -> float:
        return float(FROZEN)


@pytest.fixture
def both(store: Store, sqlite: SqliteDb, monkeypatch: pytest.MonkeyPatch) -> Both:
    """Both stores on one frozen clock: listings order by ``created_at`` (seconds) and then by id,
    so two stores stamping the same scenario either side of a second boundary would otherwise list
    it in different orders."""
    import agno.db.sqlite.sqlite as agno_sqlite

    import agno_mongo.contract.components as contract

    monkeypatch.setattr(contract, "now", lambda: FROZEN)
    monkeypatch.setattr(agno_sqlite, "time", FrozenTime())
    return Both(store, sqlite)


def member(child: str, version: int, position: int, kind: str = "member") -> dict[str, Any]:
    return {
        "link_kind": kind,
        "link_key": f"{kind}_{position}",
        "child_component_id": child,
        "child_version": version,
        "position": position,
        "meta": {"type": "agent"},
    }


# --- components -------------------------------------------------------------------------------------


async def test_component_rows_lifecycle_matches_sqlite(both: Both) -> None:
    row = await both("upsert_component", component_id="a1", component_type=AGENT, name="A", user_id="alice")
    assert row["component_id"] == "a1" and row["current_version"] is None
    await both("upsert_component", component_id="a2", component_type=AGENT, metadata={"k": [1, {"x.y": 2}]})
    await both("upsert_component", component_id="t1", component_type=TEAM, name="T", user_id="bob")
    await both("upsert_component", component_id="a1", name="A2", description="d", metadata={"m": 1}, user_id="alice")
    await both("upsert_component", component_id="a1", name="X", user_id="bob")  # another's: not found
    await both("upsert_component", component_id="a1", component_type=TEAM)  # the type is fixed
    await both("upsert_component", component_id="new")  # create needs a type
    await both("upsert_component", component_id="a1", current_version=1)  # no such version
    for kwargs in (
        {"component_id": "a1"},
        {"component_id": "a1", "component_type": TEAM},
        {"component_id": "a1", "user_id": "bob"},
        {"component_id": "a2", "user_id": "bob"},  # unowned: shared
        {"component_id": "nope"},
    ):
        await both("get_component", **kwargs)
    for kwargs in (
        {},
        {"component_type": AGENT},
        {"limit": 1},
        {"limit": 2, "offset": 1},
        {"limit": 0},
        {"exclude_component_ids": {"a2"}},
        {"user_id": "bob"},
        {"name": "A2"},
    ):
        await both("list_components", **kwargs)
    assert await both("delete_component", component_id="a1", user_id="bob") is False  # not the owner
    assert await both("delete_component", component_id="a1") is True
    assert await both("delete_component", component_id="a1") is False  # already archived
    await both("upsert_component", component_id="a1", name="Z")  # archived: immutable
    await both("get_component", component_id="a1")
    await both("get_component", component_id="a1", include_deleted=True)
    await both("list_components", include_deleted=True)
    await both("create_component_with_config", component_id="a1", component_type=AGENT, name="A", config={})
    assert await both("restore_component", component_id="a1", user_id="bob") is False
    assert await both("restore_component", component_id="a1") is True
    assert await both("restore_component", component_id="a1") is False  # not archived
    assert await both("delete_component", component_id="a2", hard_delete=True) is True
    await both("get_component", component_id="a2", include_deleted=True)
    await both("list_components")
    await both("delete_component", component_id="nope")


async def test_create_component_with_config_matches_sqlite(both: Both, store: Store) -> None:
    component, config = await both(
        "create_component_with_config",
        component_id="c1",
        component_type=AGENT,
        name="C",
        config={"name": "C", "tools": [{"$weird.key": 1}]},
        description="d",
        metadata={"owner": "x"},
        label="first",
        stage="published",
        notes="n",
        user_id="alice",
    )
    assert component["current_version"] == 1 and config["version"] == 1 and config["label"] == "first"
    await both("create_component_with_config", component_id="c1", component_type=AGENT, name="C", config={})
    await both("create_component_with_config", component_id="c2", component_type=AGENT, name="D", config={"a": 1})
    await both("get_config", component_id="c1")
    await both("get_config", component_id="c2")
    await both("get_config", component_id="c1", label="first")
    await both("list_configs", component_id="c1", include_config=True)
    stored = store.raw.agno_components.find_one({"_id": "c1"})
    assert stored["versions"] == 1 and "component_id" not in stored  # _id is the id
    assert stored["created_at"] == FROZEN == both.oracle.get_component("c1")["created_at"]


async def test_bad_input_is_refused_before_any_command(store: Store) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("get_component", {"component_id": {"$ne": None}}, "component_id"),
        ("upsert_component", {"component_id": "x", "component_type": "robot"}, "component_type"),
        ("upsert_component", {"component_id": "x", "metadata": [1]}, "metadata"),
        ("upsert_component", {"component_id": "x", "current_version": True}, "current_version"),
        ("list_components", {"limit": -1}, "limit"),
        ("list_components", {"exclude_component_ids": "abc"}, "exclude_component_ids"),
        ("upsert_config", {"component_id": "x", "stage": "live"}, "stage"),
        (
            "upsert_config",
            {"component_id": "x", "config": {}, "links": [{"child_component_id": "y"}]},
            "links[0].child_version",
        ),
        (
            "upsert_config",
            {"component_id": "x", "config": {}, "links": [{**member("y", 1, 0), "position": "1"}]},
            "links[0].position",
        ),
        ("upsert_config", {"component_id": "x", "config": "text"}, "config"),
        ("delete_config", {"component_id": "x", "version": None}, "version"),
        ("set_current_version", {"component_id": "x", "version": 0}, "version"),
        ("get_latest_configs", {"component_ids": [1]}, "component_ids[]"),
        ("delete_component", {"component_id": "x", "hard_delete": "yes"}, "hard_delete"),
    ]
    for method, kwargs, field in cases:
        store.commands.clear()
        with pytest.raises(InvalidInputError) as error:
            await api(store.db, method, **kwargs)
        assert error.value.field == field, (method, kwargs)
        assert store.commands.names == []
    # Bad stage / missing child_version are also agno's ValueError, with agno's message.
    with pytest.raises(ValueError, match="Invalid stage: live"):
        await api(store.db, "upsert_config", component_id="x", stage="live")
    with pytest.raises(ValueError, match="child_version is required for link to y"):
        await api(store.db, "upsert_config", component_id="x", links=[{"child_component_id": "y"}])


# --- configs -------------------------------------------------------------------------------------------


async def test_config_versions_match_sqlite(both: Both, store: Store) -> None:
    await both("upsert_component", component_id="a", component_type=AGENT, name="A", user_id="alice")
    await both("upsert_config", component_id="a")  # a new version needs a config
    await both("upsert_config", component_id="nope", config={})
    v1 = await both("upsert_config", component_id="a", config={"name": "one"}, label="l1", notes="n")
    assert (v1["version"], v1["stage"]) == (1, "draft")
    await both("upsert_config", component_id="a", config={"name": "two"}, label="l1")  # label taken
    await both("upsert_config", component_id="a", config={"name": "two"}, user_id="bob")  # not the owner
    await both("upsert_config", component_id="a", config={"name": "two"}, expected_latest_version=7)
    await both("upsert_config", component_id="a", config={"name": "two"}, expected_latest_version=1)
    await both("upsert_config", component_id="a", version=2, config={"name": "two'"}, notes="edited")
    await both("upsert_config", component_id="a", version=9, config={})
    await both("get_config", component_id="a")  # nothing published: the latest draft
    await both("get_current_config", component_id="a")
    published = await both(
        "upsert_config",
        component_id="a",
        config={"name": "three", "description": "", "metadata": {"v": 3}},
        stage="published",
        expected_current_version=0,
    )
    assert published["version"] == 3
    row = await both("get_component", component_id="a")
    assert (row["current_version"], row["name"], row["description"], row["metadata"]) == (3, "three", "", {"v": 3})
    await both("upsert_config", component_id="a", version=3, notes="no")  # published: immutable
    await both("upsert_config", component_id="a", config={"name": "4"}, stage="published", expected_current_version=0)
    await both("upsert_config", component_id="a", config={"name": "4"}, stage="published", expected_current_version=2)
    await both("upsert_config", component_id="a", version=2, stage="published", expected_current_version=3)
    await both("get_current_config", component_id="a")
    await both("get_latest_config", component_id="a")
    await both("set_current_version", component_id="a", version=1)  # a draft
    await both("set_current_version", component_id="a", version=3, expected_current_version=1)
    assert await both("set_current_version", component_id="a", version=3, expected_current_version=2) is True
    assert await both("set_current_version", component_id="a", version=3, user_id="bob") is False
    assert await both("set_current_version", component_id="a", version=42) is False
    await both("upsert_config", component_id="a", config={"name": "five"}, label="l5")
    await both("delete_config", component_id="a", version=3)  # published
    await both("delete_config", component_id="a", version=1, user_id="bob")
    assert await both("delete_config", component_id="a", version=4) is True  # the latest, a draft
    assert await both("delete_config", component_id="a", version=4) is False  # already a tombstone
    # The label was freed, and the number 4 is never reused: the high-water mark counts tombstones.
    assert (await both("upsert_config", component_id="a", config={"name": "six"}, label="l5"))["version"] == 5
    assert (await both("upsert_config", component_id="a", config={"name": "seven"}))["version"] == 6
    await both("get_config", component_id="a", version=4)
    await both("get_config", component_id="a", version=4, include_deleted=True)
    await both("get_config", component_id="a", label="l5")
    await both("get_config", component_id="a", version=3)
    await both("list_configs", component_id="a")
    await both("list_configs", component_id="a", include_config=True, include_deleted=True)
    await both("get_latest_configs", component_ids={"a", "nope"})
    await both("get_latest_configs", component_ids=set())
    await both("upsert_config", component_id="a", config={"name": "4"}, expected_latest_version=5)  # 6 is latest
    for version in (1, 5, 6, 2, 3):  # 2 is current, 3 published: both stay
        await both("delete_config", component_id="a", version=version)
    await both("list_configs", component_id="a", include_deleted=True)
    # Archived: reads answer nothing, writes refuse.
    await both("delete_component", component_id="a")
    for method, kwargs in (
        ("get_config", {}),
        ("get_current_config", {}),
        ("get_latest_config", {}),
        ("list_configs", {}),
        ("upsert_config", {"config": {}}),
        ("delete_config", {"version": 2}),
        ("set_current_version", {"version": 3}),
    ):
        await both(method, component_id="a", **kwargs)
    stored = store.raw.agno_component_configs.find_one({"_id": "a/3"})
    assert stored["component_id"] == "a" and stored["version"] == 3


async def test_the_last_visible_config_and_the_current_one_cannot_be_deleted(both: Both) -> None:
    await both("create_component_with_config", component_id="a", component_type=AGENT, name="A", config={})
    await both("delete_config", component_id="a", version=1)  # the last visible one
    await both("upsert_config", component_id="a", config={"n": 2}, stage="published")
    await both("upsert_config", component_id="a", config={"n": 3})
    await both("upsert_component", component_id="a", current_version=1)  # a draft cannot be current
    await both("upsert_component", component_id="a", current_version=2)
    await both("delete_config", component_id="a", version=1)
    await both("delete_config", component_id="a", version=3)
    await both("upsert_component", component_id="a", current_version=3)  # a tombstone cannot be current


# --- links -------------------------------------------------------------------------------------------


async def test_links_dependents_and_graph_match_sqlite(both: Both) -> None:
    for child in ("m1", "m2"):
        await both(
            "create_component_with_config", component_id=child, component_type=AGENT, name=child, config={"id": child}
        )
    await both("upsert_config", component_id="m1", config={"id": "m1", "v": 2}, stage="published")
    # A published team pinning a draft child is refused; as a draft it is fine.
    await both(
        "create_component_with_config",
        component_id="t",
        component_type=TEAM,
        name="T",
        config={"members": 2},
        stage="published",
        links=[member("m2", 1, 0)],
    )
    await both(
        "create_component_with_config",
        component_id="t",
        component_type=TEAM,
        name="T",
        config={"members": 2},
        links=[member("m2", 1, 1), member("m1", 2, 0), member("code-only", 1, 2, kind="tool")],
    )
    await both("get_links", component_id="t", version=1)
    await both("get_links", component_id="t", version=1, link_kind="member")
    await both("get_links", component_id="t", version=9)
    await both("upsert_config", component_id="t", version=1, stage="published")  # m2 v1 is a draft
    await both("upsert_config", component_id="m2", config={"id": "m2", "v": 2}, stage="published")
    await both(
        "upsert_config",
        component_id="t",
        config={"members": 2},
        links=[member("m1", 2, 0), member("m2", 2, 1)],
        stage="published",
    )
    # Cycles and archived children are refused.
    await both("upsert_config", component_id="m1", config={}, links=[member("t", 2, 0)])
    await both("upsert_config", component_id="t", config={}, links=[member("t", 1, 0)])
    await both("create_component_with_config", component_id="z", component_type=AGENT, name="Z", config={})
    await both("delete_component", component_id="z")
    await both("upsert_config", component_id="t", config={}, links=[member("z", 1, 0)])
    # Dependents, by version and active parents.
    for kwargs in ({}, {"version": 2}, {"version": 1}, {"active_parents_only": True}):
        key = lambda link: (link["parent_component_id"], link["parent_version"], link["position"])  # noqa: E731
        theirs = sorted(both.oracle.get_dependents(component_id="m2", **kwargs), key=key)
        ours = sorted(await api(both.store.db, "get_dependents", component_id="m2", **kwargs), key=key)
        assert normalised(ours, times=TIMES) == normalised(theirs, times=TIMES) and ours, kwargs
    await both("get_dependents", component_id="nobody")
    # A pinned child cannot be archived nor its pinned version deleted, unless asked to ignore pins.
    await both("delete_component", component_id="m2")
    await both("delete_config", component_id="m2", version=1)  # pinned by t v1 (a draft)
    await both("load_component_graph", component_id="t")
    await both("load_component_graph", component_id="t", version=1)
    await both("load_component_graph", component_id="nope")
    await both("load_component_graph", component_id="m1", version=1)
    assert await both("delete_component", component_id="m2", require_no_dependents=False) is True
    await both("load_component_graph", component_id="t")  # m2's graph is gone
    await both("set_current_version", component_id="t", version=2)  # pins archived m2
    await both("delete_component", component_id="t")
    await both("restore_component", component_id="t")  # its live version pins archived m2
    await both("restore_component", component_id="m2")
    await both("restore_component", component_id="t")
    await both("get_dependents", component_id="m2", active_parents_only=True)
    await both("delete_component", component_id="m1", hard_delete=True)  # t still pins it
    assert await both("delete_component", component_id="m1", hard_delete=True, require_no_dependents=False)
    await both("get_links", component_id="t", version=2)  # the link to the removed m1 went with it
    await both("get_dependents", component_id="m1")


async def test_load_component_graph_honours_label(store: Store) -> None:
    """agno's SqliteDb ignores ``label`` here (Team.load(label=...) then loads the live version);
    ours resolves the labelled version, which is what the argument is documented to do."""
    await api(
        store.db,
        "create_component_with_config",
        component_id="a",
        component_type=AGENT,
        name="A",
        config={"n": 1},
        label="old",
        stage="published",
    )
    await api(store.db, "upsert_config", component_id="a", config={"n": 2}, stage="published")
    graph = await api(store.db, "load_component_graph", component_id="a", label="old")
    assert graph["config"]["version"] == 1 and graph["resolved_versions"] == {"a": 1}
    assert (await api(store.db, "load_component_graph", component_id="a"))["config"]["version"] == 2


async def test_archiving_disables_the_targets_schedules_in_the_same_transaction(both: Both, store: Store) -> None:
    def schedule(schedule_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": schedule_id,
            "name": schedule_id,
            "method": "POST",
            "endpoint": "/agents/other/runs",
            "cron_expr": "* * * * *",
            "timezone": "UTC",
            "timeout_seconds": 10,
            "max_retries": 0,
            "retry_delay_seconds": 1,
            "enabled": True,
            "created_at": 1,
            **extra,
        }

    records = [
        schedule("s1", target_type="agent", target_id="a"),
        schedule("s2", endpoint="/agents/a/runs/"),
        schedule("s3", target_type="team", target_id="a"),  # another type: not aimed at it
        schedule("s4", target_type="agent", target_id="a", enabled=False),
    ]
    for record in records:
        both.oracle.create_schedule(dict(record))
        if store.is_async:
            await store.db.create_schedule(dict(record))
        else:
            store.db.create_schedule(dict(record))
    await both("create_component_with_config", component_id="a", component_type=AGENT, name="A", config={})
    ours: dict[str, int] = {}
    theirs: dict[str, int] = {}
    assert both.oracle.delete_component("a", cascade_stats=theirs) is True
    if store.is_async:
        assert await run_async(store.db, ComponentContract.delete_component(store.db, "a", cascade_stats=ours))
    else:
        assert store.db.delete_component("a", cascade_stats=ours) is True
    assert ours == theirs == {"schedules_disabled": 2}
    stored = {doc["_id"]: (doc["enabled"], doc.get("disabled_reason")) for doc in store.raw.agno_schedules.find()}
    assert stored == {
        "s1": (False, "target_archived:agent:a"),
        "s2": (False, "target_archived:agent:a"),
        "s3": (True, None),
        "s4": (False, None),
    }
    await both("restore_component", component_id="a")  # schedules stay disabled
    assert store.raw.agno_schedules.count_documents({"enabled": True}) == 1


# --- a transaction cut midway, lost replies ----------------------------------------------------------------------


async def test_a_publish_refused_midway_leaves_nothing_written(both: Both, store: Store) -> None:
    """The publish gate refuses after the version number was allocated and the config inserted:
    the transaction is aborted, so the counter, the config and the pointer are as before."""
    await both("create_component_with_config", component_id="m", component_type=AGENT, name="M", config={})
    await both("create_component_with_config", component_id="t", component_type=TEAM, name="T", config={})
    before = store.raw.agno_components.find_one({"_id": "t"})
    await both("upsert_config", component_id="t", config={"x": 1}, links=[member("m", 1, 0)], stage="published")
    assert store.raw.agno_components.find_one({"_id": "t"}) == before
    assert store.raw.agno_component_configs.count_documents({"component_id": "t"}) == 1
    assert (await both("upsert_config", component_id="t", config={"x": 2}))["version"] == 2  # 2 was never taken


def in_transaction(name: str, collection: str) -> Any:
    return lambda command_name, command: (
        command_name == name and "txnNumber" in command and command.get(name) == collection
    )


async def test_a_connection_killed_inside_a_transaction_leaves_nothing_half_written(through: SimpleNamespace) -> None:
    """The reply of the config insert (after the component insert) is dropped: the connection
    dies inside the transaction. The first attempt is discarded whole and the retry writes both
    documents once: had the component half been kept, the retry would find the id taken."""
    db, proxy, raw = through.db, through.proxy, through.raw
    await api(db, "get_component", component_id="warm")  # indexes built before anything is armed
    await api(db, "list_configs", component_id="warm")
    proxy.drop_next(in_transaction("insert", "agno_component_configs"))
    component, config = await api(
        db, "create_component_with_config", component_id="c", component_type=AGENT, name="C", config={"a": 1}
    )
    assert proxy.dropped, "no reply was dropped"
    assert (component["component_id"], config["version"]) == ("c", 1)
    assert raw.agno_components.count_documents({}) == 1 and raw.agno_component_configs.count_documents({}) == 1
    # Same for an append whose allocation happened before the cut: one version, numbered 2.
    proxy.drop_next(in_transaction("insert", "agno_component_configs"))
    appended = await api(db, "upsert_config", component_id="c", config={"a": 2}, links=[], expected_latest_version=1)
    assert len(proxy.dropped) == 2 and appended["version"] == 2
    assert raw.agno_components.find_one({"_id": "c"})["versions"] == 2
    assert sorted(doc["version"] for doc in raw.agno_component_configs.find()) == [1, 2]


async def test_a_lost_commit_reply_is_answered_once(through: SimpleNamespace) -> None:
    """The commit of each transaction below is applied but its reply is lost: the driver commits
    again (a server applies one transaction's commit once) instead of re-running the plan, so the
    caller gets its answer once: one new version (no duplicate, the high-water mark bumped once),
    the pointer moved once, ``True`` from the delete that did delete."""
    db, proxy, raw = through.db, through.proxy, through.raw
    await api(db, "create_component_with_config", component_id="c", component_type=AGENT, name="C", config={"n": 1})
    await api(db, "upsert_config", component_id="c", version=1, stage="published", expected_current_version=0)
    proxy.drop_next("commitTransaction")
    written = await api(
        db,
        "upsert_config",
        component_id="c",
        config={"n": 2},
        stage="published",
        expected_latest_version=1,
        expected_current_version=1,
    )
    assert [name for name, _ in proxy.dropped] == ["commitTransaction"]
    assert (written["version"], written["stage"]) == (2, "published")
    stored = raw.agno_components.find_one({"_id": "c"})
    assert (stored["versions"], stored["current_version"]) == (2, 2)
    assert sorted(doc["_id"] for doc in raw.agno_component_configs.find()) == ["c/1", "c/2"]
    with pytest.raises(ComponentVersionConflictError):  # the guards see the committed state
        await api(db, "upsert_config", component_id="c", config={"n": 3}, expected_latest_version=1)

    proxy.drop_next("commitTransaction")
    assert await api(db, "set_current_version", component_id="c", version=1, expected_current_version=2) is True
    assert len(proxy.dropped) == 2 and raw.agno_components.find_one({"_id": "c"})["current_version"] == 1

    proxy.drop_next("commitTransaction")
    assert await api(db, "delete_component", component_id="c") is True
    assert len(proxy.dropped) == 3 and raw.agno_components.find_one({"_id": "c"})["deleted_at"] is not None
    assert raw.agno_components.find_one({"_id": "c"})["versions"] == 2  # nothing else moved


def guarded_update(field: str) -> Any:
    """An in-transaction update of a component whose filter carries ``field`` (a compare-and-set)."""

    def match(name: str, command: dict[str, Any]) -> bool:
        updates = command.get("updates") or [{}]
        return (
            name == "update"
            and "txnNumber" in command
            and command.get("update") == "agno_components"
            and field in updates[0].get("q", {})
        )

    return match


async def test_a_lost_compare_and_set_reply_reruns_the_transaction_from_a_fresh_read(through: SimpleNamespace) -> None:
    """The reply of the guarded allocation (the update filtered on the high-water mark just read) is
    lost, then that of the pointer move (filtered on the expected ``current_version``): each time the
    connection dies inside the transaction, the transaction is aborted whole and run again from a
    fresh read, so the guard passes once. The caller sees one success, not a spurious conflict, and
    no version is allocated twice."""
    db, proxy, raw = through.db, through.proxy, through.raw
    await api(
        db,
        "create_component_with_config",
        component_id="c",
        component_type=AGENT,
        name="C",
        config={"n": 1},
        stage="published",
    )
    proxy.drop_next(guarded_update(ops.VERSIONS))
    proxy.drop_next(guarded_update("current_version"))
    written = await api(
        db,
        "upsert_config",
        component_id="c",
        config={"n": 2},
        stage="published",
        expected_latest_version=1,
        expected_current_version=1,
    )
    assert len(proxy.dropped) == 2, proxy.dropped
    assert (written["version"], written["config"]) == (2, {"n": 2})
    stored = raw.agno_components.find_one({"_id": "c"})
    assert (stored["versions"], stored["current_version"]) == (2, 2)
    assert sorted(doc["_id"] for doc in raw.agno_component_configs.find()) == ["c/1", "c/2"]

    proxy.drop_next(guarded_update("current_version"))
    assert await api(db, "set_current_version", component_id="c", version=1, expected_current_version=2) is True
    assert len(proxy.dropped) == 3 and raw.agno_components.find_one({"_id": "c"})["current_version"] == 1


async def test_a_lost_reply_of_a_one_document_write_is_resent_and_answered_once(through: SimpleNamespace) -> None:
    """``upsert_component`` is one ``findAndModify`` (no transaction): a create is an insert-only
    upsert carrying a write token, so its resend finds the document and recognises its own write; an
    update is a ``$set`` of whole values, so its resend changes nothing and answers the same row."""
    db, proxy, raw = through.db, through.proxy, through.raw
    proxy.drop_next("findAndModify")
    created = await api(db, "upsert_component", component_id="a", component_type=AGENT, name="A")
    assert proxy.dropped and created["component_id"] == "a" and created["name"] == "A"
    proxy.drop_next("findAndModify")
    updated = await api(db, "upsert_component", component_id="a", name="B", metadata={"k": 1})
    assert len(proxy.dropped) == 2 and (updated["name"], updated["metadata"]) == ("B", {"k": 1})
    assert raw.agno_components.count_documents({}) == 1
    assert raw.agno_components.find_one({"_id": "a"})["name"] == "B"


async def test_a_server_without_transactions_gets_replica_set_required_and_nothing_written(
    through: SimpleNamespace,
) -> None:
    """On a standalone ``mongod`` (emulated: the proxy refuses every transaction as it does) the
    one-document operations keep working and the multi-document ones raise
    ``ReplicaSetRequiredError`` naming the operation, before anything is written."""
    db, proxy, raw = through.db, through.proxy, through.raw
    await api(db, "create_component_with_config", component_id="c", component_type=AGENT, name="C", config={})
    proxy.refuse_transactions()
    try:
        assert (await api(db, "upsert_component", component_id="a", component_type=AGENT))["component_id"] == "a"
        assert (await api(db, "get_component", component_id="c"))["name"] == "C"
        assert [row["component_id"] for row in (await api(db, "list_components"))[0]] == ["a", "c"]
        assert (await api(db, "get_config", component_id="c"))["version"] == 1
        before = (list(raw.agno_components.find()), list(raw.agno_component_configs.find()))
        for method, kwargs in (
            ("create_component_with_config", {"component_id": "n", "component_type": AGENT, "name": "N", "config": {}}),
            ("upsert_config", {"component_id": "c", "config": {"n": 2}}),
            ("set_current_version", {"component_id": "c", "version": 1}),
            ("delete_config", {"component_id": "c", "version": 1}),
            ("delete_component", {"component_id": "c"}),
            ("restore_component", {"component_id": "c"}),
        ):
            with pytest.raises(ReplicaSetRequiredError) as caught:
                await api(db, method, **kwargs)
            assert caught.value.what == method
        assert (list(raw.agno_components.find()), list(raw.agno_component_configs.find())) == before
    finally:
        proxy.refuse_transactions(False)
    assert await api(db, "delete_component", component_id="c") is True  # the same store, once it has them


# --- concurrency --------------------------------------------------------------------------------------


@pytest.fixture
def concurrent_transactions(mongodb_url: str) -> None:
    """Skip on the embedded server: a transaction that loses there fails at commit ("Write conflict
    during transaction commit", no label) and its server-side session stays in that transaction (the
    next ``startTransaction`` on the same pooled ``lsid`` does not start a new one), so every retry
    reads the same stale snapshot and fails again: the retry of a lost write conflict cannot make
    progress there. Real MongoDB reports the conflict at the write, labelled
    ``TransientTransactionError``, and the driver re-runs the transaction from a fresh snapshot. Set
    MONGODB_URI to a replica set to run these (same probe as tests/test_company.py)."""
    client: MongoClient[Any] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.admin.command("buildinfo")
    except Exception:  # noqa: BLE001 - the embedded server has no buildinfo
        pytest.skip("the embedded server cannot re-run a transaction that lost a write conflict (see fixture)")
    finally:
        client.close()


async def race(store: Store, plans: list[Callable[[], Plan[Any]]]) -> list[Any]:
    """Run the plans at once (threads released by a barrier on the sync client, tasks on the async
    ones); each outcome is the plan's answer or the catalog error it raised, in the plans' order."""
    if store.is_async:

        async def one(make: Callable[[], Plan[Any]]) -> Any:
            try:
                return await run_async(store.db, make())
            except ERRORS as error:
                return error

        return list(await asyncio.gather(*(one(make) for make in plans)))
    barrier = threading.Barrier(len(plans))
    outcomes: list[Any] = [None] * len(plans)
    unexpected: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = run_sync(store.db, plans[index]())
        except ERRORS as error:
            outcomes[index] = error
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            unexpected.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if unexpected:
        raise unexpected[0]
    return outcomes


WRITERS = 6
ROUNDS = 3


def cas_append(db: Any, writer: int, expected: int) -> Plan[Any]:
    """Writer ``writer``'s guarded publish of a new version of ``t`` with its own link."""
    links = [member("m", 1, 0), {**member("m", 1, 1), "link_key": f"writer_{writer}"}]
    return ComponentContract.upsert_config(
        db,
        "t",
        config={"writer": writer},
        links=links,
        expected_latest_version=expected,
        stage="published",
        expected_current_version=0 if expected == 1 else expected,
    )


async def test_racing_compare_and_set_writers_exactly_one_wins_each_round(store: Store) -> None:
    """N writers each publish a version with links, guarded by the latest version they read; in
    every round exactly one lands, the others get ComponentVersionConflictError, and the landed
    version keeps its own links. (Real MongoDB refuses the losers' guarded allocation by a write
    conflict and the re-run sees the winner's version; the embedded server refuses their commit and
    the retry is refused by the guard: the outcome a user sees is the one checked.)"""
    await api(
        store.db,
        "create_component_with_config",
        component_id="m",
        component_type=AGENT,
        name="M",
        config={},
        stage="published",  # the writers pin m v1: a draft could not be pinned by a published team
    )
    await api(store.db, "create_component_with_config", component_id="t", component_type=TEAM, name="T", config={})
    for round_number in range(ROUNDS):
        expected = round_number + 1
        results = await race(
            store,
            [
                lambda writer=writer, expected=expected: cas_append(store.db, writer, expected)
                for writer in range(WRITERS)
            ],
        )
        winners = [result for result in results if isinstance(result, dict)]
        assert len(winners) == 1, results
        assert all(isinstance(r, ComponentVersionConflictError) for r in results if r is not winners[0]), results
        winner = winners[0]
        assert winner["version"] == expected + 1
        links = await api(store.db, "get_links", component_id="t", version=winner["version"])
        assert [link["link_key"] for link in links] == ["member_0", f"writer_{winner['config']['writer']}"]
    component = await api(store.db, "get_component", component_id="t")
    assert component["current_version"] == ROUNDS + 1
    assert [c["version"] for c in await api(store.db, "list_configs", component_id="t")] == [4, 3, 2, 1]
    assert store.raw.agno_components.find_one({"_id": "t"})["versions"] == ROUNDS + 1


async def test_two_links_closing_a_cycle_from_both_ends_cannot_both_land(
    store: Store, concurrent_transactions: None
) -> None:
    """Write skew: A->B and B->A each pass the cycle check alone. Raced, one of them is refused."""
    for name in ("A", "B"):
        await api(
            store.db, "create_component_with_config", component_id=name, component_type=TEAM, name=name, config={}
        )

    def link(parent: str, child: str) -> Plan[Any]:
        return ComponentContract.upsert_config(store.db, parent, config={}, links=[member(child, 1, 0)])

    outcomes = await race(store, [lambda: link("A", "B"), lambda: link("B", "A")])
    assert sorted(type(o).__name__ for o in outcomes) == ["ComponentCycleError", "dict"]
    linked = [o["component_id"] for o in outcomes if isinstance(o, dict)]
    assert store.raw.agno_component_configs.count_documents({"links.0": {"$exists": True}}) == 1, linked


async def test_a_link_closing_a_cycle_after_its_reverse_landed_is_refused(both: Both, store: Store) -> None:
    """Sequentially (on every server): A->B lands, then B->A (and C->A after B->C) is refused with
    nothing written. The write-skew guard is checked write by write: the transaction that linked
    A->B also wrote ``_guard`` on A and B, the documents a racing B->A reads, so on a replica set
    the two transactions conflict and the re-run one sees the link (the race itself:
    test_two_links_closing_a_cycle_from_both_ends_cannot_both_land)."""
    for name in ("A", "B", "C"):
        await both("create_component_with_config", component_id=name, component_type=TEAM, name=name, config={})

    def guards() -> dict[str, int]:
        return {doc["_id"]: doc[ops.GUARD] for doc in store.raw.agno_components.find()}

    before = guards()
    assert (await both("upsert_config", component_id="A", config={}, links=[member("B", 1, 0)]))["version"] == 2
    after = guards()
    assert after["A"] > before["A"] and after["B"] > before["B"] and after["C"] == before["C"]
    configs = store.raw.agno_component_configs.count_documents({})
    await both("upsert_config", component_id="B", config={}, links=[member("A", 2, 0)])  # ComponentCycleError
    with pytest.raises(ComponentCycleError):
        await api(store.db, "upsert_config", component_id="B", config={}, links=[member("A", 1, 0)])
    assert store.raw.agno_component_configs.count_documents({}) == configs
    assert store.raw.agno_components.find_one({"_id": "B"})[ops.VERSIONS] == 1
    await both("upsert_config", component_id="B", config={}, links=[member("C", 1, 0)])
    await both("upsert_config", component_id="C", config={}, links=[member("A", 2, 0)])  # A->B->C->A
    await both(
        "create_component_with_config",
        component_id="D",
        component_type=TEAM,
        name="D",
        config={},
        links=[member("A", 2, 0)],
    )  # a new parent of the chain closes nothing
    assert guards()["C"] > after["C"]


# --- end to end ------------------------------------------------------------------------------------


def test_async_store_is_refused_by_agnos_save_as_every_async_store_is(mongodb_url: str, db_name: str) -> None:
    """agno's ``save()`` accepts only a ``BaseDb``; its async stores keep agno's stubs for the
    catalog (agno calls them synchronously), so AsyncMongoDb answers as agno's own async stores do."""
    from agno.agent import Agent

    db = AsyncMongoDb(db_url=mongodb_url, db_name=db_name)
    with pytest.raises(ValueError, match="Async databases not yet supported"):
        Agent(id="helper", name="Helper", db=db).save()
    with pytest.raises(NotImplementedError):
        db.get_component("helper")


def test_every_plan_role_is_a_registered_collection() -> None:
    from agno_mongo.domains import INDEXES, collection_names

    names = collection_names(MongoDb(db_url="mongodb://localhost:1", db_name="x"))
    assert names[ops.COMPONENTS] == "agno_components" and names[ops.CONFIGS] == "agno_component_configs"
    assert {ops.COMPONENTS, ops.CONFIGS} <= set(INDEXES)
