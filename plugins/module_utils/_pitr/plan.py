# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure decisions of pg_backup and pg_restore (no I/O): WAL arithmetic, which backup a target restores from,
which WAL segments that restore needs, and retention (docs/pitr.md).

WAL segment names: 8 hex digits of timeline, then the segment number split in two 8-digit halves ("log" and
"seg"), as PostgreSQL's XLogFileName writes them. An LSN "X/Y" is the 64-bit byte position (X << 32) + Y; with the
default 16 MiB segments the segment number is position // 16 MiB.

Backups come from `pgbackrest info --output=json` (label, type, lsn.start/stop, timestamp.start/stop: what the
backup itself recorded): a backup is chosen by its label and its LSN or stop time, never by a file's time.

Private to the collection. Python 3.8 syntax at most: module_utils run on managed hosts.
"""

from __future__ import annotations

import re

SEGMENT_SIZE = 16 * 1024 * 1024
TARGET_TYPES = ("latest", "time", "lsn", "name")
_SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(?:-[0-9a-f]{40})?(?:\.[a-z0-9]+)?$")
_HISTORY_RE = re.compile(r"^([0-9A-F]{8})\.history(?:-[0-9a-f]{40})?(?:\.[a-z0-9]+)?$")
_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class PlanError(Exception):
    """A decision that refuses: the message names what was found, what was expected and the parameter to change."""


# -- LSNs and segment names -------------------------------------------------------------------------------------


def parse_lsn(text):
    match = _LSN_RE.match(str(text or "").strip())
    if not match:
        raise PlanError("%r is not an LSN: expected two hex numbers as X/Y (e.g. 0/3000028)" % (text,))
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def format_lsn(position):
    return "%X/%X" % (position >> 32, position & 0xFFFFFFFF)


def segment_number(position, segment_size=SEGMENT_SIZE):
    return position // segment_size


def segment_name(timeline, segno, segment_size=SEGMENT_SIZE):
    """XLogFileName: the file of segment segno on timeline."""
    per_log = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, segno // per_log, segno % per_log)


def parse_segment_name(name, segment_size=SEGMENT_SIZE):
    """(timeline, segno) of a WAL file name as the archive stores it (with or without pgBackRest's checksum and
    compression suffix); None for anything else (.backup labels, .partial files, history files)."""
    match = _SEGMENT_RE.match(name)
    if not match:
        return None
    per_log = 0x100000000 // segment_size
    return int(match.group(1), 16), int(match.group(2), 16) * per_log + int(match.group(3), 16)


def parse_history_name(name):
    match = _HISTORY_RE.match(name)
    return int(match.group(1), 16) if match else None


def parse_history(text):
    """A timeline history file's entries: [(parent timeline, switch position)], oldest first. Each line is
    "<parent tli> <switch LSN> <reason>"; comments and blank lines are skipped."""
    entries = []
    for line in (text or "").splitlines():
        fields = line.strip().split()
        if not fields or fields[0].startswith("#") or len(fields) < 2:
            continue
        entries.append((int(fields[0]), parse_lsn(fields[1])))
    return entries


# -- the WAL a restore needs -----------------------------------------------------------------------------------


def timeline_path(start_timeline, end_timeline, history):
    """[(timeline, first position, end position or None)] from the backup's timeline to the target's, following the
    target timeline's history (parse_history of <end_timeline>.history). A target timeline that does not descend
    from the backup's is refused."""
    if end_timeline == start_timeline:
        return [(start_timeline, 0, None)]
    steps, previous_end = [], 0
    ancestry = list(history)
    timelines = [entry[0] for entry in ancestry]
    if start_timeline not in timelines:
        raise PlanError("timeline %d does not descend from the backup's timeline %d (its history: %s): choose a "
                        "backup taken on that timeline or after it (backup_label)"
                        % (end_timeline, start_timeline, ancestry or "none"))
    for tli, switch in ancestry[timelines.index(start_timeline):]:
        steps.append((tli, previous_end, switch))
        previous_end = switch
    steps.append((end_timeline, previous_end, None))
    return steps


def needed_segments(start_lsn, end_lsn, start_timeline, end_timeline, history, segment_size=SEGMENT_SIZE):
    """Every WAL file recovery reads from start_lsn (the backup's start) to end_lsn (inclusive), in order: on each
    timeline of the path up to its switch point; the segment holding a switch point is read from the newer timeline,
    as recovery does."""
    names = []
    first = segment_number(start_lsn, segment_size)
    last = segment_number(end_lsn, segment_size)
    for tli, _begins, switch in timeline_path(start_timeline, end_timeline, history):
        upto = last if switch is None else min(last, segment_number(switch, segment_size) - 1)
        for segno in range(first, upto + 1):
            names.append(segment_name(tli, segno, segment_size))
        first = max(first, upto + 1)
        if first > last:
            break
    return names


def first_missing(needed, archived):
    """The first name of `needed` not in `archived` (a set of segment names), else None."""
    for name in needed:
        if name not in archived:
            return name
    return None


def archive_listing(paths, segment_size=SEGMENT_SIZE):
    """What `pgbackrest repo-ls --recurse` of an archive id's folder holds: {segments: set of names, histories:
    {timeline: file path}, newest: {timeline: highest segno}}."""
    segments, histories, newest = set(), {}, {}
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        parsed = parse_segment_name(name, segment_size)
        if parsed is not None:
            segments.add(segment_name(parsed[0], parsed[1], segment_size))
            newest[parsed[0]] = max(newest.get(parsed[0], -1), parsed[1])
            continue
        tli = parse_history_name(name)
        if tli is not None:
            histories[tli] = path
    return {"segments": segments, "histories": histories, "newest": newest}


def wal_end(target, backup, listing, target_timeline):
    """The position up to which the archive must be complete for this target: the target LSN itself; for a time, a
    restore point or latest (whose WAL position is unknown before replay), the end of the newest archived segment of
    the target timeline (or of the backup's own WAL when nothing newer is archived)."""
    if target["type"] == "lsn":
        return parse_lsn(target["value"])
    newest = listing["newest"].get(target_timeline)
    stop = parse_lsn(backup["lsn"]["stop"])
    if newest is None:
        return stop
    return max(stop, (newest + 1) * SEGMENT_SIZE - 1)


# -- which backup ----------------------------------------------------------------------------------------------


def usable_backups(info):
    """The stanza's backups from `pgbackrest info --output=json` (a list of stanzas, or one), oldest first, without
    those pgBackRest marked in error."""
    stanzas = info if isinstance(info, list) else [info]
    backups = []
    for stanza in stanzas:
        backups.extend(b for b in stanza.get("backup") or [] if not b.get("error"))
    return sorted(backups, key=lambda b: (parse_lsn(b["lsn"]["start"]), b["label"]))


def _describe(backup):
    return "%s (%s, LSN %s-%s, stopped at epoch %s)" % (
        backup["label"], backup["type"], backup["lsn"]["start"], backup["lsn"]["stop"], backup["timestamp"]["stop"])


def _reaches(backup, target):
    """Whether recovery from this backup can stop at the target: the target lies after the backup's consistent
    point (its stop LSN; its stop time, recorded in whole seconds, plus one)."""
    if target["type"] == "lsn":
        return parse_lsn(backup["lsn"]["stop"]) <= parse_lsn(target["value"])
    if target["type"] == "time":
        return backup["timestamp"]["stop"] + 1 <= target["epoch"]
    return True  # latest and a restore point name: any backup, replay decides


def choose_backup(backups, target, label=None):
    """The backup a restore to `target` starts from: the one named by label, else the newest (by LSN) that reaches
    the target. Refuses when none does, naming the oldest backup (a target before it cannot be restored)."""
    if not backups:
        raise PlanError("the repository holds no usable backup: take one with pg_backup first")
    if label:
        chosen = [b for b in backups if b["label"] == label]
        if not chosen:
            raise PlanError("backup_label %s is not in the repository; it holds %s"
                            % (label, ", ".join(b["label"] for b in backups)))
        if not _reaches(chosen[0], target):
            raise PlanError("the target %s lies before the end of backup %s: recovery cannot stop there; choose an "
                            "older backup (backup_label) or a later target"
                            % (describe_target(target), _describe(chosen[0])))
        return chosen[0]
    fitting = [b for b in backups if _reaches(b, target)]
    if not fitting:
        raise PlanError("the target %s lies before the oldest backup's end, %s: nothing can be restored to it (a "
                        "restore can only stop after a backup's consistent point); choose a later target"
                        % (describe_target(target), _describe(backups[0])))
    return fitting[-1]


def describe_target(target):
    if not target.get("type"):
        return "no target (none was read)"
    if target["type"] == "latest":
        return "latest (the end of the archive)"
    return "%s %s" % (target["type"], target["value"])


# -- retention -------------------------------------------------------------------------------------------------


def retention_plan(backups, keep_full, verified_labels):
    """The labels pgBackRest's count retention (repo1-retention-full=keep_full) would expire: full backups older
    than the newest keep_full, with the differential and incremental backups that depend on them. Refuses a plan
    that would remove the newest verified backup (or the full it depends on)."""
    fulls = [b for b in backups if b["type"] == "full"]
    expired_fulls = set(b["label"] for b in fulls[:-keep_full]) if keep_full and len(fulls) > keep_full else set()
    doomed = [b["label"] for b in backups if b["label"] in expired_fulls or _root_full(b, backups) in expired_fulls]
    verified = [b for b in backups if b["label"] in verified_labels]
    if verified:
        newest = verified[-1]
        needs = {newest["label"], _root_full(newest, backups)}
        if needs & set(doomed):
            raise PlanError("retention_full=%s would expire %s, which the newest verified backup %s needs: keep more "
                            "full backups (retention_full)"
                            % (keep_full, ", ".join(sorted(needs & set(doomed))), newest["label"]))
    return doomed


def _root_full(backup, backups):
    """The full backup a backup depends on (itself for a full): diff/incr labels start with their full's."""
    if backup["type"] == "full":
        return backup["label"]
    return backup["label"].split("_", 1)[0]


# -- the summary -----------------------------------------------------------------------------------------------


def summary(runbook, steps, completed=False, check_mode=False, meta=None):
    """What pg_backup, pg_restore and pg_restore_verify publish (set_stats `summary`): the envelope, pgBackRest's
    facts under `details`. steps: backup / restore / verify / lock / primary, each a registered result (or {}) or a
    value."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import envelope

    steps = dict((k, v or {}) for k, v in (steps or {}).items())
    did, details = [], dict(primary=steps.get("primary") or None)
    backup, restore = steps.get("backup"), steps.get("restore")
    if backup:
        details["backup"] = dict((key, backup.get(key)) for key in (
            "label", "type", "lsn_start", "lsn_stop", "wal_start", "wal_stop", "size", "repository_size",
            "duration_seconds", "verified", "verify_status", "repository", "started_at", "stopped_at", "expired",
            "would_take", "would_expire"))
        if backup.get("label") and not check_mode:
            did.append("took %s backup %s (LSN %s to %s, %s bytes) in %s s; verify: %s" % (
                backup.get("type"), backup["label"], backup.get("lsn_start"), backup.get("lsn_stop"),
                backup.get("size"), backup.get("duration_seconds"), backup.get("verify_status")))
        if backup.get("expired") and not check_mode:
            did.append("retention expired %s" % ", ".join(backup["expired"]))
    if restore:
        details["restore"] = dict((key, restore.get(key)) for key in (
            "target", "backup", "wal", "scratch_dir", "scratch_port", "proof", "scratch_state", "found_done",
            "missing_segment", "repository"))
        if restore.get("proof") and restore.get("changed") and not check_mode:
            did.append("restored backup %s into the scratch instance %s (port %s), replayed to %s: last transaction "
                       "committed at %s (LSN %s)" % (
                           (restore.get("backup") or {}).get("label"), restore.get("scratch_dir"),
                           restore.get("scratch_port"), describe_target(restore.get("target") or {"type": "latest"}),
                           restore["proof"].get("last_xact_time"), restore["proof"].get("replay_lsn")))
    verify = steps.get("verify")
    if verify:
        details["verify"] = dict((key, verify.get(key)) for key in (
            "backup", "wal", "proof", "checks", "record", "verified", "scratch_dir", "scratch_state", "would_check",
            "repository"))
        if verify.get("verified") and not check_mode:
            did.append("proved backup %s restores: restored with the archive to its end into %s, last transaction "
                       "committed at %s, %d check(s) held; recorded in %s" % (
                           verify["verified"].get("label"), verify.get("scratch_dir"),
                           verify["verified"].get("last_xact_time"), len(verify.get("checks") or []),
                           verify.get("record")))
    in_place = steps.get("in_place")
    if in_place:
        details["in_place"] = _in_place_details(in_place, steps.get("cluster"))
        if in_place.get("proof") and in_place.get("changed") and not check_mode:
            did.append("restored the primary's data directory %s in place from backup %s to %s and promoted it on "
                       "timeline %s (it served timeline %s): last transaction replayed committed at %s (LSN %s)" % (
                           in_place.get("data_dir"), (in_place.get("backup") or {}).get("label"),
                           describe_target(in_place.get("target") or {}), in_place.get("new_timeline"),
                           in_place.get("from_timeline"), in_place["proof"].get("last_xact_time"),
                           in_place["proof"].get("replay_lsn")))
    plan = None
    if check_mode and in_place and in_place.get("failed"):
        pass  # refused before it planned anything (no backup, a WAL gap...): the envelope says why, no plan to show
    elif check_mode and in_place:
        from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import confirmation

        plan = confirmation(will_change=_in_place_will(in_place), may_lose=[
            "every transaction committed after %s on timeline %s: it stays in the WAL archive on that timeline but "
            "is no longer served" % (describe_target(in_place.get("target") or {}), in_place.get("from_timeline"))])
    elif check_mode:
        will = []
        if backup:
            will.append("take a %s backup; expire %s" % (backup.get("would_take"), ", ".join(
                backup.get("would_expire") or []) or "nothing"))
        if restore:
            will.append("restore backup %s into a new scratch instance %s, replayed to %s (the live cluster "
                        "untouched)" % ((restore.get("backup") or {}).get("label"), restore.get("scratch_dir"),
                                        describe_target(restore.get("target") or {"type": "latest"})))
        if verify:
            will.append("restore backup %s with the archive to its end into a new scratch instance %s, run %d "
                        "check(s), record the proof in %s (the live cluster untouched)" % (
                            (verify.get("backup") or {}).get("label"), verify.get("scratch_dir"),
                            len(verify.get("would_check") or []), verify.get("record")))
        from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import confirmation

        plan = confirmation(will_change=will)
    action = "backup" if backup or runbook == "pg_backup" else "verify_restore" if verify else \
        "restore_in_place" if in_place or runbook == "pg_restore_in_place" else "restore_scratch"
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import point_of_no_return_passed

    return envelope(runbook, action=action,
                    completed=completed, check_mode=check_mode, did=did, end=steps.get("end_state"),
                    lock_key=(steps.get("lock") or {}).get("key"), details=details, plan=plan,
                    passed_point_of_no_return=point_of_no_return_passed(meta, not check_mode and bool(
                        in_place and (in_place.get("archived_before_stop") or in_place.get("proof")
                                      or in_place.get("action") == "finish"))))


def in_place_end_state(end_state, cluster, new_timeline):
    """The end state of a restore in place: the rejoin's ({ok, problems} of the failover plan's end_state: one
    writable primary, every other member streaming from it) and every reachable member on the timeline the restore
    made. {} when there is no end state to judge (check mode, a run that stopped before it)."""
    if not end_state:
        return {}
    problems = list(end_state.get("problems") or [])
    for name, node in sorted(((cluster or {}).get("nodes") or {}).items()):
        if node.get("reachable") and str(node.get("timeline")) != str(new_timeline):
            problems.append("%s is on timeline %s, expected the restore's new timeline %s"
                            % (name, node.get("timeline"), new_timeline))
    return dict(end_state, ok=not problems, problems=problems)


def _in_place_details(in_place, cluster):
    """The restore in place's facts, and each member's role, timeline and upstream as read after the rejoin."""
    found = dict((key, in_place.get(key)) for key in (
        "action", "target", "backup", "wal", "data_dir", "from_timeline", "new_timeline", "proof", "found_done",
        "archived_before_stop", "repository"))
    nodes = (cluster or {}).get("nodes") or {}
    found["members_after"] = dict((name, dict((key, node.get(key)) for key in (
        "role", "timeline", "upstream", "streaming", "writable"))) for name, node in sorted(nodes.items()))
    return found


def _in_place_will(in_place):
    if in_place.get("action") == "done":
        return []
    return ["stop the primary (%s, timeline %s), restore backup %s into its data directory (pgBackRest --delta) "
            "replayed to %s, promote it on a new timeline; then every standby rejoins it (pg_rewind)" % (
                in_place.get("data_dir"), in_place.get("from_timeline"), (in_place.get("backup") or {}).get("label"),
                describe_target(in_place.get("target") or {}))]
