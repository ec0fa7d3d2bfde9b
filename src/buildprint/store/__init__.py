"""Stores: the embedded local store and remote caches (HTTP, S3)."""
