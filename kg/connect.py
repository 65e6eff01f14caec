"""Opening a store by URI: ``embedded:PATH`` (LadybugDB) or a Neo4j Bolt URI.

Its own module, so that ``kg.store`` (the interface both backends implement) never imports a backend:
the backends import ``kg.store`` and this module imports them, lazily, so that opening one never loads the
other's driver.
"""

from __future__ import annotations

from kg.errors import StoreUnavailable
from kg.store import GraphStore, resolve_store_uri

NEO4J_SCHEMES = {"neo4j", "bolt", "neo4j+s", "bolt+s", "neo4j+ssc", "bolt+ssc"}


def open_store(uri: str | None = None, *, read_only: bool = False, create: bool = True) -> GraphStore:
    """Open the store named by ``uri`` (see ``resolve_store_uri``) and make sure its schema exists."""
    uri = resolve_store_uri(uri)
    if uri.startswith("embedded:"):
        from kg.embedded import LadybugStore

        return LadybugStore(uri.removeprefix("embedded:"), read_only=read_only, create=create)
    if uri.split("://", 1)[0] in NEO4J_SCHEMES:
        from kg.neo4j_store import Neo4jStore

        return Neo4jStore(uri, read_only=read_only)
    raise StoreUnavailable(
        f"unknown store {uri!r}: use embedded:PATH, neo4j://HOST:PORT or bolt://HOST:PORT."
    )
