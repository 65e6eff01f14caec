"""``kgraft serve``: the graph over HTTP (a JSON API documented at ``/docs``) and a server-rendered web UI.

One process holds one store handle (``state.GraphHandle``): a LadybugDB file admits a single read-write
process, so the server opens it once and serialises every use of it; on Neo4j reads run concurrently
and writes are serialised. Writes need ``Authorization: Bearer $KGRAFT_TOKEN``; long work (probing,
report generation) runs as a job, one at a time, with a status and progress endpoint. A job holds the
write lock while it works, so on the embedded store reads wait for it; on Neo4j they do not.
"""

from transfer.serve.app import create_app
from transfer.serve.state import ServeConfig

__all__ = ["ServeConfig", "create_app"]
