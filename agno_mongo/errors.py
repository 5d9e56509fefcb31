"""Exceptions raised by agno-mongo.

Bad input is refused before anything reaches MongoDB, with the name of the argument that was wrong,
so callers can tell a programming error from a server failure.
"""

from __future__ import annotations


class AgnoMongoError(Exception):
    """Base class for every error agno-mongo raises itself."""


class InvalidInputError(AgnoMongoError, ValueError):
    """An argument has the wrong type or shape; nothing was written.

    ``field`` names the argument (for example ``session_id`` or ``user_id``).
    """

    def __init__(self, field: str, message: str, *, standalone: bool = False) -> None:
        self.field = field
        super().__init__(message if standalone else f"{field}: {message}")


class CorruptDocumentError(AgnoMongoError, ValueError):
    """A stored document does not have the shape agno-mongo writes; it was not handed to agno.

    ``collection`` is the collection's role (``sessions``, ``memories``, ...), ``document_id`` the
    document's ``_id`` and ``field`` the first field found wrong. Nothing was changed: fix or delete
    the document (it was written by something else, or edited by hand).
    """

    def __init__(self, collection: str, document_id: object, field: str, message: str) -> None:
        self.collection = collection
        self.document_id = document_id
        self.field = field
        self.detail = message
        AgnoMongoError.__init__(self, f"{collection} document {document_id!r}: {field}: {message}")


class SessionOwnershipError(AgnoMongoError, PermissionError):
    """The session belongs to another user; the write was refused and nothing changed."""

    def __init__(self, session_id: str, user_id: str | None) -> None:
        self.session_id = session_id
        self.user_id = user_id
        who = "a call without a user_id" if user_id is None else f"user {user_id!r}"
        super().__init__(f"session {session_id!r} belongs to another user; {who} may not write to it")


class LearningOwnershipError(AgnoMongoError, PermissionError):
    """The learning record belongs to another user; the write was refused and nothing changed."""

    def __init__(self, learning_id: str, user_id: str | None) -> None:
        self.learning_id = learning_id
        self.user_id = user_id
        who = "no user" if user_id is None else f"user {user_id!r}"
        super().__init__(f"learning {learning_id!r} belongs to another user; {who} may not write to it")


class EvalRunOwnershipError(AgnoMongoError, PermissionError):
    """The eval run already belongs to another user; its owner was left unchanged."""

    def __init__(self, eval_run_id: str, user_id: str) -> None:
        self.eval_run_id = eval_run_id
        self.user_id = user_id
        super().__init__(f"eval run {eval_run_id!r} belongs to another user; {user_id!r} may not claim it")


class KnowledgeOwnershipError(AgnoMongoError, PermissionError, ValueError):
    """The row's id is taken by a row with another owner (or a shared row); nothing changed.

    Also a ``ValueError``, which is what agno's own adapter raises in this case.
    """

    def __init__(self, content_id: str, user_id: str | None) -> None:
        self.content_id = content_id
        self.user_id = user_id
        who = "a shared row" if user_id is None else f"user {user_id!r}"
        super().__init__(f"knowledge content {content_id!r} has another owner; {who} may not overwrite it")


class RunTooLargeError(AgnoMongoError, ValueError):
    """A single run can never fit in one MongoDB document (16 MiB); the session is unchanged."""


class WriteContentionError(AgnoMongoError):
    """Other writers kept changing the session while a run was being saved; the run was not saved.

    Raised only after many rounds with backoff (each round re-reads the session), so it means
    sustained contention on one session, not a transient race. Safe to retry.
    """


class SessionFullError(AgnoMongoError):
    """The session's index of overflowed runs has filled its document; no more runs fit.

    Each overflowed run keeps its id (a few dozen bytes) in the session document, so a session holds
    roughly ``max_runs_bytes / 40`` runs in all. Nothing was written.
    """


class ReplicaSetRequiredError(AgnoMongoError, RuntimeError):
    """The operation needs multi-document transactions and the server has none (a standalone
    ``mongod``). Nothing was written. Run a replica set: even a single node will do
    (``docker/compose.yml`` starts one), or Atlas, or a sharded cluster."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"{what} needs multi-document transactions, which this MongoDB server does not support "
            "(a standalone mongod). Nothing was written. Use a replica set (a single node is enough: "
            "docker/compose.yml starts one), a sharded cluster or Atlas."
        )
