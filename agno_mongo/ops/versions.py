"""Pure command builders for agno's schema-version stamps and collection checks (no I/O).

agno's ``MigrationManager`` stamps each table with the schema version it last migrated to, one
document per table name in the versions collection. Our documents are already in agno's current
layout, so an unstamped table reads as current. Every command here is a point read or a ``$set`` of
whole values, so each may be resent after a lost reply.
"""

from __future__ import annotations

from agno_mongo.ops.command import Command

VERSIONS = "versions"


def collection_names(name: str) -> Command:
    """``listCollections`` for one name (``nameOnly``), run on the database the versions collection is in."""
    return Command(VERSIONS, "list_collection_names", {"filter": {"name": name}})


def get_stamp(table_name: str) -> Command:
    """The stamp document of one table, or ``None``."""
    return Command(VERSIONS, "find_one", {"filter": {"table_name": table_name}, "projection": {"_id": False}})


def set_stamp(table_name: str, version: str) -> Command:
    """Upsert one table's stamp: a ``$set`` of whole values, the same on a second arrival."""
    return Command(
        VERSIONS,
        "update_one",
        {
            "filter": {"table_name": table_name},
            "update": {"$set": {"table_name": table_name, "version": version}},
            "upsert": True,
        },
    )
