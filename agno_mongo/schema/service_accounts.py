"""The service account document: one per machine identity (AgentOS ``agno_pat_`` tokens), ``_id`` is its id.

``ServiceAccountFields`` is what ``create_service_account`` may store (strict: a wrong type or an unknown
key is refused before any command); ``ServiceAccountDocument`` is what a read gets back (validated, so a
malformed stored document raises instead of authenticating anyone).

``active`` is not agno's: it is ``True`` while ``revoked_at`` is null and absent once the account is
revoked, so a partial unique index on ``name`` filtered by ``{active: true}`` enforces "one active
account per name" the way agno's SQL ``WHERE revoked_at IS NULL`` index does (MongoDB 6.0 allows no
``$ne``/``$eq: null`` in a partial filter, and a unique index counts null as a value). Every write that
changes ``revoked_at`` keeps it in step; reads never hand it to agno.

Two more internal fields: ``created_ns`` (the client clock in nanoseconds at create) breaks ties in
listings the way agno's SQL stores do in practice (accounts minted in the same second come newest
first, as SQLite's ``created_at`` index scan returns them), and ``_op`` (a random token per create)
lets a create tell its own resent first arrival from another create of the same id.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agno_mongo.errors import InvalidInputError
from agno_mongo.schema.base import SCHEMA_VERSION, IdStr, Int64, Text, from_stored, validated

__all__ = [
    "ACTIVE",
    "OP",
    "SCHEMA_VERSION",
    "SEQUENCE",
    "ServiceAccountDocument",
    "ServiceAccountFields",
    "service_account_row",
]

ACTIVE = "active"
"""The marker field the partial unique name index filters on."""

SEQUENCE = "created_ns"
"""Client clock in nanoseconds at create: the listing tie-break within one ``created_at`` second."""
OP = "_op"
"""The create's random token: a create that finds the id taken is its own resend exactly when the
stored token is its own (two creates of one identical dict are two creates, refused as agno's are)."""


class ServiceAccountFields(BaseModel):
    """One ``ServiceAccount.to_dict()`` as stored: the columns of agno's SQL table, nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: IdStr
    name: Text
    user_id: Text | None = None
    token_hash: Text
    token_prefix: Text
    scopes: list[Text]
    created_at: Int64
    expires_at: Int64 | None = None
    last_used_at: Int64 | None = None
    revoked_at: Int64 | None = None
    created_by: Text | None = None

    @classmethod
    def from_dict(cls, account_data: object, *, name: str = "account_data") -> ServiceAccountFields:
        """Validate the dict agno passes, naming the first bad (or unknown, or missing) key."""
        if not isinstance(account_data, dict):
            raise InvalidInputError(name, f"must be a dict, got {type(account_data).__name__}")
        return validated(cls, account_data, f"{name}.")

    def document(self, write_token: str, created_ns: int) -> dict[str, Any]:
        """The whole document a new account is stored as; ``active`` set only while not revoked."""
        stored: dict[str, Any] = {"_id": self.id, **self.model_dump(exclude={"id"})}
        if self.revoked_at is None:
            stored[ACTIVE] = True
        stored[SEQUENCE] = created_ns
        stored[OP] = write_token
        stored["schema_version"] = SCHEMA_VERSION
        return stored


class ServiceAccountDocument(BaseModel):
    """A stored account as read back: agno's row, validated (a wrong type raises, so a hand-edited
    document can neither crash AgentOS's verifier nor slip past its revocation check)."""

    model_config = ConfigDict(extra="ignore", strict=False, populate_by_name=True)

    id: IdStr = Field(alias="_id")
    name: str
    user_id: str | None = None
    token_hash: str
    token_prefix: str
    scopes: list[str]
    created_at: Int64
    expires_at: Int64 | None = None
    last_used_at: Int64 | None = None
    revoked_at: Int64 | None = None
    created_by: str | None = None

    def to_agno_dict(self) -> dict[str, Any]:
        """The row dict agno's SQL stores return (``ServiceAccount.from_dict`` reads it)."""
        return self.model_dump()


def service_account_row(document: dict[str, Any]) -> dict[str, Any]:
    """A stored document as agno's row dict, or :class:`~agno_mongo.errors.CorruptDocumentError`."""
    return from_stored(ServiceAccountDocument, document, "service_accounts").to_agno_dict()
