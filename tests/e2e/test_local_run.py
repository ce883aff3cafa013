"""The user-facing local mode, end to end: ``run_local`` and the ``pg2rds`` command against real clusters.

Each test asserts what a user sees: the exit code, the execution's status, Error and Cause, the JSON the
command prints, the graph it draws, the rows and sequences on the target, and that nothing (no DMS
resource, no slot, no publication) is left behind.
"""

import json
import re
import uuid
from pathlib import Path

import judge
import pytest
from conftest import Database, spec_for
from judge import account_dms_resources
from test_cdc import wait_until

from pg2rds.postgres.selection import TableName
from pg2rds_cli import main as cli
from pg2rds_cli.executions import watch
from pg2rds_cli.graph import FAILED_FILL
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.local_run import run_local
from pg2rds_emulator.moto_dms import FakeEngine
from pg2rds_emulator.sample import load_pagila
from pg2rds_emulator.schema_copy import copy_schema
from pg2rds_emulator.standin_selection import selection_rules, selects

SERVER_AUTH_MESSAGE = 'password authentication failed for user "postgres"'


def source_objects(db: Database) -> tuple[list, list]:
    slots = db.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db.name,))
    publications = db.execute("SELECT pubname FROM pg_publication")
    return slots, publications


def count(db: Database, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}")[0][0]


def flat(text: str) -> str:
    """Terminal text with rich's line wrapping undone."""
    return " ".join(text.split())


def svg_node(svg: str, label: str) -> str:
    """The SVG group of the node whose text is ``label`` (Graphviz writes one ``<g class="node">`` each)."""
    for group in re.findall(r'<g id="node\d+" class="node">.*?</g>', svg, flags=re.S):
        if re.search(rf">{re.escape(label)}</text>", group):
            return group
    raise AssertionError(f"no node labelled {label!r} in the SVG")


# -- 1. pagila, full load, through run_local ----------------------------------------------------------------
@pytest.mark.slow
def test_pagila_full_load_locally_target_equals_source(source_db: Database, target_db: Database) -> None:
    load_pagila(source_db.cluster, source_db.name)
    source_dsn, target_dsn = source_db.cluster.dsn(source_db.name), target_db.cluster.dsn(target_db.name)
    copy_schema(source_dsn, target_dsn)

    view, leftovers = run_local(source_dsn, target_dsn, {"migration_id": "pagila-local"}, timeout_seconds=120)

    assert view.status == "SUCCEEDED", (view.failed_state, view.error, view.cause)
    assert view.current_state == "Migration complete"
    assert leftovers == []
    tables = judge.tables(source_db)  # the test's own catalog query and fingerprint, not the product's
    assert len(tables) >= 20  # pagila: 15 tables plus the payment partitions
    assert judge.differences(source_db, target_db) == []
    assert sum(count for count, _ in judge.database_fingerprint(target_db).values()) > 40_000
    assert view.output["finish"]["mismatched"] == []
    assert view.output["verification"]["tables_checked"] == len(tables)
    assert view.output["verification"]["mismatch_count"] == 0
    for sequence in ("actor_actor_id_seq", "payment_payment_id_seq", "rental_rental_id_seq"):
        query = f"SELECT last_value FROM {sequence}"
        assert target_db.execute(query) == source_db.execute(query), sequence
    # nextval on the target hands out an id the source has not used (the sequence was really moved)
    assert target_db.execute("SELECT nextval('actor_actor_id_seq')")[0][0] > count(source_db, "actor")
    assert source_objects(source_db) == ([], [])


# -- 2. the CLI: a spec file selecting one schema minus one table --------------------------------------------
SCHEMA = """
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int PRIMARY KEY, amount numeric(10, 2), note text);
CREATE TABLE sales.audit (id int PRIMARY KEY, what text);
CREATE TABLE public.other (id int PRIMARY KEY, name text);
"""


@pytest.fixture
def three_tables(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (source_db, target_db):
        db.execute(SCHEMA)
    source_db.execute(
        "INSERT INTO sales.orders SELECT i, i * 1.5, 'order ' || i FROM generate_series(1, 500) i;"
        "INSERT INTO sales.audit SELECT i, 'secret ' || i FROM generate_series(1, 50) i;"
        "INSERT INTO public.other SELECT i, 'other ' || i FROM generate_series(1, 20) i;"
    )
    return source_db, target_db


def test_cli_run_local_migrates_only_the_selected_tables(
    three_tables: tuple[Database, Database], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, target = three_tables
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(
        json.dumps(
            {
                "migration_id": "cli-selection",
                "tables": {
                    "include": [{"schema": "sales", "table": "%"}],
                    "exclude": [{"schema": "sales", "table": "audit"}],
                },
            }
        )
    )
    graph = tmp_path / "run.svg"

    code = cli.main(
        [
            "run",
            "--local",
            "--quiet",
            "--json",
            "--source-dsn",
            source.cluster.dsn(source.name),
            "--target-dsn",
            target.cluster.dsn(target.name),
            "--graph",
            str(graph),
            str(spec_file),
        ]
    )
    captured = capsys.readouterr()

    err = flat(captured.err)
    assert code == 0, err
    output = json.loads(captured.out)  # stdout is the execution output, nothing else
    assert output["source_report"]["tables_selected"] == 1
    assert output["verification"]["tables_checked"] == 1 and output["verification"]["mismatch_count"] == 0
    assert output["cleanup"]["ready"] is True
    assert "Migration SUCCEEDED" in err
    assert count(target, "sales.orders") == 500
    assert target.execute("SELECT sum(amount), max(note) FROM sales.orders") == source.execute(
        "SELECT sum(amount), max(note) FROM sales.orders"
    )
    assert count(target, "sales.audit") == 0  # excluded
    assert count(target, "public.other") == 0  # not included
    svg = graph.read_text()
    assert "Migration complete" in svg and "SUCCEEDED" in svg
    assert FAILED_FILL not in svg
    assert source_objects(source) == ([], [])


# -- 3. a source that is not ready for CDC -------------------------------------------------------------------
@pytest.fixture
def replica_pair(replica_source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (replica_source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    replica_source_db.execute("INSERT INTO t SELECT generate_series(1, 10)")
    return replica_source_db, target_db


def test_source_not_ready_fails_in_validation_and_creates_nothing(
    replica_pair: tuple[Database, Database], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, target = replica_pair
    source_dsn, target_dsn = source.cluster.dsn(source.name), target.cluster.dsn(target.name)
    spec = {"migration_id": "not-ready", "migration_type": "full-load-and-cdc"}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    graph = tmp_path / "failed.svg"

    code = cli.main(
        [
            "run",
            "--local",
            "--quiet",
            "--json",
            "--source-dsn",
            source_dsn,
            "--target-dsn",
            target_dsn,
            "--graph",
            str(graph),
            str(spec_file),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    json.loads(captured.out)  # still valid JSON: the newest state seen
    err = flat(captured.err)
    assert "Migration FAILED" in err and "Failed in: Validate source" in err
    assert "Error: SourceNotReady" in err and "wal_level" in err
    assert "Left in the embedded account" not in err
    svg = graph.read_text()
    node = svg_node(svg, "Validate source")
    assert f'fill="{FAILED_FILL}"' in node
    assert "SourceNotReady" in svg
    assert f'fill="{FAILED_FILL}"' not in svg_node(svg, "Create replication instance")

    view, leftovers = run_local(source_dsn, target_dsn, spec, timeout_seconds=60)
    assert view.status == "FAILED"
    assert view.error == "SourceNotReady", view.cause
    assert view.failed_state == "Validate source"
    assert "wal_level" in view.cause and "logical" in view.cause
    assert "Create replication instance" not in view.states
    assert "Clean up after failure" in view.states
    assert leftovers == []
    assert source_objects(source) == ([], [])
    assert count(target, "t") == 0


# -- 4. a wrong target password ------------------------------------------------------------------------------
def test_wrong_target_password_fails_in_prepare_target_without_echoing_it(
    source_db: Database, target_db: Database
) -> None:
    target = target_db
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    wrong = "Wr0ng-Passw0rd-4711"
    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target.cluster.dsn(target.name, password=wrong),
        {"migration_id": "bad-password"},
        timeout_seconds=60,
    )

    assert view.status == "FAILED"
    assert view.failed_state == "Prepare target"
    assert view.error == "TargetUnreachable", view.cause
    assert SERVER_AUTH_MESSAGE in view.cause
    assert target.name in view.cause  # says which database
    assert wrong not in view.cause and wrong not in json.dumps(view.record)
    assert "Create replication instance" not in view.states  # nothing that costs money was created
    assert leftovers == []


def test_a_target_dsn_leading_to_the_source_fails_before_anything_is_written(source_db: Database) -> None:
    """The target DSN names the source's own database (another spelling of its host). With
    DROP_AND_CREATE the stand-in, as DMS would, dropped the tables it was reading (or hung on their
    locks); now Prepare target sees that the target session is one of the source's and stops there."""
    source_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    source_db.execute("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g")
    target_dsn = source_db.cluster.dsn(source_db.name).replace("127.0.0.1", "localhost")
    assert "localhost" in target_dsn

    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target_dsn,
        {"migration_id": "into-itself", "task": {"target_table_prep_mode": "DROP_AND_CREATE"}},
        timeout_seconds=60,
    )

    assert view.status == "FAILED"
    assert view.failed_state == "Prepare target"
    assert view.error == "TargetNotReady", view.cause
    assert "target_is_source" in view.cause and source_db.name in view.cause
    assert "Create replication instance" not in view.states
    assert leftovers == []
    assert count(source_db, "t") == 100
    assert source_objects(source_db) == ([], [])


def test_tables_with_inheritance_children_are_compared_by_their_own_rows(
    source_db: Database, target_db: Database
) -> None:
    """Partitioning by inheritance (before PostgreSQL 10): the parent named alone yields its children's
    rows too. DMS loads each table's own rows and, with DROP_AND_CREATE, creates the tables without the
    inheritance; verification read the source's parent whole and failed the identical data."""
    source_db.execute("CREATE TABLE parent (id int PRIMARY KEY, v text)")
    source_db.execute("CREATE TABLE child (extra int) INHERITS (parent)")
    source_db.execute("ALTER TABLE child ADD PRIMARY KEY (id)")
    source_db.execute("INSERT INTO parent SELECT g, 'p' FROM generate_series(1, 100) g")
    source_db.execute("INSERT INTO child SELECT g, 'c', 1 FROM generate_series(101, 150) g")

    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target_db.cluster.dsn(target_db.name),
        {"migration_id": "inherits", "task": {"target_table_prep_mode": "DROP_AND_CREATE"}},
        timeout_seconds=60,
    )

    assert view.status == "SUCCEEDED", view.cause
    assert leftovers == []
    assert (count(target_db, "parent"), count(target_db, "child")) == (100, 50)


def test_a_latin1_source_reaches_a_utf8_target_with_its_characters(
    source_db: Database, target_db: Database
) -> None:
    """The stand-in piped the source's COPY into the target's as bytes, each session in its server's encoding:
    a LATIN1 'é' (0xe9) reached the UTF8 target as an invalid byte sequence and the task failed. And
    verification, hashing text by its stored bytes, called the same characters different."""
    latin1 = Database(source_db.cluster, "latin1_" + uuid.uuid4().hex[:8])
    source_db.cluster.execute(
        "postgres",
        f"CREATE DATABASE {latin1.name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    words = ["café", "naïve", "über", "plain"]
    try:
        with latin1.connect() as conn, conn.cursor() as cur:
            conn.set_client_encoding("UTF8")
            cur.execute("CREATE TABLE t (id int PRIMARY KEY, word text)")
            cur.execute(
                "INSERT INTO t SELECT i, w FROM unnest(%s::text[]) WITH ORDINALITY AS u(w, i)", (words,)
            )
        view, leftovers = run_local(
            latin1.cluster.dsn(latin1.name),
            target_db.cluster.dsn(target_db.name),
            {"migration_id": "latin1", "task": {"target_table_prep_mode": "DROP_AND_CREATE"}},
            timeout_seconds=60,
        )
    finally:
        source_db.cluster.drop_database(latin1.name)

    assert view.status == "SUCCEEDED", view.cause
    assert leftovers == []
    with target_db.connect() as conn, conn.cursor() as cur:
        conn.set_client_encoding("UTF8")
        cur.execute("SELECT word FROM t ORDER BY id")
        assert [word for (word,) in cur.fetchall()] == words


# -- 5. the password changes after preparation: DMS's connection test fails ----------------------------------
@pytest.mark.slow
def test_rotated_target_password_fails_the_dms_connection_test_and_cleans_up(
    source_db: Database, target_db: Database
) -> None:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    source_db.execute("INSERT INTO t SELECT generate_series(1, 10)")
    engine = StandInEngine()
    # A 5 s poll interval at time scale 0.2: each Wait takes 1 s, time enough to rotate the password.
    polling = {"initial_seconds": 5, "max_seconds": 5}
    admin = target_db.cluster.connect("postgres")  # stays authenticated across the rotation
    try:
        with EmbeddedAws(engine, time_scale=0.2) as aws:
            spec = spec_for(source_db, target_db, migration_id="rotated", polling=polling)
            sfn = aws.client("stepfunctions")
            arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(spec))[
                "executionArn"
            ]
            try:
                states = {"Wait for the instance", "Create endpoints"}
                view = wait_until(
                    aws, arn, lambda v: v.current_state in states, 60, 0.05, f"reached {states}"
                )
                assert view.current_state in ("Wait for the instance", "Create endpoints"), (
                    view.status,
                    view.states,
                    view.cause,
                )
                assert "Prepare target" in view.states  # the Lambda phases got through with the old one
                with admin.cursor() as cur:
                    cur.execute("ALTER ROLE postgres PASSWORD 'rotated'")
                view = watch(sfn, arn, lambda v: None, interval_seconds=0.1, timeout_seconds=60)
            finally:
                with admin.cursor() as cur:
                    cur.execute("ALTER ROLE postgres PASSWORD %s", (target_db.cluster.password,))
            leftovers = account_dms_resources(aws)
    finally:
        admin.close()
        engine.shutdown()

    assert view.status == "FAILED"
    assert view.failed_state == "Test connections"
    assert view.error == "ConnectionTestFailed", view.cause
    assert SERVER_AUTH_MESSAGE in view.cause
    assert "target endpoint" in view.cause
    assert "Start replication task" not in view.states
    assert "Clean up after failure" in view.states
    assert leftovers == []
    assert source_objects(source_db) == ([], [])
    assert count(target_db, "t") == 0
    # the password is back: the shared cluster still admits the tests that follow
    assert target_db.execute("SELECT 1") == [(1,)]


# -- 6. pg2rds status / graph against an execution in the embedded account -----------------------------------
def test_status_and_graph_commands_read_an_embedded_execution(
    source_db: Database, target_db: Database, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    target_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    with EmbeddedAws(FakeEngine(), time_scale=0.01) as aws:
        sfn = aws.client("stepfunctions")

        def run(spec: dict) -> str:
            # named: moto names every unnamed execution "None", so a second unnamed start is refused
            arn = sfn.start_execution(
                stateMachineArn=aws.state_machine_arn, name=spec["migration_id"], input=json.dumps(spec)
            )["executionArn"]
            watch(sfn, arn, lambda v: None, interval_seconds=0.1, timeout_seconds=60)
            return arn

        succeeded = run(spec_for(source_db, target_db, migration_id="status-ok"))
        target_db.execute("DROP TABLE t")
        failed = run(spec_for(source_db, target_db, migration_id="status-bad"))
        capsys.readouterr()

        assert cli.main(["status", succeeded, "--json"]) == 0
        captured = capsys.readouterr()
        err = flat(captured.err)
        assert "Migration SUCCEEDED" in err
        assert "Migration complete" in err  # the states visited
        assert json.loads(captured.out)["cleanup"]["ready"] is True

        assert cli.main(["status", failed]) == 1
        captured = capsys.readouterr()
        err = flat(captured.err)
        assert "Migration FAILED" in err
        assert "Failed in: Prepare target" in err and "Error: TargetNotReady" in err
        assert captured.out == ""

        ok_graph, bad_graph = tmp_path / "ok.svg", tmp_path / "bad.svg"
        assert cli.main(["graph", succeeded, "-o", str(ok_graph)]) == 0
        assert cli.main(["graph", failed, "--output", str(bad_graph)]) == 0
        assert "Graph written to" in flat(capsys.readouterr().err)

    ok_svg, bad_svg = ok_graph.read_text(), bad_graph.read_text()
    assert ok_svg.startswith("<?xml") and "SUCCEEDED" in ok_svg and "Migration complete" in ok_svg
    assert FAILED_FILL not in ok_svg
    assert "FAILED" in bad_svg and "TargetNotReady" in bad_svg
    assert f'fill="{FAILED_FILL}"' in svg_node(bad_svg, "Prepare target")


# -- 5. table mappings: DMS selects exactly what pg2rds checked ---------------------------------------------
SELECTION_SCHEMA = """
CREATE TABLE public.order_items (id int PRIMARY KEY, sku text);
CREATE TABLE public."orderXitems" (id int PRIMARY KEY, sku text);
CREATE TABLE public.measurements (id int, taken date NOT NULL, PRIMARY KEY (id, taken))
    PARTITION BY RANGE (taken);
CREATE TABLE public.measurements_2023 PARTITION OF public.measurements
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.measurements_2024 PARTITION OF public.measurements
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
"""


class RecordingStandIn(StandInEngine):
    """The stand-in, noting the TableMappings each task arrives with (what DMS receives)."""

    def __init__(self) -> None:
        super().__init__()
        self.mappings: list[str] = []

    def start_task(self, task) -> None:
        self.mappings.append(task.table_mappings)
        super().start_task(task)


def fingerprint(db: Database, table: str) -> list[tuple]:
    """Independent of pg2rds's comparison: count and md5 of the ordered rows' text."""
    return db.execute(
        f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
    )


def test_mappings_select_only_the_named_table_and_partitions_not_parents(
    source_db: Database, target_db: Database
) -> None:
    for db in (source_db, target_db):
        db.execute(SELECTION_SCHEMA)
    source_db.execute(
        "INSERT INTO public.order_items SELECT g, 'sku-' || g FROM generate_series(1, 40) g;"
        """INSERT INTO public."orderXitems" SELECT g, 'source' FROM generate_series(1, 9) g;"""
        "INSERT INTO public.measurements SELECT g, date '2023-03-01' + g FROM generate_series(1, 600) g;"
    )
    target_db.execute(
        """INSERT INTO public."orderXitems" SELECT g, 'the target''s own' FROM generate_series(1, 4) g"""
    )
    untouched = fingerprint(target_db, 'public."orderXitems"')
    spec = {
        "migration_id": "lookalikes",
        "tables": {"include": [{"table": "order_items"}, {"schema": "public", "table": "measurements%"}]},
        "task": {"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
    }
    engine = RecordingStandIn()

    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target_db.cluster.dsn(target_db.name),
        spec,
        engine,
        timeout_seconds=120,
    )

    assert view.status == "SUCCEEDED", (view.failed_state, view.error, view.cause)
    assert leftovers == []
    assert fingerprint(target_db, 'public."orderXitems"') == untouched
    for table in ("public.order_items", "public.measurements_2023", "public.measurements_2024"):
        assert fingerprint(target_db, table) == fingerprint(source_db, table), table
    assert fingerprint(target_db, "public.measurements")[0][0] == 600  # not loaded twice through the parent
    [mappings] = engine.mappings
    rules = selection_rules(mappings)
    source_tables = [
        TableName(s, t)
        for s, t in source_db.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    ]
    assert sorted(str(t) for t in source_tables if selects(rules, t)) == [
        "public.measurements_2023",
        "public.measurements_2024",
        "public.order_items",
    ]


# -- 7. DMS creates the tables: their keys come after their rows --------------------------------------------
def test_tables_dms_creates_in_a_full_load_get_their_keys_after_their_rows(
    three_tables: tuple[Database, Database],
) -> None:
    """``target_table_prep_mode: DROP_AND_CREATE`` in a full load: DMS creates each table without its
    primary key and adds it once the rows are in (CreatePkAfterFullLoad); the run verifies by key range
    as ever, and every table is equal."""
    source_db, target_db = three_tables
    target_db.execute("DROP SCHEMA sales CASCADE; DROP TABLE public.other")  # DMS creates them
    target_db.execute(judge.KEY_LOG)
    spec = {"migration_id": "keys-after", "task": {"target_table_prep_mode": "DROP_AND_CREATE"}}

    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target_db.cluster.dsn(target_db.name),
        spec,
        timeout_seconds=120,
    )

    assert view.status == "SUCCEEDED", (view.failed_state, view.error, view.cause)
    assert leftovers == []
    assert judge.differences(source_db, target_db) == []
    assert judge.key_log(target_db) == [
        ("public.other", "CREATE TABLE", 0, 0),
        ("public.other", "ALTER TABLE", 1, 20),
        ("sales.audit", "CREATE TABLE", 0, 0),
        ("sales.audit", "ALTER TABLE", 1, 50),
        ("sales.orders", "CREATE TABLE", 0, 0),
        ("sales.orders", "ALTER TABLE", 1, 500),
    ]
    assert view.output["verification"]["mismatch_count"] == 0
    assert view.output["verification"]["chunks_checked"] >= 3
