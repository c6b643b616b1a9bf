# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting with a deadline and a poll: the only way the collection waits (never a bare sleep)."""

from __future__ import annotations

import time


class WaitTimeout(Exception):
    """The condition did not hold before the deadline; carries the last value seen."""

    def __init__(self, message, last=None):
        super(WaitTimeout, self).__init__(message)
        self.last = last


def wait_for(probe, timeout, interval=0.1, what="condition"):
    """Call probe() until it returns a truthy value or timeout seconds pass.

    Returns (value, seconds waited). probe may raise; the exception propagates.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last, time.monotonic() - started
        if time.monotonic() >= deadline:
            raise WaitTimeout("%s not reached within %ss" % (what, timeout), last)
        time.sleep(interval)
