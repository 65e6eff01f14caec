"""RDF interchange: the whole graph to and from Turtle / JSON-LD, checked against the SHACL shapes.

The mapping is the one ``ontology/kgraft.ttl`` describes in its header:

- a node becomes ``<https://kgraft.dev/id/{Label}/{quoted id}>``, typed with its ``kg:`` class and
  with every named superclass the ontology aligns it to (``kg:Dataset`` is also ``dcat:Dataset``,
  ``prov:Entity`` and ``schema:Dataset``; ``kg:Activity`` is ``prov:Activity``; ``kg:Concept`` is
  ``skos:Concept``; ...), so that a consumer who knows only PROV-O or DCAT understands it;
- each property is one ``kg:<name>`` literal: ``xsd:string``, ``xsd:long``, ``xsd:double``,
  ``xsd:boolean``, or ``rdf:JSON`` holding canonical JSON text (sorted keys, no spaces);
- a relationship becomes the direct triple ``src kg:<relIRI> dst``, plus the standard triple of each
  PROV-O / SKOS / DCAT property the ontology makes it a sub-property of (``prov:wasDerivedFrom``,
  ``prov:used``, ``prov:wasGeneratedBy``, ``prov:wasAssociatedWith``, ``prov:wasAttributedTo``,
  ``skos:broader``, ``dcat:theme``); a relationship with any non-null property is also written as a
  ``kg:Relationship`` resource (``kg:relSource``, ``kg:relTarget``, ``kg:relType`` and the
  properties) whose IRI is a hash of its type, ends and key values, so exports are deterministic.

``import_graph`` reads only the ``kg:`` terms back (the standard duplicates are ignored), so
export -> import -> export gives an isomorphic graph.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Container, Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rdflib import RDF, RDFS, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import SH
from rdflib.plugins.serializers.turtle import TurtleSerializer

from kg.batch import GraphBatch
from kg.codec import decode_props, encode_value
from kg.errors import InvalidRecord, KgError
from kg.files import atomic_write_bytes
from ontology import class_iri, load_ontology, load_shapes, rel_iri
from ontology.vocab import NAMESPACE, NODES, RELS, RESOURCE_NAMESPACE, Label, Rel

if TYPE_CHECKING:
    from rdflib.term import Node

    from kg.store import GraphStore

__all__ = [
    "export_graph",
    "export_selection",
    "import_graph",
    "node_iri",
    "read_rdf",
    "validate",
    "write_rdf",
]

KG = Namespace(NAMESPACE)
RELATIONSHIP = KG.Relationship
REL_SOURCE, REL_TARGET, REL_TYPE = KG.relSource, KG.relTarget, KG.relType

PREFIXES: dict[str, str] = {
    "kg": NAMESPACE,
    "prov": "http://www.w3.org/ns/prov#",
    "dcat": "http://www.w3.org/ns/dcat#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "schema": "https://schema.org/",
    "mls": "http://www.w3.org/ns/mls#",
    "rdf": str(RDF),
    "xsd": str(XSD),
}
"""Prefixes bound in exported files (Turtle prefixes, JSON-LD context)."""

FORMATS: dict[str, str] = {".ttl": "turtle", ".jsonld": "json-ld", ".json": "json-ld"}
"""File suffix -> RDF format, when ``write_rdf`` / ``read_rdf`` are not told the format."""

_FORMAT_NAMES = {"turtle": "Turtle", "json-ld": "JSON-LD"}
# rdflib's Turtle errors: "at line N of <>:\nBad syntax (REASON) at ^ in:\n<the text around it>"
_BAD_SYNTAX = re.compile(r"at line (\d+) of <[^>]*>:\s*Bad syntax \((.+?)\) at \^", re.S)

_DATATYPES: dict[str, URIRef] = {
    "string": XSD.string,
    "int": XSD.long,
    "float": XSD.double,
    "bool": XSD.boolean,
    "json": RDF.JSON,
}


_NS = Graph().namespace_manager  # for short names (kg:, xsd:, ...) in messages
for _prefix, _ns in PREFIXES.items():
    _NS.bind(_prefix, _ns, replace=True)


# -- names -----------------------------------------------------------------------------------------
def node_iri(label: Label | str, id: str) -> URIRef:
    """The IRI of a node: ``{RESOURCE_NAMESPACE}{Label}/{id, percent-encoded}``."""
    return URIRef(f"{RESOURCE_NAMESPACE}{Label(label).value}/{quote(id, safe='')}")


def _relationship_iri(rel: Rel, src: tuple[Label, str], dst: tuple[Label, str], keys: list[Any]) -> URIRef:
    """A deterministic IRI for a reified relationship: a hash of its type, ends and key values."""
    ident = json.dumps([rel.value, src[0].value, src[1], dst[0].value, dst[1], *keys], ensure_ascii=False)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return URIRef(f"{RESOURCE_NAMESPACE}Relationship/{digest}")


@lru_cache(maxsize=1)
def _aligned_classes() -> dict[Label, tuple[URIRef, ...]]:
    """Label -> its kg: class followed by the named superclasses the ontology aligns it to."""
    onto = load_ontology()
    out: dict[Label, tuple[URIRef, ...]] = {}
    for label in Label:
        cls = URIRef(class_iri(label))
        supers = sorted(
            o for o in onto.objects(cls, RDFS.subClassOf) if isinstance(o, URIRef) and o not in KG
        )
        out[label] = (cls, *supers)
    return out


@lru_cache(maxsize=1)
def _aligned_predicates() -> dict[Rel, tuple[URIRef, ...]]:
    """Relationship type -> its kg: property followed by the standard super-properties it aligns to."""
    onto = load_ontology()
    out: dict[Rel, tuple[URIRef, ...]] = {}
    for rel in Rel:
        pred = URIRef(rel_iri(rel))
        supers = sorted(
            o for o in onto.objects(pred, RDFS.subPropertyOf) if isinstance(o, URIRef) and o not in KG
        )
        out[rel] = (pred, *supers)
    return out


def _bind(g: Graph) -> None:
    for prefix, ns in PREFIXES.items():
        g.bind(prefix, ns, replace=True)


# -- export ----------------------------------------------------------------------------------------
def _literal(kind: str, value: Any) -> Literal:
    """A property value as a typed literal; JSON values as canonical text."""
    if kind == "json":
        return Literal(encode_value("json", value, "json"), datatype=RDF.JSON)
    return Literal(value, datatype=_DATATYPES[kind])


def export_graph(store: GraphStore) -> Graph:
    """Every node and relationship of ``store`` as an RDF graph (see the module docstring)."""
    return export_selection(store.query, Label, Rel)


Reader = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
"""Runs one read statement with parameters: ``GraphStore.query``, or ``Transaction.run`` inside an open
transaction (which sees that transaction's own writes)."""


def export_selection(run: Reader, labels: Iterable[Label], rels: Iterable[Rel]) -> Graph:
    """The nodes of ``labels`` and the relationships of ``rels``, read through ``run``, as RDF (the
    mapping of ``export_graph``). A node without an id (possible in Neo4j after a raw write) becomes a
    blank node, so that the shapes, not the exporter, report it."""
    g = Graph()
    _bind(g)
    classes = _aligned_classes()
    for label in labels:
        kinds = NODES[label].properties
        cols = ", ".join(f"n.{p} AS {p}" for p in kinds)
        for row in run(f"MATCH (n:{label}) RETURN {cols}", {}):
            props = decode_props(label, row)
            subject = node_iri(label, props["id"]) if isinstance(props.get("id"), str) else BNode()
            for cls in classes[label]:
                g.add((subject, RDF.type, cls))
            for name, value in props.items():
                g.add((subject, KG[name], _literal(kinds[name], value)))

    predicates = _aligned_predicates()
    for rel in rels:
        spec = RELS[rel]
        names = list(spec.properties)
        cols = ", ".join(["x.id AS _src", "y.id AS _dst", *(f"r.{p} AS {p}" for p in names)])
        for src_label, dst_label in spec.ends:
            rows = run(f"MATCH (x:{src_label})-[r:{rel}]->(y:{dst_label}) RETURN {cols}", {})
            for row in rows:
                src, dst = (src_label, row["_src"]), (dst_label, row["_dst"])
                s, o = node_iri(*src), node_iri(*dst)
                for pred in predicates[rel]:
                    g.add((s, pred, o))
                props = decode_props(rel, {p: row[p] for p in names})
                if not props:
                    continue
                r = _relationship_iri(rel, src, dst, [props.get(k, "") for k in spec.key])
                g.add((r, RDF.type, RELATIONSHIP))
                g.add((r, REL_SOURCE, s))
                g.add((r, REL_TARGET, o))
                g.add((r, REL_TYPE, Literal(rel.value, datatype=XSD.string)))
                for name, value in props.items():
                    g.add((r, KG[name], _literal(spec.properties[name], value)))
    return g


# -- import ----------------------------------------------------------------------------------------
def _value(obj: Node, kind: str, where: str) -> Any:
    """The Python value of a property literal, refusing any other datatype than the kind's."""
    expected = _DATATYPES[kind]
    if not isinstance(obj, Literal):
        raise InvalidRecord(f"{where} must be a literal of type {expected.n3(_NS)}, got {obj.n3()}.")
    datatype = obj.datatype
    if kind == "string" and datatype is None and obj.language is None:
        datatype = XSD.string  # a simple literal is an xsd:string (RDF 1.1)
    if datatype != expected:
        got = (
            obj.datatype.n3(_NS)
            if obj.datatype
            else ("a language-tagged string" if obj.language else "no datatype")
        )
        raise InvalidRecord(f"{where} must be typed {expected.n3(_NS)}, got {got}.")
    if kind == "string":
        return str(obj)
    if kind == "json":
        try:
            return json.loads(str(obj))
        except ValueError:
            raise InvalidRecord(f"{where} is not valid JSON text: {str(obj)[:60]!r}.") from None
    if obj.ill_typed or obj.value is None:
        raise InvalidRecord(f"{where} has the malformed {expected.n3(_NS)} value {str(obj)!r}.")
    return {"int": int, "float": float, "bool": bool}[kind](obj.value)


def _single(g: Graph, subject: Node, pred: URIRef) -> Node:
    values = list(g.objects(subject, pred))
    if len(values) != 1:
        raise InvalidRecord(
            f"relationship {subject.n3()} needs exactly one {pred.n3(_NS)}, found {len(values)}."
        )
    return values[0]


def import_graph(g: Graph) -> GraphBatch:
    """The inverse of ``export_graph``: the ``kg:`` nodes, properties and relationships of ``g`` as a batch.

    Standard (PROV-O, DCAT, SKOS, ...) duplicates are ignored. Raises ``InvalidRecord`` naming the
    offending IRI for an unknown ``kg:`` class or property, a literal with the wrong datatype, a
    relationship whose ends are not typed nodes, or an unknown relationship type.
    """
    labels, reified = _typed_subjects(g)
    batch = GraphBatch()
    ends = _import_nodes(g, labels, batch)
    covered = _import_reified_relationships(g, reified, ends, batch)
    _import_plain_relationships(g, ends, covered, batch)
    _refuse_untyped_kg_terms(g, labels.keys() | set(reified))
    return batch


@lru_cache(maxsize=1)
def _rel_of_predicate() -> dict[URIRef, Rel]:
    """Each relationship type by the predicate IRI of its plain triple."""
    return {URIRef(rel_iri(rel)): rel for rel in Rel}


def _typed_subjects(g: Graph) -> tuple[dict[Node, Label], list[Node]]:
    """Who is what: the subjects typed with a ``kg:`` node class (with their label), and the reified
    relationships (typed ``kg:Relationship``). Refuses an unknown class and a subject with two types."""
    label_of_class = {URIRef(class_iri(label)): label for label in Label}
    labels: dict[Node, Label] = {}
    reified: list[Node] = []
    for subject, cls in g.subject_objects(RDF.type):
        if not (isinstance(cls, URIRef) and cls in KG):
            continue
        if cls == RELATIONSHIP:
            reified.append(subject)
            continue
        label = label_of_class.get(cls)
        if label is None:
            raise InvalidRecord(f"{subject.n3()} is typed with the unknown kgraft class {cls.n3(_NS)}.")
        if labels.setdefault(subject, label) != label:
            raise InvalidRecord(f"{subject.n3()} is typed as both kg:{labels[subject]} and kg:{label}.")
    for r in reified:
        if r in labels:
            raise InvalidRecord(f"{r.n3()} is typed as both kg:Relationship and kg:{labels[r]}.")
    return labels, reified


def _kg_properties(
    g: Graph, subject: Node, kinds: dict[str, str], skip: Container[Node], who: str, owner: str
) -> dict[str, Any]:
    """The ``kg:`` properties of ``subject`` (other than the predicates in ``skip``) as Python values
    of their ``kinds``; refuses a property ``owner`` does not have and a property given twice.
    ``who`` names the subject in messages."""
    props: dict[str, Any] = {}
    for pred, obj in g.predicate_objects(subject):
        if not (isinstance(pred, URIRef) and pred in KG) or pred in skip:
            continue
        name = pred[len(NAMESPACE) :]
        if name not in kinds:
            raise InvalidRecord(f"{who}: {owner} has no property kg:{name}.")
        if name in props:
            raise InvalidRecord(f"{who} has more than one kg:{name}.")
        props[name] = _value(obj, kinds[name], f"{who} kg:{name}")
    return props


def _import_nodes(g: Graph, labels: dict[Node, Label], batch: GraphBatch) -> dict[Node, tuple[Label, str]]:
    """Add every typed node with its properties to ``batch``; returns each subject's (label, id).
    Refuses a node without a ``kg:id`` and two subjects with the same label and id."""
    ends: dict[Node, tuple[Label, str]] = {}
    seen: dict[tuple[Label, str], Node] = {}
    for subject, label in labels.items():
        props = _kg_properties(
            g, subject, NODES[label].properties, _rel_of_predicate(), subject.n3(), f"a kg:{label}"
        )
        node_id = props.pop("id", None)
        if not node_id:
            raise InvalidRecord(f"{subject.n3()} is a kg:{label} without a kg:id.")
        if (label, node_id) in seen:
            raise InvalidRecord(
                f"{subject.n3()} and {seen[(label, node_id)].n3()} are both the kg:{label} {node_id!r}."
            )
        seen[(label, node_id)] = subject
        ends[subject] = (label, node_id)
        batch.node(label, node_id, **props)
    return ends


def _end(ends: dict[Node, tuple[Label, str]], node: Node, what: str) -> tuple[Label, str]:
    """The (label, id) of a relationship's end, refusing one that is not a typed node."""
    if node not in ends:
        raise InvalidRecord(f"{what} joins {node.n3()}, which is not a typed kgraft node.")
    return ends[node]


def _check_ends(rel: Rel, src: tuple[Label, str], dst: tuple[Label, str], what: str) -> None:
    """Refuse a relationship between labels its type cannot join."""
    if (src[0], dst[0]) not in RELS[rel].ends:
        raise InvalidRecord(f"{what}: {rel} cannot join a {src[0]} to a {dst[0]}.")


def _import_reified_relationships(
    g: Graph, reified: list[Node], ends: dict[Node, tuple[Label, str]], batch: GraphBatch
) -> set[tuple[Node, Rel, Node]]:
    """Add the reified relationships, which carry the properties, to ``batch``; returns the
    (source, type, target) triples they cover, so the plain triples beside them are not added twice."""
    rel_of_name = {rel.value: rel for rel in Rel}
    structural = {REL_SOURCE, REL_TARGET, REL_TYPE}
    covered: set[tuple[Node, Rel, Node]] = set()
    for r in reified:
        rel_type = _single(g, r, REL_TYPE)
        rel = rel_of_name.get(str(rel_type)) if isinstance(rel_type, Literal) else None
        if rel is None:
            raise InvalidRecord(f"relationship {r.n3()} has the unknown kg:relType {rel_type.n3(_NS)}.")
        s, o = _single(g, r, REL_SOURCE), _single(g, r, REL_TARGET)
        what = f"{rel} relationship {r.n3()}"
        src, dst = _end(ends, s, what), _end(ends, o, what)
        _check_ends(rel, src, dst, what)
        props = _kg_properties(g, r, RELS[rel].properties, structural, f"relationship {r.n3()}", str(rel))
        batch.edge(rel, src, dst, **props)
        covered.add((s, rel, o))
    return covered


def _import_plain_relationships(
    g: Graph, ends: dict[Node, tuple[Label, str]], covered: set[tuple[Node, Rel, Node]], batch: GraphBatch
) -> None:
    """Add the direct ``kg:`` triples between nodes (relationships without properties) to ``batch``."""
    for pred, rel in _rel_of_predicate().items():
        for s, o in g.subject_objects(pred):
            if (s, rel, o) in covered:
                continue
            what = f"the triple {s.n3()} {pred.n3(_NS)} {o.n3()}"
            src, dst = _end(ends, s, what), _end(ends, o, what)
            _check_ends(rel, src, dst, what)
            batch.edge(rel, src, dst)


def _refuse_untyped_kg_terms(g: Graph, typed: Container[Node]) -> None:
    """``kg:`` terms on anything that is neither a node nor a relationship are a mistake, not noise."""
    for subject, pred in g.subject_predicates():
        if isinstance(pred, URIRef) and pred in KG and subject not in typed:
            raise InvalidRecord(f"{subject.n3()} uses {pred.n3(_NS)} but has no kgraft class.")


# -- validation ------------------------------------------------------------------------------------
def validate(g: Graph) -> list[str]:
    """SHACL violations of ``g`` against ``ontology/shapes.ttl``, one sentence each; empty if it conforms."""
    import pyshacl

    conforms, results, _text = pyshacl.validate(
        g, shacl_graph=load_shapes(), ont_graph=load_ontology(), inference="none"
    )
    if conforms:
        return []
    messages = []
    for result in results.subjects(RDF.type, SH.ValidationResult):
        focus = results.value(result, SH.focusNode)
        path = results.value(result, SH.resultPath)
        message = results.value(result, SH.resultMessage)
        where = focus.n3(_NS) if focus is not None else "?"
        if path is not None and not isinstance(path, BNode):
            where += f" {path.n3(_NS)}"
        messages.append(f"{where}: {message or 'violates a shape'}")
    return sorted(messages)


# -- files -----------------------------------------------------------------------------------------
def _format_for(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in _FORMAT_NAMES:
            raise KgError(f"unknown RDF format {fmt!r}: use turtle or json-ld.")
        return fmt
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise KgError(f"cannot tell the RDF format of {path.name}: name it .ttl, .jsonld or .json.") from None


class _ExactTurtleSerializer(TurtleSerializer):
    """rdflib's Turtle serializer, except that doubles keep every digit.

    rdflib writes xsd:double in the short form ``1.234568e-01`` (``%e``, 7 significant digits), which
    loses precision; here doubles are written as ``"0.123456789"^^xsd:double`` instead.
    """

    def label(self, node: Node, position: int) -> str:
        if isinstance(node, Literal) and node.datatype == XSD.double:
            return node.n3(self.store.namespace_manager)
        return super().label(node, position)


def _serialize(g: Graph, fmt: str) -> bytes:
    if fmt == "turtle":
        buffer = io.BytesIO()
        _ExactTurtleSerializer(g).serialize(buffer, encoding="utf-8")
        return buffer.getvalue()
    return g.serialize(format="json-ld", context=dict(PREFIXES), indent=2, encoding="utf-8")


def write_rdf(store: GraphStore, path: str | Path, format: str | None = None) -> int:
    """Export ``store`` to ``path`` as Turtle or JSON-LD (from the suffix unless ``format`` says).

    The file is written to a temporary file beside it and moved into place, so a reader never sees
    half a file. Returns the number of triples written.
    """
    path = Path(path)
    fmt = _format_for(path, format)
    g = export_graph(store)
    atomic_write_bytes(path, _serialize(g, fmt))
    return len(g)


def _remote_context(value: Any) -> bool:
    """Whether a JSON-LD document refers to a remote ``@context`` (which rdflib would fetch)."""
    if isinstance(value, dict):
        ctx = value.get("@context")
        if isinstance(ctx, str) or (isinstance(ctx, list) and any(isinstance(c, str) for c in ctx)):
            return True
        return any(_remote_context(v) for v in value.values())
    if isinstance(value, list):
        return any(_remote_context(v) for v in value)
    return False


def _syntax_reason(exc: Exception) -> str:
    """One line saying where and why rdflib refused a file ("line 3: objectList expected")."""
    text = str(exc).strip()
    found = _BAD_SYNTAX.match(text)
    if found:
        return f"line {found[1]}: {found[2]}."
    return (text.splitlines() or [type(exc).__name__])[0]


def read_rdf(path: str | Path, format: str | None = None) -> GraphBatch:
    """Parse a Turtle or JSON-LD file, check it against the SHACL shapes, and return it as a batch.

    Raises ``InvalidRecord`` if the file does not parse, violates the shapes, or is not kgraft data;
    nothing is written in any case (apply the batch to write it).
    """
    path = Path(path)
    fmt = _format_for(path, format)
    name = _FORMAT_NAMES[fmt]
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidRecord(f"cannot read {path}: {exc.strerror or exc}.") from None
    if fmt == "json-ld":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidRecord(f"{path} is not valid {name}: {exc}.") from None
        if _remote_context(doc):
            raise InvalidRecord(f"{path} uses a remote @context, which kgraft does not fetch; inline it.")
    g = Graph()
    try:
        g.parse(data=text, format=fmt)
    except Exception as exc:  # rdflib raises many types for bad syntax; all are the file's fault
        raise InvalidRecord(f"{path} is not valid {name}: {_syntax_reason(exc)}") from None
    violations = validate(g)
    if violations:
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise InvalidRecord(f"{path} violates the kgraft shapes: {violations[0]}{more}.")
    return import_graph(g)
