"""A table's own rows in a statement: ``ONLY`` the table, unless it is partitioned.

A table with inheritance children (the partitioning of PostgreSQL before 10, still in many older
databases) yields its children's rows too when named alone. DMS loads each selected table's own rows (the
stand-in reads ``ONLY``, as it must not load a child's rows twice); a target where DMS created the tables
(``DROP_AND_CREATE``), or one built without the inheritance, holds each table's own rows, and nothing
inherits. So reading the parent whole on the source compared its rows and its children's against the
target parent's own, and reported the identical data different. A foreign key, too, constrains and
references one table's own rows. A partitioned table holds no rows of its own: it stands for all of its
partitions' rows, on either side, and is read whole.
"""

from typing import Any

from psycopg2 import sql

_PARTITIONED = "SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = to_regclass(format('%%I.%%I', %s, %s))"


def partitioned(conn: Any, schema: str, table: str) -> bool:
    """Whether the table is a partitioned one on this server (False if it does not exist)."""
    with conn.cursor() as cur:
        cur.execute(_PARTITIONED, (schema, table))
        row = cur.fetchone()
    return bool(row and row[0])


def own_rows(conn: Any, schema: str, table: str) -> sql.Composable:
    """The table as a statement's ``FROM`` names it to read its own rows on this server (one catalog
    query): ``ONLY schema.table``, or ``schema.table`` for a partitioned table."""
    name = sql.Identifier(schema, table)
    return name if partitioned(conn, schema, table) else sql.SQL("ONLY {}").format(name)
