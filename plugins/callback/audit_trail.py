# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback plugin erlmcp.dr.audit_trail: the audit trail of a runbook started by plain ansible-playbook or AWX."""

from __future__ import annotations

DOCUMENTATION = r"""
name: audit_trail
type: notification
short_description: Appends a runbook's start, each change and its end to the erlmcp.dr audit trail
version_added: 0.1.0
description:
  - Appends to the hash-chained audit trail the runbook CLI writes (C($ERLMCP_DR_HOME/audit/audit.jsonl), else the
    source checkout's C(.runs/audit/audit.jsonl), else C(~/.local/state/erlmcp-dr/audit/audit.jsonl)), so a runbook
    run by plain C(ansible-playbook) or as an AWX job leaves the same records as one run by the C(runbook) CLI -
    C(run_start) (runbook, parameters with C(no_log) ones masked, check mode, inventory, limit), one C(step) per
    task that changed something, C(run_end) (result, rc, failing step, hosts changed) - each with C(entry_point)
    C(ansible-playbook) or C(awx).
  - Records only playbooks whose first play declares C(vars.runbook) (the collection's runbooks).
  - Quiet when the C(runbook) CLI or the Python API started the playbook (they set C(ERLMCP_DR_AUDIT_WRITER) and
    record the run themselves), so no event is recorded twice.
  - With C(ERLMCP_DR_AUDIT_KEY_FILE) (or C(ERLMCP_DR_AUDIT_KEY)) set, each record carries an HMAC.
  - A record that cannot be written is a warning; it never fails the run.
  - Enable it with C(callbacks_enabled = erlmcp.dr.audit_trail) in C(ansible.cfg) (the repository's ansible.cfg,
    which AWX reads from the project root, does) or C(ANSIBLE_CALLBACKS_ENABLED=erlmcp.dr.audit_trail).
requirements:
  - enabled in callbacks_enabled
"""

import os
import time

from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common import audit as _audit
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock

REDACTED = "********"
_DROPPED_RESULT_KEYS = frozenset({"invocation", "changed", "failed", "msg", "diff"})
_COLLECTION_PREFIX = "erlmcp.dr."
ACTIVE_ENV = "ERLMCP_DR_AUDIT_CALLBACK"  # set while this callback records a run (workers inherit it)


def entry_point(extra_vars, environ=None):
    """`awx` for an AWX (or Ansible Tower) job, which passes awx_job_id / tower_job_id and JOB_ID; else
    `ansible-playbook`."""
    environ = os.environ if environ is None else environ
    if extra_vars.get("awx_job_id") or extra_vars.get("tower_job_id") or environ.get("JOB_ID"):
        return "awx"
    return "ansible-playbook"


def operator_of(extra_vars):
    """Who runs it beside the OS user: erlmcp_dr_operator when given, else the AWX user who launched the job."""
    for name in ("erlmcp_dr_operator", "awx_user_name", "tower_user_name"):
        value = extra_vars.get(name)
        if value:
            return str(value)
    return None


def run_id_of(extra_vars, pid=None):
    """erlmcp_dr_run_id when given, else the run id erlmcp.dr.run_lock gives this ansible-playbook process: the
    trail's records and the lock holder name the same run."""
    given = extra_vars.get("erlmcp_dr_run_id")
    if given:
        return str(given)
    return _lock.playbook_run_id(os.getpid() if pid is None else pid)


def parameters_of(spec, extra_vars):
    """The runbook's parameters given as extra vars, no_log ones masked; with the secret values (to scrub)."""
    values, secrets = {}, []
    for name, options in (spec or {}).items():
        if name not in extra_vars:
            continue
        value = extra_vars[name]
        if isinstance(options, dict) and options.get("no_log"):
            if value not in (None, ""):
                secrets.append(str(value))
            value = REDACTED
        values[name] = value
    return values, secrets


def scrubbed(value, secrets):
    """`value` (JSON-able) with every secret string replaced, at any depth."""
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return dict((key, scrubbed(item, secrets)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [scrubbed(item, secrets) for item in value]
    return value


def before_after(action, res):
    """An erlmcp.dr module's diff as {'before': ..., 'after': ...} (lists for a loop), else {}."""
    if not action.startswith(_COLLECTION_PREFIX):
        return {}
    diffs = res.get("diff")
    diffs = [diffs] if isinstance(diffs, dict) else diffs
    if not isinstance(diffs, list):
        return {}
    pairs = [item for item in diffs if isinstance(item, dict) and ("before" in item or "after" in item)]
    if not pairs:
        return {}
    if len(pairs) == 1:
        return {"before": pairs[0].get("before"), "after": pairs[0].get("after")}
    return {"before": [pair.get("before") for pair in pairs], "after": [pair.get("after") for pair in pairs]}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "erlmcp.dr.audit_trail"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.quiet = os.environ.get(_audit.WRITER_ENV) == "runner"
        self.run = None  # the run being recorded: set at the first play when it is a runbook's
        self.started = time.monotonic()
        self.failing_step = None
        self.changed_hosts = set()

    # -------------------------------------------------------- events

    def v2_playbook_on_play_start(self, play):
        if self.quiet or self.run is not None:
            return
        spec = (play.vars or {}).get("runbook")
        if not isinstance(spec, dict):
            self.quiet = True  # not a runbook: nothing to record
            return
        manager = play.get_variable_manager()
        extra_vars = dict(manager.extra_vars) if manager is not None else {}
        parameters, secrets = parameters_of(spec.get("parameters"), extra_vars)
        self.run = {
            "run_id": run_id_of(extra_vars), "runbook": self._runbook_name(play),
            "operator": operator_of(extra_vars), "check": bool(context.CLIARGS.get("check")),
            "entry_point": entry_point(extra_vars), "secrets": secrets,
        }
        os.environ[ACTIVE_ENV] = self.run["run_id"]
        inventory = ",".join(str(item) for item in context.CLIARGS.get("inventory") or ())
        self._append(_audit.run_start(self.run["run_id"], self.run["runbook"], parameters, self.run["check"],
                                      self.run["operator"], inventory, context.CLIARGS.get("subset"),
                                      self.run["entry_point"]))

    def v2_runner_on_ok(self, result):
        if self.run is None or self.quiet or self.run["check"]:
            return
        res = result.result
        if not res.get("changed"):
            return
        task, host = result.task, result.host.get_name()
        action = str(task.resolved_action or task.action or "")
        self.changed_hosts.add(host)
        facts = {}
        if action.startswith(_COLLECTION_PREFIX):
            facts = dict((key, value) for key, value in res.items()
                         if key not in _DROPPED_RESULT_KEYS and not str(key).startswith("_ansible"))
        step = {"task": task.get_name(), "host": host, "action": action, "status": "changed", "data": facts}
        pair = before_after(action, res)
        record = _audit.step_record(self.run["run_id"], self.run["runbook"], step, self.run["operator"], (),
                                    pair.get("before"), pair.get("after"), self.run["entry_point"])
        self._append(record)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if self.run is not None and not ignore_errors:
            self.failing_step = "%s on %s" % (result.task.get_name(), result.host.get_name())

    def v2_runner_on_unreachable(self, result):
        if self.run is not None:
            self.failing_step = "%s on %s (unreachable)" % (result.task.get_name(), result.host.get_name())

    def v2_playbook_on_stats(self, stats):
        if self.run is None or self.quiet:
            return
        failed = any(stats.failures.get(host) or stats.dark.get(host) for host in stats.processed)
        rc = 2 if failed else 0  # ansible-playbook's own: 2 when a host failed, 4 when one was unreachable
        if any(stats.dark.get(host) for host in stats.processed):
            rc = 4
        self._append(_audit.run_end(
            self.run["run_id"], self.run["runbook"], self.run["operator"], "failed" if failed else "successful",
            rc, self.run["check"], round(time.monotonic() - self.started, 3), self.failing_step,
            [] if self.run["check"] else sorted(self.changed_hosts), self.run["entry_point"]))
        os.environ.pop(ACTIVE_ENV, None)

    # -------------------------------------------------------- helpers

    @staticmethod
    def _runbook_name(play):
        """The playbook's file name without .yml: the runbook's name, as the runbook CLI records it."""
        path = ""
        try:
            path = play.get_path() or ""
        except Exception:  # a play without a data source: fall back on its name
            path = ""
        base = os.path.basename(path.split(":")[0]) if path else ""
        return os.path.splitext(base)[0] if base else str(play.get_name())

    def _append(self, record):
        record = scrubbed(record, self.run["secrets"] if self.run else [])
        try:
            _audit.append(record)
        except Exception as exc:  # a recovery does not stop for its paper trail
            self._display.warning("erlmcp.dr.audit_trail: could not append the %s record of run %s to %s: %s" % (
                record.get("kind"), record.get("run_id"), _audit.default_audit_path(), exc))
