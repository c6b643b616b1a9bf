# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redis side of every redis_* module: one argument spec, one connect helper, one error translator,
and the INFO reading that describes a node (role, replication offsets and links, persistence, keys).

redis-py is imported only when a connection is opened (pure helpers and the lab's file work never pay for it).
Private to the collection (leading underscore): the API may change between releases.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ErrorTranslator, ModuleFailure

ERROR_KINDS = ("auth", "refused", "timeout", "dns", "other")

# The RDB format each Redis release series writes (src/rdb.h RDB_VERSION): a server loads RDB files of its
# own version or older only.
RDB_VERSIONS = (((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((5, 0), 9), ((4, 0), 8), ((3, 2), 7), ((2, 6), 6))

DEFAULT_HINTS = dict(host="login_host", port="login_port", password="login_password")


class RedisError(Exception):
    """A failure worth showing to the operator as is (no traceback); kind is one of ERROR_KINDS or None."""

    def __init__(self, message, kind=None):
        super(RedisError, self).__init__(message)
        self.kind = kind


def driver():
    """The redis module (redis-py), imported on first use; RedisError when it is missing."""
    try:
        import redis
    except ImportError as exc:
        raise RedisError("the Python library redis (redis-py) is required on the host running this module: %s"
                         % exc, kind="other") from None
    return redis


def redis_import_error():
    """None when redis-py can be imported, else the ImportError (for missing_required_lib)."""
    return REDIS.import_error()


def is_driver_error(exc):
    """Whether exc is one of redis-py's errors, without importing redis-py."""
    return REDIS.is_driver_error(exc)


class RedisErrors(ErrorTranslator):
    """Redis's translator: RedisError (operator-ready) and redis-py errors ("Redis error <context>: ...") become
    ModuleFailure (see _errors.ErrorTranslator)."""

    system = "Redis"
    library = "redis"
    error_base = ("redis", "RedisError")
    own_errors = (RedisError,)

    def driver_error_kind(self, exc):
        """redis-py says by its classes: AuthenticationError, TimeoutError, ConnectionError (refused or reset)."""
        classes = set(cls.__name__ for cls in type(exc).__mro__)
        if "AuthenticationError" in classes:
            return "auth"
        if "TimeoutError" in classes:
            return "timeout"
        if "ConnectionError" in classes and "refused" in str(exc).lower():
            return "refused"
        return "other"


REDIS = RedisErrors()


# `with translate_errors(facts, context):` as every engine of this system has always called it.
translate_errors = REDIS.translate


def check_positive(params, names):
    """ModuleFailure naming the first of `names` (seconds: timeouts, intervals) that is set and not above 0: the
    engines' one check of them, before anything is asked or changed."""
    for name in names:
        if params.get(name) is not None and not params[name] > 0:
            raise ModuleFailure("%s is %s: expected a number of seconds greater than 0 (%s)"
                                % (name, params[name], name))


def connection_argument_spec():
    """Options every Redis-speaking module shares; the password is no_log."""
    return dict(
        login_host=dict(type="str", default="127.0.0.1"),
        login_port=dict(type="int", default=6379),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        connect_timeout=dict(type="float", default=5.0),
    )


def connection_params(params):
    """Pick host/port/user/password/timeout out of module params."""
    return dict(host=params["login_host"], port=params["login_port"], user=params.get("login_user"),
                password=params.get("login_password"), connect_timeout=params.get("connect_timeout") or 5.0)


def endpoint(conn_params):
    return "%s:%s" % (conn_params["host"], conn_params["port"])


def connect(conn_params, hints=None, socket_timeout=None):
    """A client of a server that has answered PING within connect_timeout, or RedisError with one clear sentence and
    its kind.

    hints names the parameters that set host, port and password (for the message).
    """
    redis = driver()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    hints = hints or DEFAULT_HINTS
    timeout = float(conn_params.get("connect_timeout") or 5.0)

    def client_with(read_timeout):
        # No silent retries: a node that does not answer is reported at once (the caller's waiter polls).
        return redis.Redis(host=conn_params["host"], port=int(conn_params["port"]),
                           db=int(conn_params.get("db") or 0), username=conn_params.get("user") or None,
                           password=conn_params.get("password") or None, socket_connect_timeout=timeout,
                           socket_timeout=read_timeout, decode_responses=True, retry=Retry(NoBackoff(), 0),
                           client_name="erlmcp.dr")

    # The PING is part of connecting, so it gets connect_timeout, not the longer read timeout later commands get: a
    # frozen server (SIGSTOP, a paused VM) still completes the TCP handshake in the kernel and never answers, and each
    # read of it took 30 s (dr_drill signal=SIGSTOP measured a Redis failover of 195 s for it, docs/drill.md).
    read_timeout = socket_timeout or max(timeout, 30.0)
    client = client_with(min(timeout, read_timeout))
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        client.close()
        raise connect_error(exc, conn_params, hints) from None
    if read_timeout <= timeout:
        return client
    client.close()
    return client_with(read_timeout)  # connects at its first command, to the server that answered just now


def connect_error(exc, conn_params, hints=None):
    """RedisError for a failed connection: what happened at host:port, and the parameter to change."""
    hints = hints or DEFAULT_HINTS
    where = endpoint(conn_params)
    text = str(exc).strip()
    lower = text.lower()
    name = type(exc).__name__
    if name == "AuthenticationError" or "wrongpass" in lower or "invalid password" in lower or "noauth" in lower \
            or "invalid username-password" in lower:
        if not conn_params.get("password"):
            return RedisError("cannot log in to Redis at %s: it requires a password and none was given (%s)"
                              % (where, hints["password"]), kind="auth")
        return RedisError("cannot log in to Redis at %s%s: the password was rejected (%s)"
                          % (where, " as " + conn_params["user"] if conn_params.get("user") else "",
                             hints["password"]), kind="auth")
    if "name or service not known" in lower or "temporary failure in name resolution" in lower \
            or "nodename nor servname" in lower or "no address associated" in lower:
        return RedisError("cannot resolve the Redis host %r (%s): %s" % (conn_params["host"], hints["host"], text),
                          kind="dns")
    if "connection refused" in lower or "error 111" in lower:
        return RedisError("nothing accepts connections at %s: is redis-server running there (%s, %s)?"
                          % (where, hints["host"], hints["port"]), kind="refused")
    if name == "TimeoutError" or "timed out" in lower or "timeout" in lower:
        return RedisError("no answer from Redis at %s within %ss (connect_timeout)"
                          % (where, conn_params.get("connect_timeout")), kind="timeout")
    return RedisError("cannot connect to Redis at %s: %s" % (where, text), kind="other")


def try_connect(conn_params, hints=None):
    """(client, None) or (None, error message, kind) without raising."""
    try:
        return connect(conn_params, hints), None, None
    except RedisError as exc:
        return None, str(exc), exc.kind


# ---------------------------------------------------------------- what a node is


def rdb_version_of(redis_version):
    """The RDB format version a server of this version writes (and the newest it loads); None if unknown."""
    try:
        parts = tuple(int(p) for p in str(redis_version).split(".")[:2])
    except ValueError:
        return None
    for since, version in RDB_VERSIONS:
        if parts >= since:
            return version
    return None


def keyspace(info):
    """Keys per database from INFO's keyspace section: {"db0": 12, ...} (empty databases left out)."""
    result = {}
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit() and isinstance(value, dict):
            result[key] = int(value.get("keys", 0))
    return dict(sorted(result.items(), key=lambda kv: int(kv[0][2:])))


def replicas_of(info):
    """A primary's replicas from INFO replication (slaveN entries): ip, port, state, offset, lag."""
    rows = []
    for key in sorted(info):
        value = info[key]
        if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict):
            rows.append(dict(host=str(value.get("ip")), port=int(value.get("port", 0)), state=value.get("state"),
                             offset=int(value.get("offset", 0)), lag=int(value.get("lag", 0))))
    return rows


def node_facts(info):
    """The facts of one node, from its INFO (all sections): role, offsets, links, persistence, keys, versions."""
    role = "primary" if info.get("role") == "master" else "replica" if info.get("role") == "slave" else info.get("role")
    offset = int(info.get("master_repl_offset", 0))
    facts = dict(
        role=role,
        redis_version=str(info.get("redis_version")),
        rdb_version=rdb_version_of(info.get("redis_version")),
        run_id=info.get("run_id"),
        config_file=info.get("config_file") or None,
        replid=info.get("master_replid"),
        repl_offset=offset,
        keys_per_db=keyspace(info),
        total_keys=sum(keyspace(info).values()),
        loading=bool(int(info.get("loading", 0))),
        persistence=dict(
            aof_enabled=bool(int(info.get("aof_enabled", 0))),
            aof_rewrite_in_progress=bool(int(info.get("aof_rewrite_in_progress", 0))),
            aof_rewrite_scheduled=bool(int(info.get("aof_rewrite_scheduled", 0))),
            aof_last_bgrewrite_status=info.get("aof_last_bgrewrite_status"),
            aof_last_write_status=info.get("aof_last_write_status"),
            rdb_bgsave_in_progress=bool(int(info.get("rdb_bgsave_in_progress", 0))),
            rdb_last_bgsave_status=info.get("rdb_last_bgsave_status"),
            rdb_last_save_time=int(info.get("rdb_last_save_time", 0)),
            rdb_changes_since_last_save=int(info.get("rdb_changes_since_last_save", 0)),
            rdb_saves=int(info.get("rdb_saves", 0)),
        ),
        upstream_host=None, upstream_port=None, link_status=None, link_down_seconds=None,
        upstream_offset=None, lag_bytes=None, replicas=[],
    )
    if role == "replica":
        facts.update(
            upstream_host=info.get("master_host"),
            upstream_port=int(info["master_port"]) if info.get("master_port") is not None else None,
            link_status=info.get("master_link_status"),
            link_down_seconds=(int(info["master_link_down_since_seconds"])
                               if info.get("master_link_down_since_seconds") not in (None, -1, "-1") else None),
            sync_in_progress=bool(int(info.get("master_sync_in_progress", 0))),
            replica_read_only=bool(int(info.get("slave_read_only", 1))),
            repl_offset=int(info.get("slave_repl_offset", offset)),
        )
    else:
        facts["replicas"] = replicas_of(info)
    return facts


def read_node(client):
    """node_facts() of a connected client, plus its RDB file's place (CONFIG GET dir and dbfilename)."""
    info = client.info("all")
    facts = node_facts(info)
    config = client.config_get("dir")
    config.update(client.config_get("dbfilename"))
    config.update(client.config_get("appenddirname"))
    facts["dir"] = config.get("dir")
    facts["dbfilename"] = config.get("dbfilename")
    facts["appenddirname"] = config.get("appenddirname") or None
    return facts


def config_rewrite(client):
    """CONFIG REWRITE, keeping the config file's mode (issue 16 row 9): Redis 7.0 writes the file anew with mode
    0644 & ~(the server's umask), so a 0600 file holding requirepass/masterauth turned world-readable on every
    rewrite. When the file is reachable from where this runs (the same host), its mode from before is put back; a
    file out of reach keeps what the server's umask gives (run redis-server with umask 077, docs/redis.md).
    Returns the file's path, or None when the server has none."""
    import os
    import stat

    path = client.info("server").get("config_file") or None
    try:
        before = stat.S_IMODE(os.stat(path).st_mode) if path else None
    except OSError:
        before = None
    client.execute_command("CONFIG", "REWRITE")
    if before is not None:
        try:
            if stat.S_IMODE(os.stat(path).st_mode) != before:
                os.chmod(path, before)
        except OSError:  # not ours to change (another owner): the server's umask decides, as for a remote file
            pass
    return path


def server_time(client):
    """The server's clock in whole seconds (TIME), for comparing with LASTSAVE."""
    seconds, _micro = client.time()
    return int(seconds)


def execute(module, run):
    """_module.execute for a redis_* module: redis-py must be importable, then the engine runs."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute as execute_engine

    execute_engine(module, run, needs=REDIS)


# ---------------------------------------------------------------- sampled values (backup records, restore compares)


def value_digest(client, key):
    """sha256 of a key's type and value in a canonical form (sorted where Redis does not order), or None when the
    key is missing. Independent of the internal encoding, so a value loaded from an RDB digests the same."""
    import hashlib

    kind = client.type(key)
    if kind == "none":
        return None
    if kind == "string":
        value = client.get(key)
    elif kind == "hash":
        value = sorted(client.hgetall(key).items())
    elif kind == "list":
        value = client.lrange(key, 0, -1)
    elif kind == "set":
        value = sorted(client.smembers(key))
    elif kind == "zset":
        value = client.zrange(key, 0, -1, withscores=True)
    elif kind == "stream":
        value = client.xrange(key)
    else:
        value = client.execute_command("DUMP", key)
    return hashlib.sha256(repr((kind, value)).encode("utf-8", "surrogateescape")).hexdigest()


def sample_values(conn_params, keys_per_db, size):
    """Up to `size` random keys without a TTL per database, each with its value_digest: {"db0": {key: digest}}."""
    samples = {}
    for db in keys_per_db:
        client = connect(dict(conn_params, db=int(db[2:])))
        with client:
            picked = {}
            for _attempt in range(size * 3):
                if len(picked) >= size:
                    break
                key = client.randomkey()
                if key is None:
                    break
                if key not in picked and client.ttl(key) == -1:
                    picked[key] = value_digest(client, key)
            samples[db] = picked
    return samples


def compare_samples(conn_params, samples):
    """The sampled keys whose value differs now (or is missing): ["db0:key", ...]."""
    wrong = []
    for db, picked in sorted(samples.items()):
        client = connect(dict(conn_params, db=int(db[2:])))
        with client:
            for key, digest in sorted(picked.items()):
                if value_digest(client, key) != digest:
                    wrong.append("%s:%s" % (db, key))
    return wrong
