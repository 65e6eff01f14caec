"""WordNet nouns from Debian's wordnet-base files, class-name mapping, and label overlap in the graph.

Expected values come from the WordNet 3.0 files themselves (counts, glosses, hypernym paths
written out below) and from hand computation over those paths, not from NLTK.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kg import open_store
from kg.concepts import class_concepts_batch, label_overlap, map_class_names
from kg.errors import InvalidRecord, NotFound
from kg.wordnet import DEFAULT_DICT_DIR, WordNet, to_batch
from ontology.vocab import Label

if not (Path(DEFAULT_DICT_DIR) / "data.noun").is_file() and os.environ.get("CI") != "true":
    pytest.skip("WordNet tests need Debian's wordnet-base (/usr/share/wordnet)", allow_module_level=True)

ANIMALS = ["Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep", "Zebra"]
FASHION = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# Root-first hypernym paths, read off data.noun by hand (the @ pointers of each synset in turn).
UP_TO_ORGANISM = ["entity", "physical_entity", "object", "whole.n.02", "living_thing", "organism"]
UP_TO_CARNIVORE = [*UP_TO_ORGANISM, "animal", "chordate", "vertebrate", "mammal", "placental", "carnivore"]
DOG_PATH = [*UP_TO_CARNIVORE, "canine.n.02", "dog"]
CAT_PATH = [*UP_TO_CARNIVORE, "feline", "cat"]
HORSE_PATH = [*UP_TO_CARNIVORE[:-1], "ungulate", "odd-toed_ungulate", "equine", "horse"]


def _names(short: list[str]) -> list[str]:
    return [s if ".n." in s else f"{s}.n.01" for s in short]


@pytest.fixture(scope="module")
def wn() -> WordNet:
    return WordNet.load()


# -- the parser ----------------------------------------------------------------------------------
def test_parser_counts_match_the_raw_file(wn: WordNet) -> None:
    lines = [
        line
        for line in (Path(DEFAULT_DICT_DIR) / "data.noun").read_text().splitlines()
        if not line.startswith("  ")
    ]
    tokens = [tok for line in lines for tok in line.split(" | ")[0].split()]
    assert len(wn) == len(lines) == 82_115
    assert [s.name for s in wn if not s.parents] == ["entity.n.01"]
    assert sum(len(s.hypernyms) for s in wn) == tokens.count("@") == 75_850
    assert sum(len(s.instance_hypernyms) for s in wn) == tokens.count("@i") == 8_577


def test_dog_by_hand(wn: WordNet) -> None:
    dog = wn.synset("dog.n.01")
    assert dog.id == "wn:n02084071" and wn.synset("wn:n02084071") is dog and wn.synset(2084071) is dog
    assert dog.gloss.startswith("a member of the genus Canis")
    assert dog.lemmas == ("dog", "domestic_dog", "Canis_familiaris")
    assert dog.lexname == "noun.animal"
    paths = [[s.name for s in p] for p in wn.hypernym_paths(dog)]
    assert paths == [_names(DOG_PATH), _names([*UP_TO_ORGANISM, "animal", "domestic_animal", "dog"])]
    assert wn.depth(dog) == 8 and wn.max_depth(dog) == 13  # the domestic_animal path is the short one
    assert wn.depth("entity.n.01") == 0
    # the name is the first lemma and its sense rank in index.noun
    assert wn.synsets("T-shirt")[0].name == "jersey.n.03"
    with pytest.raises(NotFound, match="no WordNet noun synset"):
        wn.synset("dog.n.99")


@pytest.mark.parametrize(
    ("word", "first"),
    [
        ("Mice", "mouse.n.01"),  # noun.exc
        ("Trousers", "trouser.n.01"),  # -s
        ("buses", "bus.n.01"),  # -ses -> -s
        ("wolves", "wolf.n.01"),  # noun.exc
        ("ladies", "lady.n.01"),  # -ies -> -y
        ("Polar Bear", "ice_bear.n.01"),  # spaces, case
        ("polar bears", "ice_bear.n.01"),  # a collocation's last word
    ],
)
def test_synsets_handle_case_spaces_and_plurals(wn: WordNet, word: str, first: str) -> None:
    assert wn.synsets(word)[0].name == first


def test_wu_palmer_by_hand(wn: WordNet) -> None:
    for name, path in (("dog.n.01", DOG_PATH), ("cat.n.01", CAT_PATH), ("horse.n.01", HORSE_PATH)):
        assert _names(path) in [[s.name for s in p] for p in wn.hypernym_paths(name)]
    assert wn.lowest_common_hypernyms("dog.n.01", "cat.n.01") == [wn.synset("carnivore.n.01")]
    assert wn.lowest_common_hypernyms("dog.n.01", "horse.n.01") == [wn.synset("placental.n.01")]
    # carnivore is node 12 of its only path (depth 11 -> D = 12); dog and cat are 2 below it.
    assert wn.max_depth("carnivore.n.01") == 11
    assert wn.wup_similarity("dog.n.01", "cat.n.01") == pytest.approx(2 * 12 / (2 + 2 + 2 * 12))
    assert wn.wup_similarity("dog.n.01", "cat.n.01") == pytest.approx(0.857142857)  # NLTK's value
    # placental: depth 10 -> D = 11; dog is 3 below it, horse 4.
    assert wn.wup_similarity("dog.n.01", "horse.n.01") == pytest.approx(2 * 11 / (3 + 4 + 2 * 11))
    assert wn.wup_similarity("horse.n.01", "dog.n.01") == pytest.approx(22 / 29)
    assert wn.wup_similarity("dog.n.01", "dog.n.01") == 1.0


def test_missing_or_malformed_dict_dir_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(InvalidRecord, match=r"not found under .*wordnet-base"):
        WordNet.load(tmp_path)
    (tmp_path / "data.noun").write_text("  licence header\n00001740 03 n zz entity 0 000 | gloss\n")
    (tmp_path / "index.noun").write_text("")
    (tmp_path / "noun.exc").write_text("")
    with pytest.raises(InvalidRecord, match="line 2 is not in the WordNet database format"):
        WordNet.load(tmp_path)


# -- class names -----------------------------------------------------------------------------------
def test_animal_classes_with_an_animal_hint(wn: WordNet) -> None:
    matches = map_class_names(ANIMALS, wn, hint="animal.n.01")
    assert [m.synset_name for m in matches] == [f"{n.lower()}.n.01" for n in ANIMALS]
    assert all(m.how == "exact; hint animal.n.01" for m in matches)
    assert all(wn.is_a(m.synset_id, "animal.n.01") for m in matches)
    assert wn.synset("cow.n.01").gloss.startswith("female of domestic cattle")
    # the hint picks a later sense when the first is not an animal: crane.n.01 is Hart Crane
    (crane,) = map_class_names(["Crane"], wn, hint="animal.n.01")
    assert crane.synset_name == "crane.n.05" and wn.synsets("crane")[0].name == "crane.n.01"


def test_fashion_classes_with_clothing_then_artifact(wn: WordNet) -> None:
    matches = map_class_names(FASHION, wn, hint=("clothing.n.01", "artifact.n.01"))
    got = {m.class_name: (m.synset_name, m.how) for m in matches}
    assert got == {
        "T-shirt/top": ("jersey.n.03", "part 'T-shirt'; hint clothing.n.01"),
        "Trouser": ("trouser.n.01", "exact; hint clothing.n.01"),
        "Pullover": ("pullover.n.01", "exact; hint clothing.n.01"),
        "Dress": ("dress.n.01", "exact; hint clothing.n.01"),
        "Coat": ("coat.n.01", "exact; hint clothing.n.01"),
        "Sandal": ("sandal.n.01", "exact; hint artifact.n.01"),  # footwear sits beside clothing
        "Shirt": ("shirt.n.01", "exact; hint clothing.n.01"),
        "Sneaker": ("gym_shoe.n.01", "exact; hint artifact.n.01"),
        "Bag": ("bag.n.01", "exact; hint artifact.n.01"),
        "Ankle boot": ("boot.n.01", "head noun 'boot'; hint artifact.n.01"),
    }


def test_digits_ids_and_unknown_names(wn: WordNet) -> None:
    digits = map_class_names([str(d) for d in range(10)], wn)
    assert [m.synset_name for m in digits[:3]] == ["zero.n.02", "one.n.01", "two.n.01"]
    assert all(wn.is_a(m.synset_id, "digit.n.01") for m in digits)
    imagenet, named, made_up = map_class_names(["n02084071", "dog.n.01", "Zorblax"], wn)
    assert (imagenet.synset_name, imagenet.how) == ("dog.n.01", "synset id")
    assert named.synset_id == "wn:n02084071"
    assert (made_up.synset_id, made_up.synset_name, made_up.how) == (None, None, "unmapped")


def test_class_concepts_batch_keeps_unmapped_and_closure(wn: WordNet) -> None:
    batch, unmapped = class_concepts_batch("zoo", ["Dog", "Zorblax"], [5, 7], wn, hint="animal.n.01")
    assert unmapped == ["Zorblax"]
    concepts = batch.nodes[Label.CONCEPT]
    assert concepts["label:zorblax"]["source"] == "dataset" and concepts["label:zorblax"]["name"] == "Zorblax"
    assert {wn.synset(n).id for n in _names(DOG_PATH)} <= set(concepts)
    assert concepts["wn:n02084071"]["depth"] == 8 and concepts["wn:n02084071"]["synset"] == "dog.n.01"
    with pytest.raises(InvalidRecord, match="2 class names but 1 counts"):
        class_concepts_batch("zoo", ["Dog", "Cat"], [1], wn)


# -- the graph -----------------------------------------------------------------------------------
def _graph_wup(wn: WordNet, a: str, b: str) -> float:
    """label_overlap's formula, recomputed from hypernym paths: deepest common node, upward steps."""
    if a == b:
        return 1.0

    def up(name: str) -> dict[str, int]:
        steps: dict[str, int] = {}
        for path in wn.hypernym_paths(name):
            for i, s in enumerate(path):
                steps[s.name] = min(steps.get(s.name, 99), len(path) - 1 - i)
        return steps

    ua, ub = up(a), up(b)
    depth, steps = max((wn.depth(x), -(ua[x] + ub[x])) for x in ua.keys() & ub.keys())
    return 2 * (depth + 1) / (-steps + 2 * (depth + 1))


def test_label_overlap_on_the_graph(store, wn: WordNet) -> None:
    batch, _ = class_concepts_batch("animals", ANIMALS, list(range(10, 20)), wn, hint="animal.n.01")
    batch.node(Label.DATASET, "animals", name="animals")
    pets, unmapped = class_concepts_batch("pets", ["Dog", "Wolf", "Zorblax"], None, wn, hint="animal.n.01")
    pets.node(Label.DATASET, "pets", name="pets")
    batch.merge(pets)
    store.apply(batch)
    assert unmapped == ["Zorblax"]

    edges = store.query(
        "MATCH (d:Dataset)-[r:HAS_CLASS]->(c:Concept) WHERE d.id = $d "
        "RETURN r.label AS label, r.class_index AS i, r.count AS n, c.synset AS synset ORDER BY i",
        {"d": "animals"},
    )
    assert [(e["label"], e["i"], e["n"]) for e in edges[:2]] == [("Bear", 0, 10), ("Bird", 1, 11)]
    assert edges[4]["synset"] == "dog.n.01"

    overlap = label_overlap(store, "animals", "pets")
    assert overlap["shared_concepts"] == [{"id": "wn:n02084071", "name": "dog.n.01"}]
    shared = [a["name"] for a in overlap["shared_ancestors"]]
    assert shared[0] == "canine.n.02"  # the deepest one first: Dog and Wolf are both canines
    assert {"carnivore.n.01", "mammal.n.01", "animal.n.01", "entity.n.01"} <= set(shared)
    assert "feline.n.01" not in shared

    best = {(b["dataset"], b["label"]): (b["match"], b["wup"]) for b in overlap["best_matches"]}
    assert best[("pets", "Dog")] == ("Dog", 1.0)
    assert best[("pets", "Wolf")] == ("Dog", pytest.approx(26 / 28))  # canine: D = 13, one step each
    assert best[("animals", "Cat")][1] == pytest.approx(24 / 28)  # carnivore: D = 12, two steps each
    assert best[("pets", "Zorblax")] == ("Bear", 0.0)
    synsets = {
        n: m.synset_name for n, m in zip(ANIMALS, map_class_names(ANIMALS, wn, "animal.n.01"), strict=True)
    }
    synsets |= {"Wolf": "wolf.n.01"}
    expected = [max(_graph_wup(wn, synsets[a], synsets[b]) for b in ("Dog", "Wolf")) for a in ANIMALS]
    expected += [1.0, 26 / 28, 0.0]  # Dog, Wolf, Zorblax against the animals
    assert overlap["mean_best_wup"] == pytest.approx(sum(expected) / len(expected))

    with pytest.raises(NotFound, match="no dataset 'nope'"):
        label_overlap(store, "animals", "nope")


def test_full_wordnet_import_into_the_embedded_store(tmp_path: Path, wn: WordNet) -> None:
    """LadybugDB only: the whole noun hierarchy (Neo4j takes about half a minute for the same)."""
    start = time.perf_counter()
    batch = to_batch(wn)
    with open_store(f"embedded:{tmp_path / 'graph.lbug'}") as store:
        stats = store.apply(batch)
        elapsed = time.perf_counter() - start
        assert stats.nodes_created == store.count(Label.CONCEPT) == 82_115
        is_a = store.query("MATCH (:Concept)-[r:IS_A]->(:Concept) RETURN count(r) AS c")[0]["c"]
        assert stats.edges_created == is_a == 75_850 + 8_577
        assert store.node(Label.CONCEPT, "wn:n02084071")["name"] == "dog.n.01"
        assert elapsed < 60, f"building and loading WordNet took {elapsed:.0f} s"
        # mapping a dataset afterwards adds only what is new: its own label concept and edges
        classes, _ = class_concepts_batch("pets", ["Dog", "Zorblax"], [1, 2], wn)
        classes.node(Label.DATASET, "pets", name="pets")
        again = store.apply(classes)
        assert (again.nodes_created, again.edges_created) == (2, 2)  # dataset, Zorblax; HAS_CLASS x2
