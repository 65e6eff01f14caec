"""``python -m transfer.cli``: the ``kgraft`` command."""

from transfer.cli import main

main()
