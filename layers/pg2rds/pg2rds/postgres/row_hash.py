"""How a row is hashed for a checksum: its text form by default; column by column, each by its stored value
where that is as strict, else by its own text, where both servers allow.

The checksum of a table or range is a sum of one 64-bit hash per row (order-independent). The plain hash
is ``hashtextextended(t::text, 0)``: the row's text, as both sessions render it (pinned by
:func:`pg2rds.postgres.verify.pin_comparing_session`). Rendering every column as text is most of its cost
(a ``timestamptz`` or ``numeric`` renders slowly), and rendering them as one row's text costs as much
again (``record_out`` looks up each column's type and quotes each value).

On PostgreSQL 14 and later both sides hash a row part by part instead: each column by its stored value
where that is as strict as its text, with its type's own hash function (``hashint4extended``,
``timestamp_hash_extended``...), each other column by its own text (``c::text``, its type's output), and
the few whose cast to text is not their output (``boolean`` gives 'true' where the row shows 't',
``character`` drops trailing blanks, ``inet`` adds the netmask, ``xml`` keeps an encoding declaration)
by the text of a row of them (``ROW(c1, c2)::text``). On the same chunks this takes 0.32 of the text
hash's time on pgbench_accounts and 0.38 on a table of bigint, numeric, text, timestamptz, int and
boolean; the previous form, one row of the value columns and the others' row text through
``hash_record_extended``, took 0.45 and 0.57 (bench/verification_throughput.py, the three side by side in
one run).

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

The columns are named in the expression, in the source's order, on both sides: the target's may list them
in another order, or have more (not compared: they hold none of the source's data); where it lacks one of
the source's names, the plain hash compares the rows' text whatever the names.

Each part has its own seed (its position), so two columns holding the same value, or a value and a NULL
swapped between two columns, do not cancel out; a NULL, for which a type's function returns NULL, counts
as 0 (else the whole row would drop out of the sum), and the empty string's hash is not 0, so the two stay
apart, as in the row's text. The parts are combined by xor, and each row's
combined hash is hashed again (``hashint8extended``) before the sum: a sum of anything linear in the
columns (xor, or ``hash_record_extended``'s ``31 · h(a) + h(b)``) would let values swapped between two
rows (two accounts' balances) keep the sum; hashed again, a row's contribution depends on its columns
together, as the text hash's does.
"""

from typing import Any, NamedTuple

from psycopg2 import sql

#: ``hashtextextended`` exists since PostgreSQL 11; older servers hash the text with md5.
HASHTEXTEXTENDED_SINCE = 110000
#: ``hash_record_extended`` exists since PostgreSQL 14.
HASH_RECORD_SINCE = 140000

#: Built-in types (by oid, fixed in every PostgreSQL) whose equality is identity of the stored value, so
#: that equal hashes mean equal text, each with the call that hashes a value of it with a seed: the type's
#: own extended hash function (its hash operator class's), or None where that function cannot be called
#: from SQL (bytea's takes ``internal``; date's takes an integer, and no cast turns every date into one),
#: and those columns are hashed together by ``hash_record_extended``. ``boolean`` goes through ``int``;
#: ``timestamptz`` through UTC, where each local time is one instant (a zone with summer time repeats an
#: hour in autumn). Types: bool, bytea, int8, int2, int4, text, oid, bpchar (with a length), varchar,
#: date, time, timestamp, timestamptz, uuid.
IDENTITY_HASHES: dict[int, str | None] = {
    16: "hashint4extended({}::integer, {})",
    17: None,
    20: "hashint8extended({}, {})",
    21: "hashint2extended({}, {})",
    23: "hashint4extended({}, {})",
    25: "hashtextextended({}, {})",
    26: "hashoidextended({}, {})",
    1042: "hashbpcharextended({}, {})",
    1043: "hashtextextended({}, {})",
    1082: None,
    1083: "time_hash_extended({}, {})",
    1114: "timestamp_hash_extended({}, {})",
    1184: "timestamp_hash_extended({} AT TIME ZONE 'UTC', {})",
    2950: "uuid_hash_extended({}, {})",
}
_BPCHAR = 1042

#: Each row's text hashed whole: with ``hashtextextended``, or with md5 (before 11, or as UTF-8 bytes across
#: encodings: ``hashtextextended`` takes text in the server's encoding).
_ROW_TEXT_HASH = "coalesce(sum(hashtextextended({}, 0)), 0)::text"
_ROW_TEXT_MD5 = "coalesce(sum(('x' || substr(md5({}), 1, 16))::bit(64)::bigint::numeric), 0)::text"


def row_text_digest(row_text: sql.Composable, encoding_shared: bool, server_version: int) -> sql.Composable:
    """The checksum of ``row_text``, each row's text (``t::text``, or a row of named columns), hashed whole:
    the plain hash, and every server's before 14, which have no column-by-column hash."""
    if encoding_shared and server_version >= HASHTEXTEXTENDED_SINCE:
        return sql.SQL(_ROW_TEXT_HASH).format(row_text)
    text = row_text if encoding_shared else sql.SQL("convert_to({}, 'UTF8')").format(row_text)
    return sql.SQL(_ROW_TEXT_MD5).format(text)


_ROW = sql.SQL("t::text")
TEXT_HASH = row_text_digest(_ROW, True, HASHTEXTEXTENDED_SINCE)
MD5_HASH = row_text_digest(_ROW, True, HASHTEXTEXTENDED_SINCE - 1)
#: The row's text as UTF-8 bytes, for servers of different encodings (see :func:`same_encoding`).
UTF8_ROW_HASH = row_text_digest(_ROW, False, HASHTEXTEXTENDED_SINCE)
#: Types whose stored value is text in the server's encoding: the same characters are other bytes, and
#: another hash, on a server of another encoding.
ENCODED_TYPES = frozenset({25, 1042, 1043})
#: No checksum, rows only counted (``verification: counts``).
COUNT_ONLY = sql.SQL("''")
_ROW_HASH = sql.SQL("coalesce(sum(hashint8extended({}, 0)), 0)::text")

#: Per column: name, type, typmod, whether its collation is deterministic, and whether its
#: ``::text`` is its type's output (as in the row's text): only where the cast is the output function (no
#: cast in pg_cast, or an I/O one), or varchar's. Not where a function casts it (``boolean`` gives 'true'
#: where the row shows 't', ``character`` drops trailing blanks, ``inet`` adds the netmask), nor where the
#: stored bytes are taken as text (``xml`` keeps an encoding declaration its output drops, so a target
#: loaded from that output holds other bytes; ``citext``, whose bytes are its output, is taken alike
#: rather than trusted by name), nor for a domain over a domain (its base type is not looked up further).
_COLUMNS = """
SELECT a.attname, a.atttypid::int, a.atttypmod, coalesce(c.collisdeterministic, true),
       b.typtype <> 'd' AND (b.oid = 'varchar'::regtype OR NOT EXISTS (
           SELECT FROM pg_cast k WHERE k.castsource = b.oid AND k.casttarget = 'text'::regtype
                                 AND k.castmethod <> 'i'))
FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
JOIN pg_type ty ON ty.oid = a.atttypid
JOIN pg_type b ON b.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
WHERE a.attrelid = to_regclass(format('%%I.%%I', %s, %s)) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

#: How a column is hashed: by its stored value, by its own text (``::text``), or in one text of a row of
#: such columns (``ROW(...)::text``), for those whose ``::text`` is not their output.
VALUE, TEXT, ROW_TEXT = "value", "text", "row text"


class Column(NamedTuple):
    name: str
    type_oid: int
    typmod: int
    deterministic: bool
    text_is_output: bool

    @property
    def hashes_its_value(self) -> bool:
        """Whether this column's hash changes exactly when its text does (see the module's docstring)."""
        if self.type_oid not in IDENTITY_HASHES or not self.deterministic:
            return False
        return self.type_oid != _BPCHAR or self.typmod >= 0


def columns(conn: Any, schema: str, table: str) -> list[Column]:
    """The table's columns in order (one catalog query); empty if the table does not exist. Only called on
    servers of 14 and later, which all have ``pg_collation.collisdeterministic``."""
    with conn.cursor() as cur:
        cur.execute(_COLUMNS, (schema, table))
        return [Column(*row) for row in cur.fetchall()]


def same_encoding(source: Any, target: Any) -> bool:
    """Whether both servers store text in the same encoding (libpq reports ``server_encoding`` when it
    connects: no query). A LATIN1 source and a UTF8 target, a classic pair, hold the same characters as
    other bytes; text is then hashed as UTF-8 on both sides (``convert_to``), never by its stored bytes."""
    return source.get_parameter_status("server_encoding") == target.get_parameter_status("server_encoding")


_COLUMN_NAMES = """
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = to_regclass(format('%%I.%%I', %s, %s)) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def column_names(conn: Any, schema: str, table: str) -> list[str]:
    """The table's column names in order (one catalog query that every server DMS reads answers)."""
    with conn.cursor() as cur:
        cur.execute(_COLUMN_NAMES, (schema, table))
        return [name for (name,) in cur.fetchall()]


def shared_names(source_names: list[str], target_names: list[str]) -> list[str] | None:
    """The source's column names when the target has each of them (in any order, or with more), else None.
    In the same order on both sides there is nothing to name: None too, and the row's own text serves."""
    if not source_names or source_names == target_names or not set(source_names) <= set(target_names):
        return None
    return source_names


def named_row(names: list[str]) -> sql.Composable:
    """The text of a row of the named columns, in that order on both sides: a target that lists the
    source's columns in another order, or has more, holds the same rows (its ``t::text`` would not)."""
    return sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(name)) for name in names)
    )


def hashing(
    source_columns: list[Column], target_columns: list[Column], encoding_shared: bool = True
) -> list[str] | None:
    """For each source column, how it is hashed (:data:`VALUE`, :data:`TEXT` or :data:`ROW_TEXT`); None if
    the target lacks one of the source's column names, and the rows are hashed by their text whole. By value
    only where the column is the same on both sides; by its own text only where that is its output on both.

    Columns are matched by name, as DMS loads them: a target whose table lists them in another order holds
    the same rows (its row text, ``t::text``, would not), and a column only the target has holds none of
    the source's data, so it is not compared."""
    theirs_by_name = {column.name: column for column in target_columns}
    if not source_columns or any(column.name not in theirs_by_name for column in source_columns):
        return None
    return [
        VALUE
        if mine == theirs
        and mine.hashes_its_value
        and (encoding_shared or mine.type_oid not in ENCODED_TYPES)
        else TEXT
        if mine.text_is_output and theirs.text_is_output
        else ROW_TEXT
        for mine, theirs in ((column, theirs_by_name[column.name]) for column in source_columns)
    ]


def _part(template: str | None, columns: list[sql.Composable], seed: int) -> sql.Composable:
    """One part of a row's hash, never NULL: a column by its type's own hash (a NULL as 0), or a row of
    columns whose hash cannot be called alone (``hash_record_extended``, which hashes a NULL as 0 itself)."""
    if template is None:
        return sql.SQL("hash_record_extended(ROW({}), {})").format(
            sql.SQL(", ").join(columns), sql.Literal(seed)
        )
    (column,) = columns
    return sql.SQL("coalesce({}, 0)").format(sql.SQL(template).format(column, sql.Literal(seed)))


_TEXT = 'hashtextextended({}::text COLLATE "C", {})'
_TEXT_AS_UTF8 = "hashtextextended(encode(convert_to({}::text, 'UTF8'), 'hex') COLLATE \"C\", {})"


def column_digest(
    names: list[str], kinds: list[str], types: list[int], encoding_shared: bool = True
) -> sql.Composable:
    """The checksum of rows hashed part by part (see the module): each column by its value with its type's
    function (those without one together) or by its own text, and last the text of a row of the others;
    each part with its own seed, so equal values in two columns do not cancel out, the parts combined by
    ``#`` (xor) and the result hashed again."""
    text = _TEXT if encoding_shared else _TEXT_AS_UTF8
    column: dict[str, sql.Composable] = {name: sql.SQL("t.{}").format(sql.Identifier(name)) for name in names}
    by_kind = list(zip(names, kinds, types, strict=True))
    parts: list[tuple[list[sql.Composable], str | None]] = [
        ([column[name]], IDENTITY_HASHES[oid] if kind == VALUE else text)
        for name, kind, oid in by_kind
        if (kind == VALUE and IDENTITY_HASHES[oid]) or kind == TEXT
    ]
    together = [column[name] for name, kind, oid in by_kind if kind == VALUE and not IDENTITY_HASHES[oid]]
    if together:
        parts.append((together, None))
    in_row = [column[name] for name, kind, _ in by_kind if kind == ROW_TEXT]
    if in_row:
        parts.append(([sql.SQL("ROW({})").format(sql.SQL(", ").join(in_row))], text))
    combined = sql.SQL(" # ").join(_part(template, cols, seed) for seed, (cols, template) in enumerate(parts))
    return _ROW_HASH.format(combined)


def row_digest(source: Any, target: Any, schema: str, table: str, checksums: bool = True) -> sql.Composable:
    """The checksum expression (over rows aliased ``t``) both sides use for this table; ``''`` when only
    rows are counted (``checksums=False``)."""
    if not checksums:
        return COUNT_ONLY
    oldest = min(source.server_version, target.server_version)
    shared = same_encoding(source, target)
    if oldest < HASH_RECORD_SINCE:
        names = shared_names(column_names(source, schema, table), column_names(target, schema, table))
        return row_text_digest(_ROW if names is None else named_row(names), shared, oldest)
    source_columns = columns(source, schema, table)
    kinds = hashing(source_columns, columns(target, schema, table), shared)
    if kinds is None:
        return row_text_digest(_ROW, shared, oldest)
    names, types = [c.name for c in source_columns], [c.type_oid for c in source_columns]
    return column_digest(names, kinds, types, shared)
