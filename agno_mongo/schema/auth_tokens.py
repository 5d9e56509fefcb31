"""The auth token document: one stored OAuth token per ``(provider, user_id, service)``.

agno's Google and xAI tools keep their OAuth tokens here (``token_data`` is usually an encrypted
``{"encrypted": "..."}`` dict). ``AuthTokenFields`` is what ``upsert_auth_token`` accepts (strict: an
unknown key or a wrong type is refused before any command); ``AuthTokenDocument`` is what a read gets
back, validated. As in agno's SQL stores, a ``None`` user is stored as ``""`` (the deployment-wide
slot), so ``None`` and ``""`` name the same token.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, Int64, Text, from_stored, validated
from agno_mongo.schema.codec import encode_free_form

__all__ = ["SCHEMA_VERSION", "AuthTokenDocument", "AuthTokenFields", "auth_token_row", "stored_user", "token_key"]


def stored_user(user_id: str | None) -> str:
    """The ``user_id`` as stored: ``""`` for no user, as agno's SQL stores do (their unique constraint
    on ``(provider, user_id, service)`` would not hold for NULLs)."""
    return user_id or ""


def token_key(provider: str, user_id: str | None, service: str) -> str:
    """The ``_id`` of the token for this triple: a SHA-256 of its JSON, so one triple is one document,
    an upsert is one idempotent command on ``_id`` (one shard), and no secondary unique index is needed."""
    triple = json.dumps([provider, stored_user(user_id), service], ensure_ascii=True)
    return hashlib.sha256(triple.encode("ascii")).hexdigest()


class AuthTokenFields(BaseModel):
    """The token dict agno passes (``provider``, ``user_id``, ``service``, ``token_data``, ``granted_scopes``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    provider: Text
    user_id: Text | None = None
    service: Text
    token_data: dict[str, Any]
    granted_scopes: list[Text] | None = None
    created_at: Int64 | None = None
    id: Any = None
    """Ignored: agno's SQL stores replace it too; here the id is derived from the triple."""
    updated_at: Any = None
    """Ignored: every upsert stamps its own time, as in agno's SQL stores."""

    @classmethod
    def from_dict(cls, token: object, *, name: str = "token") -> AuthTokenFields:
        """Validate the dict agno passes, naming the first bad (or unknown, or missing) key."""
        if not isinstance(token, dict):
            raise InvalidInputError(name, f"must be a dict, got {type(token).__name__}")
        return validated(cls, token, f"{name}.")

    @property
    def key(self) -> str:
        """The document's ``_id``."""
        return token_key(self.provider, self.user_id, self.service)

    def replaced_fields(self, now: int) -> dict[str, Any]:
        """What an upsert sets every time (agno's ``ON CONFLICT DO UPDATE`` columns), ``token_data``
        through the codec."""
        values = {"token_data": self.token_data, "granted_scopes": self.granted_scopes, "updated_at": now}
        return encode_free_form(values, ("token_data",), "token.")

    def inserted_fields(self, now: int) -> dict[str, Any]:
        """What only a new token gets: its key fields and creation time."""
        return {
            "provider": self.provider,
            "user_id": stored_user(self.user_id),
            "service": self.service,
            "created_at": now if self.created_at is None else self.created_at,
            "schema_version": SCHEMA_VERSION,
        }


class AuthTokenDocument(BaseModel):
    """A stored token as read back: agno's row."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: str = Field(alias="_id")
    provider: str
    user_id: str
    service: str
    token_data: dict[str, Any]
    granted_scopes: list[str] | None = None
    created_at: Int64
    updated_at: Int64 | None = None

    def to_agno_dict(self) -> dict[str, Any]:
        """The row dict agno's SQL stores return."""
        return self.model_dump()


def auth_token_row(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as agno's row dict, or :class:`~agno_mongo.errors.CorruptDocumentError`."""
    return from_stored(AuthTokenDocument, document, "auth_tokens").to_agno_dict()
