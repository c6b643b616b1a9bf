#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_fence
short_description: Stop a PostgreSQL server from taking writes (fence it), or undo that
version_added: "0.1.0"
description:
  - Fences a PostgreSQL server so that it stops taking writes, before a standby is promoted in its place,
    or unfences it.
  - O(method=stop) (what the runbooks use unless told otherwise) runs on the database host itself and stops the
    server with a fast shutdown (C(pg_ctl stop -m fast)), then reads the shutdown checkpoint from
    C(pg_controldata) and returns it as RV(final_lsn) with its timeline as RV(final_timeline). A switchover waits
    for the candidate to replay up to RV(final_lsn) before promoting it. Unfencing starts the server again.
  - O(method=read_only) only speaks SQL (it can run from the controller) and does not restart anything. It runs
    C(ALTER SYSTEM SET default_transaction_read_only = on) and C(pg_reload_conf), waits until the new value is
    in effect, then terminates every other client backend (not WAL senders, not its own session) so that no
    open session keeps writing. Unfencing runs C(ALTER SYSTEM RESET default_transaction_read_only) and reloads.
  - B(What read_only does NOT stop.) C(default_transaction_read_only) is only a default - any session,
    including the application's, may run C(SET default_transaction_read_only = off) or
    C(SET TRANSACTION READ WRITE) (or C(BEGIN READ WRITE)) and write anyway; superusers can also run
    C(ALTER SYSTEM RESET) themselves. It does not stop sessions that connect after the fence from doing so,
    and it does not stop WAL from being written by the server itself (checkpoints, autovacuum). It is a guard
    against well-behaved clients, not a fence against a split brain. Runbooks fence with O(method=stop) unless
    told otherwise.
  - With O(method=stop) and O(login_port) given (the runbooks always give it), the module first checks that
    O(data_dir) is the server at O(login_host):O(login_port) - the port in its C(postmaster.pid) (in its config
    files when it is stopped), and the data directory and system identifier that server reports over SQL when it
    can be read - and refuses, naming both, before it stops or starts anything. A stopped O(data_dir) while a server
    answers at O(login_host):O(login_port) is refused too, since that server would not be fenced.
  - Idempotent both ways; supports check mode (reports what it would do, touches nothing) and diff mode
    (fenced before and after).
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
options:
  state:
    description:
      - V(fenced) stops writes; V(unfenced) undoes it.
    type: str
    choices: [fenced, unfenced]
    default: fenced
  login_port:
    description:
      - Port of the server. For O(method=read_only), the server to fence (default 5432).
      - For O(method=stop), the port the run read the server at, whose server O(data_dir) must be (see the
        description); without it no such check is made.
    type: int
    default: null
  method:
    description:
      - V(stop) stops (and for V(unfenced) starts) the server on this host; it needs O(data_dir) and uses the login
        options only to check that O(data_dir) is the server at O(login_host):O(login_port).
      - V(read_only) sets C(default_transaction_read_only) over SQL and terminates client sessions; it uses the
        login options and ignores O(data_dir), O(bin_dir) and O(log_file). See the description for what it does
        not stop.
    type: str
    choices: [stop, read_only]
    default: stop
  data_dir:
    description:
      - The server's data directory (for O(method=stop)). Commands run as its owner when the module runs as root.
    type: path
  bin_dir:
    description:
      - Folder holding C(pg_ctl) and C(pg_controldata); default is the usual install path of PostgreSQL 15, or PATH.
    type: path
  log_file:
    description:
      - Server log file given to C(pg_ctl start) when unfencing with O(method=stop); default is
        C(pg_ctl_start.log) in O(data_dir).
    type: path
  wait_timeout:
    description:
      - Seconds to wait for the server to stop or start (O(method=stop)), or for the setting to take effect
        and the terminated sessions to end (O(method=read_only)).
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reports what it would do (and, for O(method=read_only), which sessions it would terminate); touches
      nothing.
  diff_mode:
    support: full
    description: Shows whether the server is fenced before and after.
notes:
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
  - Unfencing with O(method=stop) starts the server as it is. Starting a former primary after a standby was
    promoted in its place makes two primaries; rejoin it as a standby instead (the database_rejoin runbook).
"""

EXAMPLES = r"""
- name: Fence the old primary by stopping it (runs on the database host)
  erlmcp.dr.pg_fence:
    state: fenced
    method: stop
    data_dir: "{{ pg_data_dir }}"
    bin_dir: "{{ pg_bin_dir }}"
  register: fence

- name: The switchover waits for the candidate to replay up to this
  ansible.builtin.debug:
    msg: "old primary ended at {{ fence.final_lsn }} on timeline {{ fence.final_timeline }}"

- name: Make the primary read-only without a restart (well-behaved clients only)
  erlmcp.dr.pg_fence:
    state: fenced
    method: read_only
    login_host: "{{ pg_host }}"
    login_port: "{{ pg_port }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
  delegate_to: localhost

- name: Take writes again
  erlmcp.dr.pg_fence:
    state: unfenced
    method: read_only
    login_host: "{{ pg_host }}"
    login_port: "{{ pg_port }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
  delegate_to: localhost
"""

RETURN = r"""
state:
  description: O(state) as asked.
  returned: always
  type: str
  sample: fenced
method:
  description: O(method) as asked.
  returned: always
  type: str
  sample: stop
was_fenced:
  description: Whether the server was fenced before the module ran (stopped, or C(default_transaction_read_only) on).
  returned: always
  type: bool
fenced:
  description: Whether the server is fenced now (in check mode, whether it would be).
  returned: always
  type: bool
was_running:
  description: Whether the server was running (O(method=stop)) or reachable (O(method=read_only)) before.
  returned: always
  type: bool
running:
  description: Whether the server is running now (O(method=stop); in check mode, whether it would be).
  returned: when O(method=stop)
  type: bool
final_lsn:
  description:
    - The shutdown checkpoint location (C(pg_controldata) "Latest checkpoint location") of the stopped server,
      where its WAL ended. Null while it runs (in check mode, or after unfencing).
  returned: when O(method=stop)
  type: str
  sample: 0/5000028
final_timeline:
  description: The timeline of that checkpoint (C(pg_controldata) "Latest checkpoint's TimeLineID").
  returned: when O(method=stop)
  type: int
  sample: 1
cluster_state:
  description:
    - C(pg_controldata) "Database cluster state" (C(shut down), C(shut down in recovery), C(in production) ...).
  returned: when O(method=stop)
  type: str
clean_shutdown:
  description: Whether the stopped server was shut down cleanly, so RV(final_lsn) is where its WAL ends.
  returned: when O(method=stop)
  type: bool
terminated_sessions:
  description: The client sessions terminated by a V(read_only) fence (or that would be, in check mode).
  returned: when O(method=read_only)
  type: list
  elements: dict
  contains:
    pid:
      description: Backend process id.
      type: int
    usename:
      description: Role of the session.
      type: str
    datname:
      description: Database of the session.
      type: str
    application_name:
      description: Its C(application_name).
      type: str
    client_addr:
      description: Client address.
      type: str
    state:
      description: Its C(pg_stat_activity.state).
      type: str
role:
  description: C(primary) or C(standby), for O(method=read_only).
  returned: when O(method=read_only)
  type: str
current_lsn:
  description: C(pg_current_wal_lsn) after the read_only fence (null on a standby).
  returned: when O(method=read_only)
  type: str
fence_seconds:
  description: Seconds the module took.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.fence import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, connection_argument_spec  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        state=dict(type="str", choices=["fenced", "unfenced"], default="fenced"),
        method=dict(type="str", choices=["stop", "read_only"], default="stop"),
        data_dir=dict(type="path"),
        bin_dir=dict(type="path"),
        log_file=dict(type="path"),
        # no default: method=stop checks the data directory against login_port only when the caller names it
        login_port=dict(type="int"),
        wait_timeout=dict(type="int", default=60),
    )
    return spec


REQUIRED_IF = [("method", "stop", ("data_dir",))]


def needs_psycopg(params):
    """method=stop drives pg_ctl and needs no psycopg."""
    return params["method"] == "read_only"


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, required_if=REQUIRED_IF)
    execute(module, run, needs=POSTGRES if needs_psycopg(module.params) else ())


if __name__ == "__main__":
    main()
