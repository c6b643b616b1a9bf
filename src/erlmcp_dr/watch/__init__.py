"""`runbook watch`: the automatic trigger of the regional failover (issue 22, Part 2).

One observer process per region plus a witness, named in the inventory's static list (`dr_watch.observers`). Each
samples every watched region's health every interval (the health checks of region_health: _region/health.py and
_region/verdicts.py), publishes its verdict per region in etcd under its own lease, reads the others' live verdicts,
and asks watch_quorum.decide whether the region may be failed over. On FAIL_OVER it claims the region's trigger key in
etcd (one create-if-absent transaction: one observer wins) and starts `regional_failover` (unplanned, to the
inventory's declared target) through erlmcp_dr.run(); the run takes its own run lock as any run does.

- settings.py: what the inventory declares (observers, targets, interval, bands; the etcd members of the run lock);
- sampling.py: one health sample of each watched region, judged by _region/verdicts.py;
- board.py: the verdicts and the trigger records in etcd (through _lock/etcd.py's client);
- observer.py: the loop (sample, publish, read, decide, trigger);
- cli.py: the `runbook watch` command.
"""
