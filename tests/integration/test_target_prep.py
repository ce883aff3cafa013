"""prepare_target against real source and target clusters."""

import uuid
from collections.abc import Callable, Iterator

import pytest
from conftest import Database, secret_for, spec_for
from psycopg2 import sql

from pg2rds.postgres.source_checks import validate_source
from pg2rds.postgres.target_prep import AFTER_CONNECT_SCRIPT, prepare_target
from pg2rds.secrets import get_credentials
from pg2rds.spec import parse_spec
from pg2rds.state import Finding, SourceReport, TargetReport

Prep = Callable[..., TargetReport]


def only(report: TargetReport, name: str) -> Finding:
    found = [finding for finding in report.findings if finding.name == name]
    assert len(found) == 1, report.findings
    return found[0]


def names(report: TargetReport) -> set[str]:
    return {finding.name for finding in report.findings}


def run_prep(data: dict, source_report: SourceReport | None = None) -> TargetReport:
    spec = parse_spec(data)
    if source_report is None:
        source_report = validate_source(spec, get_credentials(spec.source, "source"))
    return prepare_target(spec, get_credentials(spec.target, "target"), source_report)


@pytest.fixture
def prep(aws: None, source_db: Database, target_db: Database) -> Prep:
    """prepare_target for the two test databases, with spec overrides (task options, tables, ...)."""

    def run(source_report: SourceReport | None = None, **overrides: object) -> TargetReport:
        return run_prep(spec_for(source_db, target_db, **overrides), source_report)

    return run


def on_both(source: Database, target: Database, *statements: str) -> None:
    for statement in statements:
        source.execute(statement)
        target.execute(statement)


def schema_exists(db: Database, schema: str) -> bool:
    return bool(db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)))


def test_ready_target_has_no_fatal_and_sets_the_after_connect_script(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    on_both(source_db, target_db, "CREATE TABLE orders (id int PRIMARY KEY)")

    report = prep()

    assert report.fatal == []
    assert only(report, "target_version").severity == "info"
    assert report.server_version_num >= 100000
    assert report.after_connect_script == AFTER_CONNECT_SCRIPT == "SET session_replication_role = replica;"
    assert report.schemas_created == []
    assert report.restore == []


def test_target_older_than_the_source_is_fatal_and_left_untouched(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    source_db.execute("CREATE SCHEMA billing")
    source_db.execute("CREATE TABLE billing.invoices (id int PRIMARY KEY)")
    newer_source = SourceReport(server_version="99.1", server_version_num=990001)

    report = prep(source_report=newer_source, task={"target_table_prep_mode": "DROP_AND_CREATE"})

    finding = only(report, "target_version")
    assert finding.severity == "fatal"
    assert "older than the source's 99" in finding.message
    assert "99 or later" in finding.fix
    assert report.schemas_created == [] and not schema_exists(target_db, "billing")


def test_missing_schemas_are_created_on_the_target(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    schema = 'Sales "EU"'
    source_db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    source_db.execute(sql.SQL("CREATE TABLE {}.orders (id int PRIMARY KEY)").format(sql.Identifier(schema)))
    source_db.execute("CREATE TABLE public.customers (id int PRIMARY KEY)")

    report = prep(task={"target_table_prep_mode": "DROP_AND_CREATE"})

    assert report.schemas_created == [schema]
    assert schema_exists(target_db, schema)
    assert report.fatal == []
    assert only(report, "target_table_prep_mode").severity == "warning"
    assert "no secondary indexes" in only(report, "target_table_prep_mode").message
    assert any(line.startswith("tables: DMS created") for line in report.restore)


@pytest.mark.parametrize("mode", ["DO_NOTHING", "TRUNCATE_BEFORE_LOAD"])
def test_missing_tables_are_fatal_unless_dms_creates_them(
    prep: Prep, source_db: Database, target_db: Database, mode: str
) -> None:
    on_both(source_db, target_db, "CREATE TABLE orders (id int PRIMARY KEY)")
    source_db.execute("CREATE TABLE customers (id int PRIMARY KEY)")
    source_db.execute('CREATE TABLE "Größe Tabelle" (id int PRIMARY KEY)')

    report = prep(task={"target_table_prep_mode": mode})

    finding = only(report, "target_tables_missing")
    assert finding.severity == "fatal"
    assert (finding.objects, finding.object_count) == (['public."Größe Tabelle"', "public.customers"], 2)
    assert "pg_dump --schema-only --no-owner" in finding.fix and "DROP_AND_CREATE" in finding.fix


def test_rows_already_on_the_target_are_fatal_with_do_nothing_only(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    on_both(
        source_db,
        target_db,
        "CREATE TABLE orders (id int PRIMARY KEY)",
        "CREATE TABLE customers (id int PRIMARY KEY)",
    )
    target_db.execute("INSERT INTO orders VALUES (1)")

    do_nothing = prep(task={"target_table_prep_mode": "DO_NOTHING"})
    truncate = prep(task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"})

    finding = only(do_nothing, "target_tables_not_empty")
    assert (finding.severity, finding.objects, finding.object_count) == ("fatal", ["public.orders"], 1)
    assert "TRUNCATE_BEFORE_LOAD" in finding.fix
    assert truncate.fatal == []


def test_emptiness_check_spans_several_batches(prep: Prep, source_db: Database, target_db: Database) -> None:
    create = (
        "DO $$ BEGIN FOR i IN 1..620 LOOP EXECUTE format('CREATE TABLE %%I (id int PRIMARY KEY)', 't' || i); "
        "END LOOP; END $$"
    )
    source_db.execute(create)  # psycopg2 formats even with no parameters: %% is a literal %
    target_db.execute(create)
    target_db.execute("INSERT INTO t3 VALUES (1)")
    target_db.execute("INSERT INTO t610 VALUES (1)")

    report = prep()

    assert only(report, "target_tables_not_empty").objects == ["public.t3", "public.t610"]


def test_restore_lists_foreign_keys_triggers_and_sequences(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    on_both(
        source_db,
        target_db,
        "CREATE TABLE customers (id serial PRIMARY KEY)",
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " customer_id int REFERENCES customers, billed_to int REFERENCES customers)",
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch()",
    )

    report = prep()

    assert report.fatal == []
    assert "foreign keys: 2 constraints on 1 selected tables" in "\n".join(report.restore)
    assert "triggers: 1 enabled user triggers on 1 selected tables" in "\n".join(report.restore)
    assert "sequences: 2 sequences owned by selected tables" in "\n".join(report.restore)
    assert not any("ALTER SYSTEM" in line for line in report.restore)


def test_sequences_of_a_partitioned_parent_count_for_its_partitions(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    on_both(
        source_db,
        target_db,
        "CREATE TABLE events (id bigserial, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    )

    report = prep()

    assert report.restore == [line for line in report.restore if line.startswith("sequences: 1 sequences")]
    assert len(report.restore) == 1


def test_enforced_foreign_keys_warn_when_triggers_stay_enabled(
    prep: Prep, source_db: Database, target_db: Database
) -> None:
    on_both(
        source_db,
        target_db,
        "CREATE TABLE customers (id int PRIMARY KEY)",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers)",
    )

    report = prep(task={"disable_target_triggers": False})

    finding = only(report, "target_constraints_enforced")
    assert finding.severity == "warning"
    assert "1 foreign key(s)" in finding.message
    assert finding.objects == ["public.orders"]
    assert report.after_connect_script == ""
    assert not any(line.startswith("foreign keys") for line in report.restore)


@pytest.fixture
def target_role(target_db: Database) -> Iterator[tuple[str, str]]:
    """A plain login role on the target that may read the tables but not create schemas or set
    session_replication_role."""
    name, password = f"loader_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    target_db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,))
    yield name, password
    target_db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    target_db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_plain_target_role_cannot_disable_triggers_or_create_schemas(
    aws: None, source_db: Database, target_db: Database, target_role: tuple[str, str]
) -> None:
    on_both(source_db, target_db, "CREATE TABLE orders (id int PRIMARY KEY)")
    source_db.execute("CREATE SCHEMA archive")
    source_db.execute("CREATE TABLE archive.orders (id int PRIMARY KEY)")
    target_db.execute(sql.SQL("GRANT SELECT ON orders TO {}").format(sql.Identifier(target_role[0])))
    data = spec_for(source_db, target_db)
    data["target"]["secret_arn"] = secret_for(target_db, *target_role)

    report = run_prep(data)

    privileges = only(report, "target_privileges")
    assert privileges.severity == "fatal"
    assert "session_replication_role" in privileges.message and target_role[0] in privileges.message
    assert "rds_superuser" in privileges.fix
    schema = only(report, "target_schema")
    assert (schema.severity, schema.objects) == ("fatal", ["archive"])
    assert "permission denied" in schema.message
    assert report.after_connect_script == ""
    assert not schema_exists(target_db, "archive")


def test_preparing_twice_gives_the_same_report(prep: Prep, source_db: Database, target_db: Database) -> None:
    source_db.execute("CREATE SCHEMA app")
    on_both(
        source_db,
        target_db,
        "CREATE TABLE customers (id serial PRIMARY KEY)",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers)",
    )
    source_db.execute("CREATE TABLE app.items (id int PRIMARY KEY)")

    first = prep()
    second = prep()

    # the first run created the schema (its table is still missing, hence the fatal); the second found it
    assert first.schemas_created == ["app"] and second.schemas_created == []
    assert schema_exists(target_db, "app")
    assert first.model_dump(exclude={"schemas_created"}) == second.model_dump(exclude={"schemas_created"})
    assert only(second, "target_tables_missing").objects == ["app.items"]
    third = prep()
    assert third.model_dump() == second.model_dump()


def test_a_target_that_is_the_source_database_is_fatal(aws: None, source_db: Database) -> None:
    """Two secrets, one database: the target is the source. Nothing may be loaded into it (with
    DROP_AND_CREATE the load would drop the source's tables first)."""
    source_db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    report = run_prep(spec_for(source_db, source_db))
    finding = only(report, "target_is_source")
    assert finding.severity == "fatal"
    assert repr(source_db.name) in finding.message and "DROP_AND_CREATE" in finding.message


def test_another_database_of_the_sources_server_may_be_the_target(aws: None, source_db: Database) -> None:
    other = Database(source_db.cluster, source_db.cluster.create_database("db_" + uuid.uuid4().hex[:10]))
    try:
        on_both(source_db, other, "CREATE TABLE orders (id int PRIMARY KEY)")
        report = run_prep(spec_for(source_db, other))
        assert "target_is_source" not in names(report)
        assert report.fatal == []
    finally:
        other.cluster.drop_database(other.name)
