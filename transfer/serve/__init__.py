"""``kgraft serve``: the graph over HTTP (a JSON API documented at ``/docs``) and a server-rendered web UI.

One process holds one store handle (``state.GraphHandle``): a LadybugDB file admits a single read-write
process, so the server opens it once, writes through it one request at a time and reads through a
second, read-only connection to the same database; on Neo4j reads run concurrently and writes one at
a time. Writes need ``Authorization: Bearer $KGRAFT_TOKEN``; long work (probing, report generation)
runs as a job, one at a time, with a status and progress endpoint. A job holds the write lock while
it works: other writes wait for it, reads do not.
"""

from transfer.serve.app import create_app
from transfer.serve.state import ServeConfig

__all__ = ["ServeConfig", "create_app"]
