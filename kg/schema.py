"""Schema statements for each store, generated from the ontology's vocabulary."""

from __future__ import annotations

from ontology.vocab import NODES, RELS

LADYBUG_TYPES = {"string": "STRING", "int": "INT64", "float": "DOUBLE", "bool": "BOOLEAN", "json": "STRING"}


def ladybug_ddl() -> list[str]:
    """``CREATE ... TABLE IF NOT EXISTS`` statements: one node table per label, one rel table per type."""
    statements = []
    for spec in NODES.values():
        cols = ", ".join(f"{name} {LADYBUG_TYPES[kind]}" for name, kind in spec.properties.items())
        statements.append(f"CREATE NODE TABLE IF NOT EXISTS {spec.label}({cols}, PRIMARY KEY(id))")
    for spec in RELS.values():
        ends = ", ".join(f"FROM {a} TO {b}" for a, b in spec.ends)
        cols = "".join(f", {name} {LADYBUG_TYPES[kind]}" for name, kind in spec.properties.items())
        statements.append(f"CREATE REL TABLE IF NOT EXISTS {spec.rel}({ends}{cols})")
    return statements


def ladybug_added_columns(existing: dict[str, set[str]]) -> list[str]:
    """``ALTER TABLE ... ADD`` statements for properties the ontology gained after a file was created.

    ``existing`` maps each table's name to the column names it holds (``CALL table_info``); tables that
    are missing are left to :func:`ladybug_ddl`. Older graph files thus open with the current schema.
    """
    specs = [(str(s.label), s.properties) for s in NODES.values()]
    specs += [(str(s.rel), s.properties) for s in RELS.values()]
    return [
        f"ALTER TABLE {table} ADD {name} {LADYBUG_TYPES[kind]}"
        for table, props in specs
        if table in existing
        for name, kind in props.items()
        if name not in existing[table]
    ]


def neo4j_schema() -> list[str]:
    """Uniqueness constraints on ``id`` and indexes on ``name`` for every label."""
    statements = []
    for label in NODES:
        low = str(label).lower()
        statements.append(
            f"CREATE CONSTRAINT kgraft_{low}_id IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE"
        )
        statements.append(f"CREATE INDEX kgraft_{low}_name IF NOT EXISTS FOR (n:{label}) ON (n.name)")
    return statements
