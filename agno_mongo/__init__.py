"""agno-mongo: MongoDB storage for Agno agents, teams and workflows.

``MongoDb`` (PyMongo) and ``AsyncMongoDb`` (PyMongo async, or Motor) are drop-in ``db=`` arguments.
"""

from typing import TYPE_CHECKING

from agno_mongo.errors import (
    AgnoMongoError,
    CorruptDocumentError,
    EvalRunOwnershipError,
    InvalidInputError,
    KnowledgeOwnershipError,
    LearningOwnershipError,
    ReplicaSetRequiredError,
    RunTooLargeError,
    SessionFullError,
    SessionOwnershipError,
    WriteContentionError,
)

__all__ = [
    "AgnoMongoError",
    "AsyncMongoDb",
    "CorruptDocumentError",
    "EvalRunOwnershipError",
    "InvalidInputError",
    "KnowledgeOwnershipError",
    "LearningOwnershipError",
    "MongoDb",
    "ReplicaSetRequiredError",
    "RunTooLargeError",
    "SessionFullError",
    "SessionOwnershipError",
    "WriteContentionError",
]


if TYPE_CHECKING:
    from agno_mongo.db import AsyncMongoDb, MongoDb


def __getattr__(name: str) -> object:
    """``MongoDb``/``AsyncMongoDb`` on first use: importing a submodule (the CLI) does not load agno."""
    if name in {"MongoDb", "AsyncMongoDb"}:
        from agno_mongo import db

        return getattr(db, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
