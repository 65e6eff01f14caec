"""``kgraft demo``: from an empty store to a finished loop on bundled real data.

Register the bundled datasets (Fashion-MNIST, Animal-MNIST, scikit-learn digits) with their profiles,
WordNet concepts, domains and known biases; derive controlled variants (rotation, inversion, blur,
class subset, class imbalance) with lineage; pretrain a small-CNN zoo on five of them and record it
beside ccexam's published MNIST/USPS/SVHN models; probe; train the GNN scorer (if none or stale); write
the suitability report for Animal-MNIST; fine-tune the report's source with ``auto`` settings and
record the run; retrain the scorer on the new outcome; answer lineage and bias queries.
``run_demo`` does all of it: ``register_demo`` (``register_demo_data``, then ``build_zoo``; also
``kgraft zoo build``), then ``run_demo_loop``.

Rerunning is fast and idempotent: identical content is recognised by checksum and updated in place,
the zoo is cached, an up-to-date scorer is reused and a finished auto run on the target is reused (the
report is written again on that pair). ``DemoOptions(small=True)`` (``demo --small``) pretrains two zoo
models, probes once on fewer samples and fine-tunes for one epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gnn.train import latest_scorer
from kg import GraphStore
from kg.lineage import Reach, ancestors, biases_reaching
from kg.wordnet import WordNet
from ontology.vocab import Label
from transfer.data.base import ImageDataset
from transfer.data.derive import derive, describe_bias
from transfer.data.sources import load_dataset
from transfer.loop import default_run_dir, ensure_scorer, plan, run
from transfer.probe.run import probe
from transfer.register import register_dataset
from transfer.report import write_report
from transfer.zoo.registration import build_and_register_demo_zoo, register_ccexam

HINTS = {  # WordNet senses to prefer when mapping each dataset's class names
    "fashion-mnist": ("clothing.n.01", "artifact.n.01"),
    "animal-mnist": "animal.n.01",
    "digits": "digit.n.01",
}

DEMO_AGENT = "kgraft demo"

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
class DemoData:
    """The demo's registered data and zoo: what ``register_demo_data`` and ``build_zoo`` did."""

    datasets: dict[str, str] = field(default_factory=dict)  # name -> id
    lineage: list[Reach] = field(default_factory=list)
    biases: list[Reach] = field(default_factory=list)
    lineage_of: str = ""
    notes: list[str] = field(default_factory=list)
    loaded: dict[str, ImageDataset] = field(default_factory=dict, repr=False)
    models: list[str] = field(default_factory=list)


def register_demo_data(store: GraphStore, step: Callable[[str], None] = lambda _: None) -> DemoData:
    """Register the bundled datasets and their derived variants with lineage and biases."""
    result = DemoData()
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
            agent=DEMO_AGENT,
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
            store, ds, derived_from=result.datasets[parent], biases=biases, agent=DEMO_AGENT
        )
        result.datasets[name] = reg.id
    result.loaded = {result.datasets[name]: ds for name, ds in loaded.items()}
    target = result.datasets["fashion-mnist-imbalanced-small"]
    result.lineage_of = target
    result.lineage = ancestors(store, Label.DATASET, target)
    result.biases = biases_reaching(store, Label.DATASET, target)
    return result


ZOO_SOURCES = ["fashion-mnist", "animal-mnist", "digits", "fashion-mnist-rot90", "fashion-mnist-imbalanced"]
SMALL_ZOO_SOURCES = ["fashion-mnist", "digits"]


def build_zoo(
    store: GraphStore,
    result: DemoData,
    out_dir: Path,
    progress: Callable[[str, int, int], None] | None = None,
    sources: list[str] | None = None,
) -> list[str]:
    """Pretrain the demo zoo on the registered data (cached) and record it, with ccexam's models.

    ``sources`` names the datasets to pretrain on (default ``ZOO_SOURCES``)."""
    names = ZOO_SOURCES if sources is None else sources
    datasets = {result.datasets[name]: result.loaded[result.datasets[name]] for name in names}
    records = build_and_register_demo_zoo(store, datasets, out_dir, progress=progress)
    records += register_ccexam(store)
    result.models = [r.id for r in records]
    return result.models


DEMO_SOURCE_DATA = "fashion-mnist"
DEMO_PROBES = ["fashion-mnist-rot90", "fashion-mnist-tops", "animal-mnist"]
DEMO_TARGET = "animal-mnist"


@dataclass(frozen=True)
class DemoOptions:
    """How much work the loop does: the full demo, or ``small`` (fewer probes, samples and epochs)."""

    small: bool = False

    @property
    def probes(self) -> list[str]:
        """Targets the Fashion-MNIST source is probed on before the report."""
        return [DEMO_TARGET] if self.small else DEMO_PROBES

    @property
    def probe_samples(self) -> int:
        return 200 if self.small else 500

    @property
    def epochs(self) -> int:
        return 1 if self.small else 2

    @property
    def zoo_sources(self) -> list[str]:
        return SMALL_ZOO_SOURCES if self.small else ZOO_SOURCES


@dataclass
class DemoLoop:
    """What the demo did after the zoo: probes, scorer, report, fine-tuning run, what the scorer learned."""

    source: str
    probes: list = field(default_factory=list)
    run: dict | None = None
    reused_run: bool = False
    scorer: str = ""
    scorer_trained: str | None = None
    """Why the scorer was trained before the report (``None``: an up-to-date one was reused)."""
    choice: Any = None
    """``transfer.source_choice.SourceChoice`` of the target, from the loop's plan."""
    report_dir: Path | None = None
    decisions: list = field(default_factory=list)
    learned: str | None = None
    """The scorer retrained on the new outcome, when a new run was recorded."""
    tuned_model: str | None = None
    lineage: list[Reach] = field(default_factory=list)


def _finished_auto_run(store: GraphStore, target: str) -> dict | None:
    """The newest finished auto run on ``target``, or ``None``."""
    rows = store.query(
        "MATCH (s:Model)-[t:TRANSFERRED_TO]->(:Dataset {id: $d}) WHERE t.preset = $p "
        "RETURN s.id AS source, t.accuracy AS accuracy, t.forgetting AS forgetting, t.activity AS run_id "
        "ORDER BY run_id DESC LIMIT 1",
        {"d": target, "p": "auto"},
    )
    return rows[0] if rows else None


def run_demo_loop(
    store: GraphStore,
    out_dir: Path,
    options: DemoOptions = DemoOptions(),
    step: Callable[[str], None] = lambda _: None,
) -> DemoLoop:
    """The demo after the zoo: probe, train the scorer if none or stale, plan the demo target
    (``transfer.loop.plan``), write the plan's report, run the plan (fine-tune the chosen source with
    auto settings, record it, let the scorer learn from the new outcome). A finished auto run on the
    target is reused, so reruns stay fast and leave the graph as it was. ``out_dir`` (``.kgraft``)
    receives probes, scorers, reports and runs."""
    (row,) = store.query(
        "MATCH (m:Model)-[:TRAINED_ON]->(:Dataset {id: $d}) WHERE m.kind = $kind AND m.source = $src "
        "RETURN m.id AS id LIMIT 1",
        {"d": DEMO_SOURCE_DATA, "kind": "classifier", "src": "kgraft-demo"},
    )
    loop = DemoLoop(row["id"])
    for target in options.probes:
        step(f"probe {loop.source} on {target}")
        loop.probes.append(
            probe(store, loop.source, target, n=options.probe_samples, out_dir=out_dir / "probes")
        )
    step("GNN scorer")
    loop.scorer, loop.scorer_trained = ensure_scorer(store, out_dir / "scorers")
    step(f"report for {DEMO_TARGET}")
    done = _finished_auto_run(store, DEMO_TARGET)
    the_plan = plan(
        store,
        DEMO_TARGET,
        done["source"] if done else "auto",  # report again on the pair already fine-tuned
        "auto",
        probe_missing=done is None,
        epochs=options.epochs,
        work_dir=out_dir / "probes",
    )
    loop.choice = the_plan.choice
    loop.report_dir = out_dir / "reports" / DEMO_TARGET
    write_report(store, DEMO_TARGET, out_dir=loop.report_dir, plan=the_plan)
    if done:
        loop.source, loop.run, loop.reused_run = done["source"], done, True
    else:
        loop.source, loop.decisions = the_plan.source_id, list(the_plan.decisions)
        step(f"fine-tune {loop.source} on {DEMO_TARGET} (auto settings, {options.epochs} epochs)")
        result = run(
            the_plan,
            out_dir=out_dir / "runs" / default_run_dir(the_plan).name,
            retrain_scorer=out_dir / "scorers",
            step=step,
        )
        summary = result.summary()
        loop.run = {k: summary.get(k) for k in ("accuracy", "forgetting", "run_id")}
        learned = latest_scorer(store)
        loop.learned = learned.id if learned is not None and learned.id != loop.scorer else None
    tuned = store.query(
        "MATCH (m:Model)-[:GENERATED_BY]->(:Activity {id: $run}) RETURN m.id AS id",
        {"run": loop.run["run_id"]},
    )
    if tuned:
        loop.tuned_model = tuned[0]["id"]
        loop.lineage = ancestors(store, Label.MODEL, loop.tuned_model)
    return loop


@dataclass
class DemoRun:
    """What ``run_demo`` did: the data and zoo it registered, and the loop on the demo target."""

    data: DemoData
    loop: DemoLoop
    store_uri: str
    target: str = DEMO_TARGET


def register_demo(
    store: GraphStore,
    zoo_dir: Path,
    *,
    sources: list[str] | None = None,
    step: Callable[[str], None] = lambda _: None,
    zoo_progress: Callable[[str, int, int], None] | None = None,
) -> DemoData:
    """Register and derive the bundled data, then pretrain the zoo on ``sources`` (default
    ``ZOO_SOURCES``; checkpoints cached in ``zoo_dir``) and record it with ccexam's models
    (``kgraft zoo build``, and the first half of the demo)."""
    data = register_demo_data(store, step=step)
    build_zoo(store, data, zoo_dir, progress=zoo_progress, sources=sources)
    return data


def run_demo(
    store: GraphStore,
    zoo_dir: Path,
    options: DemoOptions = DemoOptions(),
    *,
    step: Callable[[str], None] = lambda _: None,
    zoo_progress: Callable[[str, int, int], None] | None = None,
) -> DemoRun:
    """The whole demo: ``register_demo`` (the zoo cached in ``zoo_dir``), then ``run_demo_loop`` with
    ``zoo_dir``'s parent (``.kgraft``) as its work folder."""
    data = register_demo(store, zoo_dir, sources=options.zoo_sources, step=step, zoo_progress=zoo_progress)
    loop = run_demo_loop(store, zoo_dir.parent, options, step=step)
    return DemoRun(data, loop, store.uri)
