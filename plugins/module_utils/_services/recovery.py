# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of erlmcp.dr.service_recovery: start one region's services in dependency order, each gated on its
health check (docs/design.md, Service recovery order).

The decisions are _service_order's (pure); this file does the I/O:
1. level 0: the region's database and Redis must answer (sampled until healthy or backing_timeout; never started);
2. one sample of every service's health URL: a healthy one is not started again (a re-run after a stopped run);
3. each service that is not healthy starts as soon as all its dependencies answered healthy (each its own thread,
   so the services of a level start together when their dependencies are ready together): its start command runs
   (a list of arguments, no shell; it must return once the service is launched, as `systemctl start` does), then
   its health URL is sampled every `interval` seconds until the first healthy sample or its start_timeout (counted
   from the start command). The first failed gate stops the run: nothing more starts, the running gates are
   abandoned (those services are reported `unconfirmed`) and the rest is `not_started`.
Check mode samples (read-only) and returns the plan; it runs no start command.
"""

from __future__ import annotations

import queue
import subprocess
import tempfile
import threading
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._services import order
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._region.health import SAMPLERS
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

OUTPUT_EXCERPT = 400  # characters of a failed start command's output kept in the report


def _http_params(service, params):
    return dict(url=service["health_url"], sample_timeout=params["sample_timeout"], status_code=[200],
                validate_certs=params["validate_certs"], ca_path=params.get("ca_path"), body_match=None)


def sample_service(service, params):
    """One sample of a service's health URL: {ok, error}."""
    return SAMPLERS["http"](_http_params(service, params))


def _backing_params(entry, params):
    kind = entry["kind"]
    password = params.get("pg_login_password") if kind == "postgres" else params.get("redis_password")
    user = params.get("pg_login_user") if kind == "postgres" else params.get("redis_login_user")
    return dict(host=entry["host"], port=entry["port"], login_user=user, login_password=password,
                login_db=params.get("pg_login_db") or "postgres", sample_timeout=params["sample_timeout"])


def check_backing(params):
    """Level 0: each of the region's database and Redis nodes answers within backing_timeout, else refuse before
    anything starts. Returns one row per node."""
    rows = []
    for entry in params.get("backing") or []:
        rows.append(wait_backing_node(entry, params, rows))
    return rows


def wait_backing_node(entry, params, rows_so_far):
    """Sample one database or Redis node until it answers; a refused login fails at once (a setting to fix)."""
    sampler, sample_params = SAMPLERS[entry["kind"]], _backing_params(entry, params)
    last = {}

    def answers():
        last.update(sampler(sample_params))
        if last.get("error_kind") == "auth":
            raise ModuleFailure("%s %s refused the login: %s (a setting to fix: pg_login_password or "
                                "redis_password)" % (entry["kind"], entry["name"], last["error"]))
        return last["ok"] or None

    try:
        _found, waited = wait_for(answers, float(params["backing_timeout"]), interval=float(params["interval"]),
                                  what="%s %s" % (entry["kind"], entry["name"]))
    except WaitTimeout:
        raise ModuleFailure(
            "region %s's %s %s (%s:%s) does not answer within %ss (backing_timeout): %s; the region's database "
            "and Redis come first (level 0, checked, never started by this runbook): bring them up (or fail "
            "over to this region) and run it again; nothing was started"
            % (params["region"], entry["kind"], entry["name"], entry["host"], entry["port"],
               params["backing_timeout"], last.get("error")), backing=rows_so_far) from None
    return dict(name=entry["name"], kind=entry["kind"], healthy=True, waited=round(waited, 3))


def healthy_now(services, params):
    """The names that answer healthy to one sample, all sampled at once."""
    found = {}
    threads = [threading.Thread(target=lambda s=s: found.__setitem__(s["name"], sample_service(s, params)["ok"]))
               for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [s["name"] for s in services if found.get(s["name"])]


def run_start_command(service):
    """Run the start command; (ok, output excerpt). Its output goes to a file, not a pipe: a command that leaves a
    daemon behind (holding its stdout) must not hang the run."""
    with tempfile.TemporaryFile() as output:
        try:
            # Runs on the controller (the action plugin's worker), where AnsibleModule.run_command does not exist.
            proc = subprocess.run(  # pylint: disable=ansible-bad-function
                service["start_command"], stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                timeout=service["start_timeout"], check=False)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        except OSError as exc:
            return False, "cannot run %s: %s" % (service["start_command"][0], exc)
        output.seek(0)
        text = output.read().decode("utf-8", "replace")[-OUTPUT_EXCERPT:]
    if rc == 0:
        return True, text
    return False, "the start command %s %s; output ends: %r" % (
        " ".join(service["start_command"]), "did not return within start_timeout" if rc == "timeout"
        else "exited %s" % rc, text)


def start_and_gate(service, params, stop, row):
    """Start one service and sample its health until the first healthy sample, its deadline, or `stop` (a
    sibling's gate failed). Fills row: started_at/healthy_at (epoch seconds), verdict, samples, error."""
    interval = float(params["interval"])
    started = time.monotonic()
    deadline = started + service["start_timeout"]
    row.update(action="started", started_at=time.time())
    ok, output = run_start_command(service)
    if not ok:
        row.update(verdict="failed", error=output, elapsed=round(time.monotonic() - started, 3))
        stop.set()
        return
    # When each sample's answer came, in seconds from the start command: the report's proof of the deadline (every
    # answer but the last came before it; the last, the first at or past it, is at most one interval later).
    offsets = []
    while True:
        sample = sample_service(service, params)
        offsets.append(round(time.monotonic() - started, 3))
        if sample["ok"]:
            row.update(verdict="healthy", healthy_at=time.time())
            break
        row["error"] = sample.get("error")
        if stop.is_set():
            row["verdict"] = "unconfirmed"
            break
        left = deadline - time.monotonic()
        if left <= 0:
            row.update(verdict="failed", error="no healthy answer from %s within %ss (start_timeout); last: %s"
                       % (service["health_url"], service["start_timeout"], sample.get("error")))
            stop.set()
            break
        stop.wait(min(interval, left))
    row.update(samples=len(offsets), sample_offsets=offsets, elapsed=round(time.monotonic() - started, 3))
    if row["verdict"] == "healthy":
        row["error"] = None


def run_gates(services, params, rows):
    """Start every service that is not healthy, each as soon as its dependencies answered healthy (one thread per
    gate); after the first failed gate nothing more starts and the running gates are abandoned."""
    stop = threading.Event()
    finished = queue.Queue()
    launched = set(name for name, row in rows.items() if row["verdict"] == "healthy")
    running = 0

    def gate(service):
        try:
            start_and_gate(service, params, stop, rows[service["name"]])
        except Exception as exc:  # a bug in one gate must fail that gate, not leave the run waiting for it
            rows[service["name"]].update(verdict="failed", error="the gate crashed: %r" % exc)
            stop.set()
        finally:
            finished.put(service["name"])

    by_name = dict((service["name"], service) for service in services)
    while True:
        if not stop.is_set():
            healthy = [name for name, row in rows.items() if row["verdict"] == "healthy"]
            for name in order.ready(services, healthy, launched):
                launched.add(name)
                running += 1
                threading.Thread(target=gate, args=(by_name[name],)).start()
        if running == 0:
            return
        finished.get()
        running -= 1


def run(params, check_mode=False, diff=False, warn=None):
    services = order.check_services(params["services"])
    levels = order.levels(services)  # a cycle or an unknown name is refused here, before anything is sampled
    if float(params["interval"]) <= 0 or float(params["sample_timeout"]) <= 0:
        raise ModuleFailure("interval is %s and sample_timeout %s: expected both above 0 (interval, sample_timeout)"
                            % (params["interval"], params["sample_timeout"]))
    backing = check_backing(params)
    healthy = healthy_now(services, params)
    planned = order.plan(services, healthy)
    level_of = dict((name, index + 1) for index, level in enumerate(levels) for name in level)
    rows = dict((s["name"], dict(name=s["name"], level=level_of[s["name"]], depends_on=s["depends_on"],
                                 start_timeout=s["start_timeout"],
                                 action="already_healthy" if s["name"] in healthy else "not_started",
                                 verdict="healthy" if s["name"] in healthy else None, started_at=None,
                                 healthy_at=None, samples=0, elapsed=None, error=None))
                for s in services)
    if not check_mode:
        by_name = dict((service["name"], service) for service in services)
        run_gates([by_name[name] for level in levels for name in level], params, rows)  # level order: stable starts
    return result(params, levels, planned, rows, backing, check_mode)


def result(params, levels, planned, rows, backing, check_mode):
    verdicts = dict((name, row["verdict"]) for name, row in rows.items() if row["verdict"])
    found = order.outcome(levels, verdicts)
    started = [name for level in levels for name in level if rows[name]["action"] == "started"]
    ordered = [rows[name] for level in levels for name in level]
    facts = dict(changed=bool(started), region=params["region"], levels=levels, plan=planned,
                 services=ordered, backing=backing, started=started, healthy=found["healthy"],
                 failed_services=found["failed"], unconfirmed=found["unconfirmed"],
                 not_started=[] if check_mode else found["not_started"],
                 will_start=planned["will_start"], ok=True if check_mode else found["ok"])
    if check_mode:
        facts["changed"] = bool(planned["will_start"])
        facts["msg"] = "region %s: would start %s" % (params["region"], ", ".join(planned["will_start"]) or "nothing")
        return facts
    if not found["ok"]:
        first = next(rows[name] for name in found["failed"] or found["unconfirmed"])
        message = ("region %s: service %s failed its health gate (%s); stopped there: healthy %s; failed %s; "
                   "unconfirmed %s; not started %s" % (params["region"], first["name"], first["error"],
                                                       _names(found["healthy"]), _names(found["failed"]),
                                                       _names(found["unconfirmed"]), _names(found["not_started"])))
        raise ModuleFailure(message, **facts)
    facts["msg"] = "region %s: every service healthy (started %s)" % (params["region"], _names(started))
    return facts


def _names(names):
    return ", ".join(names) if names else "none"
