"""Which columns a comparison hashes by value and which by text, and that no mix can say "equal" for data
that differ, or "differ" for identical data: each column type hashed by value, each that must be hashed by
its text, on real PostgreSQL."""

import uuid

import psycopg2
import psycopg2.errors
import pytest

from pg2rds.postgres.row_hash import (
    ROW_TEXT,
    TEXT,
    TEXT_HASH,
    UTF8_ROW_HASH,
    VALUE,
    column_names,
    columns,
    hashing,
    named_row,
    row_digest,
    row_text_digest,
    same_encoding,
    shared_names,
)
from pg2rds.postgres.selection import TableName
from pg2rds.postgres.verify import compare_tables, pin_comparing_session, table_checksum
from pg2rds_emulator.sample import load_pagila

TABLE = TableName("public", "x")

#: (column type, a value, another value): hashed by value, and the two values told apart.
VALUE_HASHED = [
    ("boolean", "true", "false"),
    ("smallint", "1", "2"),
    ("integer", "1", "2"),
    ("bigint", "1", "2"),
    ("oid", "1", "2"),
    ("text", "a", "b"),
    ("varchar(10)", "a", "b"),
    ("character(4)", "ab", "ac"),
    ("bytea", "\\x01", "\\x02"),
    ("uuid", "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"),
    ("date", "2026-11-28", "2026-11-29"),
    ("time", "10:00", "10:00:00.000001"),
    ("timestamp", "2026-11-28 10:00", "2026-11-28 10:00:00.000001"),
    ("timestamptz", "2026-11-28 10:00+00", "2026-11-28 10:00+01"),
]

#: (column type, a value, a value the type calls equal but whose text differs, setup on both sides): their
#: hash would call them equal, so these columns are hashed by their text, which tells them apart.
EQUAL_BUT_DIFFERENT = [
    ("numeric", "1.0", "1.00", "", TEXT),
    ("double precision", "0", "-0", "", TEXT),
    ("interval", "1 day", "24 hours", "", TEXT),
    # character's cast to text drops trailing blanks, so its text is taken from the row's.
    ("bpchar", "a", "a ", "", ROW_TEXT),
    (
        'text COLLATE "ci"',
        "a",
        "A",
        "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
        TEXT,
    ),
    ("citext", "a", "A", "CREATE EXTENSION citext", ROW_TEXT),
]


def _table(db, column_type: str, values: list[str], setup: str = "") -> None:
    if setup:
        db.execute(setup)
    db.execute(f"CREATE TABLE x (id int, v {column_type})")
    for index, value in enumerate(values):
        db.execute("INSERT INTO x VALUES (%s, %s)", (index, value))


def _compare(source_db, target_db):
    """(how each column is hashed, None for the row's text whole; the comparison)."""
    with source_db.connect() as source, target_db.connect() as target:
        values = hashing(columns(source, *TABLE), columns(target, *TABLE), same_encoding(source, target))
        digest = row_digest(source, target, *TABLE)
        assert (digest in (TEXT_HASH, UTF8_ROW_HASH)) == (values is None)
        (comparison,) = compare_tables(source, target, [TABLE])
    return values, comparison


@pytest.mark.parametrize(("column_type", "value", "other"), VALUE_HASHED, ids=[t for t, _, _ in VALUE_HASHED])
def test_a_value_hashed_type_tells_two_values_apart(source_db, target_db, column_type, value, other) -> None:
    _table(source_db, column_type, [value, other])
    _table(target_db, column_type, [value, other])
    values, same = _compare(source_db, target_db)
    assert values == [VALUE, VALUE] and same.matches
    target_db.execute("UPDATE x SET v = %s WHERE id = 0", (other,))
    _, changed = _compare(source_db, target_db)
    assert not changed.matches and changed.source_rows == changed.target_rows == 2


@pytest.mark.parametrize(("column_type", "value", "other"), VALUE_HASHED, ids=[t for t, _, _ in VALUE_HASHED])
def test_a_row_with_a_null_still_counts_in_the_checksum(
    source_db, target_db, column_type, value, other
) -> None:
    """A NULL hashes to NULL in each type's own function: the row's other columns must still be compared."""
    _table(source_db, column_type, [None])
    _table(target_db, column_type, [None])
    target_db.execute("UPDATE x SET id = 7")
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE, VALUE] and not comparison.matches


@pytest.mark.parametrize("column_type", ["integer", "text", "date", "bytea"])
def test_values_swapped_between_columns_of_a_row_differ(source_db, target_db, column_type) -> None:
    """Each column's hash has its own seed: with one seed, two columns' hashes combined by xor would not
    tell (1, 2) from (2, 1), nor (1, NULL) from (NULL, 1)."""
    value, other = {"integer": ("1", "2"), "text": ("a", "b"), "date": ("2026-11-28", "2026-11-29"),
                    "bytea": ("\\x01", "\\x02")}[column_type]  # fmt: skip
    for db in (source_db, target_db):
        db.execute(f"CREATE TABLE x (id int, a {column_type}, b {column_type}, c {column_type})")
    source_db.execute(
        "INSERT INTO x VALUES (1, %s, %s, %s), (2, %s, NULL, %s)", (value, other, value, value, other)
    )
    target_db.execute(
        "INSERT INTO x VALUES (1, %s, %s, %s), (2, NULL, %s, %s)", (other, value, value, value, other)
    )
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE] * 4 and not comparison.matches
    target_db.execute("DELETE FROM x WHERE id = 2")
    source_db.execute("DELETE FROM x WHERE id = 2")
    assert not _compare(source_db, target_db)[1].matches
    target_db.execute("UPDATE x SET a = %s, b = %s", (value, other))
    assert _compare(source_db, target_db)[1].matches


@pytest.mark.parametrize(
    ("column_type", "value", "equal", "setup", "kind"),
    EQUAL_BUT_DIFFERENT,
    ids=[t for t, *_ in EQUAL_BUT_DIFFERENT],
)
def test_a_type_whose_equality_is_not_identity_is_hashed_by_its_text(
    source_db, target_db, column_type, value, equal, setup, kind
) -> None:
    _table(source_db, column_type, [value], setup)
    _table(target_db, column_type, [equal], setup)
    assert target_db.execute("SELECT v = %s FROM x", (value,))[0][0]  # equal by the type's own "="
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE, kind] and not comparison.matches


def test_values_swapped_between_rows_differ(source_db, target_db) -> None:
    """hash_record_extended combines columns linearly (31·h(id) + h(balance), modulo 2⁶⁴): swapping two
    balances keeps its plain sum modulo 2⁶⁴, and as a number whenever the two sides' rows wrap around
    alike, as for the pair picked here. Each row's hash is hashed again, so the swap shows."""
    _table(source_db, "integer", [])
    plain = "hash_record_extended(ROW({}, {})::x, 0)::numeric"
    pairs = source_db.execute(
        "SELECT a, b FROM generate_series(1, 50) a, generate_series(1, 50) b "
        f"WHERE a < b AND {plain.format(0, 'a')} + {plain.format(1, 'b')} = "
        f"{plain.format(0, 'b')} + {plain.format(1, 'a')} LIMIT 1"
    )
    ((first, second),) = pairs
    source_db.execute("INSERT INTO x VALUES (0, %s), (1, %s)", (first, second))
    _table(target_db, "integer", [str(second), str(first)])
    linear = "SELECT sum(hash_record_extended(t, 0)) FROM x AS t"
    assert source_db.execute(linear) == target_db.execute(linear)
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE, VALUE] and not comparison.matches


def test_identical_enum_labels_are_equal_though_their_oids_differ(source_db, target_db) -> None:
    """An enum value's hash is its label's oid, which each database assigns: the text hash is used."""
    target_db.execute("CREATE TYPE shifts_the_oids AS ENUM ('x', 'y', 'z')")
    _table(source_db, "mood", ["sad", "happy"], "CREATE TYPE mood AS ENUM ('sad', 'happy')")
    _table(target_db, "mood", ["sad", "happy"], "CREATE TYPE mood AS ENUM ('sad', 'happy')")
    oids = "SELECT array_agg(oid ORDER BY oid) FROM pg_enum"
    assert source_db.execute(oids) != target_db.execute(oids)
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE, TEXT] and comparison.matches


@pytest.mark.parametrize(
    ("source_type", "target_type", "values", "kind"),
    [
        ("integer", "bigint", ["1", "2"], TEXT),
        ("text", "varchar", ["1", "2"], TEXT),
        ("uuid", "text", ["00000000-0000-0000-0000-000000000001"], TEXT),
        # Their casts to text are not their text in a row ("true" for "t", "ab" for "ab "): the row's is used.
        ("boolean", "text", ["t", "f"], ROW_TEXT),
        ("text", "boolean", ["t", "f"], ROW_TEXT),
        ("character(3)", "text", ["ab "], ROW_TEXT),
    ],
)
def test_columns_of_different_types_holding_the_same_values_are_equal(
    source_db, target_db, source_type, target_type, values, kind
) -> None:
    """Each type hashes its own way (a uuid's 16 bytes, a text's 36 characters): by their text, then."""
    _table(source_db, source_type, values)
    _table(target_db, target_type, values)
    hashed, comparison = _compare(source_db, target_db)
    assert hashed == [VALUE, kind] and comparison.matches


def test_a_domain_over_a_domain_over_boolean_is_compared_by_the_rows_text(source_db, target_db) -> None:
    """Its cast to text is boolean's ('true'), found through two domains: the row's text ('t') is used."""
    domains = "CREATE DOMAIN flag AS boolean; CREATE DOMAIN strict_flag AS flag"
    _table(source_db, "strict_flag", ["t", "f"], domains)
    _table(target_db, "text", ["t", "f"])
    hashed, comparison = _compare(source_db, target_db)
    assert hashed == [VALUE, ROW_TEXT] and comparison.matches


def test_xml_is_compared_by_its_text_in_a_row_not_its_stored_bytes(source_db, target_db) -> None:
    """The source stored an encoding declaration its output drops; the target holds that output, as a load
    from it would: the row's text is the same, so the tables are equal."""
    _table(source_db, "xml", ['<?xml version="1.0" encoding="UTF-8"?><a/>'])
    _table(target_db, "xml", ["<a/>"])
    assert source_db.execute("SELECT v::text FROM x") != target_db.execute("SELECT v::text FROM x")
    hashed, comparison = _compare(source_db, target_db)
    assert hashed == [VALUE, ROW_TEXT] and comparison.matches
    target_db.execute("UPDATE x SET v = '<b/>'")
    assert not _compare(source_db, target_db)[1].matches


def test_columns_named_differently_are_compared_by_the_rows_text(source_db, target_db) -> None:
    _table(source_db, "text", ["a", "b"])
    _table(target_db, "text", ["a", "b"])
    target_db.execute("ALTER TABLE x RENAME v TO w")
    values, comparison = _compare(source_db, target_db)
    assert values is None and comparison.matches


def test_a_mixed_row_tells_each_column_apart(source_db, target_db) -> None:
    """Columns by value beside columns by text, in one row: a scale, a timestamp and a swap each show."""
    table = "CREATE TABLE x (id bigint, amount numeric(12, 2), note text, at timestamptz)"
    rows = "INSERT INTO x VALUES (1, 1.50, 'a', '2026-11-28 10:00+00'), (2, 2.50, 'b', '2026-11-28 11:00+00')"
    for db in (source_db, target_db):
        db.execute(table)
        db.execute(rows)
    values, same = _compare(source_db, target_db)
    assert values == [VALUE, TEXT, VALUE, VALUE] and same.matches
    for change, undo in [
        ("ALTER TABLE x ALTER amount TYPE numeric(12, 3)", "ALTER TABLE x ALTER amount TYPE numeric(12, 2)"),
        (
            "UPDATE x SET at = at + interval '1 microsecond' WHERE id = 1",
            "UPDATE x SET at = at - interval '1 microsecond' WHERE id = 1",
        ),
        (
            "UPDATE x SET note = CASE id WHEN 1 THEN 'b' ELSE 'a' END",
            "UPDATE x SET note = CASE id WHEN 1 THEN 'a' ELSE 'b' END",
        ),
    ]:
        target_db.execute(change)
        assert not _compare(source_db, target_db)[1].matches, change
        target_db.execute(undo)
    assert _compare(source_db, target_db)[1].matches


#: pagila's tables with the most kinds of columns: integers, text, a domain, numeric, an enum, an array,
#: tsvector, timestamptz, boolean, date, bytea, and a partition.
PAGILA_TABLES = ["film", "customer", "staff", "address", "payment_p2022_02"]
UNIQUE_COLUMNS = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = to_regclass(%s) AND i.indisunique
"""


def test_any_column_of_pagila_changed_in_one_row_is_found(source_db, target_db) -> None:
    """For every column of these tables outside a unique index: one target row given another row's value of
    it (its triggers off, so nothing else changes) is found, and the tables compare equal again once it is
    put back."""
    for db in (source_db, target_db):
        load_pagila(db.cluster, db.name)
    quiet = "SET session_replication_role = replica; "
    checked, kinds = 0, set()
    with source_db.connect() as source, target_db.connect() as target:
        for name in PAGILA_TABLES:
            table = TableName("public", name)
            (before,) = compare_tables(source, target, [table])
            assert before.matches and before.source_rows > 1, name
            unique = {row[0] for row in target_db.execute(UNIQUE_COLUMNS, (name,))}
            kinds |= set(hashing(columns(source, *table), columns(target, *table)) or [])
            for column in [c.name for c in columns(source, *table) if c.name not in unique]:
                pair = target_db.execute(
                    f'SELECT a.ctid::text, b.ctid::text, a."{column}"::text FROM {name} a, {name} b '
                    f'WHERE a."{column}"::text IS DISTINCT FROM b."{column}"::text LIMIT 1'
                )
                if not pair:
                    continue  # the same value in every row
                ((changed, other, old),) = pair
                ((moved,),) = target_db.execute(
                    quiet + f'UPDATE {name} SET "{column}" = (SELECT "{column}" FROM {name} WHERE ctid = %s) '
                    "WHERE ctid = %s RETURNING ctid::text",
                    (other, changed),
                )
                (after,) = compare_tables(source, target, [table])
                assert not after.matches and after.target_rows == after.source_rows, f"{name}.{column}"
                target_db.execute(quiet + f'UPDATE {name} SET "{column}" = %s WHERE ctid = %s', (old, moved))
                checked += 1
            (restored,) = compare_tables(source, target, [table])
            assert restored.matches, name
    assert checked >= 30 and {VALUE, TEXT} <= kinds


def test_the_same_columns_in_another_order_are_equal(source_db, target_db) -> None:
    """DMS loads columns by name: a target table that lists them in another order holds the same rows. Its
    row text does not, and the comparison said "same rows, different content"."""
    source_db.execute("CREATE TABLE x (id int, a text, b numeric, c timestamptz)")
    target_db.execute("CREATE TABLE x (c timestamptz, b numeric, id int, a text)")
    for db in (source_db, target_db):
        db.execute(
            "INSERT INTO x (id, a, b, c) VALUES (1, 'one', 1.5, '2026-11-29 10:00+00'), (2, NULL, 2, NULL)"
        )
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE, VALUE, TEXT, VALUE] and comparison.matches
    target_db.execute("UPDATE x SET b = 2.50 WHERE id = 2")
    assert not _compare(source_db, target_db)[1].matches


def test_a_column_only_the_target_has_is_not_compared(source_db, target_db) -> None:
    """It holds none of the source's data; the source's columns are all there, and equal."""
    _table(source_db, "text", ["a", "b"])
    _table(target_db, "text", ["a", "b"])
    target_db.execute("ALTER TABLE x ADD COLUMN loaded_at timestamptz DEFAULT now()")
    values, comparison = _compare(source_db, target_db)
    assert values == [VALUE, VALUE] and comparison.matches
    target_db.execute("UPDATE x SET v = 'c' WHERE id = 1")
    assert not _compare(source_db, target_db)[1].matches


def test_a_table_whose_policies_hide_rows_from_the_role_cannot_be_called_equal(source_db, target_db) -> None:
    """A comparing session reads every row or fails (``row_security`` off, as pg_dump reads): a role that
    sees only some rows of the source's table, loaded with those same rows, made the counts and checksums
    of two subsets, equal."""
    role, password = f"reader_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    source_db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        _table(source_db, "text", ["a", "b", "c"])
        source_db.execute(f"GRANT SELECT ON x TO {role}")
        source_db.execute("ALTER TABLE x ENABLE ROW LEVEL SECURITY")
        source_db.execute(f"CREATE POLICY visible ON x TO {role} USING (id < 2)")
        _table(target_db, "text", ["a", "b"])  # what a load by that role held
        reader = psycopg2.connect(source_db.cluster.dsn(source_db.name, user=role, password=password))
        with (
            reader,
            target_db.connect() as target,
            pytest.raises(psycopg2.errors.InsufficientPrivilege) as error,
        ):
            compare_tables(reader, target, [TABLE])
        reader.close()
        assert "row-level security" in str(error.value)
    finally:
        source_db.execute(f"DROP OWNED BY {role}")
        source_db.execute(f"DROP ROLE {role}")


@pytest.fixture
def latin1_db(source_db):
    """A database of the source's cluster that stores text in LATIN1, as many older servers do."""
    name = "latin1_" + uuid.uuid4().hex[:8]
    source_db.cluster.execute(
        "postgres",
        f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    yield type(source_db)(source_db.cluster, name)
    source_db.cluster.drop_database(name)


@pytest.mark.parametrize("renamed", [False, True], ids=["column by column", "row text"])
def test_the_same_characters_in_another_encoding_are_equal(latin1_db, target_db, renamed: bool) -> None:
    """A LATIN1 source and a UTF8 target hold 'café' as other bytes: hashed by their stored bytes, equal
    text was called different (each column's hash, and the row text's)."""
    table = "CREATE TABLE x (id int, name text, tag varchar(10), code char(6), note numeric)"
    rows = "INSERT INTO x VALUES (1, 'café', 'naïve', 'über', 1.5), (2, 'plain', NULL, 'x', NULL)"
    for db in (latin1_db, target_db):
        db.execute(table)
        with db.connect() as conn, conn.cursor() as cur:
            conn.set_client_encoding("UTF8")
            cur.execute(rows)
    if renamed:
        target_db.execute("ALTER TABLE x RENAME name TO label")
    assert latin1_db.execute("SELECT octet_length(name) FROM x WHERE id = 1") == [(4,)]
    assert target_db.execute(
        f"SELECT octet_length({'label' if renamed else 'name'}) FROM x WHERE id = 1"
    ) == [(5,)]
    values, comparison = _compare(latin1_db, target_db)
    assert comparison.matches, comparison
    assert values == (None if renamed else [VALUE, TEXT, TEXT, ROW_TEXT, TEXT])
    with target_db.connect() as conn, conn.cursor() as cur:
        conn.set_client_encoding("UTF8")
        cur.execute("UPDATE x SET tag = 'naive' WHERE id = 1")
    assert not _compare(latin1_db, target_db)[1].matches


@pytest.mark.parametrize(
    ("encoding_shared", "server_version"),
    [(True, 130000), (True, 100000), (False, 130000)],
    ids=["hashtextextended (11-13)", "md5 (before 11)", "across encodings"],
)
def test_servers_before_14_compare_the_same_columns_in_another_order_by_name(
    source_db, target_db, encoding_shared: bool, server_version: int
) -> None:
    """Before PostgreSQL 14 (on either side: a PostgreSQL 12 source for an RDS 16 target) rows are hashed by
    their text, which follows each table's column order: a row of the source's columns, named, on both
    sides. Run here on this server's PostgreSQL, the expression each older server would run."""
    source_db.execute("CREATE TABLE x (id int, a text, b numeric)")
    target_db.execute("CREATE TABLE x (b numeric, extra int, id int, a text)")
    for db in (source_db, target_db):
        db.execute("INSERT INTO x (id, a, b) VALUES (1, 'one', 1.5), (2, NULL, 2)")
    with source_db.connect() as source, target_db.connect() as target:
        names = shared_names(column_names(source, *TABLE), column_names(target, *TABLE))
        assert names == ["id", "a", "b"]
        digest = row_text_digest(named_row(names), encoding_shared, server_version)

        def sides() -> list[tuple[int, str]]:
            for conn in (source, target):
                pin_comparing_session(conn)
            return [table_checksum(conn, TABLE, digest) for conn in (source, target)]

        first, second = sides()
        assert first == second
        target_db.execute("UPDATE x SET b = 2.5 WHERE id = 2")
        first, second = sides()
        assert first != second
