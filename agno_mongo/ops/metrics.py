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

from agno_mongo.ops.aggregations import aggregate
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.common import duplicate_indexes
from agno_mongo.ops.sessions import OVERFLOW, SESSIONS
from agno_mongo.schema.metrics import TOKEN_FIELDS, MetricsDocument, MetricsFields, metric_id

METRICS = "metrics"
SESSION_TYPES = ("agent", "team", "workflow")
DAY_SECONDS = 86400
EPOCH = date(1970, 1, 1)
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
# collection's ``created_id`` index serves the range (the type filters it); the overflow read is by
# chunk ``_id``.

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
    return aggregate(
        METRICS,
        [
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
        ],
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


def session_range(start: int | None, end: int) -> dict[str, Any]:
    """The sessions counted: agno's session types, created in ``[start, end)``."""
    created: dict[str, int] = {"$lt": end}
    if start is not None:
        created["$gte"] = start
    return {"session_type": {"$in": list(SESSION_TYPES)}, "created_at": created}


DAY_AND_OWNER = {
    "day": {"$floor": {"$divide": ["$created_at", DAY_SECONDS]}},
    "owner": {"$ifNull": ["$user_id", UNOWNED]},
}


def sessions_pipeline(start: int | None, end: int) -> list[dict[str, Any]]:
    """Totals per (day, owner, type, model, provider) for the sessions created in ``[start, end)``,
    in one pass, ordered by (day, owner).

    Each session becomes one list: a counter entry (its type, run count, token metrics, and 1 if
    older runs moved to overflow chunks) followed by one entry per run with a model. Unwinding that
    list and grouping by (day, owner, type, model, provider) counts sessions, runs and model uses
    together. Every accumulator is a ``$sum`` (no array, so the group spills to disk and each row is
    small); :func:`totals` folds consecutive rows of one (day, owner) into its record.
    """
    runs = {"$ifNull": ["$runs", []]}
    with_model = {"$filter": {"input": runs, "as": "run", "cond": _has_model("$$run")}}
    counter = {
        "kind": "$session_type",
        "runs": {"$size": runs},
        **{field: f"$session_data.session_metrics.{field}" for field in TOKEN_FIELDS},
        "spilled": {"$cond": [{"$gt": [{"$size": {"$ifNull": ["$spilled", []]}}, 0]}, 1, 0]},
    }
    uses = {"$map": {"input": with_model, "as": "run", "in": {"model": "$$run.model", "provider": _provider("$$run")}}}
    return [
        {"$match": session_range(start, end)},
        {"$project": {"_id": 0, **DAY_AND_OWNER, "item": {"$concatArrays": [[counter], uses]}}},
        {"$unwind": "$item"},
        {
            "$group": {
                "_id": {
                    "day": "$day",
                    "owner": "$owner",
                    "kind": "$item.kind",
                    "model": "$item.model",
                    "provider": "$item.provider",
                },
                "count": {"$sum": 1},
                "runs": {"$sum": "$item.runs"},
                **{field: {"$sum": f"$item.{field}"} for field in TOKEN_FIELDS},
                "spilled": {"$sum": "$item.spilled"},
            }
        },
        {"$sort": {"_id.day": 1, "_id.owner": 1}},
    ]


def totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of :func:`sessions_pipeline` as one total per (day, owner), in their order.

    Rows with a kind are counter rows (``count`` sessions holding ``runs`` runs); rows with a model
    are model uses (``count`` runs). ``spilled`` counts the sessions with runs in overflow chunks.
    """
    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        key = (int(row["_id"]["day"]), row["_id"]["owner"])
        total = out.get(key)
        if total is None:
            total = out[key] = {
                "day": key[0],
                "user_id": key[1],
                **{field: 0 for field in COUNT_FIELDS},
                "token_metrics": dict.fromkeys(TOKEN_FIELDS, 0),
                "models": {},
                "spilled": 0,
            }
        for field in TOKEN_FIELDS:
            total["token_metrics"][field] += row.get(field) or 0
        total["spilled"] += int(row.get("spilled") or 0)
        add_row(total, row["_id"], int(row["count"]), int(row.get("runs") or 0))
    return list(out.values())


def add_row(total: dict[str, Any], key: dict[str, Any], count: int, runs: int) -> None:
    """Add one grouped row to its (day, owner) total: ``count`` sessions holding ``runs`` runs for a
    type row, ``count`` model uses for a model row."""
    if key.get("kind") is not None:
        total[f"{key['kind']}_sessions_count"] += count
        total[f"{key['kind']}_runs_count"] += runs
    elif key.get("model") is not None:
        model = (key["model"], key.get("provider"))
        total["models"][model] = total["models"].get(model, 0) + count


def overflow_pipeline(start: int | None, end: int, overflow_collection: str) -> list[dict[str, Any]]:
    """Runs per (day, owner, type, model, provider) held in the overflow chunks of the sessions
    created in ``[start, end)``, counting only what each session's ``spilled`` entries list (a chunk
    may also hold superseded versions). One entry, then one chunk, then one run per pipeline
    document (the ``$lookup`` is unwound at once), grouped with ``$sum`` only."""
    run = "$chunk.runs"
    return [
        {"$match": {**session_range(start, end), "spilled.0": {"$exists": True}}},
        {"$project": {"_id": 0, **DAY_AND_OWNER, "kind": "$session_type", "entry": "$spilled"}},
        {"$unwind": "$entry"},
        {"$lookup": {"from": overflow_collection, "localField": "entry.c", "foreignField": "_id", "as": "chunk"}},
        {"$unwind": "$chunk"},
        {"$unwind": run},
        {"$match": {"$expr": {"$in": [f"{run}.run_id", {"$ifNull": ["$entry.ids", []]}]}}},
        {
            "$group": {
                "_id": {
                    "day": "$day",
                    "owner": "$owner",
                    "kind": "$kind",
                    "model": {"$cond": [_has_model(run), f"{run}.model", None]},
                    "provider": _provider(run),
                },
                "count": {"$sum": 1},
            }
        },
    ]


def add_overflow(records: list[dict[str, Any]], counts: list[dict[str, Any]]) -> None:
    """Fold the overflowed runs into their (day, owner) totals (in place)."""
    by_key = {(total["day"], total["user_id"]): total for total in records}
    for row in counts:
        key = row["_id"]
        total = by_key.get((int(key["day"]), key["owner"]))
        if total is None:
            continue
        total[f"{key['kind']}_runs_count"] += int(row["count"])
        if key.get("model") is not None:
            add_row(total, {"model": key["model"], "provider": key.get("provider")}, int(row["count"]), 0)


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


def write_records_plan(records: list[MetricsFields]) -> Plan[None]:
    """The bulk upsert; records another calculation inserted at the same moment are sent once more.

    Two upserts of one new ``_id`` at once: one inserts, the other fails with a duplicate key
    (MongoDB retries that itself; a server that does not, such as the embedded one, reports it).
    The second attempt finds the document and updates it.
    """
    try:
        yield bulk_upsert(records)
    except BulkWriteError as error:
        failed = duplicate_indexes(error)
        if failed is None:
            raise
        yield bulk_upsert([records[index] for index in failed])


def calculate_metrics_plan(
    metrics_collection: str, now: int, overflow_collection: str = OVERFLOW
) -> Plan[list[dict[str, Any]] | None]:
    """Rebuild every day from agno's resume day through today; the records written, or None.

    None when there is nothing to count at all (no records and no sessions), as agno returns; an
    empty list when the days to rebuild hold no sessions.
    """
    today = datetime.fromtimestamp(now, tz=UTC).date()
    state: list[dict[str, Any]] = yield resume_state(metrics_collection)
    resume, created = resume_point(state)
    start = None if resume is None else midnight(resume)
    end = midnight(today + timedelta(days=1))
    rows: list[dict[str, Any]] = yield aggregate(SESSIONS, sessions_pipeline(start, end))
    if not rows:
        return None if resume is None else []
    records_totals = totals(rows)
    if any(total["spilled"] for total in records_totals):
        counts: list[dict[str, Any]] = yield aggregate(SESSIONS, overflow_pipeline(start, end, overflow_collection))
        add_overflow(records_totals, counts)
    records = [build_record(total, today, now, created) for total in records_totals]
    yield from write_records_plan(records)
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


# --- shaping stored records for people (the CLI's ``metrics --from-records`` and the dashboard) ------


DAY_TOTAL_KEYS = ("runs", "sessions", "users", "tokens")


def daily_totals(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Runs, sessions, users and tokens per ISO day from stored daily records (one per day and owner).

    Sessions count on the day they were created, as agno's records do; ``users`` sums the owner
    buckets of a day (a day's distinct owners; across days it is not a number of distinct users).
    """
    days: dict[str, dict[str, int]] = {}
    for record in records:
        bucket = days.setdefault(str(record.get("date")), dict.fromkeys(DAY_TOTAL_KEYS, 0))
        for kind in SESSION_TYPES:
            bucket["runs"] += int(record.get(f"{kind}_runs_count") or 0)
            bucket["sessions"] += int(record.get(f"{kind}_sessions_count") or 0)
        bucket["users"] += int(record.get("users_count") or 0)
        tokens = record.get("token_metrics")
        bucket["tokens"] += int(tokens.get("total_tokens") or 0) if isinstance(tokens, dict) else 0
    return days
