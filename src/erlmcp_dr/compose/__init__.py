"""Composed runbooks: a workflow declared as data, run step by step as child runs (docs/design.md, "Composed
runbooks"). regional_failover is the first:
`runbook run regional_failover -e from_region=a -e to_region=b -e mode=unplanned`.
"""
