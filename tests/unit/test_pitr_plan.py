"""pg_backup's and pg_restore's pure decisions (module_utils/_pitr/plan.py): WAL arithmetic (segment names from LSNs
and timelines), which backup a target restores from, the WAL it needs and the first missing segment, retention.
No server."""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.pgbackrest import kind_of, parse_verify  # noqa: E402


def _backup(label: str, kind: str, start: str, stop: str, stopped_at: int, **extra: Any) -> dict[str, Any]:
    backup = {"label": label, "type": kind, "lsn": {"start": start, "stop": stop}, "error": False,
              "timestamp": {"start": stopped_at - 5, "stop": stopped_at},
              "archive": {"start": "00000001" + plan.segment_name(1, plan.parse_lsn(start) // plan.SEGMENT_SIZE)[8:],
                          "stop": None}, "database": {"id": 1}}
    backup.update(extra)
    return backup


FULL1 = _backup("20261206-100000F", "full", "0/2000028", "0/2000100", 1_000)
DIFF1 = _backup("20261206-100000F_20261206-103000D", "diff", "0/5000028", "0/5000100", 2_000)
FULL2 = _backup("20261206-110000F", "full", "0/9000028", "0/9000138", 3_000)


# -- LSNs and segment names --------------------------------------------------------------------------------------


def test_segment_names_follow_xlogfilename() -> None:
    assert plan.segment_name(1, plan.parse_lsn("0/3000028") // plan.SEGMENT_SIZE) == "000000010000000000000003"
    # 256 segments of 16 MiB per "log" (4 GiB): 1/0 is segment 256, named log 1, seg 0.
    assert plan.segment_name(2, plan.parse_lsn("1/00000000") // plan.SEGMENT_SIZE) == "000000020000000100000000"
    assert plan.segment_name(1, plan.parse_lsn("A/FF000000") // plan.SEGMENT_SIZE) == "000000010000000A000000FF"


def test_archive_file_names_are_parsed_with_or_without_pgbackrest_suffixes() -> None:
    assert plan.parse_segment_name("000000010000000000000004") == (1, 4)
    assert plan.parse_segment_name("000000020000000100000002-6d220275f3bc996beb7f53b7d20a5793c0fdfa9f.lz4") == (2, 258)
    assert plan.parse_segment_name("000000010000000000000002.00000028.backup") is None
    assert plan.parse_segment_name("000000010000000000000005.partial-" + "a" * 40 + ".gz") is None
    assert plan.parse_history_name("00000002.history") == 2


def test_lsn_round_trip_and_bad_lsn_named() -> None:
    assert plan.format_lsn(plan.parse_lsn("0/4000050")) == "0/4000050"
    with pytest.raises(plan.PlanError, match="not an LSN"):
        plan.parse_lsn("4000050")


# -- the WAL a restore needs ---------------------------------------------------------------------------------------


def test_needed_segments_on_one_timeline_run_from_the_backup_start_to_the_target() -> None:
    needed = plan.needed_segments(plan.parse_lsn("0/2000028"), plan.parse_lsn("0/5000000"), 1, 1, [])
    assert needed == ["000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
                      "000000010000000000000005"]


def test_needed_segments_switch_timeline_at_the_history_switch_point() -> None:
    history = plan.parse_history("1\t0/4000A28\tno recovery target specified\n")
    needed = plan.needed_segments(plan.parse_lsn("0/2000028"), plan.parse_lsn("0/6000000"), 1, 2, history)
    # The segment holding the switch point is read from the new timeline, as recovery does.
    assert needed == ["000000010000000000000002", "000000010000000000000003", "000000020000000000000004",
                      "000000020000000000000005", "000000020000000000000006"]


def test_a_timeline_that_does_not_descend_from_the_backup_is_refused() -> None:
    with pytest.raises(plan.PlanError, match="does not descend"):
        plan.needed_segments(0, plan.parse_lsn("0/6000000"), 3, 4, plan.parse_history("2\t0/4000000\tx\n"))


def test_first_missing_names_the_gap() -> None:
    needed = plan.needed_segments(plan.parse_lsn("0/2000028"), plan.parse_lsn("0/6000000"), 1, 1, [])
    archived = set(needed) - {"000000010000000000000004", "000000010000000000000006"}
    assert plan.first_missing(needed, archived) == "000000010000000000000004"
    assert plan.first_missing(needed, set(needed)) is None


def test_archive_listing_reads_repo_ls_paths() -> None:
    listing = plan.archive_listing([
        "0000000100000000/000000010000000000000002-" + "a" * 40 + ".lz4",
        "0000000100000000/000000010000000000000002.00000028.backup",
        "0000000100000000/000000010000000000000003-" + "b" * 40 + ".lz4",
        "00000002.history",
        "0000000200000000/000000020000000000000003-" + "c" * 40 + ".lz4",
    ])
    assert listing["segments"] == {"000000010000000000000002", "000000010000000000000003",
                                   "000000020000000000000003"}
    assert listing["histories"] == {2: "00000002.history"}
    assert listing["newest"] == {1: 3, 2: 3}


def test_wal_end_is_the_lsn_target_or_the_end_of_the_archive() -> None:
    listing = plan.archive_listing(["000000010000000000000007"])
    assert plan.wal_end({"type": "lsn", "value": "0/5000000"}, FULL1, listing, 1) == plan.parse_lsn("0/5000000")
    assert plan.wal_end({"type": "time", "value": "x", "epoch": 5}, FULL1, listing, 1) == 8 * plan.SEGMENT_SIZE - 1


# -- which backup ----------------------------------------------------------------------------------------------


def test_the_backup_is_chosen_by_lsn_and_stop_time_never_by_file_time() -> None:
    backups = plan.usable_backups([{"backup": [FULL2, FULL1, DIFF1]}])
    assert [b["label"] for b in backups] == [FULL1["label"], DIFF1["label"], FULL2["label"]]
    assert plan.choose_backup(backups, {"type": "time", "value": "t", "epoch": 2_500})["label"] == DIFF1["label"]
    assert plan.choose_backup(backups, {"type": "time", "value": "t", "epoch": 2_000})["label"] == FULL1["label"]
    assert plan.choose_backup(backups, {"type": "lsn", "value": "0/9000138"})["label"] == FULL2["label"]
    assert plan.choose_backup(backups, {"type": "latest", "value": None})["label"] == FULL2["label"]


def test_a_target_before_the_oldest_backup_is_refused_naming_it() -> None:
    with pytest.raises(plan.PlanError, match="before the oldest backup's end, 20261206-100000F"):
        plan.choose_backup([FULL1, FULL2], {"type": "time", "value": "t", "epoch": 500})


def test_a_label_that_cannot_reach_the_target_is_refused() -> None:
    with pytest.raises(plan.PlanError, match="lies before the end of backup 20261206-110000F"):
        plan.choose_backup([FULL1, FULL2], {"type": "lsn", "value": "0/3000000"}, FULL2["label"])
    with pytest.raises(plan.PlanError, match="not in the repository"):
        plan.choose_backup([FULL1], {"type": "latest", "value": None}, "nope")


def test_backups_in_error_are_never_chosen() -> None:
    broken = dict(FULL2, error=True)
    assert plan.choose_backup(plan.usable_backups([{"backup": [FULL1, broken]}]),
                              {"type": "latest", "value": None})["label"] == FULL1["label"]


# -- retention -------------------------------------------------------------------------------------------------


def test_retention_expires_old_fulls_with_their_dependents() -> None:
    assert plan.retention_plan([FULL1, DIFF1, FULL2], 1, {FULL2["label"]}) == [FULL1["label"], DIFF1["label"]]
    assert plan.retention_plan([FULL1, DIFF1, FULL2], 2, {FULL2["label"]}) == []


def test_retention_never_removes_the_newest_verified_backup() -> None:
    with pytest.raises(plan.PlanError, match="newest verified backup"):
        plan.retention_plan([FULL1, DIFF1, FULL2], 1, {DIFF1["label"]})


# -- pgBackRest's output ----------------------------------------------------------------------------------------


VERIFY = """stanza: erlmcp
status: ok
  archiveId: 15-1, total WAL checked: 4, total valid WAL: 4
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261206-113025F, status: valid, total files checked: 965, total valid files: 965
    missing: 0, checksum invalid: 0, size invalid: 0, other: 0
  backup: 20261206-114025F, status: invalid, total files checked: 965, total valid files: 964
    missing: 0, checksum invalid: 1, size invalid: 0, other: 0
"""


def test_verify_output_is_read_for_the_one_backup() -> None:
    assert parse_verify(VERIFY, "20261206-113025F")["ok"] is True
    bad = parse_verify(VERIFY, "20261206-114025F")
    assert (bad["ok"], bad["status"]) == (False, "invalid")
    assert bad["problems"] == ["missing: 0, checksum invalid: 1, size invalid: 0, other: 0"]
    assert parse_verify(VERIFY, "20261206-999999F")["status"] == "not listed"


def test_pgbackrest_failures_get_a_kind() -> None:
    assert kind_of("ERROR: [055]: unable to load info file '/r/backup/erlmcp/backup.info'") == "stanza_missing"
    assert kind_of("ERROR: [082]: WAL segment 000000010000000000000005 was not archived before the 60000ms "
                   "timeout") == "archive"
