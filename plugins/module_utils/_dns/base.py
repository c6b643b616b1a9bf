# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DNS side of the dns_* modules: one argument spec, one error translator, value checks, and the
queries that ask every authoritative server directly (the verification of a cutover).

dnspython is imported only when a query or an update is made, boto3 only when Route 53 is called
(_dns/route53.py). Private to the collection (leading underscore): the API may change between releases.
"""

from __future__ import annotations

import socket
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._common.driver import is_error_of
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ErrorTranslator
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

PROVIDERS = ("rfc2136", "route53")
TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "PTR", "NS")
TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")
# The types a CNAME may not stand beside (RFC 1034 3.6.2), asked one by one: servers answer ANY minimally (RFC 8482).
OTHER_TYPES = ("A", "AAAA", "TXT", "MX", "SRV", "CAA", "PTR", "NS")


class DnsError(Exception):
    """A failure worth showing to the operator as is (no traceback)."""

    def __init__(self, message, kind=None):
        super(DnsError, self).__init__(message)
        self.kind = kind


def dns_import_error():
    """None when dnspython can be imported, else the ImportError (for missing_required_lib)."""
    return DNS.import_error()


def warm_driver():
    """Import dnspython now, if it is there, so the workers ansible-core forks from this process inherit it
    (called when the dns_* action plugins are loaded; see _module.warm_driver)."""
    return DNS.warm()


def driver():
    """dnspython's modules this collection uses, imported on first use; DnsError when it is missing."""
    try:
        import dns.exception  # noqa: F401
        import dns.flags  # noqa: F401
        import dns.message  # noqa: F401
        import dns.name  # noqa: F401
        import dns.query  # noqa: F401
        import dns.rcode  # noqa: F401
        import dns.rdata  # noqa: F401
        import dns.rdataclass  # noqa: F401
        import dns.rdatatype  # noqa: F401
        import dns.rdataset  # noqa: F401
        import dns.tsig  # noqa: F401
        import dns.tsigkeyring  # noqa: F401
        import dns.update  # noqa: F401
    except ImportError as exc:
        raise DnsError("the Python library dnspython is required on the host running this module: %s" % exc,
                       kind="other") from None
    return dns


# ---------------------------------------------------------------- options


def server_spec():
    return dict(name=dict(type="str"), host=dict(type="str", required=True), port=dict(type="int", default=53),
                role=dict(type="str"))


def common_argument_spec():
    """Options every dns_* module shares; the TSIG secret and the AWS secrets are no_log."""
    return dict(
        provider=dict(type="str", default="rfc2136", choices=list(PROVIDERS)),
        zone=dict(type="str", required=True),
        name=dict(type="str", required=True),
        type=dict(type="str", default="A", choices=list(TYPES)),
        server=dict(type="str"),
        port=dict(type="int", default=53),
        servers=dict(type="list", elements="dict", options=server_spec()),
        timeout=dict(type="float", default=3.0),
        tsig_key_name=dict(type="str"),
        tsig_key_secret=dict(type="str", no_log=True),
        tsig_algorithm=dict(type="str", default="hmac-sha256", choices=list(TSIG_ALGORITHMS)),
        hosted_zone_id=dict(type="str"),
        endpoint_url=dict(type="str"),
        aws_region=dict(type="str", default="us-east-1"),
        aws_access_key_id=dict(type="str", no_log=True),
        aws_secret_access_key=dict(type="str", no_log=True),
        aws_session_token=dict(type="str", no_log=True),
    )


REQUIRED_IF = [("provider", "rfc2136", ("server",))]


def tsig_algorithm(params):
    """dnspython's name for tsig_algorithm: every one is its own name, except HMAC-MD5, whose registered name
    (RFC 8945) is HMAC-MD5.SIG-ALG.REG.INT - given as plain 'hmac-md5', dnspython knows no such algorithm."""
    algorithm = params.get("tsig_algorithm") or "hmac-sha256"
    return "hmac-md5.sig-alg.reg.int" if algorithm == "hmac-md5" else algorithm


# ---------------------------------------------------------------- names and values


def absolute(name):
    return name if name.endswith(".") else name + "."


def zone_name(params):
    return absolute(params["zone"].strip()).lower()


def fqdn(params):
    """The record's absolute name: `name` relative to `zone` (or absolute), '@' for the apex."""
    zone = zone_name(params)
    name = params["name"].strip()
    if name in ("@", ""):
        return zone
    if name.endswith("."):
        return name.lower()
    return (name + "." + zone).lower()


def check_in_zone(params):
    name, zone = fqdn(params), zone_name(params)
    if name != zone and not name.endswith("." + zone):
        raise DnsError("the name %s is not in the zone %s (name, zone)" % (name, zone), kind="notzone")


def canonical_values(values, rdtype, zone, option="values"):
    """Each value parsed as `rdtype` (relative names made absolute against zone), in its canonical text, sorted.

    A value that does not parse is a DnsError naming it, the type and the option.
    """
    dns = driver()
    origin = dns.name.from_text(zone)
    out = []
    for index, value in enumerate(values or []):
        text = str(value).strip()
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text, origin=origin,
                                        relativize=False)
        except Exception as exc:  # dnspython's syntax errors have many classes
            raise DnsError("%s[%d] is %r, not a valid %s value (%s); expected %s (%s)"
                           % (option, index, text, rdtype, str(exc).strip() or type(exc).__name__,
                              EXPECTED_VALUE.get(rdtype, "the record's text form"), option), kind="invalid") from None
        out.append(rdata.to_text())
    return sorted(set(out))


EXPECTED_VALUE = dict(A="an IPv4 address such as 192.0.2.10", AAAA="an IPv6 address such as 2001:db8::10",
                      CNAME="one host name", MX="'<preference> <host>'", SRV="'<priority> <weight> <port> <target>'",
                      TXT="quoted text", PTR="a host name", NS="a host name", CAA="'<flags> <tag> <value>'")


def rrset(values, ttl):
    """The record as this collection reports it: exists, values (sorted canonical text), ttl."""
    values = sorted(values or [])
    return dict(exists=bool(values), values=values, ttl=ttl if values else None)


# ---------------------------------------------------------------- errors


def is_dns_error(exc):
    return DNS.is_driver_error(exc)


def is_boto_error(exc):
    return is_error_of(exc, "botocore", "BotoCoreError") or is_error_of(exc, "botocore", "ClientError")


def describe(exc, where, params):
    """One sentence for a dnspython or socket failure talking to `where` (name host:port)."""
    name = type(exc).__name__
    key = params.get("tsig_key_name")
    algorithm = params.get("tsig_algorithm") or "hmac-sha256"
    if name == "PeerBadKey":
        return DnsError("%s does not know the TSIG key %r with algorithm %s (NOTAUTH, BADKEY): use the key name "
                        "and the algorithm the server's key is configured with (tsig_key_name, tsig_algorithm)%s"
                        % (where, key, algorithm, _md5_advice(algorithm)), kind="auth")
    if name in ("PeerBadSignature", "BadSignature"):
        return DnsError("%s rejected the signature made with TSIG key %r, algorithm %s (NOTAUTH, BADSIG): the "
                        "secret differs from the server's (tsig_key_secret) or the algorithm does (tsig_algorithm)%s"
                        % (where, key, algorithm, _md5_advice(algorithm)), kind="auth")
    if name in ("PeerBadTime", "PeerBadTruncation", "PeerError"):
        return DnsError("%s rejected the TSIG signature (%s): check the clocks and the key (tsig_key_name, "
                        "tsig_key_secret)" % (where, name), kind="auth")
    if name == "FormError" and "TSIG" in str(exc):
        return DnsError("%s answered without a TSIG signature, so it rejected the request before checking the key: "
                        "it is not authoritative for zone %s or does not accept updates for it (zone, server, port)"
                        % (where, zone_name(params)), kind="notauth")
    if name == "Timeout" or isinstance(exc, socket.timeout):
        return DnsError("no answer from %s within %ss: is the DNS server running there (server, port, timeout)?"
                        % (where, params.get("timeout")), kind="timeout")
    if isinstance(exc, ConnectionRefusedError):
        return DnsError("nothing accepts connections at %s: is the DNS server running there (server, port)?" % where,
                        kind="refused")
    if isinstance(exc, socket.gaierror):
        return DnsError("cannot resolve %s: %s (server)" % (where, exc), kind="dns")
    return DnsError("DNS error talking to %s: %s: %s" % (where, name, str(exc).strip()), kind="other")


def _md5_advice(algorithm):
    if algorithm != "hmac-md5":
        return ""
    return ("; hmac-md5 is obsolete (MD5 is broken; RFC 8945 does not recommend it): give the server a key with "
            "hmac-sha256 and set tsig_algorithm: hmac-sha256 (dns_tsig_algorithm in the inventory)")


class DnsErrors(ErrorTranslator):
    """DNS's translator: DnsError (operator-ready), a WaitTimeout, dnspython and socket errors (described naming
    the server `context` and the option to fix) and boto errors (_dns_route53.describe) become ModuleFailure.

    `params` are the module's, for the words: the TSIG key's name, the zone, the timeout (see _errors.ErrorTranslator).
    """

    system = "DNS"
    library = "dnspython"
    import_name = "dns.message"
    error_base = ("dns", "DNSException")
    own_errors = (DnsError,)

    def __init__(self, params=None):
        self.params = params or {}

    def warm(self):
        try:
            driver()
        except DnsError:
            return False
        return True

    def describe(self, exc, context=""):
        if isinstance(exc, DnsError):
            error = exc
        elif isinstance(exc, WaitTimeout):
            error = DnsError(str(exc), kind="timeout")
        elif self.is_driver_error(exc) or isinstance(exc, OSError):
            error = describe(exc, context or "the DNS server", self.params)
        elif is_boto_error(exc):
            from ansible_collections.erlmcp.dr.plugins.module_utils._dns.route53 import describe as describe_aws

            error = describe_aws(exc, self.params)
        else:
            return None
        return str(error), error.kind


DNS = DnsErrors()


def translate_errors(facts, params, where=""):
    """`with translate_errors(facts, params, where):` DNS's errors become ModuleFailure carrying facts."""
    return DnsErrors(params).translate(facts, where)


# ---------------------------------------------------------------- asking authoritative servers


def named(servers):
    """The `servers` option's entries with their defaults (name = host, port 53)."""
    return [dict(name=s.get("name") or s["host"], host=s["host"], port=s.get("port") or 53) for s in servers]


def endpoint(server):
    return "%s (%s:%s)" % (server.get("name") or server["host"], server["host"], server["port"])


def ask(server, name, rdtype, timeout, with_serial=False, zone=None):
    """What one server answers for name/type, asked directly over UDP (TCP when truncated), never raising:
    name, host, port, values (sorted), ttl, rcode, authoritative, answered_in_ms, error (and serial of zone)."""
    dns = driver()
    row = dict(name=server.get("name") or server["host"], host=server["host"], port=server["port"], values=None,
               ttl=None, rcode=None, authoritative=None, answered_in_ms=None, error=None)
    started = time.monotonic()
    try:
        response = _query(server, name, rdtype, timeout)
        row["answered_in_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        row["rcode"] = dns.rcode.to_text(response.rcode())
        row["authoritative"] = bool(response.flags & dns.flags.AA)
        wanted = dns.rdatatype.from_text(rdtype)
        found = [rr for rr in response.answer if rr.rdtype == wanted and rr.name == dns.name.from_text(name)]
        row["values"] = sorted(rd.to_text() for rr in found for rd in rr)
        row["ttl"] = found[0].ttl if found else None
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not row["authoritative"]:
            row["error"] = "%s answered %s%s for %s %s" % (
                endpoint(server), row["rcode"], "" if row["authoritative"] else " without authority", name, rdtype)
        if with_serial and zone and row["error"] is None:
            soa = _query(server, zone, "SOA", timeout)
            row["serial"] = int(soa.answer[0][0].serial) if soa.answer else None
    except Exception as exc:
        if not (is_dns_error(exc) or isinstance(exc, OSError)):
            raise
        row["error"] = str(describe(exc, endpoint(server), dict(timeout=timeout)))
    return row


def _query(server, name, rdtype, timeout):
    dns = driver()
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, server["host"], port=int(server["port"]), timeout=timeout)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, server["host"], port=int(server["port"]), timeout=timeout)
    return response


def zone_served(server, zone, timeout):
    """DnsError unless `server` answers the zone's SOA with authority (it serves the zone)."""
    dns = driver()
    try:
        response = _query(server, zone, "SOA", timeout)
    except Exception as exc:
        if not (is_dns_error(exc) or isinstance(exc, OSError)):
            raise
        raise describe(exc, endpoint(server), dict(timeout=timeout)) from None
    served = response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA and any(
        rr.rdtype == dns.rdatatype.SOA for rr in response.answer)
    if not served:
        raise DnsError("%s does not serve the zone %s (it answered %s%s to its SOA query): check zone, or server "
                       "and port" % (endpoint(server), zone, dns.rcode.to_text(response.rcode()),
                                     "" if response.flags & dns.flags.AA else " without authority"), kind="notzone")
    return int(response.answer[0][0].serial)


def ns_servers(server, zone, port, timeout):
    """The zone's authoritative servers from its NS set as `server` answers it, each resolved to an address
    (the zone's own A record when it has one, else the system resolver), on `port`."""
    dns = driver()
    response = _query(server, zone, "NS", timeout)
    names = sorted(rd.target.to_text() for rr in response.answer if rr.rdtype == dns.rdatatype.NS for rd in rr)
    out = []
    for ns in names:
        address = None
        glue = ask(server, ns, "A", timeout)
        if glue["values"]:
            address = glue["values"][0]
        else:
            try:
                address = socket.getaddrinfo(ns.rstrip("."), port, socket.AF_INET)[0][4][0]
            except socket.gaierror as exc:
                raise DnsError("the zone's name server %s does not resolve (%s): name the servers to verify "
                               "(servers)" % (ns, exc), kind="dns") from None
        out.append(dict(name=ns.rstrip("."), host=address, port=port))
    if not out:
        raise DnsError("%s answered no NS records for %s: name the servers to verify (servers)"
                       % (endpoint(server), zone), kind="notzone")
    return out


def verify(servers, name, rdtype, values, timeout, wait_timeout, interval, report=None):
    """Ask every server until each answers exactly `values` (an empty list: no record), within wait_timeout.

    Returns (rows, seconds): per server its last answer and `visible_after_s` (seconds from the start of the
    verification to its first matching answer). DnsError naming the stale servers and what they answered
    when the deadline passes; then `report` (a dict) gets method, servers (the last answers) and stale_servers.
    """
    started = time.monotonic()
    matched = {}
    last = {}

    def everyone():
        for server in servers:
            key = (server["host"], server["port"])
            if key in matched:
                continue
            row = ask(server, name, rdtype, timeout)
            last[key] = row
            if row["error"] is None and row["values"] == values:
                matched[key] = round(time.monotonic() - started, 4)
        return len(matched) == len(servers)

    try:
        what = "%s %s answered as %s by every authoritative server" % (name, rdtype, values or "absent")
        waited = wait_for(everyone, wait_timeout, interval=interval, what=what)[1]
    except WaitTimeout:
        stale = [last[(s["host"], s["port"])] for s in servers if (s["host"], s["port"]) not in matched]
        if report is not None:
            report.update(method="authoritative", stale_servers=[row["name"] for row in stale], servers=[
                dict(last[(s["host"], s["port"])], visible_after_s=matched.get((s["host"], s["port"])))
                for s in servers])
        raise DnsError("verification failed: %s did not answer %s within %ss (wait_timeout): %s" % (
            ", ".join(row["name"] for row in stale), values or "no record", wait_timeout, "; ".join(
                row["error"] if row["error"] else "%s answers %s" % (endpoint(row), row["values"] or "no record")
                for row in stale)), kind="stale") from None
    return [dict(last[(s["host"], s["port"])], visible_after_s=matched[(s["host"], s["port"])]) for s in servers], \
        round(waited, 4)


def execute(module, run):
    """_module.execute for a dns_* module: dnspython must be importable, then the engine runs."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute as execute_engine

    execute_engine(module, run, needs=DNS)
