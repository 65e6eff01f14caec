"""Dataset identity: one dataset known under two names (``pets`` and ``oxford_iiit_pet``).

An alias is a SAME_AS relationship, written in both directions so that directed queries follow it
either way (owl:sameAs in RDF). ``alias_groups`` gives every dataset the canonical member of its
group (the smallest id), which the scorer uses so that the history of one name counts for the other,
and so that hiding a target hides all its names.
"""

from __future__ import annotations

from kg.batch import GraphBatch
from kg.errors import InvalidRecord
from kg.store import GraphStore
from ontology.vocab import Label, Rel


def add_alias(store: GraphStore, first: str, second: str, *, time: str | None = None) -> tuple[str, str]:
    """Record that datasets ``first`` and ``second`` (ids or names) are one dataset; returns their
    ids. Idempotent; refuses a dataset aliased to itself."""
    a = store.resolve(first, (Label.DATASET,))[1]
    b = store.resolve(second, (Label.DATASET,))[1]
    if a == b:
        raise InvalidRecord(f"{first!r} and {second!r} are the same dataset ({a}); nothing to alias.")
    batch = GraphBatch()
    for x, y in ((a, b), (b, a)):
        batch.edge(Rel.SAME_AS, (Label.DATASET, x), (Label.DATASET, y), time=time)
    store.apply(batch)
    return a, b


def alias_groups(store: GraphStore) -> dict[str, str]:
    """Every aliased dataset's id -> the canonical id of its group (the smallest); datasets without
    an alias are absent. Groups are the connected components of SAME_AS."""
    rows = store.query(
        f"MATCH (a:{Label.DATASET})-[:{Rel.SAME_AS}]->(b:{Label.DATASET}) RETURN a.id AS a, b.id AS b"
    )
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for row in rows:
        ra, rb = find(row["a"]), find(row["b"])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def aliases_of(store: GraphStore, dataset_id: str) -> list[str]:
    """The other ids of ``dataset_id``'s alias group, sorted."""
    groups = alias_groups(store)
    root = groups.get(dataset_id)
    return sorted(x for x, r in groups.items() if r == root and x != dataset_id) if root else []
