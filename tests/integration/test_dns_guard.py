"""What dns_cutover guards on, against the lab's real Knot primary and secondary (issue 16 row 6, issue 23 rows 7
and 12, issue 16 row 11's DNS items).

- What the operator confirmed is what runs: `runbook run` on a terminal shows the plan (each record, old -> new
  values), asks, and the run guards on exactly the values that plan saw; a signed UPDATE made by someone else while
  the question waited is refused and kept.
- A current value that is none of the regions' addresses (nor what the last recorded cutover set) is refused,
  naming it, unless expected_values names it.
- The zone apex only when asked for.

Driven the way an operator does it: the `runbook` CLI, on a pseudo-terminal where a terminal is the point.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest
from runbook_helpers import (
    CLI_HANG_GUARD,
    dns_answers,
    inventory_copy,
    inventory_path,
    run_json,
    runbook_command,
    summary,
    venv_path,
)

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

A, B, C = (lab_dns.REGION_ADDRESSES[region] for region in ("a", "b", "c"))
PROMPT = "type 'yes' to continue"


def everywhere(cfg: lab.LabConfig, name: str) -> list[str]:
    """The one value set every lab server answers for name (asserting they agree)."""
    answers = dns_answers(cfg, name)
    assert len({tuple(values) for values in answers.values()}) == 1, answers
    return next(iter(answers.values()))


def signed_update(cfg: lab.LabConfig, name: str, address: str) -> None:
    """Another operator's change: a TSIG-signed RFC 2136 UPDATE to the primary (the lab's key), then in sync."""
    import dns.query
    import dns.rcode
    import dns.update

    update = dns.update.UpdateMessage(lab_dns.ZONE, keyring=lab_dns.keyring(), keyname=lab_dns.TSIG_KEY_NAME,
                                      keyalgorithm=lab_dns.TSIG_ALGORITHM)
    update.replace(name, lab_dns.TTL, "A", address)
    primary = lab_dns.server(cfg, "dns-primary")
    response = dns.query.tcp(update, "127.0.0.1", port=primary.port, timeout=lab_dns.QUERY_TIMEOUT)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    lab_dns.wait_in_sync(cfg)


class Terminal:
    """`runbook ARGS` with stdin, stdout and stderr on a pseudo-terminal, as an operator at a terminal runs it."""

    def __init__(self, *args: str) -> None:
        master, slave = os.openpty()
        env = dict(os.environ, PATH=venv_path(), NO_COLOR="1", TERM="xterm")
        self.proc = subprocess.Popen([*runbook_command(), *args], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master
        self.output = ""

    def read_until(self, text: str) -> str:
        """Reads what the terminal shows until `text` appears (or the process ends): all shown so far."""
        deadline = time.monotonic() + CLI_HANG_GUARD
        while text not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} on the terminal:\n{self.output[-4000:]}"
            if not self._read_once() and self.proc.poll() is not None:
                break
        return self.output

    def answer(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def finish(self) -> int:
        """Reads to the end; the exit code."""
        deadline = time.monotonic() + CLI_HANG_GUARD
        while self._read_once() or self.proc.poll() is None:
            assert time.monotonic() < deadline, f"the run did not end:\n{self.output[-4000:]}"
        os.close(self.master)
        return self.proc.wait(timeout=CLI_HANG_GUARD)

    def _read_once(self) -> bool:
        ready, _, _ = select.select([self.master], [], [], 0.2)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the other side is closed
            return False
        self.output += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return bool(chunk)


def real_runs(home: Path) -> list[dict]:
    """The result.json of every run that was not a plan, oldest first."""
    results = [json.loads(path.read_text()) for path in sorted((home / "runs").glob("*/result.json"))]
    return [result for result in results if not result.get("check")]


def test_what_the_operator_confirmed_is_what_runs_a_change_while_asked_is_refused_and_kept(
        dns_zone: lab.LabConfig, home: Path) -> None:
    api = f"api.{lab_dns.ZONE}"
    term = Terminal("run", "dns_cutover", "-i", str(inventory_path(dns_zone)), "-e", "region=c")
    shown = term.read_until(PROMPT)
    assert f"will change: {api} A TTL {lab_dns.TTL}s: {A} -> {C}" in shown, shown
    assert f"will change: health.{lab_dns.ZONE} A TTL {lab_dns.TTL}s: {A} -> {C}" in shown, shown

    signed_update(dns_zone, "api", B)  # another operator, while the question waits: a region's own address
    term.answer("yes")
    rc = term.finish()

    assert rc == 1, term.output
    assert (f"changed since the plan was confirmed: {api} held ['{A}'] when the plan was confirmed and holds "
            f"['{B}'] now") in term.output, term.output
    assert everywhere(dns_zone, "api") == [B] and everywhere(dns_zone, "health") == [A]
    run = real_runs(home)[-1]
    assert run["extravars"]["confirmed_values"] == {api: [A], f"health.{lab_dns.ZONE}": [A]}
    assert summary(run)["did"] == ["nothing was changed"]


def test_a_confirmed_run_with_nothing_changed_meanwhile_guards_on_the_plan_and_completes(
        dns_zone: lab.LabConfig, home: Path) -> None:
    term = Terminal("run", "dns_cutover", "-i", str(inventory_path(dns_zone)), "-e", "region=b", "-e", "records=api")
    term.read_until(PROMPT)
    term.answer("yes")
    assert term.finish() == 0, term.output
    assert everywhere(dns_zone, "api") == [B] and everywhere(dns_zone, "health") == [A]
    run = real_runs(home)[-1]
    assert run["extravars"]["confirmed_values"] == {f"api.{lab_dns.ZONE}": [A]}


def test_a_value_no_region_has_is_refused_by_name_unless_expected_values_accepts_it(
        dns_zone: lab.LabConfig, home: Path) -> None:
    inventory = str(inventory_path(dns_zone))
    signed_update(dns_zone, "api", "127.0.1.9")  # e.g. a maintenance page someone put there on purpose
    cli, refused = run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "--yes", expect_rc=1)
    assert (f"api.{lab_dns.ZONE} holds 127.0.1.9: none of the inventory's region addresses (a: {A}, b: {B}, "
            f"c: {C})") in cli.stdout + cli.stderr
    assert "expected_values=127.0.1.9" in cli.stdout + cli.stderr
    assert summary(refused)["did"] == ["nothing was changed"]
    assert everywhere(dns_zone, "api") == ["127.0.1.9"] and everywhere(dns_zone, "health") == [A]

    run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "-e", "records=api",
             "-e", "expected_values=127.0.1.9", "--yes", expect_rc=0)
    assert everywhere(dns_zone, "api") == [B]


def test_the_value_the_last_recorded_cutover_set_is_known_to_the_next_one(dns_zone: lab.LabConfig,
                                                                           home: Path) -> None:
    inventory = str(inventory_path(dns_zone))
    run_json("run", "dns_cutover", "-i", inventory, "-e", "values=127.0.1.8", "--yes", expect_rc=0)
    assert everywhere(dns_zone, "api") == ["127.0.1.8"]
    run_json("run", "dns_cutover", "-i", inventory, "-e", "region=b", "--yes", expect_rc=0)
    assert everywhere(dns_zone, "api") == [B] and everywhere(dns_zone, "health") == [B]


def test_the_zone_apex_is_refused_unless_allowed(dns_zone: lab.LabConfig, home: Path) -> None:
    cli, refused = run_json("run", "dns_cutover", "-i", str(inventory_path(dns_zone)), "-e", "records=@",
                            "-e", "region=b", "--yes", expect_rc=1)
    assert "records: '@' is the zone apex" in cli.stdout + cli.stderr and "allow_apex=true" in cli.stdout + cli.stderr
    assert summary(refused)["did"] == ["nothing was changed"]
    assert everywhere(dns_zone, lab_dns.ZONE) == []


def test_an_hmac_md5_key_the_server_does_not_have_says_what_is_wrong_and_what_to_use(dns_zone: lab.LabConfig,
                                                                                     home: Path) -> None:
    inventory = inventory_copy(dns_zone, "hmac-md5", lambda data: data["all"]["vars"].update(
        dns_tsig_algorithm="hmac-md5"))
    cli, failed = run_json("run", "dns_cutover", "-i", str(inventory), "-e", "region=b", "-e", "records=api", "--yes",
                           expect_rc=1)
    text = " ".join((cli.stdout + cli.stderr).split())
    assert f"does not know the TSIG key '{lab_dns.TSIG_KEY_NAME}' with algorithm hmac-md5 (NOTAUTH, BADKEY)" in text
    assert "set tsig_algorithm: hmac-sha256 (dns_tsig_algorithm in the inventory)" in text
    assert summary(failed)["did"] == ["nothing was changed"] and everywhere(dns_zone, "api") == [A]
