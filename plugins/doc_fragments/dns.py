# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option documentation for the dns_* modules.

C(erlmcp.dr.dns) documents the options of C(_dns.common_argument_spec()) except the TSIG key;
C(erlmcp.dr.dns.tsig) documents the TSIG key (tsig_key_name, tsig_key_secret, tsig_algorithm).
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  provider:
    description:
      - C(rfc2136) talks DNS to the zone's primary server (O(server)); C(route53) calls the Route 53 API (boto3).
    type: str
    choices: [rfc2136, route53]
    default: rfc2136
  zone:
    description:
      - The zone the record belongs to, for example C(erlmcp.example.com). A trailing dot is optional.
    type: str
    required: true
  name:
    description:
      - The record's name, relative to O(zone) (C(api)), absolute with a trailing dot (C(api.erlmcp.example.com.)),
        or C(@) for the zone's apex.
    type: str
    required: true
  type:
    description:
      - The record type.
    type: str
    choices: [A, AAAA, CNAME, TXT, MX, SRV, CAA, PTR, NS]
    default: A
  server:
    description:
      - Host name or address of the zone's primary server (RFC 2136), asked directly. Required with
        O(provider=rfc2136) unless O(servers) is given to a read-only module.
    type: str
  port:
    description:
      - Port of O(server), and of the name servers found in the zone's NS set when O(servers) is not given.
    type: int
    default: 53
  servers:
    description:
      - The authoritative servers to ask, each directly. When omitted, the zone's NS set as O(server) answers it
        (RFC 2136), or the hosted zone's name servers (Route 53; with O(endpoint_url) set, a stand-in that serves
        no DNS, the record set is read back through the API instead).
    type: list
    elements: dict
    suboptions:
      name:
        description: A name for the server in results and messages (defaults to O(servers[].host)).
        type: str
      host:
        description: Host name or address to send queries to.
        type: str
        required: true
      port:
        description: Port to send queries to.
        type: int
        default: 53
      role:
        description: The server's role (C(primary), C(secondary)), as the inventory's C(dns_role) says; informative.
        type: str
  timeout:
    description:
      - Seconds to wait for each DNS answer (or for the update's answer).
    type: float
    default: 3.0
  hosted_zone_id:
    description:
      - The Route 53 hosted zone's id; when omitted it is found by O(zone)'s name (exactly one must match).
    type: str
  endpoint_url:
    description:
      - A Route 53 endpoint other than AWS's (a test stand-in such as moto). Verification then reads the record set
        back through the API unless O(servers) is given.
    type: str
  aws_region:
    description:
      - AWS region for the client (Route 53 is global; this only picks the signing region).
    type: str
    default: us-east-1
  aws_access_key_id:
    description:
      - AWS access key id; when omitted boto3 finds credentials as usual (environment, profile, instance role).
    type: str
  aws_secret_access_key:
    description:
      - AWS secret access key. Never logged, never returned.
    type: str
  aws_session_token:
    description:
      - AWS session token (temporary credentials). Never logged, never returned.
    type: str
requirements:
  - dnspython (Python library) on the host that runs the module
  - boto3 (Python library) for O(provider=route53)
"""

    TSIG = r"""
options:
  tsig_key_name:
    description:
      - Name of the TSIG key that signs the update, as the server knows it (for example C(erlmcp-key.)).
        Without it the update is sent unsigned.
    type: str
  tsig_key_secret:
    description:
      - The TSIG key's secret, base64, as in the server's configuration. Never logged, never returned.
    type: str
  tsig_algorithm:
    description:
      - The TSIG key's algorithm.
    type: str
    choices: [hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5]
    default: hmac-sha256
"""
