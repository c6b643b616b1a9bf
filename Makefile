# The two commands a new user types: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup demo test unit lint sanity bench

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

# The unit tests only (tests/unit: pure decisions, no lab, no server started): the quick check before `make test`.
# It runs the set-up only when there is none yet (a full `make setup` re-checks every package: two minutes).
unit:
	@test -x $(VENV)/python || bash scripts/setup.sh
	@$(VENV)/python -m pytest -q tests/unit

lint: setup
	@bash scripts/lint.sh

bench: setup
	@$(VENV)/python benchmarks/switchover.py --with-patroni

# The same on a busy machine: 4 CPU-bound processes run throughout, for every tool alike.
.PHONY: bench-busy
bench-busy: setup
	@$(VENV)/python benchmarks/switchover.py --with-patroni --busy 4

.PHONY: bench-dns

# DNS cutover on the lab's Knot servers: dns_record against a bare UPDATE (benchmarks/dns_cutover.py).
bench-dns: setup
	@$(VENV)/python benchmarks/dns_cutover.py --runs 3

.PHONY: bench-redis

# Redis backup and restore on 1 M keys against a bare BGSAVE and redis-server's own load (benchmarks/redis_backup_restore.py).
bench-redis: setup
	@$(VENV)/python benchmarks/redis_backup_restore.py

.PHONY: ee molecule

# The AWX execution environment built with podman from a locally bootstrapped Debian base, and a
# runbook's plan run inside it against a fresh lab (scripts/ee.sh; docs/awx.md).
ee: setup
	@bash scripts/ee.sh

# Every role's Molecule scenario (molecule/<role>/) against PostgreSQL 15 in podman containers
# (scripts/molecule.sh; molecule/README.md). `make molecule SCENARIOS="pg_assess"` runs some.
molecule: setup
	@bash scripts/molecule.sh $(SCENARIOS)
