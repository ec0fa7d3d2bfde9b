"""What to do and why: the package graph, signatures, decisions, plan snapshots."""
