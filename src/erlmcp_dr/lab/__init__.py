"""The local lab: PostgreSQL, Redis, Knot, etcd, pgBackRest and the lab app on loopback (`runbook lab`)."""
