# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lock's shared store: etcd (three members, one per region), through etcd's JSON gateway (etcd3gw).

Why etcd: the lock must be shared by every controller (AWX execution nodes, operators' terminals) and survive the
loss of any one region; etcd is what Patroni users already run for exactly this. etcd3gw speaks the gateway's JSON
(no gRPC/protobuf); tooz's etcd lock hides the revision, which is the fencing token here.

- Take = ONE transaction: if the key's create_revision is 0 (it does not exist), put the holder record attached to
  a lease with a TTL; else read the record that holds it. The key's create revision is the run's fencing token.
- The lease is kept alive by a keeper process (forked by start_keeper from erlmcp.dr.run_lock's worker), which
  watches the ansible-playbook process: it refreshes the lease every TTL/3 while that process runs (and is not
  stopped), stops when it ends. A holder killed with -9 therefore loses the lock when its lease expires (TTL); a
  release revokes the lease (the key goes with it).
- There is no take-over: etcd deletes a dead holder's key itself when its lease expires, by its own clock.
- Fencing: while a run holds the lock, every engine step (_module.run_on_controller) first checks that the key still
  has this run's create revision and lease (fencing_refusal); a run whose lease expired (a paused controller that
  resumes) is refused before it touches anything.
- Fails closed: when no endpoint answers with a quorum, the store raises EtcdUnavailable (a LockStoreError); it never
  falls back to the directory store.

The controller imports etcd3gw only when the etcd store is used. No syntax newer than Python 3.8.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import signal
import sys
import time

from ansible_collections.erlmcp.dr.plugins.module_utils._common.at_once import each_at_once
from ansible_collections.erlmcp.dr.plugins.module_utils._lock.store import (
    BUSY, HELD, HELD_BY_OTHER, NOT_HELD, RELEASED, STORE_ETCD, TAKE, LockStore, LockStoreError, default_store_dir, iso,
    process_identity, utc_now)

DEFAULT_TTL = 15  # seconds: a killed holder's lock is free this long after its keeper stopped
MIN_TTL = 2  # etcd grants no less than ~1.5 s with its default election timeout
MAX_TTL = 3600
DEFAULT_PREFIX = "/erlmcp-dr/locks/"
DEFAULT_TIMEOUT = 3.0  # seconds per request to one member before the next one is tried
ELECTION_SECONDS = 3.0  # how long every member may refuse (an election after the leader's loss) before we give up
ENDPOINTS_ENV = "ERLMCP_DR_LOCK_ETCD_ENDPOINTS"
API_PATH = "/v3/"  # etcd 3.4+ serves its JSON gateway here (Debian 12's etcd-server is 3.4)
HELD_DIR_NAME = "etcd-held"
KEEPER_ANSWER_SECONDS = 30.0
# What a member says when it cannot serve a linearizable request (no quorum, an election): try the next one.
UNAVAILABLE_MARKERS = ("no leader", "timed out", "leader changed", "not capable", "unhealthy", "too many requests",
                       "deadline exceeded", "stopped", "not started", "unavailable")
CLIENT_PROBLEM = ("the etcd run lock store needs the Python library etcd3gw on the controller (%s): %s (pip install "
                  "etcd3gw; the collection's requirements.txt and execution environment list it)")


class EtcdUnavailable(LockStoreError):
    """No etcd member answered with a quorum: the run must stop (fail closed)."""


class EtcdUnreachable(EtcdUnavailable):
    """A member that did not answer at all (connection refused, reset, timed out, TLS refused), as opposed to one
    that answered it cannot serve now (no leader yet): asking it again within an election's time changes nothing."""


# ---------------------------------------------------------------- settings (pure)


def parse_endpoints(value, tls=False):
    """['http://127.0.0.1:2379', ...] from a list or a comma-separated string; host:port gets http:// (https://
    when a CA file is given). Raises LockStoreError naming dr_lock_etcd_endpoints."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        items = []
    items = [item for item in items if item]
    if not items:
        raise LockStoreError("dr_lock_etcd_endpoints is empty: expected the etcd members' client URLs, e.g. "
                             "['https://etcd-a:2379', 'https://etcd-b:2379', 'https://etcd-c:2379'] (or set %s; "
                             "dr_lock_store: directory runs without the shared lock)" % ENDPOINTS_ENV)
    endpoints = []
    for item in items:
        url = item if "://" in item else ("https://" if tls else "http://") + item
        scheme, rest = url.split("://", 1)
        host, _sep, port = rest.rstrip("/").rpartition(":")
        if scheme not in ("http", "https") or not host or not port.isdigit() or "/" in rest.rstrip("/"):
            raise LockStoreError("dr_lock_etcd_endpoints has %r: expected http(s)://host:port, one per etcd member"
                                 % item)
        endpoints.append("%s://%s:%d" % (scheme, host.strip("[]"), int(port)))
    return endpoints


def _bounded_int(variables, name, default, low, high):
    value = variables.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise LockStoreError("%s is %r: expected whole seconds from %d to %d (default %d)" % (
            name, value, low, high, default))
    return number


def _readable_file(variables, name):
    path = variables.get(name)
    if path in (None, ""):
        return None
    path = os.path.expanduser(str(path))
    if not os.access(path, os.R_OK):
        raise LockStoreError("%s is %s: expected a readable file on the controller" % (name, path))
    return path


def settings(variables, environ=None):
    """The etcd store's settings from the inventory's dr_lock_etcd_* variables (rendered), else the environment."""
    environ = os.environ if environ is None else environ
    ca_file = _readable_file(variables, "dr_lock_etcd_ca_file")
    cert_file = _readable_file(variables, "dr_lock_etcd_cert_file")
    key_file = _readable_file(variables, "dr_lock_etcd_key_file")
    if bool(cert_file) != bool(key_file):
        raise LockStoreError("dr_lock_etcd_cert_file and dr_lock_etcd_key_file go together: expected both (a client "
                             "certificate and its key) or neither")
    user = variables.get("dr_lock_etcd_user") or None
    password = variables.get("dr_lock_etcd_password") or None
    if bool(user) != bool(password):
        raise LockStoreError("dr_lock_etcd_user and dr_lock_etcd_password go together: expected both (keep the "
                             "password in vault) or neither")
    timeout = variables.get("dr_lock_etcd_timeout")
    try:
        timeout = DEFAULT_TIMEOUT if timeout in (None, "") else float(timeout)
    except (TypeError, ValueError):
        timeout = -1.0
    if not 0.1 <= timeout <= 60:
        raise LockStoreError("dr_lock_etcd_timeout is %r: expected seconds per request from 0.1 to 60 (default %s)"
                             % (variables.get("dr_lock_etcd_timeout"), DEFAULT_TIMEOUT))
    prefix = str(variables.get("dr_lock_etcd_prefix") or DEFAULT_PREFIX)
    return {
        "kind": STORE_ETCD,
        "endpoints": parse_endpoints(variables.get("dr_lock_etcd_endpoints") or environ.get(ENDPOINTS_ENV),
                                     tls=bool(ca_file)),
        "ttl": _bounded_int(variables, "dr_lock_etcd_ttl", DEFAULT_TTL, MIN_TTL, MAX_TTL),
        "prefix": prefix,
        "ca_file": ca_file, "cert_file": cert_file, "key_file": key_file,
        "user": user, "password": password,
        "timeout": timeout,
    }


# ---------------------------------------------------------------- the gateway's JSON (pure)


def b64(text):
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(text):
    import base64

    return base64.b64decode(text or "").decode("utf-8")


def take_txn(full_key, value, lease_id):
    """The take: put the record under the lease only if the key does not exist (create_revision == 0), else read
    who holds it. One transaction, so two runs can never both succeed."""
    key = b64(full_key)
    return {
        "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": key, "value": b64(value), "lease": str(lease_id)}}],
        "failure": [{"request_range": {"key": key}}],
    }


def guarded_txn(full_key, token, request):
    """`request` (a RequestOp) only while the key still has create revision `token` (the same holder)."""
    return {"compare": [{"key": b64(full_key), "result": "EQUAL", "target": "CREATE", "create_revision": str(token)}],
            "success": [request], "failure": []}


def prefix_range(prefix):
    """The range request of every key under `prefix` (etcd's range_end: the prefix's last byte plus one)."""
    raw = prefix.encode("utf-8")
    end = raw[:-1] + bytes(bytearray([raw[-1] + 1]))
    return {"key": b64(prefix), "range_end": base64_bytes(end)}


def base64_bytes(raw):
    import base64

    return base64.b64encode(raw).decode("ascii")


def txn_outcome(response):
    """(succeeded, revision of the transaction, the key-value the failure branch read or None)."""
    revision = int((response.get("header") or {}).get("revision") or 0)
    if response.get("succeeded"):
        return True, revision, None
    for item in response.get("responses") or []:
        kvs = (item.get("response_range") or {}).get("kvs") or []
        if kvs:
            return False, revision, kvs[0]
    return False, revision, None


def kv_holder(kv):
    """The holder record stored in a key-value, with its fencing token (create revision) and lease id."""
    try:
        holder = json.loads(unb64(kv.get("value")))
    except ValueError as exc:
        holder = {"unreadable": "the etcd key %s does not hold a JSON record: %s" % (unb64(kv.get("key")), exc)}
    if not isinstance(holder, dict):
        kind = type(holder).__name__
        holder = {"unreadable": "the etcd key %s holds a %s, not an object" % (unb64(kv.get("key")), kind)}
    holder["token"] = int(kv.get("create_revision") or 0)
    holder["lease_id"] = int(kv.get("lease") or 0)
    return holder


def unavailable(text):
    """Whether a member's error means it cannot serve us now (try another member), not that the request is wrong."""
    lowered = (text or "").lower()
    return any(marker in lowered for marker in UNAVAILABLE_MARKERS)


# ---------------------------------------------------------------- the client: every member in turn


class EtcdClient(object):
    """POSTs to the gateway of the first member that answers; a member without quorum counts as not answering."""

    def __init__(self, config):
        self.config = config
        self.endpoints = list(config["endpoints"])
        self._clients = {}
        self._first = 0

    def call(self, path, payload):
        """The first answer of a member with a quorum. Rounds over every member are repeated for ELECTION_SECONDS:
        right after the leader is lost the others answer "no leader" until they elected one (the test that kills
        the first member saw every member refuse for that moment)."""
        deadline = time.monotonic() + ELECTION_SECONDS
        while True:
            try:
                return self._round(path, payload)
            except EtcdUnavailable:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)

    def _round(self, path, payload):
        problems = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._first + step) % count
            endpoint = self.endpoints[index]
            try:
                answer = self._post(index, path, payload)
            except EtcdUnavailable as exc:
                problems.append("%s: %s" % (endpoint, exc))
                continue
            self._first = index
            return answer
        raise EtcdUnavailable(
            "no etcd member answered with a quorum (%s). The run lock cannot be checked, so the run stops here "
            "(fails closed). Bring a majority of the etcd members back, or run with dr_lock_store: directory as "
            "an explicit choice (one controller only)" % "; ".join(problems))

    def _post(self, index, path, payload):
        client = self._client(index)
        from etcd3gw import exceptions

        try:
            return client.post(client.get_url(path), json=payload, **self._request_options())
        except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError) as exc:
            raise EtcdUnreachable(_short(exc)) from None
        except ValueError as exc:  # an answer that is not JSON: not an etcd gateway, or a broken one
            raise EtcdUnavailable("not an etcd answer: %s" % exc) from None
        except exceptions.Etcd3Exception as exc:
            text = exc.detail_text or str(exc)
            if unavailable(text) or "auth" in text.lower() and self.config.get("user"):
                self._clients.pop(index, None)  # a new session authenticates again (tokens expire)
                raise EtcdUnavailable(_short(exc)) from None
            raise LockStoreError("etcd refused %s: %s" % (path, text)) from None

    def _request_options(self):
        """The CA file as every request's own `verify`: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the
        environment (set in many containers and execution environments) override a session's verify, so a session
        alone would ignore dr_lock_etcd_ca_file there and refuse the members' certificates (psf/requests#3829)."""
        return {"verify": self.config["ca_file"]} if self.config.get("ca_file") else {}

    def _client(self, index):
        client = self._clients.get(index)
        if client is not None:
            return client
        try:
            import etcd3gw
            import requests
        except ImportError as exc:
            raise LockStoreError(CLIENT_PROBLEM % (sys.executable, exc)) from None
        scheme, rest = self.endpoints[index].split("://", 1)
        host, _sep, port = rest.rpartition(":")
        session = requests.Session()
        if self.config.get("ca_file"):
            session.verify = self.config["ca_file"]
        if self.config.get("cert_file"):
            session.cert = (self.config["cert_file"], self.config["key_file"])
        client = etcd3gw.client(host=host, port=int(port), protocol=scheme, timeout=self.config["timeout"],
                                api_path=API_PATH, session=session)
        if self.config.get("user"):
            from etcd3gw import exceptions

            try:
                answer = client.post(client.get_url("/auth/authenticate"),
                                     json={"name": self.config["user"], "password": self.config["password"]},
                                     **self._request_options())
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError) as exc:
                raise EtcdUnreachable(_short(exc)) from None
            except exceptions.Etcd3Exception as exc:
                raise LockStoreError(
                    "etcd refused the login of dr_lock_etcd_user %r: %s (check the user and dr_lock_etcd_password in "
                    "vault)" % (self.config["user"], exc.detail_text)) from None
            session.headers["Authorization"] = answer.get("token", "")
        self._clients[index] = client
        return client

    def ask_each(self, path, payload):
        """Every member's own answer to the same request, asked at once: [{endpoint, ok, answer, error}], in the
        order of the endpoints (readiness: which members answer, where the store only needs the first that does).
        A member that answers it cannot serve now is asked again, as call() does, for ELECTION_SECONDS (right after
        the leader's loss the others answer "no leader" until they elected one); one that does not answer at all
        (refused, timed out after the request timeout) is reported at once, so a stopped member costs nothing and a
        silent one one request timeout. The error never holds the password."""
        return each_at_once(lambda index: self._ask_member(index, path, payload), range(len(self.endpoints)))

    def _ask_member(self, index, path, payload):
        endpoint = self.endpoints[index]
        deadline = time.monotonic() + ELECTION_SECONDS
        while True:
            try:
                return {"endpoint": endpoint, "ok": True, "answer": self._post(index, path, payload), "error": None}
            except EtcdUnreachable as exc:
                return {"endpoint": endpoint, "ok": False, "answer": None, "error": str(exc)}
            except EtcdUnavailable as exc:
                if time.monotonic() >= deadline:
                    return {"endpoint": endpoint, "ok": False, "answer": None, "error": str(exc)}
            except LockStoreError as exc:  # refused (login, permission, no etcd3gw): asking again changes nothing
                return {"endpoint": endpoint, "ok": False, "answer": None, "error": str(exc)}
            time.sleep(0.2)

    # -------------------------------------------------------- the calls the store makes

    def grant(self, ttl):
        answer = self.call("/lease/grant", {"TTL": str(ttl)})
        if answer.get("error"):
            raise LockStoreError("etcd did not grant a lease: %s" % answer["error"])
        return int(answer["ID"]), int(answer.get("TTL") or ttl)

    def refresh(self, lease_id):
        """The lease's new TTL, or -1 when it has expired (or was revoked)."""
        answer = self.call("/lease/keepalive", {"ID": str(lease_id)})
        return int((answer.get("result") or answer).get("TTL") or -1)

    def time_to_live(self, lease_id):
        answer = self.call("/kv/lease/timetolive", {"ID": str(lease_id)})
        return int(answer.get("TTL") or -1), int(answer.get("grantedTTL") or 0)

    def revoke(self, lease_id):
        try:
            self.call("/kv/lease/revoke", {"ID": str(lease_id)})
        except LockStoreError as exc:
            if "not found" not in str(exc):  # already expired: nothing left to revoke
                raise

    def txn(self, payload):
        return self.call("/kv/txn", payload)

    def read(self, full_key):
        """The key's key-value (linearizable read), or None."""
        kvs = self.call("/kv/range", {"key": b64(full_key)}).get("kvs") or []
        return kvs[0] if kvs else None


def _short(exc):
    text = getattr(exc, "detail_text", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


# ---------------------------------------------------------------- the store


class EtcdStore(LockStore):
    """One key per lock, <prefix><key>, holding the holder record, attached to the holder's lease."""

    kind = STORE_ETCD
    store_dir = None

    def __init__(self, config, client=None):
        self.config = config
        self.ttl = int(config["ttl"])
        self.prefix = config["prefix"]
        self.client = client or EtcdClient(config)

    def where(self):
        return "etcd (%s)" % ", ".join(self.config["endpoints"])

    def full_key(self, key):
        return self.prefix + key

    def path_for(self, key):
        return "etcd:" + self.full_key(key)

    def acquire(self, record, hostname=None, now=None):
        full_key = self.full_key(record["key"])
        for _attempt in range(3):  # a holder that expires between two of our requests: look again
            lease_id, ttl = self.client.grant(self.ttl)
            # expires_at: when this lease ends unless its keeper renews it (every TTL/3 while the run lives).
            stored = dict(record, store=STORE_ETCD, lease_id=lease_id, lease_seconds=ttl,
                          expires_at=iso(utc_now() + datetime.timedelta(seconds=ttl)))
            succeeded, revision, kv = txn_outcome(self.client.txn(take_txn(full_key, _dump(stored), lease_id)))
            if succeeded:
                stored["token"] = revision  # the put's revision is the key's create revision
                return self._outcome(TAKE, "the lock is free", None, stored, record["key"])
            self.client.revoke(lease_id)
            if kv is None:
                continue
            holder = kv_holder(kv)
            if holder.get("run_id") != record["run_id"]:
                return self._outcome(BUSY, self._liveness(holder), holder, None, record["key"])
            # The same run again (a re-take between phases, or the run id from a new process): keep the holder's
            # lease and token, follow the process that now runs it.
            renewed = dict(record, store=STORE_ETCD, started_at=holder.get("started_at", record["started_at"]),
                           lease_id=holder["lease_id"], lease_seconds=holder.get("lease_seconds", ttl))
            put = {"request_put": {"key": b64(full_key), "value": b64(_dump(renewed)), "ignore_lease": True}}
            if txn_outcome(self.client.txn(guarded_txn(full_key, holder["token"], put)))[0]:
                renewed["token"] = holder["token"]
                return self._outcome(HELD, "run %s already holds the lock" % record["run_id"], holder, renewed,
                                     record["key"])
        raise LockStoreError("the etcd key %s changed holder three times while this run tried to take it" % full_key)

    def release(self, key, run_id):
        kv = self.client.read(self.full_key(key))
        if kv is None:
            return {"outcome": NOT_HELD, "holder": None, "path": self.path_for(key)}
        holder = kv_holder(kv)
        if holder.get("run_id") != run_id:
            return {"outcome": HELD_BY_OTHER, "holder": holder, "path": self.path_for(key)}
        delete = {"request_delete_range": {"key": b64(self.full_key(key))}}
        deleted = txn_outcome(self.client.txn(guarded_txn(self.full_key(key), holder["token"], delete)))[0]
        if holder["lease_id"]:
            self.client.revoke(holder["lease_id"])  # its keeper sees the lease gone and stops
        return {"outcome": RELEASED if deleted else NOT_HELD, "holder": holder, "path": self.path_for(key)}

    def inspect(self, key, run_id, hostname=None, now=None):
        kv = self.client.read(self.full_key(key))
        if kv is None:
            return {"decision": TAKE, "reason": "the lock is free", "holder": None, "path": self.path_for(key)}
        holder = kv_holder(kv)
        if holder.get("run_id") == run_id:
            return {"decision": HELD, "reason": "run %s already holds the lock" % run_id, "holder": holder,
                    "path": self.path_for(key)}
        return {"decision": BUSY, "reason": self._liveness(holder), "holder": holder, "path": self.path_for(key)}

    def still_held(self, key, token, lease_id):
        """(True, '') while the key has this run's create revision and lease, else (False, what it found)."""
        kv = self.client.read(self.full_key(key))
        if kv is None:
            return False, "the key %s is gone (its lease expired or was revoked)" % self.full_key(key)
        holder = kv_holder(kv)
        if holder["token"] != int(token) or holder["lease_id"] != int(lease_id):
            return False, "the key %s now has fencing token %d (run %s), not this run's %d" % (
                self.full_key(key), holder["token"], holder.get("run_id"), int(token))
        return True, ""

    def _liveness(self, holder):
        left, granted = self.client.time_to_live(holder["lease_id"]) if holder.get("lease_id") else (-1, 0)
        if left < 0:
            return "its etcd key is still there, without a live lease"
        return ("its etcd lease %x (TTL %d s) has %d s left and is renewed while that run's ansible-playbook runs; "
                "etcd deletes the key by itself once a killed run's lease expires"
                % (holder["lease_id"], granted, left))

    def _outcome(self, decision, reason, holder, stored, key):
        return {"decision": decision, "reason": reason, "holder": holder, "record": stored,
                "path": self.path_for(key)}


def _dump(record):
    return json.dumps(record, sort_keys=True)


# ---------------------------------------------------------------- what this ansible-playbook process holds


def held_dir(environ=None):
    return os.path.join(default_store_dir(environ), HELD_DIR_NAME)


def _process_tag(playbook_pid):
    identity = process_identity(playbook_pid) or {"pid_start_ticks": 0}
    return "%d-%s" % (int(playbook_pid), identity["pid_start_ticks"])


def held_path(playbook_pid, key, environ=None):
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(held_dir(environ), "held-%s-%s.json" % (_process_tag(playbook_pid), digest))


def record_held(playbook_pid, key, token, lease_id, keeper, run_id):
    """Note (0600, in a 0700 folder beside the lock records) that this ansible-playbook process holds key with
    token: what the fencing check of every later step of the run reads. No secret in it."""
    folder = held_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = held_path(playbook_pid, key)
    temp = path + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"key": key, "token": int(token), "lease_id": int(lease_id), "keeper_pid": keeper[0],
                   "keeper_start_ticks": keeper[1], "run_id": run_id}, handle)
    os.rename(temp, path)
    return path


def held_by(playbook_pid):
    """The locks this ansible-playbook process noted it holds (record_held)."""
    found = []
    pattern = os.path.join(held_dir(), "held-%s-*.json" % _process_tag(playbook_pid))
    for path in sorted(glob.glob(pattern)):
        try:
            with open(path) as handle:
                found.append(json.load(handle))
        except (OSError, ValueError):
            continue
    return found


def forget_held(playbook_pid, key):
    """Remove the note; returns it (its keeper_pid is the keeper to stop), or None."""
    path = held_path(playbook_pid, key)
    try:
        with open(path) as handle:
            note = json.load(handle)
    except (OSError, ValueError):
        return None
    try:
        os.unlink(path)
    except OSError:
        pass
    return note


def warm_client(playbook_pid):
    """Import etcd3gw now when playbook_pid holds an etcd lock (see _module.warm_lock_store); whether it did."""
    if not held_by(playbook_pid):
        return False
    try:
        import etcd3gw  # noqa: F401 - imported for the workers this process forks later
    except ImportError:
        return False
    return True


def fencing_check(playbook_pid, settings_of):
    """(refusal, tokens): refusal is None when this ansible-playbook process holds no etcd lock, or still holds every
    one it took, else the message refusing the step; tokens maps each key checked to its fencing token (what the
    step's result carries, so the audit record names the token the change ran under). settings_of() returns the
    store settings (the inventory's, rendered); it is only called when there is something to check, so runs without
    an etcd lock pay one glob."""
    held = held_by(playbook_pid)
    if not held:
        return None, {}
    tokens = dict((note["key"], int(note["token"])) for note in held)
    try:
        store = EtcdStore(settings_of())
        for note in held:
            ok, found = store.still_held(note["key"], note["token"], note["lease_id"])
            if not ok:
                return ("refused before changing anything: run %s no longer holds the run lock for %s (fencing "
                        "token %d): %s. Another run may hold it now (a paused controller whose lease expired is "
                        "refused so). Run the runbook again: it reads the systems again and does only what is "
                        "missing." % (note.get("run_id"), note["key"], note["token"], found)), tokens
    except LockStoreError as exc:
        return ("refused before changing anything: whether this run still holds the run lock cannot be checked: %s"
                % exc), tokens
    return None, tokens


def fencing_refusal(playbook_pid, settings_of):
    """fencing_check's refusal only."""
    return fencing_check(playbook_pid, settings_of)[0]


# ---------------------------------------------------------------- the lease keeper (a process of its own)


def start_keeper(config, lease_id, watch_pid):
    """Fork the keeper of lease_id, watching the ansible-playbook process watch_pid; returns (pid, start ticks) once
    it renewed the lease once.

    Forked, not started as a new interpreter: a fresh Python importing the HTTP client takes seconds on a busy
    controller, longer than a short lease lives (measured: a 3 s lease expired before such a keeper's first
    renewal). The fork has the client imported already and renews at once; it leaves every descriptor of the worker
    (ansible's result pipes, the run's stdout) and ends with os._exit, so nothing of Ansible's runs in it.
    """
    from ansible_collections.erlmcp.dr.plugins.module_utils._guards.guard_process import detach, read_line

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the keeper
        code = 70
        try:
            os.close(read_end)
            detach((write_end,))
            code = _keep(config, int(lease_id), int(watch_pid), write_end)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answers:
        line = read_line(answers, KEEPER_ANSWER_SECONDS)
    try:
        answer = json.loads(line.decode("utf-8")) if line else {}
    except ValueError:
        answer = {}
    if not answer.get("ok"):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(pid, 0)
        raise LockStoreError("the lease keeper did not start: %s" % (answer.get("msg") or "no answer"))
    identity = process_identity(pid) or {"pid_start_ticks": None}
    return pid, identity["pid_start_ticks"]


def stop_keeper(pid, start_ticks=None):
    """SIGTERM the keeper `pid` if it still is that process (a reused pid is left alone)."""
    if not pid:
        return False
    identity = process_identity(pid)
    if identity is None or (start_ticks is not None and identity["pid_start_ticks"] != start_ticks):
        return False
    try:
        os.kill(int(pid), signal.SIGTERM)
    except OSError:
        return False
    return True


def process_stopped(pid):
    """Whether the process is stopped (SIGSTOP, a debugger): a stopped holder does not keep its lease."""
    try:
        with open("/proc/%d/stat" % int(pid)) as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] in ("T", "t")


def refresh_due(sent_at, ttl):
    """When to renew next: a third of the TTL after the last renewal was sent (two retries fit before expiry)."""
    return sent_at + max(ttl, 1) / 3.0


def _keep(config, lease_id, watch_pid, answer_fd):
    """Renew the lease while the watched ansible-playbook runs; stop when it ends, is told to, or the lease is lost.

    Deadline-driven: after each renewal the lease is valid until (time the request was sent + the TTL etcd
    answered); renewals that fail are retried against every member until that moment, then the keeper gives up (the
    run's next step is refused by the fencing check). Returns the exit code."""
    from ansible_collections.erlmcp.dr.plugins.module_utils._guards.guard_process import Watch

    client = EtcdClient(config)  # a new session: no connection shared with the worker
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    try:
        sent_at = time.monotonic()
        ttl = client.refresh(lease_id)
        problem = None if ttl > 0 else "the lease %x expired before its keeper started" % lease_id
    except LockStoreError as exc:
        problem = str(exc)
    os.write(answer_fd, (json.dumps({"ok": problem is None, "msg": problem}) + "\n").encode("utf-8"))
    os.close(answer_fd)
    if problem is not None:
        return 1
    watched = Watch(watch_pid)
    valid_until, due = sent_at + ttl, refresh_due(sent_at, ttl)
    while not stop:
        if watched.ended(max(0.0, min(due - time.monotonic(), 1.0))):
            return 0  # the run ended: a release revoked the lease already, else it expires after its TTL
        if stop or time.monotonic() < due:
            continue
        if process_stopped(watch_pid):
            due = time.monotonic() + 0.2
            continue
        try:
            sent_at = time.monotonic()
            ttl = client.refresh(lease_id)
        except LockStoreError:
            if time.monotonic() >= valid_until:
                return 2  # lost: the members did not renew it in time
            due = time.monotonic() + 0.2
            continue
        if ttl <= 0:
            return 2  # expired or revoked: the lock is no longer this run's
        valid_until, due = sent_at + ttl, refresh_due(sent_at, ttl)
    return 0
