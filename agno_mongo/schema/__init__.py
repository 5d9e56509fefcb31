"""Pydantic documents: one module per collection, shared by the sync and async classes."""

from agno_mongo.schema.base import SCHEMA_VERSION, check_id, check_optional_id
from agno_mongo.schema.session import SessionDocument, SessionFields, run_to_dict

__all__ = [
    "SCHEMA_VERSION",
    "SessionDocument",
    "SessionFields",
    "check_id",
    "check_optional_id",
    "run_to_dict",
]
