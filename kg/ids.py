"""Node ids from names: one slug rule and the typed id makers built on it.

The rule: lower case; every run of characters other than ``a-z`` and ``0-9`` becomes one ``-``; no
``-`` at either end. So ``"Oxford Pets"``, ``"oxford_pets"`` and ``"Oxford-Pets"`` are all
``oxford-pets``, whichever importer or command records the name (a Croissant file, a TransferGraph
record, ``kgraft dataset add``), and land on one node. A name with no ASCII letter or digit (``"猫"``)
gets ``{kind}-{12 hex digits of its SHA-256}`` instead, stable and distinct per name.

====================  ===================================  =====================================
maker                 id                                   example
====================  ===================================  =====================================
``dataset_id``        ``{slug}``                           ``Oxford Pets`` -> ``oxford-pets``
``concept_id``        ``label:{slug}``                     ``leaf rust`` -> ``label:leaf-rust``
``agent_id``          ``agent:{slug}``                     ``Ada Okafor`` -> ``agent:ada-okafor``
``domain_id``         ``domain:{slug}``                    ``chest x-ray`` -> ``domain:chest-x-ray``
``bias_id``           ``bias:{dataset id}:{slug(kind)}``   ``bias:pets:class-imbalance``
``checkpoint_id``     ``{slug}``                           ``resnet18_pets`` -> ``resnet18-pets``
``hf_model_id``       ``hf:{name}`` (verbatim)             ``hf:google/vit-base-patch16-224``
``run_id``            ``run:{slug(src)}->{slug(tgt)}:{t}``  ``run:timm-resnet18->pets:2026...Z``
``openlineage_...``   ``{namespace}/{name}`` (verbatim)    ``s3://bucket/pets``
====================  ===================================  =====================================

Model ids of the zoo (``torchvision.resnet18.IMAGENET1K_V1``) and Hugging Face names are ids already,
unique and case-sensitive, so they are kept verbatim; so are OpenLineage datasets, whose namespace and
name form a URI.

Older kgraft versions had other rules (see ``LEGACY``): ``kgraft dataset add`` kept ``.``, ``_`` and
``@`` (``oxford_pets``), the TransferGraph importer used ``transfergraph:{name}``, dataset-defined
concepts joined words with ``_`` (``label:leaf_rust``) and Croissant agents had no ``agent:`` prefix.
``kg.adopt.adopt`` keeps writing to such a node where a store already holds one, so old stores keep
working without a migration.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from kg.errors import InvalidRecord
from ontology.vocab import Label

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """Lower-case ASCII letters and digits joined by ``-``: ``"Fashion_MNIST v2"`` -> ``"fashion-mnist-v2"``;
    ``""`` when ``text`` has no ASCII letter or digit."""
    return _NOT_SLUG.sub("-", str(text).lower()).strip("-")


def short_hash(text: str) -> str:
    """The first 12 hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(str(text).encode()).hexdigest()[:12]


def name_key(text: str, kind: str) -> str:
    """``slug(text)``, or ``{kind}-{short_hash(text)}`` for a name with no ASCII letter or digit.
    Refuses a blank name."""
    if not str(text).strip():
        raise InvalidRecord(f"a {kind} needs a name with at least one character; got {text!r}.")
    return slug(text) or f"{kind}-{short_hash(text)}"


def dataset_id(name: str) -> str:
    """The Dataset id of a dataset name: ``"Oxford Pets"`` -> ``"oxford-pets"``."""
    return name_key(name, "dataset")


def concept_id(class_name: str) -> str:
    """The id of a dataset-defined Concept (a class label with no WordNet synset): ``label:{slug}``."""
    return f"label:{name_key(class_name, 'class')}"


def agent_id(name: str) -> str:
    """The Agent id of a person, organisation or program: ``agent:{slug}``."""
    return f"agent:{name_key(name, 'agent')}"


def domain_id(name: str) -> str:
    """The Domain id of a domain name: ``domain:{slug}``."""
    return f"domain:{name_key(name, 'domain')}"


def bias_id(dataset: str, kind: str) -> str:
    """The id of a recorded bias of one kind on one dataset: ``bias:{dataset id}:{slug(kind)}``."""
    return f"bias:{dataset}:{name_key(kind, 'bias')}"


def checkpoint_id(name: str) -> str:
    """The Model id of a checkpoint registered under ``name`` (or its file's stem)."""
    return name_key(name, "model")


def hf_model_id(name: str) -> str:
    """The Model id of a Hugging Face Hub model: ``hf:{name}``, verbatim (``hf:google/vit-base``)."""
    return f"hf:{name}"


def run_id(source: str, target: str, stamp: str) -> str:
    """The Activity id of a fine-tuning run: ``run:{slug(source)}->{slug(target)}:{stamp}``."""
    return f"run:{name_key(source, 'model')}->{name_key(target, 'dataset')}:{stamp}"


def openlineage_dataset_id(namespace: str, name: str, own_namespace: str) -> str:
    """The Dataset id of an OpenLineage dataset: ``name`` in kgraft's own namespace (where names are
    kgraft ids), else ``{namespace}/{name}`` (a URI, unique as it stands)."""
    return name if namespace == own_namespace else f"{namespace}/{name}"


# -- the rules of older versions, so that stores written by them keep working ------------------------


def _register_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9._@]+", "-", str(name).lower()).strip("-")


def _underscore_label(name: str) -> str:
    joined = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    return f"label:{joined or str(name).encode().hex()}"


_CURRENT: dict[Label, Callable[[str], str]] = {
    Label.DATASET: dataset_id,
    Label.CONCEPT: concept_id,
    Label.AGENT: agent_id,
    Label.DOMAIN: domain_id,
}
LEGACY: dict[tuple[str, Label], Callable[[str], str]] = {
    ("register", Label.DATASET): _register_slug,
    ("register", Label.CONCEPT): _underscore_label,
    ("register", Label.AGENT): lambda name: f"agent:{_register_slug(name)}",
    ("register", Label.DOMAIN): lambda name: f"domain:{_register_slug(name)}",
    ("transfergraph", Label.DATASET): lambda name: f"transfergraph:{name}",
    ("croissant", Label.AGENT): slug,
}
"""(importer, label) -> the id an older version of that importer gave a node of that name."""


def legacy_id(importer: str, label: Label, node_id: str, name: str) -> str | None:
    """The id an older version of ``importer`` gave the ``label`` node named ``name``, when
    ``node_id`` is today's name-derived id and the old one differs; else ``None``."""
    rule = LEGACY.get((importer, label))
    if rule is None or not str(name).strip() or node_id != _CURRENT[label](name):
        return None
    old = rule(name)
    return old if old and old != node_id else None
