"""Reading the slot pg2rds created: test_decoding's text, turned into the changes the stand-in applies.

DMS reads a PostgreSQL source through the slot named by the endpoint's ``SlotName`` with the plugin
named by ``PluginName`` (pg2rds: ``test-decoding``), and test_decoding needs no publication. It writes one
line per event (``contrib/test_decoding/test_decoding.c``), here with ``include-xids`` and
``include-timestamp``::

    BEGIN 745
    table public.accounts: INSERT: id[integer]:1 owner[text]:'it''s' balance[numeric]:10.5 blob[bytea]:null
    table public."Mixed Case": UPDATE: old-key: "Key"[text]:'a' new-tuple: "Key"[text]:'b' n[integer]:10
    table public.events: DELETE: happened[timestamp with time zone]:'2024-05-01 10:00:00+00' what[text]:'x'
    table public.a, public.b: TRUNCATE: restart_seqs cascade
    COMMIT 745 (at 2024-05-01 10:00:00.123456+00)

Names are quoted as ``quote_identifier`` quotes them (only when needed, ``""`` inside); type names are
``format_type_be``'s (``character varying``, ``integer[]``, ``public."my type"``). Values: ``null``,
``unchanged-toast-datum`` (a TOASTed value an UPDATE left alone), numbers bare, ``true``/``false``,
bit strings as ``B'0101'``, everything else quoted with ``''`` inside. An old tuple (``old-key:`` of an
UPDATE, the tuple of a DELETE) holds the replica identity's columns, every column for REPLICA IDENTITY
FULL, and omits its nulls. A table without a replica identity gives ``(no-tuple-data)``.

test_decoding names tables, not OIDs, and types by name only, so the shape of each selected table
(columns, replica identity) comes from the source catalog (:func:`table_shapes`). Generated columns are
printed but never applied: the target computes them.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions

from pg2rds.postgres.selection import TableName
from pg2rds_emulator.standin_changes import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    Message,
    Relation,
    Update,
    Value,
)

#: START_REPLICATION options: the transaction id (to tell which changes a table's load already saw), the
#: commit time (CDC latency), and no BEGIN/COMMIT pairs for transactions that changed no table.
PLUGIN_OPTIONS = {"include-xids": "1", "include-timestamp": "1", "skip-empty-xacts": "1"}


class DecodeError(ValueError):
    pass


# -- the text -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TxBegin:
    xid: int


@dataclass(frozen=True)
class TxCommit:
    xid: int
    commit_time: datetime | None


@dataclass(frozen=True)
class RowChange:
    action: str  # INSERT | UPDATE | DELETE
    table: TableName
    #: column name → value; None when the line says (no-tuple-data) or an UPDATE sends no old key
    old: dict[str, Value] | None
    new: dict[str, Value] | None


@dataclass(frozen=True)
class TruncateChange:
    tables: list[TableName]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class Other:
    """A logical decoding message (``pg_logical_emit_message``) or anything else with no row in it."""

    text: str


Event = TxBegin | TxCommit | RowChange | TruncateChange | Other

_COMMIT = re.compile(r"COMMIT (\d+)(?: \(at (.+)\))?$")


def payload_codec(conn: Any) -> str:
    """The Python codec of the text test_decoding writes for ``conn``'s database: its ``server_encoding``
    (an output plugin writes in the database's encoding, and the walsender does not convert it to the
    client's: a LATIN1 source sends 'é' as the byte 0xe9). ``SQL_ASCII`` declares no encoding: its bytes
    are read as UTF-8, as the full load's UTF-8 sessions pass them."""
    with conn.cursor() as cur:
        cur.execute("SHOW server_encoding")
        (encoding,) = cur.fetchone()
    if encoding == "SQL_ASCII":
        return "utf-8"
    return psycopg2.extensions.encodings[encoding]


def parse(line: str) -> Event:
    """One test_decoding line."""
    if line.startswith("BEGIN "):
        return TxBegin(int(line[6:]))
    if line.startswith("COMMIT"):
        match = _COMMIT.match(line)
        if match is None:
            raise DecodeError(f"unreadable COMMIT line: {line[:200]!r}")
        at = datetime.fromisoformat(match.group(2)) if match.group(2) else None
        return TxCommit(int(match.group(1)), at)
    if line.startswith("table "):
        return _Reader(line, 6).change()
    return Other(line)


class _Reader:
    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos

    def _fail(self, what: str) -> DecodeError:
        return DecodeError(f"{what} at {self.pos} in test_decoding line {self.text[:200]!r}")

    def at(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def expect(self, literal: str) -> None:
        if not self.at(literal):
            raise self._fail(f"expected {literal!r}")
        self.pos += len(literal)

    def _quoted(self, quote: str) -> str:
        """From an opening ``quote`` to its closing one; a doubled quote stands for itself."""
        self.expect(quote)
        parts = []
        while True:
            end = self.text.find(quote, self.pos)
            if end < 0:
                raise self._fail("unterminated quoted text")
            parts.append(self.text[self.pos : end])
            self.pos = end + 1
            if not self.at(quote):
                return "".join(parts)
            parts.append(quote)
            self.pos += 1

    def identifier(self) -> str:
        if self.at('"'):
            return self._quoted('"')
        match = re.compile(r"[^.:\[ ,]+").match(self.text, self.pos)
        if match is None:
            raise self._fail("expected a name")
        self.pos = match.end()
        return match.group()

    def table(self) -> TableName:
        schema = self.identifier()
        self.expect(".")
        return TableName(schema, self.identifier())

    def type_name(self) -> str:
        """``[type]`` up to the ``]`` that a ``:`` follows (array types end in ``[]``)."""
        self.expect("[")
        start = self.pos
        while True:
            if self.at('"'):
                self._quoted('"')
            elif self.at("]:"):
                name = self.text[start : self.pos]
                self.pos += 1
                return name
            elif self.pos >= len(self.text):
                raise self._fail("unterminated type name")
            else:
                self.pos += 1

    def value(self) -> Value:
        if self.at("'"):
            return self._quoted("'")
        if self.at("B'"):
            self.pos += 1
            return self._quoted("'")
        end = self.text.find(" ", self.pos)
        end = len(self.text) if end < 0 else end
        token = self.text[self.pos : end]
        self.pos = end
        if token == "null":
            return None
        if token == "unchanged-toast-datum":
            return UNCHANGED
        if not token:
            raise self._fail("expected a value")
        return token  # a number, NaN, Infinity, true or false: as PostgreSQL reads it back

    def tuple(self) -> dict[str, Value] | None:
        """`` name[type]:value`` pairs up to the end or to `` new-tuple:``; None for (no-tuple-data)."""
        if self.at(" (no-tuple-data)"):
            self.pos += len(" (no-tuple-data)")
            return None
        values: dict[str, Value] = {}
        while self.pos < len(self.text) and not self.at(" new-tuple:"):
            self.expect(" ")
            name = self.identifier()
            self.type_name()
            self.expect(":")
            values[name] = self.value()
        return values

    def change(self) -> RowChange | TruncateChange:
        tables = [self.table()]
        while self.at(", "):
            self.pos += 2
            tables.append(self.table())
        self.expect(": ")
        end = self.text.find(":", self.pos)
        action = self.text[self.pos : end] if end > 0 else ""
        self.pos = end + 1
        if action == "TRUNCATE":
            flags = self.text[self.pos :].split()
            return TruncateChange(tables, "cascade" in flags, "restart_seqs" in flags)
        if action == "INSERT":
            return RowChange(action, tables[0], None, self.tuple())
        if action == "UPDATE":
            old = None
            if self.at(" old-key:"):
                self.pos += len(" old-key:")
                old = self.tuple()
                self.expect(" new-tuple:")
            return RowChange(action, tables[0], old, self.tuple())
        if action == "DELETE":
            return RowChange(action, tables[0], self.tuple(), None)
        raise self._fail(f"unknown action {action!r}")


# -- the source's tables ---------------------------------------------------------------------------------

#: Columns (not dropped), which of them are the replica identity, which are generated, for given tables.
TABLE_SHAPES_QUERY = """
SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text,
       array_agg(a.attname::text ORDER BY a.attnum),
       array_agg(a.atttypid::int ORDER BY a.attnum),
       array_agg(a.atttypmod ORDER BY a.attnum),
       array_agg(CASE c.relreplident
                     WHEN 'f' THEN true
                     WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                                           AND i.indisprimary AND a.attnum = ANY (i.indkey::int2[]))
                     WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid
                                           AND i.indisreplident AND a.attnum = ANY (i.indkey::int2[]))
                     ELSE false
                 END ORDER BY a.attnum),
       array_agg(a.attgenerated <> '' ORDER BY a.attnum),
       array_agg(EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
                         AND a.attnum = ANY (i.indkey::int2[])) ORDER BY a.attnum)
FROM unnest(%s::text[], %s::text[]) AS wanted(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = wanted.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.table_name
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY c.oid, n.nspname, c.relname, c.relreplident
"""


@dataclass(frozen=True)
class TableShape:
    relation: Relation
    #: Printed by test_decoding, computed by the target: never applied.
    generated: frozenset[str] = field(default_factory=frozenset)
    #: The primary key's columns (none without one), whatever the replica identity.
    primary_key: frozenset[str] = field(default_factory=frozenset)

    @property
    def identified(self) -> bool:
        """Whether UPDATE and DELETE carry a way to find the row (a key or the whole old row)."""
        return any(column.is_key for column in self.relation.columns)


def table_shapes(conn: Any, tables: list[TableName]) -> dict[TableName, TableShape]:
    """The shape of each of ``tables`` on the source, in one round trip."""
    with conn.cursor() as cur:
        cur.execute(TABLE_SHAPES_QUERY, ([t.schema for t in tables], [t.table for t in tables]))
        rows = cur.fetchall()
    shapes = {}
    for oid, schema, table, identity, names, types, typmods, keys, generated, primary in rows:
        rows_of_columns = zip(names, types, typmods, keys, generated, strict=True)
        columns = [Column(name, oid_, mod, key) for name, oid_, mod, key, gen in rows_of_columns if not gen]
        shapes[TableName(schema, table)] = TableShape(
            Relation(oid, schema, table, identity, columns),
            frozenset(name for name, gen in zip(names, generated, strict=True) if gen),
            frozenset(name for name, key in zip(names, primary, strict=True) if key),
        )
    return shapes


# -- which changes a table's load already holds ----------------------------------------------------------


@dataclass(frozen=True)
class LoadSnapshot:
    """The snapshot a table was copied in (``pg_current_snapshot()``: ``xmin:xmax:xip,...``).

    The slot existed before the load, so its stream holds every transaction committed after the slot's
    consistent point, and some of them are already in the copied rows. A transaction the load's snapshot
    saw is not applied again to that table; every other one is. That is where DMS draws the line between
    a table's loaded rows and its cached changes; drawn by the snapshot, it is exact even for a table
    without a key, where applying a change twice could not be detected.
    """

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> "LoadSnapshot":
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def saw(self, xid: int) -> bool:
        """Whether the transaction ``xid`` (32 bits, as test_decoding prints it) had committed when the
        snapshot was taken. The snapshot's ids carry the epoch; ``xid`` is placed in the epoch nearest
        ``xmax`` (the stream's transactions are far fewer than 2^31 ids away from the load)."""
        full = (self.xmax & ~0xFFFFFFFF) | xid
        if full > self.xmax + 2**31:
            full -= 2**32
        elif full < self.xmax - 2**31:
            full += 2**32
        return full < self.xmin or (full < self.xmax and full not in self.xip)


# -- events to the applier's messages --------------------------------------------------------------------


class Translator:
    """Turns test_decoding events into applier messages for the selected tables, dropping what the
    table's load already holds and what DMS does not apply.

    DMS ignores UPDATE and DELETE on a table without a replica identity (the WAL holds no before-image),
    does not capture TRUNCATE during CDC, and "ignores an attempt to update a primary key segment": the
    target keeps the row under its old key (User Guide, "Using a PostgreSQL database as an AWS DMS
    source", limitations; pre-flight warns of the first two); so does this, and ``ignored`` counts them.
    ``shapes`` must hold every selected table; :meth:`refresh` reloads them when a row names a column the
    catalog did not have (a column added during the migration)."""

    def __init__(self, shapes: dict[TableName, TableShape], snapshots: dict[TableName, LoadSnapshot]) -> None:
        self.shapes = shapes
        self.snapshots = snapshots
        self.xid = 0
        self._announced: set[int] = set()
        self.ignored = 0

    def messages(self, event: Event, end_lsn: int) -> list[Message]:
        if isinstance(event, TxBegin):
            self.xid = event.xid
            return [Begin(event.xid)]
        if isinstance(event, TxCommit):
            return [Commit(event.xid, end_lsn, event.commit_time or datetime.now(UTC))]
        if isinstance(event, TruncateChange):
            self.ignored += any(t in self.shapes for t in event.tables)  # DMS does not capture TRUNCATE
            return []
        if isinstance(event, RowChange):
            shape = self.shapes.get(event.table)
            if shape is None or self._seen(event.table):
                return []
            change = self._row(shape, event)
            return [*self._announce([shape]), change] if change else []
        return []

    def _seen(self, table: TableName) -> bool:
        snapshot = self.snapshots.get(table)
        return snapshot is not None and snapshot.saw(self.xid)

    def _announce(self, shapes: list[TableShape]) -> list[Message]:
        new = [shape.relation for shape in shapes if shape.relation.oid not in self._announced]
        self._announced.update(relation.oid for relation in new)
        return list(new)

    def _row(self, shape: TableShape, event: RowChange) -> Message | None:
        relation = shape.relation
        if event.action == "INSERT":
            return Insert(relation.oid, self._aligned(shape, event.new or {}))
        if not shape.identified:
            self.ignored += 1
            return None
        if event.action == "UPDATE":
            new = self._aligned(shape, event.new or {})
            if event.old is None:
                return Update(relation.oid, None, None, new)
            kind = "O" if relation.replica_identity == "f" else "K"
            moved = _moves_primary_key(shape, event)
            self.ignored += moved
            return Update(relation.oid, kind, self._aligned(shape, event.old), new, key_moved=moved)
        if event.old is None:
            self.ignored += 1
            return None
        kind = "O" if relation.replica_identity == "f" else "K"
        return Delete(relation.oid, kind, self._aligned(shape, event.old))

    @staticmethod
    def _aligned(shape: TableShape, values: dict[str, Value]) -> list[Value]:
        """The row in the relation's column order; a column an old tuple omits was null."""
        names = {column.name for column in shape.relation.columns}
        unknown = set(values) - names - shape.generated
        if unknown:
            raise UnknownColumns(shape.relation, sorted(unknown))
        return [values.get(column.name) for column in shape.relation.columns]

    def refresh(self, shapes: dict[TableName, TableShape]) -> None:
        self.shapes = shapes
        self._announced.clear()


def _moves_primary_key(shape: TableShape, event: RowChange) -> bool:
    """Whether an UPDATE gives a row another primary key: its old tuple (sent when the replica identity's
    columns change, or always with REPLICA IDENTITY FULL) holds every key column, one of them changed. An
    old tuple of another unique index, without the key's columns, cannot tell, and is applied."""
    old, new = event.old or {}, event.new or {}
    if not shape.primary_key or not shape.primary_key <= old.keys():
        return False
    return any(new.get(name, UNCHANGED) not in (UNCHANGED, old[name]) for name in shape.primary_key)


class UnknownColumns(DecodeError):
    def __init__(self, relation: Relation, names: list[str]) -> None:
        super().__init__(
            f"table '{relation.namespace}'.'{relation.name}' has columns the task does not know: "
            + ", ".join(names)
        )
        self.relation = relation
