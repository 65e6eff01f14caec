"""The drift test: ontology/kgraft.ttl, ontology/shapes.ttl and ontology/vocab.py must agree.

Beyond the vocabulary, the ontology holds four helper terms for reified relationships that have
no counterpart in vocab.py: the class kg:Relationship, the object properties kg:relSource and
kg:relTarget, and the datatype property kg:relType (see the header of kgraft.ttl).
"""

from __future__ import annotations

import functools
from collections import defaultdict

import pyshacl
import pytest
import rdflib
from rdflib import OWL, RDF, RDFS, Literal, URIRef
from rdflib.collection import Collection

from ontology import (
    ONTOLOGY_PATH,
    SHAPES_PATH,
    class_iri,
    load_ontology,
    load_shapes,
    property_iri,
    rel_iri,
)
from ontology.vocab import NAMESPACE, NODES, RELS, RESOURCE_NAMESPACE, Label, Rel

KG = rdflib.Namespace(NAMESPACE)
SH = rdflib.Namespace("http://www.w3.org/ns/shacl#")
XSD = rdflib.Namespace("http://www.w3.org/2001/XMLSchema#")  # rdflib.XSD warns when pytest probes it
KIND_RANGE = {
    "string": XSD.string,
    "int": XSD.long,
    "float": XSD.double,
    "bool": XSD.boolean,
    "json": RDF.JSON,
}
HELPER_CLASSES = {"Relationship"}
HELPER_OBJECT_PROPERTIES = {"relSource", "relTarget"}
HELPER_DATATYPE_PROPERTIES = {"relType"}


def _local(iri: rdflib.term.Node) -> str:
    text = str(iri)
    assert text.startswith(NAMESPACE), f"{text} is not in the kg: namespace"
    return text[len(NAMESPACE) :]


def _kg_subjects(graph: rdflib.Graph, rdf_type: URIRef) -> set[str]:
    return {_local(s) for s in graph.subjects(RDF.type, rdf_type) if str(s).startswith(NAMESPACE)}


def _members(graph: rdflib.Graph, node: rdflib.term.Node) -> set[rdflib.term.Node]:
    """A class or datatype expression as a set: its owl:unionOf members, or itself."""
    union = graph.value(node, OWL.unionOf)
    return set(Collection(graph, union)) if union is not None else {node}


def _property_kinds() -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = defaultdict(set)
    for spec in (*NODES.values(), *RELS.values()):
        for name, kind in spec.properties.items():
            kinds[name].add(kind)
    return kinds


@pytest.fixture(scope="module")
def onto() -> rdflib.Graph:
    return load_ontology()


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ONTOLOGY_PATH, SHAPES_PATH], ids=["ontology", "shapes"])
def test_turtle_parses(path):
    graph = rdflib.Graph().parse(path, format="turtle")
    assert len(graph) > 100


def test_loaders_are_cached():
    assert load_ontology() is load_ontology()
    assert load_shapes() is load_shapes()
    assert (None, RDF.type, OWL.Ontology) in load_ontology()
    assert (None, RDF.type, SH.NodeShape) in load_shapes()


# --- vocabulary <-> ontology -------------------------------------------------------------------


def test_classes_match_labels(onto):
    assert _kg_subjects(onto, OWL.Class) - HELPER_CLASSES == {label.value for label in Label}


def test_every_class_has_label_comment_and_external_alignment(onto):
    for local in {label.value for label in Label} | HELPER_CLASSES:
        cls = KG[local]
        assert onto.value(cls, RDFS.label) is not None, local
        assert onto.value(cls, RDFS.comment) is not None, local
        parents = set(onto.objects(cls, RDFS.subClassOf)) | set(onto.objects(cls, OWL.equivalentClass))
        external = {p for p in parents if isinstance(p, URIRef) and not str(p).startswith(NAMESPACE)}
        assert external, f"kg:{local} is not aligned to any external class"


def test_cypher_names_match_rels(onto):
    names = [str(o) for o in onto.objects(None, KG.cypherName)]
    assert len(names) == len(set(names)), "a cypherName is used twice"
    assert set(names) == {rel.value for rel in Rel}
    assert (KG.cypherName, RDF.type, OWL.AnnotationProperty) in onto


def test_object_properties_are_the_rels_plus_helpers(onto):
    annotated = {_local(s) for s in onto.subjects(KG.cypherName, None)}
    assert _kg_subjects(onto, OWL.ObjectProperty) == annotated | HELPER_OBJECT_PROPERTIES
    for rel in Rel:
        local = _local(rel_iri(rel))
        assert local[0].islower() and "_" not in local, local
        assert (URIRef(rel_iri(rel)), RDF.type, OWL.ObjectProperty) in onto


@pytest.mark.parametrize("rel", list(Rel), ids=str)
def test_rel_domain_and_range_cover_ends(onto, rel):
    prop = URIRef(rel_iri(rel))
    domain = _members(onto, onto.value(prop, RDFS.domain))
    range_ = _members(onto, onto.value(prop, RDFS.range))
    ends = RELS[rel].ends
    assert {URIRef(class_iri(a)) for a, _ in ends} == domain
    assert {URIRef(class_iri(b)) for _, b in ends} == range_


def test_lineage_and_provenance_alignment(onto):
    expected = {
        Rel.DERIVED_FROM: "http://www.w3.org/ns/prov#wasDerivedFrom",
        Rel.TRAINED_ON: "http://www.w3.org/ns/prov#wasDerivedFrom",
        Rel.FINETUNED_FROM: "http://www.w3.org/ns/prov#wasDerivedFrom",
        Rel.USED: "http://www.w3.org/ns/prov#used",
        Rel.GENERATED_BY: "http://www.w3.org/ns/prov#wasGeneratedBy",
        Rel.ASSOCIATED_WITH: "http://www.w3.org/ns/prov#wasAssociatedWith",
        Rel.ATTRIBUTED_TO: "http://www.w3.org/ns/prov#wasAttributedTo",
        Rel.IS_A: "http://www.w3.org/2004/02/skos/core#broader",
    }
    for rel, parent in expected.items():
        assert (URIRef(rel_iri(rel)), RDFS.subPropertyOf, URIRef(parent)) in onto, rel


def test_datatype_properties_match_vocab(onto):
    kinds = _property_kinds()
    declared = _kg_subjects(onto, OWL.DatatypeProperty)
    assert declared - HELPER_DATATYPE_PROPERTIES == set(kinds)
    for name, name_kinds in kinds.items():
        prop = URIRef(property_iri(name))
        ranges = list(onto.objects(prop, RDFS.range))
        assert len(ranges) == 1, f"kg:{name} needs exactly one rdfs:range"
        assert len(name_kinds) == 1, f"{name} is used with several kinds: {name_kinds}"
        assert _members(onto, ranges[0]) == {KIND_RANGE[k] for k in name_kinds}, name


def test_datatype_property_domains_match_users(onto):
    users: dict[str, set[URIRef]] = defaultdict(set)
    for label, spec in NODES.items():
        for name in spec.properties:
            users[name].add(URIRef(class_iri(label)))
    for spec in RELS.values():
        for name in spec.properties:
            users[name].add(KG.Relationship)
    for name, expected in users.items():
        domain = onto.value(URIRef(property_iri(name)), RDFS.domain)
        assert domain is not None, name
        assert _members(onto, domain) == expected, name


def test_helpers_are_declared(onto):
    assert (KG.Relationship, RDF.type, OWL.Class) in onto
    assert (KG.relSource, RDF.type, OWL.ObjectProperty) in onto
    assert (KG.relTarget, RDF.type, OWL.ObjectProperty) in onto
    assert (KG.relType, RDF.type, OWL.DatatypeProperty) in onto
    for helper in (KG.relSource, KG.relTarget, KG.relType):
        assert onto.value(helper, RDFS.domain) == KG.Relationship


# --- IRI helpers -------------------------------------------------------------------------------


def test_iri_helpers():
    assert class_iri(Label.DATASET) == NAMESPACE + "Dataset"
    assert class_iri("Bias") == NAMESPACE + "Bias"
    assert rel_iri(Rel.DERIVED_FROM) == NAMESPACE + "derivedFrom"
    assert rel_iri("TRANSFERRED_TO") == NAMESPACE + "transferredTo"
    assert property_iri("n_samples") == NAMESPACE + "n_samples"
    with pytest.raises(KeyError):
        property_iri("no_such_property")
    with pytest.raises(ValueError):
        class_iri("NoSuchLabel")
    with pytest.raises(ValueError):
        rel_iri("NO_SUCH_REL")


# --- SHACL ---------------------------------------------------------------------------------------


def test_shapes_cover_every_label_and_rel_type():
    shapes = load_shapes()
    targets = {_local(t) for t in shapes.objects(None, SH.targetClass)}
    assert targets == {label.value for label in Label} | HELPER_CLASSES
    rel_type_shapes = [s for s in shapes.subjects(SH.path, KG.relType)]
    assert len(rel_type_shapes) == 1
    allowed = Collection(shapes, shapes.value(rel_type_shapes[0], SH["in"]))
    assert {str(v) for v in allowed} == {rel.value for rel in Rel}


def _literal(value: object, kind: str, typed_strings: bool = True) -> Literal:
    """A property value as the exporter writes it; strings as "x"^^xsd:string or as simple literals."""
    if kind == "string" and not typed_strings:
        return Literal(value)
    return Literal(value, datatype=KIND_RANGE[kind])


def _node(
    graph: rdflib.Graph, label: Label, node_id: str, typed_strings: bool = True, **props: object
) -> URIRef:
    iri = URIRef(f"{RESOURCE_NAMESPACE}{label.value}/{node_id}")
    graph.add((iri, RDF.type, URIRef(class_iri(label))))
    for name, value in {"id": node_id, **props}.items():
        literal = _literal(value, NODES[label].properties[name], typed_strings)
        graph.add((iri, URIRef(property_iri(name)), literal))
    return iri


def _valid_graph(typed_strings: bool = True) -> rdflib.Graph:
    """One node of every label, three relationships and one reified relationship with a property."""
    g = rdflib.Graph()
    node = functools.partial(_node, g, typed_strings=typed_strings)
    parent = node(Label.DATASET, "mnist", name="MNIST", n_samples=70000, n_classes=10, imbalance=1.27)
    child = node(Label.DATASET, "mnist-small", name="MNIST subset", split_counts='{"train": 600}')
    model = node(Label.MODEL, "resnet18", name="ResNet-18", num_params=11689512, architecture="resnet18")
    bias = node(Label.BIAS, "b1", name="writer skew", kind="demographic", source="human", severity="low")
    run = node(Label.ACTIVITY, "a1", name="finetune", kind="fine-tuning", status="finished")
    node(Label.CONCEPT, "n1", name="digit", synset="n06825399", depth=0)
    node(Label.DOMAIN, "handwriting", name="Handwriting")
    node(Label.AGENT, "me", name="Me", kind="person")
    g.add((child, URIRef(rel_iri(Rel.DERIVED_FROM)), parent))
    g.add((child, URIRef(rel_iri(Rel.HAS_BIAS)), bias))
    g.add((model, URIRef(rel_iri(Rel.GENERATED_BY)), run))
    rel = rdflib.BNode()
    g.add((rel, RDF.type, KG.Relationship))
    g.add((rel, KG.relSource, child))
    g.add((rel, KG.relTarget, parent))
    g.add((rel, KG.relType, _literal(Rel.DERIVED_FROM.value, "string", typed_strings)))
    g.add((rel, KG.how, _literal("subset", "string", typed_strings)))
    return g


def _validate(data: rdflib.Graph) -> tuple[bool, set[tuple[str, str]], str]:
    """Validate against the shapes; returns conforms, {(constraint component, path local name)}, text."""
    conforms, results, text = pyshacl.validate(
        data, shacl_graph=load_shapes(), ont_graph=load_ontology(), inference="none"
    )
    violations = {
        (
            str(results.value(r, SH.sourceConstraintComponent)).split("#")[-1],
            _local(results.value(r, SH.resultPath)),
        )
        for r in results.subjects(RDF.type, SH.ValidationResult)
    }
    return conforms, violations, text


@pytest.mark.parametrize("typed_strings", [True, False], ids=["xsd-string", "simple-literal"])
def test_valid_data_conforms(typed_strings):
    conforms, _, text = _validate(_valid_graph(typed_strings))
    assert conforms, text


_MNIST = URIRef(f"{RESOURCE_NAMESPACE}Dataset/mnist")

INVALID = {
    "bias-source-not-allowed": (
        lambda g: _node(g, Label.BIAS, "b2", name="x", kind="label-noise", source="made-up"),
        ("In", "source"),
    ),
    "dataset-missing-name": (lambda g: _node(g, Label.DATASET, "nameless"), ("MinCount", "name")),
    "negative-n_samples": (
        lambda g: _node(g, Label.DATASET, "neg", name="neg", n_samples=-1),
        ("MinInclusive", "n_samples"),
    ),
    "imbalance-below-1": (
        lambda g: _node(g, Label.DATASET, "flat", name="flat", imbalance=0.5),
        ("MinInclusive", "imbalance"),
    ),
    "bias-missing-source": (lambda g: _node(g, Label.BIAS, "b3", name="x", kind="k"), ("MinCount", "source")),
    "bias-severity-not-allowed": (
        lambda g: _node(g, Label.BIAS, "b4", name="x", kind="k", source="human", severity="dire"),
        ("In", "severity"),
    ),
    "activity-status-not-allowed": (
        lambda g: _node(g, Label.ACTIVITY, "a2", name="x", kind="k", status="paused"),
        ("In", "status"),
    ),
    "negative-num_params": (
        lambda g: _node(g, Label.MODEL, "m2", name="x", num_params=-5),
        ("MinInclusive", "num_params"),
    ),
    "dataset-two-names": (lambda g: g.add((_MNIST, KG.name, Literal("again"))), ("MaxCount", "name")),
    "n_samples-wrong-datatype": (
        lambda g: g.set((_MNIST, KG.n_samples, Literal(70000))),  # xsd:integer, not xsd:long
        ("Datatype", "n_samples"),
    ),
    "unknown-relationship-type": (
        lambda g: g.set((next(g.subjects(RDF.type, KG.Relationship)), KG.relType, Literal("NOPE"))),
        ("In", "relType"),
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_data_does_not_conform(case):
    mutate, (component, path) = INVALID[case]
    data = _valid_graph()
    mutate(data)
    conforms, violations, text = _validate(data)
    assert not conforms
    assert (f"{component}ConstraintComponent", path) in violations, text
