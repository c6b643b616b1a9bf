# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQL side of every pg_* module: one argument spec, one connect helper, one error translator,
LSN arithmetic, and the queries that describe a node (role, timeline, LSNs, lag).

psycopg is imported only when a connection is opened (the stop fence and the pure plans never pay for it).
Private to the collection (leading underscore): the API may change between releases.
"""

from __future__ import annotations

import re

from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ErrorTranslator
# ModuleFailure lives in _errors; _postgres/follow.py still says pg.ModuleFailure, so the name stays reachable from
# here.
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: F401  # pylint: disable=unused-import

ERROR_KINDS = ("auth", "refused", "timeout", "dns", "other")


def driver():
    """The psycopg module, imported on first use; PgError when it is missing."""
    try:
        import psycopg
    except ImportError as exc:
        raise PgError("the Python library psycopg (version 3) is required on the host running this module: %s"
                      % exc, kind="other") from None
    return psycopg


def __getattr__(name):
    """`_postgres.psycopg` (the module, or None when missing) for older callers, imported only when asked for."""
    if name == "psycopg":
        try:
            return driver()
        except PgError:
            return None
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def psycopg_import_error():
    """None when psycopg can be imported, else the ImportError (for missing_required_lib)."""
    return POSTGRES.import_error()


def is_driver_error(exc):
    """Whether exc is one of psycopg's errors, without importing psycopg."""
    return POSTGRES.is_driver_error(exc)


class PgError(Exception):
    """A failure worth showing to the operator as is (no traceback); kind is one of ERROR_KINDS or None."""

    def __init__(self, message, kind=None):
        super(PgError, self).__init__(message)
        self.kind = kind


class PostgresErrors(ErrorTranslator):
    """PostgreSQL's translator: PgError (ServerError is one: operator-ready messages, passed on as they are) and
    psycopg errors ("PostgreSQL error <context>: ...") become ModuleFailure (see _errors.ErrorTranslator)."""

    system = "PostgreSQL"
    library = "psycopg"
    error_base = ("psycopg", "Error")
    own_errors = (PgError,)

    def driver_error_kind(self, exc):
        return error_kind(exc)


POSTGRES = PostgresErrors()


# `with translate_errors(facts, context):` as every engine of this system has always called it.
translate_errors = POSTGRES.translate


def connection_argument_spec():
    """Options every SQL-speaking module shares; secrets are no_log."""
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=5432),
        login_user=dict(type="str", default="postgres"),
        login_password=dict(type="str", no_log=True),
        login_db=dict(type="str", default="postgres"),
        connect_timeout=dict(type="int", default=5),
    )


def connection_params(params, prefix="login_"):
    """Pick host/port/user/password/db/connect_timeout out of module params."""
    return dict(
        host=params[prefix + "host"],
        port=params[prefix + "port"],
        user=params.get(prefix + "user") or params["login_user"],
        password=params.get(prefix + "password") or params.get("login_password"),
        dbname=params.get(prefix + "db") or params.get("login_db") or "postgres",
        connect_timeout=params.get("connect_timeout") or 5,
    )


def endpoint(conn_params):
    return "%s:%s" % (conn_params["host"], conn_params["port"])


DEFAULT_HINTS = dict(host="login_host", port="login_port", password="login_password")


def connect(conn_params, application_name="erlmcp.dr", hints=None, **extra):
    """Open an autocommit connection, turning libpq's errors into one clear sentence (PgError with its kind).

    hints names the parameters that set host, port and password (for the message); extra goes to libpq
    (replication="true", say).
    """
    psycopg = driver()
    from psycopg.rows import dict_row

    kwargs = dict(conn_params)
    kwargs.update(extra)
    kwargs["application_name"] = application_name
    kwargs = dict((k, v) for k, v in kwargs.items() if v is not None)
    try:
        return psycopg.connect(autocommit=True, row_factory=dict_row, **kwargs)
    except psycopg.Error as exc:
        kind = error_kind(exc)
        raise PgError(describe_connect_error(exc, conn_params, hints), kind=kind) from None


def error_kind(exc):
    """auth | refused | timeout | dns | other, from a libpq connection error."""
    lowered = str(exc).lower()
    if ("password authentication failed" in lowered or "no password supplied" in lowered
            or "authentication failed" in lowered or "no pg_hba.conf entry" in lowered):
        return "auth"
    if "could not translate host name" in lowered or "name or service not known" in lowered:
        return "dns"
    if "connection refused" in lowered:
        return "refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "timeout"
    return "other"


# libpq's own "where" before its reason ("connection failed: connection to server at "h", port p failed: "): the
# message names the endpoint itself.
_LIBPQ_WHERE = re.compile(r'^(connection failed: )?(connection to server (at|on) .*? failed: )?')


def libpq_reason(exc):
    """A libpq connection error in one line: every line of it (its reason is on the first, libpq's explanation on
    the next ones), without libpq's own "connection to server at ... failed:" prefix."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    return _LIBPQ_WHERE.sub("", " ".join(lines), count=1) or " ".join(lines)


def describe_connect_error(exc, conn_params, hints=None):
    """What went wrong connecting to host:port, in words an operator can act on, naming the parameter to fix."""
    names = dict(DEFAULT_HINTS, **(hints or {}))
    text = libpq_reason(exc)
    where = endpoint(conn_params)
    user = conn_params.get("user")
    kind = error_kind(exc)
    if kind == "auth":
        if "no pg_hba.conf entry" in str(exc).lower():
            return "authentication failed for user %s at %s: no pg_hba.conf entry allows it (%s)" % (
                user, where, text)
        return "authentication failed for user %s at %s: wrong or missing password (%s)" % (
            user, where, names["password"])
    if kind == "dns":
        return "cannot resolve host %r (%s): %s" % (conn_params.get("host"), names["host"], text)
    if kind == "refused":
        return ("nothing is listening at %s (connection refused, connecting as %s): is PostgreSQL running, is the "
                "port right (%s)?" % (where, user, names["port"]))
    if kind == "timeout":
        return "no answer from %s within %ss (connect_timeout), connecting as %s" % (
            where, conn_params.get("connect_timeout"), user)
    return "cannot connect to %s as %s: %s" % (where, user, text)


def open_connection(conn_params, application_name="erlmcp.dr", hints=None):
    """(connection, None) or (None, PgError): for nodes that may legitimately be down."""
    try:
        return connect(conn_params, application_name, hints), None
    except PgError as exc:
        return None, exc


def try_connect(conn_params, application_name="erlmcp.dr"):
    """(connection, None) or (None, error message): for nodes that may legitimately be down."""
    conn, error = open_connection(conn_params, application_name)
    return conn, (str(error) if error is not None else None)


# ---------------------------------------------------------------- LSN arithmetic

_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text):
    """'16/B374D848' -> byte position (int). None stays None."""
    if text is None:
        return None
    match = _LSN_RE.match(str(text).strip())
    if not match:
        raise ValueError("not a PostgreSQL LSN: %r" % (text,))
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position):
    """Byte position -> 'X/Y' as PostgreSQL prints it."""
    if position is None:
        return None
    return "%X/%X" % (position >> 32, position & 0xFFFFFFFF)


def lsn_diff(ahead, behind):
    """Bytes between two LSNs (text or int); None when either is unknown."""
    a = parse_lsn(ahead) if isinstance(ahead, str) else ahead
    b = parse_lsn(behind) if isinstance(behind, str) else behind
    if a is None or b is None:
        return None
    return a - b


# ---------------------------------------------------------------- node inspection

_NODE_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       current_setting('server_version') AS server_version,
       current_setting('port')::int AS port,
       current_setting('default_transaction_read_only') AS default_transaction_read_only,
       current_setting('cluster_name') AS cluster_name,
       current_setting('synchronous_standby_names') AS synchronous_standby_names,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS primary_timeline,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END AS replay_paused,
       pg_last_xact_replay_timestamp() AS last_replay_at,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline
"""

_RECEIVER_SQL = """
SELECT status, received_tli, sender_host, sender_port, slot_name,
       flushed_lsn::text AS flushed_lsn, latest_end_lsn::text AS latest_end_lsn
FROM pg_stat_wal_receiver
"""

_REPLICATION_SQL = """
SELECT application_name, client_addr::text AS client_addr, state, sync_state,
       sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn,
       flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
       EXTRACT(EPOCH FROM replay_lag)::float8 AS replay_lag_seconds
FROM pg_stat_replication
ORDER BY application_name
"""


def query_one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def query_all(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def wal_receiver(conn):
    """The standby's WAL receiver (status, sender, timeline), or None when it has none."""
    row = query_one(conn, _RECEIVER_SQL)
    return dict(row) if row else None


def node_state(conn):
    """Role, identity, timeline and LSNs of the node behind conn, as plain JSON-able values."""
    row = dict(query_one(conn, _NODE_SQL))
    receiver = wal_receiver(conn) if row["in_recovery"] else None
    if row["in_recovery"]:
        timeline = standby_timeline(conn, receiver, row["checkpoint_timeline"], row["replay_lsn"], row["receive_lsn"])
    else:
        timeline = row["primary_timeline"]
    last_replay = row.pop("last_replay_at")
    row.pop("primary_timeline")
    row.update(
        role="standby" if row["in_recovery"] else "primary",
        timeline=timeline,
        wal_receiver=receiver,
        last_replay_at=last_replay.isoformat() if last_replay else None,
        read_only=row.pop("default_transaction_read_only") == "on",
    )
    row["position_lsn"] = row["current_lsn"] or max_lsn(row["receive_lsn"], row["replay_lsn"])
    return row


_HISTORY_SQL = """
SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) AS timeline
FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{8}[.]history$'
"""

_SEGMENT_TIMELINE_SQL = """
SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) AS timeline
FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' AND substr(name, 9, 16) = %s
"""


def standby_timeline(conn, receiver, checkpoint_timeline, replay_lsn=None, receive_lsn=None):
    """The timeline a standby is on (the one it replays; a promotion moves it to the next free one).

    received_tli and the last restartpoint still name an older timeline after a switch (the
    restartpoint lags until the next checkpoint record; with the primary stopped there is no WAL
    receiver at all). The WAL segment files the standby holds are named after the timeline they were
    streamed on: the newest one holding the replay position names the timeline it replays. While it
    streams, a standby follows its upstream onto the newest timeline whose history it has; a standby
    that does not stream (diverged, say) may hold a newer history file it can never reach, so only
    what it received counts then. Nor does a standby whose WAL goes past the point where that newest
    timeline forked off its own: its receiver, connecting to the new primary, reports "streaming" for a
    moment after fetching the history file and before the primary refuses its start point (a restore in
    place caught a standby in that moment, which then looked like a split brain on the new timeline).
    """
    known = [t for t in ((receiver or {}).get("received_tli"), checkpoint_timeline,
                         segment_timeline(conn, replay_lsn)) if t]
    timeline = max(known) if known else None
    if (receiver or {}).get("status") == "streaming":
        newest = newest_history_timeline(conn)
        position = max_lsn((receiver or {}).get("flushed_lsn"), replay_lsn, receive_lsn)
        if newest and (timeline is None or newest > timeline) \
                and not past_the_fork(conn, newest, timeline, position):
            timeline = newest
    return timeline


def past_the_fork(conn, newest, timeline, position):
    """Whether `position`, WAL of `timeline`, goes past where the history of `newest` says `timeline` ended: a
    standby there never followed onto `newest`. False when that is not known (no timeline or position, no entry
    for it, or the history file not readable: pg_read_file needs pg_read_server_files)."""
    if not timeline or not position:
        return False
    ends = dict(read_history(conn, newest) or [])
    return int(timeline) in ends and parse_lsn(position) > ends[int(timeline)]


def read_history(conn, timeline):
    """The server's history of `timeline` as [(tli, switchpoint)]; [] on timeline 1; None if unreadable (pg_read_file
    needs pg_read_server_files)."""
    if not timeline or int(timeline) <= 1:
        return []
    try:
        row = query_one(conn, "SELECT pg_read_file(%s) AS content", ("pg_wal/%08X.history" % int(timeline),))
    except Exception as exc:
        if is_driver_error(exc):
            return None
        raise
    return parse_history(row["content"]) if row else None


def parse_history(text):
    """A timeline history file ('1<TAB>0/3000060<TAB>reason' lines) -> [(tli, switchpoint), ...]."""
    entries = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        try:
            entries.append((int(fields[0]), parse_lsn(fields[1])))
        except ValueError:
            continue
    return entries


def segment_name_suffix(lsn, segment_size):
    """The log/segment part (16 hex digits) of the WAL file name holding lsn."""
    position = parse_lsn(lsn)
    segments_per_id = 0x100000000 // segment_size
    number = position // segment_size
    return "%08X%08X" % (number // segments_per_id, number % segments_per_id)


def segment_timeline(conn, lsn):
    """Highest timeline of the WAL segment files in pg_wal holding lsn; None when unknown or not allowed."""
    if not lsn:
        return None
    try:
        size = int(query_one(conn, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")["setting"])
        return query_one(conn, _SEGMENT_TIMELINE_SQL, (segment_name_suffix(lsn, size),))["timeline"]
    except Exception as exc:  # pg_ls_waldir needs pg_monitor: fall back on what the receiver says
        if is_driver_error(exc):
            return None
        raise


def newest_history_timeline(conn):
    """Highest timeline with a history file in pg_wal, or None (none yet, or not allowed: needs pg_monitor)."""
    try:
        return query_one(conn, _HISTORY_SQL)["timeline"]
    except Exception as exc:
        if is_driver_error(exc):
            return None
        raise


def max_lsn(*lsns):
    known = [parse_lsn(x) for x in lsns if x]
    return format_lsn(max(known)) if known else None


def replication_stats(conn):
    """The primary's view of its standbys (pg_stat_replication), one dict per standby."""
    return [dict(r) for r in query_all(conn, _REPLICATION_SQL)]


def current_wal_lsn(conn):
    return query_one(conn, "SELECT pg_current_wal_lsn()::text AS lsn")["lsn"]


def checkpoint(conn):
    """Force a checkpoint (pg_rewind reads the source's control file, which a checkpoint updates)."""
    conn.execute("CHECKPOINT")
