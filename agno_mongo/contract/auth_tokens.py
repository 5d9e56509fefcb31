"""Auth tokens: agno's contract as plans (check arguments, build commands, map answers).

agno's Google tools (``provider="google"``, no user) and xAI SuperGrok sign-in (``provider="xai"``,
per user or the deployment slot ``""``) read, upsert and delete their OAuth tokens through these three
methods. Each call is one command on the token's ``_id``.
"""

from __future__ import annotations

from typing import Any

from agno_mongo.contract.checks import check_optional_str, check_str, now
from agno_mongo.ops import auth_tokens as ops
from agno_mongo.ops.command import Plan
from agno_mongo.schema.auth_tokens import AuthTokenFields, auth_token_row, token_key


class AuthTokenContract:
    """The auth tokens part of agno's ``BaseDb`` contract, as plans."""

    def get_auth_token(self, provider: str, user_id: str | None, service: str) -> Plan[dict[str, Any] | None]:
        """The stored token row for the triple, or ``None``; ``user_id=None`` and ``""`` are the same slot."""
        key = token_key(
            check_str("provider", provider), check_optional_str("user_id", user_id), check_str("service", service)
        )
        document = yield ops.get(key)
        return None if document is None else auth_token_row(document)

    def upsert_auth_token(self, token: dict[str, Any]) -> Plan[dict[str, Any] | None]:
        """Store or replace the token for its triple in one command; the stored row.

        As in agno's SQL stores, a replace keeps the row's id and ``created_at`` and sets
        ``token_data``, ``granted_scopes`` (``None`` when left out) and ``updated_at``. A bad token
        dict raises :class:`~agno_mongo.errors.InvalidInputError` naming the key, where agno's SQL
        stores log and return ``None``.
        """
        fields = AuthTokenFields.from_dict(token)
        document = yield from ops.upsert_plan(fields, now())
        return None if document is None else auth_token_row(document)

    def delete_auth_token(self, provider: str, user_id: str | None, service: str) -> Plan[bool]:
        """Delete the triple's token; whether there was one."""
        key = token_key(
            check_str("provider", provider), check_optional_str("user_id", user_id), check_str("service", service)
        )
        return (yield from ops.delete_plan(key))
