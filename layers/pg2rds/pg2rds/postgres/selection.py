"""Which tables a migration moves, decided by PostgreSQL in one query.

Rules are pg2rds's: ``%`` matches any run of characters and everything else, ``_`` included, is literal
(DMS reads ``_`` and ``[`` as wildcards, so :mod:`pg2rds.dms.table_mappings` escapes them and the tables we
validate are exactly the tables DMS copies). The query is one round trip whatever the catalog's size:
rules travel as arrays and are matched with ``LIKE`` inside the server.

Selected are ordinary tables and leaf partitions (relkind ``r``), the relations that hold rows: DMS copies
partitions as tables of their own, and a partitioned parent holds no rows of its own (DMS would copy all
its partitions' rows through it again, so the mappings exclude parents by name).
"""

from collections.abc import Iterable
from typing import Any, NamedTuple

from pg2rds.spec import TableRule, TableSelection

#: Schemas that never hold user data.
SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'"
)


def _matching_cte(name: str, relkinds: str) -> str:
    """A CTE ``name(oid, schema_name, table_name)``: relations of ``relkinds`` the rules select."""
    return f"""
{name} AS (
    SELECT c.oid, n.nspname AS schema_name, c.relname AS table_name
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ({relkinds})
      AND {SYSTEM_SCHEMA_FILTER}
      AND EXISTS (SELECT 1 FROM unnest(%(inc_schema)s::text[], %(inc_table)s::text[]) AS r(s, t)
                  WHERE n.nspname LIKE r.s AND c.relname LIKE r.t)
      AND NOT EXISTS (SELECT 1 FROM unnest(%(exc_schema)s::text[], %(exc_table)s::text[]) AS r(s, t)
                      WHERE n.nspname LIKE r.s AND c.relname LIKE r.t)
)"""


#: A CTE ``selected(oid, schema_name, table_name)`` for the rules in :func:`selection_params`.
SELECTED_TABLES_CTE = _matching_cte("selected", "'r'")
#: The partitioned tables (parents, sub-partitioned partitions) the same rules reach.
PARTITIONED_PARENTS_CTE = _matching_cte("parents", "'p'")


class TableName(NamedTuple):
    schema: str
    table: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


def dms_pattern_to_like(pattern: str) -> str:
    """DMS ``%`` stays a wildcard; LIKE's other specials (``_`` and the escape ``\\``) become literal."""
    return pattern.replace("\\", "\\\\").replace("_", "\\_")


def selection_params(include: Iterable[TableRule], exclude: Iterable[TableRule]) -> dict[str, Any]:
    include, exclude = list(include), list(exclude)
    return {
        "inc_schema": [dms_pattern_to_like(rule.schema_name) for rule in include],
        "inc_table": [dms_pattern_to_like(rule.table_name) for rule in include],
        "exc_schema": [dms_pattern_to_like(rule.schema_name) for rule in exclude],
        "exc_table": [dms_pattern_to_like(rule.table_name) for rule in exclude],
    }


def select_tables(conn: Any, selection: TableSelection) -> list[TableName]:
    """The selected tables, ordered by schema and name (one query)."""
    with conn.cursor() as cur:
        cur.execute(
            f"WITH {SELECTED_TABLES_CTE} SELECT schema_name, table_name FROM selected ORDER BY 1, 2",
            selection_params(selection.include, selection.exclude),
        )
        return [TableName(schema, table) for schema, table in cur.fetchall()]


def partitioned_parents(conn: Any, selection: TableSelection) -> list[TableName]:
    """The partitioned tables the rules reach (one query). pg2rds never selects them (their rows are in
    the leaf partitions), but DMS would: the table mappings exclude each of them by name."""
    with conn.cursor() as cur:
        cur.execute(
            f"WITH {PARTITIONED_PARENTS_CTE} SELECT schema_name, table_name FROM parents ORDER BY 1, 2",
            selection_params(selection.include, selection.exclude),
        )
        return [TableName(schema, table) for schema, table in cur.fetchall()]
