"""RDF export / import (kg.rdf) against a real LadybugDB file and a real Neo4j server.

The round trip is checked the strict way: export, wipe the store, import, export again, and the two
graphs must be isomorphic; files go through Turtle and JSON-LD on disk; SHACL must accept the export.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rdflib import RDF, Graph, Literal, URIRef
from rdflib.compare import isomorphic

from kg import GraphBatch, GraphStore
from kg.errors import InvalidRecord, KgError
from kg.rdf import KG, export_graph, import_graph, node_iri, read_rdf, validate, write_rdf
from ontology.vocab import Label, Rel

D, M, B, A, G, C, DOM = (
    Label.DATASET,
    Label.MODEL,
    Label.BIAS,
    Label.ACTIVITY,
    Label.AGENT,
    Label.CONCEPT,
    Label.DOMAIN,
)
TRICKY = 'x"); MATCH (n) DETACH DELETE n; //'
PROV = "http://www.w3.org/ns/prov#"
SKOS = "http://www.w3.org/2004/02/skos/core#"
DCAT = "http://www.w3.org/ns/dcat#"
XSD_LONG = URIRef("http://www.w3.org/2001/XMLSchema#long")
XSD_STRING = URIRef("http://www.w3.org/2001/XMLSchema#string")


def lineage() -> GraphBatch:
    """A small lineage graph using every relationship type and every property kind in use."""
    b = GraphBatch()
    b.node(
        D, "base", name="Base photos", n_samples=1200, n_classes=3, imbalance=1.2345678901234567,
        split_counts={"train": 1000, "test": 200}, mean=[0.485, 0.456, 0.406], image_size=[32, 32],
        license="cc-by-4.0", source="torchvision", extra={"zeta": 1, "alpha": {"b": [1, 2], "a": None}},
    )  # fmt: skip
    parent = "base"
    for i in range(1, 7):
        b.node(D, f"d{i}", name=f"derived {i}", n_samples=1000 - 100 * i, channels=3)
        b.edge(
            Rel.DERIVED_FROM, (D, f"d{i}"), (D, parent),
            how=["subset", "relabel", "augment"][i % 3], params={"seed": i, "fraction": i / 7},
        )  # fmt: skip
        parent = f"d{i}" if i % 2 else parent  # a tree, not only a chain
    b.node(D, "tricky", name=TRICKY, description="quotes ' \" and a \\ backslash, ünïcode ✓")
    b.edge(Rel.DERIVED_FROM, (D, "tricky"), (D, "d6"))  # no properties: a direct triple only
    b.node(M, "resnet", name="ResNet-18", num_params=11_689_512, input_size=[3, 224, 224], kind="cnn")
    b.node(M, "resnet-ft", name="ResNet-18 fine-tuned", layer_groups=[["conv1"], ["layer1", "layer2"]])
    b.edge(Rel.TRAINED_ON, (M, "resnet"), (D, "base"), split="train")
    b.edge(Rel.FINETUNED_FROM, (M, "resnet-ft"), (M, "resnet"), activity="ft-1")
    b.node(B, "b-geo", name="Geographic skew", kind="representation", severity="high", source="human")
    b.node(B, "b-blur", name="Blur", kind="quality", severity="unknown", source="measured")
    b.edge(Rel.HAS_BIAS, (D, "base"), (B, "b-geo"))
    b.edge(Rel.HAS_BIAS, (M, "resnet"), (B, "b-blur"))
    b.node(A, "ft-1", name="fine-tune", kind="fine-tuning", status="finished", settings={"lr": 0.001})
    b.node(G, "alice", name="Alice O'Hara", kind="person", url="https://example.org/alice")
    b.edge(Rel.USED, (A, "ft-1"), (D, "d3"), role="target")
    b.edge(Rel.USED, (A, "ft-1"), (M, "resnet"), role="source")
    b.edge(Rel.GENERATED_BY, (M, "resnet-ft"), (A, "ft-1"))
    b.edge(Rel.ASSOCIATED_WITH, (A, "ft-1"), (G, "alice"), role="operator")
    b.edge(Rel.ATTRIBUTED_TO, (D, "base"), (G, "alice"), role="creator")
    b.edge(Rel.SCORED_ON, (M, "resnet"), (D, "d3"), kind="logme", value=1.25, sample_size=500)
    b.edge(
        Rel.SCORED_ON, (M, "resnet"), (D, "d3"), kind="mmd", layer="layer4", value=0.1 + 0.2,
        p_value=0.0123456789, extra={"kernel": "rbf"},
    )  # fmt: skip
    b.edge(
        Rel.TRANSFERRED_TO, (M, "resnet"), (D, "d3"), activity="ft-1", accuracy=0.9375,
        baseline_accuracy=0.5, gain=0.4375, forgetting=-0.01, preset="gentle", extra={"epochs": 3},
    )  # fmt: skip
    b.node(C, "cat", name="cat", depth=3)
    b.node(C, "animal", name="animal", depth=0, synset="animal.n.01")
    b.edge(Rel.IS_A, (C, "cat"), (C, "animal"))
    b.edge(Rel.HAS_CLASS, (D, "base"), (C, "cat"), label="cat", class_index=0, count=400)
    b.node(DOM, "photos", name="natural photos")
    b.edge(Rel.IN_DOMAIN, (D, "base"), (DOM, "photos"))
    return b


def wipe(store: GraphStore) -> None:
    store.execute("MATCH (n) DETACH DELETE n")


def counts(store: GraphStore) -> tuple[int, int]:
    """(nodes, triples in the export): changes if anything at all is written."""
    return sum(store.count(label) for label in Label), len(export_graph(store))


def test_export_import_round_trip_is_isomorphic(store: GraphStore) -> None:
    store.apply(lineage())
    g1 = export_graph(store)
    assert validate(g1) == []

    base = node_iri(D, "base")
    assert {URIRef(KG + "Dataset"), URIRef(DCAT + "Dataset"), URIRef(PROV + "Entity")} <= set(
        g1.objects(base, RDF.type)
    )
    assert (node_iri(A, "ft-1"), RDF.type, URIRef(PROV + "Activity")) in g1
    assert (node_iri(C, "cat"), RDF.type, URIRef(SKOS + "Concept")) in g1
    assert (node_iri(D, "d1"), URIRef(PROV + "wasDerivedFrom"), base) in g1
    assert (node_iri(C, "cat"), URIRef(SKOS + "broader"), node_iri(C, "animal")) in g1
    assert (node_iri(A, "ft-1"), URIRef(PROV + "wasAssociatedWith"), node_iri(G, "alice")) in g1
    assert (base, KG.n_samples, Literal(1200, datatype=XSD_LONG)) in g1
    assert (base, KG.extra, Literal('{"alpha":{"a":null,"b":[1,2]},"zeta":1}', datatype=RDF.JSON)) in g1
    # one reified relationship per relationship with properties: both SCORED_ON kinds stay apart
    reified = set(g1.subjects(RDF.type, KG.Relationship))
    scored = [r for r in reified if g1.value(r, KG.relType) == Literal("SCORED_ON", datatype=XSD_STRING)]
    assert len(scored) == 2
    assert (
        len(reified) == 6 + 1 + 1 + 2 + 1 + 1 + 2 + 1 + 1
    )  # DF, TRAINED, FT, USED, ASSOC, ATTR, SCORED, TRANSF, HAS_CLASS

    wipe(store)
    stats = store.apply(import_graph(g1))
    assert stats.nodes_created == 17 and stats.edges_created == 22
    assert store.node(D, "tricky")["name"] == TRICKY
    g2 = export_graph(store)
    assert isomorphic(g1, g2)


def test_turtle_and_jsonld_files_round_trip(store: GraphStore, tmp_path: Path) -> None:
    store.apply(lineage())
    g1 = export_graph(store)
    expected = import_graph(g1)
    out = tmp_path / "out"
    batches = {}
    for name in ("kg.ttl", "kg.jsonld"):
        assert write_rdf(store, out / name) == len(g1)
        batches[name] = read_rdf(out / name)
        assert batches[name] == expected, name  # every node, relationship and value comes back
    assert sorted(p.name for p in out.iterdir()) == ["kg.jsonld", "kg.ttl"]  # no temporary files left
    assert '"1.2345678901234567"^^xsd:double' in (out / "kg.ttl").read_text()  # rdflib would keep 7 digits
    wipe(store)
    store.apply(batches["kg.jsonld"])
    assert isomorphic(g1, export_graph(store))


def test_turtle_syntax_error_changes_nothing(store: GraphStore, tmp_path: Path) -> None:
    store.apply(lineage())
    before = counts(store)
    bad = tmp_path / "bad.ttl"
    bad.write_text(
        "@prefix kg: <https://kgraft.dev/ontology#> .\n<https://kgraft.dev/id/Dataset/x> a kg:Dataset ;\n"
    )
    where_and_why = r"line 3: EOF found when expected verb in property list\.$"
    with pytest.raises(InvalidRecord, match=r"bad\.ttl is not valid Turtle: " + where_and_why):
        read_rdf(bad)
    assert counts(store) == before


def test_shape_violation_is_refused_before_writing(store: GraphStore, tmp_path: Path) -> None:
    path = tmp_path / "bias.ttl"
    path.write_text(
        "@prefix kg: <https://kgraft.dev/ontology#> .\n"
        '<https://kgraft.dev/id/Bias/b1> a kg:Bias ; kg:id "b1" ; kg:name "b" ; kg:kind "k" ;\n'
        '    kg:source "made-up" .\n'
    )
    with pytest.raises(InvalidRecord, match=r"violates the kgraft shapes: .*Bias/b1.* kg:source"):
        read_rdf(path)
    assert counts(store) == (0, 0)


def test_write_rdf_needs_a_known_format(store: GraphStore, tmp_path: Path) -> None:
    with pytest.raises(KgError, match="cannot tell the RDF format"):
        write_rdf(store, tmp_path / "kg.xml")
    write_rdf(store, tmp_path / "kg.out", format="turtle")
    assert Graph().parse(tmp_path / "kg.out", format="turtle") is not None


# -- malformed graphs (no store needed) ------------------------------------------------------------
PREAMBLE = (
    "@prefix kg: <https://kgraft.dev/ontology#> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n"
    "@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .\n"
)
X = '<urn:x> a kg:Dataset ; kg:id "x" ; '
DS = '<urn:d> a kg:Dataset ; kg:id "d" ; kg:name "d" .\n'
DM = DS + '<urn:m> a kg:Model ; kg:id "m" ; kg:name "m" .\n'
REL = DM + "<urn:r> a kg:Relationship ; kg:relSource <urn:m> ; "

MALFORMED = [
    ('<urn:x> a kg:Dataset2 ; kg:id "x" .', r"<urn:x> is typed with the unknown kgraft class kg:Dataset2"),
    (X + "kg:n_samples 5 .", r"<urn:x> kg:n_samples must be typed xsd:long, got xsd:integer"),
    (X + 'kg:n_samples "five"^^xsd:long .', r"<urn:x> kg:n_samples has the malformed xsd:long"),
    (X + 'kg:name "a"@en .', r"<urn:x> kg:name must be typed xsd:string, got a language-tagged"),
    (X + 'kg:mean "[1,"^^rdf:JSON .', r"<urn:x> kg:mean is not valid JSON"),
    (X + 'kg:architecture "r" .', r"<urn:x>: a kg:Dataset has no property kg:architecture"),
    ('<urn:x> a kg:Dataset ; kg:name "x" .', r"<urn:x> is a kg:Dataset without a kg:id"),
    (
        DS + "<urn:d> kg:derivedFrom <urn:no> .",
        r"the triple <urn:d> kg:derivedFrom <urn:no> joins <urn:no>, which is not",
    ),
    (
        DM + "<urn:d> kg:derivedFrom <urn:m> .",
        r"kg:derivedFrom <urn:m>: DERIVED_FROM cannot join a Dataset to a Model",
    ),
    (REL + 'kg:relTarget <urn:d> ; kg:relType "LIKES" .', r"<urn:r> has the unknown kg:relType"),
    (
        REL + 'kg:relTarget <urn:q> ; kg:relType "SCORED_ON" .',
        r"SCORED_ON relationship <urn:r> joins <urn:q>, which is not",
    ),
    (
        REL + 'kg:relTarget <urn:d> ; kg:relType "SCORED_ON" ; kg:how "x" .',
        r"SCORED_ON has no property kg:how",
    ),
    (REL + 'kg:relType "SCORED_ON" .', r"<urn:r> needs exactly one kg:relTarget, found 0"),
    ('<urn:y> kg:name "floating" .', r"<urn:y> uses kg:name but has no kgraft class"),
    (DS + '<urn:e> a kg:Dataset ; kg:id "d" ; kg:name "e" .', r"are both the kg:Dataset 'd'"),
]


@pytest.mark.parametrize(("turtle", "message"), MALFORMED)
def test_malformed_graphs_are_refused(turtle: str, message: str) -> None:
    g = Graph().parse(data=PREAMBLE + turtle, format="turtle")
    with pytest.raises(InvalidRecord, match=message):
        import_graph(g)


def test_third_party_triples_are_ignored() -> None:
    extra = (
        "@prefix prov: <http://www.w3.org/ns/prov#> .\n"
        '<urn:d> a prov:Entity ; prov:wasDerivedFrom <urn:elsewhere> ; <urn:p> "anything" .\n'
        "<urn:m> kg:trainedOn <urn:d> .\n"
        '<urn:r> a kg:Relationship ; kg:relSource <urn:m> ; kg:relTarget <urn:d> ; kg:relType "TRAINED_ON" ;'
        ' kg:split "train" .\n'
    )
    batch = import_graph(Graph().parse(data=PREAMBLE + DM + extra, format="turtle"))
    assert batch.node_count() == 2
    assert list(batch.edges[(Rel.TRAINED_ON, M, D)].values()) == [{"src": "m", "dst": "d", "split": "train"}]


def test_remote_jsonld_context_is_not_fetched(tmp_path: Path) -> None:
    path = tmp_path / "remote.jsonld"
    path.write_text('{"@context": "https://example.org/context.jsonld", "@id": "urn:x"}')
    with pytest.raises(InvalidRecord, match="remote @context"):
        read_rdf(path)
