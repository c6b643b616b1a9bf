"""The benchmarks' lab: built once as a template, copied fresh for every run (measured runs only, not asserted).

lab.reset builds a whole lab from scratch (initdb, two base backups, Redis, the DNS servers, the application):
minutes on a busy machine, and servers a PostgreSQL runbook never asks. A copy of a stopped template
(lab.build_template + lab.clone, what the tests use) is pg-a primary with pg-b and pg-c streaming in seconds.
The runbooks that need more of the lab (dr_drill, readiness, the regional ones) ask for the application (`app`), the
DNS servers (`dns`) and a lock folder of the copy's own in its inventory (`own_lock_dir`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab


class FreshLab:
    """`reset()` gives a new copy of the template in `root`/lab, its inventory written, every standby caught up."""

    def __init__(self, root: Path, template: Path | None = None, *, app: bool = False, dns: bool = False,
                 own_lock_dir: bool = False) -> None:
        self.app, self.dns, self.own_lock_dir = app, dns, own_lock_dir
        if template is None:
            template = root / "template"
            lab.build_template(lab.LabConfig(root=template, port_base=lab.free_port_base()))
        record = json.loads((template / lab.TEMPLATE_MARKER).read_text())
        self.template = lab.LabConfig(root=template, port_base=record["port_base"])
        self.cfg = lab.LabConfig(root=root / "lab", port_base=lab.free_port_base())
        self.inventory = self.cfg.root / "inventory" / "hosts.yml"

    def reset(self) -> lab.LabConfig:
        self.close()
        lab.clone(self.template, self.cfg, app=self.app)
        if self.dns:
            lab_dns.up(self.cfg)
        lab.wait_streaming(self.cfg, caught_up=True)
        lab.write_inventory(self.cfg, self.inventory, own_lock_dir=self.own_lock_dir)
        return self.cfg

    def close(self) -> None:
        lab.down(self.cfg)
        shutil.rmtree(self.cfg.root, ignore_errors=True)

    def remove(self) -> None:
        """Close the copy, and remove the template too (stopped once built; down again in case a run started it)."""
        self.close()
        lab.down(self.template)
        shutil.rmtree(self.template.root, ignore_errors=True)
