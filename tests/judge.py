"""How end-to-end tests judge a migration, independently of the product: its own catalog query for the
tables (not pg2rds's selection code), its own fingerprint of every row and large object (not pg2rds's
comparison), and every DMS resource in the account (not only the names pg2rds derives). A bug in the
product's selection or comparison therefore cannot hide itself from these tests."""

import json
from typing import Any

from botocore.exceptions import ClientError
from psycopg2 import sql

#: Every setting that changes a value's text, pinned so two servers' defaults cannot differ.
PINNED = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'"
)

TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
  AND n.nspname <> 'awsdms_control'
ORDER BY 1, 2
"""


#: Run on a target before a load: at the end of each DDL command (in the loading sessions too, which run
#: with session_replication_role = replica, hence ENABLE ALWAYS), each table it touched, with its primary
#: keys and rows at that moment: :func:`key_log` then says whether a key came before or after the rows.
KEY_LOG = """
CREATE TABLE public.keys_log (seq bigserial, tag text, relation text, keys int, row_count bigint);
CREATE FUNCTION public.log_keys() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE command record; keys_now int; rows_now bigint;
BEGIN
  FOR command IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE object_type = 'table' LOOP
    SELECT count(*) INTO keys_now FROM pg_index WHERE indrelid = command.objid AND indisprimary;
    EXECUTE 'SELECT count(*) FROM ' || command.objid::regclass::text INTO rows_now;
    INSERT INTO public.keys_log (tag, relation, keys, row_count)
    VALUES (command.command_tag, command.object_identity, keys_now, rows_now);
  END LOOP;
END $$;
CREATE EVENT TRIGGER log_keys ON ddl_command_end EXECUTE FUNCTION public.log_keys();
ALTER EVENT TRIGGER log_keys ENABLE ALWAYS;
"""


def key_log(db: Any) -> list[tuple]:
    """(table, command, primary keys, rows) for each DDL command :data:`KEY_LOG` saw, by table, in order."""
    return _query(
        db,
        "SELECT relation, tag, keys, row_count FROM public.keys_log WHERE relation <> 'public.keys_log' "
        "ORDER BY relation, seq",
    )


def _query(db: Any, statement: Any, params: tuple = ()) -> list[tuple]:
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(PINNED)
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def tables(db: Any) -> list[tuple[str, str]]:
    """Every ordinary table (partitions included: they hold the rows; partitioned parents hold none)."""
    return [(schema, table) for schema, table in _query(db, TABLES)]


def table_fingerprint(db: Any, schema: str, table: str) -> tuple[int, str]:
    """Row count and an md5 over every row's text in a fixed order."""
    statement = sql.SQL(
        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ONLY {} t"
    ).format(sql.Identifier(schema, table))
    ((count, digest),) = _query(db, statement)
    return count, digest


def large_objects(db: Any) -> tuple[int, str]:
    """Count and an md5 over every large object's oid and content."""
    ((count, digest),) = _query(
        db,
        "SELECT count(*), "
        "coalesce(md5(string_agg(oid::text || ':' || md5(lo_get(oid)), '|' ORDER BY oid)), '') "
        "FROM pg_largeobject_metadata",
    )
    return count, digest


def database_fingerprint(db: Any, only: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Every table's fingerprint (or those in ``only``), and the large objects."""
    names = only if only is not None else tables(db)
    result: dict[str, Any] = {
        f"{schema}.{table}": table_fingerprint(db, schema, table) for schema, table in names
    }
    result["large objects"] = large_objects(db)
    return result


def differences(source: Any, target: Any, only: list[tuple[str, str]] | None = None) -> list[str]:
    """Names whose fingerprints differ between the two databases (tables missing on one side included)."""
    names = only if only is not None else tables(source)
    missing = sorted(set(names) - set(tables(target)))
    present = [name for name in names if name not in missing]
    left, right = database_fingerprint(source, present), database_fingerprint(target, present)
    return [f"{s}.{t} (missing on the target)" for s, t in missing] + [
        name for name in left if left[name] != right[name]
    ]


def account_dms_resources(aws: Any) -> list[str]:
    """Every DMS resource in the (embedded) account, whoever created it and whatever its name."""
    return dms_resources(aws.client("dms"))


def dms_resources(dms: Any) -> list[str]:
    """Every DMS resource a DMS client sees (for a served endpoint, a client made against it)."""
    found = [
        f"task {t['ReplicationTaskIdentifier']}" for t in dms.describe_replication_tasks()["ReplicationTasks"]
    ]
    found += [f"endpoint {e['EndpointIdentifier']}" for e in dms.describe_endpoints()["Endpoints"]]
    found += [
        f"instance {i['ReplicationInstanceIdentifier']}"
        for i in dms.describe_replication_instances()["ReplicationInstances"]
    ]
    try:  # certificates exist where the emulator models ImportCertificate
        certificates = dms.describe_certificates()["Certificates"]
    except (NotImplementedError, ClientError):
        certificates = []
    found += [f"certificate {c['CertificateIdentifier']}" for c in certificates]
    return found


def slots(db: Any) -> list[tuple]:
    """Replication slots in ``db``'s database (the cluster is shared by parallel tests)."""
    return db.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db.name,))


#: The Distributed Map state that runs each verification chunk as a child execution.
CHUNK_MAP_STATE = "Verify chunks"


def chunks_handed_to_the_map(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every chunk the execution's rounds handed to the "Verify chunks" Map, read from the inputs the
    history records for it (each chunk runs in a child execution, whose events are in its own history)."""
    chunks: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        for event in page["events"]:
            details = event.get("stateEnteredEventDetails")
            if event["type"] == "MapStateEntered" and details["name"] == CHUNK_MAP_STATE:
                chunks += json.loads(details["input"])["verification"]["chunks"]
        if not page.get("nextToken"):
            return chunks
        kwargs["nextToken"] = page["nextToken"]
