#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dns_info
short_description: What every authoritative server answers for a DNS name, and whether they agree
version_added: "0.1.0"
description:
  - Asks each authoritative server of O(zone) directly (O(servers), or the zone's NS set as O(server) answers it,
    or the Route 53 hosted zone's name servers) for O(name)/O(type), and reports per server the values, the TTL,
    the zone's serial, the response code and how long it took to answer.
  - With O(provider=route53) the record set held by the API is reported too (RV(api)), and counts in RV(agree).
  - Never changes anything; RV(ignore:changed) is always false.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.dns
  - erlmcp.dr.dns.tsig
notes:
  - The TSIG options are accepted so that one C(module_defaults) for C(group/erlmcp.dr.dns) serves both modules;
    dns_info only sends queries, which it does not sign.
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
"""

EXAMPLES = r"""
- name: What do the primary and the secondary answer for api?
  erlmcp.dr.dns_info:
    zone: erlmcp.example.com
    name: api
    servers:
      - {name: ns1, host: 10.0.1.53}
      - {name: ns2, host: 10.0.2.53}
  register: api

- name: Stop when they disagree
  ansible.builtin.assert:
    that: api.agree
    fail_msg: "{{ api.disagreement }}"
"""

RETURN = r"""
provider:
  description: The provider.
  returned: always
  type: str
zone:
  description: The zone, absolute.
  returned: always
  type: str
name:
  description: The record's absolute name.
  returned: always
  type: str
type:
  description: The record type.
  returned: always
  type: str
method:
  description: C(authoritative) (servers asked) or C(api) (Route 53 stand-in without DNS; only the API was read).
  returned: always
  type: str
servers:
  description: Per server C(name), C(host), C(port), C(values) (sorted), C(ttl), C(serial), C(rcode),
    C(authoritative), C(answered_in_ms), C(error) (null when it answered with authority).
  returned: always
  type: list
  elements: dict
agree:
  description: Whether every server answered, with the same values (and the API too, for Route 53).
  returned: always
  type: bool
agreed_values:
  description: The values they agree on (empty when there is no record); null when they disagree.
  returned: always
  type: list
  elements: str
ttl:
  description: The largest TTL answered (what a resolver may cache); null when they disagree or there is no record.
  returned: always
  type: int
serials:
  description: The distinct zone serials the servers answered, sorted (more than one - a server is behind).
  returned: always
  type: list
  elements: int
unanswered:
  description: Names of the servers that did not answer with authority.
  returned: always
  type: list
  elements: str
disagreement:
  description: What each server answered, in one line, when they disagree; null when they agree.
  returned: always
  type: str
api:
  description: The record set Route 53's API holds (C(exists), C(values), C(ttl)); null for RFC 2136.
  returned: always
  type: dict
hosted_zone_id:
  description: The Route 53 hosted zone's id.
  returned: with O(provider=route53)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns.base import common_argument_spec, execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._dns.info import run  # noqa: E402


def argument_spec():
    """The shared DNS options: the TSIG options are accepted (module_defaults of group/erlmcp.dr.dns) and unused."""
    return common_argument_spec()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run)


if __name__ == "__main__":
    main()
