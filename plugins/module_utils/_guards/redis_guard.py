# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Redis guard: one promoting run per Redis member set, whatever controller it runs from.

Redis has no lock a replica grants (replicas refuse writes), so the guard is made of named connections. A holder
process (this file run as a script, started by erlmcp.dr.redis_guard) keeps one connection per member and names it
`erlmcp-dr-guard:<state>:<token>`. To take the guard it
1. ANNOUNCES: opens its connection on every member that answers and names it `...:want:<token>`;
2. then LISTS the guard connections (CLIENT LIST) on those members;
3. wins when a strict majority of the members carry its announcement and showed no other guard connection: it
   renames its connections `...:hold:<token>` and holds them. Otherwise it closes them (withdraws) and, unless a
   `hold` name was seen (a run holds the guard for real: refused at once as busy), retries after a random back-off
   until its deadline, then refuses naming the others.
Two contenders never both win: their majorities share a member, both announced there before listing there, and a
winner keeps its announcement, so whichever listed there second saw the other's name and withdrew.

A connection closed by the holder's death frees the member at once (Redis forgets a closed client and its name).
While holding, the holder re-takes a member whose connection dropped (a restarted member) the same careful way on
that one member: announce, list, hold only when no other guard connection is there. Right before the promotion
(REPLICAOF NO ONE or FAILOVER) _redis_promote re-checks with its own connections that a majority of the members show
this run's `hold` name and no other run's (held_members). docs/design.md, "The Redis guard", says what this
guarantees and what it does not.

The pure parts (names, the verdict, the re-check's count) are used by the module side; the holder imports redis-py
(the controller's) only when it runs.
"""

from __future__ import absolute_import, division, print_function

import os
import random
import sys
import time

if __name__ == "__main__":  # the holder, run as a script: its sibling, never another copy of the collection
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import guard_process  # noqa: E402 pylint: disable=import-error
else:
    from ansible_collections.erlmcp.dr.plugins.module_utils._guards import guard_process

NAME_PREFIX = "erlmcp-dr-guard:"
WANT, HOLD = "want", "hold"
ACQUIRE_SECONDS = 5.0  # how long a start contends while other runs only announce (they withdraw within it)
BACKOFF_SECONDS = (0.05, 0.3)
CONNECT_SECONDS = 2.0

majority = guard_process.majority
new_token = guard_process.new_token
run_id_of = guard_process.run_id_of


def connection_name(state, token):
    return "%s%s:%s" % (NAME_PREFIX, state, token)


def parse_name(name):
    """(state, token) of a guard connection's name, else None."""
    if not name or not name.startswith(NAME_PREFIX):
        return None
    state, _sep, token = name[len(NAME_PREFIX):].partition(":")
    if state not in (WANT, HOLD) or not token:
        return None
    return state, token


def guard_connections(clients):
    """The guard connections among CLIENT LIST's rows (dicts with name, addr, age): [dict(state, token, addr,
    age)]."""
    found = []
    for row in clients or []:
        parsed = parse_name(row.get("name"))
        if parsed:
            found.append(dict(state=parsed[0], token=parsed[1], addr=row.get("addr"), age=row.get("age")))
    return found


def others(clients, token):
    """The guard connections of other runs among CLIENT LIST's rows."""
    return [c for c in guard_connections(clients) if c["token"] != token]


def verdict(announced, seen, total):
    """What a contender does after announcing on `announced` members and listing them.

    seen: {member: [other runs' guard connections there]}. Returns `won` (a majority announced, no other seen),
    `busy` (another run holds: a `hold` name), `retry` (only announcements: both withdraw, one wins later) or
    `too_few` (fewer than a majority answer and no other run is in sight).
    """
    if any(c["state"] == HOLD for conns in seen.values() for c in conns):
        return "busy"
    if any(seen.values()):
        return "retry"
    if len(announced) < majority(total):
        return "too_few"
    return "won"


def held_members(clients_by_member, token):
    """The members whose CLIENT LIST shows this run's `hold` connection and no other run's: the re-check right before
    a promotion needs a majority of them."""
    held = []
    for member, clients in clients_by_member.items():
        conns = guard_connections(clients)
        mine = any(c["token"] == token and c["state"] == HOLD for c in conns)
        other_holds = any(c["token"] != token and c["state"] == HOLD for c in conns)
        if mine and not other_holds:
            held.append(member)
    return sorted(held)


def describe_others(seen):
    """The other runs seen, per token: '<run id> (hold on redis-a, redis-b; from 127.0.0.1:5123, 3 s)'."""
    by_token = {}
    for member, conns in sorted(seen.items()):
        for conn in conns:
            entry = by_token.setdefault(conn["token"], dict(states=set(), members=[], addr=conn.get("addr"),
                                                            age=conn.get("age")))
            entry["states"].add(conn["state"])
            entry["members"].append(member)
    return ["run %s (%s on %s; from %s, connected %ss)" % (
        run_id_of(token), "/".join(sorted(e["states"])), ", ".join(e["members"]), e["addr"], e["age"])
        for token, e in sorted(by_token.items())]


# ---------------------------------------------------------------- the caller's side (erlmcp.dr.redis_guard)


def start(members, token, watch_pid, user=None, password=None, acquire_seconds=ACQUIRE_SECONDS, python=None):
    """Start the holder for `members` ([{name, host, port}]) and wait for its answer (see guard_process.start)."""
    config = dict(members=[dict(name=m["name"], host=m["host"], port=int(m["port"])) for m in members], token=token,
                  watch_pid=watch_pid, acquire_seconds=acquire_seconds, user=user, password=password)
    return guard_process.start(__file__, config, [m["name"] for m in members], acquire_seconds, python,
                               what="Redis guard", main=main)


def release(pid):
    return guard_process.release(pid, __file__)


# ---------------------------------------------------------------- the holder


class Holder(object):
    def __init__(self, config):
        self.members = config["members"]
        self.token = config["token"]
        self.user = config.get("user") or None
        self.password = config.get("password") or None
        self.acquire_seconds = float(config.get("acquire_seconds") or ACQUIRE_SECONDS)
        self.needed = majority(len(self.members))
        self.conns = {}
        self.seen = {}
        self.errors = {}

    def _open(self, member):
        """A connection to `member` named with this run's announcement, or None (the reason in errors)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = None
        try:
            # One connection per member, the one that carries the name (a single-connection client connects here).
            client = redis.Redis(host=member["host"], port=int(member["port"]), username=self.user,
                                 password=self.password, socket_connect_timeout=CONNECT_SECONDS,
                                 socket_timeout=CONNECT_SECONDS, decode_responses=True, single_connection_client=True,
                                 retry=Retry(NoBackoff(), 0))
            client.client_setname(connection_name(WANT, self.token))
        except redis.RedisError as exc:
            self.errors[member["name"]] = str(exc).strip() or type(exc).__name__
            if client is not None:
                _close(client)
            return None
        self.errors.pop(member["name"], None)
        return client

    def _others_on(self, name, client):
        """The other runs' guard connections on one member, or None when the member stopped answering."""
        import redis

        try:
            return others(client.client_list(), self.token)
        except redis.RedisError as exc:
            self.errors[name] = str(exc).strip() or type(exc).__name__
            return None

    def _rename(self, name, client, state):
        import redis

        try:
            client.client_setname(connection_name(state, self.token))
            return True
        except redis.RedisError as exc:
            self.errors[name] = str(exc).strip() or type(exc).__name__
            return False

    def acquire(self):
        """Announce on every member, then list: win on a majority that shows no other run, else withdraw and retry
        after a random back-off while only announcements are in sight, up to acquire_seconds."""
        deadline = time.monotonic() + self.acquire_seconds
        while True:
            self.seen, self.errors = {}, {}
            for member in self.members:  # every announcement is made before any member is listed
                client = self._open(member)
                if client is not None:
                    self.conns[member["name"]] = client
            for name, client in list(self.conns.items()):
                found = self._others_on(name, client)
                if found is None:
                    _close(self.conns.pop(name))
                elif found:
                    self.seen[name] = found
            outcome = verdict(sorted(self.conns), self.seen, len(self.members))
            if outcome == "won":
                for name, client in list(self.conns.items()):
                    if not self._rename(name, client, HOLD):
                        _close(self.conns.pop(name))
                if len(self.conns) >= self.needed:
                    return True
            self.drop_all()  # withdraw: closed connections take their names with them at once
            if outcome != "retry" or time.monotonic() >= deadline:
                return False
            time.sleep(random.uniform(*BACKOFF_SECONDS))

    def keep(self):
        """One pass while holding: a member whose connection dropped (restarted, killed the client) is re-taken the
        careful way on that member alone - announce, list, hold only when no other run's connection is there."""
        for member in self.members:
            name = member["name"]
            client = self.conns.get(name)
            if client is not None and not _alive(client):
                _close(self.conns.pop(name))
                client = None
            if client is None:
                client = self._open(member)
                if client is None:
                    continue
                found = self._others_on(name, client)
                if found is None or found or not self._rename(name, client, HOLD):
                    self.seen[name] = found or []
                    _close(client)
                    continue
                self.conns[name] = client

    def drop_all(self):
        for client in self.conns.values():
            _close(client)
        self.conns.clear()

    def answer(self, ok):
        held = sorted(self.conns)
        names = [m["name"] for m in self.members]
        result = dict(ok=ok, held=held, missing=sorted(n for n in names if n not in self.conns),
                      majority=self.needed, total=len(names), token=self.token,
                      holders=[dict(member=name, **conn) for name in sorted(self.seen) for conn in self.seen[name]],
                      errors=dict(self.errors))
        if ok:
            result["msg"] = "the Redis guard is held on %s of %s members (%s)" % (
                len(held), len(names), ", ".join(held))
            return result
        unreachable = "; ".join("%s (%s)" % item for item in sorted(self.errors.items())) or "none"
        opt_out = ("dr_redis_guard: false in the inventory runs without the guard, where two controllers could both "
                   "promote")
        if self.seen:
            result["msg"] = (
                "another run holds the Redis guard (or is taking it, and did not give way within %ss): %s. Not "
                "reachable: %s. Nothing was changed; wait for that run to end (%s)"
                % (self.acquire_seconds, "; ".join(describe_others(self.seen)), unreachable, opt_out))
        else:
            result["msg"] = (
                "the Redis guard needs a majority (%s) of the %s members and %s answered. Not reachable: %s. "
                "Nothing was changed; bring members back - the controller must reach every member's Redis port (%s)"
                % (self.needed, len(names), len(names) - len(self.errors), unreachable, opt_out))
        return result


def _alive(client):
    try:
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means the connection, and its name, are gone
        return False


def _close(client):
    try:
        client.close()
    except Exception:  # noqa: BLE001 - a broken connection is forgotten by the member anyway
        pass


def main(config_fd=0, answer_fd=1):
    """The holder's entry point: run as this script, or in a fork of the caller (guard_process.fork_holder)."""
    return guard_process.serve(Holder, "redis", "Redis guard", config_fd, answer_fd)


if __name__ == "__main__":
    raise SystemExit(main())
