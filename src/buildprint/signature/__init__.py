"""Signature core: canonical encoding, manifests, policy and diffs (pure, no I/O)."""
