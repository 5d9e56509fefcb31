"""The component catalog end to end: agno's ``save()`` / ``load()`` and AgentOS's ``/components`` routes.

``Agent.save()``, ``Team.save()`` and ``Workflow.save()`` write a component, a config version and the
links pinning their members / step executors; ``load()`` rebuilds the object from them. Each round
trip runs on ``MongoDb`` and, as the reference, on agno's ``SqliteDb``: the stored configs and links
must agree. AgentOS (FastAPI, driven by ``TestClient``) mounts the ``/components`` routes on a sync
store; every answer is checked against the documents MongoDB holds, and agno's refusals (a taken
id, a published config edited, a stale compare-and-set guard, a pinned member archived) answer its
status codes with nothing written. With ``AsyncMongoDb`` AgentOS mounts its 503 stub, as it does for
every async store (agno calls the catalog synchronously).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.base import BaseDb
from agno.db.sqlite import SqliteDb
from agno.os import AgentOS
from agno.team import Team
from agno.workflow import Step, Workflow
from fastapi.testclient import TestClient
from pymongo import MongoClient

from agno_mongo import AsyncMongoDb, MongoDb
from agno_mongo.testing import OfflineStandInModel
from tests.differential import normalised

TIMES = frozenset({"created_at", "updated_at", "deleted_at"})


@pytest.fixture
def raw(mongodb_url: str, db_name: str) -> Iterator[Any]:
    client: MongoClient[Any] = MongoClient(mongodb_url)
    yield client[db_name]
    client.close()


@pytest.fixture
def mongo(mongodb_url: str, db_name: str) -> Iterator[MongoDb]:
    db = MongoDb(db_url=mongodb_url, db_name=db_name)
    yield db
    db.close()


@pytest.fixture
def sqlite(tmp_path: Any) -> Iterator[SqliteDb]:
    db = SqliteDb(db_file=str(tmp_path / "oracle.sqlite"))
    for table_type in ("components", "component_configs", "component_links"):
        db._get_table(table_type, create_table_if_not_found=True)
    yield db
    db.close()


def without_db(config: Any) -> Any:
    """A saved config without the ``db`` blocks (each store serialises itself there)."""
    if isinstance(config, dict):
        return {key: without_db(value) for key, value in config.items() if key != "db"}
    if isinstance(config, list):
        return [without_db(value) for value in config]
    return config


def stored(db: BaseDb, component_id: str) -> Any:
    """What a save left for ``component_id``: its row, every version (configs without the db
    blocks) and each version's links, normalised for comparison across stores."""
    row = db.get_component(component_id)
    configs = [
        {**config, "config": without_db(config["config"])}
        for config in db.list_configs(component_id, include_config=True, include_deleted=True)
    ]
    links = {config["version"]: db.get_links(component_id, config["version"]) for config in configs}
    return normalised({"row": row, "configs": configs, "links": links}, times=TIMES)


def save_all(db: BaseDb) -> dict[str, int | None]:
    """The same saves on either store: an agent (published, then a labelled draft), a team with a
    member, a workflow whose step runs an agent. The versions each save answered."""
    agent = Agent(id="helper", name="Helper", description="helps", instructions=["be brief"], db=db)
    versions = {"helper": agent.save(), "helper-draft": agent.save(stage="draft", label="wip")}
    team = Team(id="crew", name="Crew", members=[Agent(id="writer", name="Writer")], db=db)
    versions["crew"] = team.save()
    workflow = Workflow(
        id="pipeline",
        name="Pipeline",
        steps=[
            Step(
                name="draft", step_id="draft-step", agent=Agent(id="drafter", name="Drafter", instructions=["draft it"])
            )
        ],
        db=db,
    )
    versions["pipeline"] = workflow.save()
    return versions


def test_agent_team_and_workflow_save_and_load_round_trip_as_on_sqlite(
    mongo: MongoDb, sqlite: SqliteDb, raw: Any
) -> None:
    versions = save_all(mongo)
    assert versions == {"helper": 1, "helper-draft": 2, "crew": 1, "pipeline": 1}
    assert save_all(sqlite) == versions
    for component_id in ("helper", "writer", "crew", "drafter", "pipeline"):
        assert stored(mongo, component_id) == stored(sqlite, component_id), component_id

    loaded = Agent.load("helper", db=mongo)
    assert loaded is not None and (loaded.id, loaded.name, loaded.instructions) == ("helper", "Helper", ["be brief"])
    draft = Agent.load("helper", db=mongo, label="wip")
    assert draft is not None and draft.id == "helper"
    assert Agent.load("helper", db=mongo, version=2) is not None
    assert Agent.load("nobody", db=mongo) is None
    row = mongo.get_component("helper")
    assert row is not None and (row["current_version"], row["name"], row["component_type"]) == (1, "Helper", "agent")

    team = Team.load("crew", db=mongo)
    assert team is not None and [member.id for member in team.members] == ["writer"]
    assert [link["parent_component_id"] for link in mongo.get_dependents("writer")] == ["crew"]

    workflow = Workflow.load("pipeline", db=mongo)
    assert workflow is not None and workflow.id == "pipeline"
    step = workflow.steps[0]
    assert isinstance(step, Step) and step.agent is not None and step.agent.id == "drafter"
    assert step.agent.instructions == ["draft it"]

    # The documents: one per component, one per version, links embedded in the version that has them.
    assert sorted(doc["_id"] for doc in raw.agno_components.find()) == [
        "crew",
        "drafter",
        "helper",
        "pipeline",
        "writer",
    ]
    assert sorted(doc["_id"] for doc in raw.agno_component_configs.find()) == [
        "crew/1",
        "drafter/1",
        "helper/1",
        "helper/2",
        "pipeline/1",
        "writer/1",
    ]
    crew = raw.agno_component_configs.find_one({"_id": "crew/1"})
    assert [(link["child_component_id"], link["child_version"]) for link in crew["links"]] == [("writer", 1)]
    pipeline = raw.agno_component_configs.find_one({"_id": "pipeline/1"})
    assert [link["child_component_id"] for link in pipeline["links"]] == ["drafter"]
    assert raw.agno_components.find_one({"_id": "helper"})["versions"] == 2


@pytest.fixture
def client(os_db: MongoDb | AsyncMongoDb) -> Iterator[TestClient]:
    agent = Agent(id="helper", name="Helper", model=OfflineStandInModel(), db=os_db)
    app = AgentOS(id="components-os", agents=[agent], db=os_db, telemetry=False).get_app()
    with TestClient(app) as test_client:
        yield test_client


WRITER = {
    "name": "Writer",
    "component_id": "writer",
    "component_type": "agent",
    "config": {"id": "writer", "name": "Writer", "instructions": ["short"]},
    "stage": "published",
    "label": "first",
}


@pytest.mark.parametrize("os_db", ["sync"], indirect=True)
def test_components_routes_create_list_update_publish_and_delete_from_mongodb(client: TestClient, raw: Any) -> None:
    components, configs = raw.agno_components, raw.agno_component_configs
    assert client.get("/components").json()["data"] == []

    created = client.post("/components", json=WRITER)
    assert created.status_code == 201, created.text
    assert (created.json()["component_id"], created.json()["current_version"]) == ("writer", 1)
    document = components.find_one({"_id": "writer"})
    assert (document["name"], document["component_type"], document["current_version"]) == ("Writer", "agent", 1)
    assert configs.find_one({"_id": "writer/1"})["config"] == WRITER["config"]

    taken = client.post("/components", json={**WRITER, "config": {}})
    assert taken.status_code == 400 and "not available" in taken.json()["detail"], taken.text
    assert configs.count_documents({}) == 1

    listed = client.get("/components")
    assert listed.status_code == 200, listed.text
    assert [row["component_id"] for row in listed.json()["data"]] == ["writer"]
    assert listed.json()["meta"]["total_count"] == 1
    assert client.get("/components/writer").json()["name"] == "Writer"
    assert client.get("/components/nobody").status_code == 404

    patched = client.patch("/components/writer", json={"description": "writes"})
    assert patched.status_code == 200, patched.text
    assert components.find_one({"_id": "writer"})["description"] == "writes"

    # A new draft version, edited in place; the published one is immutable.
    draft = client.post("/components/writer/configs", json={"config": {"id": "writer", "name": "W2"}, "label": "wip"})
    assert draft.status_code == 201, draft.text
    assert (draft.json()["version"], draft.json()["stage"]) == (2, "draft")
    edited = client.patch("/components/writer/configs/2", json={"notes": "edited"})
    assert edited.status_code == 200 and configs.find_one({"_id": "writer/2"})["notes"] == "edited", edited.text
    refused = client.patch("/components/writer/configs/1", json={"notes": "no"})
    assert refused.status_code == 400 and "published" in refused.json()["detail"], refused.text
    assert configs.find_one({"_id": "writer/1"})["notes"] is None
    versions = client.get("/components/writer/configs").json()
    assert [(row["version"], row["stage"]) for row in versions] == [(2, "draft"), (1, "published")]
    assert client.get("/components/writer/configs/current").json()["version"] == 1
    assert client.get("/components/writer/configs/2").json()["notes"] == "edited"

    # Only a published version can be current; publishing moves the pointer; a stale guard is a 409.
    not_published = client.post("/components/writer/configs/2/set-current")
    assert not_published.status_code == 400, not_published.text
    assert components.find_one({"_id": "writer"})["current_version"] == 1
    published = client.patch("/components/writer/configs/2", json={"stage": "published"})
    assert published.status_code == 200, published.text
    assert components.find_one({"_id": "writer"})["current_version"] == 2
    stale = client.post("/components/writer/configs/1/set-current", json={"guard": {"current_version": 1}})
    assert stale.status_code == 409, stale.text
    assert components.find_one({"_id": "writer"})["current_version"] == 2
    rolled_back = client.post("/components/writer/configs/1/set-current", json={"guard": {"current_version": 2}})
    assert rolled_back.status_code == 200 and rolled_back.json()["current_version"] == 1, rolled_back.text
    assert components.find_one({"_id": "writer"})["current_version"] == 1

    # A draft is deleted as a tombstone (its number never reused); a published one cannot be.
    third = client.post("/components/writer/configs", json={"config": {"id": "writer", "n": 3}})
    assert third.json()["version"] == 3, third.text
    assert client.delete("/components/writer/configs/3").status_code == 204
    assert configs.find_one({"_id": "writer/3"})["stage"] == "_deleted"
    assert client.delete("/components/writer/configs/1").status_code == 400
    assert client.post("/components/writer/configs", json={"config": {"n": 4}}).json()["version"] == 4
    assert components.find_one({"_id": "writer"})["versions"] == 4

    # Archive, then restore.
    assert client.delete("/components/writer").status_code == 204
    assert components.find_one({"_id": "writer"})["deleted_at"] is not None
    assert client.get("/components/writer").status_code == 404
    assert client.delete("/components/writer").status_code == 404
    assert client.get("/components", params={"include_deleted": True}).json()["meta"]["total_count"] == 1
    restored = client.post("/components/writer/restore")
    assert restored.status_code == 200 and restored.json()["current_version"] == 1, restored.text
    assert components.find_one({"_id": "writer"})["deleted_at"] is None


@pytest.mark.parametrize("os_db", ["sync"], indirect=True)
def test_a_team_created_by_route_pins_its_members_and_a_pinned_member_cannot_be_archived(
    client: TestClient, raw: Any
) -> None:
    assert client.post("/components", json=WRITER).status_code == 201
    team = {
        "name": "Crew",
        "component_id": "crew",
        "component_type": "team",
        "config": {"id": "crew", "name": "Crew", "members": [{"type": "agent", "agent_id": "writer"}]},
        "stage": "published",
    }
    created = client.post("/components", json=team)
    assert created.status_code == 201, created.text
    links = raw.agno_component_configs.find_one({"_id": "crew/1"})["links"]
    assert [(link["link_kind"], link["child_component_id"], link["child_version"]) for link in links] == [
        ("member", "writer", 1)
    ]
    archived = client.delete("/components/writer")
    assert archived.status_code == 409, archived.text
    assert raw.agno_components.find_one({"_id": "writer"})["deleted_at"] is None
    unknown = client.post(
        "/components",
        json={**team, "component_id": "ghosts", "config": {"members": [{"type": "agent", "agent_id": "nobody"}]}},
    )
    assert unknown.status_code == 400, unknown.text
    assert raw.agno_components.find_one({"_id": "ghosts"}) is None
    assert client.delete("/components/crew").status_code == 204
    assert client.delete("/components/writer").status_code == 204  # its only pinning parent is archived


@pytest.mark.parametrize("os_db", ["async"], indirect=True)
def test_agentos_on_the_async_store_answers_503_for_components_as_on_every_async_store(
    client: TestClient, raw: Any
) -> None:
    answer = client.post("/components", json=WRITER)
    assert answer.status_code == 503 and "sync db" in answer.json()["detail"], answer.text
    assert client.get("/components").status_code == 503
    assert raw.agno_components.count_documents({}) == 0
