"""The helpers in agno_mongo.ops.common: which writes of a bulk were duplicate-key refusals."""

from __future__ import annotations

from typing import Any

from pymongo.errors import BulkWriteError

from agno_mongo.ops.common import DUPLICATE_KEY, duplicate_indexes


def bulk_error(write_errors: list[dict[str, Any]]) -> BulkWriteError:
    return BulkWriteError({"writeErrors": write_errors, "writeConcernErrors": [], "nInserted": 0})


def test_all_duplicates_give_their_indexes() -> None:
    error = bulk_error(
        [
            {"index": 0, "code": DUPLICATE_KEY, "errmsg": "E11000"},
            {"index": 3, "code": DUPLICATE_KEY, "errmsg": "E11000"},
        ]
    )
    assert duplicate_indexes(error) == [0, 3]


def test_another_code_gives_none() -> None:
    error = bulk_error(
        [
            {"index": 0, "code": DUPLICATE_KEY, "errmsg": "E11000"},
            {"index": 1, "code": 121, "errmsg": "Document failed validation"},
        ]
    )
    assert duplicate_indexes(error) is None


def test_no_write_errors_gives_none() -> None:
    assert duplicate_indexes(bulk_error([])) is None
    assert duplicate_indexes(BulkWriteError({"writeConcernErrors": [{"code": 64, "errmsg": "wtimeout"}]})) is None
