"""Recording datasets in the graph: profile, lineage (DERIVED_FROM + Activity), domain, biases, agent.

A derived dataset is recorded with the recipe that makes it (``source`` = parent id, ``extra.derivation``
= how, params, seed), so ``materialise`` can rebuild its images from the root loader at any time and
check them against the recorded checksum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kg import GraphBatch, GraphStore, ids
from kg.adopt import adopt, stored_dataset_id
from kg.clock import now
from kg.concepts import class_concepts_batch
from kg.errors import InvalidRecord, NotFound
from kg.wordnet import WordNet
from ontology.vocab import Label, Rel
from transfer.data.base import ImageDataset
from transfer.data.profile import profile_dataset
from transfer.zoo.record import ModelRecord

D, B, A, G, DOM = Label.DATASET, Label.BIAS, Label.ACTIVITY, Label.AGENT, Label.DOMAIN


def parse_bias(text: str) -> dict[str, str]:
    """``"kind: description"`` (the CLI's ``--bias``) as a bias record."""
    kind, sep, description = text.partition(":")
    if not sep or not kind.strip() or not description.strip():
        raise InvalidRecord(f"--bias takes 'kind: description', got {text!r}.")
    return {"kind": ids.name_key(kind.strip(), "bias"), "description": description.strip(), "source": "human"}


@dataclass
class DatasetRegistration:
    """What recording one dataset wrote (or would write)."""

    id: str
    profile: dict[str, Any]
    batch: GraphBatch
    created: bool = True
    notes: list[str] = field(default_factory=list)


_PROFILE_FIELDS = (
    "n_samples",
    "split_counts",
    "n_classes",
    "class_counts",
    "imbalance",
    "image_size",
    "channels",
    "mean",
    "std",
    "checksum",
    "modality",
)
"""The ``profile_dataset`` fields a Dataset node carries."""


def dataset_batch(
    ds: ImageDataset,
    id: str,
    *,
    profile: dict[str, Any] | None = None,
    version: str | None = None,
    parent: str | None = None,
    domain: str | None = None,
    biases: list[dict[str, Any]] = (),
    agent: str | None = None,
) -> tuple[GraphBatch, dict[str, Any]]:
    """The nodes and relationships recording ``ds`` under ``id`` (nothing is written here)."""
    profile = profile or profile_dataset(ds)
    b = GraphBatch()
    _add_dataset_node(b, ds, id, profile, version, parent)
    if parent and ds.derivation:
        _add_derivation(b, ds, id, parent, agent)
    elif parent:
        b.edge(Rel.DERIVED_FROM, (D, id), (D, parent), how="unspecified")
    domain = domain or ds.domain
    if domain:
        b.node(DOM, ids.domain_id(domain), name=domain)
        b.edge(Rel.IN_DOMAIN, (D, id), (DOM, ids.domain_id(domain)))
    for bias in biases:
        _add_bias(b, ds, id, bias)
    if agent:
        b.node(G, ids.agent_id(agent), name=agent, kind="person")
        b.edge(Rel.ATTRIBUTED_TO, (D, id), (G, ids.agent_id(agent)), role="registered-by")
    return b, profile


def _add_dataset_node(
    b: GraphBatch, ds: ImageDataset, id: str, profile: dict[str, Any], version: str | None, parent: str | None
) -> None:
    """The Dataset node: its profile, class and split names, and, for a derived dataset whose parent
    is known, the recipe (without the parent in the graph it could not be replayed)."""
    derived = bool(ds.derivation and parent)
    extra: dict[str, Any] = {"class_names": ds.class_names, "split_names": list(ds.split_names)}
    if derived:
        extra["derivation"] = ds.derivation
    if ds.skipped:
        extra["skipped_files"] = ds.skipped
    b.node(
        D,
        id,
        name=ds.name,
        version=version,
        source=parent if derived else ds.source,
        created=now(),
        extra=extra,
        **{k: profile[k] for k in _PROFILE_FIELDS},
    )


def _add_derivation(b: GraphBatch, ds: ImageDataset, id: str, parent: str, agent: str | None) -> None:
    """The preprocessing Activity that derived ``ds`` from ``parent``: DERIVED_FROM with the recipe,
    USED, GENERATED_BY, and ASSOCIATED_WITH the agent who ran it."""
    activity = f"derive:{id}"
    how = ds.derivation["how"]
    b.node(
        A,
        activity,
        name=f"derive {ds.name} ({how})",
        kind="preprocessing",
        status="finished",
        settings=ds.derivation,
        started=now(),
        ended=now(),
    )
    b.edge(Rel.DERIVED_FROM, (D, id), (D, parent), how=how, params=ds.derivation["params"], activity=activity)
    b.edge(Rel.USED, (A, activity), (D, parent), role="input")
    b.edge(Rel.GENERATED_BY, (D, id), (A, activity))
    if agent:
        b.edge(Rel.ASSOCIATED_WITH, (A, activity), (G, ids.agent_id(agent)), role="operator")


def _add_bias(b: GraphBatch, ds: ImageDataset, id: str, bias: dict[str, Any]) -> None:
    """One known bias of the dataset (a ``parse_bias`` record) as a Bias node with HAS_BIAS."""
    bias_id = ids.bias_id(id, bias["kind"])
    b.node(
        B,
        bias_id,
        name=f"{bias['kind']} in {ds.name}",
        kind=bias["kind"],
        description=bias.get("description"),
        severity=bias.get("severity", "unknown"),
        source=bias.get("source", "human"),
        created=now(),
    )
    b.edge(Rel.HAS_BIAS, (D, id), (B, bias_id))


def register_dataset(
    store: GraphStore,
    ds: ImageDataset,
    *,
    id: str | None = None,
    derived_from: str | None = None,
    domain: str | None = None,
    biases: list[dict[str, Any]] = (),
    agent: str | None = None,
    new_version: bool = False,
    wordnet: WordNet | None = None,
    concept_hint: str | tuple[str, ...] | None = None,
) -> DatasetRegistration:
    """Record ``ds`` in one transaction; re-registering identical content is a no-op update.

    A name that already exists with different content is refused, unless ``new_version``: then the
    data is recorded as ``ID@vN`` DERIVED_FROM the previous version. With ``wordnet``, class names are
    mapped to noun synsets (preferring senses under ``concept_hint``) and recorded as HAS_CLASS with
    their IS_A hierarchy; names with no synset become their own Concept and are listed in ``notes``.
    """
    id = id or stored_dataset_id(store, ds.name)
    profile = profile_dataset(ds)
    parent = derived_from
    version = None
    notes = []
    if derived_from is not None:
        parent = store.resolve(derived_from, (D,))[1]
    existing = store.node(D, id)
    if existing and existing.get("checksum") not in (None, profile["checksum"]):
        if not new_version:
            raise InvalidRecord(
                f"dataset {id!r} already exists with different content; pass --new-version to record a new "
                "version derived from it."
            )
        n = 2
        while store.node(D, f"{id}@v{n}") is not None:
            n += 1
        previous = id if n == 2 else f"{id}@v{n - 1}"
        id, version, parent = f"{id}@v{n}", str(n), parent or previous
        notes.append(f"recorded as version {n} of {previous}")
    batch, profile = dataset_batch(
        ds, id, profile=profile, version=version, parent=parent, domain=domain, biases=biases, agent=agent
    )
    if version and not ds.derivation:
        batch.edge(Rel.DERIVED_FROM, (D, id), (D, previous), how="new-version")
    if wordnet is not None:
        counts = [profile["class_counts"].get(c, 0) for c in ds.class_names]
        concepts, unmapped = class_concepts_batch(id, ds.class_names, counts, wordnet, hint=concept_hint)
        batch.merge(concepts)
        if unmapped:
            notes.append(f"no WordNet synset for {len(unmapped)} class name(s): {', '.join(unmapped)}")
    store.apply(adopt(store, batch, "register"))
    return DatasetRegistration(
        id, profile, batch, created=existing is None or version is not None, notes=notes
    )


def dataset_recipe(store: GraphStore, dataset_id: str) -> list[dict[str, Any]]:
    """The chain of loads and derivations that rebuilds ``dataset_id``: root source first."""
    chain: list[dict[str, Any]] = []
    current = dataset_id
    for _ in range(64):
        node = store.node(D, current)
        if node is None:
            raise NotFound(f"no dataset {current!r} in the graph.")
        derivation = (node.get("extra") or {}).get("derivation")
        if not derivation:
            chain.append({"source": node.get("source"), "id": current, "name": node.get("name")})
            return chain[::-1]
        chain.append({"derivation": derivation, "id": current, "name": node.get("name")})
        current = node["source"]
    raise InvalidRecord(f"the derivation chain of {dataset_id!r} is longer than 64 steps.")


def materialise(store: GraphStore, dataset_id: str) -> ImageDataset:
    """Rebuild a registered dataset's images from its recipe and check them against its checksum."""
    from transfer.data.derive import derive
    from transfer.data.profile import checksum
    from transfer.data.sources import load_dataset

    recipe = dataset_recipe(store, dataset_id)
    root = recipe[0]
    if not root.get("source"):
        raise InvalidRecord(f"dataset {root['id']!r} has no source to load its images from.")
    ds = load_dataset(root["source"])
    ds.name = root["name"]
    for step in recipe[1:]:
        d = step["derivation"]
        ds = derive(ds, d["how"], d.get("params"), seed=d.get("seed", 0), name=step["name"])
    expected = store.node(D, dataset_id).get("checksum")
    if expected and checksum(ds) != expected:
        raise InvalidRecord(
            f"the images rebuilt for {dataset_id!r} do not match its recorded checksum; its source changed."
        )
    return ds


def model_batch(
    record: ModelRecord,
    *,
    pretrained_on: str | None = None,
    training: dict[str, Any] | None = None,
    agent: str | None = None,
) -> GraphBatch:
    """The Model node of ``record`` (its full preprocessing and layer groups), TRAINED_ON its pretraining
    dataset, and, when ``training`` (settings and metrics) is given, the pretraining Activity."""
    b = GraphBatch()
    props = record.to_properties()
    model_id = props.pop("id")
    props.setdefault("created", now())
    b.node(Label.MODEL, model_id, **props)
    if pretrained_on:
        b.edge(Rel.TRAINED_ON, (Label.MODEL, model_id), (D, pretrained_on), split="train")
        if training is not None:
            activity = f"pretrain:{model_id}"
            b.node(
                A,
                activity,
                name=f"pretrain {record.name}",
                kind="pretraining",
                status="finished",
                settings=training.get("settings"),
                metrics=training.get("metrics"),
                started=training.get("started"),
                ended=training.get("ended"),
                device=training.get("device"),
            )
            b.edge(Rel.USED, (A, activity), (D, pretrained_on), role="train")
            b.edge(Rel.GENERATED_BY, (Label.MODEL, model_id), (A, activity))
            if agent:
                b.edge(Rel.ASSOCIATED_WITH, (A, activity), (G, ids.agent_id(agent)), role="operator")
    if agent:
        b.node(G, ids.agent_id(agent), name=agent, kind="software" if "kgraft" in agent else "person")
        b.edge(Rel.ATTRIBUTED_TO, (Label.MODEL, model_id), (G, ids.agent_id(agent)), role="creator")
    return b


def register_model(
    store: GraphStore,
    record: ModelRecord,
    *,
    pretrained_on: str | None = None,
    training: dict[str, Any] | None = None,
    agent: str | None = None,
) -> str:
    """Record a model (see ``model_batch``); its pretraining dataset must already be in the graph."""
    if pretrained_on is not None:
        pretrained_on = store.resolve(pretrained_on, (D,))[1]
    batch = model_batch(record, pretrained_on=pretrained_on, training=training, agent=agent)
    store.apply(adopt(store, batch, "register"))
    return record.id


EXTERNAL_DATASETS = {
    # Pretraining datasets of published weights that are not bundled: recorded by name, with the
    # torchvision spec that loads them where they are on disk.
    "mnist": ("MNIST", "torchvision:MNIST", "handwriting"),
    "usps": ("USPS", "torchvision:USPS", "handwriting"),
    "svhn": ("SVHN", "torchvision:SVHN", "house numbers"),
}


def external_dataset_batch(key: str) -> GraphBatch:
    """A Dataset node for a well-known pretraining dataset that is not on this machine."""
    name, spec, domain = EXTERNAL_DATASETS[key]
    b = GraphBatch()
    b.node(D, key, name=name, source=spec, modality="image", created=now())
    b.node(DOM, ids.domain_id(domain), name=domain)
    b.edge(Rel.IN_DOMAIN, (D, key), (DOM, ids.domain_id(domain)))
    return b
