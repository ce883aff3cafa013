"""A table's key as chunked verification uses it: which columns, and whether both servers order them alike.

The key is the primary key, else the unique index over NOT NULL columns with the fewest columns (no
expression, no predicate): either names every row by distinct values, so a range of it holds each row once
on each side, and its index serves range scans (``(k1, k2) >= (...) AND (k1, k2) < (...)``).

A range means the same rows on both servers only if both order the key alike. Numbers, uuids, dates and
the like order the same everywhere; text orders by its collation, which the two servers may not share (a
libc locale on one, ICU on the other, or one glibc before 2.28 and one after). For each collatable key
column both sides report their collation's identity (provider, locale, deterministic, recorded version
when both record one) and how it sorts a fixed set of probe strings chosen where collations disagree
(case, accents, punctuation, the glibc 2.28 changes); when anything differs, that column is compared in
byte order (``COLLATE "C"``) on both sides. That is always sound, but an ordinary index does not serve it,
so such a chunk scans its table (hashing only its own rows); an index ``(key COLLATE "C")`` on both sides
makes it an index range scan again.
"""

from typing import Any, NamedTuple

from psycopg2 import sql

from pg2rds.postgres.selection import TableName

#: The chosen key's columns in index order, each with: numeric (rendered bare), the collation's oid
#: (0: not collatable), its identity on this server, and the database's size figures for sampling.
_KEY = """
WITH t AS (SELECT to_regclass(format('%%I.%%I', %s, %s)) AS oid),
k AS (
    SELECT i.indrelid, i.indkey::int2[] AS cols,
           coalesce((to_jsonb(i) ->> 'indnkeyatts')::int, i.indnatts) AS nkey
    FROM pg_index i JOIN t ON i.indrelid = t.oid
    WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM unnest(i.indkey::int2[]) AS n(num)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = n.num
          WHERE NOT a.attnotnull)
    ORDER BY i.indisprimary DESC, i.indnatts, i.indexrelid
    LIMIT 1
)
SELECT a.attname, ty.typcategory = 'N', a.attcollation::int,
       CASE WHEN a.attcollation = 0 THEN ''
            WHEN co.collprovider = 'd' THEN concat_ws(':',
                coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'),
                coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale', d.datcollate),
                'true')
            ELSE concat_ws(':', co.collprovider,
                coalesce(to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'colliculocale', co.collcollate),
                coalesce(to_jsonb(co) ->> 'collisdeterministic', 'true'))
       END,
       CASE WHEN co.collprovider = 'd' THEN coalesce(to_jsonb(d) ->> 'datcollversion', '')
            ELSE coalesce(co.collversion, '') END,
       CASE WHEN a.attcollation = 0 THEN ''
            ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END
FROM k
CROSS JOIN LATERAL unnest(k.cols) WITH ORDINALITY AS n(num, pos)
JOIN pg_attribute a ON a.attrelid = k.indrelid AND a.attnum = n.num
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
CROSS JOIN pg_database d
WHERE d.datname = current_database() AND n.pos <= k.nkey
ORDER BY n.pos
"""

#: Strings on whose order collations disagree: case, accents, punctuation and spaces (glibc 2.28 changed
#: how these sort), digits, non-Latin scripts, the empty string.
PROBES = [
    "", " ", "a", "A", "b", "B", "z", "Z", "ä", "é", "e", "f", "ß", "ss", "1", "10", "9", "1-1", "11",
    "1 1", "a-b", "ab", "a b", "a_b", "-a", "_a", "a.b", "ω", "Ω", "中", "😀", "ǅ", "Ø", "o",
]  # fmt: skip


class KeyColumn(NamedTuple):
    name: str
    #: A number: rendered without quotes in descriptions.
    bare: bool
    #: How this server orders the column: '' when it is not collatable (ordered alike everywhere).
    ordering: str
    #: The collation's recorded version ('' when none is recorded).
    version: str


def table_key(conn: Any, table: TableName) -> list[KeyColumn]:
    """The key's columns on this server (empty: no primary or unique not-null key, or no such table)."""
    with conn.cursor() as cur:
        cur.execute(_KEY, (table.schema, table.table))
        rows = cur.fetchall()
        collations = [collation for *_, collation in rows if collation]
        probes = _probe_orders(cur, collations) if collations else {}
    return [
        KeyColumn(name, bare, f"{identity}:{probes[collation]}" if collation else "", version)
        for name, bare, _, identity, version, collation in rows
    ]


def _probe_orders(cur: Any, collations: list[str]) -> dict[str, str]:
    """How each collation (a quoted, qualified name from the catalog) sorts :data:`PROBES` (one query)."""
    distinct = sorted(set(collations))
    cur.execute(
        sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                # the names come from quote_ident in the catalog query: a collation name as SQL
                sql.SQL("array_to_string(ARRAY(SELECT p FROM unnest(%s::text[]) p ORDER BY p COLLATE {}, "
                        'p COLLATE "C"), chr(31))').format(sql.SQL(name))
                for name in distinct
            )
        ),
        [PROBES] * len(distinct),
    )  # fmt: skip
    return dict(zip(distinct, cur.fetchone(), strict=True))


def byte_order_needed(source: list[KeyColumn], target: list[KeyColumn]) -> list[bool]:
    """Per source key column: must it be compared ``COLLATE "C"`` on both sides? Yes when it is collatable
    and the target's column orders differently (or is missing, or its collation cannot be told apart)."""
    on_target = {column.name: column for column in target}
    needed = []
    for column in source:
        other = on_target.get(column.name)
        if not column.ordering and (other is None or not other.ordering):
            needed.append(False)
            continue
        same = other is not None and _normal(other.ordering) == _normal(column.ordering)
        versions = {column.version, other.version} if other is not None else set()
        needed.append(not same or ("" not in versions and len(versions) > 1))
    return needed


def _normal(ordering: str) -> str:
    """``en_US.UTF-8`` and ``en_US.utf8`` name one locale; ``POSIX`` is ``C``."""
    provider, locale, rest = (ordering.split(":", 2) + ["", ""])[:3]
    locale = locale.lower().replace("-", "")
    return f"{provider}:{'c' if locale == 'posix' else locale}:{rest}"
