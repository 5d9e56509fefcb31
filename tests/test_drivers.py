"""The plan/driver boundary: what a driver sends back to a plan, on the three real clients.

Plans read write results as :class:`~agno_mongo.ops.command.Written` only; these tests send every
write op a plan may yield through the real drivers and check the counts the server reported arrive
under PyMongo's names, and that a client with ``w=0`` (whose writes report nothing) is refused
before anything is sent.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from agno.session import AgentSession
from pymongo import DeleteOne, InsertOne, MongoClient, UpdateOne
from pymongo.errors import ConfigurationError

from agno_mongo.drivers import execute_async, execute_sync
from agno_mongo.ops.command import WRITE_OPS, Command, Written
from tests.conftest import FLAVOURS, call, close, make_db

CASES: list[tuple[Command, Written]] = [
    (Command("c", "insert_one", {"document": {"_id": "a", "n": 1}}), Written(inserted_count=1)),
    (
        Command("c", "insert_many", {"documents": [{"_id": "b", "n": 1}, {"_id": "c", "n": 2}]}),
        Written(inserted_count=2),
    ),
    (Command("c", "update_one", {"filter": {"_id": "a"}, "update": {"$set": {"n": 5}}}), Written(1, 1)),
    (Command("c", "update_one", {"filter": {"_id": "a"}, "update": {"$set": {"n": 5}}}), Written(1, 0)),
    (
        Command("c", "update_one", {"filter": {"_id": "z"}, "update": {"$set": {"n": 0}}, "upsert": True}),
        Written(upserted_count=1),
    ),
    (Command("c", "update_many", {"filter": {"n": {"$gte": 1}}, "update": {"$inc": {"n": 1}}}), Written(3, 3)),
    (Command("c", "replace_one", {"filter": {"_id": "b"}, "replacement": {"n": 9}}), Written(1, 1)),
    (
        Command(
            "c",
            "bulk_write",
            {
                "requests": [
                    InsertOne({"_id": "d"}),
                    UpdateOne({"_id": "d"}, {"$set": {"n": 1}}),
                    UpdateOne({"_id": "y"}, {"$set": {"n": 1}}, upsert=True),
                    DeleteOne({"_id": "c"}),
                ]
            },
        ),
        Written(matched_count=1, modified_count=1, deleted_count=1, inserted_count=1, upserted_count=1),
    ),
    (Command("c", "delete_one", {"filter": {"_id": "missing"}}), Written()),
    (Command("c", "delete_many", {"filter": {}}), Written(deleted_count=5)),
]
"""Each write op, in order on one collection, and what the driver must answer it with."""


def test_the_cases_cover_every_write_op() -> None:
    assert {command.op for command, _ in CASES} == WRITE_OPS


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_every_write_answers_a_plan_with_the_servers_counts(mongodb_url: str, flavour: str) -> None:
    db = make_db(flavour, mongodb_url, f"drivers_{uuid.uuid4().hex[:8]}")
    collection = db.database[f"c_{uuid.uuid4().hex[:8]}"]
    try:
        for command, expected in CASES:
            if flavour == "pymongo":
                answer = execute_sync(collection, command)
            else:
                answer = await execute_async(collection, command)
            assert answer == expected, command.op
    finally:
        await close(db)


@pytest.mark.parametrize("flavour", FLAVOURS)
async def test_a_client_that_does_not_acknowledge_writes_is_refused_before_it_writes(
    mongodb_url: str, db_name: str, flavour: str
) -> None:
    """With ``w=0`` no plan could know whether a guarded write matched: the store says so, sending nothing."""
    db = make_db(flavour, mongodb_url, db_name, w=0)
    session = AgentSession(session_id=f"s-{uuid.uuid4().hex[:8]}", agent_id="a", user_id="u")
    raw: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
    try:
        with pytest.raises(ConfigurationError, match="w=0"):
            await call(db.upsert_session(session))
        assert raw[db_name][db.session_table_name].count_documents({"_id": session.session_id}) == 0
    finally:
        raw.close()
        await close(db)
