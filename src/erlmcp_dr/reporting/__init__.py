"""What a run leaves for people: report.md, report.html, the compliance view, the postmortem draft."""
