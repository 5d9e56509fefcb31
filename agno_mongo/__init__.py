"""agno-mongo: MongoDB storage for Agno agents, teams and workflows.

``MongoDb`` (PyMongo) and ``AsyncMongoDb`` (PyMongo async, or Motor) are drop-in ``db=`` arguments.
"""

from agno_mongo.db import AsyncMongoDb, MongoDb
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
