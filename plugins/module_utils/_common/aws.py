# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What to say when boto3 is missing: one sentence for every AWS path (Route 53, the S3 store).

boto3 is optional (35 MB): the Python package installs it only with the extra `erlmcp-dr[aws]`; the
execution environment (requirements.txt) always has it. A module that needs it and cannot import it
names what needed it and both ways to get it.
"""

from __future__ import annotations

AWS_EXTRA_HINT = ("install it: pip install 'erlmcp-dr[aws]' where the runbook CLI runs, or boto3 on the host "
                  "running the module (an execution environment built from this collection has it)")


def boto3_missing(needed_for, exc):
    """The error message for `import boto3` failing, `needed_for` saying which option asked for AWS."""
    return "the Python library boto3 is required for %s and is not installed (%s); %s" % (
        needed_for, exc, AWS_EXTRA_HINT)
