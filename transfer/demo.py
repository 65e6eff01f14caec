"""``kgraft demo``: from an empty embedded store to a recorded loop on bundled real data.

Steps so far: register the bundled datasets (Fashion-MNIST, Animal-MNIST, scikit-learn digits) with
their profiles, WordNet concepts, domains and known biases; derive controlled variants (rotation,
inversion, blur, class subset, class imbalance) with lineage; pretrain a small-CNN zoo on five of
them and record it beside ccexam's published MNIST/USPS/SVHN models; answer a lineage and a bias
query. Rerunning is
idempotent: identical content is recognised by checksum and only updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kg import GraphStore
from kg.lineage import Reach, ancestors, biases_reaching
from kg.wordnet import WordNet
from ontology.vocab import Label
from transfer.data.base import ImageDataset
from transfer.data.derive import derive, describe_bias
from transfer.data.sources import load_dataset
from transfer.register import register_dataset

HINTS = {  # WordNet senses to prefer when mapping each dataset's class names
    "fashion-mnist": ("clothing.n.01", "artifact.n.01"),
    "animal-mnist": "animal.n.01",
    "digits": "digit.n.01",
}

ROOTS = {
    # builtin name: (domain, known biases written by people who know the data)
    "fashion-mnist": (
        "product photos",
        [
            {
                "kind": "curation",
                "description": "Zalando catalogue photos: centred, white background, one product "
                "per image; little pose or lighting variety.",
                "severity": "medium",
            }
        ],
    ),
    "animal-mnist": (
        "silhouettes",
        [
            {
                "kind": "representation",
                "description": "ten animal classes drawn as silhouettes; no texture or colour cues.",
                "severity": "low",
            }
        ],
    ),
    "digits": (
        "handwriting",
        [
            {
                "kind": "sampling",
                "description": "8x8 digits from 43 writers (UCI); writers overlap between train and test.",
                "severity": "medium",
            }
        ],
    ),
}

# (new name, parent name, how, params): controlled, known domain shifts and biases.
VARIANTS = [
    ("fashion-mnist-rot90", "fashion-mnist", "rotate", {"degrees": 90}),
    ("fashion-mnist-rot90-blur", "fashion-mnist-rot90", "blur", {"sigma": 1.0}),
    ("fashion-mnist-inverted", "fashion-mnist", "invert", {}),
    (
        "fashion-mnist-tops",
        "fashion-mnist",
        "class_subset",
        {"classes": ["T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"]},
    ),
    ("fashion-mnist-imbalanced", "fashion-mnist", "imbalance", {"ratio": 10}),
    ("fashion-mnist-imbalanced-small", "fashion-mnist-imbalanced", "subset", {"fraction": 0.25}),
]


@dataclass
class DemoResult:
    """What the demo did, for the summary."""

    datasets: dict[str, str] = field(default_factory=dict)  # name -> id
    lineage: list[Reach] = field(default_factory=list)
    biases: list[Reach] = field(default_factory=list)
    lineage_of: str = ""
    notes: list[str] = field(default_factory=list)
    loaded: dict[str, ImageDataset] = field(default_factory=dict, repr=False)
    models: list[str] = field(default_factory=list)


def register_demo_data(store: GraphStore, step: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Register the bundled datasets and their derived variants with lineage and biases."""
    result = DemoResult()
    loaded: dict[str, ImageDataset] = {}
    step("read WordNet")
    wordnet = WordNet.load()
    for name, (domain, biases) in ROOTS.items():
        step(f"register {name}")
        ds = load_dataset(name)
        loaded[name] = ds
        reg = register_dataset(
            store,
            ds,
            domain=domain,
            biases=biases,
            agent="kgraft demo",
            wordnet=wordnet,
            concept_hint=HINTS[name],
        )
        result.datasets[name] = reg.id
        result.notes += reg.notes
    for name, parent, how, params in VARIANTS:
        step(f"derive {name} ({how})")
        ds = derive(loaded[parent], how, params, seed=0, name=name)
        loaded[name] = ds
        biases = [describe_bias(loaded[parent], ds)] if how == "imbalance" else []
        for bias in biases:
            bias.pop("ratio", None)
        reg = register_dataset(
            store, ds, derived_from=result.datasets[parent], biases=biases, agent="kgraft demo"
        )
        result.datasets[name] = reg.id
    result.loaded = {result.datasets[name]: ds for name, ds in loaded.items()}
    target = result.datasets["fashion-mnist-imbalanced-small"]
    result.lineage_of = target
    result.lineage = ancestors(store, Label.DATASET, target)
    result.biases = biases_reaching(store, Label.DATASET, target)
    return result


ZOO_SOURCES = ["fashion-mnist", "animal-mnist", "digits", "fashion-mnist-rot90", "fashion-mnist-imbalanced"]


def build_zoo(
    store: GraphStore,
    result: DemoResult,
    out_dir: Path,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[str]:
    """Pretrain the demo zoo on the registered data (cached) and record it, with ccexam's models."""
    from transfer.zoo_graph import build_and_register_demo_zoo, register_ccexam

    datasets = {result.datasets[name]: result.loaded[result.datasets[name]] for name in ZOO_SOURCES}
    records = build_and_register_demo_zoo(store, datasets, out_dir, progress=progress)
    records += register_ccexam(store)
    result.models = [r.id for r in records]
    return result.models


DEMO_SOURCE_DATA = "fashion-mnist"
DEMO_PROBES = ["fashion-mnist-rot90", "fashion-mnist-tops", "animal-mnist"]
DEMO_TARGET = "animal-mnist"


@dataclass
class LoopResult:
    """Probe and fine-tuning outcomes of the demo."""

    source: str
    probes: list = field(default_factory=list)
    run: dict | None = None
    reused_run: bool = False


def probe_and_finetune(
    store: GraphStore, out_dir: Path, step: Callable[[str], None] = lambda _: None, epochs: int = 2
) -> LoopResult:
    """Probe the Fashion-MNIST source on three targets, then fine-tune it on Animal-MNIST (fastai preset)
    and record the run; a finished run of the same pair and preset is reused, so reruns stay fast."""
    from ontology.vocab import Label
    from transfer.finetune.engine import finetune
    from transfer.finetune.settings import settings_for
    from transfer.probe.run import probe
    from transfer.register import materialise
    from transfer.zoo.record import ModelRecord

    (row,) = store.query(
        "MATCH (m:Model)-[:TRAINED_ON]->(:Dataset {id: $d}) WHERE m.kind = $kind RETURN m.id AS id LIMIT 1",
        {"d": DEMO_SOURCE_DATA, "kind": "classifier"},
    )
    loop = LoopResult(row["id"])
    for target in DEMO_PROBES:
        step(f"probe {loop.source} on {target}")
        loop.probes.append(probe(store, loop.source, target, n=500, out_dir=out_dir / "probes"))
    done = store.query(
        "MATCH (:Model {id: $s})-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) WHERE t.preset = $p "
        "RETURN t.accuracy AS accuracy, t.forgetting AS forgetting, t.activity AS run_id LIMIT 1",
        {"s": loop.source, "d": DEMO_TARGET, "p": "fastai"},
    )
    if done:
        loop.run, loop.reused_run = done[0], True
        return loop
    step(f"fine-tune {loop.source} on {DEMO_TARGET} (fastai preset, {epochs} epochs)")
    record = ModelRecord.from_properties(store.node(Label.MODEL, loop.source))
    result = finetune(
        record,
        materialise(store, DEMO_TARGET),
        settings_for("fastai", epochs=epochs),
        out_dir=out_dir / "runs" / "demo-fashion-to-animal",
        store=store,
        target_id=DEMO_TARGET,
        source_dataset=materialise(store, DEMO_SOURCE_DATA),
        source_dataset_id=DEMO_SOURCE_DATA,
    )
    summary = result.summary()
    loop.run = {k: summary.get(k) for k in ("accuracy", "forgetting", "run_id")}
    return loop
