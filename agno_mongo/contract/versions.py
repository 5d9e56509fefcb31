"""Schema-version stamps and collection checks: agno's contract as plans.

``table_exists`` is one ``listCollections`` filtered to the name; the stamps are one point read or
one upsert on the versions collection. As plans they get the driver's retries and run the same on
PyMongo, PyMongo async and Motor.
"""

from __future__ import annotations

from agno_mongo.contract.checks import check_str, check_table_name
from agno_mongo.ops import versions as ops
from agno_mongo.ops.command import Plan

CURRENT_AGNO_SCHEMA = "3.0.0"
"""What ``get_latest_schema_version`` reports for unstamped tables: our documents are already in
the current layout, so agno's MigrationManager has nothing to migrate."""


class VersionContract:
    """The schema-version part of agno's ``BaseDb`` contract, as plans."""

    def table_exists(self, table_name: str) -> Plan[bool]:
        """Whether a collection of that name exists in the database (``table_name`` checked first)."""
        name = check_table_name("table_name", table_name)
        names = yield ops.collection_names(name)
        return name in names

    def get_latest_schema_version(self, table_name: str) -> Plan[str]:
        """The agno schema stamp for a table; unstamped tables are current."""
        document = yield ops.get_stamp(check_table_name("table_name", table_name))
        return str((document or {}).get("version") or CURRENT_AGNO_SCHEMA)

    def upsert_schema_version(self, table_name: str, version: str) -> Plan[None]:
        """Record agno's schema stamp for a table (``table_name`` and ``version`` checked first)."""
        command = ops.set_stamp(check_table_name("table_name", table_name), check_str("version", version))
        yield command
