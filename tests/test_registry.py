"""The domain registry: both classes bind the same contract, with agno's signatures.

What this proves: every plan in :mod:`agno_mongo.domains` reaches ``MongoDb`` as a blocking method
and ``AsyncMongoDb`` as a coroutine method; wherever agno's ``BaseDb`` / ``AsyncBaseDb`` declares the
method, its parameters (names, kinds, defaults) are agno's, so a call written against agno works
here; and the methods agno declares that we leave to agno's ``NotImplementedError`` are exactly the
ones the README's status table says are not built.
"""

from __future__ import annotations

import inspect

import pytest
from agno.db.base import AsyncBaseDb, BaseDb

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.domains import DOMAINS, plans

CONTRACT = dict(plans())
ASYNC_CONTRACT = dict(plans(asynchronous=True))
SYNC_ONLY = set(CONTRACT) - set(ASYNC_CONTRACT)


def public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name, None))}


def parameters(function: object) -> list[tuple[str, object, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def accepts_agnos_calls(ours: object, agnos: object) -> bool:
    """Same parameter names, kinds and defaults; where agno declares no default, ours may add one
    (agno's own MongoDb does, for ``table_name``), since every call written against agno still fits."""
    mine, theirs = parameters(ours), parameters(agnos)
    return len(mine) == len(theirs) and all(
        (name, kind) == (their_name, their_kind)
        and (default == their_default or their_default is inspect.Parameter.empty)
        for (name, kind, default), (their_name, their_kind, their_default) in zip(mine, theirs, strict=True)
    )


def implemented(cls: type, base: type) -> set[str]:
    """Public methods of ``cls`` that are not agno's inherited stubs."""
    return {name for name in public_methods(cls) if getattr(cls, name) is not getattr(base, name, None)}


def test_both_classes_bind_every_contract_method() -> None:
    for name in CONTRACT:
        assert getattr(MongoDb, name) is not getattr(BaseDb, name, None), name
        assert not inspect.iscoroutinefunction(getattr(MongoDb, name)), name
    for name in ASYNC_CONTRACT:
        assert getattr(AsyncMongoDb, name) is not getattr(AsyncBaseDb, name, None), name
        assert inspect.iscoroutinefunction(getattr(AsyncMongoDb, name)), name


def test_sync_only_methods_are_absent_from_the_async_class() -> None:
    """agno calls these synchronously on any store that has them (compaction records): a coroutine
    version on AsyncMongoDb would be called, never awaited, and store nothing. Where AsyncBaseDb
    declares them as plain stubs (components: "not supported for async databases yet"),
    AsyncMongoDb keeps agno's stub, as agno's own async stores do."""
    for name in SYNC_ONLY:
        if hasattr(AsyncBaseDb, name):
            assert getattr(AsyncMongoDb, name) is getattr(AsyncBaseDb, name), name
            assert not inspect.iscoroutinefunction(getattr(AsyncBaseDb, name)), name
        else:
            assert not hasattr(AsyncMongoDb, name), name


def test_sync_and_async_implement_the_same_methods() -> None:
    sync = implemented(MongoDb, BaseDb) - {"database"} - SYNC_ONLY
    assert sync == implemented(AsyncMongoDb, AsyncBaseDb) - {"database"}


@pytest.mark.parametrize(("cls", "base"), [(MongoDb, BaseDb), (AsyncMongoDb, AsyncBaseDb)])
def test_signatures_are_agnos(cls: type, base: type) -> None:
    differ = {}
    for name in sorted(implemented(cls, base)):
        declared = getattr(base, name, None)
        if declared is None or not inspect.isfunction(declared):
            continue
        if not accepts_agnos_calls(getattr(cls, name), declared):
            differ[name] = (parameters(getattr(cls, name)), parameters(declared))
    assert differ == {}


def test_roles_are_unique_and_every_plan_role_is_registered() -> None:
    roles = [domain.role for domain in DOMAINS]
    assert len(roles) == len(set(roles))


def test_constructor_without_a_server_is_agnos_value_error() -> None:
    for cls in (MongoDb, AsyncMongoDb):
        with pytest.raises(ValueError) as error:
            cls()
        assert str(error.value).startswith("One of db_url or db_client must be provided")


def test_async_class_has_agnos_client_type_names_and_database_property() -> None:
    assert (
        AsyncMongoDb.CLIENT_TYPE_MOTOR,
        AsyncMongoDb.CLIENT_TYPE_PYMONGO_ASYNC,
        AsyncMongoDb.CLIENT_TYPE_UNKNOWN,
    ) == (
        "motor",
        "pymongo_async",
        "unknown",
    )
    assert isinstance(inspect.getattr_static(AsyncMongoDb, "database"), property)
