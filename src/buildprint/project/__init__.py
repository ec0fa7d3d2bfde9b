"""Project files: buildprint.toml, packages/<name>.toml, patches, requirements."""
