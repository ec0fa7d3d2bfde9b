"""buildprint: build packages from source, keyed by a complete build signature."""

__all__ = ["__version__"]

__version__ = "0.1.0"
