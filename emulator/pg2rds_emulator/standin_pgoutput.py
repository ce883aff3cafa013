"""A decoder for pgoutput, PostgreSQL's logical replication output plugin (protocol version 1).

Only what the DMS stand-in applies is decoded: Begin, Commit, Relation, Insert, Update, Delete, Truncate;
Origin, Type and logical Message are recognised and skipped. The format is documented at
https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html. Values arrive in text
form (protocol 1 never sends binary values), so a decoded tuple is a list of ``str | None | UNCHANGED``.
"""

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Unchanged:
    """A TOASTed value the update did not change: pgoutput does not send it; leave the column alone."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()

Value = str | None | _Unchanged


def pg_timestamp(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    typmod: int
    is_key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: list[Column] = field(default_factory=list)


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: list[Value]


@dataclass(frozen=True)
class Update:
    relation_oid: int
    old_kind: str | None  # 'K' (key columns only), 'O' (whole old row, REPLICA IDENTITY FULL) or None
    old: list[Value] | None
    new: list[Value]


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old_kind: str
    old: list[Value]


@dataclass(frozen=True)
class Truncate:
    relation_oids: list[int]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class Skipped:
    """Origin, Type and logical decoding messages: nothing to apply."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Skipped


class DecodeError(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _unpack(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise DecodeError("pgoutput message truncated")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def int8(self) -> int:
        return self._unpack("!b")[0]

    def byte(self) -> str:
        return chr(self._unpack("!B")[0])

    def int16(self) -> int:
        return self._unpack("!h")[0]

    def int32(self) -> int:
        return self._unpack("!i")[0]

    def uint32(self) -> int:
        return self._unpack("!I")[0]

    def int64(self) -> int:
        return self._unpack("!q")[0]

    def uint64(self) -> int:
        return self._unpack("!Q")[0]

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError("unterminated string in pgoutput message")
        value = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return value

    def raw(self, length: int) -> bytes:
        if self.pos + length > len(self.data):
            raise DecodeError("pgoutput message truncated")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value

    def tuple_data(self) -> list[Value]:
        values: list[Value] = []
        for _ in range(self.int16()):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(self.raw(self.int32()).decode("utf-8"))
            else:  # 'b' only exists with the binary option, which we never ask for
                raise DecodeError(f"unsupported tuple value kind {kind!r}")
        return values


def decode(payload: bytes) -> Message:
    """One pgoutput message (the payload of one XLogData message)."""
    reader = _Reader(payload)
    kind = reader.byte()
    if kind == "B":
        final_lsn, micros, xid = reader.uint64(), reader.int64(), reader.uint32()
        return Begin(final_lsn, pg_timestamp(micros), xid)
    if kind == "C":
        flags, commit_lsn, end_lsn, micros = reader.int8(), reader.uint64(), reader.uint64(), reader.int64()
        return Commit(flags, commit_lsn, end_lsn, pg_timestamp(micros))
    if kind == "R":
        oid, namespace, name = reader.uint32(), reader.string(), reader.string()
        identity = reader.byte()
        columns = []
        for _ in range(reader.int16()):
            flags = reader.int8()
            col_name = reader.string()
            type_oid, typmod = reader.uint32(), reader.int32()
            columns.append(Column(col_name, type_oid, typmod, bool(flags & 1)))
        return Relation(oid, namespace, name, identity, columns)
    if kind == "I":
        oid = reader.uint32()
        if reader.byte() != "N":
            raise DecodeError("Insert without a new tuple")
        return Insert(oid, reader.tuple_data())
    if kind == "U":
        oid = reader.uint32()
        marker = reader.byte()
        old_kind, old = None, None
        if marker in ("K", "O"):
            old_kind, old = marker, reader.tuple_data()
            marker = reader.byte()
        if marker != "N":
            raise DecodeError("Update without a new tuple")
        return Update(oid, old_kind, old, reader.tuple_data())
    if kind == "D":
        oid = reader.uint32()
        marker = reader.byte()
        if marker not in ("K", "O"):
            raise DecodeError("Delete without an old tuple")
        return Delete(oid, marker, reader.tuple_data())
    if kind == "T":
        count, options = reader.int32(), reader.int8()
        oids = [reader.uint32() for _ in range(count)]
        return Truncate(oids, bool(options & 1), bool(options & 2))
    if kind in ("O", "Y", "M"):
        return Skipped(kind)
    raise DecodeError(f"unknown pgoutput message type {kind!r}")
