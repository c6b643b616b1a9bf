#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dns_record
short_description: Change one DNS record set, guarded by its current value, verified at every authoritative server
version_added: "0.1.0"
description:
  - Makes the record set O(name)/O(type) of O(zone) hold O(values) (or be absent), through an RFC 2136 dynamic
    update signed with TSIG (O(provider=rfc2136)) or the Route 53 API (O(provider=route53)).
  - "Guard: with O(expected_values), the change only happens if the record set holds exactly those values. RFC 2136
    puts them in the update's prerequisite section, so the server checks and changes in one operation; Route 53 gets
    one change batch that deletes exactly the expected set and creates the new one, rejected as a whole if the set
    differs. A mismatch fails naming what is there now, and nothing changes."
  - "Wait: Route 53's change until C(INSYNC); then, for both, every authoritative server of the zone (O(servers), or
    the zone's NS set) is asked directly until all answer the new values, within O(wait_timeout). Results give each
    server's answer and when it first answered the new values. Behind a Route 53 stand-in that serves no DNS
    (O(endpoint_url)) the record set is read back through the API, and RV(verification.method) says C(api)."
  - Returns the previous record set (values and TTL) for a rollback. A run whose record set already holds the values
    changes nothing (and still verifies). A record CNAME beside other data (or other data beside a CNAME) is refused.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.dns
  - erlmcp.dr.dns.tsig
options:
  values:
    description:
      - The values the record set must hold (each in the type's text form; relative names are made absolute against
        O(zone)). Required with O(state=present).
    type: list
    elements: str
  ttl:
    description:
      - TTL in seconds. Defaults to the record set's current TTL, or 300 for a new one.
    type: int
  state:
    description:
      - C(present) makes the record set hold O(values); C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  expected_values:
    description:
      - The values you believe the record set holds now (the guard). An empty list means it must not exist.
        Omitted, the change is unguarded.
    type: list
    elements: str
  wait:
    description:
      - Wait for Route 53's change to be C(INSYNC) and for every authoritative server to answer the new values.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds for each wait (C(INSYNC), then the verification).
    type: float
    default: 60.0
  poll_interval:
    description:
      - Seconds between two rounds of questions to the servers (Route 53's API is polled at most every 0.2 s).
    type: float
    default: 0.05
attributes:
  check_mode:
    support: full
    description: Reads the record set and checks the guard, the values and the CNAME rules; changes nothing.
  diff_mode:
    support: full
    description: The record set before and after, in zone file form.
notes:
  - When the change was applied but the verification fails (a server did not get it), the module fails with
    RV(applied=true) and the message says so; RV(verification.stale_servers) names the servers that did not answer
    the new values.
"""

EXAMPLES = r"""
- name: Move api to region b, only if it still points at region a
  erlmcp.dr.dns_record:
    zone: erlmcp.example.com
    name: api
    type: A
    values: [10.0.2.10]
    expected_values: [10.0.1.10]
    server: ns1.erlmcp.example.com
    tsig_key_name: erlmcp-key.
    tsig_key_secret: "{{ vault_dns_tsig_secret }}"
  register: cutover

- name: The same on Route 53
  erlmcp.dr.dns_record:
    provider: route53
    zone: erlmcp.example.com
    name: api
    values: [10.0.2.10]
    expected_values: [10.0.1.10]
  register: cutover

- name: Roll back to what it held
  erlmcp.dr.dns_record:
    zone: erlmcp.example.com
    name: api
    values: "{{ cutover.previous['values'] }}"
    ttl: "{{ cutover.previous.ttl }}"
    expected_values: [10.0.2.10]
    server: ns1.erlmcp.example.com
    tsig_key_name: erlmcp-key.
    tsig_key_secret: "{{ vault_dns_tsig_secret }}"
"""

RETURN = r"""
provider:
  description: The provider used.
  returned: always
  type: str
  sample: rfc2136
zone:
  description: The zone, absolute.
  returned: always
  type: str
  sample: erlmcp.example.com.
name:
  description: The record's absolute name.
  returned: always
  type: str
  sample: api.erlmcp.example.com.
type:
  description: The record type.
  returned: always
  type: str
  sample: A
previous:
  description: The record set before this run (C(exists), C(values) sorted, C(ttl)); null when it could not be read.
  returned: always
  type: dict
  sample: {exists: true, values: [10.0.1.10], ttl: 30}
current:
  description: The record set after this run (in check mode, as it is now).
  returned: always
  type: dict
  sample: {exists: true, values: [10.0.2.10], ttl: 30}
applied:
  description: Whether this run changed the record set at the primary (or in Route 53).
  returned: always
  type: bool
verified:
  description: Whether every authoritative server (or the API read-back) answered the new values.
  returned: always
  type: bool
verification:
  description: What the verification found; null when it did not run (check mode, O(wait=false), an earlier failure).
  returned: always
  type: dict
  contains:
    method:
      description: C(authoritative) (the servers were asked) or C(api) (Route 53 read back through the API).
      type: str
    servers:
      description: Per server C(name), C(host), C(port), C(values), C(ttl), C(rcode), C(authoritative),
        C(answered_in_ms), C(error), and C(visible_after_s) (seconds from the start of the verification to its
        first answer with the new values; null when it never gave one).
      type: list
      elements: dict
    waited_s:
      description: Seconds until every server answered the new values.
      type: float
    stale_servers:
      description: Names of the servers that did not answer the new values before O(wait_timeout).
      type: list
      elements: str
    note:
      description: With C(method=api), what was checked instead of the servers.
      type: str
rcode:
  description: The update's response code (RFC 2136).
  returned: when an update was sent
  type: str
  sample: NOERROR
change_id:
  description: The Route 53 change's id.
  returned: when a Route 53 change was made
  type: str
change_status:
  description: The Route 53 change's status (C(PENDING) or C(INSYNC)).
  returned: when a Route 53 change was made
  type: str
insync_s:
  description: Seconds until Route 53 reported the change C(INSYNC).
  returned: when a Route 53 change was made and O(wait)
  type: float
change_seconds:
  description: Seconds the change itself took (the update's round trip, or the API call and the INSYNC wait).
  returned: when a change was made
  type: float
error_kind:
  description: On failure, C(auth), C(notzone), C(guard), C(invalid), C(conflict), C(stale), C(timeout), C(refused),
    C(dns) or C(other).
  returned: on failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as dns_base  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns.record import run  # noqa: E402

REQUIRED_IF = dns_base.REQUIRED_IF + [("state", "present", ("values",))]


def argument_spec():
    spec = dns_base.common_argument_spec()
    spec.update(
        values=dict(type="list", elements="str"),
        ttl=dict(type="int"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        expected_values=dict(type="list", elements="str"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="float", default=60.0),
        poll_interval=dict(type="float", default=0.05),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), required_if=REQUIRED_IF, supports_check_mode=True)
    dns_base.execute(module, run)


if __name__ == "__main__":
    main()
