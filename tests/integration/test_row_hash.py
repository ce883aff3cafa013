"""Which row hash a comparison uses, and that neither can say "equal" for data that differ, or "differ"
for identical data: each column type the value hash admits, each it must refuse, on real PostgreSQL."""

import pytest

from pg2rds.postgres.row_hash import TEXT_HASH, VALUE_HASH, row_digest
from pg2rds.postgres.selection import TableName
from pg2rds.postgres.verify import compare_tables

TABLE = TableName("public", "x")

#: (column type, a value, another value): the value hash is used, and tells the two values apart.
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

#: (column type, a value, a value the type calls equal but whose text differs, setup on both sides): the
#: value hash would call them equal, so these types are hashed by their text, which tells them apart.
EQUAL_BUT_DIFFERENT = [
    ("numeric", "1.0", "1.00", ""),
    ("double precision", "0", "-0", ""),
    ("interval", "1 day", "24 hours", ""),
    ("bpchar", "a", "a ", ""),
    (
        'text COLLATE "ci"',
        "a",
        "A",
        "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
    ),
    ("citext", "a", "A", "CREATE EXTENSION citext"),
]


def _table(db, column_type: str, values: list[str], setup: str = "") -> None:
    if setup:
        db.execute(setup)
    db.execute(f"CREATE TABLE x (id int, v {column_type})")
    for index, value in enumerate(values):
        db.execute("INSERT INTO x VALUES (%s, %s)", (index, value))


def _compare(source_db, target_db):
    with source_db.connect() as source, target_db.connect() as target:
        digest = row_digest(source, target, TABLE.schema, TABLE.table)
        (comparison,) = compare_tables(source, target, [TABLE])
    return digest, comparison


@pytest.mark.parametrize(("column_type", "value", "other"), VALUE_HASHED, ids=[t for t, _, _ in VALUE_HASHED])
def test_a_value_hashed_type_tells_two_values_apart(source_db, target_db, column_type, value, other) -> None:
    _table(source_db, column_type, [value, other])
    _table(target_db, column_type, [value, other])
    digest, same = _compare(source_db, target_db)
    assert digest == VALUE_HASH and same.matches
    target_db.execute("UPDATE x SET v = %s WHERE id = 0", (other,))
    _, changed = _compare(source_db, target_db)
    assert not changed.matches and changed.source_rows == changed.target_rows == 2


@pytest.mark.parametrize(
    ("column_type", "value", "equal", "setup"), EQUAL_BUT_DIFFERENT, ids=[t for t, *_ in EQUAL_BUT_DIFFERENT]
)
def test_a_type_whose_equality_is_not_identity_is_hashed_by_its_text(
    source_db, target_db, column_type, value, equal, setup
) -> None:
    _table(source_db, column_type, [value], setup)
    _table(target_db, column_type, [equal], setup)
    assert target_db.execute("SELECT v = %s FROM x", (value,))[0][0]  # equal by the type's own "="
    digest, comparison = _compare(source_db, target_db)
    assert digest == TEXT_HASH and not comparison.matches


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
    digest, comparison = _compare(source_db, target_db)
    assert digest == VALUE_HASH and not comparison.matches


def test_identical_enum_labels_are_equal_though_their_oids_differ(source_db, target_db) -> None:
    """An enum value's hash is its label's oid, which each database assigns: the text hash is used."""
    target_db.execute("CREATE TYPE shifts_the_oids AS ENUM ('x', 'y', 'z')")
    _table(source_db, "mood", ["sad", "happy"], "CREATE TYPE mood AS ENUM ('sad', 'happy')")
    _table(target_db, "mood", ["sad", "happy"], "CREATE TYPE mood AS ENUM ('sad', 'happy')")
    oids = "SELECT array_agg(oid ORDER BY oid) FROM pg_enum"
    assert source_db.execute(oids) != target_db.execute(oids)
    digest, comparison = _compare(source_db, target_db)
    assert digest == TEXT_HASH and comparison.matches


@pytest.mark.parametrize(
    ("source_type", "target_type"), [("integer", "bigint"), ("text", "varchar"), ("uuid", "text")]
)
def test_columns_of_different_types_holding_the_same_values_are_equal(
    source_db, target_db, source_type, target_type
) -> None:
    """Each type hashes its own way (a uuid's 16 bytes, a text's 36 characters): by their text, then."""
    values = ["00000000-0000-0000-0000-000000000001"] if "uuid" in source_type else ["1", "2"]
    _table(source_db, source_type, values)
    _table(target_db, target_type, values)
    digest, comparison = _compare(source_db, target_db)
    assert digest == TEXT_HASH and comparison.matches
