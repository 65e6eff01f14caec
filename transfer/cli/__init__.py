"""The ``kgraft`` command line: thin commands that parse, call one library function and print.

User mistakes (unknown names, bad files, unreachable servers) end with one sentence on stderr and
exit code 1, never a traceback.

One module per area: ``common`` (the app, the store option, user errors, progress), ``graph``
(init, query, lineage, bias, import, export), ``data`` (datasets, models, the zoo), ``learn`` (probe,
gnn, recommend, report, finetune, demo), ``similar`` and ``openlineage``; ``kgraft serve`` lives with
the server (``transfer.serve.cli``).
"""

from __future__ import annotations

from kg.errors import is_user_error
from transfer.cli import data, graph, learn  # noqa: F401  (importing a module registers its commands)
from transfer.cli.common import app, store_from, user_errors
from transfer.cli.openlineage import openlineage_app
from transfer.quiet import quiet_third_party
from transfer.serve.cli import serve as _serve

app.add_typer(openlineage_app, name="openlineage")
app.command("serve")(_serve)

__all__ = ["app", "is_user_error", "main", "store_from", "user_errors"]


def main() -> None:
    """Entry point of the ``kgraft`` command."""
    quiet_third_party()
    app()
