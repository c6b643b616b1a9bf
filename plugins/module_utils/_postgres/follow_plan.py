# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decisions of erlmcp.dr.pg_standby_follow: no I/O, no driver import; unit-tested.

What to do with a node (none / follow / rewind) from facts (role, timeline, WAL position, the
primary's timeline history), the passfile line a standby reads its replication password from,
and masking/condensing what is shown to the operator. Private to the collection: the API may
change between releases.
"""

from __future__ import annotations

import re

from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import format_lsn, parse_lsn

METHODS = ("auto", "follow", "rewind")
MASK = "********"
REWIND_OUTPUT_CHARS = 800


class FollowError(ModuleFailure):
    """A failure to report as is, with the facts gathered so far (never a secret)."""


_PASSWORD_RE = re.compile(r"(\bpassword\s*=\s*)('(?:\\.|[^'\\])*'|[^\s']+)", re.IGNORECASE)


def mask_conninfo(text):
    """A libpq conninfo string with its password replaced by ********; None stays None."""
    if text is None:
        return None
    return _PASSWORD_RE.sub(lambda m: m.group(1) + "'" + MASK + "'", text)


def divergence(node_tli, node_lsn, primary_tli, history):
    """Has the node's WAL gone where the primary's history never went?

    Returns (True, why) when following is impossible (pg_rewind is needed), (False, why) when
    the node can follow, (None, why) when the facts do not tell (history or position unknown).
    node_lsn is the furthest WAL the node holds (received or replayed), as text or int.
    """
    if node_tli is None or primary_tli is None:
        return None, "timeline unknown"
    node_tli, primary_tli = int(node_tli), int(primary_tli)
    if node_tli == primary_tli:
        return False, "the node is on the primary's timeline %d" % primary_tli
    if node_tli > primary_tli:
        return True, "the node is on timeline %d, newer than the primary's %d" % (node_tli, primary_tli)
    if history is None:
        return None, "the primary's timeline history could not be read"
    switchpoints = dict(history)
    if node_tli not in switchpoints:
        return True, "the node's timeline %d is not in the primary's history (timeline %d)" % (node_tli, primary_tli)
    position = parse_lsn(node_lsn) if isinstance(node_lsn, str) else node_lsn
    if position is None:
        return None, "the node's WAL position is unknown"
    fork = switchpoints[node_tli]
    if position > fork:
        return True, "the node has WAL up to %s on timeline %d, past %s where the primary's timeline %d forked off" % (
            format_lsn(position), node_tli, format_lsn(fork), primary_tli)
    return False, "the node (at %s on timeline %d) is behind the fork at %s: it can follow onto timeline %d" % (
        format_lsn(position), node_tli, format_lsn(fork), primary_tli)


def clean_stop_divergence(cluster_state, checkpoint_lsn, node_tli, primary_tli, history):
    """divergence() for a stopped node, from its pg_controldata: only a primary's clean shutdown (cluster state
    'shut down') says where its WAL ends - its shutdown checkpoint is its last record. The primary's timeline
    forked at a record boundary, so the node is behind the fork when that checkpoint record starts before it
    (then it ends at or before it): the node's WAL counts as one byte past the checkpoint's start.
    Any other state (a crash, a standby's shutdown) gives (None, why): pg_rewind decides."""
    if cluster_state != "shut down":
        return None, "its cluster state is %r, not a clean shutdown: its WAL end is unknown" % (cluster_state,)
    position = parse_lsn(checkpoint_lsn) if isinstance(checkpoint_lsn, str) else checkpoint_lsn
    if position is None:
        return None, "its last checkpoint location is unknown"
    return divergence(node_tli, position + 1, primary_tli, history)


# pg_controldata's cluster states of a server that ran as a primary (a standby's are "in archive recovery" and
# "shut down in recovery").
PRIMARY_CLUSTER_STATES = ("in production", "shut down", "shutting down")


def _position(lsn):
    return parse_lsn(lsn) if isinstance(lsn, str) else lsn


def _forks(history):
    return ", ".join("timeline %d until %s" % (tli, format_lsn(point)) for tli, point in history) or "none"


def split_brain(node_tli, primary_tli, *, ran_as_primary=None, node_lsn=None, primary_lsn=None, node_history=None,
                primary_history=None):
    """Why the node diverged from the primary ON THE PRIMARY'S TIMELINE, or None when nothing says so.

    Only a promotion makes a timeline, so a second server that ran as a primary on the primary's timeline got there
    by a promotion of its own (or as a copy started as a primary): both wrote WAL the other lacks. pg_rewind cannot
    see it: it compares timeline ids, finds them equal and reports "no rewind required". What tells:
    ran_as_primary (how we know it ran as one: "runs", "last ran (cluster state 'shut down')"); its WAL reaching
    past the primary's current WAL end (node_lsn > primary_lsn: WAL the primary never wrote); its history of the
    timeline differing from the primary's (two promotions made the same timeline id). Unknown facts (None) say
    nothing. A node on another timeline is divergence()'s case, which pg_rewind handles.
    """
    if node_tli is None or primary_tli is None or int(node_tli) != int(primary_tli):
        return None
    tli = int(primary_tli)
    if ran_as_primary:
        return ("it %s as a primary on timeline %d, the primary's own timeline: two servers took writes on one "
                "timeline (split brain)" % (ran_as_primary, tli))
    node_pos, primary_pos = _position(node_lsn), _position(primary_lsn)
    if node_pos is not None and primary_pos is not None and node_pos > primary_pos:
        return ("its WAL reaches %s on timeline %d, past the primary's current WAL end %s: it holds WAL the primary "
                "never wrote (split brain)" % (format_lsn(node_pos), tli, format_lsn(primary_pos)))
    if node_history is not None and primary_history is not None and list(node_history) != list(primary_history):
        return ("its history of timeline %d (%s) is not the primary's (%s): two promotions made timeline %d "
                "(split brain)" % (tli, _forks(node_history), _forks(primary_history), tli))
    return None


def split_brain_refusal(why):
    """The refusal for a node split_brain() found diverged, naming the parameter that re-clones it."""
    return ("it diverged from the primary: %s. pg_rewind cannot repair this (it compares timeline ids, finds them "
            "equal and rewinds nothing), so it is not rejoined and nothing was changed. Rejoining it means "
            "re-cloning it from the primary, which discards what only this node has: save what you need from it, "
            "then set allow_reclone=true (its data directory is kept aside as <data_dir>.diverged-<UTC time>)" % why)


def same_host(a, b):
    return str(a or "").strip().lower() == str(b or "").strip().lower()


def is_following(receiver, host, port, timeline):
    """The WAL receiver streams from host:port on the given timeline."""
    if not receiver or receiver.get("status") != "streaming":
        return False
    return (same_host(receiver.get("sender_host"), host) and receiver.get("sender_port") == int(port)
            and receiver.get("received_tli") == int(timeline))


def upstream_of(receiver):
    if not receiver or not receiver.get("sender_port"):
        return None
    return "%s:%s" % (receiver.get("sender_host"), receiver.get("sender_port"))


class Plan(object):
    """What to do: action 'none' | 'follow' | 'rewind' | 'reclone'.

    how: for follow, 'reload' (running standby, new primary_conninfo) or 'start' (start a stopped
    node as a standby); stop_first: the node runs and must be stopped; fallback: a follow that
    does not reach streaming falls back to rewind (method auto).
    """

    def __init__(self, action, reason, how=None, *, stop_first=False, fallback=False):
        self.action = action
        self.reason = reason
        self.how = how
        self.stop_first = stop_first
        self.fallback = fallback

    def __repr__(self):
        return "Plan(%r, how=%r, stop_first=%r, fallback=%r)" % (self.action, self.how, self.stop_first, self.fallback)


def choose_action(role, method, *, allow_stop_primary=False, already=False, diverged=None, why="", fenced=False,
                  split=None, allow_reclone=False):
    """Decide from the facts. role: 'primary' | 'standby' (both running) | 'stopped'.

    already: a running standby already streams from the primary on its timeline.
    diverged: divergence()'s verdict (True / False / None) for a running standby, or for a stopped node that was
    shut down cleanly as a primary (clean_stop_divergence()): False lets method auto start it as a standby without
    pg_rewind (falling back to pg_rewind if it does not stream).
    fenced: a running primary is fenced read-only (default_transaction_read_only on): it takes no
    writes, so it may be stopped and converted without allow_stop_primary.
    split: split_brain()'s finding: the node diverged on the primary's timeline; it is re-cloned (action
    'reclone', pg_basebackup) with allow_reclone, else refused - never rewound, which would change nothing.
    Raises FollowError when a precondition forbids any change.
    """
    if method not in METHODS:
        raise FollowError("method must be one of %s, not %r" % (", ".join(METHODS), method))
    if split:
        if not allow_reclone:
            raise FollowError(split_brain_refusal(split))
        if role == "primary" and not allow_stop_primary and not fenced:
            raise FollowError(
                "it diverged from the primary (%s) and is running as a PRIMARY with default_transaction_read_only "
                "off, so it may be taking writes: fence it first (erlmcp.dr.pg_fence) or set allow_stop_primary=true "
                "as well as allow_reclone=true" % split)
        return Plan("reclone", "diverged on the primary's timeline: %s" % split, stop_first=(role != "stopped"))
    if role == "standby":
        if already:
            return Plan("none", "already streaming from the primary on its timeline")
        if method == "rewind":
            return Plan("rewind", "method=rewind", stop_first=True)
        if diverged:
            if method == "follow":
                raise FollowError(
                    "cannot follow: %s; the node needs pg_rewind (method=rewind or method=auto)" % why)
            return Plan("rewind", "cannot follow: %s" % why, stop_first=True)
        return Plan("follow", why or "running standby", how="reload", fallback=(method == "auto"))
    if role == "primary":
        if not allow_stop_primary and not fenced:
            raise FollowError(
                "the node is running as a PRIMARY (not in recovery) with default_transaction_read_only off, so it "
                "may be taking writes: fence it first (erlmcp.dr.pg_fence, method stop or read_only) or set "
                "allow_stop_primary=true to let this module stop it")
        former = "a read-only fenced former primary" if fenced else "a former primary"
        if method == "follow":
            return Plan("follow", "method=follow: restart %s as a standby without pg_rewind" % former,
                        how="start", stop_first=True)
        return Plan("rewind", "%s: pg_rewind decides whether its history diverged" % former, stop_first=True)
    if role == "stopped":
        if method == "follow":
            return Plan("follow", "method=follow: start the stopped node as a standby without pg_rewind", how="start")
        if method == "auto" and diverged is False:
            return Plan("follow", "a cleanly shut down node: %s" % why, how="start", fallback=True)
        return Plan("rewind", "a stopped node: pg_rewind decides whether its history diverged")
    raise FollowError("unknown node role %r" % (role,))


def rewind_copied_bytes(text):
    """The bytes pg_rewind copied, from its last --progress line ("2048/2048 kB (100%) copied"); 0 when it printed
    none (no rewind required). failback's summary reports it: a rewind copies what diverged, a re-clone everything."""
    found = re.findall(r"(\d+)/\d+ kB \(\d+%\) copied", text or "")
    return int(found[-1]) * 1024 if found else 0


def short_rewind_output(text, limit=REWIND_OUTPUT_CHARS):
    """pg_rewind's own messages, without progress lines, cut to a few hundred characters."""
    lines = []
    for raw in re.split(r"[\r\n]+", text or ""):
        line = raw.strip()
        if not line or re.match(r"^\d+/\d+ kB \(\d+%\) copied", line):
            continue
        lines.append(line)
    out = "\n".join(lines)
    return out if len(out) <= limit else "..." + out[-(limit - 3):]


def rewind_errors(text):
    """The error lines of pg_rewind's output (its last line when it printed none), joined by '; '."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(error|fatal|FATAL|ERROR):", line)]
    return "; ".join(errors or lines[-1:]) or "no output"


def no_rewind_required(text):
    return "no rewind required" in (text or "")


# ---------------------------------------------------------------- the standby's passfile


def pgpass_escape(value):
    """A field of a .pgpass line: ':' and '\\' escaped with a backslash."""
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def pgpass_line(host, port, user, password):
    """The one line a standby's passfile holds: host:port:replication:user:password."""
    return ":".join(pgpass_escape(v) for v in (host, port, "replication", user, password)) + "\n"


def pgpass_fields(line):
    """Split a .pgpass line into its 5 fields (escapes undone); None for a comment or a malformed line."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields, current, escaped = [], [], False
    for ch in line.rstrip("\n"):
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields if len(fields) == 5 else None


def pgpass_password(text, user):
    """The replication password a passfile holds for user (any host), or None."""
    for line in (text or "").splitlines():
        fields = pgpass_fields(line)
        if fields and fields[2] in ("replication", "*") and fields[3] in (user, "*"):
            return fields[4]
    return None


def has_inline_password(conninfo_text):
    """Whether a primary_conninfo carries a password (PostgreSQL logs it on every reload that changes it)."""
    return bool(_PASSWORD_RE.search(conninfo_text or ""))


# -- which nodes one pg_standby_follow task can repoint together (its `nodes` option)

_CONNECTION_VARS = ("ansible_connection", "ansible_host", "ansible_port", "ansible_user", "ansible_become",
                    "ansible_become_user")


def _machine(name, hostvars):
    """What says where a node's task runs: every local node (local connection, no become) is this machine; any
    other node is a machine of its own unless it shares every connection variable with another."""
    host = hostvars.get(name) or {}
    if host.get("ansible_connection") == "local" and not host.get("ansible_become"):
        return ("local",)
    return tuple([name if key == "ansible_host" and not host.get(key) else host.get(key) for key in _CONNECTION_VARS])


def follow_groups(names, hostvars):
    """The nodes to repoint, grouped by the machine their task runs on, in the order given: a list of
    {'host': the first node's name (the task's delegate_to), 'nodes': [pg_standby_follow `nodes` entries]}."""
    groups, order = {}, []
    for name in names:
        host = hostvars.get(name) or {}
        machine = _machine(name, hostvars)
        if machine not in groups:
            groups[machine] = {"host": name, "nodes": []}
            order.append(machine)
        groups[machine]["nodes"].append({
            "name": name, "data_dir": host.get("pg_data_dir"), "bin_dir": host.get("pg_bin_dir"),
            "log_file": host.get("pg_log_file"), "login_host": host.get("pg_host") or name,
            "login_port": host.get("pg_port") or 5432})
    return [groups[machine] for machine in order]


def follow_refusals(registered):
    """'name: message' of each node the registered pg_standby_follow result refused before changing anything
    (refused: a diverged node, a data directory that is not the server at its port, ...), in order."""
    return ["%s: %s" % (item.get("item"), item.get("msg")) for item in follow_items(registered)
            if item.get("failed") and item.get("refused")]


def follow_items(registered):
    """One item per node from the registered result of a pg_standby_follow task, whether it looped over single
    nodes (results: one per node) or over groups of them (results: one per group, each with its nodes' results).
    A group that failed before any node ran (a connection or argument error) stands as one failed item."""
    items = []
    for entry in (registered or {}).get("results") or [registered or {}]:
        if not isinstance(entry, dict) or not entry:
            continue
        if isinstance(entry.get("results"), list):
            items.extend(entry["results"])
        elif isinstance(entry.get("item"), dict) and "nodes" in entry["item"]:
            items.append(dict(entry, item=", ".join(node.get("name") or "?" for node in entry["item"]["nodes"])))
        else:
            items.append(entry)
    return items
