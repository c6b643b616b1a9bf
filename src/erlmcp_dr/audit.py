"""The audit trail: who ran what, when, what it changed and how it ended, in one hash-chained JSONL file.

<state_home>/audit/audit.jsonl (0600, in a 0700 folder; ERLMCP_DR_HOME moves it) gets one line per
record, appended and never rewritten:

- `run_start`: the runbook, its parameters (no_log ones masked), mode (check or live), inventory, limit;
- `step`: a live run's task result with changed=true: task, action, host (`target`), result, the facts the
  module returned and its before/after where it returns a diff (scrubbed of the run's secrets);
- `run_end`: status, rc, duration, the failing step, the hosts the run changed (`targets`).

Every record names the run (`run_id`), the OS user and the `--operator` given (`who`), the controller host
and the time (UTC), and carries `seq` (1, 2, ... over the whole file), `prev` (the `hash` of the record
before it, GENESIS for the first) and `hash` (sha256 of the record's canonical JSON without `hash`).
`verify()` walks the chain and names each record that was edited, deleted, inserted or moved.

The file alone cannot show what was cut from its end, or a chain recomputed with fresh hashes, so its head is
anchored outside it (docs/reports.md, "The audit trail"):
- every append also writes the new head (seq, hash) to <lock folder>/audit-head-<digest of the path>.json
  (ERLMCP_DR_LOCK_DIR, else the user's state folder: another folder than ERLMCP_DR_HOME), under the same flock;
- each run's result.json carries `audit_head`, the head after the run's last record.
`check_anchors()` compares the file with every anchor found and names deleted tail records, an emptied or
missing file and a rewritten chain. With a key (ERLMCP_DR_AUDIT_KEY_FILE: a file the operator points to, e.g.
written by vault; or ERLMCP_DR_AUDIT_KEY), each record also carries `mac`, HMAC-SHA256 over its content: a
chain recomputed without the key no longer matches it. Without a key, a chain recomputed from scratch together
with every anchor cannot be told from the real one; verify says so.

An append takes an exclusive flock on the file (non-blocking attempts polled with a deadline), reads the
last record, writes one line with O_APPEND and fsyncs it: records of concurrent runs interleave, whole.
A failed append is logged, never fails the run it records (a recovery does not stop for its paper trail).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from erlmcp_dr import paths

log = logging.getLogger(__name__)

AUDIT_DIR = "audit"
AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64  # the `prev` of the first record
LOCK_TIMEOUT = 30.0  # seconds an append waits for another process's append (each holds it for milliseconds)
KINDS = ("run_start", "step", "run_end")
_TAIL_CHUNK = 8192
KEY_FILE_ENV = "ERLMCP_DR_AUDIT_KEY_FILE"  # a file holding the HMAC key (0600 or stricter)
KEY_ENV = "ERLMCP_DR_AUDIT_KEY"  # the key itself, when no file is given
ANCHOR_PREFIX = "audit-head-"
MIN_KEY_BYTES = 16


class AuditKeyError(ValueError):
    """The audit key's file is unreadable, readable by others, or the key is too short."""


def audit_path() -> Path:
    """<state_home>/audit/audit.jsonl."""
    return paths.state_home() / AUDIT_DIR / AUDIT_FILE


def os_user() -> str:
    """The effective user's name (its passwd entry: not $USER, which anyone can set), else its uid."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry (a container's arbitrary uid): the uid still says who
        return str(os.geteuid())


def who(operator: Optional[str] = None) -> Dict[str, Any]:
    return {"user": os_user(), "operator": operator or None, "host": os.uname().nodename}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- hashing


def canonical(record: Mapping[str, Any]) -> str:
    """The one serialization hashed and written: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def record_mac(record: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the record without its `hash` and `mac` (the hash then covers the mac)."""
    body = {name: value for name, value in record.items() if name not in ("hash", "mac")}
    return hmac.new(key, canonical(body).encode("utf-8"), hashlib.sha256).hexdigest()


def audit_key(environ: Optional[Mapping[str, str]] = None) -> Optional[bytes]:
    """The HMAC key: the content of $ERLMCP_DR_AUDIT_KEY_FILE (stripped), else $ERLMCP_DR_AUDIT_KEY, else None.
    A key file readable by group or others is refused: anyone who reads it can forge the trail."""
    environ = os.environ if environ is None else environ
    key_file = environ.get(KEY_FILE_ENV, "")
    if key_file:
        path = Path(key_file).expanduser()
        try:
            mode = path.stat().st_mode & 0o777
            key = path.read_bytes().strip()
        except OSError as exc:
            raise AuditKeyError(f"cannot read the audit key file {path} ({KEY_FILE_ENV}): {exc.strerror}") from exc
        if mode & 0o077:
            raise AuditKeyError(f"the audit key file {path} ({KEY_FILE_ENV}) has mode {mode:04o}: expected 0600 or "
                                f"stricter (chmod 600 {path}); anyone who reads it can forge the trail")
    else:
        key = environ.get(KEY_ENV, "").strip().encode("utf-8")
        if not key:
            return None
    if len(key) < MIN_KEY_BYTES:
        source = KEY_FILE_ENV if key_file else KEY_ENV
        raise AuditKeyError(f"the audit key ({source}) is {len(key)} bytes: expected at least {MIN_KEY_BYTES} "
                            "(e.g. `openssl rand -hex 32`)")
    return key


# ---------------------------------------------------------------- appending


def append(fields: Mapping[str, Any], path: Optional[Path] = None) -> Dict[str, Any]:
    """Appends one record (`fields` plus seq, prev, mac with a key, hash) and returns it, durable (fsync'd) on
    return; the new head is written to the anchor outside the file before the flock is let go."""
    path = path or audit_path()
    key = audit_key()
    _ensure_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        with _locked(fd, path):
            last = last_record(path)
            record = dict(fields)
            record["seq"] = int(last.get("seq") or 0) + 1 if last else 1
            record["prev"] = str(last.get("hash") or GENESIS) if last else GENESIS
            record.pop("mac", None)
            if key is not None:
                record["mac"] = record_mac(record, key)
            record["hash"] = record_hash(record)
            os.write(fd, (canonical(record) + "\n").encode("utf-8"))
            os.fsync(fd)
            _save_head_anchor(path, record)
    finally:
        os.close(fd)
    return record


def append_quietly(fields: Mapping[str, Any], path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """append(), logging instead of raising: a run never fails because its audit record could not be written."""
    try:
        return append(fields, path)
    except Exception as exc:
        log.error("could not append to the audit trail %s: %s (the run goes on; the record is lost: %s %s)",
                  path or audit_path(), exc, fields.get("kind"), fields.get("run_id"))
        return None


@contextmanager
def _locked(fd: int, path: Path) -> Iterator[None]:
    from erlmcp_dr.paths import ensure_collection_importable

    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._wait import WaitTimeout, wait_for

    def take() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_for(take, LOCK_TIMEOUT, interval=0.005, what=f"the audit trail's lock ({path})")
    except WaitTimeout as exc:
        raise OSError(f"{exc}: another process holds it; expected it free within {LOCK_TIMEOUT:.0f} s") from exc
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _ensure_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    from erlmcp_dr.paths import ensure_collection_importable

    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._files import fsync_folder

    fsync_folder(str(folder.parent))


def last_record(path: Path) -> Dict[str, Any]:
    """The file's last record ({} for an empty or missing file), read from its end. When the last line is not
    a record (torn by a crash, or edited), the last line that is: the chain goes on from it and verify() names
    the bad line."""
    line = _last_line(path)
    if not line:
        return {}
    record = _parse(line)
    if record is not None:
        return record
    for earlier in reversed(read_lines(path)):
        if earlier.record is not None:
            return earlier.record
    return {}


def _parse(raw: bytes) -> Optional[Dict[str, Any]]:
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _last_line(path: Path) -> bytes:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return b""
    with handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
            stripped = data.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        return data.rstrip(b"\n")


# ---------------------------------------------------------------- what a run appends


def run_start(run_id: str, runbook: str, parameters: Mapping[str, Any], *, check: bool, operator: Optional[str],
              inventory: str, limit: Optional[str] = None) -> Dict[str, Any]:
    return {"kind": "run_start", "time": now_iso(), "run_id": run_id, "runbook": runbook, "who": who(operator),
            "check": check, "parameters": dict(parameters), "inventory": inventory, "limit": limit}


def step_record(run_id: str, runbook: str, step: Mapping[str, Any], *, operator: Optional[str],
                targets: Sequence[str] = (), before: Any = None, after: Any = None) -> Dict[str, Any]:
    """`target`: the host the task ran on; `targets`: that host and the inventory hosts the step acted on."""
    record = {"kind": "step", "time": now_iso(), "run_id": run_id, "runbook": runbook, "who": who(operator),
              "check": False, "target": step.get("host") or "", "step": step.get("task") or "",
              "action": step.get("action") or "", "targets": sorted(set(targets) | {step.get("host") or ""} - {""}),
              "result": step.get("status") or "changed", "started": step.get("start"), "ended": step.get("end"),
              "facts": step.get("data") or {}}
    if before is not None or after is not None:
        record["before"], record["after"] = before, after
    return record


def run_end(run_id: str, runbook: str, *, operator: Optional[str], status: str, rc: Optional[int], check: bool,
            duration_seconds: float, failing_step: Optional[str], targets: Sequence[str]) -> Dict[str, Any]:
    return {"kind": "run_end", "time": now_iso(), "run_id": run_id, "runbook": runbook, "who": who(operator),
            "check": check, "result": status, "rc": rc, "duration_seconds": duration_seconds,
            "failing_step": failing_step, "targets": sorted(set(targets))}


# ---------------------------------------------------------------- reading and verifying


@dataclass
class Line:
    number: int  # 1-based line number in the file
    raw: bytes
    record: Optional[Dict[str, Any]]  # None when the line is not a JSON object

    @property
    def run_id(self) -> str:
        return str((self.record or {}).get("run_id") or "?")

    def where(self) -> str:
        return f"line {self.number} (run {self.run_id})"


def read_lines(path: Optional[Path] = None) -> List[Line]:
    path = path or audit_path()
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    return [Line(number, raw, _parse(raw)) for number, raw in enumerate(raw_lines, 1)]


def records(path: Optional[Path] = None) -> List[Dict[str, Any]]:
    return [line.record for line in read_lines(path) if line.record is not None]


def verify(path: Optional[Path] = None) -> List[str]:
    """Every break in the chain, one sentence each naming the line and run id; [] when the trail is intact.

    Told apart by each record's own hash (edited in place), its `seq` (a gap: deleted; a repeat: inserted;
    going back: moved) and its `prev` (the record before it was replaced, or a record moved or inserted here).
    An edit that recomputes every later hash is not detectable from the file alone: keep `head` elsewhere."""
    lines = read_lines(path)
    problems: List[str] = []
    seen: Dict[int, Line] = {}
    present = {int(line.record["seq"]) for line in lines if line.record and isinstance(line.record.get("seq"), int)}
    previous: Optional[Line] = None
    expected_seq = 1
    for line in lines:
        problems.extend(_line_problems(line, previous, expected_seq, seen, present))
        record = line.record or {}
        seq = record.get("seq")
        if isinstance(seq, int):
            seen.setdefault(seq, line)
            expected_seq = max(expected_seq, seq + 1)
        previous = line
    return problems


def _line_problems(line: Line, previous: Optional[Line], expected_seq: int, seen: Dict[int, Line],
                   present: set) -> List[str]:
    record = line.record
    if record is None:
        return [f"{line.where()}: not a JSON record: edited or torn"]
    problems = []
    if record.get("hash") != record_hash(record):
        problems.append(f"{line.where()}: edited: its content no longer matches its hash")
    seq = record.get("seq")
    if not isinstance(seq, int):
        return problems + [f"{line.where()}: has no sequence number: edited or inserted"]
    if seq in seen:
        problems.append(f"{line.where()}: sequence number {seq} repeats {seen[seq].where()}: a record was inserted "
                        "or copied")
    elif seq < expected_seq:
        problems.append(f"{line.where()}: sequence number {seq} comes after {expected_seq - 1}: records were "
                        "reordered (moved)")
    elif seq > expected_seq:
        missing = [number for number in range(expected_seq, seq) if number not in present]
        if missing:
            problems.append(f"{line.where()}: record(s) {_ranges(missing)} missing before it: deleted")
        else:
            problems.append(f"{line.where()}: sequence number {seq} comes before {expected_seq}: records were "
                            "reordered (moved)")
    want = GENESIS if previous is None else str((previous.record or {}).get("hash") or "")
    if record.get("prev") != want and not problems:
        before = "the start of the file" if previous is None else previous.where()
        problems.append(f"{line.where()}: does not chain to {before}: that record was replaced, or a record "
                        "was removed or inserted between them")
    return problems


def _ranges(numbers: List[int]) -> str:
    if len(numbers) == 1:
        return str(numbers[0])
    return f"{numbers[0]}-{numbers[-1]}" if numbers[-1] - numbers[0] == len(numbers) - 1 else \
        ", ".join(map(str, numbers))


def head(path: Optional[Path] = None) -> Dict[str, Any]:
    """The last record's seq and hash: what to keep elsewhere to detect a rewrite of the whole tail."""
    last = last_record(path or audit_path())
    return {"seq": last.get("seq", 0), "hash": last.get("hash", GENESIS)}


# ---------------------------------------------------------------- anchors: the head kept outside the file


def anchor_of(record: Optional[Mapping[str, Any]], path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """What a run's result.json keeps of the head after its last record: the trail's path, seq, hash (and mac)."""
    if not record or not isinstance(record.get("seq"), int):
        return None
    anchor = {"path": str(path or audit_path()), "seq": record["seq"], "hash": record.get("hash"),
              "run_id": record.get("run_id"), "time": record.get("time")}
    if record.get("mac"):
        anchor["mac"] = record["mac"]
    return anchor


def head_anchor_path(path: Path) -> Path:
    """<lock folder>/audit-head-<sha256 of the trail's path, 16 hex>.json: kept beside the run locks, out of the
    state folder that holds the trail."""
    from erlmcp_dr.paths import ensure_collection_importable

    ensure_collection_importable()
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import default_store_dir

    digest = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:16]
    return Path(default_store_dir()) / f"{ANCHOR_PREFIX}{digest}.json"


def _save_head_anchor(path: Path, record: Mapping[str, Any]) -> None:
    """Writes the head anchor (atomically, 0600); a failure is logged: the record itself is already durable."""
    anchor = anchor_of(record, path)
    try:
        target = head_anchor_path(path)  # makes the collection importable
        from ansible_collections.erlmcp.dr.plugins.module_utils._files import write_atomic

        _ensure_folder(target.parent)
        write_atomic(str(target), json.dumps(anchor, sort_keys=True) + "\n", 0o600)
    except OSError as exc:
        log.error("could not write the audit trail's head anchor for %s (record #%s): %s", path,
                  record.get("seq"), exc)


def find_anchors(path: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every anchor of this trail that can be found: the head anchor beside the run locks and each run folder's
    result.json (`audit_head`) under the state home; each with `source` (the file it came from)."""
    path = path or audit_path()
    sources = [head_anchor_path(path), *sorted((paths.state_home() / "runs").glob("*/result.json"))]
    found = []
    for source in sources:
        data = _read_json_object(source)
        anchor = data.get("audit_head") if source.name == "result.json" else data
        if isinstance(anchor, dict) and isinstance(anchor.get("seq"), int) and anchor.get("path") == str(path):
            found.append(dict(anchor, source=str(source)))
    return found


def _read_json_object(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_anchors(path: Optional[Path], anchors: Sequence[Mapping[str, Any]]) -> List[str]:
    """What the anchors show that the chain cannot: a missing or emptied file, records deleted from its end,
    a chain rewritten (recomputed) since an anchor was taken. [] when every anchor matches."""
    path = path or audit_path()
    if not anchors:
        return []
    highest = max(anchors, key=lambda anchor: anchor["seq"])
    named = f"{len(anchors)} anchor(s) name records up to #{highest['seq']} (latest: {highest['source']})"
    if not path.exists():
        return [f"the audit trail {path} is missing: {named}; it was deleted"]
    lines = read_lines(path)
    if not lines:
        return [f"the audit trail {path} is empty: {named}; it was emptied (truncated)"]
    by_seq = {line.record["seq"]: line for line in lines if line.record and isinstance(line.record.get("seq"), int)}
    last_seq = max(by_seq) if by_seq else 0
    problems = []
    if highest["seq"] > last_seq:
        problems.append(f"records #{last_seq + 1}-#{highest['seq']} are missing from the end of the trail (its last "
                        f"record is #{last_seq}; {highest['source']} anchored #{highest['seq']}): deleted")
    rewritten = [anchor for anchor in sorted(anchors, key=lambda anchor: anchor["seq"])
                 if anchor["seq"] in by_seq and by_seq[anchor["seq"]].record.get("hash") != anchor.get("hash")]
    if rewritten:
        first = rewritten[0]
        problems.append(f"{by_seq[first['seq']].where()}: record #{first['seq']} is not the one {first['source']} "
                        f"anchored (hash {str(first.get('hash'))[:12]}..., found "
                        f"{str(by_seq[first['seq']].record.get('hash'))[:12]}...): the chain was rewritten from "
                        f"#{first['seq']} or earlier ({len(rewritten)} anchor(s) disagree)")
    return problems


def check_macs(path: Optional[Path], key: bytes) -> List[str]:
    """With the key: each record whose `mac` is missing or wrong, as ranges: written or rewritten without it."""
    missing, wrong = [], []
    for line in read_lines(path or audit_path()):
        record = line.record
        if record is None or not isinstance(record.get("seq"), int):
            continue  # verify() names it
        if not record.get("mac"):
            missing.append(record["seq"])
        elif not hmac.compare_digest(str(record["mac"]), record_mac(record, key)):
            wrong.append(record["seq"])
    problems = []
    if wrong:
        problems.append(f"record(s) {_ranges(wrong)}: MAC does not match the audit key: written or rewritten "
                        "without the key (a recomputed chain)")
    if missing:
        problems.append(f"record(s) {_ranges(missing)}: carry no MAC though a key is set: written before the key "
                        f"was set ({KEY_FILE_ENV}), or rewritten without it")
    return problems


def full_check(path: Optional[Path] = None) -> Dict[str, Any]:
    """`runbook audit verify`: the chain, the anchors, the MACs when a key is set, and what could not be checked.
    Raises AuditKeyError when a key is configured but unusable."""
    path = path or audit_path()
    key = audit_key()
    anchors = find_anchors(path)
    problems = verify(path) + check_anchors(path, anchors)
    if key is not None:
        problems += check_macs(path, key)
    limits = []
    if key is None:
        limits.append(f"no audit key ({KEY_FILE_ENV}): a chain recomputed with fresh hashes is found only where an "
                      "anchor disagrees; one rewritten together with every anchor cannot be told from the real one")
    if not anchors:
        limits.append("no anchor found (no head anchor beside the run locks, no result.json with audit_head): "
                      "records deleted from the end, or a deleted trail, cannot be seen")
    return {"path": str(path), "records": len(read_lines(path)), "ok": not problems, "problems": problems,
            "head": head(path), "anchors": len(anchors), "keyed": key is not None, "limits": limits}


# ---------------------------------------------------------------- filtering (runbook audit show)


def parse_time(value: str) -> dt.datetime:
    """An ISO 8601 date or time (UTC when no zone is given), or a span back from now: 30m, 12h, 7d."""
    text = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"time {value!r} is neither ISO 8601 (2026-11-25, 2026-11-25T14:00:00Z) nor a span "
                         "back from now (30m, 12h, 7d)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def select(items: List[Dict[str, Any]], since: Optional[dt.datetime] = None, until: Optional[dt.datetime] = None,
           runbook: Optional[str] = None, target: Optional[str] = None) -> List[Dict[str, Any]]:
    """The records in [since, until] of `runbook`; with `target`, the steps on that host and the start and end of
    the runs that changed it."""
    runs_on_target = {str(r.get("run_id")) for r in items if target and _touches(r, target)}
    chosen = []
    for record in items:
        when = _record_time(record)
        if since is not None and (when is None or when < since):
            continue
        if until is not None and (when is None or when > until):
            continue
        if runbook and record.get("runbook") != runbook:
            continue
        if target and not (_touches(record, target) or (record.get("kind") != "step"
                                                         and str(record.get("run_id")) in runs_on_target)):
            continue
        chosen.append(record)
    return chosen


def _touches(record: Mapping[str, Any], target: str) -> bool:
    return record.get("target") == target or target in (record.get("targets") or [])


def _record_time(record: Mapping[str, Any]) -> Optional[dt.datetime]:
    try:
        return parse_time(str(record.get("time") or ""))
    except (ValueError, IndexError):
        return None


def render_line(record: Mapping[str, Any]) -> str:
    """One record as one line for a person."""
    actor = record.get("who") or {}
    name = actor.get("user") or "?"
    if actor.get("operator"):
        name = f"{actor['operator']} ({name})"
    kind = record.get("kind")
    base = f"{record.get('time', '?')}  #{record.get('seq', '?'):<5} {record.get('run_id', '?')}  {name}"
    if kind == "run_start":
        mode = "plan" if record.get("check") else "run"
        params = " ".join(f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
                          for key, value in (record.get("parameters") or {}).items())
        return f"{base}  start {mode} {record.get('runbook')}" + (f"  {params}" if params else "")
    if kind == "step":
        return f"{base}  {record.get('result')} {record.get('target')}: {record.get('step')}"
    if kind == "run_end":
        changed = ", ".join(record.get("targets") or []) or "nothing"
        return (f"{base}  end {record.get('runbook')}: {record.get('result')} (rc {record.get('rc')}) in "
                f"{record.get('duration_seconds')} s; changed {changed}")
    return f"{base}  {kind}"
