"""One name-to-id rule (kg.ids): the same dataset name lands on one node whichever importer or command
records it, on both stores; stores written under the older rules keep their ids (kg.adopt)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kg import GraphBatch, GraphStore, ids
from kg.croissant import import_croissant
from kg.errors import InvalidRecord, NotFound
from kg.transfergraph import transfergraph_batch
from ontology.vocab import Label, Rel
from tests.corpus import CROISSANT
from transfer import track
from transfer.data.sources import load_dataset
from transfer.register import materialise, register_dataset

D, M, G, C = Label.DATASET, Label.MODEL, Label.AGENT, Label.CONCEPT

# name -> (dataset id, concept id); the table in docs/design.md shows the old rules beside these
TRICKY = {
    "Oxford Pets": ("oxford-pets", "label:oxford-pets"),
    "oxford_pets": ("oxford-pets", "label:oxford-pets"),
    "Fashion-MNIST": ("fashion-mnist", "label:fashion-mnist"),
    "google/vit-base": ("google-vit-base", "label:google-vit-base"),
    "cifar-10.1": ("cifar-10-1", "label:cifar-10-1"),
    "  Leaf rust  ": ("leaf-rust", "label:leaf-rust"),
    "Café": ("caf", "label:caf"),
    "猫": ("dataset-a810bf845a30", "label:class-a810bf845a30"),
}


@pytest.mark.parametrize("name", TRICKY)
def test_one_rule_on_tricky_names(name: str) -> None:
    assert (ids.dataset_id(name), ids.concept_id(name)) == TRICKY[name]
    assert ids.agent_id(name).removeprefix("agent:") in (ids.slug(name), f"agent-{ids.short_hash(name)}")


def test_ids_that_are_already_ids_stay_verbatim() -> None:
    assert ids.hf_model_id("google/vit-base-patch16-224") == "hf:google/vit-base-patch16-224"
    assert ids.openlineage_dataset_id("s3://bucket", "pets/v1.2", "kgraft") == "s3://bucket/pets/v1.2"
    assert ids.openlineage_dataset_id("kgraft", "oxford-pets", "kgraft") == "oxford-pets"
    assert ids.run_id("timm.resnet18", "oxford-pets@v2", "T") == "run:timm-resnet18->oxford-pets-v2:T"


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_name_is_refused(blank: str) -> None:
    with pytest.raises(InvalidRecord, match="needs a name"):
        ids.dataset_id(blank)


def _croissant(tmp_path: Path, name: str) -> Path:
    """The LeafScan fixture under another name (its creators, biases and classes come along)."""
    doc = json.loads((CROISSANT / "leafscan-1.0.json").read_text())
    doc["name"] = name
    path = tmp_path / "pets.json"
    path.write_text(json.dumps(doc))
    return path


def _transfergraph(tmp_path: Path, target: str) -> Path:
    """Two Hugging Face models pretrained on ImageNet and fine-tuned on ``target``."""
    folder = tmp_path / "tg"
    folder.mkdir()
    with (folder / "model_config_dataset.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "architectures", "dataset", "#labels", "accuracy", "model_type",
                    "number_of_parameters"])  # fmt: skip
        w.writerow(["acme/vit-tiny", "['ViTForImageClassification']", "imagenet", 1000, 0.75, "vit", 5.7e6])
        w.writerow(
            ["acme/resnet18", "['ResNetForImageClassification']", "imagenet", 1000, 0.7, "resnet", 1.2e7]
        )
    with (folder / "target_dataset_features.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["target_dataset", "size", "number_of_classes"], [target, 1797, 10]])
    with (folder / "records.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["", "model", "finetuned_dataset", "epochs", "batch_size", "lr", "train_slice", "test_accuracy"]
        )
        w.writerow([0, "acme/vit-tiny", target, 20, 32, 0.001, ":0.7", 0.91])
        w.writerow([1, "acme/resnet18", target, 20, 32, 0.001, ":0.7", 0.84])
    return folder


def test_one_name_three_importers_one_node(store: GraphStore, tmp_path: Path) -> None:
    """``kgraft dataset add digits --name "Oxford Pets"``, a Croissant file named "Oxford Pets" and
    TransferGraph records of ``oxford_pets`` describe one dataset, and the graph holds one node."""
    digits = load_dataset("digits")
    digits.name = "Oxford Pets"
    registered = register_dataset(store, digits)
    assert registered.id == "oxford-pets"

    croissant = _croissant(tmp_path, "Oxford Pets")
    store.apply(import_croissant(croissant, store=store))
    folder = _transfergraph(tmp_path, "oxford_pets")
    store.apply(transfergraph_batch(folder, store))

    assert sorted(n["id"] for n in store.nodes(D)) == ["imagenet", "oxford-pets"]
    node = store.node(D, "oxford-pets")
    assert node["checksum"] == registered.profile["checksum"]
    assert node["source"] == "digits"  # the importers did not take over the loader spec ...
    assert node["license"] == "cc-by-4.0" and node["description"].startswith("Close-up")  # ... added theirs
    assert materialise(store, "oxford-pets").labels.shape == digits.labels.shape
    outcomes = store.query(
        f"MATCH (m:{M})-[r:{Rel.TRANSFERRED_TO}]->(d:{D}) RETURN m.id AS model, d.id AS d ORDER BY model"
    )
    assert outcomes == [
        {"model": "hf:acme/resnet18", "d": "oxford-pets"},
        {"model": "hf:acme/vit-tiny", "d": "oxford-pets"},
    ]
    agents = {n["id"] for n in store.nodes(G)}
    assert "agent:ada-okafor" in agents

    # again, in the other order of spelling: nothing new
    again = store.apply(transfergraph_batch(folder, store))
    again_croissant = store.apply(import_croissant(croissant, store=store))
    assert again.nodes_created == again.edges_created == 0
    assert again_croissant.nodes_created == again_croissant.edges_created == 0
    assert register_dataset(store, digits).created is False

    # a run recorded elsewhere under another spelling of the name finds the node too
    run = track.start(store, source="acme/vit-tiny", target="OXFORD_PETS")
    assert run.target_id == "oxford-pets"
    run.fail("stopped by the test")

    # so does every command that takes a name (store.resolve), while a name that is nothing like it
    # still gets the closest names
    assert store.resolve("OXFORD_PETS") == (D, "oxford-pets")
    assert store.resolve("oxford pets", (D,)) == (D, "oxford-pets")
    with pytest.raises(NotFound, match="Closest: oxford-pets"):
        store.resolve("oxford-pest", (D,))


def _old_store(store: GraphStore) -> None:
    """What an older kgraft wrote: a registered ``my_photos``, TransferGraph's ``transfergraph:oxford_pets``
    with one outcome, Croissant's bare agent id and an underscore label concept."""
    b = GraphBatch()
    b.node(D, "transfergraph:oxford_pets", name="oxford_pets", source="transfergraph", n_samples=1797)
    b.node(M, "hf:acme/vit-tiny", name="acme/vit-tiny", source="transfergraph")
    old_target = (D, "transfergraph:oxford_pets")
    b.edge(Rel.TRANSFERRED_TO, (M, "hf:acme/vit-tiny"), old_target, activity="transfergraph:0", accuracy=0.91)
    b.node(G, "ada-okafor", name="Ada Okafor", kind="person")
    b.node(G, "agent:ada@example.org", name="ada@example.org", kind="person")
    store.apply(b)


def test_an_old_store_keeps_its_ids(store: GraphStore, tmp_path: Path) -> None:
    _old_store(store)
    digits = load_dataset("digits")
    digits.name = "my_photos"
    old = register_dataset(store, digits, id="my_photos", agent="ada@example.org")  # as the old rule named it
    before = (store.count(D), store.count(G), store.count(M))

    # today's rule would say my-photos / oxford-pets / agent:ada-okafor; the store's nodes are kept
    assert register_dataset(store, digits, agent="ada@example.org").id == old.id == "my_photos"
    store.apply(transfergraph_batch(_transfergraph(tmp_path, "oxford_pets"), store))
    store.apply(import_croissant(_croissant(tmp_path, "LeafScan_Mini"), store=store))
    assert store.count(D) == before[0] + 2  # imagenet and the Croissant dataset, nothing twice
    assert store.count(G) == before[1] + 2  # Bo Lindqvist and Field Robotics Lab; Ada is the old node
    edges = store.query(
        f"MATCH (:{M})-[r:{Rel.TRANSFERRED_TO}]->(d:{D}) RETURN d.id AS target, count(r) AS n ORDER BY target"
    )
    assert edges == [{"target": "transfergraph:oxford_pets", "n": 2}]  # the re-import joined the old node
    creators = store.query(
        f"MATCH (d:{D})-[:{Rel.ATTRIBUTED_TO}]->(a:{G}) WHERE d.id = $d RETURN a.id AS id ORDER BY id",
        {"d": "leafscan-mini"},
    )
    assert creators[0] == {"id": "ada-okafor"}


def test_a_class_name_keeps_its_old_concept_id(store: GraphStore) -> None:
    """A dataset-defined concept written as ``label:zorblax_quux`` by an older version is reused when
    the same class name is registered again (today's id would be ``label:zorblax-quux``)."""
    from kg.wordnet import WordNet

    b = GraphBatch()
    b.node(C, "label:zorblax_quux", name="zorblax quux", source="dataset")
    store.apply(b)
    digits = load_dataset("digits")
    digits.name = "leaves"
    digits.class_names = ["zorblax quux", *digits.class_names[1:]]
    register_dataset(store, digits, wordnet=WordNet.load())
    linked = store.query(
        f"MATCH (d:{D})-[r:{Rel.HAS_CLASS}]->(c:{C}) WHERE d.id = $d AND r.class_index = 0 RETURN c.id AS id",
        {"d": "leaves"},
    )
    assert linked == [{"id": "label:zorblax_quux"}]
    assert store.node(C, "label:zorblax-quux") is None
