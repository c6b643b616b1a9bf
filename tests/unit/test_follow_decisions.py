"""The decisions of erlmcp.dr.pg_standby_follow, from facts alone (no server needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import follow_plan as f  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.server import (  # noqa: E402
    conf_value,
    conninfo,
    conninfo_endpoint,
    parse_conninfo,
)

# ---------------------------------------------------------------- masking


def test_mask_conninfo_hides_quoted_password_with_escapes():
    text = conninfo(host="10.0.0.2", port=5432, user="replicator", password="s3cr'et\\x y", application_name="pg-c")
    masked = f.mask_conninfo(text)
    assert "s3cr" not in masked and "et\\" not in masked
    assert "password='********'" in masked
    assert "host='10.0.0.2'" in masked and "application_name='pg-c'" in masked and "user='replicator'" in masked


def test_mask_conninfo_hides_unquoted_password_and_keeps_none():
    assert f.mask_conninfo("host=db1 password=hunter2 port=5432") == "host=db1 password='********' port=5432"
    assert f.mask_conninfo("host=db1 PASSWORD = 'x' port=5432") == "host=db1 PASSWORD = '********' port=5432"
    assert f.mask_conninfo(None) is None
    assert f.mask_conninfo("host=db1 port=5432") == "host=db1 port=5432"
    assert f.mask_conninfo("host=db1 passfile=/x/pgpass") == "host=db1 passfile=/x/pgpass"


# ---------------------------------------------------------------- timeline history and divergence

HISTORY_3 = "1\t0/3000148\tno recovery target specified\n\n2\t0/5000060\tno recovery target specified\n"


def test_parse_history():
    assert pg.parse_history(HISTORY_3) == [(1, 0x3000148), (2, 0x5000060)]
    assert pg.parse_history("") == []
    assert pg.parse_history(None) == []
    assert pg.parse_history("# comment\ngarbage line\n1\t0/10\treason") == [(1, 0x10)]


def test_same_timeline_follows():
    diverged, why = f.divergence(2, "0/9000000", 2, None)
    assert diverged is False and "timeline 2" in why


def test_behind_the_fork_follows():
    history = pg.parse_history(HISTORY_3)
    assert f.divergence(1, "0/3000148", 3, history)[0] is False  # exactly at the switch point
    assert f.divergence(1, "0/2000000", 3, history)[0] is False
    assert f.divergence(2, 0x5000000, 3, history)[0] is False


def test_past_the_fork_diverged():
    history = pg.parse_history(HISTORY_3)
    diverged, why = f.divergence(1, "0/3000150", 3, history)
    assert diverged is True
    assert "0/3000150" in why and "0/3000148" in why


def test_timeline_not_in_history_or_newer_diverged():
    history = [(1, 0x3000148)]
    assert f.divergence(3, "0/1000000", 2, history)[0] is True  # newer than the primary's
    assert f.divergence(2, "0/1000000", 4, [(1, 0x100), (3, 0x200)])[0] is True  # a branch it never had


def test_unknowns_stay_unknown():
    assert f.divergence(1, "0/1000000", 2, None)[0] is None  # history unreadable
    assert f.divergence(None, "0/1", 2, [])[0] is None
    assert f.divergence(1, None, 2, [(1, 0x10)])[0] is None


# ---------------------------------------------------------------- receiver


def receiver(status="streaming", host="127.0.0.1", port=5433, tli=2):
    return dict(status=status, sender_host=host, sender_port=port, received_tli=tli)


def test_is_following():
    assert f.is_following(receiver(), "127.0.0.1", 5433, 2)
    assert f.is_following(receiver(host="DB2"), "db2", "5433", 2)
    assert not f.is_following(receiver(tli=1), "127.0.0.1", 5433, 2)
    assert not f.is_following(receiver(port=5432), "127.0.0.1", 5433, 2)
    assert not f.is_following(receiver(host="10.0.0.1"), "127.0.0.1", 5433, 2)
    assert not f.is_following(receiver(status="waiting"), "127.0.0.1", 5433, 2)
    assert not f.is_following(None, "127.0.0.1", 5433, 2)
    assert f.upstream_of(receiver()) == "127.0.0.1:5433"
    assert f.upstream_of(None) is None


# ---------------------------------------------------------------- the decision table


def test_running_standby_already_there_is_none_whatever_the_method():
    for method in f.METHODS:
        assert f.choose_action("standby", method, already=True, diverged=None).action == "none"


def test_running_standby_follows_with_fallback_only_in_auto():
    plan = f.choose_action("standby", "auto", already=False, diverged=False)
    assert (plan.action, plan.how, plan.fallback, plan.stop_first) == ("follow", "reload", True, False)
    plan = f.choose_action("standby", "auto", already=False, diverged=None)  # unknown: try, fall back
    assert (plan.action, plan.fallback) == ("follow", True)
    plan = f.choose_action("standby", "follow", already=False, diverged=None)
    assert (plan.action, plan.how, plan.fallback) == ("follow", "reload", False)


def test_diverged_standby_rewinds_in_auto_and_refuses_in_follow():
    plan = f.choose_action("standby", "auto", already=False, diverged=True, why="past the fork")
    assert (plan.action, plan.stop_first) == ("rewind", True)
    assert "past the fork" in plan.reason
    with pytest.raises(f.FollowError, match="past the fork.*method=rewind"):
        f.choose_action("standby", "follow", already=False, diverged=True, why="past the fork")


def test_method_rewind_on_a_standby_stops_and_rewinds():
    plan = f.choose_action("standby", "rewind", already=False, diverged=False)
    assert (plan.action, plan.stop_first) == ("rewind", True)


def test_running_primary_refused_without_allow_stop_primary():
    for method in f.METHODS:
        with pytest.raises(f.FollowError, match="PRIMARY.*pg_fence.*allow_stop_primary"):
            f.choose_action("primary", method, already=False, diverged=None)


def test_running_primary_allowed_is_stopped_then_rewound_or_started():
    plan = f.choose_action("primary", "auto", allow_stop_primary=True, already=False, diverged=None)
    assert (plan.action, plan.stop_first) == ("rewind", True)
    plan = f.choose_action("primary", "follow", allow_stop_primary=True, already=False, diverged=None)
    assert (plan.action, plan.how, plan.stop_first, plan.fallback) == ("follow", "start", True, False)


def test_stopped_node_rewinds_unless_follow():
    assert f.choose_action("stopped", "auto", already=False, diverged=None).action == "rewind"
    assert f.choose_action("stopped", "rewind", already=False, diverged=None).stop_first is False
    plan = f.choose_action("stopped", "follow", already=False, diverged=None)
    assert (plan.action, plan.how, plan.stop_first) == ("follow", "start", False)


def test_unknown_method_or_role_fails():
    with pytest.raises(f.FollowError, match="method"):
        f.choose_action("standby", "clone", already=False, diverged=None)
    with pytest.raises(f.FollowError, match="role"):
        f.choose_action("witness", "auto", already=False, diverged=None)


# ---------------------------------------------------------------- pg_rewind output, config values


def test_short_rewind_output_drops_progress_and_cuts():
    text = ("pg_rewind: connected to server\npg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\n"
            "0/23456 kB (0%) copied\r23456/23456 kB (100%) copied\npg_rewind: Done!\n")
    out = f.short_rewind_output(text)
    assert "copied" not in out
    assert out.splitlines() == ["pg_rewind: connected to server",
                                "pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1",
                                "pg_rewind: Done!"]
    long = "\n".join(f"pg_rewind: line {i}" for i in range(200))
    cut = f.short_rewind_output(long, limit=100)
    assert len(cut) == 100 and cut.startswith("...") and cut.endswith("line 199")
    assert f.no_rewind_required("pg_rewind: source and target cluster are on the same timeline\n"
                                "pg_rewind: no rewind required")
    assert not f.no_rewind_required("pg_rewind: Done!")


def test_rewind_errors_picks_error_lines():
    text = ("pg_rewind: connected to server\npg_rewind: error: could not open file \"x\": No such file\n"
            "pg_rewind: error: could not read WAL record at 0/402BC88")
    assert f.rewind_errors(text) == ("pg_rewind: error: could not open file \"x\": No such file; "
                                     "pg_rewind: error: could not read WAL record at 0/402BC88")
    assert f.rewind_errors("pg_rewind: something odd\nlast words") == "last words"
    assert f.rewind_errors("") == "no output"


def test_conf_value_last_wins_and_handles_quotes_and_comments():
    conf = "port = 5432\n#cluster_name = 'commented'\ncluster_name = 'pg-a'   # the node\n"
    auto = "# Do not edit this file manually!\nprimary_conninfo = 'host=''x'' port=1 # not a comment'\n"
    assert conf_value([conf, auto], "cluster_name") == "pg-a"
    assert conf_value([conf, auto], "primary_conninfo") == "host='x' port=1 # not a comment"
    assert conf_value([conf, "cluster_name = 'other'\n"], "cluster_name") == "other"
    assert conf_value([conf, None], "primary_slot_name") is None
    assert conf_value(["port 5433\n"], "port") == "5433"  # the '=' is optional


# ---------------------------------------------------------------- read-only fenced primary (issue 5 row 6)


def test_read_only_fenced_primary_is_converted_without_allow_stop_primary():
    plan = f.choose_action("primary", "auto", fenced=True)
    assert (plan.action, plan.stop_first) == ("rewind", True) and "read-only fenced" in plan.reason
    plan = f.choose_action("primary", "follow", fenced=True)
    assert (plan.action, plan.how) == ("follow", "start")


def test_writable_primary_still_needs_allow_stop_primary():
    with pytest.raises(f.FollowError, match="allow_stop_primary"):
        f.choose_action("primary", "auto", fenced=False)


# ---------------------------------------------------------------- passfile (issue 5 row 9, part D)


def test_pgpass_line_escapes_and_reads_back():
    line = f.pgpass_line("db:1", 5432, "rep\\user", "pa:ss\\word")
    assert line == "db\\:1:5432:replication:rep\\\\user:pa\\:ss\\\\word\n"
    assert f.pgpass_fields(line) == ["db:1", "5432", "replication", "rep\\user", "pa:ss\\word"]
    assert f.pgpass_password(line, "rep\\user") == "pa:ss\\word"
    assert f.pgpass_password(line, "other") is None
    assert f.pgpass_password("# comment\n*:*:replication:*:any\n", "x") == "any"


def test_inline_password_is_detected_passfile_is_not():
    assert f.has_inline_password("host=a password='x y' port=1")
    assert not f.has_inline_password("host=a passfile='/p/.pgpass' port=1")
    assert not f.has_inline_password(None)


def test_parse_conninfo_reads_quoted_values_uris_and_endpoints():
    text = conninfo(host="10.0.0.2", port=5433, user="replicator", password="s3cr'et x", passfile="/a b/.pgpass")
    fields = parse_conninfo(text)
    assert fields["password"] == "s3cr'et x" and fields["passfile"] == "/a b/.pgpass" and fields["port"] == "5433"
    assert conninfo_endpoint(text) == ("10.0.0.2", 5433)
    assert conninfo_endpoint("host=db1") == ("db1", 5432)
    assert conninfo_endpoint("host=/var/run/postgresql port=5433") == (None, None)
    assert conninfo_endpoint("postgresql://rep:pw@db2:6543/x?application_name=a") == ("db2", 6543)
    assert conninfo_endpoint("") == (None, None)


def test_stop_fence_and_pure_plans_do_not_import_the_driver():
    code = ("import sys; from erlmcp_dr.paths import ensure_collection_importable; ensure_collection_importable()\n"
            "from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import fence, follow_plan\n"
            "from ansible_collections.erlmcp.dr.plugins.module_utils._app import db_config\n"
            "from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import follow, promote\n"
            "from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import replication_info\n"
            "print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------- a cleanly stopped former primary


def test_clean_shutdown_before_the_fork_starts_as_a_standby_without_rewind():
    history = [(1, 0x3000148)]  # timeline 2 forked at 0/3000148, the end of the old primary's shutdown checkpoint
    diverged, why = f.clean_stop_divergence("shut down", "0/30000D8", 1, 2, history)
    assert diverged is False, why

    plan = f.choose_action("stopped", "auto", diverged=diverged, why=why)
    assert (plan.action, plan.how, plan.fallback) == ("follow", "start", True)
    assert "cleanly shut down" in plan.reason


def test_clean_shutdown_at_or_past_the_fork_or_unclean_or_in_recovery_rewinds():
    history = [(1, 0x3000148)]
    # the checkpoint record starts at the fork: the candidate never replayed it, the node's WAL goes past the fork
    assert f.clean_stop_divergence("shut down", "0/3000148", 1, 2, history)[0] is True
    assert f.clean_stop_divergence("shut down", "0/4000028", 1, 2, history)[0] is True
    assert f.clean_stop_divergence("in production", "0/2000000", 1, 2, history)[0] is None  # a crash
    assert f.clean_stop_divergence("shut down in recovery", "0/2000000", 1, 2, history)[0] is None  # a standby
    assert f.clean_stop_divergence("shut down", None, 1, 2, history)[0] is None
    assert f.clean_stop_divergence("shut down", "0/2000000", 1, 2, None)[0] is None  # history unreadable
    for verdict in (True, None):
        assert f.choose_action("stopped", "auto", diverged=verdict).action == "rewind"
    assert f.choose_action("stopped", "rewind", diverged=False).action == "rewind"


# ---------------------------------------------------------------- repointing several nodes at once


LAB_HOSTVARS = {
    "pg-a": {"ansible_connection": "local", "pg_host": "127.0.0.1", "pg_port": 5432, "pg_data_dir": "/d/a",
             "pg_bin_dir": "/b", "pg_log_file": "/d/a.log"},
    "pg-c": {"ansible_connection": "local", "pg_host": "127.0.0.1", "pg_port": 5434, "pg_data_dir": "/d/c"},
    "db1": {"ansible_host": "10.0.1.10", "pg_host": "10.0.1.10", "pg_data_dir": "/var/lib/pg"},
    "db2": {"ansible_host": "10.0.2.10", "pg_host": "10.0.2.10", "pg_data_dir": "/var/lib/pg"},
    "pg-root": {"ansible_connection": "local", "ansible_become": True, "pg_data_dir": "/d/r"},
}


def test_local_nodes_are_one_group_remote_hosts_their_own_in_the_order_given():
    groups = f.follow_groups(["db2", "pg-a", "db1", "pg-c", "pg-root"], LAB_HOSTVARS)

    assert [(g["host"], [n["name"] for n in g["nodes"]]) for g in groups] == [
        ("db2", ["db2"]), ("pg-a", ["pg-a", "pg-c"]), ("db1", ["db1"]), ("pg-root", ["pg-root"])]
    assert groups[1]["nodes"][0] == {"name": "pg-a", "data_dir": "/d/a", "bin_dir": "/b", "log_file": "/d/a.log",
                                     "login_host": "127.0.0.1", "login_port": 5432}
    assert groups[0]["nodes"][0]["login_port"] == 5432 and groups[1]["nodes"][1]["bin_dir"] is None


def test_follow_items_flattens_grouped_and_single_results():
    grouped = {"results": [
        {"item": {"host": "pg-a", "nodes": [{"name": "pg-a"}, {"name": "pg-c"}]}, "changed": True, "results": [
            {"item": "pg-a", "changed": True, "action": "follow"}, {"item": "pg-c", "failed": True, "msg": "x"}]},
        {"item": {"host": "db1", "nodes": [{"name": "db1"}]}, "failed": True, "msg": "unreachable"},
    ]}
    per_node = {"results": [{"item": "pg-a", "changed": True}, {"item": "pg-c", "skipped": True}]}

    assert [(i["item"], bool(i.get("failed"))) for i in f.follow_items(grouped)] == [
        ("pg-a", False), ("pg-c", True), ("db1", True)]
    assert [i["item"] for i in f.follow_items(per_node)] == ["pg-a", "pg-c"]
    assert f.follow_items({}) == [] and f.follow_items(None) == []
