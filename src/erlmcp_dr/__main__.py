"""`python -m erlmcp_dr` is the `runbook` command."""

from erlmcp_dr.cli import main

raise SystemExit(main())
