"""Pure command builders and plans for the schedules and schedule-runs collections.

Nothing here does I/O. A schedule's ``_id`` is its ``id``, a run's ``_id`` is its ``id``; every
single-document command is a point lookup on ``_id``.

Names are unique per owner, the unowned bucket included: a unique index on ``(user_id, name)``,
with ``user_id`` always stored (``null`` for no owner). MongoDB indexes a null like any value, so two
unowned schedules of one name collide just as two of one owner do, and ``""`` is an owner of its own
(as in agno's SQL stores). A create or rename that breaks it raises PyMongo's ``DuplicateKeyError``,
which AgentOS's ``/schedules`` routes answer with 409 (``agno.db.utils.is_unique_violation``). That
unique index does not start with ``_id``, so the schedules collection must stay unsharded (it holds
one small document per schedule).

Which writes may be resent after a network error, and how the others find out what happened:

* ``claim_due_schedule``: ONE ``findAndModify`` (enabled, due, unlocked or stale; oldest due first,
  sort served by the ``due`` index) that stamps ``locked_by``, ``locked_at`` and a fresh claim token
  (``_claim``). Not resendable: a second arrival would claim a *second* schedule. After ``ReplyLost``
  one read for the token (served by a partial index) tells whether the claim landed, and on which
  schedule: then that schedule is ours; otherwise the claim is sent again, same token. A resend
  that finds nothing due is followed by one more read, since the first send may have landed late.
* ``release_schedule``: compare-and-set on ``locked_by`` / ``locked_at`` (only the holder of that
  claim releases). Not resendable (a second arrival no longer matches and answers ``False``); it
  pushes a write token into ``_ops``, and after ``ReplyLost`` a read for the token decides.
* ``create_schedule`` / ``create_schedule_run``: an insert carrying a token in ``_ops``; after a lost
  reply a read of the ``_id`` tells our own insert (token) from another's (``DuplicateKeyError``).
* ``delete_schedule``: not resendable (a second arrival answers "nothing deleted"); after
  ``ReplyLost`` a read tells whether the schedule is gone.
* ``disable_schedules_for_target``: an ``updateMany`` whose answer is a count; it pushes a token, and
  after ``ReplyLost`` a count of the documents carrying it is the answer.
* ``delete_schedule_runs``: marks the expired runs with a token (resendable), counts the marked ones,
  then deletes them (resendable): the count survives a lost reply.
* ``update_schedule``, ``update_schedule_run``, ``stamp_schedule_provenance``: ``$set`` of whole
  values, resendable (a second arrival sets the same values and answers the same).

A schedule and its runs: ``delete_schedule`` deletes the schedule first, then its runs;
``create_schedule_run`` inserts the run, then reads that its schedule exists, and removes the run
and raises :class:`UnknownScheduleError` if not. Whatever the interleaving of the two, no run
outlives its schedule (agno's SQL stores get this from a foreign key with ``ON DELETE CASCADE``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agno_mongo.errors import AgnoMongoError
from agno_mongo.ops.aggregations import aggregate
from agno_mongo.ops.command import Command, Plan, ReplyLost, Written
from agno_mongo.ops.common import DUPLICATE_KEY
from agno_mongo.schema.codec import MARKER, encode_fields, encode_free_form
from agno_mongo.schema.schedules import RUN_FREE_FORM, SCHEDULE_FREE_FORM, SCHEMA_VERSION

SCHEDULES = "schedules"
RUNS = "schedule_runs"

OPS = "_ops"
"""Tokens of the last non-resendable writes (create, release, disable); never shown to agno."""
OPS_KEPT = 8
CLAIM = "_claim"
"""The token of the claim holding the schedule (``null`` once released); never shown to agno."""
EXPIRING = "_expiring"
"""On a run: the token of the ``delete_schedule_runs`` call about to delete it."""

SEND_ROUNDS = 3
"""Sends of a non-resendable write whose reply keeps being lost (each followed by a check read)."""

NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]
"""agno's schedule listing order (``created_at DESC, id DESC``) and the runs listing order
(``created_at DESC``; agno's run ids are time-ordered, so ``_id`` breaks ties newest first)."""
DUE_ORDER = [("next_run_at", ASCENDING), ("_id", ASCENDING)]
"""The claim's order: oldest due first, ties by id."""
LATEST_ORDER = [("triggered_at", DESCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
"""``get_latest_schedule_runs``: agno's ``triggered_at DESC, created_at DESC, id DESC``."""

SCHEDULE_INDEXES = [
    # Names unique per owner, null (no owner) included; also serves get_schedule_by_name.
    IndexModel([("user_id", ASCENDING), ("name", ASCENDING)], name="owner_name", unique=True),
    # The claim: enabled (equality), next_run_at <= now (range), sorted by next_run_at then _id.
    IndexModel([("enabled", ASCENDING), *DUE_ORDER], name="due"),
    # After a lost claim reply: which schedule carries our claim token (only held claims are indexed).
    IndexModel([(CLAIM, ASCENDING)], name="claim_token", partialFilterExpression={CLAIM: {"$type": "string"}}),
    # get_schedules: unfiltered, ?enabled=, per owner, per owner and enabled; newest first.
    IndexModel(NEWEST_FIRST, name="created"),
    IndexModel([("enabled", ASCENDING), *NEWEST_FIRST], name="enabled_created"),
    IndexModel([("user_id", ASCENDING), *NEWEST_FIRST], name="user_created"),
    IndexModel([("user_id", ASCENDING), ("enabled", ASCENDING), *NEWEST_FIRST], name="user_enabled_created"),
    # disable_schedules_for_target: the two branches of its $or.
    IndexModel([("target_id", ASCENDING), ("target_type", ASCENDING)], name="target"),
    IndexModel([("endpoint", ASCENDING)], name="endpoint"),
]

SCHEDULE_RUN_INDEXES = [
    # get_schedule_runs (and its count), the delete cascade, delete_schedule_runs.
    IndexModel([("schedule_id", ASCENDING), *NEWEST_FIRST], name="schedule_created"),
    # get_schedule_runs scoped to an owner.
    IndexModel([("schedule_id", ASCENDING), ("user_id", ASCENDING), *NEWEST_FIRST], name="schedule_user_created"),
    # get_latest_schedule_runs: per schedule, the first in agno's order.
    IndexModel([("schedule_id", ASCENDING), *LATEST_ORDER], name="schedule_latest"),
]


class UnknownScheduleError(AgnoMongoError, ValueError):
    """``create_schedule_run`` named a schedule that does not exist (or was deleted meanwhile); the
    run was not kept. agno's SQL stores refuse the same insert with a foreign-key ``IntegrityError``."""

    def __init__(self, schedule_id: str, run_id: str) -> None:
        self.schedule_id = schedule_id
        self.run_id = run_id
        super().__init__(f"schedule run {run_id!r}: no schedule {schedule_id!r}; the run was not stored")


def token() -> str:
    """A fresh write token."""
    return secrets.token_hex(8)


def owner_scope(user_id: str | None) -> dict[str, Any]:
    """agno's ``user_id`` scope: equality when given, no filter when ``None``."""
    return {} if user_id is None else {"user_id": user_id}


def stored_document(
    columns: Mapping[str, Any], free_form: tuple[str, ...], prefix: str, write_token: str
) -> dict[str, Any]:
    """The whole document a new schedule or run is stored as: every column (``id`` as ``_id``),
    free-form columns through the codec, and the internal fields."""
    values = {("_id" if key == "id" else key): value for key, value in columns.items()}
    encode_free_form(values, free_form, prefix)
    if not values[MARKER]:
        del values[MARKER]  # absent rather than null, so an update can ``$set`` ``_codec.<column>``
    values[OPS] = [write_token]
    values["schema_version"] = SCHEMA_VERSION
    return values


def schedule_document(columns: Mapping[str, Any], write_token: str) -> dict[str, Any]:
    """A new schedule's document (no claim held)."""
    document = stored_document(columns, SCHEDULE_FREE_FORM, "schedule_data.", write_token)
    document[CLAIM] = None
    return document


def run_document(columns: Mapping[str, Any], write_token: str) -> dict[str, Any]:
    """A new schedule run's document."""
    return stored_document(columns, RUN_FREE_FORM, "run_data.", write_token)


def _tokens_of(collection: str, doc_id: str) -> Command:
    return Command(collection, "find_one", {"filter": {"_id": doc_id}, "projection": {OPS: True}})


def insert_plan(collection: str, document: dict[str, Any]) -> Plan[None]:
    """Insert a new document; a taken ``_id`` (or a broken unique index) raises ``DuplicateKeyError``.

    Sent once (``resend=False``): after a lost reply one read of the ``_id`` tells our insert (its
    token) from another's; a resend refused with a duplicate key is checked the same way, since it
    may be our own first send that landed.
    """
    command = Command(collection, "insert_one", {"document": document}, resend=False)
    mine = document[OPS][0]
    for attempt in range(SEND_ROUNDS):
        try:
            yield command
        except ReplyLost:
            stored: dict[str, Any] | None = yield _tokens_of(collection, document["_id"])
            if stored is not None:
                if mine in (stored.get(OPS) or []):
                    return None
                raise DuplicateKeyError(f"{collection} {document['_id']!r} already exists", DUPLICATE_KEY) from None
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        except DuplicateKeyError:
            if attempt > 0:
                landed: dict[str, Any] | None = yield _tokens_of(collection, document["_id"])
                if landed is not None and mine in (landed.get(OPS) or []):
                    return None
            raise
        return None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def get_schedule(schedule_id: str, user_id: str | None) -> Command:
    """One ``find`` by ``_id``, scoped to the owner when given."""
    return Command(SCHEDULES, "find_one", {"filter": {"_id": schedule_id, **owner_scope(user_id)}})


def get_schedule_by_name(name: str, user_id: str | None) -> Command:
    """One ``find`` in one owner bucket (``None`` is the unowned bucket), served by ``owner_name``."""
    return Command(SCHEDULES, "find_one", {"filter": {"user_id": user_id, "name": name}})


def list_filter(enabled: bool | None, user_id: str | None) -> dict[str, Any]:
    """The ``get_schedules`` filter."""
    query: dict[str, Any] = owner_scope(user_id)
    if enabled is not None:
        query["enabled"] = enabled
    return query


def count(collection: str, query: dict[str, Any]) -> Command:
    """One ``count``."""
    return Command(collection, "count_documents", {"filter": query})


def set_fields(changes: Mapping[str, Any], free_form: tuple[str, ...]) -> dict[str, Any]:
    """An update document that ``$set``s ``changes`` (free-form ones encoded, their codec markers kept
    right)."""
    free = {key: value for key, value in changes.items() if key in free_form}
    to_set, to_unset = encode_fields(free)
    update: dict[str, Any] = {"$set": {**{k: v for k, v in changes.items() if k not in free_form}, **to_set}}
    if to_unset:
        update["$unset"] = to_unset
    return update


def update_schedule(schedule_id: str, user_id: str | None, changes: Mapping[str, Any], now: int) -> Command:
    """One ``findAndModify``: set the columns and ``updated_at``; the document after, or ``None`` if
    absent (or another owner's). Resendable: a second arrival sets the same values."""
    update = set_fields({**changes, "updated_at": now}, SCHEDULE_FREE_FORM)
    return Command(
        SCHEDULES,
        "find_one_and_update",
        {
            "filter": {"_id": schedule_id, **owner_scope(user_id)},
            "update": update,
            "return_document": ReturnDocument.AFTER,
        },
    )


def delete_schedule_plan(schedule_id: str, user_id: str | None) -> Plan[bool]:
    """Delete a schedule, then its runs; whether the schedule was there (and the caller's).

    agno's SQL cascade: once the schedule goes, every run of it goes (``ON DELETE CASCADE``); when it
    stays (another owner's), the caller's own runs under that id still go (agno's explicit delete).
    The runs are deleted on every call, so calling again cleans up after a crash between the two.
    The schedule goes first, so a run created meanwhile finds it gone (see :func:`create_run_plan`).

    After a lost reply, one read of the schedule: gone means deleted (by this call, or by another at
    the same moment: either way it was there and is gone); another owner's means it was never ours
    to delete; still ours means it is sent again, and a resend that deletes nothing then means it
    went meanwhile.
    """
    command = Command(SCHEDULES, "delete_one", {"filter": {"_id": schedule_id, **owner_scope(user_id)}}, resend=False)
    deleted = False
    for attempt in range(SEND_ROUNDS):
        try:
            result: Written = yield command
        except ReplyLost:
            still: dict[str, Any] | None = yield Command(
                SCHEDULES, "find_one", {"filter": {"_id": schedule_id}, "projection": {"user_id": True}}
            )
            if still is None:
                deleted = True
                break
            if user_id is not None and still.get("user_id") != user_id:
                break
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        deleted = bool(result.deleted_count) or attempt > 0
        break
    yield Command(
        RUNS, "delete_many", {"filter": {"schedule_id": schedule_id, **({} if deleted else owner_scope(user_id))}}
    )
    return deleted


def target_filter(target_type: str, target_id: str, endpoint: str) -> dict[str, Any]:
    """Schedules aimed at one component: by provenance, or by a run endpoint with or without the
    trailing slash agno's ``RUN_ENDPOINT_RE`` accepts."""
    return {
        "$or": [
            {"target_id": target_id, "target_type": target_type},
            {"endpoint": {"$in": [endpoint, endpoint + "/"]}},
        ]
    }


def disable_for_target_plan(target_type: str, target_id: str, endpoint: str, reason: str | None, now: int) -> Plan[int]:
    """Disable every enabled schedule aimed at the component, across owners; how many went off.

    One ``updateMany`` that pushes a token; after ``ReplyLost`` the count of documents carrying the
    token is the answer (a resend would answer 0 once the first had landed).
    """
    write_token = token()
    aimed = target_filter(target_type, target_id, endpoint)
    command = Command(
        SCHEDULES,
        "update_many",
        {
            "filter": {"enabled": True, **aimed},
            "update": {
                "$set": {"enabled": False, "disabled_reason": reason, "updated_at": now},
                "$push": {OPS: {"$each": [write_token], "$slice": -OPS_KEPT}},
            },
        },
        resend=False,
    )
    marked = count(SCHEDULES, {**aimed, OPS: write_token})
    for attempt in range(SEND_ROUNDS):
        try:
            result: Written = yield command
        except ReplyLost:
            landed: int = yield marked
            if landed:
                return landed
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        if not result.matched_count and attempt > 0:
            late: int = yield marked
            return late
        return result.matched_count
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def stamp_provenance(schedule_id: str, provenance: Mapping[str, Any], now: int) -> Command:
    """One ``update`` of the provenance columns and ``updated_at``; resendable."""
    return Command(
        SCHEDULES,
        "update_one",
        {"filter": {"_id": schedule_id}, "update": {"$set": {**provenance, "updated_at": now}}},
    )


def due_filter(now: int, lock_grace_seconds: int) -> dict[str, Any]:
    """Enabled, due by ``now``, and unlocked or locked longer ago than the grace period (agno's).

    ``$type: "number"`` states what MongoDB's comparison already means (a null ``next_run_at`` is
    never due) and keeps servers that compare null as the lowest number (the embedded one does)
    from claiming an unarmed schedule; the index bounds stay those of the ``$lte``."""
    return {
        "enabled": True,
        "next_run_at": {"$type": "number", "$lte": now},
        "$or": [{"locked_by": None}, {"locked_at": {"$type": "number", "$lte": now - lock_grace_seconds}}],
    }


def claim(worker_id: str, now: int, lock_grace_seconds: int, claim_token: str) -> Command:
    """THE claim: one ``findAndModify`` on the oldest due schedule, returning it as locked. Not
    resendable: a second arrival would lock another schedule."""
    return Command(
        SCHEDULES,
        "find_one_and_update",
        {
            "filter": due_filter(now, lock_grace_seconds),
            "update": {"$set": {"locked_by": worker_id, "locked_at": now, CLAIM: claim_token}},
            "sort": DUE_ORDER,
            "return_document": ReturnDocument.AFTER,
        },
        resend=False,
    )


def claimed_by(claim_token: str) -> Command:
    """The schedule our claim token holds, if any (served by ``claim_token``)."""
    return Command(SCHEDULES, "find_one", {"filter": {CLAIM: claim_token}})


def claim_plan(worker_id: str, now: int, lock_grace_seconds: int) -> Plan[dict[str, Any] | None]:
    """Claim the oldest due schedule; the schedule as locked by us, or ``None`` if none is due.

    After a lost reply, one read for the claim token: found, the claim landed and that schedule is
    ours; not found, the same claim (same token) is sent again. A resend that finds nothing due is
    checked once more (the first send may have landed after the check read). So a worker never holds
    a schedule it does not know of, and two workers never hold one schedule for one due time: a
    claim only matches a schedule that is unlocked or whose lock is older than the grace period.
    """
    claim_token = token()
    command = claim(worker_id, now, lock_grace_seconds, claim_token)
    for attempt in range(SEND_ROUNDS):
        try:
            claimed: dict[str, Any] | None = yield command
        except ReplyLost:
            mine: dict[str, Any] | None = yield claimed_by(claim_token)
            if mine is not None:
                return mine
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        if claimed is None and attempt > 0:
            late: dict[str, Any] | None = yield claimed_by(claim_token)
            return late
        return claimed
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def release(
    schedule_id: str,
    next_run_at: int | None,
    worker_id: str | None,
    locked_at: int | None,
    now: int,
    write_token: str,
) -> Command:
    """One ``update`` (a pipeline, so ``next_run_at`` can depend on the stored ``cron_expr``):
    unlock, and set ``next_run_at`` to the given time (kept when ``None``), or to null for an
    on-demand schedule (``cron_expr == ""``), whatever the caller's possibly stale snapshot says.
    Only the holder of that claim matches when ``worker_id`` / ``locked_at`` are given."""
    query: dict[str, Any] = {"_id": schedule_id}
    if worker_id is not None:
        query["locked_by"] = worker_id
    if locked_at is not None:
        query["locked_at"] = locked_at
    armed: Any = "$next_run_at" if next_run_at is None else {"$literal": next_run_at}
    stage = {
        "locked_by": None,
        "locked_at": None,
        CLAIM: None,
        "updated_at": {"$literal": now},
        "next_run_at": {"$cond": [{"$eq": ["$cron_expr", ""]}, None, armed]},
        OPS: {"$slice": [{"$concatArrays": [{"$ifNull": [f"${OPS}", []]}, [{"$literal": write_token}]]}, -OPS_KEPT]},
    }
    return Command(SCHEDULES, "update_one", {"filter": query, "update": [{"$set": stage}]}, resend=False)


def released_by(schedule_id: str, write_token: str) -> Command:
    """Whether our release landed: the schedule carrying its token."""
    return Command(
        SCHEDULES, "find_one", {"filter": {"_id": schedule_id, OPS: write_token}, "projection": {"_id": True}}
    )


def release_plan(
    schedule_id: str, next_run_at: int | None, worker_id: str | None, locked_at: int | None, now: int
) -> Plan[bool]:
    """Release a claim; whether it matched. After a lost reply a read for the write token decides; a
    resend that misses is checked once more (the first send may have landed after the check read)."""
    write_token = token()
    command = release(schedule_id, next_run_at, worker_id, locked_at, now, write_token)
    check = released_by(schedule_id, write_token)
    for attempt in range(SEND_ROUNDS):
        try:
            result: Written = yield command
        except ReplyLost:
            landed: dict[str, Any] | None = yield check
            if landed is not None:
                return True
            if attempt == SEND_ROUNDS - 1:
                raise
            continue
        if not result.matched_count and attempt > 0:
            late: dict[str, Any] | None = yield check
            return late is not None
        return bool(result.matched_count)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


# --- runs ---------------------------------------------------------------------------------------


def create_run_plan(document: dict[str, Any]) -> Plan[None]:
    """Insert a run, then check its schedule exists; if not, remove the run and raise
    :class:`UnknownScheduleError`. The check comes after the insert so a ``delete_schedule`` racing
    with it either deletes this run (it deletes runs after the schedule) or is seen by the check."""
    yield from insert_plan(RUNS, document)
    parent: dict[str, Any] | None = yield Command(
        SCHEDULES, "find_one", {"filter": {"_id": document["schedule_id"]}, "projection": {"_id": True}}
    )
    if parent is None:
        yield Command(RUNS, "delete_one", {"filter": {"_id": document["_id"], OPS: document[OPS][0]}})
        raise UnknownScheduleError(document["schedule_id"], document["_id"])
    return None


def update_run(run_id: str, changes: Mapping[str, Any]) -> Command:
    """One ``findAndModify`` ``$set`` of whole values; the run after, or ``None``. Resendable."""
    return Command(
        RUNS,
        "find_one_and_update",
        {
            "filter": {"_id": run_id},
            "update": set_fields(changes, RUN_FREE_FORM),
            "return_document": ReturnDocument.AFTER,
        },
    )


def get_run(run_id: str, user_id: str | None) -> Command:
    """One ``find`` by ``_id``, scoped to the owner when given."""
    return Command(RUNS, "find_one", {"filter": {"_id": run_id, **owner_scope(user_id)}})


def runs_filter(schedule_id: str, user_id: str | None) -> dict[str, Any]:
    """The ``get_schedule_runs`` filter."""
    return {"schedule_id": schedule_id, **owner_scope(user_id)}


def latest_runs(schedule_ids: list[str]) -> Command:
    """One ``aggregate``: the first run of each schedule in agno's order (index ``schedule_latest``
    serves the sort; ``$group`` keeps one document per schedule). MongoDB 6.0 operators only."""
    return aggregate(
        RUNS,
        [
            {"$match": {"schedule_id": {"$in": schedule_ids}}},
            {"$sort": dict([("schedule_id", ASCENDING), *LATEST_ORDER])},
            {"$group": {"_id": "$schedule_id", "run": {"$first": "$$ROOT"}}},
        ],
    )


def delete_runs_plan(schedule_id: str, before: int) -> Plan[int]:
    """Delete the schedule's runs completed before ``before`` (never a run still going: a null
    ``completed_at`` is not less than anything, which ``$type`` states for every server); how many went.

    Three resendable commands: mark the expired runs with a token, count the marked ones, delete
    them. The count is exact after a lost reply (a plain ``deleteMany`` resent would answer 0). Two
    calls racing over one schedule may both count a run the later mark took over.
    """
    write_token = token()
    yield Command(
        RUNS,
        "update_many",
        {
            "filter": {"schedule_id": schedule_id, "completed_at": {"$type": "number", "$lt": before}},
            "update": {"$set": {EXPIRING: write_token}},
        },
    )
    marked = {"schedule_id": schedule_id, EXPIRING: write_token}
    expired: int = yield count(RUNS, marked)
    if expired:
        yield Command(RUNS, "delete_many", {"filter": marked})
    return expired
