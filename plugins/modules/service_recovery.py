#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: service_recovery
short_description: Start one region's services in dependency order, each gated on its health check
version_added: "0.1.0"
description:
  - The order comes from the services' O(services[].depends_on) - each service starts as soon as its own
    dependencies answer healthy, so the services of one level (RV(levels)) start in parallel. An unknown name
    or a cycle is refused before anything is sampled or started, naming the path (C(auth -> api_gateway -> auth));
    check mode refuses the same way.
  - Level 0 is the region's database and Redis (O(backing)) - checked until they answer (O(backing_timeout)),
    never started.
  - Each service not healthy now has its O(services[].start_command) run, then its O(services[].health_url) is
    sampled every O(interval) seconds until the first healthy sample, within O(services[].start_timeout). The
    first failed gate stops the run - the gates still running are abandoned (C(unconfirmed)) and nothing more
    starts; the task fails and lists what is healthy, failed, unconfirmed and not started.
  - A service that answers healthy before the run is not started again, so a re-run starts only what is not
    healthy and, once every service is, changes nothing.
  - Runs in the controller (an action plugin); the start commands run there too.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  region:
    description: The region (dr_region) whose services these are; in messages and the result.
    type: str
    required: true
  services:
    description: The region's services.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The service's name, unique in the region (what depends_on names).
        type: str
        required: true
      start_command:
        description:
          - The command that starts it, a list of arguments (no shell), run on the controller; it must return
            once the service is launched (as C(systemctl start) does). Exit status 0 is success.
        type: list
        elements: str
        required: true
      health_url:
        description: An HTTP(S) URL that answers 200 when the service is healthy.
        type: str
        required: true
      depends_on:
        description: Names of services of the same region that must be healthy before this one starts.
        type: list
        elements: str
        default: []
      start_timeout:
        description: Seconds from the start command to the first healthy sample (the gate's deadline).
        type: float
        default: 60
  backing:
    description: The region's database and Redis nodes (level 0, checked, never started).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The node's inventory name.
        type: str
        required: true
      kind:
        description: What it is.
        type: str
        required: true
        choices: [postgres, redis]
      host:
        description: Host to connect to.
        type: str
        required: true
      port:
        description: Port to connect to.
        type: int
        required: true
  pg_login_user:
    description: PostgreSQL role to log in as (level 0 check).
    type: str
    default: postgres
  pg_login_password:
    description: Its password. Never logged, never returned.
    type: str
  pg_login_db:
    description: Database to connect to.
    type: str
    default: postgres
  redis_login_user:
    description: Redis ACL user (Redis 6+); omit for C(requirepass).
    type: str
  redis_password:
    description: Redis password. Never logged, never returned.
    type: str
  interval:
    description: Seconds between two health samples of one service (and of a level 0 node).
    type: float
    default: 1
  sample_timeout:
    description: Seconds one sample may take.
    type: float
    default: 2
  backing_timeout:
    description: Seconds the database and Redis get to answer before the run is refused.
    type: float
    default: 30
  validate_certs:
    description: Verify an https health URL's certificate.
    type: bool
    default: true
  ca_path:
    description: A PEM file of CA certificates for https health URLs.
    type: path
attributes:
  check_mode:
    support: full
    description: Samples (read-only) and returns the plan; starts nothing.
  diff_mode:
    support: none
    description: The plan is the result's RV(plan).
"""

EXAMPLES = r"""
- name: Start region b's services in dependency order
  erlmcp.dr.service_recovery:
    region: b
    services:
      - name: auth
        start_command: [systemctl, start, erlmcp-auth]
        health_url: http://10.0.2.10:8080/auth/health
        start_timeout: 60
      - name: api_gateway
        depends_on: [auth]
        start_command: [systemctl, start, erlmcp-gateway]
        health_url: http://10.0.2.11:8080/api/health
    backing:
      - {name: pg-b, kind: postgres, host: 10.0.2.20, port: 5432}
      - {name: redis-b, kind: redis, host: 10.0.2.21, port: 6379}
    pg_login_user: erlmcp_dr
    pg_login_password: "{{ vault_pg_password }}"
    redis_password: "{{ vault_redis_password }}"
"""

RETURN = r"""
region:
  description: The region.
  returned: always
  type: str
levels:
  description: The start levels, first to last (level 0, the database and Redis, is not listed).
  returned: always
  type: list
  elements: list
  sample: [[auth, session_manager], [api_gateway, resource_management]]
plan:
  description: C(levels), C(actions) (each service's C(start) or C(healthy)) and C(will_start), as found before.
  returned: always
  type: dict
services:
  description:
    - One row per service in start order - name, level, depends_on, action (C(already_healthy), C(started),
      C(not_started)), verdict, started_at and healthy_at (epoch seconds; healthy_at is the first healthy sample),
      samples, elapsed, error.
  returned: always
  type: list
  elements: dict
backing:
  description: The level 0 nodes checked, each with the seconds it took to answer.
  returned: always
  type: list
  elements: dict
started:
  description: The services this run started.
  returned: always
  type: list
  elements: str
healthy:
  description: The services healthy at the end.
  returned: always
  type: list
  elements: str
failed_services:
  description: The services whose gate failed (the first stops the run); the summary calls them C(failed).
  returned: always
  type: list
  elements: str
unconfirmed:
  description: Started, but their gate was abandoned when a sibling's failed.
  returned: always
  type: list
  elements: str
not_started:
  description: The services the run did not reach (empty in check mode).
  returned: always
  type: list
  elements: str
will_start:
  description: What the plan starts (every service not healthy before the run).
  returned: always
  type: list
  elements: str
ok:
  description: Whether every service ended healthy (true in check mode once the plan holds).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._services.recovery import run  # noqa: E402


def argument_spec():
    return dict(
        region=dict(type="str", required=True),
        services=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            start_command=dict(type="list", elements="str", required=True),
            health_url=dict(type="str", required=True),
            depends_on=dict(type="list", elements="str", default=[]),
            start_timeout=dict(type="float", default=60),
        )),
        backing=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            kind=dict(type="str", required=True, choices=["postgres", "redis"]),
            host=dict(type="str", required=True),
            port=dict(type="int", required=True),
        )),
        pg_login_user=dict(type="str", default="postgres"),
        pg_login_password=dict(type="str", no_log=True),
        pg_login_db=dict(type="str", default="postgres"),
        redis_login_user=dict(type="str"),
        redis_password=dict(type="str", no_log=True),
        interval=dict(type="float", default=1),
        sample_timeout=dict(type="float", default=2),
        backing_timeout=dict(type="float", default=30),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
    )


def needs_psycopg(params):
    return any(entry["kind"] == "postgres" for entry in params.get("backing") or [])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run, needs=POSTGRES if needs_psycopg(module.params) else ())


if __name__ == "__main__":
    main()
