"""The audit trail (erlmcp_dr.audit): the hash chain, what verify() says of each kind of tampering, appends from
concurrent processes, and the filters of `runbook audit show`."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from pathlib import Path

import pytest

from erlmcp_dr import audit

PER_WRITER = 150


def _fill(path: Path, runs: int = 4) -> list[dict]:
    records = []
    for number in range(1, runs + 1):
        run_id = f"run-{number}"
        records.append(audit.append(audit.run_start(run_id, "database_failover", {"away_from": "pg-a"}, check=False,
                                                    operator="alice", inventory="inv"), path))
        records.append(audit.append(audit.step_record(run_id, "database_failover",
                                                      {"task": "Promote", "host": f"pg-{number}", "status": "changed",
                                                       "data": {"lsn": "0/30"}}, operator="alice",
                                                      before={"role": "standby"}, after={"role": "primary"}), path))
    return records


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / "audit" / "audit.jsonl"
    _fill(path)
    return path


def test_records_chain_from_genesis(trail: Path) -> None:
    records = audit.records(trail)
    assert [r["seq"] for r in records] == list(range(1, 9))
    assert records[0]["prev"] == audit.GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev"] == before["hash"] == audit.record_hash(before)
    assert audit.verify(trail) == []
    assert audit.head(trail) == {"seq": 8, "hash": records[-1]["hash"]}
    assert oct(trail.stat().st_mode & 0o777) == "0o600" and oct(trail.parent.stat().st_mode & 0o777) == "0o700"
    step = records[1]
    assert (step["target"], step["before"], step["after"], step["who"]["operator"]) == (
        "pg-1", {"role": "standby"}, {"role": "primary"}, "alice")
    assert step["who"]["user"] == audit.os_user()


def test_an_edited_record_is_named(trail: Path) -> None:
    lines = _lines(trail)
    record = json.loads(lines[2])
    record["parameters"] = {"away_from": "pg-b"}  # the trail now lies about what run-2 was asked to do
    lines[2] = audit.canonical(record)
    _write(trail, lines)
    problems = audit.verify(trail)
    assert problems == ["line 3 (run run-2): edited: its content no longer matches its hash"]


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(trail: Path) -> None:
    lines = _lines(trail)
    record = json.loads(lines[2])
    record["who"]["operator"] = "mallory"
    record["hash"] = audit.record_hash(record)
    lines[2] = audit.canonical(record)
    _write(trail, lines)
    problems = audit.verify(trail)
    assert len(problems) == 1 and problems[0].startswith("line 4 (run run-2): does not chain to line 3 (run run-2)")


def test_a_deleted_record_is_named(trail: Path) -> None:
    lines = _lines(trail)
    del lines[3]  # record 4: run-2's step
    _write(trail, lines)
    problems = audit.verify(trail)
    assert problems == ["line 4 (run run-3): record(s) 4 missing before it: deleted"]


def test_deleting_the_tail_is_seen_against_a_kept_head(trail: Path) -> None:
    kept = audit.head(trail)
    _write(trail, _lines(trail)[:-2])
    assert audit.verify(trail) == []  # a file alone cannot tell: the head kept elsewhere can
    assert audit.head(trail)["seq"] < kept["seq"]


def test_an_inserted_record_is_named(trail: Path) -> None:
    lines = _lines(trail)
    forged = json.loads(lines[4])
    forged.update(run_id="run-forged", prev=json.loads(lines[4])["hash"])
    forged["hash"] = audit.record_hash(forged)
    lines.insert(5, audit.canonical(forged))
    _write(trail, lines)
    problems = audit.verify(trail)
    assert problems and problems[0].startswith("line 6 (run run-forged): sequence number 5 repeats line 5 (run run-3)")


def test_reordered_records_are_named(trail: Path) -> None:
    lines = _lines(trail)
    lines[2], lines[3] = lines[3], lines[2]
    _write(trail, lines)
    problems = audit.verify(trail)
    assert any("line 3 (run run-2)" in p and "reordered" in p for p in problems), problems
    assert any("line 4 (run run-2)" in p and "reordered" in p for p in problems), problems


def test_a_line_that_is_not_json(trail: Path) -> None:
    lines = _lines(trail)
    lines[0] = lines[0][:-5]
    _write(trail, lines)
    problems = audit.verify(trail)
    assert problems[0] == "line 1 (run ?): not a JSON record: edited or torn"


def test_an_append_after_a_torn_last_line_chains_to_the_last_good_record(trail: Path) -> None:
    with trail.open("a") as handle:
        handle.write('{"kind": "run_st')  # a crash mid-write
    record = audit.append({"kind": "run_end", "run_id": "run-9"}, trail)
    assert record["seq"] == 9
    assert audit.verify(trail) == ["line 9 (run ?): not a JSON record: edited or torn"]


def _writer(path: str, name: str) -> None:
    for number in range(PER_WRITER):
        audit.append({"kind": "step", "run_id": name, "n": number, "time": audit.now_iso()}, Path(path))


def test_two_processes_appending_at_once_both_land_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_writer, args=(str(path), name)) for name in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    records = audit.records(path)
    assert audit.verify(path) == []
    assert len(records) == 2 * PER_WRITER
    for name in ("a", "b"):
        assert [r["n"] for r in records if r["run_id"] == name] == list(range(PER_WRITER))


def test_append_quietly_logs_instead_of_failing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert audit.append_quietly({"kind": "run_start", "run_id": "x"}, blocker / "audit.jsonl") is None
    assert "could not append to the audit trail" in caplog.text


def test_select_by_time_runbook_and_target(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(path, runs=2)
    audit.append(audit.run_end("run-2", "database_failover", operator=None, status="successful", rc=0, check=False,
                               duration_seconds=1.0, failing_step=None, targets=["pg-2"]), path)
    audit.append(audit.run_start("run-3", "database_rejoin", {}, check=True, operator=None, inventory="inv"), path)
    items = audit.records(path)
    on_pg2 = audit.select(items, target="pg-2")
    assert [(r["kind"], r["run_id"]) for r in on_pg2] == [("run_start", "run-2"), ("step", "run-2"),
                                                           ("run_end", "run-2")]
    assert [r["run_id"] for r in audit.select(items, runbook="database_rejoin")] == ["run-3"]
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert audit.select(items, since=future) == []
    assert len(audit.select(items, until=future, since=audit.parse_time("1h"))) == len(items)


def test_parse_time_forms() -> None:
    assert audit.parse_time("2026-11-25") == dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    assert audit.parse_time("2026-11-25T14:00:00Z").hour == 14
    assert dt.datetime.now(dt.UTC) - audit.parse_time("2d") > dt.timedelta(days=1, hours=23)
    with pytest.raises(ValueError, match="neither ISO 8601"):
        audit.parse_time("yesterday")


def test_render_line_reads_well(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    start, step = _fill(path, runs=1)
    assert "alice (" in audit.render_line(start) and "start run database_failover  away_from=pg-a" in \
        audit.render_line(start)
    assert audit.render_line(step).endswith("changed pg-1: Promote")
