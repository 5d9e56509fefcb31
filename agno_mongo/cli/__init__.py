"""``agno-mongo``: inspect, export and check agno sessions stored in MongoDB from a terminal.

Commands read through the public :class:`~agno_mongo.MongoDb` API (``get_sessions``,
``get_session``, ``get_metrics``, ``rename_session``) or through plans run by the same drivers
(keyset export pages, the metrics window, tail's polls, doctor's collection reads), so they see
what an agent would, with the same filters and ownership rules.

Without ``--url`` or ``MONGODB_URL`` (alias ``MONGODB_URI``) every command opens the embedded server
on the examples' data file and database (:mod:`agno_mongo.local`) and says so on stderr.

Modules: ``app`` (Typer wiring), ``common`` (options, errors, times, filters), ``connect`` (opening
the store), ``shape`` (transcripts and rows, shared with the dashboard), ``views`` (terminal
output), ``export``, ``metrics``, ``tail``, ``doctor``, ``seed``.
"""

from agno_mongo.cli.app import app, main

__all__ = ["app", "main"]
