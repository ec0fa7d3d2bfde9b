"""Shared test support: fixture sdists and archives, wheel caches, projects, real servers."""
