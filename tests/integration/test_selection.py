"""Table selection with DMS's rule syntax, decided by a real catalog; and the table-mappings round trip."""

import json
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from conftest import Database

from pg2rds.dms.table_mappings import table_mappings
from pg2rds.postgres.selection import TableName, partitioned_parents, select_tables
from pg2rds.spec import TableRule, TableSelection

Conn = psycopg2.extensions.connection


@pytest.fixture
def conn(source_db: Database) -> Iterator[Conn]:
    connection = source_db.connect()
    yield connection
    connection.close()


def rules(*pairs: tuple[str, str]) -> list[TableRule]:
    return [TableRule(schema=schema, table=table) for schema, table in pairs]


def selected(conn: Conn, include: list[TableRule], exclude: list[TableRule] | tuple = ()) -> list[str]:
    return [str(name) for name in select_tables(conn, TableSelection(include=include, exclude=list(exclude)))]


@pytest.fixture
def catalog(source_db: Database) -> Database:
    """Schemas and tables whose names only differ by what a sloppy matcher would confuse."""
    for statement in (
        "CREATE SCHEMA app_eu",
        "CREATE SCHEMA app_us",
        "CREATE SCHEMA appxeu",
        "CREATE SCHEMA billing",
        "CREATE TABLE app_eu.orders (id int)",
        "CREATE TABLE app_eu.tmp_orders (id int)",
        "CREATE TABLE app_us.orders (id int)",
        "CREATE TABLE appxeu.orders (id int)",
        "CREATE TABLE billing.invoices (id int)",
        'CREATE TABLE billing."Invoices" (id int)',
        "CREATE TABLE public.a_b (id int)",
        "CREATE TABLE public.axb (id int)",
        'CREATE TABLE public."a\\b" (id int)',
        "CREATE VIEW public.v_orders AS SELECT * FROM app_eu.orders",
        "CREATE MATERIALIZED VIEW public.mv_orders AS SELECT * FROM app_eu.orders",
        "CREATE SEQUENCE public.s_orders",
    ):
        source_db.execute(statement)
    return source_db


def test_everything_means_user_tables_only(conn: Conn, catalog: Database) -> None:
    names = selected(conn, rules(("%", "%")))

    assert names == [
        "app_eu.orders",
        "app_eu.tmp_orders",
        "app_us.orders",
        "appxeu.orders",
        "billing.Invoices",
        "billing.invoices",
        "public.a\\b",
        "public.a_b",
        "public.axb",
    ]  # no views, materialized views, sequences, pg_catalog or information_schema tables


def test_underscore_is_literal_and_percent_is_the_wildcard(conn: Conn, catalog: Database) -> None:
    assert selected(conn, rules(("public", "a_b"))) == ["public.a_b"]
    assert selected(conn, rules(("app_%", "orders"))) == ["app_eu.orders", "app_us.orders"]
    assert selected(conn, rules(("public", "a\\b"))) == ["public.a\\b"]
    assert selected(conn, rules(("public", "a%b"))) == ["public.a\\b", "public.a_b", "public.axb"]


def test_names_are_case_sensitive(conn: Conn, catalog: Database) -> None:
    assert selected(conn, rules(("billing", "Invoices"))) == ["billing.Invoices"]
    assert selected(conn, rules(("BILLING", "%"))) == []


def test_exclusions_win_over_inclusions(conn: Conn, catalog: Database) -> None:
    include = rules(("app%", "%"), ("billing", "invoices"))
    names = selected(conn, include, exclude=rules(("%", "tmp%"), ("appx%", "%")))

    assert names == ["app_eu.orders", "app_us.orders", "billing.invoices"]


def test_partitioned_parents_are_left_out_and_leaves_selected(conn, source_db: Database) -> None:
    for statement in (
        "CREATE TABLE events (id int, at date, region text) PARTITION BY RANGE (at)",
        "CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')",
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
        " PARTITION BY LIST (region)",
        "CREATE TABLE events_2024_eu PARTITION OF events_2024 FOR VALUES IN ('eu')",
        "CREATE TABLE events_2024_us PARTITION OF events_2024 FOR VALUES IN ('us')",
    ):
        source_db.execute(statement)

    assert selected(conn, rules(("public", "events%"))) == [
        "public.events_2023",
        "public.events_2024_eu",
        "public.events_2024_us",
    ]


def test_unusual_characters_survive_selection(conn: Conn, source_db: Database) -> None:
    source_db.execute('CREATE SCHEMA "Sales ""EU"""')
    source_db.execute('CREATE TABLE "Sales ""EU"""."Bestellungen Größe" (id int)')

    (name,) = select_tables(conn, TableSelection(include=rules(('Sales "EU"', "Bestellungen%"))))

    assert name == TableName('Sales "EU"', "Bestellungen Größe")


def test_table_mappings_are_readable_and_escaped() -> None:
    selection = TableSelection(
        include=rules(("app_%", "%"), ('Sales "EU"', "Bestellungen Größe")),
        exclude=rules(("%", "tmp%")),
    )

    mappings = table_mappings(selection)
    document = json.loads(mappings)

    assert [rule["rule-action"] for rule in document["rules"]] == ["include", "include", "exclude"]
    assert [rule["rule-id"] for rule in document["rules"]] == ["1", "2", "3"]
    assert document["rules"][0]["object-locator"] == {"schema-name": "app[_]%", "table-name": "%"}
    assert document["rules"][1]["object-locator"] == {
        "schema-name": 'Sales "EU"',
        "table-name": "Bestellungen Größe",
    }
    assert "Größe" in mappings  # kept readable, not \u-escaped


def test_partitioned_parents_the_rules_reach(conn, source_db: Database) -> None:
    for statement in (
        "CREATE SCHEMA other",
        "CREATE TABLE events (id int, at date, region text) PARTITION BY RANGE (at)",
        "CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')",
        "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
        " PARTITION BY LIST (region)",
        "CREATE TABLE events_2024_eu PARTITION OF events_2024 FOR VALUES IN ('eu')",
        "CREATE TABLE other.logs (id int) PARTITION BY HASH (id)",
        "CREATE TABLE other.logs_0 PARTITION OF other.logs FOR VALUES WITH (MODULUS 1, REMAINDER 0)",
        "CREATE TABLE plain (id int)",
    ):
        source_db.execute(statement)

    def parents(include, exclude=()) -> list[str]:
        selection = TableSelection(include=include, exclude=list(exclude))
        return [str(name) for name in partitioned_parents(conn, selection)]

    assert parents(rules(("%", "%"))) == ["other.logs", "public.events", "public.events_2024"]
    assert parents(rules(("public", "%"))) == ["public.events", "public.events_2024"]
    assert parents(rules(("%", "%")), exclude=rules(("other", "%"))) == [
        "public.events",
        "public.events_2024",
    ]
    assert parents(rules(("public", "plain"))) == []
