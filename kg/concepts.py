"""Dataset class names as WordNet concepts, and how far apart two datasets' label sets are.

``map_class_names`` turns names such as ``"T-shirt/top"`` or ``"Ankle boot"`` into noun synsets;
``class_concepts_batch`` writes the result as ``HAS_CLASS`` edges plus the synsets' hypernym
closure, so the hierarchy up to ``entity.n.01`` is in the graph even without ``kgraft import
wordnet``; ``label_overlap`` then asks the graph what two datasets' classes share.

How a class name is matched (the first tier that yields any synset wins):

1. **the name itself** (how ``"exact"``): case-insensitive, spaces and underscores alike,
   plurals through WordNet's morphy (``"Trousers"`` -> trouser); also tried with hyphens as spaces
   and the other way round (``"T shirt"`` -> ``t-shirt``) and with camelCase split
   (``"AnkleBoot"``). A synset id (``n02084071``, as ImageNet folders are named, or
   ``wn:n02084071``) or name (``dog.n.01``) is taken as given (how ``"synset id"``).
2. **its parts**, where the name lists alternatives split by ``/``, ``,``, ``&`` or `` or ``
   (how ``"part 'T-shirt'"``), in order.
3. **head nouns**: the last word of the name or of each part (how ``"head noun 'boot'"`` for
   ``"Ankle boot"``, which WordNet lacks as a compound).

Within the tier, the sense is the first (most frequent) one whose hypernyms include the ``hint``
synset (``animal.n.01``; several hints are tried in order, e.g. ``("clothing.n.01",
"artifact.n.01")``), reported as ``"...; hint animal.n.01"``; else the first sense of the first
candidate, reported as ``"...; first sense"``. A name with no synset is ``"unmapped"``.

Digits need no rule: WordNet 3.0 lists ``"0"`` .. ``"9"`` as lemmas of the numeral synsets under
``digit.n.01`` (``"0"`` -> zero.n.02, ``"1"`` -> one.n.01, ... ``"9"`` -> nine.n.01), so MNIST's
class names map exactly, with or without ``hint="digit.n.01"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kg.batch import GraphBatch
from kg.errors import InvalidRecord, NotFound
from kg.ids import concept_id
from kg.store import GraphStore
from kg.wordnet import Synset, SynsetRef, WordNet, add_synset_closure
from ontology.vocab import Label, Rel

Hint = SynsetRef | Sequence[SynsetRef] | None
"""One synset (or several, tried in order) whose descendants a mapping prefers."""

_SYNSET_ID = re.compile(r"^(?:wn:)?n(\d{8})$")
_SYNSET_NAME = re.compile(r"^[^.\s]+\.n\.\d{2}$")
_ALTERNATIVES = re.compile(r"\s*(?:/|,|&|\bor\b)\s*")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@dataclass(frozen=True)
class ConceptMatch:
    """Where one class name landed: a synset (id ``wn:n...``, name ``dog.n.01``) or ``None``."""

    class_name: str
    synset_id: str | None
    synset_name: str | None
    how: str

    @property
    def mapped(self) -> bool:
        """Whether a synset was found."""
        return self.synset_id is not None


def map_class_names(names: Sequence[str], wordnet: WordNet, hint: Hint = None) -> list[ConceptMatch]:
    """Map each class name to a noun synset (see the module docstring for the rules)."""
    hints = _hints(wordnet, hint)
    return [_map_one(name, wordnet, hints) for name in names]


def _hints(wordnet: WordNet, hint: Hint) -> list[Synset]:
    if hint is None:
        return []
    refs = [hint] if isinstance(hint, str | int | Synset) else list(hint)
    return [wordnet.synset(ref) for ref in refs]


def _map_one(name: str, wordnet: WordNet, hints: list[Synset]) -> ConceptMatch:
    text = " ".join(str(name).split())
    direct = _direct_synset(text, wordnet)
    if direct is not None:
        return ConceptMatch(name, direct.id, direct.name, "synset id")
    for tier in _candidate_tiers(text):
        senses = [(how, s) for how, word in tier for s in wordnet.synsets(word)]
        if not senses:
            continue
        for h in hints:
            for how, s in senses:
                if wordnet.is_a(s, h):
                    return ConceptMatch(name, s.id, s.name, f"{how}; hint {h.name}")
        how, s = senses[0]
        note = f"first sense (none under {', '.join(h.name for h in hints)})" if hints else "first sense"
        return ConceptMatch(name, s.id, s.name, f"{how}; {note}")
    return ConceptMatch(name, None, None, "unmapped")


def _direct_synset(text: str, wordnet: WordNet) -> Synset | None:
    m = _SYNSET_ID.match(text)
    try:
        if m:
            return wordnet.synset(int(m.group(1)))
        if _SYNSET_NAME.match(text):
            return wordnet.synset(text)
    except NotFound:
        return None
    return None


def _variants(text: str) -> list[str]:
    """Spellings of one name to look up as a whole (see rule 1)."""
    out = [text, text.replace("-", " "), re.sub(r"[\s_]+", "-", text), _CAMEL.sub(" ", text)]
    return list(dict.fromkeys(v for v in out if v.strip()))


def _candidate_tiers(text: str) -> list[list[tuple[str, str]]]:
    """(how, word) candidates in tiers: the whole name, its parts, head nouns."""
    parts = [p for p in _ALTERNATIVES.split(text) if p.strip()]
    whole = [("exact", v) for v in _variants(text)]
    split = [(f"part {p!r}", v) for p in parts for v in _variants(p)] if len(parts) > 1 else []
    heads: list[tuple[str, str]] = []
    for p in parts:
        words = re.split(r"[\s_\-]+", _CAMEL.sub(" ", p).strip())
        if len(words) > 1 and words[-1]:
            heads.append((f"head noun {words[-1]!r}", words[-1]))
    return [tier for tier in (whole, split, heads) if tier]


# -- the graph ---------------------------------------------------------------------------------
def class_concepts_batch(
    dataset_id: str,
    class_names: Sequence[str],
    counts: Sequence[int] | Mapping[str, int] | None,
    wordnet: WordNet,
    hint: Hint = None,
) -> tuple[GraphBatch, list[str]]:
    """``HAS_CLASS`` edges from a dataset to its class concepts, and the concepts' hierarchy.

    Each mapped class links to its synset's ``Concept``, written with every hypernym above it and
    the ``IS_A`` edges between them. An unmapped class becomes a concept of its own (id
    ``label:{slug}``, source ``"dataset"``, name the class name) and is returned for reporting. If
    two classes of the dataset land on one synset, the second gets its own ``label:{slug}`` concept
    ``IS_A`` that synset, so both keep their edge. The edge carries ``label`` (the class name),
    ``class_index`` (its position) and ``count`` (from ``counts``, by position or by name).

    The dataset node itself is not in the batch: add it, or have it in the store already.
    """
    if isinstance(counts, Mapping):
        count_of = [counts.get(name) for name in class_names]
    elif counts is None:
        count_of = [None] * len(class_names)
    else:
        if len(counts) != len(class_names):
            raise InvalidRecord(
                f"dataset {dataset_id!r} has {len(class_names)} class names but {len(counts)} counts."
            )
        count_of = list(counts)
    batch = GraphBatch()
    unmapped: list[str] = []
    taken: set[str] = set()
    matches = map_class_names(class_names, wordnet, hint)
    for index, (name, match) in enumerate(zip(class_names, matches, strict=True)):
        if match.synset_id is not None:
            target = add_synset_closure(batch, wordnet, match.synset_id)
            if target in taken:
                synset = wordnet.synset(target)
                target = _label_concept(batch, name, taken, depth=wordnet.depth(synset) + 1)
                batch.edge(Rel.IS_A, (Label.CONCEPT, target), (Label.CONCEPT, synset.id))
        else:
            target = _label_concept(batch, name, taken)
            unmapped.append(name)
        taken.add(target)
        batch.edge(
            Rel.HAS_CLASS,
            (Label.DATASET, dataset_id),
            (Label.CONCEPT, target),
            label=name,
            class_index=index,
            count=count_of[index],
        )
    return batch, unmapped


def _label_concept(batch: GraphBatch, name: str, taken: set[str], depth: int | None = None) -> str:
    base = concept_id(name)
    node_id, n = base, 1
    while node_id in taken:  # two class names with one slug in the same dataset
        n += 1
        node_id = f"{base}-{n}"
    return batch.node(Label.CONCEPT, node_id, name=name, source="dataset", depth=depth)


# -- asking the graph ----------------------------------------------------------------------------
_DATASETS = "MATCH (d:Dataset) WHERE d.id = $a OR d.id = $b RETURN d.id AS id"

_SHARED_CONCEPTS = """
MATCH (a:Dataset)-[:HAS_CLASS]->(c:Concept)<-[:HAS_CLASS]-(b:Dataset)
WHERE a.id = $a AND b.id = $b
RETURN DISTINCT c.id AS id, c.name AS name
ORDER BY id
"""

_SHARED_ANCESTORS = """
MATCH (a:Dataset)-[:HAS_CLASS]->(:Concept)-[:IS_A*1..20]->(x:Concept)
WHERE a.id = $a
WITH DISTINCT x
MATCH (b:Dataset)-[:HAS_CLASS]->(:Concept)-[:IS_A*1..20]->(x)
WHERE b.id = $b
RETURN DISTINCT x.id AS id, x.name AS name, x.depth AS depth
ORDER BY depth DESC, id
"""

# Every class concept of either dataset with each concept at or above it: its stored depth and the
# fewest IS_A steps up to it. Linear in classes x ancestors; the pairing happens in Python.
_CLASS_ANCESTORS = """
MATCH (d:Dataset)-[r:HAS_CLASS]->(c:Concept)
WHERE d.id = $a OR d.id = $b
MATCH p = (c)-[:IS_A*0..20]->(x:Concept)
RETURN d.id AS dataset, r.label AS label, r.class_index AS class_index, c.id AS concept,
       x.id AS ancestor, x.depth AS depth, min(length(p)) AS steps
"""


def label_overlap(store: GraphStore, dataset_a: str, dataset_b: str) -> dict[str, Any]:
    """What the class labels of two datasets share, answered from the graph.

    Returns a dict with:

    - ``shared_concepts``: concepts both datasets have as classes (``id``, ``name``);
    - ``shared_ancestors``: concepts above (``IS_A``, 1 to 20 steps) a class of each, deepest first
      (``id``, ``name``, ``depth``);
    - ``mean_best_wup``: the mean, over every class of both datasets, of its best Wu-Palmer
      similarity to a class of the other (``None`` if either has no classes);
    - ``best_matches``: per class (``dataset``, ``label``, ``concept``), its best ``match`` (the
      other dataset's class label) and ``wup``.

    Wu-Palmer from the graph: for concepts ``a`` and ``b`` the subsumer ``s`` is the common concept
    (at or above both) with the largest stored ``depth`` (ties: fewest steps); then
    ``wup = 2 (depth(s) + 1) / (steps(a, s) + steps(b, s) + 2 (depth(s) + 1))`` where ``steps``
    counts ``IS_A`` edges going up. This is ``WordNet.wup_similarity``'s formula with the stored
    (min) depth for NLTK's max depth and upward steps for NLTK's shortest path (which may go up and
    down again); the two agree where each concept has one path to ``s`` (dog/cat 0.857, dog/wolf
    0.929) and differ slightly elsewhere (bird/dog: 0.750 here, 0.783 in NLTK, whose path from
    dog.n.01 to vertebrate.n.01 runs up to animal.n.01 and back down). The same concept scores 1;
    concepts with no common ancestor of known depth (e.g. an unmapped ``label:`` concept) score 0.
    """
    params = {"a": dataset_a, "b": dataset_b}
    found = {r["id"] for r in store.query(_DATASETS, params)}
    for dataset in (dataset_a, dataset_b):
        if dataset not in found:
            raise NotFound(f"no dataset {dataset!r} in the graph.")
    shared_concepts = store.query(_SHARED_CONCEPTS, params)
    shared_ancestors = store.query(_SHARED_ANCESTORS, params)

    # dataset -> (class index, label) -> concept; concept -> ancestor -> (depth, steps up to it)
    classes: dict[str, dict[tuple[int, str], str]] = {dataset_a: {}, dataset_b: {}}
    above: dict[str, dict[str, tuple[int | None, int]]] = {}
    for row in store.query(_CLASS_ANCESTORS, params):
        classes[row["dataset"]][(row["class_index"] or 0, row["label"])] = row["concept"]
        above.setdefault(row["concept"], {})[row["ancestor"]] = (row["depth"], int(row["steps"]))

    best: list[dict[str, Any]] = []
    for this, other in ((dataset_a, dataset_b), (dataset_b, dataset_a)):
        others = sorted(classes[other].items())
        for (_index, label), concept in sorted(classes[this].items()):
            scored = [(_graph_wup(concept, c, above), lab) for (_i, lab), c in others]
            wup, match = max(scored, key=lambda t: t[0], default=(None, None))
            best.append({"dataset": this, "label": label, "concept": concept, "match": match, "wup": wup})
    complete = classes[dataset_a] and classes[dataset_b]
    return {
        "datasets": [dataset_a, dataset_b],
        "shared_concepts": shared_concepts,
        "shared_ancestors": shared_ancestors,
        "mean_best_wup": sum(b["wup"] for b in best) / len(best) if complete else None,
        "best_matches": best,
    }


def _graph_wup(a: str, b: str, above: dict[str, dict[str, tuple[int | None, int]]]) -> float:
    if a == b:
        return 1.0
    up_a, up_b = above.get(a, {}), above.get(b, {})
    common = [
        (up_a[x][0], up_a[x][1] + up_b[x][1]) for x in up_a.keys() & up_b.keys() if up_a[x][0] is not None
    ]
    if not common:
        return 0.0
    depth, steps = max(common, key=lambda t: (t[0], -t[1]))
    return 2.0 * (depth + 1) / (steps + 2.0 * (depth + 1))
