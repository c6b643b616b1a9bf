#!/usr/bin/env bash
# `make demo`: the lab, the three database runbooks, a DNS cutover, the region health check and an unplanned regional
# failover (a region killed), then failback to it once it is back, through the `runbook` CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
exec python scripts/demo.py
