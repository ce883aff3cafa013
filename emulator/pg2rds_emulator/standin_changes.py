"""The changes the DMS stand-in applies, as its applier reads them: one source transaction at a time.

:mod:`standin_testdecoding` turns the slot's test_decoding text into these; values are in the text form
PostgreSQL's output functions give them, so a row is a list of ``str | None | UNCHANGED`` aligned with its
:class:`Relation`'s columns.
"""

from dataclasses import dataclass, field
from datetime import datetime


class _Unchanged:
    """A TOASTed value the update did not change: the plugin does not send it; leave the column alone."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()

Value = str | None | _Unchanged


@dataclass(frozen=True)
class Begin:
    xid: int


@dataclass(frozen=True)
class Commit:
    xid: int
    #: Where the commit record ends: the position to confirm to the slot once it is applied.
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
    #: It gives the row another primary key: DMS ignores it (its rows are validated again all the same).
    key_moved: bool = False


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old_kind: str
    old: list[Value]


Message = Begin | Commit | Relation | Insert | Update | Delete
