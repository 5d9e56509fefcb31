"""``doctor``: server version and topology, indexes present against expected, the largest sessions.

The collection reads are a plan (:func:`doctor_plan`: ``$indexStats``, ``$collStats`` and a
``$bsonSize`` aggregation as :class:`~agno_mongo.ops.command.Command` values run by the drivers, like
every other read in the library). Only what no collection command answers is asked directly:
``ping``/``hello``/``buildInfo`` (server facts) and ``listCollections`` (which collections exist),
plus ``listIndexes`` for a collection whose ``$indexStats`` the user may not run (it needs the
``indexStats`` privilege, which MongoDB's ``read`` role lacks).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError
from rich.table import Table
from rich.text import Text

from agno_mongo import drivers
from agno_mongo.cli.views import bar, human_bytes, stdout_console
from agno_mongo.db import TTL_INDEX_NAME, MongoDb
from agno_mongo.domains import INDEXES
from agno_mongo.ops.command import Command, Plan
from agno_mongo.ops.sessions import SESSIONS

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""MongoDB's document size limit (``maxBsonObjectSize``)."""
WIRE_VERSIONS = {25: "8.0", 21: "7.0", 17: "6.0", 13: "5.0", 9: "4.4", 8: "4.2"}


def server_report(client: MongoClient[dict[str, Any]]) -> dict[str, Any]:
    """Version and topology from ``hello`` (and ``buildInfo`` where the server has it)."""
    started = time.perf_counter()
    client.admin.command("ping")
    latency_ms = (time.perf_counter() - started) * 1000
    hello = client.admin.command("hello")
    try:
        build = client.admin.command("buildInfo")
    except PyMongoError:
        build = {}
    wire = hello.get("maxWireVersion")
    version = build.get("version") or hello.get("version")
    if not version and isinstance(wire, int):
        family = next((name for number, name in sorted(WIRE_VERSIONS.items(), reverse=True) if wire >= number), None)
        version = f"{family}+ (wire version {wire})" if family else f"unknown (wire version {wire})"
    if hello.get("msg") == "isdbgrid":
        topology = "sharded cluster (mongos)"
    elif hello.get("setName"):
        topology = f"replica set {hello['setName']} ({len(hello.get('hosts') or [])} members)"
    else:
        topology = "standalone"
    distributed = topology != "standalone"
    return {
        "version": version or "unknown",
        "wire_version": wire,
        "topology": topology,
        "primary": hello.get("primary"),
        "embedded": "mongoeco" in {build.get("gitVersion"), hello.get("gitVersion")},
        "change_streams": distributed,
        "transactions": distributed,
        "max_bson_object_size": int(hello.get("maxBsonObjectSize") or MAX_DOCUMENT_BYTES),
        "ping_ms": round(latency_ms, 2),
    }


def plain_key(key: Mapping[str, Any]) -> dict[str, Any]:
    """An index key spec with numeric directions as ints (servers answer 1 or 1.0)."""
    return {name: int(value) if isinstance(value, int | float) else value for name, value in key.items()}


def indexes_of(role: str) -> Plan[dict[str, dict[str, Any]] | None]:
    """Index name -> its spec (key, options) on the role's collection; ``None`` if ``$indexStats`` is refused."""
    try:
        stats: list[dict[str, Any]] = yield Command(role, "aggregate", {"pipeline": [{"$indexStats": {}}]})
    except OperationFailure:
        return None
    found: dict[str, dict[str, Any]] = {}
    for entry in stats:  # a sharded collection answers once per shard
        given = entry.get("spec")
        spec: Mapping[str, Any] = given if isinstance(given, Mapping) else entry
        found.setdefault(str(entry.get("name")), {**spec, "key": plain_key(entry.get("key") or spec.get("key") or {})})
    return found


def count_of(role: str) -> Plan[int]:
    """The collection's document count from its metadata (``$collStats``; no scan), summed over shards."""
    try:
        stats: list[dict[str, Any]] = yield Command(role, "aggregate", {"pipeline": [{"$collStats": {"count": {}}}]})
    except OperationFailure:  # no such collection yet
        return 0
    return sum(int(entry.get("count") or 0) for entry in stats)


def largest_plan(top: int) -> Plan[list[dict[str, Any]]]:
    """The ``top`` largest session documents by BSON size (``$bsonSize``, MongoDB 4.4+).

    This reads every session document on the server: run it off-peak on a large collection.
    """
    documents: list[dict[str, Any]] = yield Command(
        SESSIONS,
        "aggregate",
        {
            "pipeline": [
                {
                    "$project": {
                        "user_id": 1,
                        "runs": {"$size": {"$ifNull": ["$runs", []]}},
                        "overflow": {"$size": {"$ifNull": ["$spilled", []]}},
                        "size": {"$bsonSize": "$$ROOT"},
                    }
                },
                {"$sort": {"size": -1}},
                {"$limit": top},
            ],
            "allowDiskUse": True,
        },
    )
    return documents


def doctor_plan(existing: set[str], names: Mapping[str, str], top: int) -> Plan[dict[str, Any]]:
    """Indexes and counts of every existing collection, then the largest sessions (or why not)."""
    collections: dict[str, dict[str, Any]] = {}
    for role in INDEXES:
        if names[role] in existing:
            indexes = yield from indexes_of(role)
            documents = yield from count_of(role)
            collections[role] = {"indexes": indexes, "documents": documents}
    try:
        largest: list[dict[str, Any]] | None = yield from largest_plan(top)
        error = None
    except PyMongoError as failure:  # $bsonSize needs MongoDB 4.4+
        largest, error = None, str(failure)
    return {"collections": collections, "largest": largest, "largest_error": error}


def listed_indexes(db: MongoDb, role: str) -> dict[str, dict[str, Any]]:
    """``listIndexes``: the fallback where ``$indexStats`` is not allowed."""
    return {
        str(index["name"]): {**index, "key": plain_key(index["key"])}
        for index in db.database[db.collection_names[role]].list_indexes()
    }


def index_report(db: MongoDb, existing: set[str], found: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per collection role: expected indexes (``agno_mongo.domains.INDEXES``) against those present."""
    report = []
    for role, models in INDEXES.items():
        name = db.collection_names[role]
        exists = name in existing
        present: dict[str, dict[str, Any]] = {}
        if exists:
            present = found[role]["indexes"]
            if present is None:
                present = listed_indexes(db, role)
        indexes = []
        for model in models:
            spec = model.document
            key = plain_key(spec["key"])
            if not exists:
                status = "no collection yet"
            elif spec["name"] not in present:
                status = "missing"
            elif present[spec["name"]]["key"] != key:
                status = "different keys"
            else:
                status = "ok"
            indexes.append({"name": spec["name"], "key": key, "status": status})
        expected = {model.document["name"] for model in models}
        if role == "sessions":
            expected.add(TTL_INDEX_NAME)  # optional (session_ttl_seconds): reported as session_ttl_seconds
        entry: dict[str, Any] = {
            "role": role,
            "collection": name,
            "exists": exists,
            "documents": found[role]["documents"] if exists else 0,
            "indexes": indexes,
            "extra": sorted(index for index in present if index not in expected and index != "_id_"),
        }
        if role == "sessions":
            ttl = (present.get(TTL_INDEX_NAME) or {}).get("expireAfterSeconds")
            entry["session_ttl_seconds"] = int(ttl) if isinstance(ttl, int | float) else None
        report.append(entry)
    return report


def doctor_report(db: MongoDb, database: str, top: int, create_indexes: bool) -> dict[str, Any]:
    """Everything ``doctor`` prints, and the problems found."""
    server = server_report(db.db_client)
    created = db.create_indexes() if create_indexes else None
    existing = set(db.database.list_collection_names())
    found = drivers.run_sync(db, doctor_plan(existing, db.collection_names, top))
    limit = server["max_bson_object_size"]
    largest = None
    if found["largest"] is not None:
        largest = [
            {
                "session_id": document["_id"],
                "user_id": document.get("user_id"),
                "runs": document.get("runs", 0),
                "overflow_documents": document.get("overflow", 0),
                "bytes": int(document["size"]),
                "percent_of_limit": round(100 * int(document["size"]) / limit, 2),
            }
            for document in found["largest"]
        ]
    report: dict[str, Any] = {
        "database": database,
        "server": server,
        "collections": index_report(db, existing, found["collections"]),
        "created_indexes": created,
        "largest_sessions": largest,
        "largest_sessions_error": found["largest_error"],
    }
    report["problems"] = doctor_problems(report)
    return report


def doctor_problems(report: Mapping[str, Any]) -> list[str]:
    """What needs attention: indexes missing on existing collections, sessions near the size limit."""
    problems = []
    for collection in report["collections"]:
        for index in collection["indexes"]:
            if index["status"] in {"missing", "different keys"}:
                problems.append(f"{collection['collection']}: index {index['name']} {index['status']}")
    for session in report["largest_sessions"] or []:
        if session["percent_of_limit"] >= 90:
            problems.append(f"session {session['session_id']} is at {session['percent_of_limit']}% of the size limit")
    return problems


# --- commands -----------------------------------------------------------------------------------


def print_doctor(report: Mapping[str, Any]) -> None:
    """The doctor report as tables."""
    console = stdout_console()
    server = report["server"]
    yes_no = {True: "[green]yes[/]", False: "[yellow]no[/]"}
    console.print(
        f"[bold]Server[/]  MongoDB {server['version']}" + ("  (embedded mongoeco)" if server["embedded"] else "")
    )
    console.print(
        f"  topology: {server['topology']} · change streams: {yes_no[server['change_streams']]}"
        f" · transactions: {yes_no[server['transactions']]} · ping {server['ping_ms']} ms"
    )
    table = Table(title=f"Indexes in database {report['database']!r}", title_justify="left")
    for column in ("collection", "docs", "index", "keys", "status"):
        table.add_column(column, overflow="fold", no_wrap=column in {"index", "status"})
    styles = {"ok": "green", "missing": "red", "different keys": "red", "no collection yet": "dim"}
    for collection in report["collections"]:
        for position, index in enumerate(collection["indexes"]):
            table.add_row(
                collection["collection"] if position == 0 else "",
                str(collection["documents"]) if position == 0 and collection["exists"] else "",
                index["name"],
                ", ".join(f"{key} {direction}" for key, direction in index["key"].items()),
                Text(index["status"], style=styles.get(index["status"], "")),
            )
        for extra in collection["extra"]:
            table.add_row("", "", extra, "", Text("extra (not created by agno-mongo)", style="dim"))
    console.print(table)
    if report.get("created_indexes") is not None:
        count = sum(len(names) for names in report["created_indexes"].values())
        console.print(
            f"[green]Created or confirmed {count} indexes on {len(report['created_indexes'])} collections.[/]"
        )
    sessions = next((c for c in report["collections"] if c["role"] == "sessions"), None)
    if sessions is not None and sessions["exists"]:
        ttl = sessions.get("session_ttl_seconds")
        console.print(
            f"Session expiry ({TTL_INDEX_NAME}): " + ("off" if ttl is None else f"{ttl} s after the last write")
        )
    largest = report["largest_sessions"]
    if largest is None:
        console.print(f"[yellow]largest sessions unavailable:[/] {report['largest_sessions_error']}", markup=True)
    else:
        limit = server["max_bson_object_size"]
        sizes = Table(title=f"Largest session documents (limit {limit / 2**20:.0f} MiB)", title_justify="left")
        for column in ("session", "user", "runs", "overflow docs", "size", "of limit", ""):
            sizes.add_column(
                column, justify="right" if column in {"runs", "overflow docs", "size", "of limit"} else "left"
            )
        for item in largest:
            percent = item["percent_of_limit"]
            style = "red" if percent >= 90 else "yellow" if percent >= 50 else "green"
            sizes.add_row(
                Text(str(item["session_id"])),
                Text(str(item["user_id"] or "-")),
                str(item["runs"]),
                str(item["overflow_documents"]),
                human_bytes(item["bytes"]),
                f"{percent:.2f}%",
                Text(bar(percent, 100, 20) or "▏", style=style),
            )
        console.print(sizes)
    if report["problems"]:
        console.print("[bold red]Needs attention:[/]")
        for problem in report["problems"]:
            console.print(Text(f"  - {problem}"))
    else:
        console.print("[green]No problems found.[/]")
