"""Where inputs come from: indexes, sources, the lock file and its pins, metadata."""
