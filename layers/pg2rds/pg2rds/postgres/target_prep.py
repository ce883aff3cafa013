"""Is the target ready to receive the selected tables, and what must be restored after the load?

Runs after source validation and before anything that costs money. Its only writes are
``CREATE SCHEMA IF NOT EXISTS`` for schemas the selected tables need, so running it twice is harmless.
Everything else is read from the catalogs in a fixed number of queries whatever the table count; the one
exception is the emptiness check (``DO_NOTHING`` only), which has to read the tables themselves and is
batched so that one statement never locks more relations than ``max_locks_per_transaction`` allows.

DMS's target sessions run ``after_connect_script``; with ``session_replication_role = replica`` triggers
and foreign-key checks do not fire during the load (tables then load in any order, in parallel), which is
why the report lists what to validate afterwards. No ``ALTER SYSTEM`` anywhere: RDS forbids it.
"""

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from pg2rds.postgres.connection import connect
from pg2rds.postgres.selection import SELECTED_TABLES_CTE, TableName, select_tables, selection_params
from pg2rds.postgres.sqltext import CountingCursor, one_row, quote_ident, server_message
from pg2rds.secrets import Credentials, get_credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING, Finding, SourceReport, TargetReport

AFTER_CONNECT_SCRIPT = "SET session_replication_role = replica;"
#: Tables per emptiness statement: each one locks the table (and the planner its indexes) until the
#: statement ends, and the lock table holds about 64 × max_connections locks in all.
EMPTINESS_BATCH = 500

# -- the source side: which tables, and how many sequences they own ----------------------------------------

#: Sequences owned by the selected tables or by their partitioned ancestors (serial: deptype 'a',
#: identity: 'i'); DMS copies rows, never sequence values.
SOURCE_SEQUENCES_QUERY = f"""
WITH RECURSIVE {SELECTED_TABLES_CTE.strip()},
owners AS (
    SELECT oid FROM selected
    UNION
    SELECT i.inhparent FROM pg_inherits i JOIN owners o ON i.inhrelid = o.oid
)
SELECT count(DISTINCT d.objid)
FROM pg_depend d
JOIN owners o ON o.oid = d.refobjid
JOIN pg_class q ON q.oid = d.objid AND q.relkind = 'S'
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
"""


@dataclass(frozen=True)
class SourceSide:
    tables: list[TableName]
    sequences: int

    @property
    def schemas(self) -> list[str]:
        return sorted({table.schema for table in self.tables})


def read_source_side(spec: MigrationSpec, conn: Any) -> SourceSide:
    """The selected source tables (two queries on the read-only source session ``conn``): the target is
    compared against them."""
    tables = select_tables(conn, spec.tables)
    with conn.cursor() as cur:
        cur.execute(SOURCE_SEQUENCES_QUERY, selection_params(spec.tables.include, spec.tables.exclude))
        (sequences,) = one_row(cur)
    return SourceSide(tables=tables, sequences=sequences)


# -- the target side ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetFacts:
    server_version: str
    server_version_num: int
    username: str
    superuser: bool
    rds_superuser: bool
    existing_schemas: set[str]


@dataclass(frozen=True)
class TargetTable:
    schema: str
    table: str
    display: str
    exists: bool
    foreign_keys: int
    triggers: int


TARGET_QUERY = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       r.rolname::text, r.rolsuper,
       EXISTS (SELECT 1 FROM pg_roles g
               WHERE g.rolname = 'rds_superuser' AND pg_has_role(r.oid, g.oid, 'MEMBER')),
       ARRAY(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(%(schemas)s))
FROM pg_roles r
WHERE r.rolname = current_user
"""

#: One row per selected source table: does it exist on the target, and what would fire while loading it.
TARGET_TABLES_QUERY = """
WITH wanted AS (
    SELECT w.schema_name, w.table_name, c.oid
    FROM unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(schema_name, table_name)
    LEFT JOIN pg_namespace n ON n.nspname = w.schema_name
    LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name AND c.relkind IN ('r', 'p')
),
fks AS (SELECT conrelid, count(*) AS n FROM pg_constraint WHERE contype = 'f' GROUP BY conrelid),
triggers AS (
    SELECT tgrelid, count(*) AS n FROM pg_trigger
    WHERE NOT tgisinternal AND tgenabled <> 'D'
    GROUP BY tgrelid
)
SELECT w.schema_name, w.table_name, format('%%I.%%I', w.schema_name, w.table_name), w.oid IS NOT NULL,
       coalesce(fks.n, 0), coalesce(triggers.n, 0)
FROM wanted w
LEFT JOIN fks ON fks.conrelid = w.oid
LEFT JOIN triggers ON triggers.tgrelid = w.oid
ORDER BY w.schema_name COLLATE "C", w.table_name COLLATE "C"
"""


def _target_facts(cur: CountingCursor, schemas: list[str]) -> TargetFacts:
    cur.execute(TARGET_QUERY, {"schemas": schemas})
    version, version_num, username, superuser, rds_superuser, existing = one_row(cur)
    return TargetFacts(version, version_num, username, superuser, rds_superuser, set(existing))


def _target_tables(cur: CountingCursor, tables: list[TableName]) -> list[TargetTable]:
    cur.execute(
        TARGET_TABLES_QUERY,
        {"schemas": [t.schema for t in tables], "tables": [t.table for t in tables]},
    )
    return [TargetTable(*row) for row in cur.fetchall()]


def _major(version_num: int) -> tuple[int, int]:
    """PostgreSQL's major version: 9.6 is (9, 6), 15.4 is (15, 0)."""
    if version_num >= 100000:
        return version_num // 10000, 0
    return version_num // 10000, version_num // 100 % 100


def _version_text(version_num: int) -> str:
    major, minor = _major(version_num)
    return f"{major}.{minor}" if major < 10 else str(major)


#: Which of the given tables hold a row. ``query_to_xml`` runs one ``LIMIT 1`` probe per table inside
#: this single statement, quoting names server-side with ``%I``; an empty result means an empty table.
NON_EMPTY_QUERY = """
SELECT w.i
FROM unnest(%(schemas)s::text[], %(tables)s::text[]) WITH ORDINALITY AS w(schema_name, table_name, i)
WHERE query_to_xml(format('SELECT 1 AS row_found FROM %%I.%%I LIMIT 1', w.schema_name, w.table_name),
                   false, true, '')::text <> ''
ORDER BY w.i
"""


# -- checks and actions --------------------------------------------------------------------------------------


def check_version(facts: TargetFacts, source: SourceReport) -> Finding:
    source_major, target_major = (
        _version_text(source.server_version_num),
        _version_text(facts.server_version_num),
    )
    if _major(facts.server_version_num) < _major(source.server_version_num):
        return Finding(
            name="target_version",
            severity="fatal",
            message=(
                f"the target runs PostgreSQL {target_major} ({facts.server_version}), older than the "
                f"source's {source_major}; a major version downgrade can fail on types, syntax and functions "
                "the older server does not have"
            ),
            fix=f"create the target with PostgreSQL {source_major} or later (RDS: --engine-version)",
        )
    return Finding(
        name="target_version",
        severity="info",
        message=f"the target runs PostgreSQL {facts.server_version}; the source runs {source_major}",
    )


def ensure_schemas(
    cur: CountingCursor, facts: TargetFacts, database: str, wanted: list[str]
) -> tuple[list[str], list[Finding]]:
    """Create the missing schemas in one statement (one implicit transaction: all or none)."""
    missing = [schema for schema in wanted if schema not in facts.existing_schemas]
    if not missing:
        return [], []
    statement = sql.SQL("; ").join(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)) for schema in missing
    )
    try:
        cur.execute(statement)
    except psycopg2.Error as error:
        server = server_message(error)
        return [], [
            Finding(
                name="target_schema",
                severity="fatal",
                message=(
                    f"role {facts.username!r} cannot create the {len(missing)} schema(s) the selected tables "
                    f"need on the target: {server}"
                ),
                fix=(
                    f"GRANT CREATE ON DATABASE {quote_ident(database)} TO {quote_ident(facts.username)}, "
                    "or create the schemas listed here as their future owner"
                ),
                objects=missing[:MAX_OBJECTS_PER_FINDING],
                object_count=len(missing),
            )
        ]
    return missing, []


def would_create_schemas(facts: TargetFacts, wanted: list[str]) -> list[Finding]:
    """Check mode: the schemas a migration would create, named instead of created."""
    missing = [schema for schema in wanted if schema not in facts.existing_schemas]
    if not missing:
        return []
    return [
        Finding(
            name="target_schema",
            severity="info",
            message=(
                f"{len(missing)} schema(s) the selected tables need do not exist on the target; a migration "
                "would create them (a check creates nothing)"
            ),
            objects=missing[:MAX_OBJECTS_PER_FINDING],
            object_count=len(missing),
        )
    ]


def check_missing_tables(spec: MigrationSpec, tables: list[TargetTable]) -> list[Finding]:
    mode = spec.task.target_table_prep_mode
    missing = [table.display for table in tables if not table.exists]
    if mode == "DROP_AND_CREATE":
        existing = len(tables) - len(missing)
        return [
            Finding(
                name="target_table_prep_mode",
                severity="warning",
                message=(
                    f"DROP_AND_CREATE: DMS drops the {existing} selected table(s) that exist on the "
                    "target and creates every selected table itself, as a plain table with its "
                    "primary key only (in a full load, added once the table's rows are in): no secondary "
                    "indexes, foreign keys, defaults, check constraints, triggers or sequences"
                ),
                fix=(
                    "prefer creating the schema first (pg_dump --schema-only --no-owner SOURCE | "
                    "psql TARGET) with target_table_prep_mode DO_NOTHING; otherwise recreate the missing "
                    "objects after the load (pg_dump --schema-only --section=post-data)"
                ),
            )
        ]
    if not missing:
        return []
    return [
        Finding(
            name="target_tables_missing",
            severity="fatal",
            message=(
                f"{len(missing)} selected table(s) do not exist on the target, and with "
                f"target_table_prep_mode {mode} DMS does not create them"
            ),
            fix=(
                "create the schema first, e.g. pg_dump --schema-only --no-owner SOURCE | psql TARGET, or set "
                "task.target_table_prep_mode to DROP_AND_CREATE (DMS then creates plain tables without "
                "secondary indexes, foreign keys or defaults)"
            ),
            objects=missing[:MAX_OBJECTS_PER_FINDING],
            object_count=len(missing),
        )
    ]


def _non_empty(cur: CountingCursor, tables: list[TargetTable]) -> list[str]:
    """Tables holding at least one row; reads one row per table at most, in batches of EMPTINESS_BATCH."""
    found: list[str] = []
    for start in range(0, len(tables), EMPTINESS_BATCH):
        batch = tables[start : start + EMPTINESS_BATCH]
        cur.execute(
            NON_EMPTY_QUERY,
            {"schemas": [table.schema for table in batch], "tables": [table.table for table in batch]},
        )
        found += [batch[index - 1].display for (index,) in cur.fetchall()]
    return found


def check_empty_tables(cur: CountingCursor, spec: MigrationSpec, tables: list[TargetTable]) -> list[Finding]:
    """With DO_NOTHING, DMS appends: rows already there would be duplicated or collide with the source's."""
    if spec.task.target_table_prep_mode != "DO_NOTHING":
        return []
    existing = [table for table in tables if table.exists]
    if not existing:
        return []
    try:
        non_empty = _non_empty(cur, existing)
    except psycopg2.errors.InsufficientPrivilege as error:
        return [
            Finding(
                name="target_privileges",
                severity="fatal",
                message=f"cannot read the target tables to check they are empty: {server_message(error)}",
                fix="run the migration as the target's owner or master user, which DMS needs to write anyway",
            )
        ]
    if not non_empty:
        return []
    return [
        Finding(
            name="target_tables_not_empty",
            severity="fatal",
            message=(
                f"{len(non_empty)} selected table(s) already have rows on the target; with "
                "target_table_prep_mode DO_NOTHING the load would add the source's rows to them "
                "(duplicates, or primary-key violations that fail the table)"
            ),
            fix=(
                "empty them (TRUNCATE) if their rows are leftovers, or set task.target_table_prep_mode to "
                "TRUNCATE_BEFORE_LOAD so DMS empties them first"
            ),
            objects=non_empty[:MAX_OBJECTS_PER_FINDING],
            object_count=len(non_empty),
        )
    ]


def check_replication_role(cur: CountingCursor, facts: TargetFacts) -> tuple[str, list[Finding]]:
    """Probe exactly what DMS's sessions will run (``is_local``: it ends with this statement)."""
    try:
        cur.execute("SELECT set_config('session_replication_role', 'replica', true)")
    except psycopg2.errors.InsufficientPrivilege as error:
        return "", [
            Finding(
                name="target_privileges",
                severity="fatal",
                message=(
                    f"role {facts.username!r} may not set session_replication_role "
                    f"({server_message(error)}), which task.disable_target_triggers needs"
                ),
                fix=(
                    "use the master user (member of rds_superuser on RDS) or a superuser for the target "
                    f"endpoint; on PostgreSQL 15+ GRANT SET ON PARAMETER session_replication_role TO "
                    f"{quote_ident(facts.username)}; or set task.disable_target_triggers to false"
                ),
            )
        ]
    return AFTER_CONNECT_SCRIPT, []


def check_enforced_constraints(spec: MigrationSpec, tables: list[TargetTable]) -> list[Finding]:
    """Triggers and foreign keys enforced during a parallel, unordered load fail or corrupt it.

    Not asked with DROP_AND_CREATE: DMS drops the tables, and their constraints with them.
    """
    if spec.task.disable_target_triggers or spec.task.target_table_prep_mode == "DROP_AND_CREATE":
        return []
    fks = sum(table.foreign_keys for table in tables)
    triggers = sum(table.triggers for table in tables)
    if not fks and not triggers:
        return []
    affected = [table.display for table in tables if table.foreign_keys or table.triggers]
    return [
        Finding(
            name="target_constraints_enforced",
            severity="warning",
            message=(
                f"task.disable_target_triggers is false and the target has {fks} foreign key(s) and "
                f"{triggers} enabled user trigger(s) on the selected tables: DMS loads tables in "
                "parallel and in no particular order, so rows referencing a table not yet loaded "
                "fail, and triggers fire for every loaded row"
            ),
            fix=(
                "set task.disable_target_triggers to true (the default), or create foreign keys and triggers "
                "after the load"
            ),
            objects=affected[:MAX_OBJECTS_PER_FINDING],
            object_count=len(affected),
        )
    ]


def restore_notes(spec: MigrationSpec, tables: list[TargetTable], source: SourceSide) -> list[str]:
    """What the operator checks or restores after the load, in the order to do it."""
    notes = []
    if spec.task.target_table_prep_mode == "DROP_AND_CREATE":
        notes.append(
            "tables: DMS created the selected tables without secondary indexes, foreign keys, defaults, "
            "constraints or triggers; recreate them after the load "
            "(pg_dump --schema-only --section=post-data)"
        )
    keeps_tables = spec.task.target_table_prep_mode != "DROP_AND_CREATE"
    if spec.task.disable_target_triggers and keeps_tables:
        fk_tables = [table for table in tables if table.foreign_keys]
        if fk_tables:
            fks = sum(table.foreign_keys for table in fk_tables)
            notes.append(
                f"foreign keys: {fks} constraints on {len(fk_tables)} selected tables were not checked "
                "during the load (session_replication_role = replica); finish-target checks every row "
                "against them after the load"
            )
        trigger_tables = [table for table in tables if table.triggers]
        if trigger_tables:
            triggers = sum(table.triggers for table in trigger_tables)
            notes.append(
                f"triggers: {triggers} enabled user triggers on {len(trigger_tables)} selected tables "
                "did not fire during the load; rebuild whatever they maintain (audit rows, derived "
                "columns) if needed"
            )
    if source.sequences:
        notes.append(
            f"sequences: {source.sequences} sequences owned by selected tables must be set from the source "
            "after the load (DMS does not migrate sequence values), e.g. SELECT setval(...) with the "
            "source's last_value before writing to the target"
        )
    return notes


# -- the phase ---------------------------------------------------------------------------------------------


#: Whether a session with this pid and name is connected to the database this session is in. Every role
#: sees each session's pid, database and ``application_name`` in ``pg_stat_activity`` (the rest of the row
#: only its own role and ``pg_read_all_stats`` do).
SESSION_HERE_QUERY = """
SELECT EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE pid = %s AND application_name = %s
                 AND datid = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""


def target_is_source(source_conn: Any, target_conn: Any) -> bool:
    """Whether the target connection reached the source's own server and database, however either secret
    spells its host (a name, an address, a proxy in between): the source (read-only) is asked whether it
    sees the target session, by its pid and a name no other session has, in its own database."""
    name = target_conn.get_dsn_parameters().get("application_name", "")
    with source_conn.cursor() as cur:
        cur.execute(SESSION_HERE_QUERY, (target_conn.get_backend_pid(), name))
        return bool(one_row(cur)[0])


def same_database_finding(credentials: Credentials) -> Finding:
    return Finding(
        name="target_is_source",
        severity="fatal",
        message=(
            f"the target secret leads to the source's own database ({credentials.database!r} at "
            f"{credentials.host}:{credentials.port} is the source's server): the load would write into the "
            "tables it reads, and with DROP_AND_CREATE drop them"
        ),
        fix="point the target's secret at the new database (the RDS instance), not at the source",
    )


def prepare_target(
    spec: MigrationSpec,
    credentials: Credentials,
    source_report: SourceReport,
    source_credentials: Credentials | None = None,
) -> TargetReport:
    """Check the target against the selected source tables, creating missing schemas; idempotent.

    In check mode (``spec.mode == "check"``) nothing is created: missing schemas are only reported.
    ``source_credentials`` default to the source's secret (the CLI's check passes them from a DSN).
    Nothing is written to a target that is the source itself, or older than it.
    """
    source_credentials = source_credentials or get_credentials(spec.source, "source")
    session = f"pg2rds-prep-{secrets.token_hex(8)}"  # this session's name alone, for target_is_source
    with (
        connect(spec.source, source_credentials, "source", application_name="pg2rds-prep") as source_conn,
        connect(spec.target, credentials, "target", application_name=session) as conn,
        conn.cursor(cursor_factory=CountingCursor) as cur,
    ):
        source = read_source_side(spec, source_conn)
        facts = _target_facts(cur, source.schemas)
        version = check_version(facts, source_report)
        report = TargetReport(
            host=credentials.host,
            port=credentials.port,
            database=credentials.database,
            server_version=facts.server_version,
            server_version_num=facts.server_version_num,
            findings=[version],
        )
        if target_is_source(source_conn, conn):
            report.findings.append(same_database_finding(credentials))
            return report  # not a byte written into the source
        if version.severity == "fatal":
            return report  # do not write to a target we cannot use
        if spec.mode == "check":
            schema_findings = would_create_schemas(facts, source.schemas)
        else:
            report.schemas_created, schema_findings = ensure_schemas(
                cur, facts, credentials.database, source.schemas
            )
        tables = _target_tables(cur, source.tables)
        report.findings += schema_findings
        report.findings += check_missing_tables(spec, tables)
        report.findings += check_empty_tables(cur, spec, tables)
        if spec.task.disable_target_triggers:
            report.after_connect_script, role_findings = check_replication_role(cur, facts)
            report.findings += role_findings
        report.findings += check_enforced_constraints(spec, tables)
        report.restore = restore_notes(spec, tables, source)
        return report
