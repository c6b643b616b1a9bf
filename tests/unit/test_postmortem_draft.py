"""The postmortem draft (reporting/postmortem.py, reporting/postmortem_render.py) against run folders and an audit
trail recorded from REAL lab runs (tests/fixtures/postmortem/record_fixtures.py wrote them once; committed): a
switchover run as a
drill's child, a failed failover, and a regional failover stand-in whose children are a real incident_notify and
a real database_failover. Golden files pin the whole draft; the other tests pin the rules (cited facts, TODOs,
Draft, the monotonic order, refusals).

Regenerate the goldens after a deliberate change: UPDATE_GOLDEN=1 pytest tests/unit/test_postmortem_draft.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from erlmcp_dr import cli
from erlmcp_dr.reporting import postmortem, postmortem_render
from erlmcp_dr.result import RunResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "postmortem"
RUNS = dict(line.split() for line in (FIXTURES / "runs.txt").read_text().splitlines())


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A copy of the recorded state folder; the lock folder (where the trail's head anchor would be) is empty."""
    home = tmp_path / "home"
    shutil.copytree(FIXTURES / "home", home)
    monkeypatch.setenv("ERLMCP_DR_HOME", str(home))
    monkeypatch.setenv("ERLMCP_DR_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("ERLMCP_DR_AUDIT_KEY", raising=False)
    monkeypatch.delenv("ERLMCP_DR_AUDIT_KEY_FILE", raising=False)
    return home


def child_id(parent: str, index: int) -> str:
    result = RunResult.load(FIXTURES / "home" / "runs" / RUNS[parent])
    return result.summary["details"]["steps"][index]["run_id"]


CASES = {
    "switchover": lambda: child_id("drill", 0),
    "failed_failover": lambda: RUNS["failed_failover"],
    "regional_failover": lambda: RUNS["regional"],
    "drill": lambda: RUNS["drill"],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", ["md", "html"])
def test_the_draft_matches_its_golden_file(home, case, form):
    draft = postmortem.build(CASES[case](), home=home)
    text = postmortem_render.render(draft, form)
    golden = FIXTURES / "golden" / f"{case}.{form}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), f"the draft of {case} changed; if deliberate: UPDATE_GOLDEN=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_data_gives_the_same_draft(home, case):
    first = postmortem_render.markdown(postmortem.build(CASES[case](), home=home))
    assert postmortem_render.markdown(postmortem.build(CASES[case](), home=home)) == first


def test_status_is_draft_and_what_the_data_cannot_know_is_todo(home):
    text = postmortem_render.markdown(postmortem.build(RUNS["failed_failover"], home=home))
    assert "| Status | Draft" in text
    for section in ("Root cause", "Trigger", "Lessons learned", "Action items", "Related incidents"):
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        assert "TODO" in body, section
    assert "| Authors | **TODO" in text and "| Reviewers | **TODO" in text
    assert "Users affected | **TODO" in text
    # the failure is stated as recorded, never explained
    assert "because" not in text.split("## Root cause", 1)[1].split("## Trigger", 1)[0]


def test_every_fact_of_a_table_or_list_cites_an_audit_record_of_the_trail(home):
    draft = postmortem.build(RUNS["regional"], home=home)
    hashes = {json.loads(line)["hash"][:12] for line in (home / "audit" / "audit.jsonl").read_text().splitlines()}
    for block in postmortem_render.sections(draft):
        facts = list(block.items) + [cell for row in block.rows for cell in row
                                     if isinstance(cell, postmortem.Fact)]
        for fact in facts:
            assert fact.cite is not None and fact.cite.hash[:12] in hashes, fact
    text = postmortem_render.markdown(draft)
    cited = set(re.findall(r"\[(?:result\.json @ )?#\d+ ([0-9a-f]{12})\]", text))
    assert cited and cited <= hashes


def test_the_timeline_follows_the_trails_sequence_and_nests_the_children(home):
    draft = postmortem.build(RUNS["regional"], home=home)
    entries = postmortem.timeline(draft.root)
    assert [entry.key for entry in entries] == sorted(entry.key for entry in entries)
    runs_in_order = list(dict.fromkeys(entry.run_id for entry in entries))
    assert runs_in_order == [RUNS["regional"], child_id("regional", 0), child_id("regional", 1)]
    assert entries[0].text.startswith("regional_failover: live run") and entries[-1].run_id == RUNS["regional"]
    assert {entry.depth for entry in entries if entry.run_id != RUNS["regional"]} == {1}


def test_a_wall_clock_stepped_back_keeps_the_recorded_order_and_says_so(home):
    run_dir = home / "runs" / RUNS["failed_failover"]
    data = json.loads((run_dir / "result.json").read_text())
    shown = [step for step in data["steps"] if not step["skipped"] and "runbook_params" not in step["action"]
             and "inventory_contract" not in step["action"] and "Validating" not in step["task"]]
    shown[-1]["end"] = shown[-1]["start"] = "2000-01-01T00:00:00+00:00"  # NTP stepped the clock back
    (run_dir / "result.json").write_text(json.dumps(data))
    entries = postmortem.timeline(postmortem.build(RUNS["failed_failover"], home=home).root)
    stepped = [entry for entry in entries if entry.clock_note]
    assert len(stepped) == 1 and shown[-1]["task"] in stepped[0].text, [entry.text for entry in stepped]
    assert "clock was stepped back" in stepped[0].clock_note
    assert [entry.key for entry in entries] == sorted(entry.key for entry in entries)


def test_rto_and_rpo_are_measured_against_the_tier(home):
    drill = postmortem.build(RUNS["drill"], home=home).root
    switchover = drill.children[0]
    rto, rpo = postmortem.objectives(switchover)
    assert rto.achieved == switchover.result.duration_seconds and rto.tier_target == 300
    assert rto.verdict == ("met" if rto.achieved <= 300 else "MISSED")
    assert rpo.achieved == 0.0 and rpo.verdict == "met"
    failed = postmortem.build(RUNS["failed_failover"], home=home).root
    assert [objective.verdict for objective in postmortem.objectives(failed)] == ["not measured"] * 2
    assert postmortem.client_observed(drill)["commits_lost"] == 0


def test_the_publication_deadline_comes_from_the_inventory(home, tmp_path):
    default = postmortem.build(RUNS["failed_failover"], home=home)
    assert default.publish_hours == 72 and "the default" in default.publish_source
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts: {localhost: {ansible_connection: local}}\n"
                         "  vars: {dr_postmortem_publish_hours: 24}\n")
    chosen = postmortem.build(RUNS["failed_failover"], home=home, inventory=inventory)
    assert chosen.publish_hours == 24.0 and str(inventory) in chosen.publish_source
    inventory.write_text("all:\n  vars: {dr_postmortem_publish_hours: 'three days'}\n")
    with pytest.raises(postmortem.PostmortemRefused, match="dr_postmortem_publish_hours: found 'three days'"):
        postmortem.build(RUNS["failed_failover"], home=home, inventory=inventory)


def test_a_child_run_whose_folder_is_gone_is_named_missing(home):
    shutil.rmtree(home / "runs" / child_id("regional", 1))
    draft = postmortem.build(RUNS["regional"], home=home)
    assert draft.root.missing_children == [child_id("regional", 1)]
    assert f"| {child_id('regional', 1)} | MISSING: no run folder" in postmortem_render.markdown(draft)


def test_a_child_listing_its_parent_is_refused_as_a_loop(home):
    child = child_id("drill", 0)
    path = home / "runs" / child / "result.json"
    data = json.loads(path.read_text())
    data["facts"]["summary"]["details"]["steps"] = [{"name": "back", "run_id": RUNS["drill"]}]
    path.write_text(json.dumps(data))
    with pytest.raises(postmortem.PostmortemRefused, match="is one of its own parents"):
        postmortem.build(RUNS["drill"], home=home)


# ---------------------------------------------------------------- refusals: tampering


def run_end_line(lines: list[str], run_id: str) -> int:
    return next(index for index, line in enumerate(lines)
                if json.loads(line)["kind"] == "run_end" and json.loads(line)["run_id"] == run_id)


def test_an_edited_audit_line_is_refused_naming_the_line(home):
    trail = home / "audit" / "audit.jsonl"
    lines = trail.read_text().splitlines()
    number = run_end_line(lines, RUNS["failed_failover"])
    record = json.loads(lines[number])
    record["result"] = "successful"  # someone rewrites history, without the hash
    lines[number] = json.dumps(record, sort_keys=True)
    trail.write_text("\n".join(lines) + "\n")
    with pytest.raises(postmortem.PostmortemRefused) as refused:
        postmortem.build(RUNS["failed_failover"], home=home)
    assert f"line {number + 1} (run {RUNS['failed_failover']}): edited" in str(refused.value)
    assert "tampered" in str(refused.value)


def test_a_deleted_audit_line_is_refused_naming_what_is_missing(home):
    trail = home / "audit" / "audit.jsonl"
    lines = trail.read_text().splitlines()
    del lines[3]
    trail.write_text("\n".join(lines) + "\n")
    with pytest.raises(postmortem.PostmortemRefused, match=r"record\(s\) 4 missing before it: deleted"):
        postmortem.build(RUNS["drill"], home=home)


def test_a_torn_audit_line_is_refused(home):
    trail = home / "audit" / "audit.jsonl"
    lines = trail.read_text().splitlines()
    lines[5] = lines[5][: len(lines[5]) // 2]
    trail.write_text("\n".join(lines) + "\n")
    with pytest.raises(postmortem.PostmortemRefused, match="line 6 .*not a JSON record"):
        postmortem.build(RUNS["regional"], home=home)


def test_a_result_json_that_disagrees_with_its_run_end_record_is_refused(home):
    path = home / "runs" / RUNS["failed_failover"] / "result.json"
    data = json.loads(path.read_text())
    data["status"], data["rc"] = "successful", 0
    path.write_text(json.dumps(data))
    with pytest.raises(postmortem.PostmortemRefused, match="status is 'successful' in result.json, 'failed' in the "
                                                           "run_end record"):
        postmortem.build(RUNS["failed_failover"], home=home)


def test_a_result_json_without_its_anchor_is_refused(home):
    path = home / "runs" / RUNS["failed_failover"] / "result.json"
    data = json.loads(path.read_text())
    del data["audit_head"]
    path.write_text(json.dumps(data))
    with pytest.raises(postmortem.PostmortemRefused, match="carries no audit_head"):
        postmortem.build(RUNS["failed_failover"], home=home)


def test_a_run_recorded_in_another_trail_is_refused(home):
    data = json.loads((home / "runs" / RUNS["failed_failover"] / "result.json").read_text())
    data["run_id"] = "20261206T000000Z-database_failover-0e1e"
    (home / "runs" / data["run_id"]).mkdir()
    (home / "runs" / data["run_id"] / "result.json").write_text(json.dumps(data))
    with pytest.raises(postmortem.PostmortemRefused, match="has no run_start record in the audit trail"):
        postmortem.build(data["run_id"], home=home)


def test_a_run_cut_from_the_trail_is_refused(home):
    trail = home / "audit" / "audit.jsonl"
    lines = [line for line in trail.read_text().splitlines() if RUNS["failed_failover"] not in line]
    trail.write_text("\n".join(lines) + "\n")
    with pytest.raises(postmortem.PostmortemRefused) as refused:
        postmortem.build(RUNS["failed_failover"], home=home)
    assert "missing before it: deleted" in str(refused.value)  # the chain shows the cut before the run does


# ---------------------------------------------------------------- the command


def test_the_command_writes_a_private_html_draft_and_refuses_a_tampered_trail(home, tmp_path, capsys):
    out = tmp_path / "pm.html"
    assert cli.main(["postmortem", RUNS["regional"], "--format", "html", "--output", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_text().startswith("<!DOCTYPE html>") and "Content-Security-Policy" in out.read_text()
    assert "status Draft" in capsys.readouterr().out
    trail = home / "audit" / "audit.jsonl"
    lines = trail.read_text().splitlines()
    number = run_end_line(lines, RUNS["failed_failover"])
    lines[number] = json.dumps(dict(json.loads(lines[number]), rc=0))
    trail.write_text("\n".join(lines) + "\n")
    assert cli.main(["postmortem", RUNS["failed_failover"]]) == cli.EXIT_FAILED
    assert "tampered" in capsys.readouterr().err
