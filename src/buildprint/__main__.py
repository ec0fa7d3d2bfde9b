"""``python -m buildprint``: the same command line as the ``buildprint`` script."""

from buildprint.cli.main import main

main()
