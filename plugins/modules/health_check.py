#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: health_check
short_description: Sample a service (HTTP, TCP, PostgreSQL, Redis) until it is confirmed healthy, failed or flapping
version_added: "0.1.0"
description:
  - Checks one service every O(interval) seconds until a verdict, and returns every sample (its UTC time, seconds
    since the first sample, latency, result and error) and the verdict.
  - C(healthy) once the last O(consecutive_successes) samples succeeded, C(failed) once the last
    O(consecutive_failures) samples failed (the default 3 is what a regional failover needs to confirm an outage).
    When O(timeout) passes before either, the verdict is C(flapping) if the samples disagreed, else C(healthy) or
    C(failed) with RV(confirmed) false (too few samples fitted).
  - Kinds - C(http) (the status is one of O(status_code) and the body matches O(body_match); TLS certificates are
    verified unless O(validate_certs=false)), C(tcp) (a connection is accepted), C(postgres) (a login succeeds;
    with O(expect_writable) the server must take writes or must not), C(redis) (PING answers; with
    O(expect_role) it must be a primary or a replica).
  - Read-only - it never changes anything; RV(ignore:changed) is always false and check mode runs the same.
  - A verdict does not fail the task unless it is listed in O(fail_on); settings that cannot reach a verdict
    (O(timeout) shorter than the samples the thresholds need) fail before the first sample, and a refused login
    (O(kind=postgres), O(kind=redis) - wrong O(login_user) or O(login_password)) fails at once, as a setting
    to fix rather than a verdict on the service.
  - When the target host is the controller itself (a local connection, no privilege escalation) the check runs
    in the controller's worker, with no module shipped.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  kind:
    description: What to check.
    type: str
    required: true
    choices: [http, tcp, postgres, redis]
  url:
    description:
      - The URL to GET (C(http://) or C(https://)). Required for O(kind=http).
      - A redirect is never followed (the check judges this URL, and sends nothing where a redirect says) - a 3xx
        answer is a failed sample naming its C(Location), unless O(status_code) lists it.
    type: str
  host:
    description: Host name or IP address to connect to. Required for O(kind=tcp), O(kind=postgres), O(kind=redis).
    type: str
  port:
    description: TCP port to connect to. Required for O(kind=tcp), O(kind=postgres), O(kind=redis).
    type: int
  login_user:
    description:
      - O(kind=postgres) - the role to log in as (default C(postgres)).
      - O(kind=redis) - the ACL user (Redis 6+); omit it for C(requirepass).
    type: str
  login_password:
    description: Password of O(login_user) (or Redis's C(requirepass)). Never logged, never returned.
    type: str
  login_db:
    description: Database to connect to (O(kind=postgres)).
    type: str
    default: postgres
  expect_writable:
    description:
      - O(kind=postgres) - V(true) counts a sample as failed unless the server takes writes (not in recovery and
        C(transaction_read_only) off); V(false) unless it does not. Omitted, a successful login is enough.
    type: bool
  expect_role:
    description: O(kind=redis) - count a sample as failed unless the server has this role.
    type: str
    choices: [primary, replica]
  status_code:
    description: O(kind=http) - the statuses that count as success.
    type: list
    elements: int
    default: [200]
  body_match:
    description: O(kind=http) - a regular expression the body must contain (Python C(re.search)).
    type: str
  validate_certs:
    description: O(kind=http) - verify the server's TLS certificate and host name. Set V(false) only for a test.
    type: bool
    default: true
  ca_path:
    description: O(kind=http) - a PEM file of CA certificates to verify the server with, instead of the system's.
    type: path
  interval:
    description: Seconds between the end of one sample and the start of the next.
    type: float
    default: 5
  timeout:
    description: Seconds after the first sample by which a verdict must be reached (the deadline).
    type: float
    default: 60
  sample_timeout:
    description: Seconds one sample may take (connect and answer) before it counts as failed.
    type: float
    default: 5
  consecutive_failures:
    description: Failed samples in a row that make the verdict C(failed).
    type: int
    default: 3
  consecutive_successes:
    description: Successful samples in a row that make the verdict C(healthy).
    type: int
    default: 2
  fail_on:
    description: Verdicts that fail the task (the result is returned either way).
    type: list
    elements: str
    choices: [healthy, failed, flapping]
    default: []
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
requirements:
  - psycopg >= 3 for O(kind=postgres), redis (redis-py) for O(kind=redis), on the host that runs the check
"""

EXAMPLES = r"""
- name: Confirm that region a's application is down (three failed checks 5 s apart)
  erlmcp.dr.health_check:
    kind: http
    url: https://app-a.example.com/health
    body_match: '"status": "ok"'
  register: app_a

- name: The primary takes writes
  erlmcp.dr.health_check:
    kind: postgres
    host: 10.0.1.10
    port: 5432
    login_user: erlmcp_dr
    login_password: "{{ vault_pg_password }}"
    expect_writable: true
    interval: 1
    timeout: 10

- name: The Redis primary answers as a primary, fail the task otherwise
  erlmcp.dr.health_check:
    kind: redis
    host: 10.0.1.20
    port: 6379
    login_password: "{{ vault_redis_password }}"
    expect_role: primary
    fail_on: [failed, flapping]

- name: Something listens on the port
  erlmcp.dr.health_check:
    kind: tcp
    host: 10.0.1.30
    port: 443
    consecutive_successes: 1
"""

RETURN = r"""
verdict:
  description: C(healthy), C(failed) or C(flapping).
  returned: always
  type: str
  sample: failed
confirmed:
  description: Whether the verdict's threshold was met; false when the deadline came first.
  returned: always
  type: bool
healthy:
  description: Whether the verdict is C(healthy).
  returned: always
  type: bool
kind:
  description: The kind checked.
  returned: always
  type: str
target:
  description: What was checked - the URL, or host:port (and the user logged in as); never a password.
  returned: always
  type: str
  sample: 127.0.0.1:5432 as erlmcp_dr
samples:
  description: Every sample, in order.
  returned: always
  type: list
  elements: dict
  contains:
    n:
      description: The sample's number, from 1.
      type: int
    at:
      description: When it started (UTC, ISO 8601).
      type: str
    elapsed:
      description: Seconds from the first sample's start to this one's.
      type: float
    latency_ms:
      description: How long the sample took, in milliseconds.
      type: float
    ok:
      description: Whether the sample succeeded.
      type: bool
    error:
      description: Why it failed, naming the option to change where one applies; null when it succeeded.
      type: str
    error_kind:
      description: For O(kind=postgres) and O(kind=redis) when the login failed - C(auth), C(refused), C(timeout),
        C(dns) or C(other).
      type: str
    status:
      description: The HTTP status (O(kind=http)), when one was received.
      type: int
    reachable:
      description: Whether the login succeeded (O(kind=postgres), O(kind=redis)).
      type: bool
    writable:
      description: Whether PostgreSQL takes writes (O(kind=postgres)); null when unreachable.
      type: bool
    in_recovery:
      description: Whether PostgreSQL is a standby (O(kind=postgres)).
      type: bool
    role:
      description: C(primary) or C(replica) (O(kind=redis)); null when unreachable.
      type: str
  sample:
    - n: 1
      at: "2026-01-01T00:00:00.000Z"
      elapsed: 0.0
      latency_ms: 1.2
      ok: false
      status: 503
      error: "HTTP status 503, expected 200 (status_code); body starts 'boom'"
sample_count:
  description: How many samples were taken.
  returned: always
  type: int
successes:
  description: How many samples succeeded.
  returned: always
  type: int
failures:
  description: How many samples failed.
  returned: always
  type: int
elapsed:
  description: Seconds from the first sample to the verdict.
  returned: always
  type: float
last_error:
  description: The last failed sample's error; null when none failed.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._region.health import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402

REQUIRED_IF = [
    ("kind", "http", ("url",)),
    ("kind", "tcp", ("host", "port")),
    ("kind", "postgres", ("host", "port")),
    ("kind", "redis", ("host", "port")),
]


def argument_spec():
    return dict(
        kind=dict(type="str", required=True, choices=["http", "tcp", "postgres", "redis"]),
        url=dict(type="str"),
        host=dict(type="str"),
        port=dict(type="int"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_db=dict(type="str", default="postgres"),
        expect_writable=dict(type="bool"),
        expect_role=dict(type="str", choices=["primary", "replica"]),
        status_code=dict(type="list", elements="int", default=[200]),
        body_match=dict(type="str"),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        interval=dict(type="float", default=5),
        timeout=dict(type="float", default=60),
        sample_timeout=dict(type="float", default=5),
        consecutive_failures=dict(type="int", default=3),
        consecutive_successes=dict(type="int", default=2),
        fail_on=dict(type="list", elements="str", choices=["healthy", "failed", "flapping"], default=[]),
    )


def needs_psycopg(params):
    return params.get("kind") == "postgres"


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    execute(module, run)  # the engine names the driver its kind needs when it is missing


if __name__ == "__main__":
    main()
