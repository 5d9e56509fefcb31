"""README's status table tells the truth about which of agno's storage methods agno-mongo implements.

The counts are computed here from the classes (a method counts when the class overrides agno's
``BaseDb`` / ``AsyncBaseDb`` default, which raises ``NotImplementedError`` for most of them), and the
README must state exactly these numbers and name every method that is left out.
"""

from __future__ import annotations

import re
from pathlib import Path

from agno.db.base import AsyncBaseDb, BaseDb
from agno.db.mongo import AsyncMongoDb as AgnoAsyncMongoDb
from agno.db.mongo import MongoDb as AgnoMongoDb
from agno.db.postgres import PostgresDb

from agno_mongo import AsyncMongoDb, MongoDb

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def methods(base: type) -> list[str]:
    return sorted(name for name in dir(base) if not name.startswith("_") and callable(getattr(base, name)))


def overridden(cls: type, base: type) -> list[str]:
    return [name for name in methods(base) if getattr(cls, name) is not getattr(base, name)]


def test_the_readme_states_the_measured_counts() -> None:
    sentence = (
        f"agno-mongo implements **{len(overridden(MongoDb, BaseDb))} of `BaseDb`'s {len(methods(BaseDb))} methods** "
        f"(`AsyncMongoDb`: {len(overridden(AsyncMongoDb, AsyncBaseDb))} of `AsyncBaseDb`'s "
        f"{len(methods(AsyncBaseDb))}); agno's own `MongoDb` implements "
        f"{len(overridden(AgnoMongoDb, BaseDb))} (its `AsyncMongoDb` "
        f"{len(overridden(AgnoAsyncMongoDb, AsyncBaseDb))}) and `PostgresDb` "
        f"{len(overridden(PostgresDb, BaseDb))}."
    )
    assert sentence in " ".join(README.split()), f"README should say: {sentence}"


def test_the_readme_names_every_method_left_out() -> None:
    section = README.split("## Status against agno's storage contract", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", section))
    missing = {name for name in overridden(PostgresDb, BaseDb) if name not in overridden(MongoDb, BaseDb)}
    missing -= {"to_dict", "from_dict"}  # agno's BaseDb implements these for every store
    assert missing <= named, f"left out but not named in README: {sorted(missing - named)}"
