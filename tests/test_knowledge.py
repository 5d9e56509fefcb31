"""Knowledge contents through MongoDb / AsyncMongoDb on PyMongo, PyMongo async and Motor.

Each test runs once per client flavour (see ``store`` in conftest) against a real wire server. The
last tests drive agno's real ``Knowledge`` with our class as its ``contents_db``, offline: a small
in-memory vector store stands in for a real one (it "embeds" by text length), so no embedder,
network or vector database is needed.
"""

from __future__ import annotations

from typing import Any

import pytest
from agno.db.schemas.knowledge import KnowledgeRow
from agno.knowledge.content import ContentStatus
from agno.knowledge.document import Document
from agno.knowledge.knowledge import Knowledge
from agno.vectordb.base import VectorDb

from agno_mongo.errors import KnowledgeOwnershipError
from tests.conftest import Store, assert_refused, call


def row(content_id: str, name: str = "note", user_id: str | None = "alice", **extra: Any) -> KnowledgeRow:
    return KnowledgeRow(
        id=content_id,
        name=name,
        description=extra.pop("description", "a note"),
        linked_to=extra.pop("linked_to", "kb"),
        user_id=user_id,
        **extra,
    )


async def seed(store: Store, *rows: KnowledgeRow) -> None:
    for item in rows:
        await call(store.db.upsert_knowledge_content(item))


async def test_round_trip_stores_native_fields_under_the_id(store: Store) -> None:
    sent = row("k1", metadata={"source": {"kind": "text"}, "tags": ["a"]}, size=12, status="completed", created_at=5)
    saved = await call(store.db.upsert_knowledge_content(sent))
    assert saved is sent

    raw = store.raw.agno_knowledge.find_one({"_id": "k1"})
    assert raw["id"] == "k1" and raw["metadata"] == {"source": {"kind": "text"}, "tags": ["a"]}
    assert (raw["size"], raw["status"], raw["user_id"], raw["created_at"]) == (12, "completed", "alice", 5)
    assert raw["schema_version"] == 1

    loaded = await call(store.db.get_knowledge_content("k1"))
    assert isinstance(loaded, KnowledgeRow)
    assert loaded.model_dump() == sent.model_dump()
    assert await call(store.db.get_knowledge_content("missing")) is None


async def test_row_without_id_or_created_at_gets_them(store: Store) -> None:
    new = KnowledgeRow(name="n", description="d")
    await call(store.db.upsert_knowledge_content(new))
    raw = store.raw.agno_knowledge.find_one({"_id": new.id})
    assert raw is not None and isinstance(raw["created_at"], int) and raw["user_id"] is None


async def test_status_enum_is_stored_as_its_value(store: Store) -> None:
    await call(store.db.upsert_knowledge_content(row("k1", status=ContentStatus.PROCESSING)))
    assert store.raw.agno_knowledge.find_one({"_id": "k1"})["status"] == "processing"


async def test_upsert_rewrites_the_row_and_is_idempotent(store: Store) -> None:
    await call(store.db.upsert_knowledge_content(row("k1", status="processing", metadata={"a": 1})))
    created_at = store.raw.agno_knowledge.find_one({"_id": "k1"})["created_at"]
    updated = row("k1", status="completed", metadata=None, created_at=created_at, updated_at=99)
    await call(store.db.upsert_knowledge_content(updated))
    await call(store.db.upsert_knowledge_content(updated))
    raw = store.raw.agno_knowledge.find_one({"_id": "k1"})
    assert (raw["status"], raw["metadata"], raw["updated_at"]) == ("completed", None, 99)
    assert store.raw.agno_knowledge.count_documents({}) == 1


async def test_each_call_is_one_command(store: Store) -> None:
    await seed(store, row("k0"))  # first use creates indexes
    store.commands.clear()
    await call(store.db.upsert_knowledge_content(row("k1")))
    assert store.commands.names == ["update"]
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any], list[str]]] = [
        ("get_knowledge_content", ("k1",), {}, ["find"]),
        ("get_knowledge_content", ("k1",), {"user_id": "alice"}, ["find"]),
        ("get_knowledge_contents", (), {}, ["find"]),
        ("get_knowledge_contents", (), {"limit": 5, "page": 1, "linked_to": "kb"}, ["find"]),
        ("get_knowledge_contents", (), {"limit": 1, "page": 1}, ["find", "aggregate"]),
        ("delete_knowledge_content", ("k1",), {}, ["delete"]),
    ]
    for method, args, kwargs, expected in calls:
        store.commands.clear()
        await call(getattr(store.db, method)(*args, **kwargs))
        assert store.commands.names == expected, (method, kwargs)


async def test_list_filters_sorting_and_pagination(store: Store) -> None:
    await seed(
        store,
        row("k1", "banana", created_at=10, size=3),
        row("k2", "apple", created_at=20, size=1, user_id="bob"),
        row("k3", "cherry", created_at=30, size=2, user_id=None),
        row("k4", "date", created_at=40, size=4, linked_to="other"),
    )
    ids = lambda result: [r.id for r in result[0]]  # noqa: E731
    assert ids(await call(store.db.get_knowledge_contents())) == ["k1", "k2", "k3", "k4"]  # creation order
    assert ids(await call(store.db.get_knowledge_contents(linked_to="kb"))) == ["k1", "k2", "k3"]
    assert ids(await call(store.db.get_knowledge_contents(sort_by="name", sort_order="asc"))) == [
        "k2",
        "k1",
        "k3",
        "k4",
    ]
    assert ids(await call(store.db.get_knowledge_contents(sort_by="size"))) == ["k4", "k1", "k3", "k2"]
    assert ids(await call(store.db.get_knowledge_contents(sort_by="created_at"))) == ["k4", "k3", "k2", "k1"]

    store.commands.clear()
    page, total = await call(store.db.get_knowledge_contents(limit=2, page=1, sort_by="created_at", sort_order="asc"))
    assert [r.id for r in page] == ["k1", "k2"] and total == 4
    assert store.commands.names == ["find", "aggregate"]  # count_documents
    store.commands.clear()
    page, total = await call(store.db.get_knowledge_contents(limit=3, page=2, sort_by="created_at", sort_order="asc"))
    assert [r.id for r in page] == ["k4"] and total == 4
    assert store.commands.names == ["find"]  # a short page already tells the total
    assert await call(store.db.get_knowledge_contents(limit=2, page=9)) == ([], 4)
    assert await call(store.db.get_knowledge_contents(linked_to="nothing")) == ([], 0)


async def test_scoped_reads_see_own_and_shared_rows_only(store: Store) -> None:
    await seed(store, row("a1"), row("b1", user_id="bob"), row("s1", user_id=None))
    store.raw.agno_knowledge.insert_one(
        {"_id": "legacy", "id": "legacy", "name": "old", "description": "no owner field"}
    )
    ids = lambda result: sorted(r.id for r in result[0])  # noqa: E731
    assert ids(await call(store.db.get_knowledge_contents(user_id="alice"))) == ["a1", "legacy", "s1"]
    assert ids(await call(store.db.get_knowledge_contents(user_id="bob"))) == ["b1", "legacy", "s1"]
    assert ids(await call(store.db.get_knowledge_contents())) == ["a1", "b1", "legacy", "s1"]
    _, total = await call(store.db.get_knowledge_contents(user_id="alice", limit=1, page=1))
    assert total == 3
    assert await call(store.db.get_knowledge_content("b1", user_id="alice")) is None
    assert (await call(store.db.get_knowledge_content("s1", user_id="alice"))).id == "s1"
    assert (await call(store.db.get_knowledge_content("legacy", user_id="alice"))).user_id is None


async def test_scoped_delete_removes_only_own_rows(store: Store) -> None:
    await seed(store, row("a1"), row("b1", user_id="bob"), row("s1", user_id=None))
    await call(store.db.delete_knowledge_content("b1", user_id="alice"))
    await call(store.db.delete_knowledge_content("s1", user_id="alice"))  # shared rows go only unscoped
    assert store.raw.agno_knowledge.count_documents({}) == 3
    await call(store.db.delete_knowledge_content("a1", user_id="alice"))
    await call(store.db.delete_knowledge_content("s1"))
    assert sorted(d["_id"] for d in store.raw.agno_knowledge.find()) == ["b1"]


async def test_upsert_never_overwrites_a_row_with_another_owner(store: Store) -> None:
    await seed(store, row("a1", "alice's"), row("s1", "shared", user_id=None))
    store.commands.clear()
    with pytest.raises(KnowledgeOwnershipError):
        await call(store.db.upsert_knowledge_content(row("a1", "hijacked", user_id="bob")))
    assert store.commands.names == ["update", "find"]  # the write, then the owner read
    with pytest.raises(ValueError):  # what agno's own adapter raises here
        await call(store.db.upsert_knowledge_content(row("a1", "made shared", user_id=None)))
    with pytest.raises(KnowledgeOwnershipError):
        await call(store.db.upsert_knowledge_content(row("s1", "taken over", user_id="alice")))
    assert store.raw.agno_knowledge.find_one({"_id": "a1"})["name"] == "alice's"
    assert store.raw.agno_knowledge.find_one({"_id": "a1"})["user_id"] == "alice"
    assert store.raw.agno_knowledge.find_one({"_id": "s1"})["name"] == "shared"
    await call(store.db.upsert_knowledge_content(row("a1", "alice edits", user_id="alice")))
    await call(store.db.upsert_knowledge_content(row("s1", "admin edits", user_id=None)))
    assert store.raw.agno_knowledge.find_one({"_id": "a1"})["name"] == "alice edits"
    assert store.raw.agno_knowledge.find_one({"_id": "s1"})["name"] == "admin edits"


HOSTILE = {"$ne": None}


@pytest.mark.parametrize(
    ("method", "kwargs", "field"),
    [
        ("get_knowledge_content", {"id": HOSTILE}, "id"),
        ("get_knowledge_content", {"id": "k1", "user_id": HOSTILE}, "user_id"),
        ("get_knowledge_contents", {"user_id": HOSTILE}, "user_id"),
        ("get_knowledge_contents", {"linked_to": HOSTILE}, "linked_to"),
        ("get_knowledge_contents", {"sort_by": "$where"}, "sort_by"),
        ("get_knowledge_contents", {"sort_by": "metadata"}, "sort_by"),
        ("get_knowledge_contents", {"sort_order": "sideways"}, "sort_order"),
        ("get_knowledge_contents", {"page": 2}, "page"),
        ("get_knowledge_contents", {"limit": "10"}, "limit"),
        ("delete_knowledge_content", {"id": HOSTILE}, "id"),
        ("delete_knowledge_content", {"id": "k1", "user_id": HOSTILE}, "user_id"),
        ("upsert_knowledge_content", {"knowledge_row": {"id": "k1"}}, "knowledge_row"),
        (
            "upsert_knowledge_content",
            {"knowledge_row": KnowledgeRow.model_construct(id="k1", name="n", description="d", user_id=HOSTILE)},
            "knowledge_row.user_id",
        ),
        (
            "upsert_knowledge_content",
            {"knowledge_row": KnowledgeRow.model_construct(id=HOSTILE, name="n", description="d")},
            "knowledge_row.id",
        ),
        (
            "upsert_knowledge_content",
            {"knowledge_row": KnowledgeRow.model_construct(id="k1", name="n", description="d", size=True)},
            "knowledge_row.size",
        ),
        (
            "upsert_knowledge_content",
            {"knowledge_row": KnowledgeRow.model_construct(id="k1", name="n", description="d", metadata="{}")},
            "knowledge_row.metadata",
        ),
    ],
)
async def test_hostile_input_is_refused_before_any_command(
    store: Store, method: str, kwargs: dict[str, Any], field: str
) -> None:
    await assert_refused(store, method, kwargs, field)


async def test_indexes_are_created_once(store: Store) -> None:
    await seed(store, row("k1"))
    await call(store.db.get_knowledge_contents(linked_to="kb"))
    await call(store.db.get_knowledge_content("k1"))
    assert store.commands.names.count("createIndexes") == 1
    assert "linked_created_id" in {index["name"] for index in store.raw.agno_knowledge.list_indexes()}


# --- agno's real Knowledge on top of our class ------------------------------------------------


class MemoryVectors(VectorDb):
    """A tiny in-memory vector store: enough for ``Knowledge`` to ingest and search offline."""

    def __init__(self) -> None:
        super().__init__(name="memory-vectors")
        self.docs: dict[str, tuple[Document, str, str | None]] = {}  # doc id -> (doc, content hash, owner)

    def _put(self, content_hash: str, documents: list[Document], user_id: str | None = None) -> None:
        for index, doc in enumerate(documents):
            doc.embedding = [float(len(doc.content))]  # "embedded": Knowledge counts chunks with an embedding
            self.docs[f"{doc.content_id}:{index}"] = (doc, content_hash, user_id)

    def create(self) -> None:
        pass

    async def async_create(self) -> None:
        pass

    def name_exists(self, name: str) -> bool:
        return any(doc.name == name for doc, _, _ in self.docs.values())

    def async_name_exists(self, name: str) -> bool:
        return self.name_exists(name)

    def id_exists(self, id: str) -> bool:
        return any(doc.id == id for doc, _, _ in self.docs.values())

    def content_hash_exists(self, content_hash: str, user_id: str | None = None) -> bool:
        return any(h == content_hash and owner == user_id for _, h, owner in self.docs.values())

    def insert(self, content_hash: str, documents: list[Document], filters: Any = None, user_id: Any = None) -> None:
        self._put(content_hash, documents, user_id)

    async def async_insert(
        self, content_hash: str, documents: list[Document], filters: Any = None, user_id: Any = None
    ) -> None:
        self._put(content_hash, documents, user_id)

    def upsert(self, content_hash: str, documents: list[Document], filters: Any = None, user_id: Any = None) -> None:
        self._put(content_hash, documents, user_id)

    async def async_upsert(
        self, content_hash: str, documents: list[Document], filters: Any = None, user_id: Any = None
    ) -> None:
        self._put(content_hash, documents, user_id)

    def search(self, query: str, limit: int = 5, filters: Any = None, user_id: Any = None) -> list[Document]:
        words = query.lower().split()
        found = [doc for doc, _, owner in self.docs.values() if any(w in doc.content.lower() for w in words)]
        return found[:limit]

    async def async_search(
        self, query: str, limit: int = 5, filters: Any = None, user_id: Any = None
    ) -> list[Document]:
        return self.search(query, limit, filters, user_id)

    def drop(self) -> None:
        self.docs.clear()

    async def async_drop(self) -> None:
        self.docs.clear()

    def exists(self) -> bool:
        return True

    async def async_exists(self) -> bool:
        return True

    def delete(self) -> bool:
        self.docs.clear()
        return True

    def delete_by_id(self, id: str) -> bool:
        return self._drop(lambda doc, owner: doc.id == id)

    def delete_by_name(self, name: str) -> bool:
        return self._drop(lambda doc, owner: doc.name == name)

    def delete_by_metadata(self, metadata: dict[str, Any]) -> bool:
        return self._drop(lambda doc, owner: all(doc.meta_data.get(k) == v for k, v in metadata.items()))

    def delete_by_content_id(self, content_id: str, user_id: str | None = None) -> bool:
        return self._drop(lambda doc, owner: doc.content_id == content_id and (user_id is None or owner == user_id))

    def get_supported_search_types(self) -> list[str]:
        return ["vector"]

    def _drop(self, match: Any) -> bool:
        keys = [key for key, (doc, _, owner) in self.docs.items() if match(doc, owner)]
        for key in keys:
            del self.docs[key]
        return True


async def test_agno_knowledge_uses_our_class_as_its_contents_db(store: Store) -> None:
    """Ingest, list, read, patch and remove tiny text documents through agno's ``Knowledge``."""
    vectors = MemoryVectors()
    knowledge = Knowledge(name="kb", contents_db=store.db, vector_db=vectors)
    if store.is_async:
        await knowledge.ainsert(name="tea", text_content="Green tea is a drink.", user_id="alice")
        await knowledge.ainsert(name="house rules", text_content="Shoes off indoors.")
        contents, total = await knowledge.aget_content(user_id="alice")
        bob_sees, _ = await knowledge.aget_content(user_id="bob")
    else:
        knowledge.insert(name="tea", text_content="Green tea is a drink.", user_id="alice")
        knowledge.insert(name="house rules", text_content="Shoes off indoors.")
        contents, total = knowledge.get_content(user_id="alice")
        bob_sees, _ = knowledge.get_content(user_id="bob")

    assert total == 2 and sorted(str(c.name) for c in contents) == ["house rules", "tea"]
    assert all(c.status == ContentStatus.COMPLETED for c in contents), [c.status_message for c in contents]
    assert [c.name for c in bob_sees] == ["house rules"]  # alice's upload is hers; the shared one is everyone's
    tea = next(c for c in contents if c.name == "tea")
    tea_id = tea.id
    assert tea_id is not None
    raw = store.raw.agno_knowledge.find_one({"_id": tea_id})
    assert raw["user_id"] == "alice" and raw["linked_to"] == "kb" and raw["status"] == "completed"
    assert raw["metadata"] == {"_agno": {"vectors_indexed": True}}  # a subdocument, never a JSON string
    assert any("tea" in doc.content for doc in vectors.search("tea"))

    tea.description = "about tea"
    if store.is_async:
        assert await knowledge.aget_content_by_id(tea_id, user_id="bob") is None
        assert (await knowledge.aget_content_by_id(tea_id, user_id="alice")).name == "tea"  # type: ignore[union-attr]
        patched = await knowledge.apatch_content(tea, user_id="alice")
        assert store.raw.agno_knowledge.find_one({"_id": tea_id})["description"] == "about tea"
        await knowledge.aremove_content_by_id(tea_id, user_id="bob")
        assert store.raw.agno_knowledge.count_documents({"_id": tea_id}) == 1
        await knowledge.aremove_content_by_id(tea_id, user_id="alice")
    else:
        assert knowledge.get_content_by_id(tea_id, user_id="bob") is None
        assert knowledge.get_content_by_id(tea_id, user_id="alice").name == "tea"  # type: ignore[union-attr]
        patched = knowledge.patch_content(tea, user_id="alice")
        assert store.raw.agno_knowledge.find_one({"_id": tea_id})["description"] == "about tea"
        knowledge.remove_content_by_id(tea_id, user_id="bob")
        assert store.raw.agno_knowledge.count_documents({"_id": tea_id}) == 1
        knowledge.remove_content_by_id(tea_id, user_id="alice")
    assert patched is not None and patched["description"] == "about tea"
    assert store.raw.agno_knowledge.count_documents({"_id": tea_id}) == 0
    assert [d["name"] for d in store.raw.agno_knowledge.find()] == ["house rules"]
