"""Command line: parses, calls the library, renders."""
