# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared option documentation for the redis_* modules.

C(erlmcp.dr.redis) documents every option of C(_redis.connection_argument_spec()) (login_host, login_port,
login_user, login_password, connect_timeout).
C(erlmcp.dr.redis.credentials) documents the same options without login_host and login_port, for modules
whose targets carry their own host and port (redis_info).
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
