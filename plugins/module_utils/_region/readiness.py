# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine of erlmcp.dr.readiness: "can we fail over right now?".

Every probe runs at once, each in its own thread (they wait on the network, not the CPU), and reads through the
collection's existing readers: _replication_info (PostgreSQL), _redis_info (Redis), _redis_store (the Redis backup
catalog), _dns_info and _dns_rfc2136 (DNS), _health (one reachability sample), _lock (the lock store: its folder, or
every etcd member through the run lock's client).
What was measured is judged by _readiness_judge (pure). Read-only: nothing is written anywhere (the DNS
credentials probe is an UPDATE whose prerequisite cannot match, so the server changes nothing).
Private to the collection: the API may change between releases.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.erlmcp.dr.plugins.module_utils._region import readiness_judge as judge
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure

# The probe record of the DNS credentials check: a name no zone holds, with a value-dependent prerequisite
# ("this TXT exists with this value") that cannot match, and an update that deletes only that name's TXT.
CREDENTIALS_PROBE_NAME = "_erlmcp-dr-readiness-probe"
CREDENTIALS_PROBE_VALUE = '"erlmcp.dr readiness probe: never present"'
PROBE_TIMEOUT = 3.0  # seconds one connection or query may take


def run(params, check_mode=False, diff=False, warn=None):
    try:
        limits = judge.thresholds(params.get("thresholds"), params.get("tier_objectives"))
    except ValueError as exc:
        raise ModuleFailure(str(exc)) from None
    now = time.time()
    probes = [
        ("postgres", _postgres), ("redis", _redis), ("redis_backup", _redis_backup),
        ("pg_backup", _pg_backup_hook), ("dns", _dns), ("reachability", _reachability),
        ("capacity", _capacity), ("certificates", _certificates), ("drills", _drills),
        ("residency", _residency_hook), ("lock_store", _lock_store), ("contacts", _contacts),
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = [(name, pool.submit(_timed, name, probe, params, limits, now)) for name, probe in probes]
        outcomes = [(name, future.result()) for name, future in futures]
    checks = [c for _name, (found, _seconds) in outcomes for c in found]
    verdict, exit_code = judge.overall(checks)
    return dict(changed=False, checks=checks, verdict=verdict, exit_code=exit_code, counts=judge.counts(checks),
                table=judge.table(checks, verdict),
                probe_seconds=dict((name, seconds) for name, (_found, seconds) in outcomes),
                elapsed=round(time.monotonic() - started, 3),
                checked_at=datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat())


def _timed(name, probe, params, limits, now):
    """(checks, seconds the probe took): which probe sets the wall time (all run at once)."""
    started = time.monotonic()
    found = _guarded(name, probe, params, limits, now)
    return found, round(time.monotonic() - started, 3)


def _guarded(name, probe, params, limits, now):
    """A probe that breaks gives one failed check naming why: the other probes' verdicts still count."""
    try:
        return probe(params, limits, now)
    except ModuleFailure as exc:
        return [judge.check(name, judge.FAIL, detail=str(exc))]
    except Exception as exc:  # a readiness report must come back whole; the error is the check's detail
        return [judge.check(name, judge.FAIL, detail="%s: %s" % (type(exc).__name__, exc))]


# ---------------------------------------------------------------- 1, 2: PostgreSQL


def _postgres(params, limits, now):
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import replication_info as ri

    nodes = params.get("postgres_nodes") or []
    if not nodes:
        return [judge.not_configured("pg_replay_lag", "no postgres hosts in the inventory", "group postgres")]
    conn = dict(login_user=params.get("pg_login_user") or "postgres", login_password=params.get("pg_login_password"),
                login_db=params.get("pg_login_db") or "postgres", connect_timeout=int(PROBE_TIMEOUT))
    plain = [dict(name=n["name"], host=n["host"], port=n["port"]) for n in nodes]
    info = ri.run(dict(conn, nodes=plain))
    regions = dict((n["name"], n.get("region")) for n in nodes)
    primary = info["primary"]
    if primary is None:
        return [judge.check("pg_primary", judge.FAIL, len(info["primaries"]), "writable primaries", 1, "issue 20",
                            "no single writable primary: %s" % (", ".join(info["primaries"]) or "none reachable"))]
    checks = []
    target_lsn = info["nodes"][primary]["current_lsn"]
    rpo = limits["rpo_seconds"][0]
    for name in info["standbys"]:
        facts = info["nodes"][name]
        seconds = _replay_seconds(ri, conn, nodes, name, facts, target_lsn, rpo)
        checks.append(judge.pg_replay_lag(name, facts["lag_bytes"], seconds, bool(facts["replay_paused"]), limits))
    for name in info["unreachable_nodes"]:
        checks.append(judge.check("pg_replay_lag %s" % name, judge.FAIL, None, "B", None, "issue 20",
                                  "unreachable: %s" % info["nodes"][name]["error"]))
    for region in sorted(set(r for r in regions.values() if r) - set([regions[primary]])):
        streaming = sorted(n for n in info["standbys"]
                           if regions[n] == region and info["nodes"][n]["streaming"])
        checks.append(judge.pg_standbys(region, streaming, limits))
    return checks


def _replay_seconds(ri, conn, nodes, name, facts, target_lsn, rpo):
    """Idle-aware replay lag: 0 when the standby has replayed the primary's LSN as read at the check's start;
    else how long it takes to get there, polled up to the RPO (None past it: the lag is at least the RPO). On an
    idle primary this is 0 however old the last replayed transaction is: nothing is missing."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import lsn_diff
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for

    if facts["lag_bytes"] is not None and facts["lag_bytes"] <= 0:
        return 0.0
    node = [dict(name=n["name"], host=n["host"], port=n["port"]) for n in nodes if n["name"] == name][0]

    def replayed():
        again = ri.inspect(node, conn)
        return again["reachable"] and (lsn_diff(target_lsn, again["replay_lsn"]) or 0) <= 0

    try:
        _ok, waited = wait_for(replayed, rpo, interval=0.05, what="replay of %s on %s" % (target_lsn, name))
    except WaitTimeout:
        return None
    return waited


# ---------------------------------------------------------------- 3, 4: Redis replication


def _redis(params, limits, now):
    from ansible_collections.erlmcp.dr.plugins.module_utils._redis import info as _redis_info

    nodes = params.get("redis_nodes") or []
    if not nodes:
        return [judge.not_configured("redis_link", "no redis hosts in the inventory", "group redis")]
    info = _redis_info.run(dict(nodes=[dict(name=n["name"], host=n["host"], port=n["port"]) for n in nodes],
                                login_user=None, login_password=params.get("redis_password"),
                                connect_timeout=PROBE_TIMEOUT))
    checks = []
    if info["primary"] is None:
        checks.append(judge.check("redis_primary", judge.FAIL, len(info["primaries"]), "primaries", 1, "issue 20",
                                  "no single Redis primary: %s" % (", ".join(info["primaries"]) or "none reachable")))
    for name in sorted(info["nodes"]):
        facts = info["nodes"][name]
        if name == info["primary"]:
            continue
        if not facts["reachable"]:
            checks.append(judge.check("redis_link %s" % name, judge.FAIL, "unreachable", None, "up", "issue 20",
                                      facts["error"]))
            continue
        if facts["role"] != "replica":
            continue
        checks.append(judge.redis_links(name, facts["link_status"], facts["upstream"], info["primary"]))
        checks.append(judge.redis_offset(name, facts.get("lag_bytes"), limits))
    return checks


# ---------------------------------------------------------------- 5: the Redis backup catalog


# The newest verified backups whose stored file readiness hashes, newest first, stopping at the first that still has
# its sha256: one full read of one file when the newest is intact (~1 GiB/s of sha256 on the shared test machine, so
# about a second per GiB plus the disk's read), at most this many when the newest ones are damaged.
REDIS_BACKUP_HASHED_MAX = 3


def _redis_backup(params, limits, now):
    from ansible_collections.erlmcp.dr.plugins.module_utils._redis.store import DirectoryStore

    store_dir = params.get("redis_backup_dir")
    if not store_dir:
        return [judge.not_configured("redis_backup_age", "no redis_backup_dir in the inventory",
                                     "redis_backup_dir; an S3 catalog is not read by readiness yet")]
    store = DirectoryStore(store_dir)
    intact, damaged = verify_newest(store.list(), store.stored_sha256, REDIS_BACKUP_HASHED_MAX)
    age = None if intact is None else max(now - float(intact.get("lastsave") or 0), 0.0)
    return [judge.redis_backup(intact, damaged, age, limits, store_dir, REDIS_BACKUP_HASHED_MAX)]


def verify_newest(backups, digest_of, most):
    """(the newest verified backup whose stored file still has the sha256 its metadata records, or None; the newer
    verified backups whose file does not, newest first: [{id, sha256 found (None: missing), sha256 expected}]).
    The sha256 is what redis_restore checks before it touches a server: a backup that fails it would be refused.
    digest_of(id) hashes one stored file; at most `most` files are hashed."""
    verified = sorted((b for b in backups if b.get("verified")),
                      key=lambda b: (b.get("lastsave") or 0, b.get("id") or ""), reverse=True)
    damaged = []
    for metadata in verified[:most]:
        digest = digest_of(metadata["id"])
        if digest is not None and digest == metadata.get("sha256"):
            return metadata, damaged
        damaged.append(dict(id=metadata["id"], found=digest, expected=metadata.get("sha256")))
    return None, damaged


# ---------------------------------------------------------------- 6, 7: PostgreSQL backups (hook)


def pg_backup_status(params, now=None):
    """{backup_age_seconds, wal_archive_age_seconds, ...} from pgBackRest (the newest usable backup in the stanza's
    repository) and the primary's pg_stat_archiver; None when the inventory names no stanza ("not configured")."""
    settings = params.get("pg_backup") or {}
    if not settings.get("stanza"):
        return None
    from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import plan as _pitr_plan
    from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.backup import driver_for

    now = time.time() if now is None else now
    backups = _pitr_plan.usable_backups(driver_for(dict(settings, command_timeout=30)).info())
    stops = [b["timestamp"]["stop"] for b in backups if (b.get("timestamp") or {}).get("stop")]
    status = dict(backup_age_seconds=max(now - max(stops), 0.0) if stops else None,
                  newest_backup=backups[-1]["label"] if backups else None)
    status.update(_archiver(params))
    status.update(verified_restore_status(settings, now))
    return status


def verified_restore_status(settings, now):
    """The age of the last restore pg_restore_verify proved (its record; default path from stanza and config)."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._pitr import verify as _pitr_verify

    path = _pitr_verify.record_path(dict(settings, record=settings.get("verified_restore_record")))
    record = _pitr_verify.read_record(path)
    if record is None:
        return dict(verified_restore_age_seconds=None, verified_restore_detail="no verified restore recorded in %s "
                    "(run pg_restore_verify on a schedule)" % path)
    return dict(verified_restore_age_seconds=max(now - record["verified_at"], 0.0),
                verified_restore_detail="backup %s restored and checked at %s" % (
                    record.get("label"), record.get("verified_at_iso")))


# pg_stat_archiver on the primary: idle-aware, like the replay lag: when every completed segment before the one being
# written is archived, nothing is waiting, however long ago the last one went (an idle primary switches no segment).
_ARCHIVER_SQL = """
SELECT pg_is_in_recovery() AS in_recovery, last_archived_wal, failed_count, last_failed_wal,
       extract(epoch FROM now() - last_archived_time)::float8 AS archived_ago,
       (last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time))
         AS failing,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal
FROM pg_stat_archiver
"""


def _archiver(params):
    from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as _postgres

    for node in params.get("postgres_nodes") or []:
        conn, _error = _postgres.try_connect(dict(
            host=node["host"], port=node["port"], user=params.get("pg_login_user") or "postgres",
            password=params.get("pg_login_password"), dbname=params.get("pg_login_db") or "postgres",
            connect_timeout=int(PROBE_TIMEOUT)), "erlmcp.dr readiness")
        if conn is None:
            continue
        try:
            row = _postgres.query_one(conn, _ARCHIVER_SQL)
        finally:
            conn.close()
        if row["in_recovery"]:
            continue
        return judge_archiver(row, node["name"])
    return dict(wal_archive_age_seconds=None, archive_detail="no writable primary answered")


def judge_archiver(row, primary):
    """The archive's age from one pg_stat_archiver row of the primary (pure)."""
    detail = "primary %s, last archived %s" % (primary, row.get("last_archived_wal") or "nothing")
    if row.get("failing"):
        return dict(wal_archive_age_seconds=None, archive_detail="archive_command failing on %s (%s failures, last "
                    "%s): %s" % (primary, row.get("failed_count"), row.get("last_failed_wal"), detail))
    archived, current = row.get("last_archived_wal"), row.get("current_wal")
    if archived and current and len(archived) == 24 and len(current) == 24 and \
            int(archived[8:], 16) + 1 >= int(current[8:], 16):
        return dict(wal_archive_age_seconds=0.0, archive_detail="every completed segment archived; " + detail)
    return dict(wal_archive_age_seconds=row.get("archived_ago"), archive_detail=detail)


def _pg_backup_hook(params, limits, now):
    status = pg_backup_status(params, now)
    if status is None:
        return [judge.not_configured("pg_backup_age", "no pg_backrest_stanza in the inventory",
                                     "pg_backup, docs/pitr.md"),
                judge.not_configured("wal_archive_age", "no pg_backrest_stanza in the inventory",
                                     "pg_backup, docs/pitr.md"),
                judge.not_configured("pg_restore_verified_age", "no pg_backrest_stanza in the inventory",
                                     "pg_restore_verify, docs/pitr.md")]
    return [judge.age_check("pg_backup_age", status.get("backup_age_seconds"), "pg_backup_age_seconds", limits,
                            "no PostgreSQL backup in the repository (run pg_backup)",
                            detail="backup %s" % status.get("newest_backup") if status.get("newest_backup") else ""),
            judge.age_check("wal_archive_age", status.get("wal_archive_age_seconds"), "wal_archive_age_seconds",
                            limits, status.get("archive_detail") or "no archived WAL found",
                            detail=status.get("archive_detail") or ""),
            # No proof yet is a warning, not a failure: the backups may well restore; nobody has shown it.
            judge.age_check("pg_restore_verified_age", status.get("verified_restore_age_seconds"),
                            "pg_restore_verified_age_seconds", limits, status.get("verified_restore_detail"),
                            missing_verdict=judge.WARN, detail=status.get("verified_restore_detail") or "")]


# ---------------------------------------------------------------- 8, 9, 10: DNS


def _dns(params, limits, now):
    dns = params.get("dns") or {}
    if not dns.get("zone"):
        return [judge.not_configured("dns_ttl", "no dns_zone in the inventory", "dns_zone, dns_records")]
    from ansible_collections.erlmcp.dr.plugins.module_utils._dns import info as _dns_info

    base = dict(provider=dns.get("provider") or "rfc2136", zone=dns["zone"], type="A",
                server=(dns.get("servers") or [{}])[0].get("host"),
                port=(dns.get("servers") or [{}])[0].get("port") or 53, servers=dns.get("servers") or None,
                timeout=PROBE_TIMEOUT, tsig_key_name=dns.get("tsig_key_name"),
                tsig_key_secret=params.get("dns_tsig_key_secret"),
                tsig_algorithm=dns.get("tsig_algorithm") or "hmac-sha256",
                hosted_zone_id=dns.get("hosted_zone_id"), endpoint_url=dns.get("endpoint_url"),
                aws_region=dns.get("aws_region") or "us-east-1", aws_access_key_id=None, aws_secret_access_key=None,
                aws_session_token=None)
    checks = []
    for record in dns.get("records") or []:
        facts = _dns_info.run(dict(base, name=record))
        rows = facts["servers"]
        if facts.get("api") is not None:  # Route 53: the record set the API holds counts as one more answer
            rows = rows + [dict(name="Route 53 API", ttl=facts["api"]["ttl"], values=facts["api"]["values"],
                                error=None)]
        checks.append(judge.dns_ttl(record, rows, limits))
        checks.append(judge.dns_agree(record, rows))
    checks.extend(_dns_credentials(base))
    return checks


def _dns_credentials(base):
    """10: an UPDATE at the primary signed with the inventory's key, whose prerequisite cannot match."""
    if base["provider"] == "route53":
        from ansible_collections.erlmcp.dr.plugins.module_utils._dns import route53 as r53

        try:
            r53.hosted_zone(r53.client(base), base)
        except Exception as exc:
            return [judge.check("dns_credentials route53", judge.FAIL, type(exc).__name__, None, "access",
                                "issue 20", str(exc))]
        return [judge.check("dns_credentials route53", judge.PASS, "hosted zone read", None, "access", "issue 20",
                            "Route 53 answered for the hosted zone")]
    from ansible_collections.erlmcp.dr.plugins.module_utils._dns import base as d
    from ansible_collections.erlmcp.dr.plugins.module_utils._dns import rfc2136 as rfc

    servers = base.get("servers") or [dict(name=base["server"], host=base["server"], port=base["port"])]
    primary = [s for s in servers if s.get("role") == "primary"] or servers[:1]
    where = d.endpoint(dict(primary[0], name=primary[0].get("name") or primary[0]["host"]))
    if not base.get("tsig_key_name"):
        return [judge.not_configured("dns_credentials %s" % where, "no TSIG key", "dns_tsig_key_name")]
    name = "%s.%s" % (CREDENTIALS_PROBE_NAME, d.zone_name(base))
    try:
        outcome = rfc.update(base, primary[0], name, "TXT", [], 0, [CREDENTIALS_PROBE_VALUE])
    except d.DnsError as exc:
        outcome = "%s (%s)" % (exc.kind, exc)
    except Exception as exc:  # dnspython's TSIG errors (BADSIG, BADKEY, BADTIME) on the signed answer
        outcome = "%s: %s" % (type(exc).__name__, exc)
    return [judge.dns_credentials(where, outcome)]


# ---------------------------------------------------------------- 11: reachability


def _reachability(params, limits, now):
    from ansible_collections.erlmcp.dr.plugins.module_utils._region import health as _health

    parts = []
    for app in params.get("apps") or []:
        parts.append((app["region"], "app", dict(kind="http", url=app["url"].rstrip("/") + "/health")))
    for node in params.get("postgres_nodes") or []:
        parts.append((node["region"], "database", dict(kind="postgres", host=node["host"], port=node["port"],
                                                       login_user=params.get("pg_login_user"),
                                                       login_password=params.get("pg_login_password"),
                                                       login_db=params.get("pg_login_db") or "postgres")))
    for node in params.get("redis_nodes") or []:
        parts.append((node["region"], "redis", dict(kind="redis", host=node["host"], port=node["port"],
                                                    login_password=params.get("redis_password"))))
    if not parts:
        return [judge.not_configured("reachable", "no app, postgres or redis hosts", "inventory groups")]
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        samples = list(pool.map(lambda p: _health.SAMPLERS[p[2]["kind"]](dict(p[2], sample_timeout=PROBE_TIMEOUT)),
                                parts))
    by_region = {}
    for (region, part, spec), sample in zip(parts, samples):
        by_region.setdefault(region, []).append(dict(part=part, target=_health.target(spec), ok=sample["ok"],
                                                     error=sample.get("error")))
    return [judge.reachable(region, by_region[region]) for region in sorted(by_region)]


# ---------------------------------------------------------------- 12: capacity


def _capacity(params, limits, now):
    declared = params.get("capacity") or {}
    regions = declared.get("regions") or {}
    targets = sorted(set(params.get("target_regions") or []) | set(regions))
    if not targets:
        return [judge.capacity("(none)", None, None, limits)]
    return [judge.capacity(region, regions.get(region), declared.get("load"), limits) for region in targets]


# ---------------------------------------------------------------- 13: certificates


def _certificates(params, limits, now):
    urls = params.get("public_endpoints") or []
    if not urls:
        return [judge.not_configured("certificate", "no dr_public_endpoints", "dr_public_endpoints: https URLs")]
    return [judge.certificate(url, *_days_left(url, now), limits=limits) for url in urls]


def _days_left(url, now):
    """(days until the certificate the endpoint presents expires, error). The chain is not verified here: this
    check is about expiry (a health check with validate_certs judges trust)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None, "not an https URL: %r (dr_public_endpoints)" % url
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=PROBE_TIMEOUT) as sock:
            with context.wrap_socket(sock, server_hostname=parts.hostname) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        return None, "no TLS answer from %s: %s" % (url, exc)
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    expires = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return (expires.timestamp() - now) / 86400.0, None


# ---------------------------------------------------------------- 14: drills


def read_drill_history(path):
    """The drill history (docs/readiness.md): JSON lines {kind, verdict, finished_at (ISO 8601), run_id}.
    Returns (records with finished_at as epoch seconds, problems): a line that cannot be read is a problem."""
    records, problems = [], []
    try:
        with open(path) as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        return [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            moment = datetime.datetime.fromisoformat(str(data["finished_at"]).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            records.append(dict(data, finished_at=moment.timestamp(), finished_at_text=data["finished_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append("%s:%s: %s" % (path, number, exc))
    return records, problems


def _drills(params, limits, now):
    path = params.get("drill_history")
    if not path:
        return [judge.not_configured("drill", "no drill history file", "dr_drill_history")]
    records, problems = read_drill_history(path)
    checks = judge.drills(records, now, limits)
    if problems:
        checks.append(judge.check("drill_history", judge.FAIL, len(problems), "unreadable lines", 0, "issue 20",
                                  "; ".join(problems[:3])))
    return checks


# ---------------------------------------------------------------- 15: residency (hook)


def residency_verdicts(params):
    """{target region: (verdict, detail)} from the residency guard (_region/residency.py, the one the regional failover
    runs) on the inventory's dr_regions / dr_datasets / dr_residency_rules; None when the inventory declares no
    regions or datasets ("not configured"). A target the guard refuses is a fail: failing over there needs a written
    override; one it cannot decide (a gap in the data) is a fail too."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._region import residency as _residency

    data = params.get("residency") or {}
    if not data.get("regions") or not data.get("datasets"):
        return None
    verdicts = {}
    for region in params.get("target_regions") or []:
        verdict = _residency.check(region, data["regions"], data["datasets"], data.get("rules") or None)
        verdicts[region] = (judge.PASS if verdict.allowed else judge.FAIL, verdict.message)
    return verdicts


def _residency_hook(params, limits, now):
    targets = sorted(params.get("target_regions") or [])
    verdicts = residency_verdicts(params)
    if verdicts is None:
        return [judge.not_configured("residency region %s" % region, "no dr_regions / dr_datasets in the inventory",
                                     "the residency guard, docs/design.md") for region in targets]
    return [judge.check("residency region %s" % region, verdicts.get(region, (judge.WARN, "not judged"))[0],
                        None, None, None, "residency guard", verdicts.get(region, (judge.WARN, "not judged"))[1])
            for region in targets]


# ---------------------------------------------------------------- 16: the lock store


# The readiness module's lock_etcd suboptions, each the inventory's dr_lock_etcd_<name> (the run lock's settings).
LOCK_ETCD_OPTIONS = ("endpoints", "ca_file", "cert_file", "key_file", "user", "prefix", "timeout")


def lock_variables(params):
    """The run lock's inventory variables (_lock.store.STORE_VARS) from the module's parameters, so the store is
    chosen and its settings checked by the run lock's own code (_lock.store.store_settings): the same store, the
    same members, TLS and login a run would use, the same errors naming the same variables."""
    etcd = params.get("lock_etcd") or {}
    found = dict(("dr_lock_etcd_%s" % name, etcd.get(name)) for name in LOCK_ETCD_OPTIONS)
    found.update(dr_lock_store=params.get("lock_store"), dr_lock_etcd_password=params.get("lock_etcd_password"))
    return dict((name, value) for name, value in found.items() if value not in (None, "", []))


def lock_store_etcd_check(settings):
    """Every member asked at once, through the run lock's client (TLS, login, per-request timeout), for a
    linearizable read of the lock prefix (count only): a member serves it only with a quorum behind it, so
    its answer is what a run's take would get. Bounded: a member that does not answer costs one request timeout
    (dr_lock_etcd_timeout), one that answers "no leader" is asked again for the client's ELECTION_SECONDS."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd

    read = dict(_lock_etcd.prefix_range(settings["prefix"]), count_only=True)
    answers = _lock_etcd.EtcdClient(settings).ask_each("/kv/range", read)
    for answer in answers:
        answer["locks"] = int((answer.get("answer") or {}).get("count") or 0)
    return judge.lock_store_etcd(answers, settings["prefix"])


def _lock_store(params, limits, now):
    return lock_store_checks(params)


def lock_store_checks(params):
    """The lock store's check from the module's parameters: the store a run would use, asked as a run would."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock

    variables = lock_variables(params)
    try:
        settings = _lock.store_settings(variables, store_dir=params.get("lock_dir"))
    except _lock.LockStoreError as exc:  # a run would be refused the same way: no run can take the lock
        return [judge.lock_store_unusable(str(exc))]
    if settings["kind"] == _lock.STORE_ETCD:  # never the directory instead: that is the operator's choice
        return [lock_store_etcd_check(settings)]
    folder = os.path.abspath(os.path.expanduser(settings["store_dir"]))
    existing = folder
    while not os.path.exists(existing):  # the store makes its folder on first use: its nearest parent must let it
        existing = os.path.dirname(existing)
    writable = os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)
    detail = ("%s is writable" % existing if existing == folder else
              "%s does not exist yet; %s lets this user create it" % (folder, existing)) if writable else \
        "%s: %s does not let uid %s write (dr_lock_dir)" % (folder, existing, os.geteuid())
    return [judge.check("lock_store directory", judge.PASS if writable else judge.FAIL, folder, None, "writable",
                        "issue 20", detail)]


# ---------------------------------------------------------------- 17: contacts


def _contacts(params, limits, now):
    reviewed = params.get("contacts_reviewed_at")
    if not reviewed:
        return [judge.check("contacts_age", judge.WARN, None, "days", "<= %s" % limits["contacts_age_days"][0],
                            limits["contacts_age_days"][1], "undeclared: set dr_contacts_reviewed_at (a date)")]
    try:
        moment = datetime.datetime.fromisoformat(str(reviewed).replace("Z", "+00:00"))
    except ValueError:
        return [judge.check("contacts_age", judge.FAIL, str(reviewed), "days", None, "inventory",
                            "dr_contacts_reviewed_at: expected an ISO 8601 date such as 2026-01-31; found %r"
                            % reviewed)]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return [judge.age_check("contacts_age", max(now - moment.timestamp(), 0.0), "contacts_age_days", limits,
                            "", unit="days", scale=86400.0, detail="reviewed %s" % reviewed)]
