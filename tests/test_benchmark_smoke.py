"""benchmarks/compare.py in quick mode: it runs end to end and its counts show the structural claims.

Only facts that hold on any server are checked (commands per operation, bytes that must not grow
with the session); no timing.
"""

from __future__ import annotations

import pytest

from benchmarks.compare import AGNO, FIRST_AGENT_RUN, HISTORY_TURN, OURS, Report, Row, Settings, format_table, run
from benchmarks.metrics_compare import compare as compare_metrics


@pytest.fixture(scope="module")
def report(mongodb_url: str) -> Report:
    return run(mongodb_url, quick=True)


def rows(report: Report, workload: str, store: str) -> dict[int | None, Row]:
    found = {row.runs: row for row in report.rows if row.workload == workload and row.store == store}
    assert found, f"no {workload!r} rows for {store}"
    return found


def test_every_workload_ran_on_both_stores_and_ours_never_failed(report: Report) -> None:
    workloads = {row.workload for row in report.rows}
    for workload in workloads:
        assert {row.store for row in report.rows if row.workload == workload} == {OURS, AGNO}
    assert [row for row in report.rows if row.store == OURS and row.error] == []
    assert len({row.runs for row in report.rows if row.runs is not None}) == len(Settings.quick().sizes)


def test_agent_runs_cost_three_commands_and_agnos_approval_update(report: Report) -> None:
    # aggregate (the session: only what changed since this instance's last read), findAndModify
    # and update on the session; then the approval-status update agno 3.1 sends after every run.
    for workload in ("agent run", "agent run (async)"):
        row = rows(report, workload, OURS)[None]
        assert row.command_names == ["aggregate", "findAndModify", "update", "update"], row.command_names
    first = rows(report, FIRST_AGENT_RUN, OURS)[None]
    assert first.command_names.count("createIndexes") == 2  # sessions, then approvals


def test_single_session_operations_cost_the_same_at_every_session_length(report: Report) -> None:
    expected = {
        "append run": 1,
        "update run": 1,
        "read session": 1,
        "read recent history (runs_limit=3)": 1,
        "update run, fresh instance": 1,  # it has read the session: its cached copy says the run exists
    }
    for workload, commands in expected.items():
        by_size = rows(report, workload, OURS)
        assert {row.commands for row in by_size.values()} == {commands}, (workload, by_size)


def test_an_agent_turn_receives_what_changed_whatever_the_history(report: Report) -> None:
    """agno reads the whole session every run; with the revision-checked read the bytes a turn
    receives do not grow with the runs already stored (issue 14's goal: within 1.25x)."""
    by_size = rows(report, HISTORY_TURN, OURS)
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    assert large.commands == small.commands == 4
    assert large.bytes_received < 1.25 * small.bytes_received, (small, large)
    agno = rows(report, HISTORY_TURN, AGNO)
    assert agno[max(agno)].bytes_received > 2 * agno[min(agno)].bytes_received  # the contrast is real


def test_recent_history_is_trimmed_by_the_server(report: Report) -> None:
    by_size = rows(report, "read recent history (runs_limit=3)", OURS)
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    assert large.bytes_received < 1.2 * small.bytes_received


def test_ours_never_takes_more_round_trips_than_agnos(report: Report) -> None:
    for row in report.rows:
        if row.store != OURS:
            continue
        theirs = rows(report, row.workload, AGNO)[row.runs]
        if theirs.error is None:
            assert row.commands <= theirs.commands, (row.workload, row.runs, row.command_names, theirs.command_names)


def test_async_appends_are_one_command_each(report: Report) -> None:
    (row,) = [row for row in report.rows if row.workload.startswith("async appends") and row.store == OURS]
    assert row.commands == 1 and row.error is None and "ops/s" in row.note


def test_tables_print(report: Report) -> None:
    markdown = format_table(report, markdown=True)
    assert markdown.splitlines()[0].startswith("Server: ")
    assert "| workload | runs in session | store | commands |" in markdown
    plain = format_table(report, markdown=False)
    assert len(plain.splitlines()) == len(report.rows) + 4


def test_metrics_benchmark_compares_equal_records_in_a_constant_number_of_commands(mongodb_url: str) -> None:
    """benchmarks/metrics_compare.py: both stores produce the same daily records; ours in at most
    3 commands per pass whatever the number of sessions, agno's in at least one per record written."""
    for n_sessions in (20, 80):
        rows = compare_metrics(mongodb_url, n_sessions)
        assert [(row["store"], row["same_records"]) for row in rows] == [
            ("agno-mongo", True),
            ("agno MongoDb", True),
        ] * 2
        for row in rows:
            if row["store"] == "agno-mongo":  # plus the getMore batches of a cursor, as on a real server
                counts = dict(part.rsplit(" x", 1) for part in row["command_names"].split(", "))
                assert sum(int(n) for name, n in counts.items() if name != "getMore") <= 3, row["command_names"]
            else:
                assert row["commands"] >= row["records"], row["command_names"]
        assert rows[0]["records"] > 0


def test_metrics_benchmark_measures_one_store_alone(mongodb_url: str) -> None:
    rows = compare_metrics(mongodb_url, 10, ("ours",))
    assert [(row["store"], row["same_records"]) for row in rows] == [("agno-mongo", None)] * 2
