"""Split brain on one timeline and data-directory identity, decided from facts alone (no server needed)."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import follow_plan as f  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.data_dir_identity import mismatch  # noqa: E402

LSN = 0x3000000


# ---------------------------------------------------------------- split brain on the primary's timeline


def test_a_second_primary_on_the_primarys_timeline_is_a_split_brain():
    why = f.split_brain(2, 2, ran_as_primary="runs", node_lsn=LSN, primary_lsn=LSN + 100)
    assert "runs as a primary on timeline 2, the primary's own timeline" in why and "split brain" in why


def test_a_node_whose_wal_is_ahead_of_the_primary_on_its_timeline_is_a_split_brain():
    why = f.split_brain(2, 2, node_lsn="0/3000100", primary_lsn="0/3000000")
    assert "its WAL reaches 0/3000100 on timeline 2, past the primary's current WAL end 0/3000000" in why


def test_two_promotions_to_one_timeline_id_show_in_the_histories():
    why = f.split_brain(2, 2, node_lsn=LSN, primary_lsn=LSN, node_history=[(1, LSN - 8)], primary_history=[(1, LSN)])
    assert "two promotions made timeline 2" in why and "timeline 1 until 0/2FFFFF8" in why


def test_a_standby_behind_the_primary_with_its_history_is_no_split_brain():
    assert f.split_brain(2, 2, node_lsn=LSN, primary_lsn=LSN + 1, node_history=[(1, LSN)],
                         primary_history=[(1, LSN)]) is None


def test_unknown_facts_say_nothing_and_another_timeline_is_pg_rewinds_case():
    assert f.split_brain(2, 2) is None
    assert f.split_brain(2, 2, node_lsn=LSN, primary_lsn=None, node_history=None, primary_history=[(1, LSN)]) is None
    assert f.split_brain(1, 2, ran_as_primary="runs", node_lsn=LSN + 100, primary_lsn=LSN) is None
    assert f.split_brain(None, 2, ran_as_primary="runs") is None


def test_a_split_node_is_refused_naming_the_override_and_never_rewound():
    for role in ("primary", "standby", "stopped"):
        for method in f.METHODS:
            with pytest.raises(f.FollowError) as refused:
                f.choose_action(role, method, allow_stop_primary=True, split="it runs as a primary on timeline 2")
            message = str(refused.value)
            assert "it runs as a primary on timeline 2" in message and "allow_reclone=true" in message
            assert "nothing was changed" in message and "pg_rewind cannot repair this" in message


def test_allow_reclone_reclones_a_split_node_and_a_writable_primary_still_needs_allow_stop_primary():
    plan = f.choose_action("stopped", "auto", split="x", allow_reclone=True)
    assert plan.action == "reclone" and not plan.stop_first
    assert f.choose_action("standby", "follow", split="x", allow_reclone=True).stop_first
    assert f.choose_action("primary", "auto", split="x", allow_reclone=True, fenced=True).action == "reclone"
    with pytest.raises(f.FollowError, match="allow_stop_primary=true"):
        f.choose_action("primary", "auto", split="x", allow_reclone=True)
    assert f.choose_action("primary", "auto", split="x", allow_reclone=True, allow_stop_primary=True).stop_first


def test_allow_reclone_changes_nothing_for_a_node_that_did_not_split():
    plan = f.choose_action("standby", "auto", allow_reclone=True, diverged=False, why="can follow")
    assert plan.action == "follow"


# ---------------------------------------------------------------- is the data directory the server at host:port?

SYSID = "7440000000000000001"


def served(port, data_directory="/srv/pg-b/data", sysid=SYSID):
    return dict(port=port, data_directory=data_directory, system_identifier=sysid)


def test_a_running_data_directory_listening_on_another_port_is_not_the_server_read():
    why = mismatch("/srv/pg-c/data", True, 5434, "postmaster.pid", SYSID, "127.0.0.1:5433", 5433, None)
    assert "/srv/pg-c/data (port 5434 per postmaster.pid" in why and "127.0.0.1:5433" in why


def test_the_server_at_host_port_serving_another_directory_is_named_with_it():
    why = mismatch("/srv/pg-c/data", True, 5433, "postmaster.pid", SYSID, "127.0.0.1:5433", 5433, served(5433))
    assert "/srv/pg-c/data" in why and "data directory /srv/pg-b/data" in why and "pg_data_dir" in why


def test_another_clusters_server_at_host_port_is_refused():
    why = mismatch("/srv/pg-b/data", True, 5433, "postmaster.pid", SYSID, "127.0.0.1:5433", 5433,
                   served(5433, None, "7440000000000000999"))
    assert "system identifier 7440000000000000999" in why and f"system identifier {SYSID}" in why


def test_a_stopped_directory_while_a_server_answers_at_host_port_is_not_that_server():
    why = mismatch("/srv/pg-b/data", False, 5433, "its config files", SYSID, "127.0.0.1:5433", 5433, served(5433))
    assert "is not running, but the server read at 127.0.0.1:5433" in why
    stale = dict(served(5433), started=1765000000)  # a postmaster.pid left by an earlier start
    assert "is not running" in mismatch("/srv/pg-b/data", False, 5433, "postmaster.pid", SYSID, "h:5433", 5433,
                                        stale, lock_started=1764999000)


def test_a_postmaster_in_another_pid_namespace_is_known_by_its_lock_files_start_time():
    """The execution environment's container cannot see the host's postmaster: the server at host:port serving this
    very directory, started at the second its postmaster.pid records, is this directory's."""
    here = dict(served(5433), started=1765000000)
    assert mismatch("/srv/pg-b/data", False, 5433, "postmaster.pid", SYSID, "h:5433", 5433, here,
                    lock_started=1765000000) is None
    elsewhere = dict(served(5433, "/srv/pg-c/data"), started=1765000000)
    assert "is not running" in mismatch("/srv/pg-b/data", False, 5433, "postmaster.pid", SYSID, "h:5433", 5433,
                                        elsewhere, lock_started=1765000000)


def test_a_stopped_directory_configured_for_another_port_is_refused_and_its_own_port_passes():
    assert "port 5434 per its config files" in mismatch("/d", False, 5434, "its config files", SYSID, "h:5433",
                                                        5433, None)
    assert mismatch("/d", False, 5433, "its config files", SYSID, "h:5433", 5433, None) is None


def test_the_server_it_is_passes():
    assert mismatch("/srv/pg-b/data", True, 5433, "postmaster.pid", SYSID, "h:5433", 5433, served(5433)) is None
    assert mismatch("/srv/pg-b/data", True, 5433, "postmaster.pid", SYSID, "h:5433", 5433,
                    served(5433, data_directory=None)) is None


def test_a_stopped_directory_whose_port_is_not_in_its_files_is_not_refused_for_it():
    # Debian keeps postgresql.conf in /etc; a port may come from the command line: unknown refuses nothing.
    assert mismatch("/d", False, None, "nothing", SYSID, "h:5433", 5433, None) is None


def test_an_unknown_system_identifier_is_judged_by_the_port_and_served_directory_alone():
    assert mismatch("/srv/pg-b/data", True, 5433, "postmaster.pid", None, "h:5433", 5433, served(5433)) is None
    assert "system identifier unknown" in mismatch("/srv/pg-c/data", True, 5434, "postmaster.pid", None, "h:5433",
                                                   5433, served(5433, "/srv/pg-b/data"))
