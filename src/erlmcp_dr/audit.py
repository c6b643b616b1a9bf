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

The writer (append, the record builders, the key, the head anchor) is plugins/module_utils/_common/audit.py, shared
with the erlmcp.dr.audit_trail callback and erlmcp.dr.run_lock, so runs of every entry point (`entry_point`:
cli, api, ansible-playbook, awx) chain in one file; this module adds the controller's side: where the trail is
(paths.state_home), verifying, filtering and rendering. An append takes an exclusive flock on the file, reads
the last record, writes one line with O_APPEND and fsyncs it: records of concurrent runs interleave, whole.
A failed append is logged, never fails the run it records (a recovery does not stop for its paper trail).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common import audit as _audit  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.audit import (  # noqa: E402,F401  (this module's API)
    ANCHOR_PREFIX,
    GENESIS,
    KEY_ENV,
    KEY_FILE_ENV,
    LOCK_TIMEOUT,
    WRITER_ENV,
    AuditKeyError,
    anchor_of,
    audit_key,
    canonical,
    now_iso,
    os_user,
    record_hash,
    record_mac,
    who,
)

log = logging.getLogger(__name__)

AUDIT_DIR = _audit.AUDIT_DIR
AUDIT_FILE = _audit.AUDIT_FILE
KINDS = ("run_start", "step", "run_end")
# How runs of this process enter: `api` (erlmcp_dr.run() from a program) unless the runbook CLI says `cli`.
entry_point = "api"


def audit_path() -> Path:
    """<state_home>/audit/audit.jsonl."""
    return paths.state_home() / AUDIT_DIR / AUDIT_FILE


def set_entry_point(name: str) -> None:
    global entry_point
    entry_point = name


# ---------------------------------------------------------------- appending (module_utils/_common/audit.py)


def append(fields: Mapping[str, Any], path: Optional[Path] = None) -> Dict[str, Any]:
    """Appends one record (`fields` plus seq, prev, mac with a key, hash) and returns it, durable (fsync'd) on
    return, its head anchored beside the run locks."""
    return _audit.append(fields, str(path or audit_path()))


def append_quietly(fields: Mapping[str, Any], path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """append(), logging instead of raising: a run never fails because its audit record could not be written."""
    try:
        return append(fields, path)
    except Exception as exc:
        log.error("could not append to the audit trail %s: %s (the run goes on; the record is lost: %s %s)",
                  path or audit_path(), exc, fields.get("kind"), fields.get("run_id"))
        return None


def last_record(path: Path) -> Dict[str, Any]:
    """The file's last record ({} for an empty or missing file); a torn last line is skipped."""
    return _audit.last_record(str(path))


def head_anchor_path(path: Path) -> Path:
    """<lock folder>/audit-head-<digest of the trail's path>.json: beside the run locks, out of the state folder."""
    return Path(_audit.head_anchor_path(str(path)))


# ---------------------------------------------------------------- what a run appends


def run_start(run_id: str, runbook: str, parameters: Mapping[str, Any], *, check: bool, operator: Optional[str],
              inventory: str, limit: Optional[str] = None) -> Dict[str, Any]:
    return _audit.run_start(run_id, runbook, parameters, check, operator, inventory, limit, entry_point)


def step_record(run_id: str, runbook: str, step: Mapping[str, Any], *, operator: Optional[str],
                targets: Sequence[str] = (), before: Any = None, after: Any = None) -> Dict[str, Any]:
    """`target`: the host the task ran on; `targets`: that host and the inventory hosts the step acted on."""
    return _audit.step_record(run_id, runbook, step, operator, targets, before, after, entry_point)


def run_end(run_id: str, runbook: str, *, operator: Optional[str], status: str, rc: Optional[int], check: bool,
            duration_seconds: float, failing_step: Optional[str], targets: Sequence[str]) -> Dict[str, Any]:
    return _audit.run_end(run_id, runbook, operator, status, rc, check, duration_seconds, failing_step, targets,
                          entry_point)


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
    return [Line(number, raw, _audit.parse(raw)) for number, raw in enumerate(raw_lines, 1)]


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


def find_anchors(path: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every anchor of this trail that can be found: the head anchor beside the run locks and each run folder's
    result.json (`audit_head`) under the state home; each with `source` (the file it came from)."""
    path = path or audit_path()
    sources = [head_anchor_path(path), *sorted((paths.state_home() / "runs").glob("*/result.json"))]
    found = []
    for source in sources:
        data = paths.read_json_object(source)
        anchor = data.get("audit_head") if source.name == "result.json" else data
        if isinstance(anchor, dict) and isinstance(anchor.get("seq"), int) and anchor.get("path") == str(path):
            found.append(dict(anchor, source=str(source)))
    return found


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
