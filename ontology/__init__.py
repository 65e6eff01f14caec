"""The vocabulary layer of kgraft; imports nothing of ours.

``vocab`` holds the property-graph names (labels, relationship types, properties and their kinds);
``kgraft.ttl`` gives each one an IRI, aligned to PROV-O, DCAT, SKOS, schema.org and Croissant RAI;
``shapes.ttl`` holds the SHACL shapes a valid record must satisfy. The functions here load the two
Turtle files and map vocabulary names to IRIs. rdflib is imported only when a graph is loaded, so
``ontology.vocab`` stays cheap to import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .vocab import NAMESPACE, NODES, RELS, Label, Rel

if TYPE_CHECKING:
    import rdflib

__all__ = [
    "ONTOLOGY_PATH",
    "SHAPES_PATH",
    "class_iri",
    "load_ontology",
    "load_shapes",
    "property_iri",
    "rel_iri",
]

ONTOLOGY_PATH: Path = Path(__file__).with_name("kgraft.ttl")
"""The OWL/RDFS ontology (Turtle): the source of truth for IRIs."""

SHAPES_PATH: Path = Path(__file__).with_name("shapes.ttl")
"""The SHACL shapes (Turtle) for kgraft data."""

_PROPERTY_NAMES: frozenset[str] = frozenset(
    name for specs in (NODES.values(), RELS.values()) for spec in specs for name in spec.properties
)


@lru_cache(maxsize=1)
def load_ontology() -> rdflib.Graph:
    """The parsed ontology graph (cached: treat it as read-only)."""
    import rdflib

    return rdflib.Graph().parse(ONTOLOGY_PATH, format="turtle")


@lru_cache(maxsize=1)
def load_shapes() -> rdflib.Graph:
    """The parsed SHACL shapes graph (cached: treat it as read-only)."""
    import rdflib

    return rdflib.Graph().parse(SHAPES_PATH, format="turtle")


@lru_cache(maxsize=1)
def _rel_iris() -> dict[str, str]:
    """Relationship type -> object-property IRI, read from the ``kg:cypherName`` annotations."""
    import rdflib

    graph = load_ontology()
    return {
        str(name): str(prop) for prop, name in graph.subject_objects(rdflib.URIRef(NAMESPACE + "cypherName"))
    }


def rel_iri(rel: Rel | str) -> str:
    """The IRI of a relationship type, e.g. ``DERIVED_FROM`` -> ``kg:derivedFrom``.

    Read from the ``kg:cypherName`` annotations of the ontology; raises ``ValueError`` for an unknown type.
    """
    return _rel_iris()[Rel(rel).value]


def property_iri(name: str) -> str:
    """The IRI of a node or relationship property (``kg:`` + the name verbatim); raises ``KeyError``."""
    if name not in _PROPERTY_NAMES:
        raise KeyError(name)
    return NAMESPACE + name


def class_iri(label: Label | str) -> str:
    """The IRI of a node label's class, e.g. ``Dataset`` -> ``kg:Dataset``; raises ``ValueError``."""
    return NAMESPACE + Label(label).value
