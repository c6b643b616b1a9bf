"""What `runbook` imports before it runs anything (issue 19: every run's fixed cost, docs/speed-failover.md).

The drill's engine (erlmcp_dr.drill.run: the lab, the composer, HTTP and e-mail modules) was imported by every
`runbook` process through drill/cli.py and was most of the CLI's import: its two commands import it when they run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ENGINE = ("erlmcp_dr.lab.lifecycle", "erlmcp_dr.compose.run", "erlmcp_dr.lab.drill", "http.client")

CHILD = """
import json, sys
import erlmcp_dr.cli
from erlmcp_dr.drill import cli as drill_cli
engine = ENGINE_NAMES
before = sorted(name for name in engine if name in sys.modules)
parser = erlmcp_dr.cli.build_parser()  # every command's arguments, the drill's included
parser.parse_args(["drill", "export", "some-run"])
still = sorted(name for name in engine if name in sys.modules)
from erlmcp_dr.drill import run as drill_engine  # what a drill command imports on use
run = drill_engine.run
print(json.dumps({"before": before, "after_parser": still, "run": callable(run),
                  "after_use": sorted(name for name in engine if name in sys.modules)}))
""".replace("ENGINE_NAMES", repr(ENGINE))


def test_the_cli_imports_the_drill_engine_only_when_a_drill_uses_it():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=120,
                          cwd=str(Path(__file__).parent))
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == [] and seen["after_parser"] == []
    assert seen["run"] is True
    assert seen["after_use"] == sorted(ENGINE)


def test_a_prebuilt_parser_serves_one_command_then_each_builds_its_own():
    """The CLI zygote builds the parser before it serves (warm/zygote.py preload): each served command, a fork,
    takes that copy once; a process that runs commands one after another builds a parser for each."""
    import erlmcp_dr.cli as cli

    cli.prebuild_parser()
    prebuilt = cli._PREBUILT[0]
    first = cli._parser()
    second = cli._parser()
    assert first is prebuilt and second is not prebuilt and cli._PREBUILT == []
    for parser in (first, second):
        args = parser.parse_args(["run", "database_switchover", "-e", "a=1", "-e", "b=2", "--json"])
        assert (args.name, args.extra_vars, args.json) == ("database_switchover", ["a=1", "b=2"], True)
    assert second.parse_args(["run", "x"]).extra_vars == []  # nothing of an earlier parse stays in the defaults
