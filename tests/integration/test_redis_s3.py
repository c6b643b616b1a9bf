"""The S3 store of redis_backup and redis_restore, through moto's server on loopback (boto3, real HTTP): a verified
backup with its SHA-256 checked by S3 and server-side encryption, retention, a restore from it, and the failures an
operator meets - a missing bucket, access denied by the bucket's policy - each before anything is touched. The
credentials never appear in a result."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
from conftest import redis_client, redis_login_args, run_module
from runbook_helpers import closed_port

from erlmcp_dr.lab import lifecycle as lab

BUCKET = "erlmcp-dr-backups"
SECRET = "s3-secret-never-shown"
DATA = {f"s3:{i}": f"value-{i}" for i in range(100)}


def _s3(moto: str):
    return boto3.client("s3", endpoint_url=moto, region_name="us-east-1")


def _store(moto: str, **extra: Any) -> dict[str, Any]:
    return dict(s3_bucket=BUCKET, s3_prefix="lab/redis", s3_endpoint_url=moto, s3_region="us-east-1",
                s3_access_key="testing", s3_secret_key=SECRET, **extra)


def _backup(cfg: lab.LabConfig, moto: str, check: bool = False, **extra: Any) -> dict[str, Any]:
    args = dict(redis_login_args(cfg, "redis-a"), node_name="redis-a", poll_interval=0.05, **_store(moto))
    args.update(extra)
    return run_module("erlmcp.dr.redis_backup", args, check=check)


def _restore(cfg: lab.LabConfig, moto: str, **extra: Any) -> dict[str, Any]:
    args = dict(redis_login_args(cfg, "redis-a"), poll_interval=0.05, **_store(moto),
                start_command=["redis-server", str(cfg.redis_node("redis-a").conf_file)])
    args.update(extra)
    return run_module("erlmcp.dr.redis_restore", args)


def _state(cfg: lab.LabConfig) -> tuple[Any, ...]:
    with redis_client(cfg, "redis-a") as client:
        return client.info("server")["run_id"], client.info("persistence")["rdb_saves"], client.dbsize()


def _deny(moto: str, actions: list[str]) -> None:
    _s3(moto).put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": actions,
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}))


def _shown(result: dict[str, Any]) -> str:
    return json.dumps(result)


def test_backup_to_s3_is_verified_encrypted_kept_by_retention_and_restores(fresh_lab, moto):
    cfg = fresh_lab
    _s3(moto).create_bucket(Bucket=BUCKET)
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.mset(DATA)

    planned = _backup(cfg, moto, check=True, backup_id="s3-0")
    assert not planned["failed"] and planned["changed"] and planned["store"] == "s3", planned
    assert _s3(moto).list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0  # check mode wrote nothing

    first = _backup(cfg, moto, backup_id="s3-1", s3_sse="AES256")
    assert not first["failed"] and first["verified"] and first["path"] == f"s3://{BUCKET}/lab/redis/s3-1.rdb", first
    head = _s3(moto).head_object(Bucket=BUCKET, Key="lab/redis/s3-1.rdb", ChecksumMode="ENABLED")
    assert head["ContentLength"] == first["size"] and head["ServerSideEncryption"] == "AES256"
    if head.get("ChecksumSHA256"):  # S3 keeps it; moto's server does not for every upload
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == first["sha256"]
    assert not _backup(cfg, moto, backup_id="s3-1")["changed"]  # verified and intact: the end state already
    _backup(cfg, moto, backup_id="s3-2")
    third = _backup(cfg, moto, backup_id="s3-3", retention_count=2)
    assert third["deleted"] == ["s3-1"]
    keys = sorted(o["Key"] for o in _s3(moto).list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == [f"lab/redis/s3-{i}.{ext}" for i in (2, 3) for ext in ("json", "rdb")]

    with redis_client(cfg, "redis-a") as client:
        client.flushall()
    restored = _restore(cfg, moto, backup="s3-3")
    assert not restored["failed"] and restored["changed"] and restored["keys_after"] == {"db0": len(DATA)}, restored
    assert restored["store"] == "s3" and "fetch" in restored["durations"]
    with redis_client(cfg, "redis-a") as client:
        assert client.mget(list(DATA)) == list(DATA.values())
    again = _restore(cfg, moto, backup="s3-3")
    assert not again["failed"] and not again["changed"], again
    for result in (first, third, restored, again):
        assert SECRET not in _shown(result)


def test_a_missing_bucket_or_access_denied_fails_before_anything_changes(fresh_lab, moto):
    """moto's server enforces a bucket policy's Deny on object reads and writes (not on listing): that is the
    AccessDenied an operator meets with a wrong role, provoked for real over HTTP."""
    cfg = fresh_lab
    before = _state(cfg)
    backup = _backup(cfg, moto, backup_id="nope")
    assert backup["failed"] and f"the bucket {BUCKET} does not exist" in backup["msg"], backup["msg"]
    restore = _restore(cfg, moto)
    assert restore["failed"] and f"the bucket {BUCKET} does not exist" in restore["msg"], restore["msg"]
    assert _state(cfg) == before
    shown = [backup, restore]

    _s3(moto).create_bucket(Bucket=BUCKET)
    made = _backup(cfg, moto, backup_id="before-the-deny")
    assert made["verified"], made
    _deny(moto, ["s3:PutObject", "s3:GetObject"])
    before = _state(cfg)
    backup = _backup(cfg, moto, backup_id="denied")
    assert backup["failed"] and "access denied to s3://" in backup["msg"] and "s3_access_key" in backup["msg"], backup
    restore = _restore(cfg, moto, backup="before-the-deny")
    assert restore["failed"] and "access denied to s3://" in restore["msg"], restore["msg"]
    assert _state(cfg) == before  # no BGSAVE, no restart
    assert SECRET not in "".join(_shown(r) for r in [*shown, made, backup, restore])


def test_one_store_at_a_time(moto):
    result = run_module("erlmcp.dr.redis_backup", dict(login_port=closed_port(), store_dir="/nonexistent",
                                                       **_store(moto)))
    assert result["failed"] and "mutually exclusive: store_dir|s3_bucket" in result["msg"], result["msg"]
    assert SECRET not in _shown(result)
