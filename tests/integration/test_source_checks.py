"""validate_source against real PostgreSQL clusters: each finding provoked by a real catalog state."""

import time
import uuid
from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.extras
import pytest
from conftest import Database, secret_for, spec_for
from psycopg2 import sql

from pg2rds.errors import SourceUnreachable
from pg2rds.postgres import source_checks
from pg2rds.postgres.source_checks import validate_source
from pg2rds.secrets import get_credentials
from pg2rds.spec import MigrationSpec, parse_spec
from pg2rds.state import Finding, SourceReport
from pg2rds_emulator.pgcluster import SUPERUSER, Cluster, start_standby
from pg2rds_emulator.sample import load_pagila

Validate = Callable[..., SourceReport]


def findings_named(report: SourceReport, name: str) -> list[Finding]:
    return [finding for finding in report.findings if finding.name == name]


def only(report: SourceReport, name: str) -> Finding:
    found = findings_named(report, name)
    assert len(found) == 1, report.findings
    return found[0]


def run_validation(source: Database, target: Database, **overrides: object) -> SourceReport:
    spec: MigrationSpec = parse_spec(spec_for(source, target, **overrides))
    return validate_source(spec, get_credentials(spec.source, "source"))


@pytest.fixture
def validate(aws: None, source_db: Database, target_db: Database) -> Validate:
    """Validate the logical-ready source database with spec overrides."""
    return lambda **overrides: run_validation(source_db, target_db, **overrides)


@pytest.fixture
def plain_role(source_db: Database) -> Iterator[tuple[str, str]]:
    """A login role with a password but neither SUPERUSER nor REPLICATION (dropped afterwards)."""
    name, password = f"app_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    source_db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,))
    yield name, password
    source_db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    source_db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_ready_source_has_no_fatal_finding(validate: Validate, source_db: Database) -> None:
    source_db.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
    source_db.execute("CREATE TABLE customers (id int PRIMARY KEY, name text)")

    report = validate(migration_type="full-load-and-cdc")

    assert report.fatal == []
    assert report.tables_selected == 2
    assert report.schemas_selected == ["public"]
    assert report.server_version_num >= 100000
    assert report.server_version.split()[0] in only(report, "server_version").message
    assert only(report, "server_version").severity == "info"
    assert findings_named(report, "wal_sender_timeout") == []  # the fixture cluster sets it to 0


def test_wal_level_replica_is_fatal_for_cdc_and_a_warning_for_full_load(
    aws: None, replica_source_db: Database, target_db: Database
) -> None:
    replica_source_db.execute("CREATE TABLE orders (id int PRIMARY KEY)")

    cdc = run_validation(replica_source_db, target_db, migration_type="full-load-and-cdc")
    full_load = run_validation(replica_source_db, target_db, migration_type="full-load")

    assert only(cdc, "wal_level").severity == "fatal"
    assert "'replica'" in only(cdc, "wal_level").message
    assert "rds.logical_replication = 1" in only(cdc, "wal_level").fix
    assert only(full_load, "wal_level").severity == "warning"
    assert full_load.fatal == []
    # default wal_sender_timeout (60 s) matters only for ongoing replication
    assert only(cdc, "wal_sender_timeout").severity == "warning"
    assert "60000 ms" in only(cdc, "wal_sender_timeout").message
    assert only(full_load, "wal_sender_timeout").severity == "info"


@pytest.fixture(scope="module")
def standby_cluster(source_cluster: Cluster) -> Iterator[Cluster]:
    """A hot standby of the source cluster, streaming from it."""
    standby = start_standby(source_cluster, "standby")
    yield standby
    standby.destroy()


def replayed(standby: Database, table: str, timeout: float = 30) -> None:
    """Wait until the standby has replayed the primary's ``table``."""
    deadline = time.monotonic() + timeout
    while standby_missing(standby, table):
        assert time.monotonic() < deadline, f"the standby never replayed {table}"
        time.sleep(0.1)


def standby_missing(standby: Database, table: str) -> bool:
    try:
        return standby.execute("SELECT to_regclass(%s) IS NULL", (table,))[0][0]
    except psycopg2.OperationalError:  # the database itself not replayed yet
        return True


def test_a_standby_source_is_fatal_for_cdc_and_a_warning_for_full_load(
    aws: None, source_db: Database, target_db: Database, standby_cluster: Cluster
) -> None:
    """Pointed at a standby, a CDC migration would run to the cutover and fail there, after the application
    was stopped: the WAL position pg2rds reads then is refused during recovery. Refused before anything is
    created; a full load only reads, and is warned about recovery conflicts."""
    source_db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    standby = Database(standby_cluster, source_db.name)
    replayed(standby, "public.orders")

    cdc = run_validation(standby, target_db, migration_type="full-load-and-cdc")
    full_load = run_validation(standby, target_db, migration_type="full-load")
    primary = run_validation(source_db, target_db, migration_type="full-load-and-cdc")

    assert only(cdc, "source_in_recovery").severity == "fatal"
    assert "needs the primary" in only(cdc, "source_in_recovery").message
    assert only(full_load, "source_in_recovery").severity == "warning"
    assert "hot_standby_feedback" in only(full_load, "source_in_recovery").fix
    assert full_load.fatal == []
    assert findings_named(primary, "source_in_recovery") == [] and primary.fatal == []


def test_table_without_primary_key_is_fatal_for_cdc_once_changed_and_a_warning_otherwise(
    validate: Validate, source_db: Database
) -> None:
    source_db.execute("CREATE TABLE keyed (id int PRIMARY KEY)")
    source_db.execute("CREATE TABLE events (at timestamptz, payload text)")
    source_db.execute("CREATE TABLE history (at timestamptz, delta int)")
    source_db.execute(
        "INSERT INTO events VALUES (now(), 'a'), (now(), 'b'); INSERT INTO history VALUES (now(), 1)"
    )
    source_db.execute("UPDATE events SET payload = 'c' WHERE payload = 'a'")

    cdc_report = validate(migration_type="full-load-and-cdc")
    cdc, insert_only = only(cdc_report, "primary_key"), only(cdc_report, "primary_key_insert_only")
    full_load = only(validate(migration_type="full-load"), "primary_key")

    assert (cdc.severity, cdc.objects, cdc.object_count) == ("fatal", ["public.events"], 1)
    assert "REPLICA IDENTITY FULL" in cdc.fix
    assert (insert_only.severity, insert_only.objects) == ("warning", ["public.history"])
    assert (full_load.severity, full_load.objects) == ("warning", ["public.events", "public.history"])


def test_a_keyless_table_too_large_to_verify_whole_is_fatal_unless_verification_allows_it(
    validate: Validate, source_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a source before PostgreSQL 14 verification checks a table without a key whole, in one
    invocation: above the size that invocation can read in time the migration would fail at its very
    end, so validation refuses it up front. From 14 on such a table is checked in block ranges. The limit
    (4 GiB) is lowered here so a small table crosses it."""
    monkeypatch.setattr(source_checks, "KEYLESS_VERIFIED_WHOLE_MAX_BYTES", 64 * 1024)
    source_db.execute("CREATE TABLE log (at int, payload text)")
    source_db.execute("CREATE TABLE keyed (id int PRIMARY KEY, payload text)")
    source_db.execute("CREATE TABLE small_log (at int)")
    for table in ("log", "keyed"):
        source_db.execute(
            sql.SQL("INSERT INTO {} SELECT i, repeat('x', 100) FROM generate_series(1, 2000) i").format(
                sql.Identifier(table)
            )
        )
    source_db.execute("INSERT INTO small_log VALUES (1)")
    assert findings_named(validate(migration_type="full-load"), "keyless_table_size") == []  # 14 or later

    # the same source as if it were older than 14 (no TID range scans)
    monkeypatch.setattr(source_checks, "TID_RANGE_SCAN_SINCE", 10**7)
    finding = only(validate(migration_type="full-load"), "keyless_table_size")
    assert finding.severity == "fatal" and finding.objects == ["public.log"], finding
    assert "primary key" in finding.fix and "verification to counts" in finding.fix
    assert (
        findings_named(validate(migration_type="full-load", verification="counts"), "keyless_table_size")
        == []
    )


def test_replica_identity_full_or_using_index_is_accepted(validate: Validate, source_db: Database) -> None:
    source_db.execute("CREATE TABLE logged (at timestamptz, payload text)")
    source_db.execute("ALTER TABLE logged REPLICA IDENTITY FULL")
    source_db.execute("CREATE TABLE indexed (code text NOT NULL, payload text)")
    source_db.execute("CREATE UNIQUE INDEX indexed_code ON indexed (code)")
    source_db.execute("ALTER TABLE indexed REPLICA IDENTITY USING INDEX indexed_code")
    source_db.execute("CREATE TABLE nothing (id int PRIMARY KEY)")
    source_db.execute("ALTER TABLE nothing REPLICA IDENTITY NOTHING")
    source_db.execute("INSERT INTO nothing VALUES (1); DELETE FROM nothing")

    report = validate(migration_type="cdc")

    # a primary key does not help a table whose replica identity is NOTHING
    assert only(report, "primary_key").objects == ["public.nothing"]


def test_role_without_replication_or_select_is_fatal(
    aws: None, source_db: Database, target_db: Database, plain_role: tuple[str, str]
) -> None:
    source_db.execute("CREATE TABLE secret_stuff (id int PRIMARY KEY)")
    source_db.execute("CREATE TABLE open_stuff (id int PRIMARY KEY)")
    source_db.execute(sql.SQL("GRANT SELECT ON open_stuff TO {}").format(sql.Identifier(plain_role[0])))
    data = spec_for(source_db, target_db, migration_type="full-load-and-cdc")
    data["source"]["secret_arn"] = secret_for(source_db, *plain_role)
    spec = parse_spec(data)

    finding = only(validate_source(spec, get_credentials(spec.source, "source")), "privileges")

    assert finding.severity == "fatal"
    assert "REPLICATION" in finding.message and plain_role[0] in finding.message
    assert "cannot SELECT from 1 selected table" in finding.message
    assert (finding.objects, finding.object_count) == (["public.secret_stuff"], 1)
    assert "rds_replication" in finding.fix


def test_full_load_needs_only_select(
    aws: None, source_db: Database, target_db: Database, plain_role: tuple[str, str]
) -> None:
    source_db.execute("CREATE TABLE open_stuff (id int PRIMARY KEY)")
    source_db.execute(sql.SQL("GRANT SELECT ON open_stuff TO {}").format(sql.Identifier(plain_role[0])))
    data = spec_for(source_db, target_db, migration_type="full-load")
    data["source"]["secret_arn"] = secret_for(source_db, *plain_role)
    spec = parse_spec(data)

    report = validate_source(spec, get_credentials(spec.source, "source"))

    assert report.fatal == []
    assert report.tables_selected == 1


def test_row_level_security_that_hides_rows_from_the_role_is_fatal(
    aws: None, source_db: Database, target_db: Database, plain_role: tuple[str, str]
) -> None:
    """The role reads only the rows the policies show it, without an error: DMS would load those alone.
    Not flagged where the server would not apply it: a table without row-level security, a table the role
    owns (unless it forces row-level security on its owner), a role with BYPASSRLS."""
    role = sql.Identifier(plain_role[0])
    for table in ("hidden", "forced", "owned", "plain"):
        source_db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, tenant int)")
        source_db.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), role))
    source_db.execute("ALTER TABLE hidden ENABLE ROW LEVEL SECURITY")
    source_db.execute(sql.SQL("CREATE POLICY mine ON hidden TO {} USING (tenant = 1)").format(role))
    for table in ("forced", "owned"):
        source_db.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table), role))
        source_db.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    source_db.execute("ALTER TABLE forced FORCE ROW LEVEL SECURITY")
    data = spec_for(source_db, target_db, migration_type="full-load")
    data["source"]["secret_arn"] = secret_for(source_db, *plain_role)
    spec = parse_spec(data)

    finding = only(validate_source(spec, get_credentials(spec.source, "source")), "row_level_security")
    assert finding.severity == "fatal" and "BYPASSRLS" in finding.fix
    assert (finding.objects, finding.object_count) == (["public.forced", "public.hidden"], 2)

    source_db.execute(sql.SQL("ALTER ROLE {} BYPASSRLS").format(role))
    report = validate_source(spec, get_credentials(spec.source, "source"))
    assert findings_named(report, "row_level_security") == []


def test_no_table_selected_is_fatal(validate: Validate, source_db: Database) -> None:
    source_db.execute("CREATE TABLE orders (id int PRIMARY KEY)")

    report = validate(tables={"include": [{"schema": "public", "table": "Orders"}]})

    finding = only(report, "no_tables_selected")
    assert finding.severity == "fatal"
    assert "public.Orders" in finding.message
    assert report.tables_selected == 0


def test_include_and_exclude_rules_are_honoured(validate: Validate, source_db: Database) -> None:
    for schema in ("app_eu", "app_us", "billing"):
        source_db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in ("orders", "tmp_orders"):
            source_db.execute(
                sql.SQL("CREATE TABLE {}.{} (id int)").format(sql.Identifier(schema), sql.Identifier(table))
            )

    report = validate(
        tables={
            "include": [{"schema": "app%", "table": "%"}],
            "exclude": [{"schema": "%", "table": "tmp%"}],
        }
    )

    assert report.tables_selected == 2
    assert report.schemas_selected == ["app_eu", "app_us"]
    assert only(report, "primary_key").objects == ["app_eu.orders", "app_us.orders"]


def test_unusual_identifiers_are_named_exactly(validate: Validate, source_db: Database) -> None:
    schema, table = 'Sales "EU"', "Bestellungen Größe"
    source_db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    source_db.execute(
        sql.SQL("CREATE TABLE {}.{} (x int)").format(sql.Identifier(schema), sql.Identifier(table))
    )

    report = validate(migration_type="full-load", tables={"include": [{"schema": schema}]})

    finding = only(report, "primary_key")
    assert finding.objects == ['"Sales ""EU"""."Bestellungen Größe"']
    assert report.schemas_selected == [schema]
    assert '"Sales ""EU"""."Bestellungen Größe"' in finding.render()


def test_query_count_does_not_grow_with_tables(validate: Validate, source_db: Database) -> None:
    def create_tables(prefix: str, count: int) -> None:
        source_db.execute(
            "DO $$ BEGIN FOR i IN 1.." + str(count) + " LOOP "
            "EXECUTE format('CREATE TABLE %%I (id int)', %s || i); END LOOP; END $$",
            (prefix,),
        )

    create_tables("few_", 5)
    few = validate(tables={"include": [{"schema": "public", "table": "few%"}]})
    create_tables("many_", 300)
    many = validate(tables={"include": [{"schema": "public", "table": "many%"}]})

    assert (few.tables_selected, many.tables_selected) == (5, 300)
    assert few.catalog_queries == many.catalog_queries <= 5
    assert only(many, "primary_key").object_count == 300
    assert len(only(many, "primary_key").objects) == 20


def test_this_migrations_slot_in_use_is_a_warning(validate: Validate, source_db: Database) -> None:
    """Another execution of the same migration is reading the slot: say so before anything is created."""
    source_db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    slot = "pg2rds_busy_" + uuid.uuid4().hex[:6]
    source_db.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
    assert findings_named(validate(migration_id=slot[7:].replace("_", "-")), "slot_in_use") == []  # idle

    def wait_until(active: bool) -> None:
        query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
        for _ in range(200):
            if source_db.execute(query, (slot,)) == [(active,)]:
                return
            time.sleep(0.05)

    reader = psycopg2.connect(
        source_db.cluster.dsn(source_db.name), connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        reader.cursor().start_replication(slot_name=slot, decode=False)
        wait_until(active=True)
        report = validate(migration_id=slot[7:].replace("_", "-"), migration_type="full-load-and-cdc")
    finally:
        reader.close()
        wait_until(active=False)
    finding = only(report, "slot_in_use")
    assert finding.severity == "warning" and finding.objects == [slot]
    assert "already exists on the source and is active" in finding.message
    assert report.fatal == []


def test_wrong_password_raises_source_unreachable_without_the_password(
    aws: None, source_db: Database, target_db: Database
) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    data = spec_for(source_db, target_db)
    data["source"]["secret_arn"] = secret_for(source_db, SUPERUSER, wrong)
    spec = parse_spec(data)

    with pytest.raises(SourceUnreachable) as raised:
        validate_source(spec, get_credentials(spec.source, "source"))

    assert "password authentication failed" in str(raised.value)
    assert wrong not in str(raised.value)


@pytest.fixture
def pagila_db(source_db: Database) -> Database:
    load_pagila(source_db.cluster, source_db.name)  # the sample shipped in data/pagila
    return source_db


def test_pagila_sample_is_ready_for_a_full_load(aws: None, pagila_db: Database, target_db: Database) -> None:
    report = run_validation(pagila_db, target_db, migration_type="full-load")

    # 14 ordinary tables and the 7 monthly partitions of payment (its partitioned parent holds no rows)
    assert report.tables_selected == 21
    (expected,) = pagila_db.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'"
    )[0]
    assert report.tables_selected == expected
    assert report.schemas_selected == ["public"]
    assert report.fatal == []


def test_what_dms_would_lose_is_named_before_the_load(validate: Validate, source_db: Database) -> None:
    """Each trap from the AWS PostgreSQL source page, provoked by a real table, as its own finding."""
    source_db.execute(
        "CREATE TABLE pics (id int PRIMARY KEY, img oid);"
        "INSERT INTO pics SELECT i, lo_from_bytea(0, decode(repeat('ab', i), 'hex')) "
        "FROM generate_series(1, 3) i;"
        "CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY);"
        'CREATE TABLE "Orders" (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY);'
        "CREATE TABLE tagged (tags text[]);"
        "CREATE TABLE amounts (id int PRIMARY KEY, exact numeric, money numeric(12, 2));"
        "CREATE TABLE periods (id int PRIMARY KEY, valid_until timestamptz);"
        "INSERT INTO periods SELECT i, CASE WHEN mod(i, 2) = 0 THEN 'infinity' ELSE now() END "
        "FROM generate_series(1, 100) i; ANALYZE periods"
    )

    report = validate(migration_type="full-load-and-cdc", instance={"engine_version": "3.4.2"})

    def named(name: str) -> tuple[str, list[str]]:
        finding = only(report, name)
        return finding.severity, finding.objects

    assert named("large_objects") == ("fatal", ["public.pics.img"])
    assert "3 of them" in only(report, "large_objects").message
    assert "lo_get" in only(report, "large_objects").fix
    assert named("unlogged_tables") == ("fatal", ["public.scratch"])
    assert named("names_differ_by_case") == ("fatal", ['public."Orders"', "public.orders"])
    assert named("array_without_key") == ("fatal", ["public.tagged"])
    assert named("unconstrained_numeric") == ("fatal", ["public.amounts.exact"])
    assert named("infinite_timestamps") == ("fatal", ["public.periods.valid_until"])
    assert only(report, "cdc_truncate_and_ddl").severity == "warning"
    assert "ignores an UPDATE that changes a primary key" in only(report, "cdc_truncate_and_ddl").message
    assert report.catalog_queries == 4  # three catalog queries and the bounded LOB measurement

    full_load = validate(migration_type="full-load", tables={"include": [{"table": "scratch"}]})
    assert findings_named(full_load, "unlogged_tables") == []
    assert only(full_load, "large_objects").severity == "warning"  # they exist, nothing selected uses them
    assert findings_named(full_load, "cdc_truncate_and_ddl") == []
    assert findings_named(full_load, "unconstrained_numeric") == []


def test_types_aws_lists_as_not_migrating_are_named(validate: Validate, source_db: Database) -> None:
    """AWS's PostgreSQL-to-PostgreSQL table says enums, composites, ranges, inet, macaddr, tsvector,
    tsquery and the geometric line, lseg, box, path and circle don't migrate: the pre-flight said nothing
    of them, and a local run moved them as they are."""
    source_db.execute(
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE DOMAIN feeling AS mood;"
        "CREATE TYPE pair AS (a int, b text);"
        "CREATE TABLE odd (id int PRIMARY KEY, m mood, f feeling, p pair, r int4range, addr inet, "
        "mac macaddr, doc tsvector, q tsquery, l line, s lseg, b box, pa path, c circle, "
        "net cidr, pt point, moods mood[], body text, at timestamptz)"
    )

    finding = only(validate(), "types_not_migrated")

    assert finding.severity == "warning"
    assert finding.objects == [
        "public.odd.addr (inet)", "public.odd.b (box)", "public.odd.c (circle)", "public.odd.doc (tsvector)",
        "public.odd.f (feeling)", "public.odd.l (line)", "public.odd.m (mood)", "public.odd.mac (macaddr)",
        "public.odd.p (pair)", "public.odd.pa (path)", "public.odd.q (tsquery)", "public.odd.r (int4range)",
        "public.odd.s (lseg)",
    ]  # fmt: skip
    source_db.execute("DROP TABLE odd")
    assert findings_named(validate(), "types_not_migrated") == []


LOBS = (
    "CREATE TABLE docs (id int PRIMARY KEY, body text, blob bytea, meta jsonb, title varchar(200));"
    "INSERT INTO docs SELECT i, repeat('x', 1000), '\\x00'::bytea, '{}'::jsonb, 't' "
    "FROM generate_series(1, 50) i;"
    "INSERT INTO docs VALUES (51, repeat(md5('a'), 3200), decode(repeat('ab', 41 * 1024), 'hex'),"
    " jsonb_build_object('k', repeat('y', 50 * 1024)), 't')"
)


def test_lob_columns_over_the_limit_are_fatal_and_an_unset_limit_is_sized(
    validate: Validate, source_db: Database
) -> None:
    source_db.execute(LOBS)

    limited = validate(task={"lob_mode": "limited", "lob_max_size_kb": 32})
    finding = only(limited, "lob_truncation")
    assert finding.severity == "fatal" and finding.object_count == 3
    assert finding.objects == [
        "public.docs.body (100 KB, exact)",
        "public.docs.meta (51 KB, exact)",
        "public.docs.blob (41 KB, exact)",
    ]
    assert limited.lob_max_size_kb == 32

    sized = validate()
    assert sized.fatal == []
    assert sized.lob_max_size_kb > 100
    assert "public.docs.body" in only(sized, "lob_max_size").message
    assert "1 table(s) with LOB columns read whole, 0 sampled" in only(sized, "lob_max_size").message

    full = validate(task={"lob_mode": "full"})
    assert findings_named(full, "lob_max_size") == findings_named(full, "lob_truncation") == []
    assert full.catalog_queries == 3  # nothing measured in full LOB mode
    assert sized.catalog_queries == 4  # one bounded measuring statement in limited mode


def test_big_tables_are_sampled_not_read_whole(
    validate: Validate, source_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pg2rds.postgres import lob_sizes

    source_db.execute(LOBS)
    monkeypatch.setattr(lob_sizes, "EXACT_TABLE_PAGES", 0)  # every table counts as big
    report = validate()
    assert "0 table(s) with LOB columns read whole, 1 sampled" in only(report, "lob_max_size").message
