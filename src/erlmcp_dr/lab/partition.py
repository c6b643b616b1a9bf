"""The drill's `partition` fault on the lab (dr_drill kind=partition, docs/drill.md): a standby region's two links to
the rest, its PostgreSQL standby's replication connection and its Redis replica's, re-pointed through a LinkProxy
each (lab/proxy.py, in the drill's process), then cut (or slowed) and healed; and the way back, re-pointing them
directly at their primaries, which holds whatever the proxies' state (they die with the drill).

The standby is re-pointed by ALTER SYSTEM primary_conninfo + pg_reload_conf(): PostgreSQL 15 restarts its WAL
receiver on the new conninfo (no server restart; the standby's postmaster PID is checked unchanged). The replica by
REPLICAOF 127.0.0.1 <port>: it reconnects with PSYNC and, its replication ID and offset being the primary's, is
served a partial resync (the primary's sync_partial_ok counts it; sync_full does not move). Neither is written to
the node's own config file (REPLICAOF is in memory; postgresql.auto.conf does hold the proxy's port until the
restore): the restore re-points both, also from the pending record of a drill killed with kill -9.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab.config import LabConfig, LabNode, LabRedisNode
from erlmcp_dr.lab.proxy import LinkProxy

LINK_TIMEOUT = 30.0  # seconds a link gets to stream again after it was re-pointed (a hang guard)


def _node(cfg: LabConfig, name: Optional[str]) -> Optional[LabNode]:
    return next((n for n in cfg.nodes if n.name == name), None)


def _redis_node(cfg: LabConfig, name: Optional[str]) -> Optional[LabRedisNode]:
    return next((n for n in cfg.redis_nodes if n.name == name), None)


def links_of(cfg: LabConfig, region: str, before: Dict[str, Any]) -> Dict[str, Any]:
    """The region's two links: its PostgreSQL standby and the primary it streams from (its primary_conninfo as it
    is now, kept to put back), its Redis replica and the Redis primary. Raises RuntimeError when one is missing."""
    standby = next((n for n in cfg.nodes if n.region == region), None)
    replica = next((n for n in cfg.redis_nodes if n.region == region), None)
    primary, redis_primary = _node(cfg, before.get("pg_primary")), _redis_node(cfg, before.get("redis_primary"))
    if standby is None or replica is None or primary is None or redis_primary is None:
        raise RuntimeError(f"region {region}: no standby, replica or primary to partition it from")
    with pg_connect(standby) as conn:
        conninfo = str(lab.pg.query_one(conn, "SHOW primary_conninfo")["primary_conninfo"])
    return {"region": region, "standby": standby.name, "primary": primary.name, "primary_port": primary.port,
            "standby_conninfo": conninfo, "replica": replica.name, "redis_primary": redis_primary.name,
            "redis_primary_port": redis_primary.port}


def pg_connect(node: LabNode) -> Any:
    return lab.pg.connect(node.conn_params())


def redis_connect(node: LabRedisNode) -> Any:
    return lab.rd.connect(node.conn_params())


def with_port(conninfo: str, port: int) -> str:
    """primary_conninfo with its port replaced (the rest, passfile and application_name included, kept)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    fields = {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    fields["port"] = str(port)
    return make_conninfo(**fields)


def port_of(conninfo: str) -> Optional[int]:
    from psycopg.conninfo import conninfo_to_dict

    value = conninfo_to_dict(conninfo).get("port") if conninfo.strip() else None
    return int(value) if value else None


def set_conninfo(node: LabNode, conninfo: str) -> None:
    from psycopg import sql

    with pg_connect(node) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET primary_conninfo = {}").format(sql.Literal(conninfo)))
        conn.execute("SELECT pg_reload_conf()")


def receiver(node: LabNode) -> Dict[str, Any]:
    """The standby's WAL receiver ({} when none runs)."""
    with pg_connect(node) as conn:
        return lab.pg.query_one(conn, "SELECT status, sender_port FROM pg_stat_wal_receiver") or {}


def replication(node: LabRedisNode) -> Dict[str, Any]:
    with redis_connect(node) as client:
        return dict(client.info("replication"))


def streams_from(cfg: LabConfig, links: Dict[str, Any], pg_port: int, redis_port: int) -> bool:
    """The standby streams from pg_port and the replica's link to redis_port is up."""
    found = receiver(_node(cfg, links["standby"]))  # type: ignore[arg-type]
    info = replication(_redis_node(cfg, links["replica"]))  # type: ignore[arg-type]
    return (found.get("status") == "streaming" and int(found.get("sender_port") or 0) == pg_port
            and int(info.get("master_port") or 0) == redis_port and info.get("master_link_status") == "up")


def open_links(links: Dict[str, Any]) -> Dict[str, LinkProxy]:
    """A proxy to the PostgreSQL primary and one to the Redis primary, relaying (not yet used)."""
    return {"postgres": LinkProxy("127.0.0.1", int(links["primary_port"])),
            "redis": LinkProxy("127.0.0.1", int(links["redis_primary_port"]))}


def through(cfg: LabConfig, links: Dict[str, Any], proxies: Dict[str, LinkProxy]) -> Dict[str, Any]:
    """Re-point the standby and the replica through the proxies, then wait until both stream through them."""
    standby, replica = _node(cfg, links["standby"]), _redis_node(cfg, links["replica"])
    assert standby is not None and replica is not None
    set_conninfo(standby, with_port(links["standby_conninfo"], proxies["postgres"].port))
    with redis_connect(replica) as client:
        client.execute_command("REPLICAOF", "127.0.0.1", str(proxies["redis"].port))
    _, waited = lab.wait_for(lambda: streams_from(cfg, links, proxies["postgres"].port, proxies["redis"].port),
                             LINK_TIMEOUT, interval=0.05, what=f"{links['standby']} and {links['replica']} streaming "
                                                                "through the drill's proxies")
    return {"standby_via": proxies["postgres"].address, "replica_via": proxies["redis"].address,
            "seconds": round(waited, 3)}


def snapshot(cfg: LabConfig, links: Dict[str, Any]) -> Dict[str, Any]:
    """What the heal is judged against: the standby's postmaster PID and timeline, the Redis primary's full and
    partial resync counters."""
    standby, redis_primary = _node(cfg, links["standby"]), _redis_node(cfg, links["redis_primary"])
    assert standby is not None and redis_primary is not None
    with pg_connect(standby) as conn:
        tli = lab.pg.query_one(conn, "SELECT timeline_id FROM pg_control_checkpoint()")["timeline_id"]
    with redis_connect(redis_primary) as client:
        stats = client.info("stats")
    return {"standby_pid": lab._lab_postmaster_pid(standby), "standby_timeline": tli,
            "sync_full": int(stats.get("sync_full", 0)), "sync_partial_ok": int(stats.get("sync_partial_ok", 0))}


def primary_positions(cfg: LabConfig, links: Dict[str, Any]) -> Dict[str, Any]:
    """The PostgreSQL primary's current LSN and the Redis primary's replication offset, now."""
    primary, redis_primary = _node(cfg, links["primary"]), _redis_node(cfg, links["redis_primary"])
    assert primary is not None and redis_primary is not None
    with pg_connect(primary) as conn:
        lsn = str(lab.pg.query_one(conn, "SELECT pg_current_wal_lsn()::text AS lsn")["lsn"])
    with redis_connect(redis_primary) as client:
        offset = int(client.info("replication").get("master_repl_offset") or 0)
    return {"lsn": lsn, "offset": offset}


def replication_delay(cfg: LabConfig, links: Dict[str, Any], timeout: float) -> Optional[float]:
    """One write's way to the standby: the seconds from just before a transaction on the primary (a WAL message,
    flushed at its commit) until the standby has replayed the primary's LSN after it; None past `timeout`.
    Through a delayed proxy it cannot be shorter than the delay: the commit's WAL is read by the proxy after the
    clock started, and sent that long after it was read."""
    primary, standby = _node(cfg, links["primary"]), _node(cfg, links["standby"])
    assert primary is not None and standby is not None
    with pg_connect(primary) as conn:
        started = time.monotonic()  # before the commit: the WAL cannot be read by the proxy, so sent, before this
        # a transactional WAL message: the commit is flushed (txid_current() alone is committed asynchronously,
        # its record unflushed, so the primary's write position stayed where the standby already was)
        conn.execute("SELECT pg_logical_emit_message(true, 'erlmcp.dr', 'partition probe')")
        lsn = str(lab.pg.query_one(conn, "SELECT pg_current_wal_lsn()::text AS lsn")["lsn"])
    with pg_connect(standby) as conn:
        def replayed() -> bool:
            row = lab.pg.query_one(conn, "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0 AS done",
                                   (lsn,))
            return bool(row and row["done"])

        try:
            lab.wait_for(replayed, timeout, interval=0.01, what=f"{standby.name} replaying {lsn}")
        except lab.WaitTimeout:
            return None
    return round(time.monotonic() - started, 3)


def caught_up(cfg: LabConfig, links: Dict[str, Any], target: Dict[str, Any]) -> bool:
    """The standby replayed target's LSN and the replica's link is up with target's offset."""
    standby, replica = _node(cfg, links["standby"]), _redis_node(cfg, links["replica"])
    assert standby is not None and replica is not None
    with pg_connect(standby) as conn:
        row = lab.pg.query_one(conn, "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0 AS done",
                               (target["lsn"],))
    info = replication(replica)
    return bool(row and row["done"]) and info.get("master_link_status") == "up" \
        and int(info.get("slave_repl_offset") or 0) >= int(target["offset"])


def heal_and_wait(cfg: LabConfig, links: Dict[str, Any], proxies: Dict[str, LinkProxy], before: Dict[str, Any],
                  timeout: float, clock: Any = time.monotonic) -> Dict[str, Any]:
    """Heal both proxies (a cut relays again, a delay goes back to 0), take the primaries' positions, wait (at most
    `timeout`) until the standby and the replica have caught up with them; then whether that needed a rebuild."""
    for proxy in proxies.values():
        proxy.delay = 0.0
        proxy.heal()
    healed_at = clock()
    target = primary_positions(cfg, links)
    detail = ""
    try:
        _, waited = lab.wait_for(lambda: caught_up(cfg, links, target), timeout, interval=0.05,
                                 what=f"{links['standby']} replaying {target['lsn']} and {links['replica']} at offset "
                                      f"{target['offset']}")
        done, at = True, healed_at + waited
    except lab.WaitTimeout as exc:
        done, at, detail = False, None, str(exc)
    after = snapshot(cfg, links)
    restarted = after["standby_pid"] != before["standby_pid"] or after["standby_timeline"] != before[
        "standby_timeline"]
    if done:
        detail = (f"{links['standby']} replayed {target['lsn']} and {links['replica']} reached offset "
                  f"{target['offset']} {round(waited, 3)} s after the heal; {links['standby']}'s postmaster "
                  f"{'restarted' if restarted else 'kept its PID and timeline'}; the Redis primary's sync_full "
                  f"{before['sync_full']} -> {after['sync_full']}, sync_partial_ok {before['sync_partial_ok']} -> "
                  f"{after['sync_partial_ok']}")
    return {"caught_up": done, "caught_up_at": at, "healed_at": healed_at, "target": target,
            "seconds_after_heal": None if at is None else round(at - healed_at, 3), "standby_restarted": restarted,
            "sync_full_before": before["sync_full"], "sync_full_after": after["sync_full"],
            "sync_partial_ok_before": before["sync_partial_ok"], "sync_partial_ok_after": after["sync_partial_ok"],
            "detail": detail}


def direct(cfg: LabConfig, links: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The restore: every running standby whose primary_conninfo names no lab node's port, and every replica whose
    master port is no lab Redis node's, is pointed directly again (a standby at the conninfo `links` recorded, else
    at the running primary; a replica at the running Redis primary), then waited for until it streams from there.
    Read from the nodes, so it holds for a torn record too, and whatever the proxies' state. Returns what changed."""
    links = links or {}
    pg_ports = {n.port for n in cfg.nodes}
    redis_ports = {n.port for n in cfg.redis_nodes}
    done: Dict[str, Any] = {}
    waits: List[Any] = []
    primary = lab._running_primary(cfg)
    running = {n.port for n in cfg.nodes if lab._lab_postmaster_pid(n) is not None}
    for node in cfg.nodes:
        if lab._lab_postmaster_pid(node) is None:
            continue
        conn, _ = lab.pg.try_connect(node.conn_params())
        if conn is None:
            continue
        with conn:
            if not lab.pg.node_state(conn)["in_recovery"]:
                continue
            current = str(lab.pg.query_one(conn, "SHOW primary_conninfo")["primary_conninfo"])
        if port_of(current) in pg_ports:
            continue
        recorded = links.get("standby_conninfo") if links.get("standby") == node.name else None
        if recorded and port_of(str(recorded)) in running:  # as it was, while its upstream runs
            wanted = str(recorded)
        elif primary is not None:
            wanted = lab.standby_conninfo(node, primary)
        else:
            raise RuntimeError(f"{node.name} streams through port {port_of(current)} and no primary runs to point "
                               "it at")
        set_conninfo(node, wanted)
        port = port_of(wanted)
        done[node.name] = f"primary_conninfo port {port_of(current)} -> {port}"
        waits.append((f"{node.name} streaming from port {port}", lambda n=node, p=port: _pg_streams(n, p)))
    redis_primary = next((n for n in cfg.redis_nodes if lab._lab_redis_pid(n) is not None and _role(n) == "master"),
                         None)
    for rnode in cfg.redis_nodes:
        if lab._lab_redis_pid(rnode) is None:
            continue
        info = _info(rnode)
        if info is None or info.get("role") != "slave" or int(info.get("master_port") or 0) in redis_ports:
            continue
        if redis_primary is None:
            raise RuntimeError(f"{rnode.name} replicates through port {info.get('master_port')} and no Redis primary "
                               "runs to point it at")
        with redis_connect(rnode) as client:
            client.execute_command("REPLICAOF", "127.0.0.1", str(redis_primary.port))
        done[rnode.name] = f"REPLICAOF port {info.get('master_port')} -> {redis_primary.port}"
        waits.append((f"{rnode.name} linked to port {redis_primary.port}",
                      lambda n=rnode, p=redis_primary.port: _redis_linked(n, p)))
    for what, ready in waits:
        lab.wait_for(ready, LINK_TIMEOUT, interval=0.05, what=what)
    return done


def _pg_streams(node: LabNode, port: Optional[int]) -> bool:
    found = receiver(node)
    return found.get("status") == "streaming" and int(found.get("sender_port") or 0) == port


def _info(node: LabRedisNode) -> Optional[Dict[str, Any]]:
    client, _error, _kind = lab.rd.try_connect(node.conn_params())
    if client is None:
        return None
    with client:
        return dict(client.info("replication"))


def _role(node: LabRedisNode) -> Optional[str]:
    return (_info(node) or {}).get("role")


def _redis_linked(node: LabRedisNode, port: int) -> bool:
    info = _info(node) or {}
    return int(info.get("master_port") or 0) == port and info.get("master_link_status") == "up"
