"""dr_drill: inject a fault on the lab, recover, measure as a client sees it, restore (docs/drill.md)."""
