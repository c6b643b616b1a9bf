# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""RFC 2136 dynamic updates, signed with TSIG, guarded by the UPDATE's prerequisite section.

The guard (`expected_values`) is a value-dependent "RRset exists" prerequisite (RFC 2136 2.4.2), or "RRset
does not exist" (2.4.3) for an empty list: the server checks it and applies the change in one operation,
so a value changed behind our back makes the server answer NXRRSET and change nothing.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as d


def primary(params):
    return dict(name=params.get("server"), host=params.get("server"), port=params["port"])


def _keyring(params):
    dns = d.driver()
    name, secret = params.get("tsig_key_name"), params.get("tsig_key_secret")
    if not name and not secret:
        return None, None
    if not (name and secret):
        raise d.DnsError("a TSIG key needs both its name and its secret; got only the %s (tsig_key_name, "
                         "tsig_key_secret)" % ("name" if name else "secret"), kind="invalid")
    key_name = d.absolute(name)
    try:
        return dns.tsigkeyring.from_text({key_name: secret}), key_name
    except Exception as exc:  # a secret that is not base64
        raise d.DnsError("the TSIG secret of key %r is not valid base64 (%s): give the secret as the server's "
                         "configuration holds it (tsig_key_secret)" % (key_name, type(exc).__name__),
                         kind="invalid") from None


def read(params, server, name, rdtype):
    """The record as `server` answers it: rrset dict; DnsError when the server does not answer for the zone."""
    row = d.ask(server, name, rdtype, params["timeout"])
    if row["error"]:
        raise d.DnsError(row["error"], kind="notzone" if row["rcode"] else "timeout")
    return d.rrset(row["values"], row["ttl"])


def conflicts(params, server, name, rdtype):
    """Types at `name` that a record of `rdtype` may not stand beside: any other data for a CNAME, a CNAME
    for any other type (RFC 1034 3.6.2; a server silently ignores such an add, RFC 2136 3.4.2.2)."""
    if rdtype == "CNAME":
        others = [t for t in d.OTHER_TYPES if read(params, server, name, t)["exists"]]
        return others
    return ["CNAME"] if read(params, server, name, "CNAME")["exists"] else []


def update(params, server, name, rdtype, values, ttl, expected):
    """Send one signed UPDATE: prerequisite (expected, if not None), then replace the RRset with values (or
    delete it when values is empty). Returns the rcode's text; DnsError for a refusal (NXRRSET/YXRRSET are
    returned: the caller says what is there now)."""
    dns = d.driver()
    keyring, key_name = _keyring(params)
    kwargs = dict(keyring=keyring, keyname=key_name, keyalgorithm=d.tsig_algorithm(params)) if keyring else {}
    message = dns.update.UpdateMessage(d.zone_name(params), **kwargs)
    owner = dns.name.from_text(name)
    if expected is not None:
        if expected:
            message.present(owner, dns.rdataset.from_text_list("IN", rdtype, 0, expected))
        else:
            message.absent(owner, rdtype)
    if values:
        message.replace(owner, dns.rdataset.from_text_list("IN", rdtype, ttl, values))
    else:
        message.delete(owner, rdtype)
    response = dns.query.tcp(message, server["host"], port=int(server["port"]), timeout=params["timeout"])
    rcode = dns.rcode.to_text(response.rcode())
    if rcode in ("NOERROR", "NXRRSET", "YXRRSET"):
        return rcode
    raise d.DnsError(_refusal(rcode, server, params), kind=REFUSAL_KINDS.get(rcode, "other"))


REFUSAL_KINDS = dict(NOTAUTH="auth", REFUSED="auth", NOTZONE="notzone", SERVFAIL="other", FORMERR="other")


def _refusal(rcode, server, params):
    where, zone, key = d.endpoint(server), d.zone_name(params), params.get("tsig_key_name")
    if rcode == "NOTAUTH":
        return ("%s answered NOTAUTH to the update of %s: it is not authoritative for the zone, or it requires a "
                "TSIG key and %s (zone, tsig_key_name, tsig_key_secret)"
                % (where, zone, "this request was not signed" if not key else "did not accept key %r" % key))
    if rcode == "REFUSED":
        return ("%s REFUSED the update of %s: its policy does not allow updates %s (tsig_key_name, or the "
                "server's update ACL)" % (where, zone, "without a TSIG key" if not key else "signed with key %r" % key))
    if rcode == "NOTZONE":
        return "%s answered NOTZONE: the name is not in the zone %s (name, zone)" % (where, zone)
    return "%s answered %s to the update of %s" % (where, rcode, zone)
