"""The demo's plugin modules."""
