"""ReplyDroppingProxy: a matching command reaches the server, its reply never reaches the client.

Every test writes through the proxy with ``retryWrites=False`` and reads the outcome directly from
the server, so it sees what a client that lost a reply is left with: an AutoReconnect for a command
the server did apply.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient, ReturnDocument, uri_parser
from pymongo.errors import AutoReconnect

from agno_mongo.testing.faults import ReplyDroppingProxy, parse_op_msg

OPTIONS: dict[str, Any] = {"retryWrites": False, "serverSelectionTimeoutMS": 5000}


def target(url: str) -> tuple[str, int, dict[str, Any]]:
    """Host, port and credentials of the test server; the proxy needs plain TCP."""
    parsed = uri_parser.parse_uri(url)
    options = parsed["options"]
    if url.startswith("mongodb+srv://") or options.get("tls") or options.get("ssl"):
        pytest.skip("the proxy forwards plain TCP; this server needs TLS")
    host, port = parsed["nodelist"][0]
    credentials: dict[str, Any] = {}
    if parsed.get("username"):
        credentials = {"username": parsed["username"], "password": parsed["password"]}
        credentials["authSource"] = options.get("authsource") or parsed.get("database") or "admin"
    return host, port, credentials


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Any]:
    """The test database, read directly (no proxy)."""
    client: MongoClient[Any] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    yield client[db_name]
    client.close()


@pytest.fixture
def proxied(mongodb_url: str, db_name: str) -> Iterator[tuple[ReplyDroppingProxy, Any]]:
    """A proxy to the test server and the test database through it."""
    host, port, credentials = target(mongodb_url)
    with ReplyDroppingProxy(host, port) as proxy:
        client: MongoClient[Any] = MongoClient(proxy.url(), **OPTIONS, **credentials)
        try:
            yield proxy, client[db_name]
        finally:
            client.close()


def test_a_dropped_update_is_applied_and_the_client_sees_a_network_error(
    proxied: tuple[ReplyDroppingProxy, Any], raw: Any
) -> None:
    proxy, db = proxied
    db.items.insert_one({"_id": 0})  # connections, handshakes and monitors all pass through
    proxy.drop_next("update")
    assert proxy.armed == 1
    with pytest.raises(AutoReconnect):
        db.items.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
    assert raw.items.find_one({"_id": 1}) == {"_id": 1, "n": 1}  # the server applied it
    assert proxy.armed == 0
    assert [name for name, _ in proxy.dropped] == ["update"]
    name, command = proxy.dropped[0]
    assert command["update"] == "items"
    [update] = command["updates"]  # the kind-1 sequence, merged under its identifier
    assert (update["q"], update["u"], update["upsert"]) == ({"_id": 1}, {"$inc": {"n": 1}}, True)

    result = db.items.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)  # disarmed: goes through
    assert result.modified_count == 1
    assert raw.items.find_one({"_id": 1}) == {"_id": 1, "n": 2}
    assert len(proxy.dropped) == 1


def test_a_predicate_drops_only_the_commands_it_matches(proxied: tuple[ReplyDroppingProxy, Any], raw: Any) -> None:
    proxy, db = proxied
    seen: list[str] = []

    def only_b(name: str, command: dict[str, Any]) -> bool:
        seen.append(name)
        return name == "update" and command["updates"][0]["q"].get("_id") == "b"

    proxy.drop_next(only_b)
    for key in ("a", "b", "c"):
        if key == "b":
            with pytest.raises(AutoReconnect):
                db.items.update_one({"_id": key}, {"$set": {"v": key}}, upsert=True)
        else:
            db.items.update_one({"_id": key}, {"$set": {"v": key}}, upsert=True)
    assert sorted(doc["_id"] for doc in raw.items.find({"v": {"$exists": True}})) == ["a", "b", "c"]
    assert [(name, command["updates"][0]["q"]) for name, command in proxy.dropped] == [("update", {"_id": "b"})]
    assert "hello" not in seen and "isMaster" not in seen  # handshakes are never offered to the predicate
    assert seen.count("update") == 2  # a and b; c came after the arming was used up
    assert proxy.armed == 0


def test_find_and_modify_delete_and_insert_are_dropped_likewise(
    proxied: tuple[ReplyDroppingProxy, Any], raw: Any
) -> None:
    proxy, db = proxied
    db.items.insert_many([{"_id": 1, "n": 0}, {"_id": 2, "n": 0}])

    proxy.drop_next("findAndModify")
    with pytest.raises(AutoReconnect):
        db.items.find_one_and_update({"_id": 1}, {"$inc": {"n": 5}}, return_document=ReturnDocument.AFTER)
    assert raw.items.find_one({"_id": 1}) == {"_id": 1, "n": 5}
    after = db.items.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER)
    assert after == {"_id": 1, "n": 6}

    proxy.drop_next("delete")
    with pytest.raises(AutoReconnect):
        db.items.delete_one({"_id": 2})
    assert raw.items.find_one({"_id": 2}) is None
    assert db.items.delete_one({"_id": 2}).deleted_count == 0  # the retry finds nothing left to delete

    proxy.drop_next("insert")
    with pytest.raises(AutoReconnect):
        db.items.insert_many([{"_id": 3}, {"_id": 4}])
    assert raw.items.count_documents({"_id": {"$in": [3, 4]}}) == 2

    names = [name for name, _ in proxy.dropped]
    assert [name.lower() for name in names] == ["findandmodify", "delete", "insert"]
    find_and_modify, delete, insert = (command for _, command in proxy.dropped)
    assert find_and_modify["query"] == {"_id": 1} and find_and_modify["update"] == {"$inc": {"n": 5}}
    assert [(d["q"], d["limit"]) for d in delete["deletes"]] == [({"_id": 2}, 1)]
    assert insert["documents"] == [{"_id": 3}, {"_id": 4}]  # the kind-1 sequence, merged under its identifier


def test_times_drops_several_replies_then_stops(proxied: tuple[ReplyDroppingProxy, Any], raw: Any) -> None:
    proxy, db = proxied
    proxy.drop_next("update", times=2)
    for _ in range(2):
        with pytest.raises(AutoReconnect):
            db.items.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
    db.items.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
    assert raw.items.find_one({"_id": 1}) == {"_id": 1, "n": 3}
    assert len(proxy.dropped) == 2


def test_many_concurrent_connections_pass_through(mongodb_url: str, db_name: str, raw: Any) -> None:
    host, port, credentials = target(mongodb_url)
    with ReplyDroppingProxy(host, port) as proxy:
        client: MongoClient[Any] = MongoClient(proxy.url(), **OPTIONS, **credentials)
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(20):
                    client[db_name].items.insert_one({"_id": f"{worker}-{i}"})
            except BaseException as error:  # noqa: BLE001  (reported below)
                errors.append(error)

        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        client.close()
        assert errors == []
        assert proxy.connections > 2  # several pool connections plus the monitors
    assert raw.items.count_documents({}) == 160


def test_close_leaves_no_listening_socket_and_no_threads(mongodb_url: str, db_name: str) -> None:
    host, port, credentials = target(mongodb_url)
    proxy = ReplyDroppingProxy(host, port)
    proxy_port = proxy.port
    client: MongoClient[Any] = MongoClient(proxy.url(), **OPTIONS, **credentials)
    client[db_name].items.insert_one({"_id": 1})  # open connections, so close() has some to close
    proxy.close()
    client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy_port), timeout=2).close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.name.startswith("reply-dropping-proxy") for t in threading.enumerate()):
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.name.startswith("reply-dropping-proxy")] == []
    with pytest.raises(RuntimeError):
        proxy.url()
    proxy.close()  # idempotent


async def test_async_client_sees_a_network_error_for_an_applied_update(
    mongodb_url: str, db_name: str, raw: Any
) -> None:
    host, port, credentials = target(mongodb_url)
    with ReplyDroppingProxy(host, port) as proxy:
        client: AsyncMongoClient[Any] = AsyncMongoClient(proxy.url(), **OPTIONS, **credentials)
        try:
            db = client[db_name]
            await db.items.insert_one({"_id": 0})
            proxy.drop_next("update")
            with pytest.raises(AutoReconnect):
                await db.items.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
            assert raw.items.find_one({"_id": 1}) == {"_id": 1, "n": 1}
            await db.items.update_one({"_id": 1}, {"$inc": {"n": 1}}, upsert=True)
            assert raw.items.find_one({"_id": 1}) == {"_id": 1, "n": 2}
            assert [name for name, _ in proxy.dropped] == ["update"]
        finally:
            await client.close()


def test_arming_rejects_nonsense() -> None:
    proxy = ReplyDroppingProxy("127.0.0.1", 9)
    try:
        with pytest.raises(ValueError):
            proxy.drop_next("update", times=0)
        with pytest.raises(TypeError):
            proxy.drop_next(42)  # type: ignore[arg-type]
        assert proxy.url() == f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true"
        proxy.drop_next("update")
        proxy.disarm()
        assert proxy.armed == 0
    finally:
        proxy.close()


def test_parse_op_msg_merges_document_sequences() -> None:
    import struct

    import bson

    command = bson.encode({"insert": "items", "$db": "x"})
    documents = bson.encode({"_id": 1}) + bson.encode({"_id": 2})
    sequence = b"documents\x00" + documents
    body = struct.pack("<I", 0) + b"\x00" + command + b"\x01" + struct.pack("<i", 4 + len(sequence)) + sequence
    flags, parsed = parse_op_msg(body)
    assert flags == 0
    assert parsed == {"insert": "items", "$db": "x", "documents": [{"_id": 1}, {"_id": 2}]}
    with pytest.raises(ValueError):
        parse_op_msg(struct.pack("<I", 0) + b"\x05" + command)
