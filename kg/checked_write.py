"""Raw Cypher writes (``kgraft query --write``) checked against the SHACL shapes before they commit.

A write made through the platform's own API is a validated ``GraphBatch``; a raw statement is not, so
without this check it could leave, say, a ``Dataset`` without the ``name`` the shapes require, and the
graph would export to RDF that ``kgraft import rdf`` refuses. ``execute_checked`` runs the statement in
a transaction, finds the nodes and relationships it created or changed, exports those with the RDF
mapping of ``kg.rdf``, validates them against ``ontology/shapes.ttl``, and commits only if they
conform; otherwise it rolls back and raises ``ShapeViolation`` naming the shape, the node and the
property.

Neither store says which elements a statement touched, so the check works it out: it reads the rows
of the labels and relationship types the statement can have touched (those it names, ``(d:Dataset)``,
``[r:TRAINED_ON]``; every label and type when it has a variable without one, sets or removes a label,
or calls a procedure) before and after the statement, inside the same transaction, and validates only
the rows that are new or different. Reading rows is a Cypher scan; SHACL validation is what costs,
and it sees only what the write changed (benchmarks/checked_write_bench.py). Every shape targets a single
node or relationship resource, so validating the changed ones alone is exact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kg.errors import InvalidRecord
from kg.rdf import export_selection
from ontology.vocab import Label, Rel

if TYPE_CHECKING:
    from rdflib import Graph

    from kg.store import GraphStore

__all__ = ["ShapeViolation", "Touched", "execute_checked", "shape_violations", "touched"]

_LABELS = {label.value: label for label in Label}
_RELS = {rel.value: rel for rel in Rel}
_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|//[^\n]*|/\*.*?\*/", re.S)
_NODE = re.compile(r"(?<![\w.`])\(\s*([A-Za-z_]\w*)?\s*(:[^(){}]*)?(\{[^()]*\})?\s*\)")
_REL = re.compile(r"-\s*\[\s*([A-Za-z_]\w*)?\s*(:[^\]{]*)?[^\]]*\]")
_NAMES = re.compile(r":\s*([A-Za-z_]\w*)")
_LABEL_CHANGE = re.compile(r"\b(SET|REMOVE)\b[^;]*?\b[A-Za-z_]\w*\s*:\s*[A-Za-z_]", re.I)


class ShapeViolation(InvalidRecord):
    """A raw write would leave the graph violating the ontology's shapes; it was rolled back."""


@dataclass(frozen=True)
class Touched:
    """The node labels and relationship types a statement can have changed."""

    labels: tuple[Label, ...]
    rels: tuple[Rel, ...]

    @property
    def everything(self) -> bool:
        return set(self.labels) == set(Label) and set(self.rels) == set(Rel)


def touched(cypher: str) -> Touched:
    """The labels and relationship types ``cypher`` can change (see the module docstring)."""
    text = _STRINGS.sub("''", cypher).replace("`", "")
    everything = Touched(tuple(Label), tuple(Rel))
    if re.search(r"\bCALL\b", text, re.I) or _LABEL_CHANGE.search(text):
        return everything
    nodes, rels_found = _NODE.findall(text), _REL.findall(text)
    labelled: dict[str, set[str]] = {}
    for var, names in [(v, n) for v, n, _ in nodes] + rels_found:
        if var and names:
            labelled.setdefault(var, set()).update(_NAMES.findall(names))
    unknown_node = any(var and not names and var not in labelled for var, names, _ in nodes)
    unknown_rel = any(var and not names and var not in labelled for var, names in rels_found)
    mentioned = set(_NAMES.findall(text))
    labels = tuple(Label) if unknown_node else tuple(_LABELS[n] for n in sorted(mentioned & set(_LABELS)))
    rels = tuple(Rel) if unknown_rel else tuple(_RELS[n] for n in sorted(mentioned & set(_RELS)))
    return Touched(labels, rels)


def shape_violations(graph: Graph) -> list[str]:
    """Each SHACL violation of ``graph`` as ``"<shape>: <Label> '<id>' <property>: <message>"``, sorted."""
    if len(graph) == 0:  # nothing created or changed (a delete, a no-op): no validator to start
        return []
    import pyshacl
    from rdflib import RDF, BNode
    from rdflib.namespace import SH

    from kg.rdf import KG, PREFIXES
    from ontology import load_ontology, load_shapes

    shapes = load_shapes()
    conforms, results, _ = pyshacl.validate(
        graph, shacl_graph=shapes, ont_graph=load_ontology(), inference="none"
    )
    if conforms:
        return []
    out = []
    for result in results.subjects(RDF.type, SH.ValidationResult):
        focus = results.value(result, SH.focusNode)
        source = results.value(result, SH.sourceShape)
        shape = shapes.value(predicate=SH.property, object=source) if isinstance(source, BNode) else source
        path = results.value(result, SH.resultPath)
        message = str(results.value(result, SH.resultMessage) or "violates the shape")
        kind = next(
            (
                str(c).removeprefix(str(KG))
                for c in graph.objects(focus, RDF.type)
                if str(c).startswith(str(KG))
            ),
            "",
        )
        ident = graph.value(focus, KG.id)
        what = f"{kind} {str(ident)!r}" if ident is not None else f"a {kind} without an id"
        prop = (
            f" kg:{str(path).removeprefix(str(KG))}"
            if path is not None and str(path).startswith(str(KG))
            else ""
        )
        short = message.split(" on ")[0]  # pyshacl appends the focus node's full IRI
        name = f"kg:{str(shape).removeprefix(PREFIXES['kg'])}" if shape is not None else "a shape"
        out.append(f"{name}: {what}{prop}: {short}")
    return sorted(set(out))


def execute_checked(
    store: GraphStore, cypher: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Run one write statement; commit it only if what it can have touched conforms to the shapes.

    Raises ``ShapeViolation`` (one sentence naming the first violated shape, the node and the
    property; the graph unchanged) or the store's own errors for a statement that fails.
    """
    scope = touched(cypher)
    with store.transaction() as tx:
        before: dict[str, set[str]] = {}

        def remember(statement: str, values: dict[str, Any]) -> list[dict[str, Any]]:
            before[statement] = {_canonical(row) for row in tx.run(statement, values)}
            return []

        def changed(statement: str, values: dict[str, Any]) -> list[dict[str, Any]]:
            known = before.get(statement, set())
            return [row for row in tx.run(statement, values) if _canonical(row) not in known]

        export_selection(remember, scope.labels, scope.rels)  # the rows as they were
        rows = tx.run(cypher, params or {})
        problems = shape_violations(export_selection(changed, scope.labels, scope.rels))
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ShapeViolation(f"the write was not committed: it violates {problems[0]}{more}.")
    return rows


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)
