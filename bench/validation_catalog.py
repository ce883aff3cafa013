"""Validation on a large catalog: 10,000 tables in 100 schemas.

Times ``pg2rds.postgres.source_checks.validate_source`` (full-load and full-load-and-cdc) next to a naive
per-table check (one catalog query per table, as a hand-written script would do it), on the same catalog.
Round trips are counted twice, independently of each other: by the server (``log_statement = all``, lines
of the session's ``application_name`` in the server log, during one extra run) and by the report's own
``catalog_queries``. Wall times are medians of 5 runs after a warm-up, with statement logging off.

Targets: ≤ 5 round trips and < 1 s per validation.
"""

import sys
import time

from _common import median_time, table, verdict

from pg2rds.postgres.source_checks import validate_source
from pg2rds.secrets import Credentials
from pg2rds.spec import parse_spec
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, SUPERUSER, Cluster, start_cluster

SCHEMAS = 100
TABLES_PER_SCHEMA = 100
DATABASE = "catalog"
FAKE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench-catalog"
NAIVE_APP = "bench-naive"
VALIDATE_APP = "pg2rds-validate"  # what validate_source sets as application_name
TARGET_ROUND_TRIPS = 5
TARGET_SECONDS = 1.0

#: One DO block per 10 schemas (10 statements in all): 1,000 tables per transaction keeps the lock table
#: small. Table i of a schema: i % 10 == 0 has no primary key (no replica identity: flagged), i % 10 == 1
#: has no primary key but REPLICA IDENTITY FULL (fine), the others have a primary key.
CREATE_BLOCK = """
DO $$
DECLARE s int; t int; name text;
BEGIN
  FOR s IN {first}..{last} LOOP
    EXECUTE format('CREATE SCHEMA s%s', lpad(s::text, 3, '0'));
    FOR t IN 0..{per_schema_last} LOOP
      name := format('s%s.t%s', lpad(s::text, 3, '0'), lpad(t::text, 3, '0'));
      IF t % 10 = 0 THEN
        EXECUTE format('CREATE TABLE %s (id int, v int)', name);
      ELSIF t % 10 = 1 THEN
        EXECUTE format('CREATE TABLE %s (id int, v int)', name);
        EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', name);
      ELSE
        EXECUTE format('CREATE TABLE %s (id int PRIMARY KEY, v int)', name);
      END IF;
    END LOOP;
  END LOOP;
END $$;
"""

NAIVE_LIST = """
SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%'
"""
NAIVE_ONE = """
SELECT c.relreplident,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
FROM pg_class c WHERE c.oid = %s
"""


def build_catalog(cluster: Cluster) -> float:
    cluster.create_database(DATABASE)
    started = time.perf_counter()
    conn = cluster.connect(DATABASE)
    try:
        with conn.cursor() as cur:
            for first in range(0, SCHEMAS, 10):
                cur.execute(
                    CREATE_BLOCK.format(first=first, last=first + 9, per_schema_last=TABLES_PER_SCHEMA - 1)
                )
            cur.execute("ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - started


def naive_check(cluster: Cluster) -> int:
    """The hand-written way: list the tables, then ask about each one. Returns the unidentified count."""
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1", port=cluster.port, dbname=DATABASE, user=SUPERUSER, password=cluster.password,
        application_name=NAIVE_APP,
    )  # fmt: skip
    conn.autocommit = True
    unidentified = 0
    try:
        with conn.cursor() as cur:
            cur.execute(NAIVE_LIST)
            tables = cur.fetchall()
            for oid, _schema, _name in tables:
                cur.execute(NAIVE_ONE, (oid,))
                replident, has_pk, has_replident = cur.fetchone() or (None, False, False)
                identified = (
                    replident == "f" or (replident == "d" and has_pk) or (replident == "i" and has_replident)
                )
                unidentified += not identified
    finally:
        conn.close()
    return unidentified


def logged_statements(cluster: Cluster, application: str, run) -> int:
    """Statements the server logged for ``application`` while ``run()`` ran (log_statement = all)."""
    cluster.execute("postgres", "ALTER SYSTEM SET log_statement = 'all'")
    cluster.execute("postgres", "ALTER SYSTEM SET log_line_prefix = '[%%a] '")
    cluster.execute("postgres", "SELECT pg_reload_conf()")
    time.sleep(0.3)
    start = cluster.log_file.stat().st_size
    run()
    time.sleep(0.3)
    cluster.execute("postgres", "ALTER SYSTEM RESET log_statement")
    cluster.execute("postgres", "SELECT pg_reload_conf()")
    with open(cluster.log_file, "rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    marker = f"[{application}] LOG:  statement:"
    return sum(1 for line in text.splitlines() if line.startswith(marker))


def main() -> int:
    cluster = start_cluster("bench-catalog", LOGICAL_SOURCE_SETTINGS)
    try:
        build_seconds = build_catalog(cluster)
        count = cluster.execute(
            DATABASE, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname LIKE 's%%'",
        )[0][0]  # fmt: skip
        print(f"catalog: {count} tables in {SCHEMAS} schemas, built in {build_seconds:.1f} s (10 DO blocks)")
        credentials = Credentials("127.0.0.1", cluster.port, DATABASE, SUPERUSER, cluster.password)
        rows, results = [], {}
        for migration_type in ("full-load", "full-load-and-cdc"):
            spec = parse_spec(
                {
                    "migration_id": "bench-catalog",
                    "migration_type": migration_type,
                    "source": {"secret_arn": FAKE_SECRET, "ssl_mode": "none"},
                    "target": {"secret_arn": FAKE_SECRET, "ssl_mode": "none"},
                }
            )  # fmt: skip

            def validate(spec=spec):
                return validate_source(spec, credentials)

            server_count = logged_statements(cluster, VALIDATE_APP, validate)
            seconds, samples, report = median_time(validate)
            keyless = ("primary_key", "primary_key_insert_only")
            unidentified = sum(f.object_count for f in report.findings if f.name in keyless)
            results[migration_type] = (server_count, report.catalog_queries, seconds)
            rows.append(
                [
                    f"validate_source ({migration_type})", server_count, report.catalog_queries,
                    f"{seconds * 1000:.0f} ms", " ".join(f"{s * 1000:.0f}" for s in samples),
                    report.tables_selected, unidentified,
                ]
            )  # fmt: skip
        naive_count = logged_statements(cluster, NAIVE_APP, lambda: naive_check(cluster))
        seconds, samples, unidentified = median_time(lambda: naive_check(cluster))
        rows.append(
            [
                "naive per-table check", naive_count, "-", f"{seconds * 1000:.0f} ms",
                " ".join(f"{s * 1000:.0f}" for s in samples), count, unidentified,
            ]
        )  # fmt: skip
        print()
        print(
            table(
                ["check", "round trips (server log)", "catalog_queries (report)", "median wall",
                 "samples (ms)", "tables", "flagged (no PK/identity)"],
                rows,
                title="Validation of a 10,000-table catalog (median of 5 after 1 warm-up)",
            )
        )  # fmt: skip
        print()
        for migration_type, (server_count, reported, seconds) in results.items():
            print(
                f"{migration_type}: round trips {server_count} (target ≤ {TARGET_ROUND_TRIPS}: "
                f"{verdict(server_count <= TARGET_ROUND_TRIPS)}), wall {seconds * 1000:.0f} ms "
                f"(target < {TARGET_SECONDS * 1000:.0f} ms: {verdict(seconds < TARGET_SECONDS)})"
                + ("" if reported == server_count else f"; NOTE: report {reported}, server {server_count}")
            )
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
