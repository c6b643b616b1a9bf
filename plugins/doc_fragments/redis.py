# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option documentation for the redis_* modules.

C(erlmcp.dr.redis) documents every option of C(_redis.connection_argument_spec()) (login_host, login_port,
login_user, login_password, connect_timeout).
C(erlmcp.dr.redis.credentials) documents the same options without login_host and login_port, for modules
whose targets carry their own host and port (redis_info).
C(erlmcp.dr.redis.store) documents C(_redis_store.store_argument_spec()): where backups live, a directory or S3.
"""

from __future__ import annotations


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the Redis server to connect to (TCP).
    type: str
    default: 127.0.0.1
  login_port:
    description:
      - TCP port of the Redis server.
    type: int
    default: 6379
  login_user:
    description:
      - ACL user to log in as (Redis 6+); omit it for the C(default) user and C(requirepass).
    type: str
  login_password:
    description:
      - Password of O(login_user) (or C(requirepass)). Never logged, never returned.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established before giving up.
    type: float
    default: 5.0
requirements:
  - redis (redis-py, Python library) on the host that runs the module
"""

    CREDENTIALS = r"""
options:
  login_user:
    description:
      - ACL user to log in as on every node (Redis 6+); omit it for the C(default) user and C(requirepass).
    type: str
  login_password:
    description:
      - Password of O(login_user) (or C(requirepass)). Never logged, never returned.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for each connection to be established before giving up.
    type: float
    default: 5.0
requirements:
  - redis (redis-py, Python library) on the host that runs the module
"""

    STORE = r"""
options:
  store_dir:
    description:
      - The directory store, on the host running the module (backups are C(<id>.rdb) and C(<id>.json) files).
      - Exactly one of O(store_dir) and O(s3_bucket) is required.
    type: path
  s3_bucket:
    description:
      - The S3 bucket of an S3 store (backups are objects C(<s3_prefix><id>.rdb) and C(<s3_prefix><id>.json)).
      - The RDB file is uploaded with its SHA-256 checksum, which S3 verifies; the metadata is written last.
      - Exactly one of O(store_dir) and O(s3_bucket) is required.
    type: str
  s3_prefix:
    description: The key prefix of the backups in O(s3_bucket) (a C(/) is added when missing).
    type: str
    default: ""
  s3_endpoint_url:
    description: The S3 endpoint (an S3-compatible service, a VPC endpoint); default AWS's for O(s3_region).
    type: str
  s3_region:
    description: The bucket's AWS region; default boto3's (C(AWS_DEFAULT_REGION), the config file).
    type: str
  s3_access_key:
    description:
      - AWS access key id; default boto3's credential chain (environment, shared credentials, instance role).
        Never logged, never returned.
    type: str
  s3_secret_key:
    description: AWS secret access key, with O(s3_access_key). Never logged, never returned.
    type: str
  s3_session_token:
    description: AWS session token, for temporary credentials. Never logged, never returned.
    type: str
  s3_sse:
    description: Server-side encryption of the stored objects.
    type: str
    choices: [AES256, "aws:kms"]
  s3_sse_kms_key_id:
    description: The KMS key of O(s3_sse=aws:kms); default the account's S3 key.
    type: str
  staging_dir:
    description:
      - Local folder for the temp copies an S3 store needs (the RDB checked before it is uploaded, the backup
        downloaded before it is checked); default the system's temp folder. Removed after the run.
    type: path
requirements:
  - boto3 (Python library) on the host that runs the module, for an S3 store
"""
