"""failback's built-in steps (the way back to a region that failed): the grace gate and the standby catch-up.

- `grace_gate`: samples the old region's health (its application's GET /health answers 200, its Redis node answers
  PING) every `interval` seconds for at most `wait` seconds, adds each sample to the region's history file (kept
  between runs under the state home, 0600) and asks grace.decide whether the region has been healthy without a
  break for the grace period. It stops sampling as soon as the gate opens, or as soon as the grace could not be
  reached within `wait` (a failed sample, or more time left than the wait allows): refused then, saying how long is
  left, with nothing changed.
- `standby_caught_up`: reads the current primary's WAL position once, then waits until the rejoined standby has
  replayed up to it (minus `max_lag_bytes`): the standby holds everything committed before the check began.

- `database_position`: which of the two regions' database nodes takes writes. It names the node database_rejoin
  must bring back (the old region's), or none when the old region's node already is the primary (a re-run after
  a completed failback: database_rejoin then only checks that every member streams). Two writers are refused.
  No writer at all is refused too, except the one state a failback leaves itself: killed inside its database
  handover, between the fence of the current primary and the promotion (the run resumed had entered that step,
  the current primary does not answer, the old region's node is in recovery following it and no other member has
  received more WAL than it). That is "a handover under way", which the same command finishes: `stand_in` then
  answers for the rejoin and the catch-up (read-only checks that the state still holds; the standby already
  follows the fenced primary) and the database step's database_switchover promotes the node once it has replayed
  the fenced primary's final WAL position (it never promotes a node that is behind).
- `redis_replica_synced`: waits until the old region's Redis node replicates from the current primary with its
  link up and has reached the primary's offset read when the check began. Read only: a node that came back as a
  primary of its own is refused, naming the redis_failover command that makes it a replica.

All run in the parent's process (compose/run.py dispatches to `run_builtin`), read only, and return a StepOutcome
whose summary is an envelope-like {details, end_state, did}.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from erlmcp_dr import paths
from erlmcp_dr.compose import grace
from erlmcp_dr.compose.engine import StepOutcome

HTTP_TIMEOUT = 3.0
REDIS_TIMEOUT = 2.0
PG_CONNECT_TIMEOUT = 3
NOTHING_CHANGED = "nothing was changed"

BUILTIN_ACTIONS: Dict[str, Tuple[str, ...]] = {
    "grace_gate": ("region", "app_url", "redis", "grace_seconds", "interval", "wait", "max_gap", "resuming"),
    "database_position": ("back_to", "serving", "resuming"),
    "standby_caught_up": ("standby", "primary", "max_lag_bytes", "timeout"),
    "redis_replica_synced": ("replica", "primary", "timeout"),
}


def run_builtin(name: str, arguments: Mapping[str, Any], hosts: Mapping[str, Mapping[str, Mapping[str, Any]]],
                inventory: Path) -> StepOutcome:
    if name == "grace_gate":
        if arguments.get("resuming"):
            return grace_already_passed(str(arguments["region"]))
        redis = (hosts.get("redis") or {}).get(str(arguments["redis"])) or {}
        arguments = dict(arguments, redis_host=redis.get("redis_host") or arguments["redis"],
                         redis_port=int(redis.get("redis_port") or 6379))
        return grace_gate(arguments, history_file(inventory, arguments))
    if name == "database_position":
        return database_position(arguments, hosts.get("postgres") or {})
    if name == "redis_replica_synced":
        return redis_replica_synced(arguments, hosts.get("redis") or {})
    return standby_caught_up(arguments, hosts.get("postgres") or {})


# ------------------------------------------------------------------ the grace gate

def history_file(inventory: Path, arguments: Mapping[str, Any]) -> Path:
    """One history per inventory, region and application URL: another lab's region a is another region."""
    identity = json.dumps([str(Path(inventory).resolve()), arguments.get("region"), arguments.get("app_url")])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return paths.state_home() / "grace" / f"{arguments.get('region')}-{digest}.json"


def grace_gate(arguments: Mapping[str, Any], history: Path, clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep,
               probe: Optional[Callable[[Mapping[str, Any]], grace.Sample]] = None) -> StepOutcome:
    region = str(arguments["region"])
    grace_seconds, interval = float(arguments["grace_seconds"]), float(arguments["interval"])
    wait, max_gap = float(arguments["wait"]), float(arguments["max_gap"])
    probe = probe or sample_region
    samples = read_history(history)
    taken: List[grace.Sample] = []
    started = clock()
    while True:
        sample = probe(arguments)
        taken.append(sample)
        samples = grace.kept([*samples, sample], grace_seconds, max_gap)
        write_history(history, samples)
        verdict = grace.decide(samples, clock(), grace_seconds, max_gap)
        left_in_run = started + wait - clock()
        if verdict.open or verdict.remaining > left_in_run or left_in_run < interval:
            break
        sleep(interval)
    details = {"region": region, "history": str(history), "samples_this_run": len(taken),
               "failed_this_run": [s.to_dict() for s in taken if not s.ok][-5:], **verdict.to_dict()}
    if verdict.open:
        message = f"region {region}: {verdict.reason}"
        return StepOutcome(ok=True, summary={"details": details, "end_state": {"ok": True, "problems": []},
                                             "did": [NOTHING_CHANGED]}, message=message)
    message = (f"the grace gate is closed: region {region} {verdict.reason.replace('healthy', 'has been healthy', 1)}"
               if verdict.healthy_since is not None else f"the grace gate is closed for region {region}: "
               f"{verdict.reason}; {verdict.remaining:.1f} s of the {grace_seconds:g} s grace period (grace_seconds) "
               "left once it is healthy")
    message += (f". Nothing was changed. Run failback again later (this run's {len(taken)} sample(s) are kept in "
                f"{history}), or give one run a longer grace_wait (it was {wait:g} s)")
    return StepOutcome(ok=False, summary={"details": details, "end_state": {"ok": False, "problems": [message]},
                                          "did": [NOTHING_CHANGED]}, message=message)


def grace_already_passed(region: str) -> StepOutcome:
    """A run that resumes one which had entered the database handover: the gate was open when that run started, and
    past the point of no return the move only rolls forward. Asking the region's health again could never open it
    there: killed inside the handover, no database takes writes, so the old region's application is degraded until
    the move is finished."""
    message = (f"region {region}: the failback this run resumes had opened the grace gate and entered the database "
               "handover; past the point of no return the move is finished, not gated again")
    details = {"region": region, "open": True, "resumed_past_point_of_no_return": True, "reason": message}
    return StepOutcome(ok=True, summary={"details": details, "end_state": {"ok": True, "problems": []},
                                         "did": [NOTHING_CHANGED]}, message=message)


def read_history(path: Path) -> List[grace.Sample]:
    try:
        return grace.samples_from(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return []  # no history (or an unreadable one) proves no health: the timer starts now


def write_history(path: Path, samples: List[grace.Sample]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.write_private_atomic(path, json.dumps([sample.to_dict() for sample in samples]))


def sample_region(arguments: Mapping[str, Any]) -> grace.Sample:
    """One health sample of the region: its application's /health and its Redis node's PING, both must answer."""
    problems = []
    app_problem = _app_problem(str(arguments["app_url"]))
    if app_problem:
        problems.append(app_problem)
    redis_problem = _redis_problem(str(arguments["redis_host"]), int(arguments["redis_port"]))
    if redis_problem:
        problems.append(redis_problem)
    return grace.Sample(at=time.time(), ok=not problems, why="; ".join(problems))


def _app_problem(url: str) -> str:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return "" if response.status == 200 else f"application {url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"application {url}: HTTP {exc.code} {exc.read(300).decode(errors='replace')}"
    except (OSError, ValueError) as exc:
        return f"application {url}: {exc}"


def _redis_problem(host: str, port: int) -> str:
    """A Redis node answers when it replies to PING at all: +PONG, or -NOAUTH from a node that wants a password
    (the gate asks whether the node is up and serving its protocol; its replication is the resync step's)."""
    try:
        with socket.create_connection((host, port), timeout=REDIS_TIMEOUT) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
    except OSError as exc:
        return f"Redis {host}:{port}: {exc}"
    if reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH"):
        return ""
    return f"Redis {host}:{port}: unexpected reply {reply[:40]!r}"


# ------------------------------------------------------------------ the standby's catch-up

def lsn_bytes(lsn: str) -> int:
    """A PostgreSQL LSN ('16/B374D848') as a byte position."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def standby_caught_up(arguments: Mapping[str, Any], postgres_hosts: Mapping[str, Mapping[str, Any]],
                      connect: Optional[Callable[[Mapping[str, Any]], Any]] = None) -> StepOutcome:
    standby, primary = str(arguments["standby"]), str(arguments["primary"])
    budget, timeout = int(arguments["max_lag_bytes"]), float(arguments["timeout"])
    connect = connect or _connect
    seen: Dict[str, Any] = {"primary": primary, "standby": standby, "max_lag_bytes": budget}
    try:
        with connect(_login(postgres_hosts, primary)) as conn:
            row = conn.execute("SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL "
                               "ELSE pg_current_wal_lsn()::text END").fetchone()
    except Exception as exc:  # the current primary must answer: nothing to catch up with otherwise
        return _caught_up_failure(standby, primary, f"the primary {primary} does not answer: {_first_line(exc)}", seen)
    if row[0]:  # a re-run after the move back: the old primary follows the node that was to catch up
        return _already_back(standby, primary, postgres_hosts, connect, seen)
    target = seen["primary_lsn"] = str(row[1])
    started = time.monotonic()
    while True:
        try:
            with connect(_login(postgres_hosts, standby)) as conn:
                replayed = conn.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text").fetchone()
            in_recovery, replay_lsn = bool(replayed[0]), replayed[1]
            seen.update(in_recovery=in_recovery, replay_lsn=replay_lsn, error=None)
            if not in_recovery:
                return _already_back(standby, primary, postgres_hosts, connect, seen)
            if replay_lsn is not None:
                seen["lag_bytes"] = max(0, lsn_bytes(target) - lsn_bytes(str(replay_lsn)))
                if seen["lag_bytes"] <= budget:
                    break
        except Exception as exc:  # a standby restarting after its rewind: try again until the deadline
            seen["error"] = _first_line(exc)
        if time.monotonic() - started >= timeout:
            last = seen.get("replay_lsn") or seen.get("error")
            return _caught_up_failure(standby, primary, f"{standby} did not replay up to {target} within "
                                      f"{timeout:g} s (catchup_timeout): last seen {last}", seen)
        time.sleep(0.1)
    seen["waited_seconds"] = round(time.monotonic() - started, 3)
    return StepOutcome(ok=True, summary={"details": seen, "end_state": {"ok": True, "problems": []},
                                         "did": [NOTHING_CHANGED]},
                       message=f"{standby} replayed {primary}'s WAL up to {target} (lag {seen['lag_bytes']} bytes)")


def database_position(arguments: Mapping[str, Any], postgres_hosts: Mapping[str, Mapping[str, Any]],
                      connect: Optional[Callable[[Mapping[str, Any]], Any]] = None) -> StepOutcome:
    back_to, serving = str(arguments["back_to"]), str(arguments["serving"])
    connect = connect or _connect
    writable: Dict[str, Optional[bool]] = {}
    errors: Dict[str, str] = {}
    for name in (back_to, serving):
        try:
            with connect(_login(postgres_hosts, name)) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone()
            writable[name] = (not row[0]) and row[1] == "off"
        except Exception as exc:  # the old region's node is expected to be down before its rejoin
            writable[name], errors[name] = None, _first_line(exc)
    details: Dict[str, Any] = {"writable": writable, "errors": errors}
    if writable[back_to] and writable[serving]:
        message = (f"{back_to} and {serving} both take writes: a split brain the failback does not resolve. Make "
                   f"{back_to} a standby first (runbook run database_rejoin -e node={back_to} -e allow_stop_primary="
                   "true, which may give up what it wrote since). Nothing was changed")
        return _refused(details, message)
    if writable[back_to]:
        details.update(primary=back_to, rejoin_node=None)
        message = f"{back_to} already is the primary: the database moved back already, every member is checked"
    elif writable[serving]:
        details.update(primary=serving, rejoin_node=back_to)
        message = f"{serving} is the primary; {back_to} is to rejoin it as a standby"
    else:
        found = "; ".join(errors.values()) or "both in recovery or read-only"
        handover, why_not = handover_under_way(back_to, serving, bool(arguments.get("resuming")), postgres_hosts,
                                               connect)
        details["handover"] = handover
        if why_not:
            return _refused(details, f"neither {serving} nor {back_to} takes writes ({found}): there is no primary "
                                     f"to fail back from, and it is not a failback's own handover under way "
                                     f"({why_not}). Nothing was changed")
        details.update(primary=None, rejoin_node=None, handover_under_way=True, fenced=serving, candidate=back_to)
        message = (f"a handover under way: the failback this run resumes fenced {serving} and was killed before it "
                   f"promoted {back_to}, which follows {serving} and has received at least as much WAL as any other "
                   f"member; the database step finishes it")
    return StepOutcome(ok=True, summary={"details": details, "end_state": {"ok": True, "problems": []},
                                         "did": [NOTHING_CHANGED]}, message=message)


# ------------------------------------------------------------------ a handover under way

HANDOVER_STEPS = {"rejoin": "database_rejoin", "caught_up": "standby_caught_up"}
_STANDBY_SQL = ("SELECT pg_is_in_recovery(), current_setting('primary_conninfo', true), "
                "pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text")


def handover_under_way(back_to: str, serving: str, resuming: bool, postgres_hosts: Mapping[str, Mapping[str, Any]],
                       connect: Callable[[Mapping[str, Any]], Any]) -> Tuple[Dict[str, Any], str]:
    """What a failback killed between its fence of `serving` and its promotion of `back_to` leaves, and whether it is
    that: (what was seen, '' when it is; else why not). Called when no node of the two takes writes.

    The fence is the move's own only when the run resumed had entered the handover (`resuming`: the journal says
    so); `serving` down for another reason (its region failing again) is not a state to promote from. `back_to`
    must follow `serving` (its primary_conninfo) and no other member may have received more WAL than it: promoting
    it then loses nothing another member has, and the switchover still waits for `serving`'s final position."""
    seen: Dict[str, Any] = {"resuming": resuming}
    if not resuming:
        return seen, ("the run resumed, if any, had not entered the database handover: only a failback's own fence "
                      "is continued from")
    try:
        with connect(_login(postgres_hosts, serving)) as conn:
            conn.execute("SELECT 1").fetchone()
        return seen, f"{serving} answers"
    except Exception as exc:  # down: what the fence (a clean shutdown) leaves
        seen["fenced_error"] = _first_line(exc)
    positions: Dict[str, int] = {}
    for name in [back_to, *sorted(set(postgres_hosts) - {back_to, serving})]:
        try:
            with connect(_login(postgres_hosts, name)) as conn:
                in_recovery, conninfo, received, replayed = conn.execute(_STANDBY_SQL).fetchone()
        except Exception as exc:
            if name == back_to:
                return seen, f"{back_to} does not answer: {_first_line(exc)}"
            continue  # a member that is down has received nothing that could be lost
        if not in_recovery:
            return seen, f"{name} takes writes"
        if name == back_to:
            seen["candidate_follows"] = upstream = _endpoint_of(conninfo)
            if upstream != _endpoint_of_host(postgres_hosts, serving):
                return seen, f"{back_to} follows {upstream or 'no primary_conninfo it can show'}, not {serving}"
        positions[name] = max(lsn_bytes(lsn) for lsn in (received, replayed, "0/0") if lsn)
    seen["positions"] = positions
    ahead = sorted(name for name, position in positions.items() if position > positions[back_to])
    if ahead:
        return seen, (f"{', '.join(ahead)} received more WAL than {back_to}: promoting {back_to} would lose what "
                      "only they have")
    return seen, ""


def _endpoint_of(conninfo: Optional[str]) -> Optional[str]:
    if not conninfo:
        return None
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:  # not a conninfo this side can read: it names no primary it can compare
        return None
    return f"{parts.get('host') or parts.get('hostaddr')}:{parts.get('port') or 5432}"


def _endpoint_of_host(postgres_hosts: Mapping[str, Mapping[str, Any]], name: str) -> str:
    login = _login(postgres_hosts, name)
    return f"{login['host']}:{login['port']}"


def stand_in(step_id: str, arguments: Mapping[str, Any], verified: Mapping[str, Mapping[str, Any]],
             hosts: Mapping[str, Mapping[str, Mapping[str, Any]]],
             connect: Optional[Callable[[Mapping[str, Any]], Any]] = None) -> Optional[StepOutcome]:
    """With a handover under way (the position step said so), the rejoin and the catch-up belong to the switchover
    that finishes it: the old region's node already follows the fenced primary, and database_switchover makes it
    replay that primary's final position before it promotes it. Their outcome then is this read-only check that
    the state still holds; None for every other step and state (the step runs as written)."""
    position = (verified.get("position") or {}).get("details") or {}
    if step_id not in HANDOVER_STEPS or not position.get("handover_under_way"):
        return None
    candidate, fenced = str(position["candidate"]), str(position["fenced"])
    postgres_hosts = hosts.get("postgres") or {}
    seen, why_not = handover_under_way(candidate, fenced, True, postgres_hosts, connect or _connect)
    details: Dict[str, Any] = {"handover_under_way": True, "stands_in_for": HANDOVER_STEPS[step_id],
                               "candidate": candidate, "fenced": fenced, "seen": seen, "methods": [],
                               "copied_bytes": {}}
    if why_not:
        return _refused(details, f"the handover under way changed since the position step: {why_not}. Nothing was "
                                 "changed by this step")
    return StepOutcome(ok=True, summary={"details": details, "end_state": {"ok": True, "problems": []},
                                         "did": [NOTHING_CHANGED]},
                       message=f"{candidate} follows {fenced}, which this failback's own fence stopped: the database "
                               f"step's switchover has {candidate} replay {fenced}'s final WAL position, then "
                               "promotes it")


def _refused(details: Dict[str, Any], message: str) -> StepOutcome:
    return StepOutcome(ok=False, summary={"details": details, "end_state": {"ok": False, "problems": [message]},
                                          "did": [NOTHING_CHANGED]}, message=message)


def _already_back(standby: str, primary: str, postgres_hosts: Mapping[str, Mapping[str, Any]],
                  connect: Callable[[Mapping[str, Any]], Any], seen: Dict[str, Any]) -> StepOutcome:
    """A completed failback (its re-run) when the standby takes writes and the node it was to follow is in recovery;
    anything else (two writers, no writer) is refused."""
    try:
        with connect(_login(postgres_hosts, primary)) as conn:
            primary_in_recovery = bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
        with connect(_login(postgres_hosts, standby)) as conn:
            standby_in_recovery = bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
    except Exception as exc:
        return _caught_up_failure(standby, primary, f"{standby} or {primary} does not answer ({_first_line(exc)})",
                                  seen)
    if primary_in_recovery == standby_in_recovery:
        return _caught_up_failure(standby, primary, f"{standby} and {primary} both "
                                  f"{'are in recovery' if primary_in_recovery else 'take writes'}", seen)
    seen.update(moved_back=True, lag_bytes=0)
    return StepOutcome(ok=True, summary={"details": seen, "end_state": {"ok": True, "problems": []},
                                         "did": [NOTHING_CHANGED]},
                       message=f"{standby} already is the primary and {primary} a standby: the database moved back")


def _caught_up_failure(standby: str, primary: str, why: str, seen: Dict[str, Any]) -> StepOutcome:
    message = f"{standby} has not caught up with {primary}: {why}. Nothing was changed by this step"
    return StepOutcome(ok=False, summary={"details": seen, "end_state": {"ok": False, "problems": [message]},
                                          "did": [NOTHING_CHANGED]}, message=message)


def _login(hosts: Mapping[str, Mapping[str, Any]], name: str) -> Dict[str, Any]:
    found = hosts.get(name) or {}
    return {"host": found.get("pg_host") or name, "port": int(found.get("pg_port") or 5432),
            "user": found.get("pg_login_user"), "password": found.get("pg_login_password"),
            "dbname": found.get("pg_login_db") or "postgres", "connect_timeout": PG_CONNECT_TIMEOUT}


def _connect(params: Mapping[str, Any]) -> Any:
    import psycopg

    return psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------ the old region's Redis

def redis_replica_synced(arguments: Mapping[str, Any], redis_hosts: Mapping[str, Mapping[str, Any]],
                         client_of: Optional[Callable[[Mapping[str, Any]], Any]] = None) -> StepOutcome:
    replica, primary = str(arguments["replica"]), str(arguments["primary"])
    timeout = float(arguments["timeout"])
    client_of = client_of or _redis_client
    replica_where, primary_where = _redis_login(redis_hosts, replica), _redis_login(redis_hosts, primary)
    details: Dict[str, Any] = {"replica": replica, "primary": primary}
    remedy = (f"make it a replica of {primary} first (runbook run redis_failover -e candidate={primary} -e "
              f"away_from={replica}). Nothing was changed")
    started = time.monotonic()
    target: Optional[int] = None
    while True:
        try:
            replica_info = _replication(client_of, replica_where)
            details.update(role=replica_info.get("role"), error=None)
            if replica_info.get("role") == "master":
                primary_info = _replication(client_of, primary_where)
                if primary_info.get("role") != "master" and _replicates_from(primary_info, replica_where):
                    details["moved_back"] = True
                    return StepOutcome(ok=True, summary={"details": details, "end_state": {"ok": True, "problems": []},
                                                         "did": [NOTHING_CHANGED]},
                                       message=f"{replica} already is the Redis primary and {primary} replicates "
                                               "from it: Redis moved back already")
                return _refused(details, f"{replica} runs as a Redis primary of its own beside {primary}: {remedy}")
            if not _replicates_from(replica_info, primary_where):
                return _refused(details, f"{replica} replicates from {replica_info.get('master_host')}:"
                                         f"{replica_info.get('master_port')}, not from {primary}: {remedy}")
            if target is None:
                target = int(_replication(client_of, primary_where).get("master_repl_offset") or 0)
                details["primary_offset"] = target
            offset = int(replica_info.get("slave_repl_offset") or 0)
            details.update(link=replica_info.get("master_link_status"), offset=offset)
            if replica_info.get("master_link_status") == "up" and offset >= target:
                break
        except Exception as exc:  # a node restarting or loading its dataset: ask again until the deadline
            details["error"] = _first_line(exc)
        if time.monotonic() - started >= timeout:
            return _refused(details, f"{replica} did not resync from {primary} within {timeout:g} s (catchup_timeout):"
                                     f" link {details.get('link')}, offset {details.get('offset')} of {target}, "
                                     f"{details.get('error') or ''}".rstrip(", ") + ". Nothing was changed")
        time.sleep(0.1)
    details["waited_seconds"] = round(time.monotonic() - started, 3)
    return StepOutcome(ok=True, summary={"details": details, "end_state": {"ok": True, "problems": []},
                                         "did": [NOTHING_CHANGED]},
                       message=f"{replica} replicates from {primary} with its link up, at offset {details['offset']}")


def _replication(client_of: Callable[[Mapping[str, Any]], Any], where: Mapping[str, Any]) -> Dict[str, Any]:
    with client_of(where) as client:
        return dict(client.info("replication"))


def _replicates_from(info: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return (info.get("role") == "slave" and str(info.get("master_host")) == str(where["host"])
            and int(info.get("master_port") or 0) == int(where["port"]))


def _redis_login(hosts: Mapping[str, Mapping[str, Any]], name: str) -> Dict[str, Any]:
    found = hosts.get(name) or {}
    return {"host": found.get("redis_host") or name, "port": int(found.get("redis_port") or 6379),
            "password": found.get("redis_password")}


def _redis_client(where: Mapping[str, Any]) -> Any:
    import redis

    return redis.Redis(host=where["host"], port=where["port"], password=where.get("password"),
                       socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT, decode_responses=True)


# ------------------------------------------------------------------ the parent's summary

def summary_details(records: List[Any]) -> Dict[str, Any]:
    """What the failback's own summary adds beside the engine's outcome: the grace verdict and how the old region's
    database was rejoined (rewind or re-clone) and how many bytes that copied."""
    found: Dict[str, Any] = {}
    for record in records:
        details = (record.summary or {}).get("details") or {}
        if record.phase != "forward":
            continue
        if record.step == "grace":
            found["grace"] = {key: details.get(key) for key in ("open", "healthy_since", "healthy_for", "remaining",
                                                                 "grace_seconds", "reason")}
        elif record.step == "rejoin":
            methods = [method for method in details.get("methods") or [] if method]
            idle = ("none (a handover under way: the switchover rejoins)" if details.get("handover_under_way")
                    else "none (already streaming)")
            found["rejoin"] = {"node": record.arguments.get("node"), "method": methods[0] if methods else idle,
                               "copied_bytes": sum(value for value in (details.get("copied_bytes") or {}).values()
                                                  if isinstance(value, int))}
    return found
