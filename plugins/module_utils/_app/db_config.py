# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.app_db_config: the application's database config file, from the live cluster.

content() is pure (unit-tested): from an erlmcp.dr.pg_replication_info result it builds
{"database": {"primary": "host:port", "replicas": [...], "primary_node": name, "replica_nodes": [...]}},
the replicas being the standbys that stream from the primary now. run() writes it atomically (temp file,
fsync, rename), keeping the version it replaces as <path>.previous. Private to the collection: the API
may change between releases.
"""

from __future__ import annotations

import json
import os

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import replication_info as _replication_info
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.failover_plan import end_state, writes_wait
from ansible_collections.erlmcp.dr.plugins.module_utils._common.files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure

PREVIOUS_SUFFIX = ".previous"


def _endpoint(facts):
    return "%s:%s" % (facts.get("host"), facts.get("port"))


def _streams_from(facts, primary, primary_facts):
    """The standby streams from the primary now: by its upstream (identity), else by its WAL receiver's sender."""
    if facts.get("role") != "standby" or facts.get("foreign") or not facts.get("reachable", True):
        return False
    if "upstream" in facts:
        return facts.get("upstream") == primary and facts.get("streaming") is not False
    receiver = facts.get("wal_receiver") or {}
    return (receiver.get("status") == "streaming"
            and "%s:%s" % (receiver.get("sender_host"), receiver.get("sender_port")) == _endpoint(primary_facts))


def content(cluster):
    """The config dict for a pg_replication_info result; ModuleFailure without exactly one writable primary."""
    nodes = (cluster or {}).get("nodes") or {}
    if isinstance(nodes, list):
        nodes = dict((n.get("name"), n) for n in nodes)
    primaries = list((cluster or {}).get("primaries") or [])
    primary = (cluster or {}).get("primary")
    if not primary or primary not in nodes or len(primaries) > 1:
        fenced = (cluster or {}).get("fenced_primaries") or []
        raise ModuleFailure(
            "no single writable primary to point the application at: found writable primaries [%s]%s, expected "
            "exactly one (cluster: pass the result of erlmcp.dr.pg_replication_info taken after the promotion)"
            % (", ".join(primaries), "; read-only (fenced) primaries [%s]" % ", ".join(fenced) if fenced else ""))
    if nodes[primary].get("writable") is False:
        raise ModuleFailure("the primary %s is read-only (fenced): expected a writable primary (cluster)" % primary)
    replicas = sorted(name for name, facts in nodes.items()
                      if name != primary and _streams_from(facts, primary, nodes[primary]))
    return {"database": {
        "primary": _endpoint(nodes[primary]),
        "replicas": [_endpoint(nodes[name]) for name in replicas],
        "primary_node": primary,
        "replica_nodes": replicas,
    }}


def render(config):
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _parse(text):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_mode(mode):
    if isinstance(mode, int):
        return mode
    text = str(mode).strip()
    try:
        return int(text, 8)
    except ValueError:
        raise ModuleFailure("mode %r is not an octal file mode like '0644' (mode)" % (mode,)) from None


def run(params, check_mode=False, diff=False, warn=None):
    """Write params['path'] from params['cluster'] (or, with params['nodes'] instead, from a read of the cluster
    taken here, returned as `cluster`); changed only when the content (or mode) differs. With params['end_state'],
    also checks the end state on the same read and returns the verdict as `end_state`; with its `must_hold`, an end
    state that does not hold fails the task once the file is written (it follows the live primary either way)."""
    facts = {}
    cluster = params.get("cluster")
    if cluster is None:
        cluster = facts["cluster"] = _replication_info.run(params, check_mode=False, diff=False, warn=warn)
    if params.get("end_state"):
        facts["end_state"] = verdict(cluster, params["end_state"])
        facts["writes_wait"] = writes_wait(cluster, params["end_state"]["primary"])
        if facts["writes_wait"] and warn is not None:
            warn(facts["writes_wait"])
    try:
        result = write_endpoint_file(params["path"], params.get("mode"), content(cluster), check_mode, diff,
                                     what="the application's config", primary_label="primary",
                                     fencing_token=params.get("fencing_token"))
    except ModuleFailure as exc:
        exc.facts.update(facts)
        raise
    result.update(facts)
    wanted = params.get("end_state") or {}
    if wanted.get("must_hold") and not facts["end_state"]["ok"]:
        kept = dict((key, value) for key, value in result.items() if key != "msg")
        raise ModuleFailure("%s Meanwhile %s." % (not_held_message(facts["end_state"], wanted), result.get("msg")),
                            **kept)
    return result


def not_held_message(verdict_found, wanted):
    """What a runbook says when its end state does not hold: the problems, the other failures, how to finish."""
    parts = ["The end state does not hold: %s." % "; ".join(verdict_found.get("problems") or ["(no problem named)"])]
    also = [text for text in wanted.get("also") or () if text]
    if also:
        parts.append("; ".join(also).rstrip(".") + ".")
    if wanted.get("hint"):
        parts.append(wanted["hint"])
    return " ".join(parts)


def verdict(cluster, wanted):
    """The end state check of module_utils/_postgres/failover_plan.end_state ({ok, problems, primary}), as the filter
    erlmcp.dr.pg_end_state calls it (left_out: names, or the plan's {node: ...} entries)."""
    left_out = tuple(item["node"] if isinstance(item, dict) else item for item in wanted.get("left_out") or ())
    return end_state(cluster, wanted["primary"], fenced_ok=tuple(wanted.get("fenced_ok") or ()), left_out=left_out)


TOKEN_FIELD = "fencing_token"


def without_token(config):
    """config ({section: {...}}) without the fencing token its section may carry: what decides whether it changes."""
    if not isinstance(config, dict):
        return config
    return dict((name, dict((k, v) for k, v in section.items() if k != TOKEN_FIELD) if isinstance(section, dict)
                 else section) for name, section in config.items())


def write_endpoint_file(path, mode, config, check_mode, diff, what, primary_label, fencing_token=None):
    """Write config ({section: {primary_node, replica_nodes, ...}}) to path as JSON, atomically, keeping the version
    it replaces as <path>.previous; changed only when the content (or mode) differs. app_db_config and
    app_redis_config share it.

    fencing_token (the run lock's, when it is in etcd) is written into the section with a change, so the file says
    which lock holder wrote it (an application may ignore a config whose token is lower than one it saw); it never
    makes a change itself: a run that finds the content right leaves the file, and the token of its writer, alone."""
    path = os.path.abspath(path)
    mode = parse_mode(mode or "0644")
    section = config[next(iter(config))]
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ModuleFailure("the folder %s does not exist: expected an existing folder for %s (path)"
                            % (folder, what), config=config, path=path)
    old_text = _read(path)
    old_config = _parse(old_text)
    same_content = old_text is not None and render(without_token(old_config)) == render(config)
    if fencing_token is not None and not same_content:
        config = dict(config)
        config[next(iter(config))] = section = dict(section, **{TOKEN_FIELD: int(fencing_token)})
    new_text = old_text if same_content else render(config)
    mode_differs = old_text is not None and (os.stat(path).st_mode & 0o7777) != mode
    changed = old_text != new_text or mode_differs
    result = dict(changed=changed, path=path, config=_parse(new_text), previous=old_config,
                  previous_path=path + PREVIOUS_SUFFIX if old_text is not None and old_text != new_text else None)
    if diff:
        result["diff"] = dict(before=old_text or "", after=new_text, before_header=path, after_header=path)
    if not changed or check_mode:
        result["msg"] = "%s %s" % (path, "would change" if changed else "already names %s %s"
                                   % (primary_label, section["primary_node"]))
        return result
    if old_text is not None and old_text != new_text:
        write_atomic(path + PREVIOUS_SUFFIX, old_text, os.stat(path).st_mode & 0o7777)
    if old_text != new_text:
        write_atomic(path, new_text, mode)
    else:
        os.chmod(path, mode)
    result["msg"] = "%s now names %s %s and replicas [%s]" % (
        path, primary_label, section["primary_node"], ", ".join(section["replica_nodes"]))
    return result
