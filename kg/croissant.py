"""Import Croissant (MLCommons, 1.0 / 1.1) dataset metadata: the dataset, its provenance and RAI fields.

The file is read as plain JSON; keys are expanded with the file's ``@context`` (on top of the standard
Croissant context, for files that point to it by URL), so ``"name"``, ``"sc:name"`` and
``"https://schema.org/name"`` all mean the same. Values may be a string, a list, or an object with
``@value`` / ``name`` / ``url`` / ``@id``.

What becomes what:

- the ``sc:Dataset`` -> one ``Dataset``. Its id is ``kg.ids.dataset_id`` of its ``name``
  (``fashion_mnist`` -> ``fashion-mnist``), so a Croissant import lands on the same node as a dataset
  registered locally or imported from TransferGraph under that name, and re-importing the same file
  is idempotent. (``@id`` and ``url`` are often absent, or the literal ``"None"``, in real files; the
  url is kept as the ``url`` property.) ``name``, ``description``, ``url``, ``license`` (an object
  gives its url or name), ``version`` and ``citeAs`` / ``citation`` map to the properties of the same
  name; ``source`` is ``croissant:<file name>`` (a dataset registered from images keeps its own);
  ``extra`` holds keywords, dates, ``sameAs``, ``conformsTo``, and every ``rai:`` field not mapped to
  a bias (under ``"rai"``). The text ``"None"`` counts as absent (exporters write it for missing
  values).
- ``creator`` / ``publisher`` -> ``Agent`` nodes (id ``agent:<slug of the name>``; kind ``person`` or
  ``organisation`` from ``@type``) with ``ATTRIBUTED_TO`` (role ``creator`` / ``publisher``). E-mail
  addresses are not imported.
- ``isBasedOn`` / ``prov:wasDerivedFrom`` -> ``DERIVED_FROM`` to a ``Dataset`` per parent
  (how = ``croissant:isBasedOn`` / ``croissant:wasDerivedFrom``). A parent with a name gets the slug of
  the name as id, one given only by URL the slug of the URL; it is created with its name and url unless
  ``store`` already holds it.
- each entry of ``rai:dataBiases``, ``rai:dataLimitations``, ``rai:annotatorDemographics`` and
  ``rai:personalSensitiveInformation`` -> one ``Bias`` (kind ``data-bias``, ``data-limitation``,
  ``annotator-demographics``, ``personal-sensitive-information``; source ``croissant``; severity
  ``unknown``) with ``HAS_BIAS``. Its id is ``croissant:<dataset id>:<kind>:<hash of the text>``, so a
  re-import updates rather than duplicates it.
- a record set that enumerates class labels -> ``Concept`` nodes (id ``label:<slug>``, source
  ``croissant``) with ``HAS_CLASS`` (label, class_index = row order). A record set qualifies when it is
  an enumeration (``dataType`` ``sc:Enumeration`` or ``cr:isEnumeration`` true), lists its rows inline
  (``data``), is not a split list, and is not only referenced by non-label fields (Titanic's
  ``genders`` enumerates a feature, not the target). The label is the field typed ``sc:name``, else the
  field named label / name / class / category, else the record set's key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kg import ids
from kg.adopt import adopt
from kg.batch import GraphBatch
from kg.errors import InvalidRecord
from ontology.vocab import Label, Rel

if TYPE_CHECKING:
    from kg.store import GraphStore

__all__ = ["import_croissant"]

SC = "https://schema.org/"
CR = "http://mlcommons.org/croissant/"
RAI = "http://mlcommons.org/croissant/RAI/"
PROV = "http://www.w3.org/ns/prov#"
DCT = "http://purl.org/dc/terms/"

# The terms of the standard Croissant context that this importer reads; a file's own @context is
# applied on top, so a file that only links the context by URL still reads correctly.
_BASE_CONTEXT: dict[str, str] = {
    "@vocab": SC,
    "sc": SC,
    "schema": SC,
    "cr": CR,
    "rai": RAI,
    "prov": PROV,
    "dct": DCT,
    "citeAs": CR + "citeAs",
    "conformsTo": DCT + "conformsTo",
    "recordSet": CR + "recordSet",
    "field": CR + "field",
    "dataType": CR + "dataType",
    "data": CR + "data",
    "key": CR + "key",
    "references": CR + "references",
    "isLiveDataset": CR + "isLiveDataset",
    "isEnumeration": CR + "isEnumeration",
}

BIAS_FIELDS: dict[str, str] = {
    RAI + "dataBiases": "data-bias",
    RAI + "dataLimitations": "data-limitation",
    RAI + "annotatorDemographics": "annotator-demographics",
    RAI + "personalSensitiveInformation": "personal-sensitive-information",
}
"""Croissant RAI field -> the kind of the Bias nodes its entries become."""

_PARENT_FIELDS = {
    SC + "isBasedOn": "croissant:isBasedOn",
    PROV + "wasDerivedFrom": "croissant:wasDerivedFrom",
}
_AGENT_FIELDS = {SC + "creator": "creator", SC + "publisher": "publisher"}
_AGENT_KINDS = {SC + "Person": "person", SC + "Organization": "organisation"}
_EXTRA_FIELDS = (
    "keywords", "datePublished", "dateModified", "dateCreated", "sameAs", "inLanguage", "alternateName",
)  # fmt: skip
_LABEL_FIELD_NAMES = ("label", "labels", "name", "class", "classes", "category", "categories", "target")


# -- small helpers ----------------------------------------------------------------------------------
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str | None:
    """A text value from a string, number, ``{"@value"}``, ``{"name"}``, ``{"@id"}`` or list; ``None``
    for absent, empty or the literal ``"None"``."""
    if isinstance(value, list):
        for item in value:
            text = _text(item)
            if text is not None:
                return text
        return None
    if isinstance(value, dict):
        for key in ("@value", "name", "url", "@id"):
            if key in value:
                return _text(value[key])
        return None
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None", "null") else text


class _Context:
    """Expands compact JSON-LD keys (``name``, ``sc:name``, ``citeAs``) to full IRIs."""

    def __init__(self, context: Any) -> None:
        self.terms: dict[str, str] = dict(_BASE_CONTEXT)
        for part in _as_list(context):
            if isinstance(part, dict):
                for term, value in part.items():
                    if isinstance(value, str):
                        self.terms[term] = value
                    elif isinstance(value, dict) and isinstance(value.get("@id"), str):
                        self.terms[term] = value["@id"]

    def iri(self, key: str, vocab: bool = True) -> str:
        """The full IRI of a key or vocabulary value; schema.org is normalised to https."""
        for _ in range(4):  # a term may map to a compact IRI ("citeAs" -> "cr:citeAs")
            if key in self.terms and not key.startswith("@"):
                key = self.terms[key]
                continue
            prefix, sep, local = key.partition(":")
            if sep and not local.startswith("//") and prefix in self.terms:
                key = self.terms[prefix] + local
                continue
            break
        if ":" not in key and vocab:
            key = self.terms.get("@vocab", SC) + key
        return key.replace("http://schema.org/", SC)

    def expand(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A JSON object with its keys expanded (``@`` keywords are kept as they are)."""
        return {(k if k.startswith("@") else self.iri(k)): v for k, v in obj.items()}

    def types(self, obj: dict[str, Any], key: str = "@type") -> set[str]:
        return {self.iri(t) for t in _as_list(obj.get(key)) if isinstance(t, str)}


# -- reading ----------------------------------------------------------------------------------------
def _load(path: Path) -> tuple[dict[str, Any], _Context]:
    """The dataset object of a Croissant file and its context; ``InvalidRecord`` if it is not one."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRecord(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    if not raw.strip():
        raise InvalidRecord(f"{path.name} is empty, not Croissant JSON-LD.")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InvalidRecord(f"{path.name} is not JSON: {exc}.") from None

    candidates = doc.get("@graph", [doc]) if isinstance(doc, dict) else doc
    root_context = doc.get("@context") if isinstance(doc, dict) else None
    for item in _as_list(candidates):
        if not isinstance(item, dict):
            continue
        ctx = _Context([root_context, item.get("@context")])
        if SC + "Dataset" in ctx.types(item):
            break
    else:
        raise InvalidRecord(f"{path.name} is not a Croissant dataset: it has no @type sc:Dataset.")

    conforms = [_text(c) or "" for c in _as_list(ctx.expand(item).get(DCT + "conformsTo"))]
    in_context = "mlcommons.org/croissant" in json.dumps([root_context, item.get("@context")])
    if not in_context and not any("mlcommons.org/croissant" in c for c in conforms):
        raise InvalidRecord(
            f"{path.name} is a schema.org dataset but not Croissant metadata "
            "(no conformsTo Croissant and no cr: context)."
        )
    return item, ctx


def _agent(batch: GraphBatch, ctx: _Context, value: Any) -> str | None:
    """An Agent node from a creator / publisher value; returns its id."""
    if isinstance(value, dict):
        name = _text(value.get("name")) or _text(value.get("@id")) or _text(value.get("url"))
        url = _text(value.get("url"))
        kinds = [_AGENT_KINDS[t] for t in sorted(ctx.types(value)) if t in _AGENT_KINDS]
        kind = kinds[0] if kinds else None
    else:
        name, url, kind = _text(value), None, None
    if name is None:
        return None
    return batch.node(Label.AGENT, ids.agent_id(name), name=name, url=url, kind=kind)


def _parent(value: Any) -> tuple[str, str | None, str | None] | None:
    """(id, name, url) of a parent dataset from an ``isBasedOn`` / ``wasDerivedFrom`` value."""
    if isinstance(value, dict):
        name = _text(value.get("name"))
        url = _text(value.get("url")) or _text(value.get("@id"))
    else:
        text = _text(value)
        if text is None:
            return None
        name, url = (None, text) if "://" in text else (text, None)
    if name:
        return ids.dataset_id(name), name, url
    if url:
        return ids.dataset_id(url.split("://", 1)[-1]), url, url
    return None


def _bias_name(kind: str, text: str) -> str:
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return f"{kind}: {first if len(first) <= 80 else first[:79].rstrip() + '…'}"


def _field_local(field_id: str) -> str:
    return field_id.rsplit("/", 1)[-1].lower()


def _class_labels(ctx: _Context, dataset: dict[str, Any]) -> list[str]:
    """Class labels of the first record set that enumerates them inline (see the module docstring)."""
    record_sets = [ctx.expand(rs) for rs in _as_list(dataset.get(CR + "recordSet")) if isinstance(rs, dict)]
    # which fields reference each record set, to tell target enumerations from feature enumerations
    referrers: dict[str, list[str]] = {}
    for rs in record_sets:
        for f in _as_list(rs.get(CR + "field")):
            if not isinstance(f, dict):
                continue
            ref = ctx.expand(f).get(CR + "references")
            ref_field = ctx.expand(ref).get(CR + "field") if isinstance(ref, dict) else None
            target = _text(ref_field)
            if target:
                referrers.setdefault(target.split("/", 1)[0], []).append(_text(f.get("@id")) or "")
    for rs in record_sets:
        rs_id = _text(rs.get("@id")) or _text(rs.get(SC + "name")) or ""
        data_types = ctx.types(rs, CR + "dataType")
        enumeration = SC + "Enumeration" in data_types or rs.get(CR + "isEnumeration") is True
        rows = rs.get(CR + "data")
        if not enumeration or CR + "Split" in data_types or "split" in rs_id.lower():
            continue
        if not isinstance(rows, list) or not rows:
            continue
        users = referrers.get(rs_id, [])
        if users and not any(_field_local(u) in _LABEL_FIELD_NAMES for u in users):
            continue
        column = _label_column(ctx, rs)
        labels = []
        for row in rows:
            if not isinstance(row, dict):
                continue
            value = row.get(column)
            if value is None:  # rows may be keyed by the field's short name
                value = row.get(column.rsplit("/", 1)[-1])
            text = _text(value)
            if text is not None:
                labels.append(text)
        if labels:
            return labels
    return []


def _label_column(ctx: _Context, rs: dict[str, Any]) -> str:
    """The id of the field holding the label in an enumeration record set."""
    fields = [f for f in _as_list(rs.get(CR + "field")) if isinstance(f, dict)]
    ids = [_text(f.get("@id")) or _text(f.get("name")) or "" for f in fields]
    for f, fid in zip(fields, ids, strict=True):
        if SC + "name" in ctx.types(ctx.expand(f), CR + "dataType"):
            return fid
    for name in _LABEL_FIELD_NAMES:
        for fid in ids:
            if _field_local(fid) == name:
                return fid
    key = _text(rs.get(CR + "key"))
    if key:
        return key
    return ids[0] if ids else ""


def import_croissant(path: str | Path, store: GraphStore | None = None) -> GraphBatch:
    """Read a Croissant JSON-LD file into a batch (see the module docstring for the mapping).

    ``store``, if given, is only read: parent datasets it already holds are linked without
    overwriting their name and url, a dataset registered from images keeps its source, and nodes an
    older version named differently keep their ids (``kg.adopt``). Raises ``InvalidRecord`` with one
    sentence for a file that is not JSON, not a Croissant dataset, or has no name.
    """
    path = Path(path)
    item, ctx = _load(path)
    ds = ctx.expand(item)
    name = _text(ds.get(SC + "name"))
    if name is None:
        raise InvalidRecord(f"{path.name} is a Croissant dataset without a name.")
    dataset = (Label.DATASET, ids.dataset_id(name))
    batch = GraphBatch()
    _add_dataset(batch, ds, dataset[1], name, path.name)
    _add_agents(batch, ctx, ds, dataset)
    _add_parents(batch, ds, dataset, store)
    _add_biases(batch, ds, dataset)
    _add_classes(batch, ctx, ds, dataset)
    return adopt(store, batch, "croissant") if store is not None else batch


def _licence(ds: dict[str, Any]) -> str | None:
    """The dataset's licences joined by ``; `` (an object gives its url, else its name or ``@id``)."""
    license_values = [
        (_text(v.get("url")) or _text(v.get("name")) or _text(v.get("@id")))
        if isinstance(v, dict)
        else _text(v)
        for v in _as_list(ds.get(SC + "license"))
    ]
    return "; ".join(v for v in license_values if v) or None


def _extra(ds: dict[str, Any]) -> dict[str, Any]:
    """The fields kept in the Dataset's ``extra``: keywords, dates, ``sameAs``, ``conformsTo``, and
    the ``rai:`` fields not mapped to a bias (under ``"rai"``)."""
    extra: dict[str, Any] = {}
    for key in _EXTRA_FIELDS:
        value = ds.get(SC + key)
        if value not in (None, "", [], "None"):
            extra[key] = value
    conforms = [_text(c) for c in _as_list(ds.get(DCT + "conformsTo"))]
    if any(conforms):
        extra["conformsTo"] = [c for c in conforms if c]
    rai = {
        key[len(RAI) :]: value
        for key, value in ds.items()
        if key.startswith(RAI) and key not in BIAS_FIELDS and value not in (None, "", [])
    }
    if rai:
        extra["rai"] = rai
    return extra


def _add_dataset(batch: GraphBatch, ds: dict[str, Any], dataset_id: str, name: str, file_name: str) -> None:
    """The ``Dataset`` node itself, with its schema.org properties and ``source`` ``croissant:<file>``."""
    extra = _extra(ds)
    batch.node(
        Label.DATASET,
        dataset_id,
        name=name,
        description=_text(ds.get(SC + "description")),
        url=_text(ds.get(SC + "url")),
        license=_licence(ds),
        version=_text(ds.get(SC + "version")),
        citation=_text(ds.get(CR + "citeAs")) or _text(ds.get(SC + "citation")),
        source=f"croissant:{file_name}",
        extra=extra or None,
    )


def _add_agents(batch: GraphBatch, ctx: _Context, ds: dict[str, Any], dataset: tuple[Label, str]) -> None:
    """Creators and publishers as ``Agent`` nodes, one ``ATTRIBUTED_TO`` per agent with its roles."""
    roles: dict[str, list[str]] = {}
    for key, role in _AGENT_FIELDS.items():
        for value in _as_list(ds.get(key)):
            agent_id = _agent(batch, ctx, value)
            if agent_id is not None and role not in roles.setdefault(agent_id, []):
                roles[agent_id].append(role)
    for agent_id, agent_roles in roles.items():
        batch.edge(Rel.ATTRIBUTED_TO, dataset, (Label.AGENT, agent_id), role=", ".join(agent_roles))


def _add_parents(
    batch: GraphBatch, ds: dict[str, Any], dataset: tuple[Label, str], store: GraphStore | None
) -> None:
    """``DERIVED_FROM`` to each parent dataset; a parent ``store`` already holds keeps its name and url."""
    for key, how in _PARENT_FIELDS.items():
        for value in _as_list(ds.get(key)):
            parent = _parent(value)
            if parent is None or parent[0] == dataset[1]:
                continue
            parent_id, parent_name, parent_url = parent
            known = store is not None and store.node(Label.DATASET, parent_id) is not None
            if not known:
                batch.node(Label.DATASET, parent_id, name=parent_name, url=parent_url)
            batch.edge(Rel.DERIVED_FROM, dataset, (Label.DATASET, parent_id), how=how)


def _add_biases(batch: GraphBatch, ds: dict[str, Any], dataset: tuple[Label, str]) -> None:
    """One ``Bias`` (source ``croissant``, severity ``unknown``) per text of each RAI bias field."""
    for key, kind in BIAS_FIELDS.items():
        for value in _as_list(ds.get(key)):
            text = _text(value.get("description")) if isinstance(value, dict) else None
            text = text or _text(value)
            if text is None:
                continue
            bias_id = f"croissant:{dataset[1]}:{kind}:{ids.short_hash(text)}"
            batch.node(
                Label.BIAS,
                bias_id,
                name=_bias_name(kind, text),
                kind=kind,
                description=text,
                source="croissant",
                severity="unknown",
            )
            batch.edge(Rel.HAS_BIAS, dataset, (Label.BIAS, bias_id))


def _add_classes(batch: GraphBatch, ctx: _Context, ds: dict[str, Any], dataset: tuple[Label, str]) -> None:
    """The class labels as ``Concept`` nodes with ``HAS_CLASS`` (label and class index)."""
    for index, label in enumerate(_class_labels(ctx, ds)):
        concept_id = ids.concept_id(label)
        batch.node(Label.CONCEPT, concept_id, name=label, source="croissant")
        batch.edge(Rel.HAS_CLASS, dataset, (Label.CONCEPT, concept_id), label=label, class_index=index)
