"""The property-graph vocabulary of kgraft: node labels, relationship types and properties.

This module is the Python face of ``ontology/kgraft.ttl``. Every label, relationship type and
property here has an IRI in the Turtle file, and ``tests/test_ontology.py`` checks that the two
sets are identical, so code and ontology cannot drift apart.

Property values have one of five kinds, chosen so that the embedded store (typed columns), Neo4j
and RDF all hold them the same way:

========  ===========================  ======================
kind      Python                       XSD range in the TTL
========  ===========================  ======================
string    ``str``                      ``xsd:string``
int       ``int``                      ``xsd:long``
float     ``float``                    ``xsd:double``
bool      ``bool``                     ``xsd:boolean``
json      any JSON value (list, dict)  ``rdf:JSON``
========  ===========================  ======================

``json`` values are stored as their canonical JSON text and decoded by the ``kg`` layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

NAMESPACE = "https://kgraft.dev/ontology#"
"""IRI namespace of the kgraft ontology (``kg:`` prefix in the Turtle file)."""

RESOURCE_NAMESPACE = "https://kgraft.dev/id/"
"""IRI namespace of individual nodes: ``{RESOURCE_NAMESPACE}{label}/{id}``."""


class Label(StrEnum):
    """Node labels (one per node, UpperCamel)."""

    DATASET = "Dataset"
    MODEL = "Model"
    CONCEPT = "Concept"
    DOMAIN = "Domain"
    BIAS = "Bias"
    ACTIVITY = "Activity"
    AGENT = "Agent"


class Rel(StrEnum):
    """Relationship types (UPPER_SNAKE)."""

    DERIVED_FROM = "DERIVED_FROM"
    HAS_CLASS = "HAS_CLASS"
    IS_A = "IS_A"
    IN_DOMAIN = "IN_DOMAIN"
    HAS_BIAS = "HAS_BIAS"
    TRAINED_ON = "TRAINED_ON"
    FINETUNED_FROM = "FINETUNED_FROM"
    USED = "USED"
    GENERATED_BY = "GENERATED_BY"
    ASSOCIATED_WITH = "ASSOCIATED_WITH"
    ATTRIBUTED_TO = "ATTRIBUTED_TO"
    SCORED_ON = "SCORED_ON"
    TRANSFERRED_TO = "TRANSFERRED_TO"
    SIMILAR_TO = "SIMILAR_TO"
    SAME_AS = "SAME_AS"


KINDS = ("string", "int", "float", "bool", "json")


@dataclass(frozen=True)
class NodeSpec:
    """A node label and its properties (name -> kind). ``id`` is the key of every label."""

    label: Label
    properties: dict[str, str]


@dataclass(frozen=True)
class RelSpec:
    """A relationship type, the (from, to) label pairs it joins, and its properties.

    ``key`` names the properties that, with the two end nodes, identify one relationship:
    upserting a relationship with the same ends and key values updates it in place.
    """

    rel: Rel
    ends: tuple[tuple[Label, Label], ...]
    properties: dict[str, str] = field(default_factory=dict)
    key: tuple[str, ...] = ()


_COMMON = {"id": "string", "name": "string", "description": "string", "created": "string", "extra": "json"}

NODES: dict[Label, NodeSpec] = {
    spec.label: spec
    for spec in (
        NodeSpec(
            Label.DATASET,
            _COMMON
            | {
                "version": "string",
                "url": "string",
                "license": "string",
                "citation": "string",
                "source": "string",
                "modality": "string",
                "n_samples": "int",
                "n_classes": "int",
                "split_counts": "json",
                "class_counts": "json",
                "imbalance": "float",
                "image_size": "json",
                "channels": "int",
                "mean": "json",
                "std": "json",
                "checksum": "string",
            },
        ),
        NodeSpec(
            Label.MODEL,
            _COMMON
            | {
                "version": "string",
                "kind": "string",
                "architecture": "string",
                "num_params": "int",
                "num_classes": "int",
                "input_size": "json",
                "mean": "json",
                "std": "json",
                "interpolation": "string",
                "head": "string",
                "layer_groups": "json",
                "checkpoint": "string",
                "checksum": "string",
                "license": "string",
                "source": "string",
                "metrics": "json",
            },
        ),
        NodeSpec(Label.CONCEPT, _COMMON | {"synset": "string", "depth": "int", "source": "string"}),
        NodeSpec(Label.DOMAIN, dict(_COMMON)),
        NodeSpec(Label.BIAS, _COMMON | {"kind": "string", "severity": "string", "source": "string"}),
        NodeSpec(
            Label.ACTIVITY,
            _COMMON
            | {
                "kind": "string",
                "settings": "json",
                "metrics": "json",
                "status": "string",
                "started": "string",
                "ended": "string",
                "device": "string",
            },
        ),
        NodeSpec(Label.AGENT, _COMMON | {"kind": "string", "url": "string"}),
    )
}

_D, _M, _C, _B, _A, _G, _DOM = (
    Label.DATASET,
    Label.MODEL,
    Label.CONCEPT,
    Label.BIAS,
    Label.ACTIVITY,
    Label.AGENT,
    Label.DOMAIN,
)

RELS: dict[Rel, RelSpec] = {
    spec.rel: spec
    for spec in (
        RelSpec(Rel.DERIVED_FROM, ((_D, _D),), {"how": "string", "params": "json", "activity": "string"}),
        RelSpec(Rel.HAS_CLASS, ((_D, _C),), {"label": "string", "class_index": "int", "count": "int"}),
        RelSpec(Rel.IS_A, ((_C, _C),)),
        RelSpec(Rel.IN_DOMAIN, ((_D, _DOM),)),
        RelSpec(Rel.HAS_BIAS, ((_D, _B), (_M, _B))),
        RelSpec(Rel.TRAINED_ON, ((_M, _D),), {"split": "string"}),
        RelSpec(Rel.FINETUNED_FROM, ((_M, _M),), {"activity": "string"}),
        RelSpec(Rel.USED, ((_A, _D), (_A, _M)), {"role": "string"}),
        RelSpec(Rel.GENERATED_BY, ((_D, _A), (_M, _A))),
        RelSpec(Rel.ASSOCIATED_WITH, ((_A, _G),), {"role": "string"}),
        RelSpec(Rel.ATTRIBUTED_TO, ((_D, _G), (_M, _G)), {"role": "string"}),
        RelSpec(
            Rel.SCORED_ON,
            ((_M, _D),),
            {
                "kind": "string",
                "layer": "string",
                "value": "float",
                "p_value": "float",
                "sample_size": "int",
                "model_checksum": "string",
                "dataset_checksum": "string",
                "time": "string",
                "extra": "json",
            },
            key=("kind", "layer"),
        ),
        RelSpec(
            Rel.TRANSFERRED_TO,
            ((_M, _D),),
            {
                "activity": "string",
                "accuracy": "float",
                "baseline_accuracy": "float",
                "gain": "float",
                "source_accuracy_before": "float",
                "source_accuracy_after": "float",
                "forgetting": "float",
                "preset": "string",
                "train_size": "int",
                "epochs": "int",
                "batch_size": "int",
                "learning_rate": "float",
                "failed": "bool",
                "time": "string",
                "extra": "json",
            },
            key=("activity",),
        ),
        RelSpec(
            Rel.SIMILAR_TO,
            ((_D, _D),),
            {"method": "string", "value": "float", "time": "string", "extra": "json"},
            key=("method",),
        ),
        RelSpec(Rel.SAME_AS, ((_D, _D),), {"time": "string"}),
    )
}


class ScoreRole(StrEnum):
    """What a SCORED_ON measurement of a kind says."""

    ESTIMATOR = "estimator"
    """A transferability estimate: higher means the source should fine-tune better on the target."""
    SHIFT = "shift"
    """A two-sample shift test: a small p-value means the target moved away from the source's data."""
    OTHER = "other"
    """Any other measurement (kept, not interpreted)."""


@dataclass(frozen=True)
class ScoreKind:
    """A kind of SCORED_ON measurement: its name (the stored ``kind`` starts with it), role, meaning."""

    name: str
    role: ScoreRole
    meaning: str


SCORE_KINDS: tuple[ScoreKind, ...] = (
    ScoreKind("logme", ScoreRole.ESTIMATOR, "LogME: evidence of a Bayesian linear model on the features"),
    ScoreKind("leep", ScoreRole.ESTIMATOR, "LEEP: log expected empirical prediction of the source head"),
    ScoreKind("nce", ScoreRole.ESTIMATOR, "NCE: negative conditional entropy of target given source labels"),
    ScoreKind("hscore", ScoreRole.ESTIMATOR, "H-score: between-class over total feature covariance"),
    ScoreKind("sfda", ScoreRole.ESTIMATOR, "SFDA: self-challenging Fisher discriminant analysis"),
    ScoreKind("knn_accuracy", ScoreRole.ESTIMATOR, "k-nearest-neighbour accuracy on the features"),
    ScoreKind("linear_probe_accuracy", ScoreRole.ESTIMATOR, "accuracy of a linear probe on the features"),
    ScoreKind("mmd", ScoreRole.SHIFT, "maximum mean discrepancy test between source and target features"),
    ScoreKind("ks", ScoreRole.SHIFT, "Kolmogorov-Smirnov tests per softmax output, Bonferroni-combined"),
    ScoreKind("domain_classifier", ScoreRole.SHIFT, "a classifier telling source from target features"),
    ScoreKind("other", ScoreRole.OTHER, "any kind not listed above"),
)
"""The SCORED_ON kinds kgraft interprets, by name; the scorer saves the names it was trained with, so
a kind added here does not invalidate a saved scorer. ``other`` stays last: unknown kinds map to it."""


def score_kinds(role: ScoreRole) -> tuple[str, ...]:
    """The names of the score kinds with ``role``, in ``SCORE_KINDS`` order."""
    return tuple(k.name for k in SCORE_KINDS if k.role == role)


LINEAGE_RELS: tuple[Rel, ...] = (Rel.DERIVED_FROM, Rel.TRAINED_ON, Rel.FINETUNED_FROM)
"""Relationship types along which provenance (and so bias) flows, pointing from child to parent."""


def property_kind(owner: Label | Rel, name: str) -> str:
    """The kind of property ``name`` on a label or relationship type; raises ``KeyError``."""
    props = NODES[owner].properties if isinstance(owner, Label) else RELS[owner].properties
    return props[name]
