"""The knowledge graph: stores (embedded LadybugDB, Neo4j), registration, lineage and bias queries,
RDF and Croissant import and export. Imports ``ontology``; knows nothing of torch."""

from kg.batch import GraphBatch
from kg.connect import open_store
from kg.errors import KgError, UserError
from kg.store import GraphStore

__all__ = ["GraphBatch", "GraphStore", "KgError", "UserError", "open_store"]
