"""How a row is hashed for a checksum: its text form by default, its columns' stored values where that is
as strict.

The checksum of a table or range is a sum of one 64-bit hash per row (order-independent). The plain hash
is ``hashtextextended(t::text, 0)``: the row's text, as both sessions render it (pinned by
:func:`pg2rds.postgres.verify.pin_text_rendering`). Rendering every column as text is most of its cost
(a ``timestamptz`` or ``numeric`` renders slowly).

On PostgreSQL 14 and later both sides hash a row of the table's columns instead
(``hash_record_extended(ROW(...))``): each column by its stored value where that is as strict as its
text, and the others by their text, rendered together as in the row's text (``ROW(c1, c2)::text``; a cast
of each to text would not do: ``bpchar`` casts drop trailing blanks, ``inet`` ones add the netmask). On
the same chunks that takes 0.54 of the time on pgbench_accounts and 0.59 on a table of bigint, numeric,
text, timestamptz, int and boolean (bench/verification_throughput.py).

A type's hash follows its *equality*, not its text, so a column is hashed by value only where equality is
identity, on both sides:

- not ``numeric`` (1.0 = 1.00: a changed scale would be missed), floats (0 = -0), ``interval``
  ('1 day' = '24 hours'), ``citext`` or any extension type, enums (their hash is the label's oid, which
  differs between databases), domains, arrays or composites: these are hashed by their text;
- text columns only in a deterministic collation (a nondeterministic one makes 'a' = 'A'); the text of
  the other columns is hashed in "C";
- ``character(n)`` only with its length (``bpchar`` without one ignores trailing blanks when hashing);
- the column's type exactly the same on both sides (int4 and int8, or uuid and text, are not assumed to
  hash alike: such a column is hashed by its text, as the plain hash would).

The columns are named in the row, so both sides must have the same column names in the same order (else
the plain hash, which compares the text whatever the names). A NULL hashes to 0 and the empty string does
not, so the two stay apart, as in the row's text.

``hash_record_extended`` combines its columns' hashes linearly (``31 · h(a) + h(b)``), so a sum of it over
rows is a sum per column: values swapped between two rows (two accounts' balances) would leave the sum
unchanged modulo 2⁶⁴. Each row's combined hash is therefore hashed again (``hashint8extended``) before
the sum, which makes a row's contribution depend on its columns together, as the text hash does.
"""

from typing import Any, NamedTuple

from psycopg2 import sql

#: ``hashtextextended`` exists since PostgreSQL 11; older servers hash the text with md5.
HASHTEXTEXTENDED_SINCE = 110000
#: ``hash_record_extended`` exists since PostgreSQL 14.
HASH_RECORD_SINCE = 140000

#: Built-in types (by oid, fixed in every PostgreSQL) whose equality is identity of the stored value, so
#: that equal hashes mean equal text: bool, bytea, int8, int2, int4, text, oid, bpchar (with a length),
#: varchar, date, time, timestamp, timestamptz, uuid.
IDENTITY_HASHED_TYPES = frozenset({16, 17, 20, 21, 23, 25, 26, 1042, 1043, 1082, 1083, 1114, 1184, 2950})
_BPCHAR = 1042

TEXT_HASH = sql.SQL("coalesce(sum(hashtextextended(t::text, 0)), 0)::text")
MD5_HASH = sql.SQL("coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text")
#: No checksum, rows only counted (``verification: counts``).
COUNT_ONLY = sql.SQL("''")
_ROW_HASH = sql.SQL("coalesce(sum(hashint8extended(hash_record_extended(ROW({}), 0), 0)), 0)::text")

_COLUMNS = """
SELECT a.attname, a.atttypid::int, a.atttypmod, format_type(a.atttypid, a.atttypmod),
       coalesce(c.collisdeterministic, true)
FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
WHERE a.attrelid = to_regclass(format('%%I.%%I', %s, %s)) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


class Column(NamedTuple):
    name: str
    type_oid: int
    typmod: int
    type_name: str
    deterministic: bool

    @property
    def hashes_its_value(self) -> bool:
        """Whether this column's hash changes exactly when its text does (see the module's docstring)."""
        if self.type_oid not in IDENTITY_HASHED_TYPES or not self.deterministic:
            return False
        return self.type_oid != _BPCHAR or self.typmod >= 0


def columns(conn: Any, schema: str, table: str) -> list[Column]:
    """The table's columns in order (one catalog query); empty if the table does not exist. Only called on
    servers of 14 and later, which all have ``pg_collation.collisdeterministic``."""
    with conn.cursor() as cur:
        cur.execute(_COLUMNS, (schema, table))
        return [Column(*row) for row in cur.fetchall()]


def by_value(source_columns: list[Column], target_columns: list[Column]) -> list[bool] | None:
    """For each column, whether it is hashed by its value (else by its text); None if the two sides' column
    names differ, and the rows are hashed by their text whole."""
    if not source_columns or [c.name for c in source_columns] != [c.name for c in target_columns]:
        return None
    return [
        mine == theirs and mine.hashes_its_value
        for mine, theirs in zip(source_columns, target_columns, strict=True)
    ]


def value_digest(names: list[str], values: list[bool]) -> sql.Composable:
    """The checksum of a row of the columns hashed by value and, last, the text of a row of the others
    (see the module)."""
    column = {name: sql.SQL("t.{}").format(sql.Identifier(name)) for name in names}
    parts = [column[name] for name, value in zip(names, values, strict=True) if value]
    by_text = [column[name] for name, value in zip(names, values, strict=True) if not value]
    if by_text:
        parts.append(sql.SQL('ROW({})::text COLLATE "C"').format(sql.SQL(", ").join(by_text)))
    return _ROW_HASH.format(sql.SQL(", ").join(parts))


def row_digest(source: Any, target: Any, schema: str, table: str, checksums: bool = True) -> sql.Composable:
    """The checksum expression (over rows aliased ``t``) both sides use for this table; ``''`` when only
    rows are counted (``checksums=False``)."""
    if not checksums:
        return COUNT_ONLY
    oldest = min(source.server_version, target.server_version)
    if oldest < HASHTEXTEXTENDED_SINCE:
        return MD5_HASH
    if oldest < HASH_RECORD_SINCE:
        return TEXT_HASH
    source_columns = columns(source, schema, table)
    values = by_value(source_columns, columns(target, schema, table))
    if values is None or not any(values):  # nothing to gain over the row's text
        return TEXT_HASH
    return value_digest([c.name for c in source_columns], values)
