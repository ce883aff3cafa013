"""finish-target against real PostgreSQL: sequences, foreign keys, verification."""

import io
import uuid

import psycopg2
import pytest
from conftest import spec_for, verify_in_chunks

from pg2rds import phases
from pg2rds.errors import SequenceUnreadable, VerificationFailed
from pg2rds.lambda_support import parse_state
from pg2rds.postgres.chunks import range_condition
from pg2rds.postgres.finalize import sync_sequences
from pg2rds.postgres.foreign_keys import range_violations
from pg2rds.postgres.selection import TableName
from pg2rds.state import Chunk

SHOP = '"Shop ""EU"""'
KUNDEN = f'{SHOP}."Kunden Größe"'
ORDERS = f"{SHOP}.orders"
SCHEMA = (
    f"CREATE SCHEMA {SHOP};"
    f"CREATE TABLE {KUNDEN} (id serial PRIMARY KEY, name text);"
    f"CREATE TABLE {ORDERS} (id bigserial PRIMARY KEY, kunde int REFERENCES {KUNDEN}(id), note text);"
)


def _load(db, rows: int = 3) -> None:
    db.execute(SCHEMA)
    db.execute(f"INSERT INTO {KUNDEN}(name) SELECT 'k' || g FROM generate_series(1, {rows}) g")
    db.execute(f"INSERT INTO {ORDERS}(kunde, note) SELECT id, 'n' FROM {KUNDEN}")


def _copy_rows(source, target) -> None:
    """A load as DMS does it: rows copied with explicit ids, sequences untouched."""
    target.execute(SCHEMA)
    for table in (KUNDEN, ORDERS):
        rows = source.execute(f"SELECT * FROM {table} ORDER BY 1")
        for row in rows:
            placeholders = ", ".join(["%s"] * len(row))
            target.execute(f"INSERT INTO {table} VALUES ({placeholders})", row)


def test_sequences_are_set_from_the_source(source_db, target_db) -> None:
    _load(source_db, rows=7)
    _copy_rows(source_db, target_db)
    assert target_db.execute(f'SELECT last_value FROM {SHOP}."Kunden Größe_id_seq"')[0][0] == 1
    with source_db.connect() as src, target_db.connect() as dst:
        names = sync_sequences(
            src, dst, [TableName('Shop "EU"', "Kunden Größe"), TableName('Shop "EU"', "orders")]
        )
    assert sorted(names) == ['Shop "EU".Kunden Größe_id_seq', 'Shop "EU".orders_id_seq']
    (next_id,) = target_db.execute(f"""SELECT nextval('{SHOP}."Kunden Größe_id_seq"')""")[0]
    assert next_id == 8


def foreign_key_violations(conn, tables: list[TableName]) -> list[str]:
    violations = []
    for table in tables:
        chunk = Chunk(schema_name=table.schema, table_name=table.table, foreign_keys=True)
        violations += range_violations(conn, chunk, *range_condition(chunk, alias="c"))
    return violations


def test_foreign_key_violations_are_named(target_db) -> None:
    _load(target_db)
    tables = [TableName('Shop "EU"', "Kunden Größe"), TableName('Shop "EU"', "orders")]
    with target_db.connect() as conn:
        assert foreign_key_violations(conn, tables) == []
        with conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")
            cur.execute(f"DELETE FROM {KUNDEN} WHERE id = 2")
            cur.execute("RESET session_replication_role")
        violations = foreign_key_violations(conn, tables)
    assert len(violations) == 1
    assert violations == [
        'orders_kunde_fkey on Shop "EU".orders (whole table): 1 rows without a parent in '
        'Shop "EU".Kunden Größe, e.g. (id)=(2)'
    ]


def test_verification_passes_on_equal_sides_and_names_a_changed_table(aws, source_db, target_db) -> None:
    _load(source_db)
    _copy_rows(source_db, target_db)
    state = parse_state({"spec": spec_for(source_db, target_db)})
    report = phases.finish_target(state)
    assert report.mismatched == [] and report.sequences_set == 2
    summary = verify_in_chunks(state)
    assert (summary.tables_checked, summary.mismatch_count) == (2, 0)

    target_db.execute(f"UPDATE {ORDERS} SET note = 'changed' WHERE id = 2")
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    assert 'Shop "EU".orders (id) in [-inf, +inf): same 3 rows, different content' in str(failure.value)
    assert "Kunden" not in str(failure.value)


def test_counts_only_verification_sees_a_missing_row(aws, source_db, target_db) -> None:
    _load(source_db)
    _copy_rows(source_db, target_db)
    target_db.execute(f"DELETE FROM {ORDERS} WHERE id = 3")
    state = parse_state({"spec": spec_for(source_db, target_db, verification="counts")})
    with pytest.raises(
        VerificationFailed, match=r"orders \(id\) in \[-inf, \+inf\): 3 rows on the source, 2 on"
    ):
        verify_in_chunks(state)


RENDERED = "public.rendered"
RENDERED_SCHEMA = (
    f"CREATE TABLE {RENDERED} (id int PRIMARY KEY, at timestamptz, day date, took interval, "
    "ratio float8, small float4, raw bytea, price money)"
)
SESSION_DEFAULTS = {
    "timezone": "America/New_York",
    "extra_float_digits": "0",
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "sql_standard",
    "bytea_output": "escape",
}


def _copy_exactly(source, target, table: str) -> None:
    """COPY between two sessions with the same (default) settings: every value arrives unchanged."""
    data = io.StringIO()
    with source.connect() as src, src.cursor() as cur:
        cur.copy_expert(f"COPY {table} TO STDOUT", data)
    data.seek(0)
    with target.connect() as dst, dst.cursor() as cur:
        cur.copy_expert(f"COPY {table} FROM STDIN", data)


def test_verification_ignores_session_defaults_but_not_a_changed_value(aws, source_db, target_db) -> None:
    """Identical values rendered differently by each server's defaults are equal; one real change is not."""
    for db in (source_db, target_db):
        db.execute(RENDERED_SCHEMA)
    source_db.execute(
        f"INSERT INTO {RENDERED} SELECT i, timestamptz '2024-03-10 06:30:00+00' + i * interval '7 hours', "
        "date '2024-01-31' + i, i * interval '1 day 2 hours 3.5 seconds', 0.1 * i + 0.2, "
        "(1.0 / (i + 3))::float4, "
        "decode(repeat('00ff5c27', i), 'hex'), i * 1.25 FROM generate_series(1, 40) i"
    )
    _copy_exactly(source_db, target_db, RENDERED)
    for name, value in SESSION_DEFAULTS.items():
        source_db.execute(f'ALTER DATABASE "{source_db.name}" SET {name} = %s', (value,))
    state = parse_state({"spec": spec_for(source_db, target_db)})

    assert verify_in_chunks(state).mismatch_count == 0

    target_db.execute(f"UPDATE {RENDERED} SET ratio = ratio + 1e-15 WHERE id = 17")
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    assert "public.rendered (id) in [-inf, +inf): same 40 rows, different content" in str(failure.value)


PICS = "CREATE TABLE pics (id int PRIMARY KEY, img oid)"


def test_large_objects_are_verified_by_count_and_content(aws, source_db, target_db) -> None:
    """Equal rows pointing at large objects the target lacks (what DMS leaves) fail, naming them."""
    for db in (source_db, target_db):
        db.execute(PICS)
    source_db.execute(
        "INSERT INTO pics SELECT i, lo_from_bytea(0, decode(repeat('0a1b', i * 1000), 'hex')) "
        "FROM generate_series(1, 5) i"
    )
    _copy_exactly(source_db, target_db, "pics")  # the rows, with their oids: all DMS moves
    state = parse_state({"spec": spec_for(source_db, target_db)})

    with pytest.raises(VerificationFailed) as failure:
        phases.finish_target(state)
    assert "large objects the selected rows point at (5 on the source, 0 on the target)" in str(failure.value)

    for oid, data in source_db.execute("SELECT img, lo_get(img) FROM pics ORDER BY id"):
        target_db.execute("SELECT lo_from_bytea(%s, %s)", (oid, data))
    report = phases.finish_target(state)
    assert report.mismatched == [] and report.tables_checked == 1  # the large objects; tables: in chunks

    (changed,) = target_db.execute("SELECT img FROM pics WHERE id = 3")[0]
    target_db.execute("SELECT lo_put(%s, 10, '\\x00'::bytea)", (changed,))
    with pytest.raises(
        VerificationFailed, match=r"large objects the selected rows point at \(same 5, different"
    ):
        phases.finish_target(state)


def test_oid_columns_are_not_read_when_neither_server_holds_a_large_object(aws, source_db, target_db) -> None:
    """An oid column (here of catalog oids, as applications keep them) on servers without large objects:
    no row can point at one, so the table is not read at all (on a table of any size that read would be
    one unbounded statement). Locked by a DDL on the source, the finish does not wait for it; once an
    object exists on either side, the column is compared again and the missing object is found."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE refs (id int PRIMARY KEY, rel oid); INSERT INTO refs VALUES (1, 1259)")
    state = parse_state({"spec": spec_for(source_db, target_db)})
    with source_db.connect() as ddl:
        with ddl.cursor() as cur:
            cur.execute("LOCK TABLE refs IN ACCESS EXCLUSIVE MODE")
        report = phases.finish_target(state)
        ddl.rollback()
    assert report.mismatched == [] and report.tables_checked == 1, report

    (oid,) = source_db.execute("SELECT lo_from_bytea(0, 'late')")[0]
    source_db.execute("UPDATE refs SET rel = %s", (oid,))
    with pytest.raises(
        VerificationFailed, match=r"large objects the selected rows point at \(1 on the source, 0"
    ):
        phases.finish_target(state)


SEQUENCES = (
    "CREATE SEQUENCE shared_ids; CREATE SEQUENCE unrelated;"
    "CREATE TABLE a (id serial PRIMARY KEY, ref int DEFAULT nextval('shared_ids'));"
    "CREATE TABLE b (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);"
    "CREATE TABLE c (id serial PRIMARY KEY)"
)
A_B = [TableName("public", "a"), TableName("public", "b")]


def _positions(db) -> dict[str, int | None]:
    return dict(db.execute("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"))


def test_sequences_of_the_selected_tables_move_forward_only(source_db, target_db) -> None:
    """Owned (serial, identity) and default-used sequences of a and b are set; c's and an unrelated one are
    not; a target sequence already further on keeps its position."""
    for db in (source_db, target_db):
        db.execute(SEQUENCES)
    source_db.execute(
        "SELECT setval('a_id_seq', 50), setval('shared_ids', 70), setval('b_id_seq', 30),"
        " setval('c_id_seq', 90), setval('unrelated', 40)"
    )
    target_db.execute("SELECT setval('b_id_seq', 1000)")  # the target has handed out ids up to 1000

    with source_db.connect() as src, target_db.connect() as dst:
        names = sync_sequences(src, dst, A_B)

    assert sorted(names) == ["public.a_id_seq", "public.shared_ids"]
    assert _positions(target_db) == {
        "a_id_seq": 50,
        "b_id_seq": 1000,
        "c_id_seq": None,
        "shared_ids": 70,
        "unrelated": None,
    }


def test_an_unreadable_source_sequence_is_an_error_not_a_reset(source_db, target_db) -> None:
    for db in (source_db, target_db):
        db.execute(SEQUENCES)
    source_db.execute("SELECT setval('a_id_seq', 50)")
    target_db.execute("SELECT setval('a_id_seq', 20)")
    role, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    source_db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT SELECT ON a, b TO {role}")
    try:
        reader = psycopg2.connect(
            host="127.0.0.1", port=source_db.cluster.port, dbname=source_db.name, user=role, password=password
        )
        with reader, target_db.connect() as dst, pytest.raises(SequenceUnreadable) as failure:
            sync_sequences(reader, dst, A_B)
        reader.close()
    finally:
        source_db.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    assert "public.a_id_seq" in str(failure.value) and "GRANT SELECT ON SEQUENCE" in str(failure.value)
    assert _positions(target_db)["a_id_seq"] == 20
