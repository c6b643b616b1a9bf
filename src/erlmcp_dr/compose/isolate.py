"""The regional failover's isolation of the region left (issue 17, step 4), as built-in steps of the composed run.

Nothing may write to the region being left once the move starts: its database primary is fenced by
database_failover itself; this step does the other two writers' doors, before any promotion:
- `isolate_region`: the region's application instance is stopped (its inventory `app_stop_command`, a list of
  arguments run without a shell) and its Redis primary stops taking writes (`CLIENT PAUSE <ms> WRITE`, Redis's own
  write fence, the one its coordinated FAILOVER uses: it expires by itself, is never persisted by a CONFIG REWRITE,
  and the redis step's FAILOVER still hands the data over). A part that is down is success, never failure:
  "connection refused" is confirmed down; a part that does not answer at all (a vanished host) is counted down
  too when it cannot be stopped either. A part that answers and cannot be fenced (no stop command) refuses the
  step before anything changed.
- `lift_isolation`, its undo (only before the point of no return): starts again only what this step stopped
  (`app_start_command`) and lifts only the pause it set (`CLIENT UNPAUSE`), each verified.
- A write-ahead record: before it stops the application or pauses Redis, the step writes what it is about to do in
  the run's journal (compose/hooks.ActionJournal, compose/journal.py `changes`). A run killed after (or inside) the
  isolation is resumed by a new run that re-runs this step: it finds the application already down, and without the
  record it would call that "down" and its undo would never start it again. With it, the resumed step adopts the
  stop (`state: stopped`, `stopped_by` the killed run), and its undo starts the application again. Redis needs no
  adoption: a paused primary still answers as a primary, so the resumed step pauses it again and lifts its own pause.

The decisions (`app_action`, `redis_action`) are pure and unit-tested; the I/O is below them. Runs in the parent's
process (compose/run.py dispatches here); returns a StepOutcome with an envelope-like {details, end_state, did}.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from erlmcp_dr.compose import failback
from erlmcp_dr.compose.engine import StepOutcome

if TYPE_CHECKING:  # compose/hooks.py imports this module
    from erlmcp_dr.compose.hooks import ActionJournal

HTTP_TIMEOUT = 3.0  # seconds one probe of the application waits for an answer: past it the app is silent
COMMAND_TIMEOUT = 60.0  # seconds the stop or start command gets
SETTLE_TIMEOUT = 30.0  # seconds the application gets to stop answering after its stop command (to answer after start)
POLL_INTERVAL = 0.2
NOTHING_CHANGED = failback.NOTHING_CHANGED

BUILTIN_ACTIONS: Dict[str, Tuple[str, ...]] = {
    "isolate_region": ("region", "app", "redis", "pause_seconds"),
    "lift_isolation": ("region", "app", "redis", "isolated"),
}

# What a probe found. refused: nothing listens (confirmed down); answers: it replied (any HTTP status, any Redis
# reply); silent: no answer within the timeout (a hung process or a vanished host: cannot tell which); auth: Redis
# refused our login (a setting to fix, never "down").
REFUSED, ANSWERS, SILENT, AUTH = "refused", "answers", "silent", "auth"
# The journal's write-ahead states: recorded before the change (a kill inside it leaves them), then the outcome.
STOPPING, PAUSING = "stopping", "pausing"


# ------------------------------------------------------------------ decisions (pure)

def app_action(probe: str, has_stop_command: bool) -> str:
    """down (nothing to do) | stop | unreachable (silent and no way to stop it: counted down) | refuse."""
    if probe == REFUSED:
        return "down"
    if has_stop_command:
        return "stop"
    return "unreachable" if probe == SILENT else "refuse"


def app_after_stop(probe_before: str, command_ok: bool, probe_after: str) -> str:
    """stopped | unreachable | failed: what a stop attempt achieved. A silent app whose stop command could not
    reach it either is the vanished region's case (counted down); an app that still answers is not isolated."""
    if probe_after == ANSWERS:
        return "failed"
    if command_ok:
        return "stopped"
    return "unreachable" if probe_before == SILENT else "failed"


def adopted_stop(previous: Mapping[str, Any], region: str, app_name: str, action: str) -> Optional[str]:
    """The run id of an interrupted run whose isolation stopped (or was stopping) this region's application, when
    the application is not running now (action down or unreachable): the resumed step counts it as stopped by the
    move, so its undo starts it again. None otherwise (nothing recorded, another region or application, or the
    application runs: this step stops it itself)."""
    app = previous.get("app") or {}
    if previous.get("region") != region or app.get("name") != app_name or action not in ("down", "unreachable"):
        return None
    if app.get("state") not in (STOPPING, "stopped"):
        return None
    return str(app.get("stopped_by") or "") or None


def redis_action(probe: str, role: Optional[str]) -> str:
    """down | unreachable | replica (already refuses writes) | pause | refuse (our login was refused)."""
    if probe == REFUSED:
        return "down"
    if probe == SILENT:
        return "unreachable"
    if probe == AUTH:
        return "refuse"
    return "pause" if role == "master" else "replica"


# ------------------------------------------------------------------ the step and its undo

def run_builtin(name: str, arguments: Mapping[str, Any], hosts: Mapping[str, Mapping[str, Mapping[str, Any]]],
                inventory: Optional[Path] = None, journal: Optional[ActionJournal] = None) -> StepOutcome:
    """isolate_region or lift_isolation (the runner every composed runbook's own actions share: compose/hooks.py;
    the inventory's path is not needed here)."""
    app = (hosts.get("app") or {}).get(str(arguments["app"])) or {}
    redis_login = failback._redis_login(hosts.get("redis") or {}, str(arguments["redis"]))
    if name == "isolate_region":
        return isolate(arguments, app, redis_login, journal)
    return lift(arguments, app, redis_login, journal=journal)


def _journal_entry(details: Mapping[str, Any], run_id: str) -> Dict[str, Any]:
    """What the journal keeps of the isolation: per part its name and state, and which run stopped the app."""
    app, redis = details["app"], details["redis"]
    state = "restarted" if app.get("restarted_after_failure") else app["state"]
    stopped_by = app.get("stopped_by") or run_id if state in (STOPPING, "stopped") else None
    return {"region": details["region"], "app": {"name": app["name"], "state": state, "stopped_by": stopped_by},
            "redis": {"name": redis["name"], "state": redis["state"]}}


def isolate(arguments: Mapping[str, Any], app: Mapping[str, Any], redis_login: Mapping[str, Any],
            journal: Optional[ActionJournal] = None) -> StepOutcome:
    region, app_name, redis_name = str(arguments["region"]), str(arguments["app"]), str(arguments["redis"])
    url = str(app.get("app_url") or "")
    stop_command = _command(app.get("app_stop_command"))
    app_probe = probe_app(url)
    redis_probe, role = probe_redis(redis_login)
    actions = {"app": app_action(app_probe, stop_command is not None), "redis": redis_action(redis_probe, role)}
    details: Dict[str, Any] = {
        "region": region,
        "app": {"name": app_name, "url": url, "found": app_probe, "action": actions["app"], "state": None},
        "redis": {"name": redis_name, "found": redis_probe, "role": role, "action": actions["redis"], "state": None,
                  "pause_seconds": None}}
    # Preconditions before any change: a part that answers and cannot be fenced refuses the step, nothing touched.
    problems = []
    if actions["app"] == "refuse":
        problems.append(f"region {region}'s application {app_name} answers at {url} and the inventory declares no "
                        f"app_stop_command for it: expected a list of arguments that stops it (e.g. [systemctl, "
                        "stop, erlmcp]) so nothing writes to the region left; nothing was changed")
    if actions["redis"] == "refuse":
        problems.append(f"region {region}'s Redis {redis_name} refused the login (redis_password): its writes "
                        "cannot be stopped; nothing was changed")
    if problems:
        return _outcome(False, details, [], problems, "")
    did: List[str] = []
    run_id = journal.run_id if journal is not None else ""
    record = journal.record if journal is not None else (lambda entry: None)
    stopped_by = adopted_stop(journal.previous if journal is not None else {}, region, app_name, actions["app"])
    if stopped_by is not None:  # a killed run stopped it: this move's undo starts it again
        details["app"].update(state="stopped", stopped_by=stopped_by)
    if actions["app"] == "stop":
        details["app"]["state"] = STOPPING
        record(_journal_entry(details, run_id))  # before the stop command: a kill inside it leaves this
        details["app"].update(_stop_app(stop_command or [], url, app_probe))
        if details["app"]["state"] == "stopped":
            did.append(f"stopped region {region}'s application {app_name}")
        elif details["app"]["state"] == "failed":
            problems.append(f"region {region}'s application {app_name} could not be stopped: "
                            f"{details['app']['error']}")
    elif stopped_by is None:
        details["app"]["state"] = actions["app"]
    if actions["redis"] == "pause" and not problems:
        seconds = float(arguments.get("pause_seconds") or 300)
        details["redis"]["state"] = PAUSING
        record(_journal_entry(details, run_id))  # before CLIENT PAUSE
        error = pause_writes(redis_login, seconds)
        details["redis"].update(state="paused" if error is None else "failed", pause_seconds=seconds, error=error)
        if error is None:
            did.append(f"paused the writes of region {region}'s Redis {redis_name} (CLIENT PAUSE WRITE, "
                       f"{seconds:g} s at most)")
        else:
            problems.append(f"region {region}'s Redis {redis_name} could not be made to refuse writes: {error}")
            if details["app"]["state"] == "stopped":  # a failed step's undo never runs: it lifts its own change
                undone = lift(arguments, app, redis_login, {"app": {"state": "stopped"}})
                details["app"]["restarted_after_failure"] = undone.ok
                problems.append(undone.message)
    elif actions["redis"] != "pause":
        details["redis"]["state"] = actions["redis"]
    record(_journal_entry(details, run_id))  # the outcome
    adopted = f" (stopped by the interrupted run {stopped_by})" if stopped_by is not None else ""
    return _outcome(not problems, details, did, problems, f"region {region} isolated: application "
                    f"{details['app']['state']}{adopted}, Redis {details['redis']['state']}")


def lift(arguments: Mapping[str, Any], app: Mapping[str, Any], redis_login: Mapping[str, Any],
         isolated: Optional[Mapping[str, Any]] = None, journal: Optional[ActionJournal] = None) -> StepOutcome:
    """Undo: only what isolate_region did (its details: the argument `isolated`, an application an interrupted run
    stopped included), each verified; the journal's entry then says what is no longer stopped or paused."""
    region = str(arguments["region"])
    isolated = isolated if isolated is not None else (arguments.get("isolated") or {})
    app_done = (isolated.get("app") or {}).get("state")
    redis_done = (isolated.get("redis") or {}).get("state")
    details: Dict[str, Any] = {"region": region, "app": {"name": str(arguments["app"]), "restarted": False},
                               "redis": {"name": str(arguments["redis"]), "unpaused": False}}
    did: List[str] = []
    problems: List[str] = []
    if app_done == "stopped":
        start = _command(app.get("app_start_command"))
        url = str(app.get("app_url") or "")
        if start is None:
            problems.append(f"region {region}'s application was stopped by the isolation, and the inventory declares "
                            "no app_start_command to start it again: start it by hand")
        else:
            ok, output = run_command(start)
            answered = ok and _wait(lambda: probe_app(url) == ANSWERS, SETTLE_TIMEOUT)
            details["app"].update(restarted=answered, output=output)
            if answered:
                did.append(f"started region {region}'s application {arguments['app']} again")
            else:
                problems.append(f"region {region}'s application did not answer at {url} after its start command: "
                                f"{output}")
    if redis_done == "paused":
        error = unpause_writes(redis_login)
        details["redis"].update(unpaused=error is None, error=error)
        if error is None:
            did.append(f"lifted the write pause of region {region}'s Redis {arguments['redis']}")
        else:
            problems.append(f"the write pause of region {region}'s Redis could not be lifted ({error}); it "
                            "expires by itself (pause_seconds) or with a restart")
    if journal is not None and journal.previous:
        entry = {**journal.previous, "app": dict(journal.previous.get("app") or {}),
                 "redis": dict(journal.previous.get("redis") or {})}
        if details["app"]["restarted"]:
            entry["app"].update(state="restarted", stopped_by=None)
        if details["redis"]["unpaused"]:
            entry["redis"]["state"] = "unpaused"
        journal.record(entry)
    return _outcome(not problems, details, did, problems,
                    "; ".join(did) or f"region {region}: the isolation had stopped nothing, nothing to undo")


def _outcome(ok: bool, details: Dict[str, Any], did: List[str], problems: List[str], success: str) -> StepOutcome:
    return StepOutcome(ok=ok, summary={"details": details, "end_state": {"ok": ok, "problems": problems},
                                       "did": did or [NOTHING_CHANGED]},
                       changed=bool(did), message=success if ok else "; ".join(problems))


def _command(value: Any) -> Optional[List[str]]:
    if isinstance(value, (list, tuple)) and value and all(isinstance(word, str) and word for word in value):
        return [str(word) for word in value]
    return None


# ------------------------------------------------------------------ the application

def probe_app(url: str, timeout: float = HTTP_TIMEOUT) -> str:
    """refused | answers | silent: one GET <url>/health (any HTTP status is an answer: the process runs)."""
    if not url:
        return SILENT
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout):  # noqa: S310 - the inventory's URL
            return ANSWERS
    except urllib.error.HTTPError:
        return ANSWERS
    except urllib.error.URLError as exc:
        return REFUSED if isinstance(exc.reason, ConnectionRefusedError) else SILENT
    except ConnectionRefusedError:
        return REFUSED
    except (OSError, ValueError):  # a timeout (TimeoutError is an OSError), an unroutable host
        return SILENT


def run_command(command: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> Tuple[bool, str]:
    """(ok, the end of its output). No shell. Its output goes to a file, not a pipe (service_recovery's rule): a
    start command that leaves a daemon holding its stdout must not hang the run."""
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.run(list(command), stdin=subprocess.DEVNULL, stdout=output,  # noqa: S603 - a list
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False, f"{' '.join(command)} did not return within {timeout:g} s"
        except OSError as exc:
            return False, f"cannot run {command[0]}: {exc}"
        output.seek(0)
        text = output.read().decode("utf-8", "replace").strip()[-400:]
    if proc.returncode != 0:
        return False, f"{' '.join(command)} exited {proc.returncode}: {text}"
    return True, text


def _stop_app(command: List[str], url: str, before: str) -> Dict[str, Any]:
    ok, output = run_command(command)
    if ok:  # verified from outside: the application no longer answers
        _wait(lambda: probe_app(url) != ANSWERS, SETTLE_TIMEOUT)
    after = probe_app(url)
    state = app_after_stop(before, ok, after)
    error = None
    if state == "failed":
        error = output if not ok else f"it still answers at {url} after {' '.join(command)}"
    return {"state": state, "after": after, "output": output, "error": error}


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


# ------------------------------------------------------------------ Redis

def probe_redis(login: Mapping[str, Any]) -> Tuple[str, Optional[str]]:
    """(refused | answers | silent | auth, its role when it answers)."""
    import redis

    try:
        client = failback._redis_client(login)
        with client:
            return ANSWERS, str(client.info("replication").get("role"))
    except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
        return AUTH, None
    except redis.ResponseError as exc:
        return (AUTH, None) if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) else (ANSWERS, None)
    except redis.TimeoutError:
        return SILENT, None
    except (redis.ConnectionError, OSError) as exc:
        return (REFUSED, None) if "refused" in str(exc).lower() else (SILENT, None)


def pause_writes(login: Mapping[str, Any], seconds: float) -> Optional[str]:
    """CLIENT PAUSE <ms> WRITE on the node; None, or why it failed."""
    return _redis_command(login, "CLIENT", "PAUSE", int(seconds * 1000), "WRITE")


def unpause_writes(login: Mapping[str, Any]) -> Optional[str]:
    return _redis_command(login, "CLIENT", "UNPAUSE")


def _redis_command(login: Mapping[str, Any], *words: Any) -> Optional[str]:
    import redis

    try:
        client = failback._redis_client(login)
        with client:
            client.execute_command(*words)
    except (redis.RedisError, OSError) as exc:
        return f"{' '.join(map(str, words))}: {exc}"
    return None
