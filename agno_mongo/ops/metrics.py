"""Pure command builders and the plan for daily metrics; no I/O.

agno's ``calculate_metrics`` loads every session of the days it rebuilds (and every run of those
sessions) into Python, then writes one ``findAndModify`` per record. Here the server does the
counting: one aggregation over the sessions collection groups the whole date range by day and
owner, counting sessions and runs per type, summing ``session_data.session_metrics`` and counting
runs per (model, provider), and only the per-day, per-owner totals travel back. The records are
then written with one unordered bulk of upserts keyed on a stable ``_id`` (see
:func:`~agno_mongo.schema.metrics.metric_id`), so repeating a calculation rewrites the same
documents instead of adding new ones.

A whole ``calculate_metrics`` is three commands: where to resume (one aggregate on the metrics
collection), the totals (one aggregate on the sessions), the upserts (one bulk write). A fourth
reads the runs that long sessions moved to overflow chunks, only when such a session falls in
the range.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from agno.db.utils import drop_legacy_metrics, metrics_starting_date_from_days
from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne
from pymongo.errors import BulkWriteError

from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.sessions import OVERFLOW, SESSIONS
from agno_mongo.schema.metrics import TOKEN_FIELDS, MetricsDocument, MetricsFields, metric_id

METRICS = "metrics"
SESSION_TYPES = ("agent", "team", "workflow")
DAY_SECONDS = 86400
EPOCH = date(1970, 1, 1)
DUPLICATE_KEY = 11000
UNOWNED = ""
"""The bucket of sessions without a user, stored under ``user_id == ""`` as agno does."""

METRICS_INDEXES = [
    # Where a recalculation resumes: the latest completed day, then the incomplete records.
    IndexModel([("completed", ASCENDING), ("date", DESCENDING)], name="completed_date"),
    # get_metrics: a date range for everyone, in (date, user) order ...
    IndexModel([("date", ASCENDING), ("user_id", ASCENDING)], name="date_user"),
    # ... or for one owner.
    IndexModel([("user_id", ASCENDING), ("date", ASCENDING)], name="user_date"),
]
# The sessions aggregation matches on session_type and a created_at range: the sessions
# collection's ``type_created`` index serves it; the overflow read is by chunk ``_id``.

_RESUME_FIELDS = {"_id": 1, "date": 1, "completed": 1, "created_at": 1}


def day_of(day: str | None) -> date | None:
    """A stored ISO day as a date; ``None`` for anything else (such a record is skipped, not fatal)."""
    try:
        return date.fromisoformat(day) if isinstance(day, str) else None
    except ValueError:
        return None


def midnight(day: date) -> int:
    """Epoch seconds at the start of ``day`` (UTC)."""
    return int(datetime.combine(day, datetime.min.time(), tzinfo=UTC).timestamp())


# --- where to resume ------------------------------------------------------------------------


def resume_state(metrics_collection: str) -> Command:
    """One aggregate: the latest completed record, plus every incomplete one (id, day, birth time).

    agno asks for the latest completed day, then for the earliest incomplete day after it. Both
    answers come back here in one round trip, each half served by the ``completed_date`` index;
    the incomplete records after the latest completed day are exactly those a recalculation
    rewrites, so their ``created_at`` is known without reading them again after the write.
    """
    return Command(
        METRICS,
        "aggregate",
        {
            "pipeline": [
                {"$match": {"completed": True}},
                {"$sort": {"date": -1}},
                {"$limit": 1},
                {"$project": _RESUME_FIELDS},
                {
                    "$unionWith": {
                        "coll": metrics_collection,
                        "pipeline": [{"$match": {"completed": {"$ne": True}}}, {"$project": _RESUME_FIELDS}],
                    }
                },
            ]
        },
    )


def resume_point(state: list[dict[str, Any]]) -> tuple[date | None, dict[Any, int]]:
    """agno's resume day (``metrics_starting_date_from_days``) and the birth times of the records after it.

    ``None`` means there are no records yet: every session up to today is counted.
    """
    latest_completed = max(
        (day for record in state if record.get("completed") is True and (day := day_of(record.get("date")))),
        default=None,
    )
    pending = [
        (day, record)
        for record in state
        if record.get("completed") is not True
        and (day := day_of(record.get("date"))) is not None
        and (latest_completed is None or day > latest_completed)
    ]
    earliest_incomplete = min((day for day, _ in pending), default=None)
    created = {r["_id"]: r["created_at"] for _, r in pending if isinstance(r.get("created_at"), int)}
    return metrics_starting_date_from_days(latest_completed, earliest_incomplete), created


# --- the totals ---------------------------------------------------------------------------------


def _has_model(run: str) -> dict[str, Any]:
    """agno counts a run's model when ``run.get("model")`` is truthy."""
    return {"$and": [{"$ne": [{"$ifNull": [f"{run}.model", ""]}, ""]}, {"$ne": [f"{run}.model", False]}]}


def _provider(run: str) -> dict[str, Any]:
    """agno keys a model as ``f"{model}:{provider}"`` with the provider read as None when absent."""
    return {"$ifNull": [f"{run}.model_provider", "None"]}


COUNT_FIELDS = tuple(f"{kind}_{what}_count" for what in ("sessions", "runs") for kind in SESSION_TYPES)
_TOKEN_KEYS = {field: f"t{index}" for index, field in enumerate(TOKEN_FIELDS)}
"""Short names for the token sums on the wire (the reply carries them once per day and owner)."""


def sessions_pipeline(start: int | None, end: int) -> list[dict[str, Any]]:
    """Totals per (day, owner) for the sessions created in ``[start, end)``, in one pass.

    Each session becomes one list: a counter entry (its type, run count, token metrics, and its
    ``spilled`` entries if older runs moved to overflow chunks) followed by one entry per run with a model.
    Unwinding that list and grouping by (day, owner, type, model, provider) counts sessions, runs
    and model uses together; a second group nests those rows under their (day, owner) with the
    token sums. Only the per-day, per-owner totals travel back (short keys; see :func:`fold`).

    Written for what the embedded server (mongoeco) does too: no ``$$REMOVE`` (it cannot encode
    one inside a document), and a missing value may come back as null where MongoDB omits it, so
    ``sp`` is collected with ``$addToSet`` (one null at most, not one per session) and nulls are
    dropped in :func:`fold`.
    """
    created: dict[str, int] = {"$lt": end}
    if start is not None:
        created["$gte"] = start
    runs = {"$ifNull": ["$runs", []]}
    with_model = {"$filter": {"input": runs, "as": "run", "cond": _has_model("$$run")}}
    spilled = {"id": "$_id", "k": "$session_type", "e": "$spilled"}
    counter = {
        "k": "$session_type",
        "n": {"$size": runs},
        **{key: f"$session_data.session_metrics.{field}" for field, key in _TOKEN_KEYS.items()},
        "sp": {"$cond": [{"$gt": [{"$size": {"$ifNull": ["$spilled", []]}}, 0]}, spilled, None]},
    }
    uses = {"$map": {"input": with_model, "as": "run", "in": {"m": "$$run.model", "p": _provider("$$run")}}}
    return [
        {"$match": {"session_type": {"$in": list(SESSION_TYPES)}, "created_at": created}},
        {
            "$project": {
                "_id": 0,
                "d": {"$floor": {"$divide": ["$created_at", DAY_SECONDS]}},
                "u": {"$ifNull": ["$user_id", UNOWNED]},
                "x": {"$concatArrays": [[counter], uses]},
            }
        },
        {"$unwind": "$x"},
        {
            "$group": {
                "_id": {"d": "$d", "u": "$u", "k": "$x.k", "m": "$x.m", "p": "$x.p"},
                "c": {"$sum": 1},
                "n": {"$sum": "$x.n"},
                **{key: {"$sum": f"$x.{key}"} for key in _TOKEN_KEYS.values()},
                "sp": {"$addToSet": "$x.sp"},
            }
        },
        {
            "$group": {
                "_id": {"d": "$_id.d", "u": "$_id.u"},
                **{key: {"$sum": f"${key}"} for key in _TOKEN_KEYS.values()},
                "rows": {"$push": {"k": "$_id.k", "m": "$_id.m", "p": "$_id.p", "c": "$c", "n": "$n"}},
                "sp": {"$addToSet": "$sp"},
            }
        },
        {"$sort": {"_id.d": 1, "_id.u": 1}},
    ]


def fold(group: dict[str, Any]) -> dict[str, Any]:
    """One (day, owner) group of :func:`sessions_pipeline` as record totals.

    Rows with a type are counter rows (``c`` sessions holding ``n`` runs); rows with a model are
    model uses (``c`` runs).
    """
    totals: dict[str, Any] = {field: 0 for field in COUNT_FIELDS}
    models: dict[tuple[Any, Any], int] = {}
    for row in group["rows"]:
        if row.get("k") is not None:
            totals[f"{row['k']}_sessions_count"] += int(row["c"])
            totals[f"{row['k']}_runs_count"] += int(row["n"])
        elif row.get("m") is not None:
            key = (row["m"], row.get("p"))
            models[key] = models.get(key, 0) + int(row["c"])
    return {
        "day": int(group["_id"]["d"]),
        "user_id": group["_id"]["u"],
        **totals,
        "token_metrics": {field: group[key] for field, key in _TOKEN_KEYS.items()},
        "models": models,
        "spilled": [session for pushed in group.get("sp") or [] for session in pushed or [] if session],
    }


def overflow_pipeline(spilled: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs per (session, model, provider) held in overflow chunks, counting only what each
    session's ``spilled`` entries list (a chunk may also hold superseded versions)."""
    entries = [entry for session in spilled for entry in session.get("e") or [] if entry.get("ids")]
    return [
        {"$match": {"_id": {"$in": [entry["c"] for entry in entries]}}},
        {"$unwind": "$runs"},
        {"$match": {"$or": [{"_id": entry["c"], "runs.run_id": {"$in": entry["ids"]}} for entry in entries]}},
        {
            "$group": {
                "_id": {
                    "s": "$session_id",
                    "m": {"$cond": [_has_model("$runs"), "$runs.model", None]},
                    "p": _provider("$runs"),
                },
                "c": {"$sum": 1},
            }
        },
    ]


def add_overflow(totals: list[dict[str, Any]], counts: list[dict[str, Any]]) -> None:
    """Fold the overflowed runs into their sessions' day totals (in place)."""
    by_session: dict[str, list[dict[str, Any]]] = {}
    for row in counts:
        by_session.setdefault(row["_id"]["s"], []).append(row)
    for total in totals:
        for session in total["spilled"]:
            for row in by_session.get(session["id"], []):
                total[f"{session['k']}_runs_count"] += int(row["c"])
                if row["_id"].get("m") is not None:
                    key = (row["_id"]["m"], row["_id"].get("p"))
                    total["models"][key] = total["models"].get(key, 0) + int(row["c"])


def model_metrics(models: dict[tuple[Any, Any], int]) -> list[dict[str, Any]]:
    """Counts per (model, provider) as agno keys them (as text), sorted for a stable answer."""
    counts: dict[tuple[str, str], int] = {}
    for (model, provider), count in models.items():
        key = (str(model), str(provider))
        counts[key] = counts.get(key, 0) + count
    return [{"model_id": m, "model_provider": p, "count": n} for (m, p), n in sorted(counts.items())]


def build_record(total: dict[str, Any], today: date, now: int, created: dict[Any, int]) -> MetricsFields:
    """One stored record from one (day, owner) total, shaped as agno's ``calculate_date_metrics``."""
    day = EPOCH + timedelta(days=total["day"])
    user_id = total["user_id"]
    record_id = metric_id(day.isoformat(), user_id)
    return MetricsFields.model_validate(
        {
            "id": record_id,
            "date": day.isoformat(),
            "aggregation_period": "daily",
            "user_id": user_id,
            "completed": day < today,
            "users_count": 0 if user_id == UNOWNED else 1,
            **{field: total[field] for field in COUNT_FIELDS},
            "token_metrics": total["token_metrics"],
            "model_metrics": model_metrics(total["models"]),
            "created_at": created.get(record_id, now),
            "updated_at": now,
        }
    )


def bulk_upsert(records: list[MetricsFields]) -> Command:
    """One unordered bulk of upserts on ``_id``: ``$set`` the totals, ``$setOnInsert`` id and birth time."""
    requests = [
        UpdateOne(
            {"_id": record.id},
            {"$set": record.stored_fields(), "$setOnInsert": {"id": record.id, "created_at": record.created_at}},
            upsert=True,
        )
        for record in records
    ]
    return Command(METRICS, "bulk_write", {"requests": requests, "ordered": False})


def write_records(records: list[MetricsFields]) -> Plan[None]:
    """The bulk upsert; records another calculation inserted at the same moment are sent once more.

    Two upserts of one new ``_id`` at once: one inserts, the other fails with a duplicate key
    (MongoDB retries that itself; a server that does not, such as the embedded one, reports it).
    The second attempt finds the document and updates it.
    """
    try:
        yield bulk_upsert(records)
    except BulkWriteError as error:
        failed = error.details.get("writeErrors", [])
        if not failed or any(item.get("code") != DUPLICATE_KEY for item in failed):
            raise
        yield bulk_upsert([records[item["index"]] for item in failed])


def calculate_metrics_plan(metrics_collection: str, now: int) -> Plan[list[dict[str, Any]] | None]:
    """Rebuild every day from agno's resume day through today; the records written, or None.

    None when there is nothing to count at all (no records and no sessions), as agno returns; an
    empty list when the days to rebuild hold no sessions.
    """
    today = datetime.fromtimestamp(now, tz=UTC).date()
    state: list[dict[str, Any]] = yield resume_state(metrics_collection)
    resume, created = resume_point(state)
    start = None if resume is None else midnight(resume)
    groups: list[dict[str, Any]] = yield Command(
        SESSIONS, "aggregate", {"pipeline": sessions_pipeline(start, midnight(today + timedelta(days=1)))}
    )
    if not groups:
        return None if resume is None else []
    totals = [fold(group) for group in groups]
    spilled = [session for total in totals for session in total["spilled"]]
    if any(entry.get("ids") for session in spilled for entry in session.get("e") or []):
        counts: list[dict[str, Any]] = yield Command(OVERFLOW, "aggregate", {"pipeline": overflow_pipeline(spilled)})
        add_overflow(totals, counts)
    records = [build_record(total, today, now, created) for total in totals]
    yield from write_records(records)
    return [record.to_agno_dict() for record in records]


# --- reading ------------------------------------------------------------------------------------


def metrics_filter(starting_date: date | None, ending_date: date | None, user_id: str | None) -> dict[str, Any]:
    """agno's ``get_metrics`` filter: an ISO day range, and one owner's bucket when ``user_id`` is given."""
    query: dict[str, Any] = {}
    days: dict[str, str] = {}
    if starting_date is not None:
        days["$gte"] = starting_date.isoformat()
    if ending_date is not None:
        days["$lte"] = ending_date.isoformat()
    if days:
        query["date"] = days
    if user_id is not None:
        query["user_id"] = user_id
    return query


def get_metrics_plan(
    starting_date: date | None, ending_date: date | None, user_id: str | None
) -> Plan[tuple[list[dict[str, Any]], int | None]]:
    """One ``find`` in (date, owner) order; the records as agno returns them and the latest ``updated_at``."""
    documents: list[dict[str, Any]] = yield Command(
        METRICS,
        "find",
        {
            "filter": metrics_filter(starting_date, ending_date, user_id),
            "sort": [("date", ASCENDING), ("user_id", ASCENDING)],
            "projection": {"_id": False, "schema_version": False},
        },
    )
    records = [MetricsDocument.model_validate(document).to_agno_dict() for document in documents]
    if user_id is None:
        # Records written before owners existed hold a whole day; agno drops them where per-owner ones exist.
        records = drop_legacy_metrics(records)
    if not records:
        return [], None
    latest = max(record.get("updated_at") or 0 for record in records)
    for record in records:
        if record.get("user_id") == UNOWNED:
            record["user_id"] = None
    return records, latest
