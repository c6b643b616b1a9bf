"""The regional failover's isolation of the region left (compose/isolate.py): what it decides for the region's
application and Redis, how it tells "down" from "hung" on real sockets, and its refusal before any change; and the
services step's lock key in the move's one lock (compose/inventory.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from erlmcp_dr.compose import hooks, isolate
from erlmcp_dr.compose.inventory import InventoryView


@pytest.mark.parametrize(("probe", "has_stop", "expected"), [
    (isolate.REFUSED, True, "down"),  # nothing listens: confirmed down, whatever could stop it
    (isolate.REFUSED, False, "down"),
    (isolate.ANSWERS, True, "stop"),
    (isolate.ANSWERS, False, "refuse"),  # it runs and nothing can stop it: refused before any change
    (isolate.SILENT, True, "stop"),  # hung or vanished: try to stop it
    (isolate.SILENT, False, "unreachable"),  # a vanished host cannot be stopped: counted down
])
def test_the_application_is_stopped_when_it_may_run_and_a_down_one_is_success(probe, has_stop, expected) -> None:
    assert isolate.app_action(probe, has_stop) == expected


@pytest.mark.parametrize(("before", "command_ok", "after", "expected"), [
    (isolate.ANSWERS, True, isolate.REFUSED, "stopped"),
    (isolate.SILENT, True, isolate.REFUSED, "stopped"),
    (isolate.ANSWERS, True, isolate.ANSWERS, "failed"),  # the command said yes, the app still answers: not isolated
    (isolate.ANSWERS, False, isolate.REFUSED, "failed"),  # gone, but its stop command failed: not ours to claim
    (isolate.SILENT, False, isolate.SILENT, "unreachable"),  # the vanished region: neither answers nor is reachable
])
def test_a_stop_is_verified_from_outside(before, command_ok, after, expected) -> None:
    assert isolate.app_after_stop(before, command_ok, after) == expected


@pytest.mark.parametrize(("probe", "role", "expected"), [
    (isolate.REFUSED, None, "down"),
    (isolate.SILENT, None, "unreachable"),
    (isolate.AUTH, None, "refuse"),  # a wrong password is a setting to fix, never "down"
    (isolate.ANSWERS, "master", "pause"),
    (isolate.ANSWERS, "slave", "replica"),  # a replica already refuses writes
])
def test_only_a_redis_primary_that_answers_is_paused(probe, role, expected) -> None:
    assert isolate.redis_action(probe, role) == expected


# ------------------------------------------------------------------ real sockets

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def answering_app() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(503)  # any HTTP answer means the process runs
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass
class RestartableApp:
    """An application on a free loopback port that a start command can bring up again (`serve`: the command that
    serves it; `start_command`: starts `serve` in a session of its own and returns once it answers)."""

    url: str
    serve: list[str]
    start_command: list[str]


@pytest.fixture
def restartable_app(tmp_path: Path) -> Iterator[RestartableApp]:
    """Not started: a test starts `serve` itself, or finds the application down. Whatever its start command started
    is killed at the end (by the PID it wrote)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    started = tmp_path / "started.pid"
    starter = tmp_path / "start.py"
    starter.write_text(
        "import pathlib, subprocess, sys, time, urllib.request\n"
        f"proc = subprocess.Popen({serve!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,"
        " start_new_session=True)\n"
        f"pathlib.Path({str(started)!r}).write_text(str(proc.pid))\n"
        "for _ in range(300):\n"
        f"    try: urllib.request.urlopen({url!r}, timeout=1); sys.exit(0)\n"
        "    except OSError: time.sleep(0.1)\n"
        "sys.exit(1)\n")
    yield RestartableApp(url, serve, [sys.executable, str(starter)])
    if started.exists():  # the server the undo started (by its PID)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(started.read_text()), signal.SIGKILL)


def test_the_probe_tells_down_from_hung_from_running(answering_app: str) -> None:
    assert isolate.probe_app(f"http://127.0.0.1:{_free_port()}") == isolate.REFUSED
    assert isolate.probe_app(answering_app) == isolate.ANSWERS
    with socket.socket() as hung:  # listens (the kernel accepts) but never answers: a SIGSTOPped process
        hung.bind(("127.0.0.1", 0))
        hung.listen(1)
        assert isolate.probe_app(f"http://127.0.0.1:{hung.getsockname()[1]}", timeout=0.3) == isolate.SILENT


def test_an_application_that_runs_without_a_stop_command_refuses_the_step_before_any_change(answering_app) -> None:
    app = {"app_url": answering_app}  # no app_stop_command
    down_redis = {"host": "127.0.0.1", "port": _free_port(), "password": None}
    outcome = isolate.isolate({"region": "a", "app": "app-a", "redis": "redis-a", "pause_seconds": 5}, app,
                              down_redis)
    assert outcome.ok is False and outcome.changed is False
    assert "declares no app_stop_command" in outcome.message and "nothing was changed" in outcome.message
    assert outcome.summary["details"]["redis"]["action"] == "down"
    assert isolate.probe_app(answering_app) == isolate.ANSWERS  # untouched


def test_a_running_application_is_stopped_by_its_command_and_the_undo_starts_only_what_was_stopped(
        tmp_path: Path, restartable_app: RestartableApp) -> None:
    url = restartable_app.url
    server = subprocess.Popen(restartable_app.serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert isolate._wait(lambda: isolate.probe_app(url) == isolate.ANSWERS, 30)
        stop_ran = tmp_path / "stop-ran"
        app = {"app_url": url, "app_stop_command": [
                   sys.executable, "-c", f"import os, pathlib; pathlib.Path({str(stop_ran)!r}).touch(); "
                                         f"os.kill({server.pid}, 15)"],
               "app_start_command": restartable_app.start_command}
        down_redis = {"host": "127.0.0.1", "port": _free_port(), "password": None}
        arguments = {"region": "a", "app": "app-a", "redis": "redis-a", "pause_seconds": 5}
        recorded: list = []  # (the journal entry, whether the stop command had run when it was written)
        journal = hooks.ActionJournal(run_id="rf-1", record=lambda entry: recorded.append((entry, stop_ran.exists())))
        outcome = isolate.isolate(arguments, app, down_redis, journal)
        assert outcome.ok is True, outcome.message
        # Write-ahead: the intent is in the journal before the stop command runs, the outcome after.
        assert recorded[0] == ({"region": "a", "app": {"name": "app-a", "state": "stopping", "stopped_by": "rf-1"},
                                "redis": {"name": "redis-a", "state": None}}, False)
        assert recorded[-1][0]["app"] == {"name": "app-a", "state": "stopped", "stopped_by": "rf-1"}
        assert recorded[-1][0]["redis"]["state"] == "down"
        assert outcome.message == "region a isolated: application stopped, Redis down"
        assert outcome.summary["did"] == ["stopped region a's application app-a"]
        assert isolate.probe_app(url) == isolate.REFUSED

        undone = isolate.lift(dict(arguments, isolated=outcome.summary["details"]), app, down_redis)
        assert undone.ok is True, undone.message
        assert undone.summary["did"] == ["started region a's application app-a again"]
        assert isolate.probe_app(url) == isolate.ANSWERS

        # An isolation that found everything down undoes nothing (it never starts what it did not stop).
        nothing = isolate.lift(dict(arguments, isolated={"app": {"state": "down"}, "redis": {"state": "down"}}), app,
                               down_redis)
        assert nothing.ok is True and nothing.changed is False
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize(("previous", "action", "expected"), [
    ({"region": "a", "app": {"name": "app-a", "state": "stopping", "stopped_by": "rf-1"}}, "down", "rf-1"),
    ({"region": "a", "app": {"name": "app-a", "state": "stopped", "stopped_by": "rf-1"}}, "unreachable", "rf-1"),
    ({"region": "a", "app": {"name": "app-a", "state": "stopped", "stopped_by": "rf-1"}}, "stop", None),  # runs
    ({"region": "a", "app": {"name": "app-a", "state": "down", "stopped_by": None}}, "down", None),  # was down
    ({"region": "a", "app": {"name": "app-a", "state": "restarted", "stopped_by": None}}, "down", None),
    ({"region": "c", "app": {"name": "app-c", "state": "stopped", "stopped_by": "rf-1"}}, "down", None),  # not ours
    ({}, "down", None),
])
def test_a_resumed_isolation_adopts_only_a_stop_the_interrupted_run_recorded_for_this_application(
        previous, action, expected) -> None:
    assert isolate.adopted_stop(previous, "a", "app-a", action) == expected


def test_a_resumed_isolation_undoes_the_stop_of_the_run_killed_after_isolate(restartable_app: RestartableApp) -> None:
    """Regression (issue 17): run 1 stopped region a's application and was killed; run 2 resumes the move, finds
    the application down and, before the point of no return, fails and undoes. Its undo must start the application
    run 1 stopped (before the journal's record, run 2 called it "down" and its undo started nothing)."""
    url = restartable_app.url
    app = {"app_url": url, "app_stop_command": [sys.executable, "-c", "pass"],
           "app_start_command": restartable_app.start_command}
    down_redis = {"host": "127.0.0.1", "port": _free_port(), "password": None}
    arguments = {"region": "a", "app": "app-a", "redis": "redis-a", "pause_seconds": 5}
    # What run 1 wrote before its stop command (then it was killed): the application is down now.
    killed_runs_entry = {"region": "a", "app": {"name": "app-a", "state": "stopping", "stopped_by": "rf-killed"},
                         "redis": {"name": "redis-a", "state": None}}
    entries: list = []
    outcome = isolate.isolate(arguments, app, down_redis, hooks.ActionJournal(
        run_id="rf-resumed", previous=killed_runs_entry, record=entries.append))
    assert outcome.ok is True, outcome.message
    assert outcome.summary["details"]["app"]["state"] == "stopped"
    assert outcome.summary["details"]["app"]["stopped_by"] == "rf-killed"
    assert "stopped by the interrupted run rf-killed" in outcome.message
    assert entries[-1]["app"] == {"name": "app-a", "state": "stopped", "stopped_by": "rf-killed"}  # carried on

    undone = isolate.lift(dict(arguments, isolated=outcome.summary["details"]), app, down_redis,
                          journal=hooks.ActionJournal(run_id="rf-resumed", previous=entries[-1],
                                                      record=entries.append))
    assert undone.ok is True, undone.message
    assert undone.summary["did"] == ["started region a's application app-a again"]
    assert isolate.probe_app(url) == isolate.ANSWERS
    assert entries[-1]["app"] == {"name": "app-a", "state": "restarted", "stopped_by": None}


def test_the_move_holds_service_recovery_s_own_key_for_every_region_with_services(tmp_path: Path) -> None:
    """The services step runs service_recovery under the move's lock: the parent must hold exactly the key the
    child asks for (its own function, `services:<region>:<sorted names>`), one per region."""
    from erlmcp_dr import paths

    paths.ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._services import order

    hosts = {"services": {"auth-b": {"service_name": "auth", "dr_region": "b"},
                          "api_gateway-b": {"service_name": "api_gateway", "dr_region": "b"},
                          "auth-a": {"service_name": "auth", "dr_region": "a"},
                          "orphan": {"service_name": "x"}}}
    keys = InventoryView(tmp_path / "hosts.yml", hosts).services_lock_keys()
    assert keys == [order.lock_key("a", [{"name": "auth"}]),
                    order.lock_key("b", [{"name": "auth"}, {"name": "api_gateway"}])]
    assert keys == ["services:a:auth", "services:b:api_gateway,auth"]


def test_a_target_region_without_services_is_refused_before_anything_changes(tmp_path: Path) -> None:
    """The services step comes after the point of no return: a target with no service declared would stop the move
    there, so the regions' check refuses it first, naming the parameter and the regions that have services."""
    from erlmcp_dr.errors import ParameterError

    one_each = {group: {f"{group}-{region}": {"dr_region": region} for region in ("a", "b")}
                for group in ("postgres", "redis", "app")}
    view = InventoryView(tmp_path / "hosts.yml", {**one_each, "services": {"auth-a": {"dr_region": "a"}}})
    with pytest.raises(ParameterError) as refused:
        view.check_regions("a", "b")
    assert refused.value.parameter == "to_region"
    assert "region 'b' has no service" in str(refused.value) and "regions with services: a" in str(refused.value)
    assert view.check_regions("b", "a")["to"]["app"] == "app-a"
