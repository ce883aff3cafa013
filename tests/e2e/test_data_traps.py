"""Whole migrations (``run_local``: the state machine, the handlers, the DMS stand-in) over data that DMS
would lose or the load would break: the execution must fail, say why, and leave nothing behind.
"""

from conftest import Database

from pg2rds_emulator.local_run import run_local

PICS = "CREATE TABLE pics (id int PRIMARY KEY, img oid)"


def _dsns(source: Database, target: Database) -> tuple[str, str]:
    return source.cluster.dsn(source.name), target.cluster.dsn(target.name)


def test_large_objects_stop_the_migration_before_anything_is_created(
    source_db: Database, target_db: Database
) -> None:
    """DMS never moves pg_largeobject: without this refusal the run "succeeds" with every img dangling."""
    for db in (source_db, target_db):
        db.execute(PICS)
    source_db.execute(
        "INSERT INTO pics SELECT i, lo_from_bytea(0, convert_to(repeat('picture ', i * 100), 'UTF8')) "
        "FROM generate_series(1, 5) i"
    )

    view, leftovers = run_local(*_dsns(source_db, target_db), {"migration_id": "pics"}, timeout_seconds=90)

    assert view.status == "FAILED", view.output
    assert (view.failed_state, view.error) == ("Validate source", "SourceNotReady"), view.cause
    assert "large_objects" in view.cause and "public.pics.img" in view.cause and "lo_get" in view.cause
    assert "Create replication instance" not in view.states
    assert leftovers == []
    assert target_db.execute("SELECT count(*) FROM pics") == [(0,)]
    assert target_db.execute("SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]


def test_a_foreign_key_violated_by_the_loaded_rows_fails_the_migration(
    source_db: Database, target_db: Database
) -> None:
    """The load runs with session_replication_role = replica, so only the check after it can notice."""
    source_db.execute(
        "CREATE TABLE customers (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, customer int);"
        "INSERT INTO customers SELECT generate_series(1, 10);"
        "INSERT INTO orders SELECT i, CASE WHEN i = 7 THEN 99 ELSE i END FROM generate_series(1, 10) i"
    )
    target_db.execute(
        "CREATE TABLE customers (id int PRIMARY KEY);"
        "CREATE TABLE orders (id int PRIMARY KEY, customer int CONSTRAINT orders_customer_fk "
        "REFERENCES customers (id))"
    )

    view, leftovers = run_local(*_dsns(source_db, target_db), {"migration_id": "fk"}, timeout_seconds=120)

    assert view.status == "FAILED", view.output
    assert (view.failed_state, view.error) == ("Plan verification", "VerificationFailed"), view.cause
    violation = "orders_customer_fk on public.orders (blocks [0, +inf)): 1 rows without a parent in "
    assert violation + "public.customers, e.g. (id)=(7)" in view.cause
    assert leftovers == []
    assert target_db.execute("SELECT count(*) FROM orders") == [(10,)]  # loaded, then judged


def test_a_check_reports_both_sides_and_creates_nothing(source_db: Database, target_db: Database) -> None:
    source_db.execute(
        "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, note text);"
        "CREATE TABLE public.log (at timestamptz, what text); INSERT INTO public.log VALUES (now(), 'x');"
        "INSERT INTO sales.orders SELECT i, 'n' FROM generate_series(1, 10) i"
    )
    target_db.execute("CREATE TABLE public.log (at timestamptz, what text)")
    spec = {"migration_id": "check-only", "mode": "check", "migration_type": "full-load-and-cdc"}

    view, leftovers = run_local(*_dsns(source_db, target_db), spec, timeout_seconds=60)

    assert view.status == "FAILED", view.output
    assert (view.current_state, view.error) == ("Check found fatal problems", "CheckFailed"), view.cause
    assert "the target: target_tables_missing" in view.cause and "sales.orders" in view.cause
    assert "Create replication instance" not in view.states
    assert "Clean up after failure" not in view.states
    assert leftovers == []
    # nothing created: not the schema the migration would create, not a slot
    assert target_db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'sales'") == [(0,)]
    assert source_db.execute(
        "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
    ) == [(0,)]

    target_db.execute("CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, note text)")
    view, leftovers = run_local(*_dsns(source_db, target_db), spec, timeout_seconds=60)

    assert view.status == "SUCCEEDED", view.cause
    assert view.current_state == "Check passed"
    warnings = {f["name"] for f in view.output["source_report"]["findings"] if f["severity"] == "warning"}
    assert "primary_key_insert_only" in warnings  # public.log: reported, not fatal
    assert leftovers == []
    assert target_db.execute("SELECT count(*) FROM sales.orders") == [(0,)]


DOCS = "CREATE TABLE docs (id int PRIMARY KEY, body text, blob bytea, meta jsonb)"


def _fingerprint(db: Database) -> list[tuple]:
    """The docs table as the test sees it, independently of pg2rds's own comparison."""
    return db.execute("SELECT id, md5(body), md5(blob), md5(meta::text) FROM docs ORDER BY id")


def test_lobs_longer_than_the_limit_fail_before_the_load_and_an_unset_limit_is_sized(
    source_db: Database, target_db: Database
) -> None:
    for db in (source_db, target_db):
        db.execute(DOCS)
    source_db.execute(
        "INSERT INTO docs SELECT i, repeat('x', 100), '\\x01'::bytea, '{}' FROM generate_series(1, 20) i;"
        "INSERT INTO docs VALUES (21, repeat(md5('a'), 3200), decode(repeat('ab', 41 * 1024), 'hex'),"
        " jsonb_build_object('k', repeat('y', 50 * 1024)))"
    )
    limited = {"migration_id": "lobs", "task": {"lob_mode": "limited", "lob_max_size_kb": 32}}

    view, leftovers = run_local(*_dsns(source_db, target_db), limited, timeout_seconds=90)

    assert view.status == "FAILED", view.output
    assert (view.failed_state, view.error) == ("Validate source", "SourceNotReady"), view.cause
    for column in ("public.docs.body (100 KB", "public.docs.meta (51 KB", "public.docs.blob (41 KB"):
        assert column in view.cause
    assert leftovers == [] and target_db.execute("SELECT count(*) FROM docs") == [(0,)]

    view, leftovers = run_local(*_dsns(source_db, target_db), {"migration_id": "lobs"}, timeout_seconds=120)

    assert view.status == "SUCCEEDED", view.cause
    assert view.output["source_report"]["lob_max_size_kb"] > 100
    assert leftovers == []
    assert _fingerprint(target_db) == _fingerprint(source_db)

    target_db.execute("TRUNCATE docs")
    full = {"migration_id": "lobs", "task": {"lob_mode": "full"}}
    view, leftovers = run_local(*_dsns(source_db, target_db), full, timeout_seconds=120)
    assert view.status == "SUCCEEDED", view.cause
    assert leftovers == []
    assert _fingerprint(target_db) == _fingerprint(source_db)


def test_timestamp_infinities_arrive_as_dms_writes_them_and_the_report_says_so(
    source_db: Database, target_db: Database
) -> None:
    """DMS writes TIMESTAMP's ±infinity as '9999-12-31 23:59:59' and '4713-01-01 00:00:00 BC' (AWS's
    PostgreSQL-to-PostgreSQL table). Where the planner's statistics do not show them (a table never
    analyzed), pre-flight cannot warn; the stand-in copied them as they are, so the local run SUCCEEDED
    with the tables equal where AWS would leave them different."""
    source_db.execute(
        "CREATE TABLE events (id int PRIMARY KEY, at timestamp, at_zone timestamptz);"
        "INSERT INTO events VALUES (1, 'infinity', 'infinity'), (2, '-infinity', '-infinity'),"
        " (3, '2024-05-01 10:00', '2024-05-01 10:00+00')"
    )

    view, leftovers = run_local(
        *_dsns(source_db, target_db),
        {"migration_id": "infinities", "task": {"target_table_prep_mode": "DROP_AND_CREATE"}},
        timeout_seconds=90,
    )

    assert view.status == "FAILED", view.output
    assert view.error == "VerificationFailed" and "public.events" in view.cause, view.cause
    assert leftovers == []
    rows = target_db.execute("SELECT id, at::text, at_zone::text FROM events ORDER BY id")
    assert rows == [
        (1, "9999-12-31 23:59:59", "infinity"),  # timestamptz: not on the page, copied as it is
        (2, "4713-01-01 00:00:00 BC", "-infinity"),
        (3, "2024-05-01 10:00:00", "2024-05-01 10:00:00+00"),
    ]
