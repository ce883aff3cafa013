"""How a row is hashed for a checksum: its text form by default, its stored values where that is safe.

The checksum of a table or range is a sum of one 64-bit hash per row (order-independent). The default hash
is ``hashtextextended(t::text, 0)``: the row's text, as both sessions render it (pinned by
:func:`pg2rds.postgres.verify.pin_text_rendering`). Rendering every column as text is most of its cost.

Hashing the stored values (``hash_record_extended``, PostgreSQL 14+) skips the rendering: about a third
less CPU on pgbench_accounts (bench/verification_throughput.py). But a type's hash follows its *equality*,
not its text, so it is used only where equality is identity, for every column, on both sides:

- ``numeric`` is out: 1.0 = 1.00, so a changed scale would be missed; ``float`` too (0 = -0),
  ``interval`` ('1 day' = '24 hours'), ``citext`` and any extension type, enums (their hash is the
  label's oid, which differs between databases), domains, arrays and composites;
- text columns only with a deterministic collation (a nondeterministic one makes 'a' = 'A');
- ``character(n)`` only with its length (``bpchar`` without one ignores trailing blanks when hashing);
- the columns' types, in order, exactly the same on both sides (a type's hash is its own: int4 and
  int8, or text and varchar, are not assumed to hash alike).

``hash_record_extended`` combines its columns' hashes linearly (``31 · h(a) + h(b)``), so a sum of it over
rows is a sum per column: values swapped between two rows (two accounts' balances) would leave the sum
unchanged. Each row's combined hash is therefore hashed again (``hashint8extended``) before the sum, which
makes a row's contribution depend on its columns together, as the text hash does.
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
VALUE_HASH = sql.SQL("coalesce(sum(hashint8extended(hash_record_extended(t, 0), 0)), 0)::text")

_COLUMNS = """
SELECT a.atttypid::int, a.atttypmod, format_type(a.atttypid, a.atttypmod),
       coalesce(c.collisdeterministic, true)
FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
WHERE a.attrelid = to_regclass(format('%%I.%%I', %s, %s)) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


class Column(NamedTuple):
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


def by_value(source_columns: list[Column], target_columns: list[Column]) -> bool:
    """Whether rows may be hashed by value: the same columns on both sides, each hashing its value."""
    return (
        bool(source_columns)
        and source_columns == target_columns
        and all(column.hashes_its_value for column in source_columns)
    )


def row_digest(source: Any, target: Any, schema: str, table: str) -> sql.Composable:
    """The checksum expression (over rows aliased ``t``) both sides use for this table."""
    oldest = min(source.server_version, target.server_version)
    if oldest < HASHTEXTEXTENDED_SINCE:
        return MD5_HASH
    if oldest >= HASH_RECORD_SINCE and by_value(
        columns(source, schema, table), columns(target, schema, table)
    ):
        return VALUE_HASH
    return TEXT_HASH
