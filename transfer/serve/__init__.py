"""``kgraft serve``: the graph over HTTP (a JSON API documented at ``/docs``) and a server-rendered web UI.

One process holds one store handle (``state.GraphHandle``): a LadybugDB file admits a single read-write
process, so the server opens it once and serialises every use of it; on Neo4j reads run concurrently
and writes are serialised. Writes need ``Authorization: Bearer $KGRAFT_TOKEN``; long work (probing,
report generation) runs as a job with a status and progress endpoint.
"""

from transfer.serve.app import create_app
from transfer.serve.state import ServeConfig

__all__ = ["ServeConfig", "create_app"]
