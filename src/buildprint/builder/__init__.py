"""Doing it: build environments, the PEP 517 backend, patching, scheduling, wheels."""
