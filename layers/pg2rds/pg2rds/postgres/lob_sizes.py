"""How large the selected tables' LOBs are, measured on the source in one bounded statement.

In limited LOB mode DMS cuts every LOB longer than ``LobMaxSize`` (pg2rds sets ``FailTasksOnLobTruncation``,
so the task fails instead), and AWS recommends limited mode with a limit above the largest LOB. LOBs are
the PostgreSQL types DMS maps to CLOB/NCLOB/BLOB ("Source data types for PostgreSQL"): text, unbounded
varchar, bytea, json, jsonb, xml, arrays, hstore, composite types, tsvector, tsquery, path and polygon.

Bounded on a database of any size: a table up to ``EXACT_TABLE_PAGES`` (heap and TOAST) is read whole
while the tables read whole stay within ``EXACT_BUDGET_PAGES`` in all; every other table is sampled
(``TABLESAMPLE SYSTEM``) so that all samples together read about ``SAMPLE_BUDGET_PAGES`` heap pages. Each
measured column says which it was: a sampled maximum is a lower bound. For text, varchar and bytea the
length comes from the TOAST header without decompressing; other types are measured as the text DMS
moves. The statement runs under ``MEASURE_TIMEOUT`` and reads nothing but the selected tables.
"""

from dataclasses import dataclass
from typing import Any

import psycopg2.errors

from pg2rds.postgres.selection import SELECTED_TABLES_CTE, selection_params
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING

EXACT_TABLE_PAGES = 8192  # 64 MiB
EXACT_BUDGET_PAGES = 131072  # 1 GiB read whole in all
SAMPLE_BUDGET_PAGES = 131072  # 1 GiB of heap sampled in all
MIN_SAMPLE_PAGES = 16
MEASURE_TIMEOUT = "120s"

#: One row: the largest LOB (bytes and column), how many tables were read whole and sampled, and the
#: columns above the limit (``limit_bytes`` NULL: none) as "column (N KB, exact|sampled)".
LOB_SIZES_QUERY = f"""
SET statement_timeout = %(timeout)s;
WITH {SELECTED_TABLES_CTE},
lob_columns AS (
    SELECT s.oid, s.schema_name, s.table_name, a.attnum,
           format('%%I.%%I.%%I', s.schema_name, s.table_name, a.attname) AS display,
           CASE WHEN coalesce(nullif(t.typbasetype, 0), t.oid) = 'bytea'::regtype
                THEN format('octet_length(%%I)', a.attname)
                ELSE format('octet_length(%%I::text)', a.attname) END AS expr
    FROM selected s
    JOIN pg_attribute a ON a.attrelid = s.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    WHERE has_table_privilege(s.oid, 'SELECT')
      AND (coalesce(nullif(t.typbasetype, 0), t.oid) IN (
               'text'::regtype, 'bytea'::regtype, 'json'::regtype, 'jsonb'::regtype, 'xml'::regtype,
               'tsvector'::regtype, 'tsquery'::regtype, 'path'::regtype, 'polygon'::regtype)
           OR (a.atttypid = 'varchar'::regtype AND a.atttypmod = -1)
           OR t.typcategory = 'A' OR t.typtype = 'c' OR t.typname = 'hstore')
),
per_table AS (
    SELECT oid, schema_name, table_name,
           pg_table_size(oid) / 8192 AS pages, greatest(pg_relation_size(oid) / 8192, 1) AS heap_pages,
           array_agg(display ORDER BY attnum) AS displays,
           string_agg(format('max(%%s) AS m%%s', expr, i), ', ' ORDER BY attnum) AS maxima
    FROM (SELECT l.*, row_number() OVER (PARTITION BY oid ORDER BY attnum) AS i FROM lob_columns l) l
    GROUP BY oid, schema_name, table_name
),
planned AS (
    SELECT p.*, pages <= %(exact_pages)s
                AND sum(pages) OVER (ORDER BY pages, oid) <= %(exact_budget)s AS exact
    FROM per_table p
),
sampling AS (
    SELECT p.*, greatest(%(min_sample)s,
                        %(sample_budget)s / nullif(count(*) FILTER (WHERE NOT exact) OVER (), 0))
                AS sample_pages
    FROM planned p
),
measured AS MATERIALIZED (
    SELECT s.exact, s.displays,
           query_to_xml(format('SELECT %%s FROM %%I.%%I%%s', s.maxima, s.schema_name, s.table_name,
                               CASE WHEN s.exact THEN ''
                                    ELSE format(' TABLESAMPLE SYSTEM (%%s)',
                                                least(100, round(100.0 * s.sample_pages / s.heap_pages, 6)))
                               END), false, true, '') AS x
    FROM sampling s
),
columns_measured AS (
    SELECT m.exact, d.display,
           (xpath('/row/m' || d.i || '/text()', m.x))[1]::text::bigint AS bytes
    FROM measured m, unnest(m.displays) WITH ORDINALITY AS d(display, i)
)
SELECT coalesce(max(bytes), 0),
       coalesce((array_agg(display ORDER BY bytes DESC NULLS LAST))[1], ''),
       (SELECT count(*) FROM measured WHERE exact),
       (SELECT count(*) FROM measured WHERE NOT exact),
       count(*) FILTER (WHERE bytes > %(limit_bytes)s),
       coalesce((array_agg(format('%%s (%%s KB, %%s)', display, ceil(bytes / 1024.0),
                                  CASE WHEN exact THEN 'exact' ELSE 'sampled' END)
                           ORDER BY bytes DESC) FILTER (WHERE bytes > %(limit_bytes)s))[1:%(max_objects)s],
                '{{}}')
FROM columns_measured
"""


@dataclass(frozen=True)
class LobSizes:
    largest_bytes: int
    largest_column: str
    exact_tables: int
    sampled_tables: int
    oversized: int
    oversized_names: list[str]

    @property
    def largest_kb(self) -> int:
        return -(-self.largest_bytes // 1024)

    @property
    def how(self) -> str:
        """How the figures were obtained, for the finding's message."""
        return (
            f"measured on the source: {self.exact_tables} table(s) with LOB columns read whole, "
            f"{self.sampled_tables} sampled (a sampled maximum is a lower bound)"
        )


def measure_lob_sizes(cur: Any, spec: MigrationSpec, limit_kb: int | None) -> LobSizes | None:
    """The selected tables' LOB sizes, or None if measuring took longer than ``MEASURE_TIMEOUT``."""
    params = selection_params(spec.tables.include, spec.tables.exclude)
    params.update(
        timeout=MEASURE_TIMEOUT,
        exact_pages=EXACT_TABLE_PAGES,
        exact_budget=EXACT_BUDGET_PAGES,
        sample_budget=SAMPLE_BUDGET_PAGES,
        min_sample=MIN_SAMPLE_PAGES,
        limit_bytes=None if limit_kb is None else limit_kb * 1024,
        max_objects=MAX_OBJECTS_PER_FINDING,
    )
    try:
        cur.execute(LOB_SIZES_QUERY, params)
    except psycopg2.errors.QueryCanceled:
        return None
    largest, column, exact, sampled, oversized, names = cur.fetchone()
    return LobSizes(int(largest), column, exact, sampled, oversized, list(names))
