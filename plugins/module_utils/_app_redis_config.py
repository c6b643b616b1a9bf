# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logic of erlmcp.dr.app_redis_config: the application's Redis endpoint file, from the live deployment.

content() is pure (unit-tested): from an erlmcp.dr.redis_info result it builds
{"redis": {"primary": "host:port", "replicas": [...], "primary_node": name, "replica_nodes": [...]}}, the replicas
being the nodes that replicate from the primary now with their link up. run() writes it atomically (temp file,
fsync, rename), keeping the version it replaces as <path>.previous - the same writer as app_db_config.
"""

from __future__ import annotations

import os

from ansible_collections.erlmcp.dr.plugins.module_utils._app_config import PREVIOUS_SUFFIX, parse_mode, render
from ansible_collections.erlmcp.dr.plugins.module_utils._files import write_atomic
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import ModuleFailure


def _endpoint(facts):
    return "%s:%s" % (facts.get("host"), facts.get("port"))


def content(info):
    """The config dict for a redis_info result; ModuleFailure without exactly one reachable primary."""
    nodes = (info or {}).get("nodes") or {}
    primaries = list((info or {}).get("primaries") or [])
    primary = (info or {}).get("primary")
    if not primary or primary not in nodes or len(primaries) > 1:
        raise ModuleFailure("no single Redis primary to point the application at: found primaries [%s], expected "
                            "exactly one (info: pass the result of erlmcp.dr.redis_info taken after the change)"
                            % ", ".join(primaries))
    replicas = sorted(name for name, facts in nodes.items()
                      if name != primary and facts.get("reachable") and facts.get("role") == "replica"
                      and facts.get("upstream") == primary and facts.get("link_status") == "up")
    return {"redis": {
        "primary": _endpoint(nodes[primary]),
        "replicas": [_endpoint(nodes[name]) for name in replicas],
        "primary_node": primary,
        "replica_nodes": replicas,
    }}


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def run(params, check_mode=False, diff=False, warn=None):
    """Write params['path'] from params['info']; changed only when the content (or mode) differs."""
    import json

    path = os.path.abspath(params["path"])
    mode = parse_mode(params.get("mode") or "0644")
    config = content(params["info"])
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ModuleFailure("the folder %s does not exist: expected an existing folder for the application's Redis "
                            "config (path)" % folder, config=config, path=path)
    new_text = render(config)
    old_text = _read(path)
    mode_differs = old_text is not None and (os.stat(path).st_mode & 0o7777) != mode
    changed = old_text != new_text or mode_differs
    try:
        previous = json.loads(old_text) if old_text is not None else None
    except ValueError:
        previous = old_text
    result = dict(changed=changed, path=path, config=config, previous=previous,
                  previous_path=path + PREVIOUS_SUFFIX if old_text is not None and old_text != new_text else None)
    if diff:
        result["diff"] = dict(before=old_text or "", after=new_text, before_header=path, after_header=path)
    if not changed or check_mode:
        result["msg"] = "%s %s" % (path, "would change" if changed else "already names primary %s"
                                   % config["redis"]["primary_node"])
        return result
    if old_text is not None and old_text != new_text:
        write_atomic(path + PREVIOUS_SUFFIX, old_text, os.stat(path).st_mode & 0o7777)
    if old_text != new_text:
        write_atomic(path, new_text, mode)
    else:
        os.chmod(path, mode)
    result["msg"] = "%s now names Redis primary %s and replicas [%s]" % (
        path, config["redis"]["primary_node"], ", ".join(config["redis"]["replica_nodes"]))
    return result
