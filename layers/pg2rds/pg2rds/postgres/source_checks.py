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

from pg2rds.bounded import capped
from pg2rds.naming import ResourceNames
from pg2rds.postgres.chunks import TID_RANGE_SCAN_SINCE
from pg2rds.postgres.connection import connect
from pg2rds.postgres.lob_sizes import LobSizes, measure_lob_sizes
from pg2rds.postgres.selection import SELECTED_TABLES_CTE, selection_params
from pg2rds.postgres.sqltext import CountingCursor, one_row, quote_ident
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING, Finding, Severity, SourceReport

#: ``schemas_selected`` is informative only; the state must stay small whatever the catalog.
MAX_SCHEMAS_REPORTED = MAX_OBJECTS_PER_FINDING
#: Oldest source DMS accepts at all, and the oldest with the pgoutput plugin (logical replication built in).
MIN_DMS_VERSION_NUM = 90400
MIN_PGOUTPUT_VERSION_NUM = 100000
#: RDS's stand-ins for SUPERUSER/REPLICATION: the master user is a member of rds_superuser.
RDS_REPLICATION_ROLES = ("rds_superuser", "rds_replication")
#: Large objects are counted up to this many (the count is only for the message).
MAX_LARGE_OBJECTS_COUNTED = 1_000_000
SETTINGS = ("wal_level", "max_replication_slots", "max_wal_senders", "wal_sender_timeout")


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
    #: A standby (hot standby, read replica): read-only, replaying its primary's WAL.
    in_recovery: bool = False


@dataclass(frozen=True)
class ReplicationUsage:
    slots_used: int
    slot_names: list[str]
    senders_used: int
    #: This migration's slot: None if it does not exist, else whether a process is reading it.
    own_slot_active: bool | None = None


@dataclass(frozen=True)
class Flagged:
    """Selected objects (tables, or columns as ``schema.table.column``) that one rule flags."""

    count: int = 0
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableFacts:
    selected: int
    schemas: list[str]
    #: Flagged objects by kind (see TABLES_QUERY); a kind nobody matched is absent.
    flagged: dict[str, Flagged]

    def get(self, kind: str) -> Flagged:
        return self.flagged.get(kind, Flagged())

    @property
    def unidentified(self) -> int:
        return self.get("unidentified_changed").count + self.get("unidentified_insert_only").count

    @property
    def unidentified_names(self) -> list[str]:
        names = self.get("unidentified_changed").names + self.get("unidentified_insert_only").names
        return sorted(names)[:MAX_OBJECTS_PER_FINDING]

    @property
    def unreadable(self) -> int:
        return self.get("unreadable").count

    @property
    def unreadable_names(self) -> list[str]:
        return list(self.get("unreadable").names)


#: The largest table without a key that verification checksums whole, in one invocation, on a source
#: older than PostgreSQL 14 (see :func:`check_keyless_size`).
KEYLESS_VERIFIED_WHOLE_MAX_BYTES = 4 * 2**30

#: Works on every version DMS could meet (9.4+), and on older ones far enough to say they are too old.
SERVER_QUERY = """
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       r.rolname::text, r.rolsuper, r.rolreplication,
       ARRAY(SELECT g.rolname::text FROM pg_roles g
             WHERE g.rolname = ANY(%(rds_roles)s) AND pg_has_role(r.oid, g.oid, 'MEMBER')
             ORDER BY 1),
       ARRAY(SELECT s.name FROM pg_settings s WHERE s.name = ANY(%(settings)s) ORDER BY 1),
       ARRAY(SELECT s.setting FROM pg_settings s WHERE s.name = ANY(%(settings)s) ORDER BY s.name),
       pg_is_in_recovery()
FROM pg_roles r
WHERE r.rolname = current_user
"""

USAGE_QUERY = """
SELECT (SELECT count(*) FROM pg_replication_slots),
       ARRAY(SELECT slot_name::text FROM pg_replication_slots ORDER BY 1 LIMIT %(limit)s),
       (SELECT count(*) FROM pg_stat_replication),
       (SELECT active FROM pg_replication_slots WHERE slot_name = %(own_slot)s)
"""

#: One pass over the selected tables and their columns, answering every per-object rule at once: one row
#: per (kind of problem), with its count and the first names, so the answer's size is bounded whatever the
#: catalog. Replica identity, as logical decoding sees it: DEFAULT needs a primary key, USING INDEX needs
#: the index still marked indisreplident, FULL always works (pg2rds asks DMS for test_decoding, which
#: honours it), NOTHING never. "changed" is what pg_stat_user_tables has counted since its last reset.
TABLES_QUERY = f"""
WITH {SELECTED_TABLES_CTE},
keys AS (
    SELECT indrelid, bool_or(indisprimary) AS has_pk, bool_or(indisreplident) AS has_replident,
           bool_or(indisunique AND indpred IS NULL AND indexprs IS NULL) AS has_unique
    FROM pg_index
    GROUP BY indrelid
),
tables AS (
    SELECT s.oid, s.schema_name, s.table_name,
           format('%%I.%%I', s.schema_name, s.table_name) AS display,
           CASE c.relreplident
               WHEN 'f' THEN true
               WHEN 'i' THEN coalesce(k.has_replident, false)
               WHEN 'd' THEN coalesce(k.has_pk, false)
               ELSE false
           END AS identified,
           coalesce(k.has_pk OR k.has_unique, false) AS has_key,
           has_table_privilege(s.oid, 'SELECT') AS readable,
           c.relpersistence = 'u' AS unlogged,
           __ROW_SECURITY__ AS row_security
    FROM selected s
    JOIN pg_class c ON c.oid = s.oid
    LEFT JOIN keys k ON k.indrelid = s.oid
),
case_keys AS (
    SELECT format('%%I.%%I', lower(schema_name), lower(table_name)) AS case_key, display, schema_name,
           table_name
    FROM tables
),
columns AS (
    SELECT t.oid, t.schema_name, t.table_name, t.has_key, a.attname,
           format('%%I.%%I.%%I', t.schema_name, t.table_name, a.attname) AS display,
           ty.typcategory = 'A' AS is_array,
           coalesce(nullif(ty.typbasetype, 0), ty.oid) AS base_type,
           a.atttypid, a.atttypmod
    FROM tables t
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type ty ON ty.oid = a.atttypid
),
flagged AS (
    SELECT DISTINCT ON (schema_name) 'schema' AS kind, schema_name AS display, schema_name, '' AS table_name,
           '' AS column_name
    FROM tables
    UNION ALL
    SELECT CASE WHEN pg_stat_get_tuples_updated(oid) + pg_stat_get_tuples_deleted(oid) > 0
                THEN 'unidentified_changed' ELSE 'unidentified_insert_only' END,
           display, schema_name, table_name, ''
    FROM tables WHERE NOT identified
    UNION ALL
    SELECT 'keyless_large', display, schema_name, table_name, ''
    FROM tables WHERE NOT has_key AND pg_table_size(oid) > %(keyless_max_bytes)s
    UNION ALL
    SELECT 'unreadable', display, schema_name, table_name, '' FROM tables WHERE NOT readable
    UNION ALL
    SELECT 'unlogged', display, schema_name, table_name, '' FROM tables WHERE unlogged
    UNION ALL
    SELECT 'row_security', display, schema_name, table_name, '' FROM tables WHERE row_security
    UNION ALL
    SELECT 'case_twin', display, schema_name, table_name, ''
    FROM case_keys
    WHERE case_key = ANY ((SELECT array_agg(case_key) FROM (SELECT case_key FROM case_keys GROUP BY 1
                                                             HAVING count(*) > 1) twins)::text[])
    UNION ALL
    SELECT DISTINCT ON (oid) 'array_without_key', format('%%I.%%I', schema_name, table_name),
           schema_name, table_name, ''
    FROM columns WHERE is_array AND NOT has_key
    UNION ALL
    SELECT 'large_object_column', display, schema_name, table_name, attname
    FROM columns WHERE base_type = 'oid'::regtype
    UNION ALL
    SELECT 'unconstrained_numeric', display, schema_name, table_name, attname
    FROM columns WHERE atttypid = 'numeric'::regtype AND atttypmod = -1
    UNION ALL
    SELECT 'infinite_timestamp', c.display, c.schema_name, c.table_name, c.attname
    FROM columns c
    WHERE c.base_type IN ('timestamp'::regtype, 'timestamptz'::regtype, 'date'::regtype)
      AND EXISTS (SELECT 1 FROM pg_stats ps
                  WHERE ps.schemaname = c.schema_name AND ps.tablename = c.table_name
                    AND ps.attname = c.attname
                    AND (ps.most_common_vals::text LIKE '%%infinity%%'
                         OR ps.histogram_bounds::text LIKE '%%infinity%%'))
    UNION ALL
    SELECT 'type_not_migrated', c.display || ' (' || format_type(c.atttypid, c.atttypmod) || ')',
           c.schema_name, c.table_name, c.attname
    FROM columns c JOIN pg_type bt ON bt.oid = c.base_type
    WHERE bt.typtype IN ('e', 'c', 'r', 'm')
       OR bt.oid = ANY (%(types_not_migrated)s::regtype[])
    UNION ALL
    SELECT 'large_objects', '', '', '', ''
    FROM (SELECT 1 FROM pg_largeobject_metadata LIMIT %(max_large_objects)s) lo
)
SELECT kind, count(*),
       coalesce((array_agg(display ORDER BY schema_name COLLATE "C", table_name COLLATE "C",
                                            column_name COLLATE "C"))
                [1:CASE kind WHEN 'schema' THEN %(max_schemas)s ELSE %(max_objects)s END], '{{}}')
FROM flagged
GROUP BY kind
UNION ALL
SELECT 'selected', count(*), '{{}}' FROM tables
"""


#: Whether row-level security applies to this role on table ``c``, as the server decides
#: (``check_enable_rls``): not for superusers or BYPASSRLS roles, nor for the owner (or a member of the
#: owning role) unless the table forces it. Row-level security exists since PostgreSQL 9.5.
ROW_SECURITY_SQL = """c.relrowsecurity
               AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user)
               AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))"""
ROW_SECURITY_SINCE = 90500


def _server_facts(cur: CountingCursor) -> ServerFacts:
    cur.execute(SERVER_QUERY, {"rds_roles": list(RDS_REPLICATION_ROLES), "settings": list(SETTINGS)})
    version, version_num, username, superuser, replication, rds_roles, names, values, in_recovery = one_row(
        cur
    )
    return ServerFacts(
        server_version=version,
        server_version_num=version_num,
        username=username,
        superuser=superuser,
        replication=replication,
        rds_roles=list(rds_roles),
        settings=dict(zip(names, values, strict=True)),
        in_recovery=in_recovery,
    )


def _replication_usage(cur: CountingCursor, own_slot: str) -> ReplicationUsage:
    cur.execute(USAGE_QUERY, {"limit": MAX_OBJECTS_PER_FINDING, "own_slot": own_slot})
    slots_used, slot_names, senders_used, own_active = one_row(cur)
    return ReplicationUsage(
        slots_used=slots_used,
        slot_names=list(slot_names),
        senders_used=senders_used,
        own_slot_active=own_active,
    )


def _table_facts(cur: CountingCursor, spec: MigrationSpec, server_version_num: int) -> TableFacts:
    params = selection_params(spec.tables.include, spec.tables.exclude)
    params.update(
        max_objects=MAX_OBJECTS_PER_FINDING,
        max_schemas=MAX_SCHEMAS_REPORTED,
        max_large_objects=MAX_LARGE_OBJECTS_COUNTED,
        keyless_max_bytes=KEYLESS_VERIFIED_WHOLE_MAX_BYTES,
        types_not_migrated=list(TYPES_NOT_MIGRATED),
    )
    row_security = ROW_SECURITY_SQL if server_version_num >= ROW_SECURITY_SINCE else "false"
    cur.execute(TABLES_QUERY.replace("__ROW_SECURITY__", row_security), params)
    flagged = {kind: Flagged(count, tuple(names)) for kind, count, names in cur.fetchall()}
    schemas = flagged.pop("schema", Flagged())
    selected = flagged.pop("selected", Flagged())
    return TableFacts(
        selected=selected.count, schemas=capped(schemas.names, total=schemas.count), flagged=flagged
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


def check_standby(spec: MigrationSpec, facts: ServerFacts) -> list[Finding]:
    """A standby cannot serve ongoing replication as pg2rds runs it: the slot is pg2rds's to create on
    the source (logical decoding on a standby needs PostgreSQL 16, and a slot there is lost on failover),
    and at the cutover pg2rds reads the source's WAL insert position, which a server in recovery refuses
    to give. Found only then, it would fail the migration after the application was stopped. A full load
    only reads, which a hot standby serves, but a long read can be cancelled by a recovery conflict."""
    if not facts.in_recovery:
        return []
    if spec.uses_cdc:
        return [
            Finding(
                name="source_in_recovery",
                severity="fatal",
                message=(
                    f"the source is a standby (in recovery); {spec.migration_type} needs the primary: "
                    "pg2rds creates its replication slot there and reads its WAL position at the cutover"
                ),
                fix="point the source secret's host at the primary, or migrate with migration_type full-load",
            )
        ]
    return [
        Finding(
            name="source_in_recovery",
            severity="warning",
            message=(
                "the source is a standby (in recovery): the full load's and the verification's long reads "
                "can be cancelled by a conflict with the WAL it replays"
            ),
            fix="set hot_standby_feedback = on and max_standby_streaming_delay = -1 on the standby while "
            "the migration runs, or read from the primary",
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


def check_own_slot(spec: MigrationSpec, usage: ReplicationUsage | None) -> list[Finding]:
    """This migration's slot already exists and something reads it: another execution of the same
    migration is replicating. Create-slot refuses to take it over; say so before anything is created."""
    if usage is None or not usage.own_slot_active:
        return []
    slot = ResourceNames(spec.migration_id).slot
    return [
        Finding(
            name="slot_in_use",
            severity="warning",
            message=(
                f"this migration's replication slot {slot} already exists on the source and is active: "
                "another execution of this migration is probably replicating, and this one cannot use it"
            ),
            fix=(
                "check the running executions of this migration_id (pg2rds status EXECUTION); let the "
                "other one finish or abort it, or give this migration another migration_id"
            ),
            objects=[slot],
            object_count=1,
        )
    ]


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


def check_keyless_size(spec: MigrationSpec, facts: ServerFacts, tables: TableFacts) -> list[Finding]:
    """Verification cuts a table into key ranges; a table without a primary or unique key has no order both
    servers share, so it is cut into ranges of its blocks, which only PostgreSQL 14 and later read alone
    (TID range scans, :mod:`pg2rds.postgres.chunks`). On an older source such a table's checksum is one
    invocation over the whole table: above the size one invocation checks within its time limit (about
    40 MB/s measured per chunk, 270 s of statement time) that check would fail after the migration has
    run, so refuse it before anything is created."""
    large = tables.get("keyless_large")
    if not large.count or spec.verification in ("counts", "none"):
        return []
    if facts.server_version_num >= TID_RANGE_SCAN_SINCE:
        return []
    limit_gib = KEYLESS_VERIFIED_WHOLE_MAX_BYTES / 2**30
    return [
        Finding(
            name="keyless_table_size",
            severity="fatal",
            message=(
                f"{large.count} selected table(s) have no primary or unique key and hold more than "
                f"{limit_gib:g} GiB each: on a source before PostgreSQL 14 verification can only checksum "
                "such a table whole, in one invocation, which would run out of time after the migration"
            ),
            fix=(
                "add a primary key (or a unique index on NOT NULL columns) to each, or exclude them in "
                "tables.exclude, or set verification to counts (row counts only) for this migration"
            ),
            objects=list(large.names),
            object_count=large.count,
        )
    ]


def check_primary_keys(spec: MigrationSpec, tables: TableFacts) -> list[Finding]:
    """Without a key DMS cannot replicate UPDATE and DELETE. A table that pg_stat_user_tables says has
    only ever been inserted into (a log such as pgbench_history) loses nothing: a warning, and its rows are
    verified at the end; one that has seen updates or deletes would lose them: fatal with CDC."""
    fix = (
        "add a primary key, or run ALTER TABLE <table> REPLICA IDENTITY FULL (every column is then "
        "logged on UPDATE and DELETE), or REPLICA IDENTITY USING INDEX <unique index on NOT NULL columns>; "
        "or exclude the table in tables.exclude"
    )
    findings = []
    changed, insert_only = tables.get("unidentified_changed"), tables.get("unidentified_insert_only")
    if not spec.uses_cdc:
        if tables.unidentified:
            findings.append(
                Finding(
                    name="primary_key",
                    severity="warning",
                    message=(
                        f"{tables.unidentified} selected table(s) have no primary key and no usable replica "
                        "identity; a full load copies them, but a restarted load may duplicate their rows "
                        "and ongoing replication would not be possible"
                    ),
                    fix=fix,
                    objects=tables.unidentified_names,
                    object_count=tables.unidentified,
                )
            )
        return findings
    if changed.count:
        findings.append(
            Finding(
                name="primary_key",
                severity="fatal",
                message=(
                    f"{changed.count} selected table(s) have no primary key and no usable replica identity "
                    "and have seen UPDATEs or DELETEs (pg_stat_user_tables), which DMS cannot replicate "
                    "without a key: those changes would be lost on the target"
                ),
                fix=fix,
                objects=list(changed.names),
                object_count=changed.count,
            )
        )
    if insert_only.count:
        findings.append(
            Finding(
                name="primary_key_insert_only",
                severity="warning",
                message=(
                    f"{insert_only.count} selected table(s) have no primary key and no usable replica "
                    "identity but have only ever had rows inserted (pg_stat_user_tables: no UPDATE or DELETE "
                    "since its last reset); their INSERTs replicate, an UPDATE or DELETE would not, and "
                    "their rows are verified at the end"
                ),
                fix=fix + " (needed if the application ever updates or deletes their rows)",
                objects=list(insert_only.names),
                object_count=insert_only.count,
            )
        )
    return findings


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
            f"ALTER ROLE {quote_ident(facts.username)} WITH REPLICATION (self-managed source), or on RDS "
            f"GRANT rds_replication TO {quote_ident(facts.username)}"
        )
    reads_tables = spec.migration_type != "cdc"
    if tables.unreadable and reads_tables:
        problems.append(
            f"role {facts.username!r} cannot SELECT from {tables.unreadable} selected table(s), "
            "which the full load reads"
        )
        fixes.append(
            "GRANT SELECT ON ALL TABLES IN SCHEMA <schema> TO "
            f"{quote_ident(facts.username)} (for each schema), or exclude those tables"
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


def check_selection(spec: MigrationSpec, tables: TableFacts, database: str) -> list[Finding]:
    if tables.selected:
        return []
    include = ", ".join(f"{rule.schema_name}.{rule.table_name}" for rule in spec.tables.include)
    exclude = ", ".join(f"{rule.schema_name}.{rule.table_name}" for rule in spec.tables.exclude) or "none"
    return [
        Finding(
            name="no_tables_selected",
            severity="fatal",
            message=(
                f"no table in database {database!r} matches the selection "
                f"(include: {include}; exclude: {exclude})"
            ),
            fix=(
                "check tables.include and tables.exclude: '%' is the only wildcard ('_' is literal), names "
                "are case-sensitive, and only ordinary tables and leaf partitions are selected"
            ),
        )
    ]


# -- what DMS loses or changes on PostgreSQL → PostgreSQL (AWS: "Using a PostgreSQL database as an AWS DMS
# source", limitations and data types; the compiled list is in the README's finding table) -------------


def _flagged_finding(
    tables: TableFacts, kind: str, name: str, severity: Severity, message: str, fix: str
) -> list[Finding]:
    flagged = tables.get(kind)
    if not flagged.count:
        return []
    return [
        Finding(
            name=name,
            severity=severity,
            message=message.format(count=flagged.count),
            fix=fix,
            objects=list(flagged.names),
            object_count=flagged.count,
        )
    ]


def check_large_objects(tables: TableFacts) -> list[Finding]:
    """DMS never moves pg_largeobject: oid columns would point at nothing on the target.

    pg2rds refuses rather than copying them itself: their oids must stay the same (the columns hold them)
    and may collide with the target's own, a Lambda cannot copy unbounded data, and changes to large
    objects never reach logical decoding, so a CDC migration would leave them stale anyway.
    """
    objects = tables.get("large_objects").count
    if not objects:
        return []
    amount = f"{objects}" if objects < MAX_LARGE_OBJECTS_COUNTED else f"more than {objects}"
    columns = tables.get("large_object_column")
    if not columns.count:
        return [
            Finding(
                name="large_objects",
                severity="warning",
                message=(
                    f"the source database holds {amount} large object(s) (pg_largeobject), which DMS does "
                    "not migrate; no selected column is of type oid or lo, so none of the selected rows "
                    "refers to them, but they stay behind"
                ),
                fix="copy them yourself if something else uses them (pg_dump --large-objects)",
            )
        ]
    return [
        Finding(
            name="large_objects",
            severity="fatal",
            message=(
                f"{columns.count} selected column(s) of type oid or lo refer to large objects, and the "
                f"source database holds {amount} of them; DMS does not migrate large objects "
                "(pg_largeobject), so these columns would point at nothing on the target"
            ),
            fix=(
                "convert each column to bytea, which DMS moves as a LOB (ALTER TABLE <table> ALTER COLUMN "
                "<column> TYPE bytea USING lo_get(<column>), then lo_unlink the old objects), or exclude "
                "these tables and copy them with pg_dump --data-only --large-objects --table <table> | "
                "psql TARGET (large objects keep their oids; their changes are never replicated)"
            ),
            objects=list(columns.names),
            object_count=columns.count,
        )
    ]


def check_unlogged(spec: MigrationSpec, tables: TableFacts) -> list[Finding]:
    if not spec.uses_cdc:
        return []
    return _flagged_finding(
        tables,
        "unlogged",
        "unlogged_tables",
        "fatal",
        "{count} selected table(s) are UNLOGGED: their changes are not written to the WAL, so logical "
        "decoding, and with it DMS's ongoing replication, never sees them; the target would keep the "
        "rows of the full load and miss every later change",
        "ALTER TABLE <table> SET LOGGED before the migration, or exclude the tables (tables.exclude)",
    )


def check_row_security(tables: TableFacts) -> list[Finding]:
    return _flagged_finding(
        tables,
        "row_security",
        "row_level_security",
        "fatal",
        "{count} selected table(s) have row-level security that applies to the migration role: it reads "
        "only the rows their policies show it, and without an error, so DMS would load only those and the "
        "target would silently miss the rest (verification, which reads every row or fails, would fail)",
        "ALTER ROLE <migration role> BYPASSRLS (as a superuser), or migrate as the tables' owner where they "
        "do not FORCE ROW LEVEL SECURITY, or exclude the tables (tables.exclude)",
    )


def check_case_twins(tables: TableFacts) -> list[Finding]:
    return _flagged_finding(
        tables,
        "case_twin",
        "names_differ_by_case",
        "fatal",
        "{count} selected tables have names that differ from another selected table's only by case; "
        "AWS DMS does not support such names on a PostgreSQL source and may load one table into the other",
        "rename one of each pair on the source (ALTER TABLE ... RENAME TO ...), or exclude one of each pair",
    )


def check_arrays_without_key(tables: TableFacts) -> list[Finding]:
    return _flagged_finding(
        tables,
        "array_without_key",
        "array_without_key",
        "fatal",
        "{count} selected table(s) have an ARRAY column and no primary key or unique index; DMS suspends "
        "such tables during the full load, so their rows would not reach the target",
        "add a primary key (or a unique index) to each table, or exclude them",
    )


#: The first DMS engine version that keeps an unconstrained NUMERIC as it is (3.4.2 and older cast it
#: to NUMERIC(28,6)).
NUMERIC_KEPT_SINCE = (3, 4, 3)


def _engine_version(spec: MigrationSpec) -> tuple[int, ...] | None:
    """The DMS engine version the spec asks for, or None when it is DMS's default (the newest)."""
    if not spec.instance.engine_version:
        return None
    return tuple(int(part) for part in spec.instance.engine_version.split(".") if part.isdigit())


def check_unconstrained_numeric(spec: MigrationSpec, tables: TableFacts) -> list[Finding]:
    version = _engine_version(spec)
    severity: Severity
    if version is not None and version < NUMERIC_KEPT_SINCE:
        severity, when = "fatal", f"the spec's engine version {spec.instance.engine_version} casts"
    elif spec.instance.existing_arn and version is None:
        severity, when = "warning", "DMS engine versions up to 3.4.2 (the existing instance may run one) cast"
    else:
        return []
    return _flagged_finding(
        tables,
        "unconstrained_numeric",
        "unconstrained_numeric",
        severity,
        "{count} selected column(s) are NUMERIC without precision and scale; " + when + " them to "
        "NUMERIC(28,6), rounding every value to 6 decimals and failing on more than 22 integer digits",
        "use DMS engine version 3.4.3 or later (instance.engine_version), or give the columns an explicit "
        "precision and scale",
    )


#: The built-in types AWS lists as not migrating from PostgreSQL to PostgreSQL ("Migrating from PostgreSQL
#: to PostgreSQL using AWS DMS", in *Using a PostgreSQL database as an AWS DMS source*), besides every
#: enum, composite and range type (pg_type.typtype e, c, r, m), which the same table lists too.
TYPES_NOT_MIGRATED = ("inet", "macaddr", "tsvector", "tsquery", "line", "lseg", "box", "path", "circle")


def check_types_not_migrated(tables: TableFacts) -> list[Finding]:
    """A warning, not a refusal: AWS's table says these types "don't migrate" without saying what DMS does
    to them, and into a target whose schema was created first (``pg_dump --schema-only``) their text may
    well arrive intact; verification compares every value and fails the migration if it does not."""
    return _flagged_finding(
        tables,
        "type_not_migrated",
        "types_not_migrated",
        "warning",
        "{count} selected column(s) have types AWS lists as not migrating PostgreSQL to PostgreSQL; their "
        "values may not arrive, or arrive changed (verification would then fail the migration)",
        "create the target's schema first (--copy-schema) and try the migration on a copy; or change the "
        "columns to text (cidr for inet), or exclude the tables",
    )


def check_infinite_timestamps(tables: TableFacts) -> list[Finding]:
    return _flagged_finding(
        tables,
        "infinite_timestamp",
        "infinite_timestamps",
        "fatal",
        "{count} selected date/timestamp column(s) hold 'infinity' or '-infinity' (seen in the planner's "
        "statistics, which are sampled: other columns may hold them too, and verification would catch "
        "those); DMS writes them as 9999-12-31 23:59:59 and 4713-01-01 BC",
        "replace the infinities with NULL or an explicit date the application understands before migrating, "
        "or exclude the tables",
    )


def check_cdc_truncate_and_ddl(spec: MigrationSpec) -> list[Finding]:
    """AWS: TRUNCATE is not captured during CDC; DDL is captured only through DMS's event trigger, which
    pg2rds does not install (``CaptureDdls = false``: the source stays untouched but for our slot); and an
    UPDATE of a primary key is ignored ("AWS DMS ignores an attempt to update a primary key segment")."""
    if not spec.uses_cdc:
        return []
    return [
        Finding(
            name="cdc_truncate_and_ddl",
            severity="warning",
            message=(
                "during ongoing replication DMS does not capture TRUNCATE, nor (with CaptureDdls off, as "
                "pg2rds runs it) CREATE, ALTER or DROP TABLE, nor changes to column defaults or NOT NULL, "
                "and it ignores an UPDATE that changes a primary key (the row keeps its old key on the "
                "target): such statements on the selected tables leave the target different"
            ),
            fix=(
                "do not TRUNCATE, change the schema of, or update the primary keys of the selected tables "
                "until cutover; if you must, run the same statement on the target (the final verification "
                "names any table that differs)"
            ),
        )
    ]


#: LobMaxSize when nothing could be measured (DMS's console default), and AWS's recommended maximum.
DEFAULT_LOB_MAX_SIZE_KB = 32
MAX_LIMITED_LOB_KB = 102400
#: Room above the largest LOB measured: sampled maxima are lower bounds.
LOB_SIZE_MARGIN = 1.25


def check_lob_sizes(spec: MigrationSpec, sizes: LobSizes | None) -> tuple[list[Finding], int]:
    """Limited LOB mode: the findings about LOB sizes, and the LobMaxSize (KB) the task is to use."""
    limit = spec.task.lob_max_size_kb
    if sizes is None:
        return [
            Finding(
                name="lob_sizes",
                severity="warning",
                message=(
                    "the selected tables' LOB sizes could not be measured within the time allowed; "
                    f"LobMaxSize is {limit or DEFAULT_LOB_MAX_SIZE_KB} KB and a longer LOB fails the task "
                    "(FailTasksOnLobTruncation)"
                ),
                fix="set task.lob_max_size_kb above your largest LOB, or task.lob_mode to full",
            )
        ], limit or DEFAULT_LOB_MAX_SIZE_KB
    if limit is not None:
        if not sizes.oversized:
            return [], limit
        return [
            Finding(
                name="lob_truncation",
                severity="fatal",
                message=(
                    f"{sizes.oversized} selected LOB column(s) hold values longer than task.lob_max_size_kb "
                    f"= {limit} KB (the largest: {sizes.largest_kb} KB, {sizes.how}); in limited LOB mode "
                    "DMS cuts them, and with FailTasksOnLobTruncation, which pg2rds sets, the task fails"
                ),
                fix=(
                    f"raise task.lob_max_size_kb above {sizes.largest_kb}, or leave it out so pg2rds sizes "
                    "it from the data, or set task.lob_mode to full (slower, any size)"
                ),
                objects=sizes.oversized_names,
                object_count=sizes.oversized,
            )
        ], limit
    sized = max(DEFAULT_LOB_MAX_SIZE_KB, int(sizes.largest_kb * LOB_SIZE_MARGIN) + 1)
    if sized > MAX_LIMITED_LOB_KB:
        return [
            Finding(
                name="lob_max_size",
                severity="fatal",
                message=(
                    f"the largest LOB is {sizes.largest_kb} KB ({sizes.largest_column}; {sizes.how}), "
                    "more than limited LOB mode is meant for (AWS recommends LobMaxSize up to "
                    f"{MAX_LIMITED_LOB_KB} KB)"
                ),
                fix="set task.lob_mode to full, which moves LOBs of any size in chunks",
                objects=[sizes.largest_column],
                object_count=1,
            )
        ], MAX_LIMITED_LOB_KB
    if not sizes.largest_bytes:
        return [], sized
    return [
        Finding(
            name="lob_max_size",
            severity="info",
            message=(
                f"LobMaxSize sized to {sized} KB, above the largest LOB ({sizes.largest_kb} KB in "
                f"{sizes.largest_column}; {sizes.how}); a longer one fails the task instead of being cut"
            ),
        )
    ], sized


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
            return _report(facts, [version], None, cur.queries, credentials)
        usage = _replication_usage(cur, ResourceNames(spec.migration_id).slot)
        tables = _table_facts(cur, spec, facts.server_version_num)
        findings = [
            version,
            *check_selection(spec, tables, credentials.database),
            *check_wal_level(spec, facts),
            *check_standby(spec, facts),
            *check_replication_capacity(spec, facts, usage),
            *check_own_slot(spec, usage),
            *check_wal_sender_timeout(spec, facts),
            *check_privileges(spec, facts, tables),
            *check_primary_keys(spec, tables),
            *check_keyless_size(spec, facts, tables),
            *check_large_objects(tables),
            *check_unlogged(spec, tables),
            *check_row_security(tables),
            *check_case_twins(tables),
            *check_arrays_without_key(tables),
            *check_unconstrained_numeric(spec, tables),
            *check_infinite_timestamps(tables),
            *check_types_not_migrated(tables),
            *check_cdc_truncate_and_ddl(spec),
        ]
        lob_max_size_kb = 0
        if spec.task.lob_mode == "limited" and tables.selected:
            sizes = measure_lob_sizes(cur, spec, spec.task.lob_max_size_kb)
            lob_findings, lob_max_size_kb = check_lob_sizes(spec, sizes)
            findings += lob_findings
        report = _report(facts, findings, tables, cur.queries, credentials)
        report.lob_max_size_kb = lob_max_size_kb
        return report


def _report(
    facts: ServerFacts,
    findings: list[Finding],
    tables: TableFacts | None,
    queries: int,
    credentials: Credentials,
) -> SourceReport:
    return SourceReport(
        host=credentials.host,
        port=credentials.port,
        database=credentials.database,
        server_version=facts.server_version,
        server_version_num=facts.server_version_num,
        findings=findings,
        tables_selected=tables.selected if tables else 0,
        schemas_selected=tables.schemas if tables else [],
        catalog_queries=queries,
    )
