"""Building wheels: sources, build environments, the graph and its scheduler."""
