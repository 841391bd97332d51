"""``python -m forgeline``: the same as the ``forgeline`` command."""

from forgeline.cli.app import main

main()
