# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of erlmcp.dr.health_check: sample one service (http, tcp, postgres, redis) until a verdict.

The verdict rules are pure (verdict(), final_verdict(); unit-tested):
- healthy: the last consecutive_successes samples succeeded;
- failed: the last consecutive_failures samples failed;
- at the deadline without either: flapping when the samples disagreed, else healthy or failed unconfirmed
  (fewer samples than the threshold fitted before the deadline; `confirmed` says so).
A refused login (wrong password or user) fails at once: it is a setting to fix, not a verdict on the service.
Sampling goes through the collection's one waiter (_wait.wait_for): a sample, then `interval` seconds, until a
verdict or the deadline. Read-only: never changes anything, so check mode runs the same.
Drivers (psycopg, redis-py) are imported only for their kind. Private to the collection.
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

KINDS = ("http", "tcp", "postgres", "redis")
VERDICTS = ("healthy", "failed", "flapping")
BODY_EXCERPT = 120  # characters of an unexpected HTTP body kept in a sample
PG_HINTS = dict(host="host", port="port", password="login_password")
REDIS_HINTS = dict(host="host", port="port", password="login_password")


# ---------------------------------------------------------------- the verdict (pure)


def trailing(results, value):
    """How many of the last results equal value, counted from the end."""
    count = 0
    for result in reversed(results):
        if result != value:
            break
        count += 1
    return count


def verdict(results, consecutive_failures, consecutive_successes):
    """'healthy' | 'failed' once the threshold of trailing equal results is met, else None."""
    if trailing(results, True) >= consecutive_successes:
        return "healthy"
    if trailing(results, False) >= consecutive_failures:
        return "failed"
    return None


def final_verdict(results):
    """The verdict at the deadline, without a threshold met: (verdict, confirmed=False)."""
    if not results:
        return "failed", False
    if all(results):
        return "healthy", False
    if not any(results):
        return "failed", False
    return "flapping", False


def check_params(params):
    """Refuse settings that cannot reach a verdict before anything is sampled."""
    interval, timeout = float(params["interval"]), float(params["timeout"])
    failures, successes = params["consecutive_failures"], params["consecutive_successes"]
    if interval <= 0 or float(params["sample_timeout"]) <= 0:
        raise ModuleFailure("interval is %s and sample_timeout %s: expected both above 0 (interval, sample_timeout)"
                            % (params["interval"], params["sample_timeout"]))
    if failures < 1 or successes < 1:
        raise ModuleFailure("consecutive_failures is %s and consecutive_successes %s: expected both at least 1 "
                            "(consecutive_failures, consecutive_successes)" % (failures, successes))
    needed = interval * (max(failures, successes) - 1)
    if timeout < needed:
        raise ModuleFailure(
            "timeout %ss leaves no room for %s samples %ss apart (%ss at least): raise timeout, or lower interval, "
            "consecutive_failures or consecutive_successes" % (params["timeout"], max(failures, successes),
                                                               params["interval"], needed))


def target(params):
    """What is checked, in words (no secret): the URL or host:port, and the user for the databases."""
    kind = params["kind"]
    if kind == "http":
        return params["url"]
    where = "%s:%s" % (params["host"], params["port"])
    if kind in ("postgres", "redis") and params.get("login_user"):
        return "%s as %s" % (where, params["login_user"])
    return where


# ---------------------------------------------------------------- one sample per kind


def sample_http(params):
    """GET the URL: ok when the status is one of status_code and the body matches body_match (if given).

    A redirect is never followed (issue 16 row 10): a region is judged by its own answer, not by another host's,
    and a check sends no request where a redirect says. A 3xx is the sample's answer: a failure naming where it
    points, unless status_code lists it."""
    from ansible.module_utils.urls import open_url
    from urllib.error import HTTPError, URLError

    location = None
    try:
        response = open_url(params["url"], method="GET", timeout=float(params["sample_timeout"]),
                            validate_certs=bool(params.get("validate_certs", True)), ca_path=params.get("ca_path"),
                            http_agent="erlmcp.dr health_check", follow_redirects="none")
        status, body = response.getcode(), response.read()
        response.close()
    except HTTPError as exc:
        status, body = exc.code, exc.read()
        location = exc.headers.get("Location") if exc.headers is not None else None
    except URLError as exc:
        return dict(ok=False, error=_url_error(exc, params))
    except (OSError, ValueError) as exc:
        return dict(ok=False, error=_url_error(exc, params))
    text = body.decode("utf-8", "replace")
    expected = list(params.get("status_code") or [200])
    result = dict(ok=True, status=status, error=None)
    if status not in expected and 300 <= status < 400:
        result.update(ok=False, location=location,
                      error="HTTP status %s, a redirect to %s: not followed (a health check judges the URL it is "
                      "given); check that URL itself, or list %s in status_code if a redirect is its healthy answer"
                      % (status, location or "(no Location header)", status))
    elif status not in expected:
        result.update(ok=False, error="HTTP status %s, expected %s (status_code); body starts %r"
                      % (status, " or ".join(str(code) for code in expected), text[:BODY_EXCERPT]))
    elif params.get("body_match") and not re.search(params["body_match"], text):
        result.update(ok=False, error="the body does not match %r (body_match); it starts %r"
                      % (params["body_match"], text[:BODY_EXCERPT]))
    return result


def _url_error(exc, params):
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return ("the TLS certificate of %s is not trusted: %s (give its CA in ca_path, or validate_certs=false to "
                "skip verification)" % (params["url"], getattr(reason, "verify_message", None) or reason))
    if isinstance(reason, socket.timeout) or "timed out" in str(reason):
        return "no HTTP answer from %s within %ss (sample_timeout)" % (params["url"], params["sample_timeout"])
    return "no HTTP answer from %s: %s" % (params["url"], reason)


def sample_tcp(params):
    """Open a TCP connection: ok when it is accepted."""
    where = "%s:%s" % (params["host"], params["port"])
    try:
        sock = socket.create_connection((params["host"], params["port"]), timeout=float(params["sample_timeout"]))
    except socket.timeout:
        return dict(ok=False, error="no TCP answer from %s within %ss (sample_timeout)"
                    % (where, params["sample_timeout"]))
    except (OSError, ValueError) as exc:
        return dict(ok=False, error="cannot connect to %s: %s" % (where, getattr(exc, "strerror", None) or exc))
    sock.close()
    return dict(ok=True, error=None)


def sample_postgres(params):
    """Connect and ask whether the server takes writes (not in recovery, transaction_read_only off)."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg

    conn_params = dict(host=params["host"], port=params["port"], user=params.get("login_user") or "postgres",
                       password=params.get("login_password"), dbname=params.get("login_db") or "postgres",
                       connect_timeout=max(2, int(float(params["sample_timeout"]) + 0.999)))
    try:
        with pg.connect(conn_params, application_name="erlmcp.dr health_check", hints=PG_HINTS) as conn:
            row = pg.query_one(conn, "SELECT pg_is_in_recovery() AS in_recovery, "
                                     "current_setting('transaction_read_only') AS read_only")
    except pg.PgError as exc:
        return dict(ok=False, reachable=False, writable=None, error=str(exc), error_kind=exc.kind)
    except Exception as exc:
        if not pg.is_driver_error(exc):
            raise
        return dict(ok=False, reachable=False, writable=None,
                    error="PostgreSQL at %s:%s stopped answering: %s" % (params["host"], params["port"], exc))
    writable = not row["in_recovery"] and row["read_only"] == "off"
    result = dict(ok=True, reachable=True, writable=writable, in_recovery=row["in_recovery"], error=None)
    expect = params.get("expect_writable")
    if expect is not None and writable != expect:
        state = "writable" if writable else ("in recovery (a standby)" if row["in_recovery"]
                                             else "read-only (default_transaction_read_only is on)")
        result.update(ok=False, error="PostgreSQL at %s:%s is %s, expected %s (expect_writable)"
                      % (params["host"], params["port"], state, "writable" if expect else "not writable"))
    return result


def sample_redis(params):
    """Connect (PING) and read the role: ok when it answers (and has expect_role, if given)."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._redis import client as rd

    conn_params = dict(host=params["host"], port=params["port"], user=params.get("login_user"),
                       password=params.get("login_password"), connect_timeout=float(params["sample_timeout"]))
    try:
        client = rd.connect(conn_params, REDIS_HINTS, socket_timeout=float(params["sample_timeout"]))
        try:
            info = client.info("replication")
        finally:
            client.close()
    except rd.RedisError as exc:
        return dict(ok=False, reachable=False, role=None, error=str(exc), error_kind=exc.kind)
    except Exception as exc:
        if not rd.is_driver_error(exc):
            raise
        return dict(ok=False, reachable=False, role=None,
                    error="Redis at %s:%s stopped answering: %s" % (params["host"], params["port"], exc))
    role = "primary" if info.get("role") == "master" else "replica"
    result = dict(ok=True, reachable=True, role=role, error=None)
    if params.get("expect_role") and role != params["expect_role"]:
        result.update(ok=False, error="Redis at %s:%s is a %s, expected a %s (expect_role)"
                      % (params["host"], params["port"], role, params["expect_role"]))
    return result


SAMPLERS = dict(http=sample_http, tcp=sample_tcp, postgres=sample_postgres, redis=sample_redis)


def _driver_missing(kind):
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.driver import import_error

    package = dict(postgres="psycopg", redis="redis").get(kind)
    if package and import_error(package) is not None:
        return "the Python library %s is required on the host running the check for kind=%s" % (package, kind)
    return None


# ---------------------------------------------------------------- the engine


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run(params, check_mode=False, diff=False, warn=None):
    """Sample until a verdict (or the deadline); returns every sample and the verdict. Never changed."""
    check_params(params)
    missing = _driver_missing(params["kind"])
    if missing:
        raise ModuleFailure(missing, kind=params["kind"], target=target(params))
    sampler = SAMPLERS[params["kind"]]
    failures, successes = params["consecutive_failures"], params["consecutive_successes"]
    samples = []
    started = time.monotonic()

    def take():
        at, before = _now(), time.monotonic()
        sample = sampler(params)
        sample.update(n=len(samples) + 1, at=at, elapsed=round(before - started, 3),
                      latency_ms=round((time.monotonic() - before) * 1000, 1))
        samples.append(sample)
        if sample.get("error_kind") == "auth":
            raise ModuleFailure("%s (a refused login is a setting to fix, not a health verdict: no more samples)"
                                % sample["error"], kind=params["kind"], target=target(params), samples=samples)
        return verdict([s["ok"] for s in samples], failures, successes)

    try:
        found, _waited = wait_for(take, float(params["timeout"]), interval=float(params["interval"]),
                                  what="a %s verdict on %s" % (params["kind"], target(params)))
        confirmed = True
    except WaitTimeout:
        found, confirmed = final_verdict([s["ok"] for s in samples])
    return _result(params, found, confirmed, samples, time.monotonic() - started)


def _result(params, found, confirmed, samples, elapsed):
    oks = [s["ok"] for s in samples]
    last_error = next((s["error"] for s in reversed(samples) if s.get("error")), None)
    result = dict(
        changed=False, kind=params["kind"], target=target(params), verdict=found, confirmed=confirmed,
        healthy=found == "healthy", samples=samples, sample_count=len(samples), successes=sum(1 for ok in oks if ok),
        failures=sum(1 for ok in oks if not ok), elapsed=round(elapsed, 3), last_error=last_error,
        msg="%s %s: %s%s after %s sample(s)%s" % (
            params["kind"], target(params), found, "" if confirmed else " (unconfirmed: deadline reached)",
            len(samples), "; last error: %s" % last_error if last_error and found != "healthy" else ""),
    )
    if found in (params.get("fail_on") or []):
        raise ModuleFailure(result.pop("msg") + " (fail_on)", **result)
    return result
