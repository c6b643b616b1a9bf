"""A postmortem draft from what a run recorded: deterministic, offline, every fact cited, nothing guessed.

`runbook postmortem RUN_ID` reads the run folder (result.json: the summary envelope, the steps) and the audit trail
(the run's run_start, step and run_end records), checks them, and builds a Draft that reporting/postmortem_render.py
turns into Markdown or HTML (docs/postmortem.md). The rules the draft keeps:

- every fact carries the audit record it came from (`#seq hash`): a record of the run itself, or, for what only
  result.json holds (unchanged steps, the summary), the run's run_end record, which result.json's `audit_head`
  anchors it to (checked: seq and hash must be the trail's, status/rc/duration/failing step must agree);
- what the data cannot know (root cause, trigger, lessons, action items, owners, users affected) is a TODO;
- the status is always Draft;
- the timeline is sorted by a monotonic clock: the audit trail's `seq` (one counter for every run on the
  controller, taken under a file lock) and, between two records, ansible-runner's event order; wall-clock times
  are shown, never used to sort, and an entry whose wall clock runs backwards says so;
- no secret appears: values under secret-named keys anywhere in the run's data or its inventory, and secret-shaped
  text (URL passwords, bearer tokens, webhook paths), are scrubbed with redaction.scrub_text before rendering;
- a trail whose chain or anchors are broken is refused, naming what was tampered (audit.full_check);
- a run whose summary lists child runs (`details.steps[].run_id`, docs/reports.md) is drawn whole.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from erlmcp_dr import audit, bia, paths
from erlmcp_dr.redaction import MIN_SCRUB_LENGTH, REDACTED, scrub_text
from erlmcp_dr.reporting import report
from erlmcp_dr.result import RESULT_FILE, RunResult, Step

DEFAULT_PUBLISH_HOURS = 72  # S3:2107 "published within 72 h": docs/postmortem.md says why this one of the four
PUBLISH_HOURS_VAR = "dr_postmortem_publish_hours"
MAX_CHILD_DEPTH = 4  # a drill of a regional failover of runbooks: deeper is a loop in the data
CLOCK_TOLERANCE_SECONDS = 1.0  # ansible's end time and the audit record's time differ by scheduling, not clocks
HASH_SHOWN = 12
TODO = "TODO"
# Keys whose values are secrets wherever they appear (case-insensitive, part of the key's name).
SECRET_KEY = re.compile(r"password|passwd|passphrase|secret|token|api_?key|routing_key|access_key|private_key|"
                        r"credential|authorization|webhook_url|integration_key|tsig", re.IGNORECASE)
# Secret-shaped text: the password of a URL, a bearer token, the path of a Slack/Teams webhook.
SECRET_TEXT = (
    (re.compile(r"(?P<keep>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)", re.IGNORECASE), r"\g<keep>" + REDACTED),
    (re.compile(r"(?P<keep>\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\g<keep>" + REDACTED),
    (re.compile(r"(?P<keep>hooks\.slack\.com/services/)[A-Za-z0-9/_-]+"), r"\g<keep>" + REDACTED),
)


class PostmortemRefused(Exception):
    """The draft cannot be written from this data: a tampered trail, a run without its records, a result.json
    that does not match its trail. The message names what and where."""


@dataclass(frozen=True)
class Citation:
    """The audit record a fact came from; `via_result` when the fact is read from result.json, which this record
    (the run's run_end) anchors."""

    seq: int
    hash: str
    kind: str
    via_result: bool = False

    def label(self) -> str:
        where = "result.json @ " if self.via_result else ""
        return f"{where}#{self.seq} {self.hash[:HASH_SHOWN]}"


@dataclass
class Fact:
    text: str
    cite: Optional[Citation]


@dataclass
class Entry:
    """One line of the timeline. `key` is the monotonic clock (audit seq, event order, run)."""

    key: Tuple[int, int, str]
    when: Optional[str]  # wall clock, UTC, as recorded
    run_id: str
    depth: int
    text: str
    cite: Citation
    clock_note: str = ""


@dataclass
class RunRecord:
    """One run as the draft reads it: result.json, its audit records, its children."""

    result: RunResult
    start: Dict[str, Any]
    end: Dict[str, Any]
    step_records: List[Dict[str, Any]]
    tier: Dict[str, Any]
    tier_source: str
    label: str = ""
    depth: int = 0
    children: List[RunRecord] = field(default_factory=list)
    missing_children: List[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.result.run_id

    def cite_start(self) -> Citation:
        return _cite(self.start)

    def cite_end(self) -> Citation:
        return _cite(self.end)

    def cite_result(self) -> Citation:
        return _cite(self.end, via_result=True)

    def walk(self) -> Iterable[RunRecord]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Draft:
    root: RunRecord
    trail_records: int
    trail_head: Dict[str, Any]
    trail_limits: List[str]
    publish_hours: float
    publish_source: str
    secrets: List[str]

    def publish_by(self) -> Optional[str]:
        ended = _parse_time(self.root.result.ended_at)
        if ended is None:
            return None
        return _utc(ended + dt.timedelta(hours=self.publish_hours))


# ---------------------------------------------------------------- building the draft


def build(run_id: str, home: Optional[Path] = None, inventory: Optional[Path] = None,
          trail: Optional[Path] = None) -> Draft:
    """The draft of run `run_id` (a folder under <state home>/runs), or PostmortemRefused saying why not."""
    home = home or paths.state_home()
    trail = trail or home / audit.AUDIT_DIR / audit.AUDIT_FILE
    checked = checked_trail(trail)
    by_run: Dict[str, List[Dict[str, Any]]] = {}
    for record in audit.records(trail):
        by_run.setdefault(str(record.get("run_id")), []).append(record)
    inventory_vars = _inventory_vars(inventory)
    root = _load_run(home / "runs", run_id, by_run, depth=0, seen=set())
    publish_hours, publish_source = _publish_hours(inventory_vars.get("localhost", {}), inventory)
    draft = Draft(root=root, trail_records=checked["records"], trail_head=checked["head"],
                  trail_limits=list(checked["limits"]), publish_hours=publish_hours, publish_source=publish_source,
                  secrets=[])
    draft.secrets = secret_values([*(run.result.to_dict() for run in root.walk()),
                                   *(record for run in root.walk() for record in _records_of(run)),
                                   *inventory_vars.values()])
    return draft


def checked_trail(trail: Path) -> Dict[str, Any]:
    if not trail.is_file():
        raise PostmortemRefused(f"no audit trail at {trail}: the draft cites every fact by its audit record, and "
                                "there is none to cite (set ERLMCP_DR_HOME to the state folder the run used)")
    try:
        checked = audit.full_check(trail)
    except audit.AuditKeyError as exc:
        raise PostmortemRefused(str(exc)) from exc
    if checked["problems"]:
        listed = "\n".join(f"  - {problem}" for problem in checked["problems"])
        raise PostmortemRefused(f"the audit trail {trail} was tampered with; no draft is written from it:\n{listed}\n"
                                "(`runbook audit verify` shows the same; restore the trail from its copy)")
    return checked


def _load_run(runs: Path, run_id: str, by_run: Mapping[str, List[Dict[str, Any]]], depth: int, seen: set,
              label: str = "") -> RunRecord:
    run_dir = runs / run_id
    if "/" in run_id or not (run_dir / RESULT_FILE).is_file():
        raise PostmortemRefused(f"no run '{run_id}' with a {RESULT_FILE} in {runs} (a run still going, or one that "
                                "could not start, has no draft yet: `runbook report` shows what it left)")
    try:
        result = RunResult.load(run_dir)
    except (OSError, ValueError, TypeError) as exc:
        raise PostmortemRefused(f"{run_dir / RESULT_FILE} cannot be read ({exc})") from exc
    records = by_run.get(run_id, [])
    start = _one(records, "run_start", run_id)
    end = _one(records, "run_end", run_id)
    problems = consistency(result, end)
    if problems:
        raise PostmortemRefused(f"run {run_id}: {RESULT_FILE} does not match its audit records: "
                                + "; ".join(problems))
    tier, tier_source = _tier_of(result)
    run = RunRecord(result=result, start=start, end=end, tier=tier, tier_source=tier_source, label=label,
                    step_records=[record for record in records if record.get("kind") == "step"], depth=depth)
    seen = seen | {run_id}
    for child_label, child_id in child_runs(result.summary):
        if child_id in seen or depth + 1 > MAX_CHILD_DEPTH:
            raise PostmortemRefused(f"run {run_id} lists child run {child_id} which "
                                    + ("is one of its own parents: a loop in the data" if child_id in seen
                                       else f"is deeper than {MAX_CHILD_DEPTH} levels"))
        if not (runs / child_id / RESULT_FILE).is_file():
            run.missing_children.append(child_id)
            continue
        run.children.append(_load_run(runs, child_id, by_run, depth + 1, seen, child_label))
    return run


def _one(records: Sequence[Mapping[str, Any]], kind: str, run_id: str) -> Dict[str, Any]:
    found = [dict(record) for record in records if record.get("kind") == kind]
    if not found:
        raise PostmortemRefused(f"run {run_id} has no {kind} record in the audit trail: its facts cannot be cited "
                                "(was it recorded in another trail? set ERLMCP_DR_HOME to the state folder it used)")
    if len(found) > 1:
        seqs = ", ".join(f"#{record.get('seq')}" for record in found)
        raise PostmortemRefused(f"run {run_id} has {len(found)} {kind} records ({seqs}): a run id reused")
    return found[0]


def consistency(result: RunResult, end: Mapping[str, Any]) -> List[str]:
    """Where result.json disagrees with the run's run_end record (the fields both hold) or its anchor."""
    problems = []
    head = result.audit_head or {}
    if not head:
        problems.append(f"it carries no audit_head (the trail's run_end is #{end.get('seq')}): written by a runner "
                        "that did not anchor its runs, or edited")
    elif head.get("seq") != end.get("seq") or head.get("hash") != end.get("hash"):
        problems.append(f"its audit_head names #{head.get('seq')} {str(head.get('hash'))[:HASH_SHOWN]}, the trail's "
                        f"run_end is #{end.get('seq')} {str(end.get('hash'))[:HASH_SHOWN]} (result.json edited, or "
                        "from another trail)")
    pairs = (("status", result.status, end.get("result")), ("rc", result.rc, end.get("rc")),
             ("duration_seconds", result.duration_seconds, end.get("duration_seconds")),
             ("check", result.check, end.get("check")))
    problems.extend(f"{name} is {mine!r} in result.json, {theirs!r} in the run_end record"
                    for name, mine, theirs in pairs if mine != theirs)
    failing = result.failing_step
    named = f"{failing.task} on {failing.host}" if failing else None  # as the runner writes it (runner._audit_end)
    if named != end.get("failing_step"):
        problems.append(f"the failing step is {named!r} in result.json, {end.get('failing_step')!r} in the run_end "
                        "record")
    return problems


def child_runs(summary: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """(label, run id) of each child run a composed run's summary lists (docs/reports.md, "Child runs"):
    `details.steps[]` items with `run_id` (and `undo_run_id` for the undo of a step), in the order listed."""
    details = summary.get("details") if isinstance(summary.get("details"), dict) else {}
    steps = details.get("steps") if isinstance(details.get("steps"), list) else []
    found: List[Tuple[str, str]] = []
    for number, item in enumerate(steps, 1):
        if not isinstance(item, dict):
            continue
        name = str(item.get("name") or item.get("runbook") or f"step {number}")
        for key, suffix in (("run_id", ""), ("undo_run_id", " (undo)")):
            if isinstance(item.get(key), str) and item[key]:
                found.append((f"{name}{suffix}", item[key]))
    return found


def _tier_of(result: RunResult) -> Tuple[Dict[str, Any], str]:
    """The tier whose objectives the run is measured against: the summary's `details.tier` (a composed run
    names it), else the runbook's metadata (`runbook.tier`), else the default tier, saying which."""
    details = result.summary.get("details") if isinstance(result.summary.get("details"), dict) else {}
    if isinstance(details.get("tier"), int) and not isinstance(details.get("tier"), bool):
        return bia.tier_objectives(details["tier"]), "the run's summary (details.tier)"
    try:
        from erlmcp_dr import catalog

        declared = catalog.load(result.runbook).tier
    except Exception:  # a runbook no longer in the catalog, or a composed one outside it
        declared = None
    if declared is not None:
        return bia.tier_objectives(declared), f"runbook {result.runbook}'s metadata (runbook.tier)"
    return bia.tier_objectives(bia.DEFAULT_TIER), (f"no tier declared for {result.runbook}: the default tier "
                                                   f"{bia.DEFAULT_TIER}")


def _records_of(run: RunRecord) -> List[Dict[str, Any]]:
    return [run.start, *run.step_records, run.end]


# ---------------------------------------------------------------- inventory: the deadline, secrets


def _inventory_vars(inventory: Optional[Path]) -> Dict[str, Dict[str, Any]]:
    """Every host's variables of `inventory` (localhost included): the secrets of each are scrubbed, the
    publication deadline is localhost's (an `all` var). {} without an inventory."""
    if inventory is None:
        return {}
    try:
        return bia.hosts_vars(inventory)
    except bia.BiaError as exc:
        raise PostmortemRefused(str(exc)) from exc


def _publish_hours(inventory_vars: Mapping[str, Any], inventory: Optional[Path]) -> Tuple[float, str]:
    value = inventory_vars.get(PUBLISH_HOURS_VAR)
    if value is None:
        where = f"{PUBLISH_HOURS_VAR} not set in {inventory}" if inventory else "no inventory given (-i)"
        return float(DEFAULT_PUBLISH_HOURS), f"the default: {where}"
    try:
        hours = bia.number(value, PUBLISH_HOURS_VAR, "hours", minimum=1)
    except bia.BiaError as exc:
        raise PostmortemRefused(f"{exc} (in {inventory})") from exc
    return hours, f"{PUBLISH_HOURS_VAR} in {inventory}"


def secret_values(sources: Iterable[Any]) -> List[str]:
    """Every string found under a secret-named key (SECRET_KEY) anywhere in `sources`, longest first (a secret that
    contains another is scrubbed whole)."""
    found: set = set()
    for source in sources:
        _collect(source, False, found)
    return sorted((value for value in found if len(value) >= MIN_SCRUB_LENGTH and value != REDACTED),
                  key=lambda value: (-len(value), value))


def _collect(value: Any, secret: bool, found: set) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _collect(item, secret or bool(SECRET_KEY.search(str(key))), found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, secret, found)
    elif secret and isinstance(value, (str, int)) and not isinstance(value, bool):
        found.add(str(value))


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` without the run's secrets (redaction.scrub_text) and without secret-shaped text (SECRET_TEXT)."""
    text = scrub_text(text, secrets)
    for pattern, replacement in SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------- what the draft says


def timeline(root: RunRecord) -> List[Entry]:
    """Every run's start, its steps a person reads (plumbing and skipped steps left out unless they failed) and its
    end, sorted by the monotonic clock; an entry whose wall clock is earlier than the one before it says so."""
    entries = sorted((entry for run in root.walk() for entry in _run_entries(run)), key=lambda entry: entry.key)
    latest: Optional[dt.datetime] = None
    for entry in entries:
        when = _parse_time(entry.when)
        if when is None:
            continue
        if latest is not None and (latest - when).total_seconds() > CLOCK_TOLERANCE_SECONDS:
            entry.clock_note = (f"wall clock {(latest - when).total_seconds():.1f} s earlier than the entry before: "
                                "the clock was stepped back; the recorded order is kept")
        latest = when if latest is None else max(latest, when)
    return entries


def _run_entries(run: RunRecord) -> List[Entry]:
    result = run.result
    name = run.label or result.runbook
    mode = "plan (check mode)" if result.check else "live run"
    start_seq = int(run.start["seq"])
    entries = [Entry((start_seq, 0, run.run_id), run.start.get("time"), run.run_id, run.depth,
                     f"{name}: {mode} of {result.runbook} started by {_who(run.start)}", run.cite_start())]
    unmatched = list(run.step_records)
    last_seq = start_seq
    for index, step in enumerate(result.steps, 1):
        record = _matching_record(step, unmatched)
        if record is not None:
            unmatched.remove(record)
            last_seq = int(record["seq"])
        if (step.skipped or report.is_internal(step)) and not step.failed:
            continue
        key = (last_seq, 0 if record is not None else index, run.run_id)
        cite = _cite(record) if record is not None else run.cite_result()
        entries.append(Entry(key, step.end or step.start, run.run_id, run.depth, _step_text(step), cite))
    end = run.end
    took = f"{end.get('duration_seconds')} s"
    entries.append(Entry((int(end["seq"]), 0, run.run_id), end.get("time"), run.run_id, run.depth,
                         f"{name}: {result.runbook} ended {end.get('result')} (rc {end.get('rc')}) after {took}",
                         run.cite_end()))
    return entries


def _matching_record(step: Step, records: Sequence[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    if not step.changed:
        return None
    for record in records:
        if (record.get("step"), record.get("target"), record.get("started")) == (step.task, step.host, step.start):
            return record
    return None


def _step_text(step: Step) -> str:
    took = "" if step.duration is None else f" ({step.duration:.2f} s)"
    text = f"{step.status} on {step.host or '-'}: {step.task}{took}"
    if step.failed or step.unreachable:
        text += f": {_short(step.message or '(no message)', 400)}"
    return text


@dataclass
class Objective:
    name: str  # RTO or RPO
    achieved: Optional[float]  # seconds
    achieved_text: str
    runbook_target: Optional[float]
    tier_target: float
    verdict: str
    cite: Citation


def objectives(run: RunRecord) -> List[Objective]:
    """RTO and RPO achieved by the run (a composed run: its own duration, its children's largest data loss) against
    the runbook's targets and the tier's."""
    result = run.result
    measured = result.succeeded and not result.check
    rto = result.duration_seconds if measured else None
    rto_text = f"{result.duration_seconds:.1f} s (the run's duration)" if measured else _not_measured(result)
    lost, lost_text, lost_cite = _data_lost(run)
    rpo = lost if measured else None
    rpo_text = lost_text if measured else _not_measured(result)
    return [
        Objective("RTO", rto, rto_text, result.rto_target_seconds, run.tier["rto_seconds"],
                  _verdict(rto, run.tier["rto_seconds"]), run.cite_end()),
        Objective("RPO", rpo, rpo_text, result.rpo_target_seconds, run.tier["rpo_seconds"],
                  _verdict(rpo, run.tier["rpo_seconds"]), lost_cite),
    ]


def _not_measured(result: RunResult) -> str:
    if result.check:
        return "not measured: a plan (check mode) recovers nothing"
    return f"not achieved: the run ended {result.status}"


def _data_lost(run: RunRecord) -> Tuple[Optional[float], str, Citation]:
    """The data the run (and its children) gave up, in seconds, from the envelope's recovery_point."""
    worst: Optional[float] = 0.0
    parts = []
    for each in run.walk():
        point = each.result.summary.get("recovery_point")
        if not isinstance(point, dict):
            continue
        seconds, lost_bytes = point.get("lost_seconds"), point.get("lost_bytes")
        if seconds is None and lost_bytes == 0:
            seconds = 0.0
        if seconds is None:
            worst = None
            parts.append(f"{each.result.runbook}: {lost_bytes} bytes, seconds not known")
            continue
        if worst is not None:
            worst = max(worst, float(seconds))
        parts.append(f"{each.result.runbook}: {seconds} s" + (f" ({lost_bytes} bytes)" if lost_bytes else ""))
    if not parts:
        return 0.0, "0 s (no step risks data: every recovery_point is null)", run.cite_result()
    text = ("unknown" if worst is None else f"{worst:g} s") + f" ({'; '.join(parts)})"
    return worst, text, run.cite_result()


def _verdict(achieved: Optional[float], limit: float) -> str:
    met = bia.meets(achieved, limit)
    if met is None:
        return "not measured"
    return "met" if met else "MISSED"


def client_observed(run: RunRecord) -> Optional[Dict[str, Any]]:
    """A probe's view (a drill's `details.client_observed`: rto_seconds, rpo_seconds, ...), when one ran."""
    details = run.result.summary.get("details") if isinstance(run.result.summary.get("details"), dict) else {}
    observed = details.get("client_observed")
    return observed if isinstance(observed, dict) else None


def notifications(root: RunRecord) -> List[Fact]:
    """Each notification the runs sent (erlmcp.dr.notify step records): phase, incident, channels and outcome."""
    facts = []
    for run in root.walk():
        for record in run.step_records:
            if record.get("action") != "erlmcp.dr.notify":
                continue
            found = record.get("facts") or {}
            deliveries = found.get("deliveries") or []
            outcome = ", ".join(f"{item.get('channel')} {'delivered' if item.get('ok') else 'FAILED'}"
                                + (f" (HTTP {item.get('status')})" if item.get("status") else "")
                                for item in deliveries if isinstance(item, dict)) or "no channel"
            facts.append(Fact(f"{record.get('time')}: {found.get('phase') or '?'} notice for "
                              f"{found.get('incident_id') or '?'} ({found.get('severity') or '?'}): {outcome}",
                              _cite(record)))
    return facts


def what_changed(run: RunRecord) -> List[Fact]:
    """The summary's `did` sentences (result.json) and the hosts the run_end record says the run changed."""
    did = run.result.summary.get("did")
    facts = [Fact(str(sentence), run.cite_result()) for sentence in did] if isinstance(did, list) else []
    targets = run.end.get("targets") or []
    facts.append(Fact(f"hosts changed: {', '.join(map(str, targets)) or 'none'}", run.cite_end()))
    return facts


def what_failed(run: RunRecord) -> List[Fact]:
    """The failing step and its message, and the summary's reason: facts, not a cause."""
    result = run.result
    if result.succeeded:
        return []
    facts = []
    failing = result.failing_step
    if failing is not None:
        facts.append(Fact(f"failing step: {failing.task} on {failing.host}", run.cite_end()))
        facts.append(Fact(f"its message: {_short(failing.message or '(no message)', 1200)}", run.cite_result()))
    elif result.error:
        facts.append(Fact(f"the run's output ended: {_short(result.error, 600)}", run.cite_result()))
    reason = result.summary.get("reason")
    if reason:
        facts.append(Fact(f"the summary's reason: {reason}", run.cite_result()))
    end = result.summary.get("end_state") if isinstance(result.summary.get("end_state"), dict) else {}
    for problem in end.get("problems") or []:
        facts.append(Fact(f"end state problem: {problem}", run.cite_result()))
    return facts


# ---------------------------------------------------------------- helpers


def _cite(record: Mapping[str, Any], via_result: bool = False) -> Citation:
    return Citation(int(record["seq"]), str(record["hash"]), str(record.get("kind")), via_result)


def _who(record: Mapping[str, Any]) -> str:
    actor = record.get("who") or {}
    user = actor.get("user") or "?"
    operator = actor.get("operator")
    entry = record.get("entry_point")
    name = f"{operator} (OS user {user})" if operator else f"OS user {user}"
    return f"{name} via {entry}" if entry else name


def _parse_time(value: Optional[str]) -> Optional[dt.datetime]:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _utc(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def utc_time(value: Optional[str]) -> str:
    """A recorded time as `YYYY-MM-DD HH:MM:SS.mmm` UTC (the timeline's column), '-' when none."""
    when = _parse_time(value)
    if when is None:
        return "-"
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(text: str, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"
