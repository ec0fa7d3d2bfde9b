"""Input collectors: turn files, archives, code and the environment into component values."""

__all__: list[str] = []
