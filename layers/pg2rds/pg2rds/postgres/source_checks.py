"""Is the source ready for DMS? Checked before anything that costs money is created.

Each problem becomes a named :class:`~pg2rds.state.Finding` that says what is wrong, where, and how to fix
it, because the fatal ones end up verbatim in the failed execution's Cause. The checks are read-only and
use a constant number of catalog queries (three) whatever the number of tables: per-table facts are
aggregated inside PostgreSQL, and only counts plus the first ``MAX_OBJECTS_PER_FINDING`` names come back.

Table names in findings are rendered by the server with ``format('%I.%I')``: ordinary names read as
``schema.table`` and unusual ones (quotes, spaces, capitals, non-ASCII) come back quoted exactly as they
must be typed in SQL, so an operator can paste them into the suggested fix.
"""

from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from pg2rds.postgres.connection import connect
from pg2rds.postgres.selection import SELECTED_TABLES_CTE, selection_params
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING, Finding, SourceReport

#: ``schemas_selected`` is informative only; the state must stay small whatever the catalog.
MAX_SCHEMAS_REPORTED = 100
#: Oldest source DMS accepts at all, and the oldest with the pgoutput plugin (logical replication built in).
MIN_DMS_VERSION_NUM = 90400
MIN_PGOUTPUT_VERSION_NUM = 100000
#: RDS's stand-ins for SUPERUSER/REPLICATION: the master user is a member of rds_superuser.
RDS_REPLICATION_ROLES = ("rds_superuser", "rds_replication")
SETTINGS = ("wal_level", "max_replication_slots", "max_wal_senders", "wal_sender_timeout")


class CountingCursor(psycopg2.extensions.cursor):
    """A cursor that counts the statements it sends, so reports can state their round trips honestly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queries = 0

    def execute(self, query: Any, vars: Any = None) -> None:
        self.queries += 1
        super().execute(query, vars)


# -- what the server tells us ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerFacts:
    server_version: str
    server_version_num: int
    username: str
    superuser: bool
    replication: bool
    rds_roles: list[str]
    settings: dict[str, str]


@dataclass(frozen=True)
class ReplicationUsage:
    slots_used: int
    slot_names: list[str]
    senders_used: int


@dataclass(frozen=True)
class TableFacts:
    selected: int
    schemas: list[str]
    unidentified: int
    unidentified_names: list[str]
    unreadable: int
    unreadable_names: list[str]


#: Works on every version DMS could meet (9.4+), and on older ones far enough to say they are too old.
SERVER_QUERY = """
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       r.rolname::text, r.rolsuper, r.rolreplication,
       ARRAY(SELECT g.rolname::text FROM pg_roles g
             WHERE g.rolname = ANY(%(rds_roles)s) AND pg_has_role(r.oid, g.oid, 'MEMBER')
             ORDER BY 1),
       ARRAY(SELECT s.name FROM pg_settings s WHERE s.name = ANY(%(settings)s) ORDER BY 1),
       ARRAY(SELECT s.setting FROM pg_settings s WHERE s.name = ANY(%(settings)s) ORDER BY s.name)
FROM pg_roles r
WHERE r.rolname = current_user
"""

USAGE_QUERY = """
SELECT (SELECT count(*) FROM pg_replication_slots),
       ARRAY(SELECT slot_name::text FROM pg_replication_slots ORDER BY 1 LIMIT %(limit)s),
       (SELECT count(*) FROM pg_stat_replication)
"""

#: One pass over the selected tables. Replica identity, as logical decoding sees it: DEFAULT needs a
#: primary key, USING INDEX needs the index still marked indisreplident, FULL always works, NOTHING never.
TABLES_QUERY = f"""
WITH {SELECTED_TABLES_CTE},
keys AS (
    SELECT indrelid, bool_or(indisprimary) AS has_pk, bool_or(indisreplident) AS has_replident
    FROM pg_index
    GROUP BY indrelid
),
checked AS (
    SELECT s.schema_name, s.table_name,
           format('%%I.%%I', s.schema_name, s.table_name) AS display,
           CASE c.relreplident
               WHEN 'f' THEN true
               WHEN 'i' THEN coalesce(k.has_replident, false)
               WHEN 'd' THEN coalesce(k.has_pk, false)
               ELSE false
           END AS identified,
           has_table_privilege(s.oid, 'SELECT') AS readable
    FROM selected s
    JOIN pg_class c ON c.oid = s.oid
    LEFT JOIN keys k ON k.indrelid = s.oid
)
SELECT count(*),
       coalesce((array_agg(DISTINCT schema_name::text COLLATE "C" ORDER BY schema_name::text COLLATE "C"))
                [1:%(max_schemas)s], '{{}}'),
       count(*) FILTER (WHERE NOT identified),
       coalesce((array_agg(display ORDER BY schema_name COLLATE "C", table_name COLLATE "C")
                 FILTER (WHERE NOT identified))[1:%(max_objects)s], '{{}}'),
       count(*) FILTER (WHERE NOT readable),
       coalesce((array_agg(display ORDER BY schema_name COLLATE "C", table_name COLLATE "C")
                 FILTER (WHERE NOT readable))[1:%(max_objects)s], '{{}}')
FROM checked
"""


def _server_facts(cur: CountingCursor) -> ServerFacts:
    cur.execute(SERVER_QUERY, {"rds_roles": list(RDS_REPLICATION_ROLES), "settings": list(SETTINGS)})
    version, version_num, username, superuser, replication, rds_roles, names, values = cur.fetchone()
    return ServerFacts(
        server_version=version,
        server_version_num=version_num,
        username=username,
        superuser=superuser,
        replication=replication,
        rds_roles=list(rds_roles),
        settings=dict(zip(names, values, strict=True)),
    )


def _replication_usage(cur: CountingCursor) -> ReplicationUsage:
    cur.execute(USAGE_QUERY, {"limit": MAX_OBJECTS_PER_FINDING})
    slots_used, slot_names, senders_used = cur.fetchone()
    return ReplicationUsage(slots_used=slots_used, slot_names=list(slot_names), senders_used=senders_used)


def _table_facts(cur: CountingCursor, spec: MigrationSpec) -> TableFacts:
    params = selection_params(spec.tables.include, spec.tables.exclude)
    params.update(max_schemas=MAX_SCHEMAS_REPORTED, max_objects=MAX_OBJECTS_PER_FINDING)
    cur.execute(TABLES_QUERY, params)
    selected, schemas, unidentified, unidentified_names, unreadable, unreadable_names = cur.fetchone()
    return TableFacts(
        selected=selected,
        schemas=list(schemas),
        unidentified=unidentified,
        unidentified_names=list(unidentified_names),
        unreadable=unreadable,
        unreadable_names=list(unreadable_names),
    )


# -- the checks: facts in, findings out (pure, so each rule reads on its own) ----------------------------


def check_version(facts: ServerFacts) -> Finding:
    num = facts.server_version_num
    described = f"the source runs PostgreSQL {facts.server_version} (server_version_num {num})"
    if num < MIN_DMS_VERSION_NUM:
        return Finding(
            name="server_version",
            severity="fatal",
            message=f"{described}; AWS DMS supports PostgreSQL sources from 9.4 on",
            fix="upgrade the source to a supported PostgreSQL version (10 or later) before migrating",
        )
    if num < MIN_PGOUTPUT_VERSION_NUM:
        return Finding(
            name="server_version",
            severity="warning",
            message=(
                f"{described}; AWS DMS supports 9.4 to 9.6 only through the test_decoding plugin "
                "(no pgoutput before 10), and pg2rds is tested with 10 and later"
            ),
            fix="upgrade the source to PostgreSQL 10 or later, or make sure test_decoding is installed",
        )
    return Finding(name="server_version", severity="info", message=described)


def check_wal_level(spec: MigrationSpec, facts: ServerFacts) -> list[Finding]:
    wal_level = facts.settings.get("wal_level", "unknown")
    if wal_level == "logical":
        return []
    fix = (
        "set wal_level = logical in postgresql.conf (on RDS: rds.logical_replication = 1 in the DB "
        "parameter group) and restart the server"
    )
    if spec.uses_cdc:
        return [
            Finding(
                name="wal_level",
                severity="fatal",
                message=(
                    f"wal_level is {wal_level!r}; {spec.migration_type} needs 'logical' so DMS can decode "
                    "changes through a logical replication slot"
                ),
                fix=fix,
            )
        ]
    return [
        Finding(
            name="wal_level",
            severity="warning",
            message=(
                f"wal_level is {wal_level!r}; a full load does not need 'logical', but ongoing replication "
                "(full-load-and-cdc, cdc) would"
            ),
            fix=fix + " if you later want to replicate changes",
        )
    ]


def _free(facts: ServerFacts, setting: str, used: int) -> tuple[int, int]:
    limit = int(facts.settings.get(setting, "0"))
    return limit, limit - used


def check_replication_capacity(
    spec: MigrationSpec, facts: ServerFacts, usage: ReplicationUsage | None
) -> list[Finding]:
    """DMS CDC takes one logical slot and one walsender on the source for as long as the task runs."""
    if not spec.uses_cdc or usage is None:
        return []
    findings = []
    slots, free_slots = _free(facts, "max_replication_slots", usage.slots_used)
    if free_slots < 1:
        findings.append(
            Finding(
                name="max_replication_slots",
                severity="fatal",
                message=(
                    f"no free replication slot: max_replication_slots = {slots} and {usage.slots_used} "
                    "slot(s) exist; DMS needs one for ongoing replication"
                ),
                fix=(
                    "drop slots nobody uses (SELECT pg_drop_replication_slot(slot_name) FROM "
                    "pg_replication_slots WHERE NOT active; check first that they are really abandoned), "
                    "or raise max_replication_slots in postgresql.conf (on RDS: in the DB parameter group) "
                    "and restart"
                ),
                objects=usage.slot_names,
                object_count=usage.slots_used,
            )
        )
    senders, free_senders = _free(facts, "max_wal_senders", usage.senders_used)
    if free_senders < 1:
        findings.append(
            Finding(
                name="max_wal_senders",
                severity="fatal",
                message=(
                    f"no free WAL sender: max_wal_senders = {senders} and {usage.senders_used} in use "
                    "(pg_stat_replication); DMS needs one for ongoing replication"
                ),
                fix=(
                    "raise max_wal_senders in postgresql.conf (on RDS: in the DB parameter group) and "
                    "restart, or stop an unused replication client"
                ),
            )
        )
    return findings


def check_wal_sender_timeout(spec: MigrationSpec, facts: ServerFacts) -> list[Finding]:
    """A walsender idle longer than the timeout is cut, and DMS's CDC stream then fails on a quiet source."""
    timeout_ms = facts.settings.get("wal_sender_timeout", "0")
    if timeout_ms == "0":
        return []
    return [
        Finding(
            name="wal_sender_timeout",
            severity="warning" if spec.uses_cdc else "info",
            message=(
                f"wal_sender_timeout is {timeout_ms} ms; the source ends replication connections idle for "
                "longer, so on a quiet source DMS's CDC stream can time out and the task fail "
                "(AWS recommends 0, or DMS's heartbeat enabled)"
                + ("" if spec.uses_cdc else "; irrelevant for a full load")
            ),
            fix=(
                "set wal_sender_timeout = 0 in postgresql.conf (on RDS: in the DB parameter group) and "
                "reload, or enable the DMS heartbeat (HeartbeatEnable) on the source endpoint"
            ),
        )
    ]


def check_primary_keys(spec: MigrationSpec, tables: TableFacts) -> list[Finding]:
    if not tables.unidentified:
        return []
    fix = (
        "add a primary key, or run ALTER TABLE <table> REPLICA IDENTITY FULL (every column is then "
        "logged on UPDATE and DELETE), or REPLICA IDENTITY USING INDEX <unique index on NOT NULL columns>; "
        "or exclude the table in tables.exclude"
    )
    if spec.uses_cdc:
        message = (
            f"{tables.unidentified} selected table(s) have no primary key and no usable replica identity, "
            "so DMS cannot replicate their UPDATEs and DELETEs"
        )
    else:
        message = (
            f"{tables.unidentified} selected table(s) have no primary key and no usable replica identity; "
            "a full load copies them, but a restarted load may duplicate their rows and ongoing replication "
            "would not be possible"
        )
    return [
        Finding(
            name="primary_key",
            severity="fatal" if spec.uses_cdc else "warning",
            message=message,
            fix=fix,
            objects=tables.unidentified_names,
            object_count=tables.unidentified,
        )
    ]


def check_privileges(spec: MigrationSpec, facts: ServerFacts, tables: TableFacts) -> list[Finding]:
    """One ``privileges`` finding gathering what the role cannot do: replicate, and read tables."""
    problems, fixes = [], []
    can_replicate = facts.superuser or facts.replication or bool(facts.rds_roles)
    if spec.uses_cdc and not can_replicate:
        problems.append(
            f"role {facts.username!r} is not superuser, has no REPLICATION attribute and is not a member "
            "of rds_superuser or rds_replication, so it cannot create or read a replication slot"
        )
        fixes.append(
            f"ALTER ROLE {_quote(facts.username)} WITH REPLICATION (self-managed source), or on RDS "
            f"GRANT rds_replication TO {_quote(facts.username)}"
        )
    reads_tables = spec.migration_type != "cdc"
    if tables.unreadable and reads_tables:
        problems.append(
            f"role {facts.username!r} cannot SELECT from {tables.unreadable} selected table(s), "
            "which the full load reads"
        )
        fixes.append(
            "GRANT SELECT ON ALL TABLES IN SCHEMA <schema> TO "
            f"{_quote(facts.username)} (for each schema), or exclude those tables"
        )
    if not problems:
        return []
    return [
        Finding(
            name="privileges",
            severity="fatal",
            message="; ".join(problems),
            fix="; ".join(fixes),
            objects=tables.unreadable_names if reads_tables else [],
            object_count=tables.unreadable if reads_tables else 0,
        )
    ]


def check_selection(spec: MigrationSpec, tables: TableFacts) -> list[Finding]:
    if tables.selected:
        return []
    include = ", ".join(f"{rule.schema_name}.{rule.table_name}" for rule in spec.tables.include)
    exclude = ", ".join(f"{rule.schema_name}.{rule.table_name}" for rule in spec.tables.exclude) or "none"
    return [
        Finding(
            name="no_tables_selected",
            severity="fatal",
            message=(
                f"no table in database {spec.source.database!r} matches the selection "
                f"(include: {include}; exclude: {exclude})"
            ),
            fix=(
                "check tables.include and tables.exclude: '%' is the only wildcard ('_' is literal), names "
                "are case-sensitive, and only ordinary tables and leaf partitions are selected"
            ),
        )
    ]


def _quote(name: str) -> str:
    """A role name as it must be typed in the suggested SQL (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


# -- the phase ---------------------------------------------------------------------------------------------


def validate_source(spec: MigrationSpec, credentials: Credentials) -> SourceReport:
    """Check the source against what DMS needs for ``spec``; never writes to the source."""
    with (
        connect(spec.source, credentials, "source", application_name="pg2rds-validate") as conn,
        conn.cursor(cursor_factory=CountingCursor) as cur,
    ):
        facts = _server_facts(cur)
        version = check_version(facts)
        if version.severity == "fatal":
            return _report(facts, [version], None, cur.queries)
        usage = _replication_usage(cur)
        tables = _table_facts(cur, spec)
        findings = [
            version,
            *check_selection(spec, tables),
            *check_wal_level(spec, facts),
            *check_replication_capacity(spec, facts, usage),
            *check_wal_sender_timeout(spec, facts),
            *check_privileges(spec, facts, tables),
            *check_primary_keys(spec, tables),
        ]
        return _report(facts, findings, tables, cur.queries)


def _report(
    facts: ServerFacts, findings: list[Finding], tables: TableFacts | None, queries: int
) -> SourceReport:
    return SourceReport(
        server_version=facts.server_version,
        server_version_num=facts.server_version_num,
        findings=findings,
        tables_selected=tables.selected if tables else 0,
        schemas_selected=tables.schemas if tables else [],
        catalog_queries=queries,
    )
