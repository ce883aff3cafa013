"""LOB handling of the DMS stand-in: what DMS does to the PostgreSQL values it treats as LOBs.

From the AWS pages "Using a PostgreSQL database as an AWS DMS source" (which types are LOBs), "Setting LOB
support for source databases in an AWS DMS task" and "Target metadata task settings" (the modes), and the
API reference of ``PostgreSQLSettings`` (``FailTasksOnLobTruncation``):

- LOBs are ``text``, ``bytea``, ``json``, ``jsonb``, ``xml``, arrays, composite types, ``hstore``,
  ``tsvector``, ``tsquery``, ``path`` and ``polygon`` (domains count as their base type). ``varchar(n)``,
  ``uuid``, ``boolean`` and the rest are not.
- ``SupportLobs: false``: LOB columns are left out of the migration (the target gets no value for them).
- Full LOB mode (``FullLobMode``, with or without ``InlineLobMaxSize``): every LOB is copied whole.
- Limited LOB mode (``LimitedSizeLobMode``): a LOB longer than ``LobMaxSize`` KB is cut to that size
  (DMS only logs a warning), or, with the source endpoint's ``FailTasksOnLobTruncation``, the task fails
  naming the table and column.

A LOB's size is its bytes: a ``bytea``'s own, other types' text in UTF-8. A cut ``text`` keeps whole
characters; a cut ``json`` or array is no longer valid, and the target refuses it as it would DMS's.
"""

from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

#: The type names (of ``pg_type``, base type of a domain) DMS treats as LOBs, besides arrays and composites.
LOB_TYPE_NAMES = ("text", "bytea", "json", "jsonb", "xml", "hstore", "tsvector", "tsquery", "path", "polygon")

#: SQL for one column's LOB kind ('' not a LOB, 'binary' for bytea, 'text' otherwise); ``a`` is its
#: pg_attribute row. Used inside the stand-in's table metadata query.
LOB_KIND_SQL = """
(SELECT CASE WHEN bt.typname = 'bytea' THEN 'binary'
             WHEN bt.typname IN ({names}) OR bt.typcategory = 'A' OR bt.typtype = 'c' THEN 'text'
             ELSE '' END
 FROM pg_type t JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
 WHERE t.oid = a.atttypid)
""".format(names=", ".join(f"'{name}'" for name in LOB_TYPE_NAMES if name != "bytea"))


class LobTruncation(Exception):
    """A LOB is longer than LobMaxSize and the source endpoint says to fail rather than cut it."""


@dataclass(frozen=True)
class LobSettings:
    """The LOB mode a task was created with."""

    mode: str  # "none" (SupportLobs false) | "full" | "limited"
    max_bytes: int = 0
    fail_on_truncation: bool = False

    @classmethod
    def of_task(cls, settings: dict[str, Any], source_settings: dict[str, Any]) -> "LobSettings":
        metadata = settings.get("TargetMetadata") or {}
        if metadata.get("SupportLobs") is False:
            return cls("none")
        if metadata.get("FullLobMode"):
            return cls("full")
        if metadata.get("LimitedSizeLobMode", True):
            # DMS's default LobMaxSize is 32 KB
            max_kb = int(metadata.get("LobMaxSize") or 32)
            return cls("limited", max_kb * 1024, bool(source_settings.get("FailTasksOnLobTruncation")))
        return cls("full")

    @property
    def max_kb(self) -> int:
        return self.max_bytes // 1024

    def copies(self, kind: str) -> bool:
        """Whether a column of this LOB kind is migrated at all."""
        return not (kind and self.mode == "none")

    def cuts(self, kind: str) -> bool:
        """Whether values of this kind may be cut (limited mode, truncating rather than failing)."""
        return bool(kind) and self.mode == "limited" and not self.fail_on_truncation

    def checks(self, kind: str) -> bool:
        """Whether values of this kind must be measured before they are copied (limited mode, failing)."""
        return bool(kind) and self.mode == "limited" and self.fail_on_truncation

    # -- full load: SQL ----------------------------------------------------------------------------------
    def size_sql(self, column: str, kind: str) -> sql.Composable:
        value = sql.Identifier(column)
        if kind == "binary":
            return sql.SQL("octet_length({})").format(value)
        return sql.SQL("octet_length(convert_to({}::text, 'UTF8'))").format(value)

    def select_sql(self, column: str, kind: str) -> sql.Composable:
        """The column as the full load reads it: cut to the limit where limited mode cuts."""
        value = sql.Identifier(column)
        if not self.cuts(kind):
            return value
        limit = sql.Literal(self.max_bytes)
        if kind == "binary":
            return sql.SQL("substring({} from 1 for {})").format(value, limit)
        # whole UTF-8 characters only: if the first byte left out continues a character (10xxxxxx), the
        # cut moves back to where that character starts (at most 3 bytes: UTF-8 characters are ≤ 4 bytes)
        utf8 = sql.SQL("convert_to({}::text, 'UTF8')").format(value)
        continues = [
            sql.SQL("WHEN get_byte({b}, {n} - {k}) & 192 <> 128 THEN {k}").format(
                b=utf8, n=limit, k=sql.Literal(k)
            )
            for k in range(3)
        ]
        return sql.SQL(
            "CASE WHEN octet_length({b}) <= {n} THEN {v}::text ELSE convert_from(substring({b} from 1 for "
            "{n} - CASE {continues} ELSE 3 END), 'UTF8') END"
        ).format(b=utf8, n=limit, v=value, continues=sql.SQL(" ").join(continues))

    # -- CDC: values as the decoder gives them (text) ------------------------------------------------------
    def apply_to_text(self, where: str, kind: str, value: str | None) -> str | None:
        """A changed value as DMS would write it in this mode (``where`` names table and column)."""
        if value is None or not kind or self.mode != "limited":
            return value
        if kind == "binary":  # bytea's text form: \\x then two hex digits a byte
            size = (len(value) - 2) // 2 if value.startswith("\\x") else len(value.encode())
            if size <= self.max_bytes:
                return value
            if self.fail_on_truncation:
                raise LobTruncation(self.message(where, size))
            return value[: 2 + 2 * self.max_bytes]
        encoded = value.encode()
        if len(encoded) <= self.max_bytes:
            return value
        if self.fail_on_truncation:
            raise LobTruncation(self.message(where, len(encoded)))
        return encoded[: self.max_bytes].decode("utf-8", errors="ignore")

    def message(self, where: str, size: int) -> str:
        return (
            f"LOB column {where} holds a value of {size} bytes, larger than LobMaxSize "
            f"({self.max_kb} KB), and FailTasksOnLobTruncation is set: the task fails instead of "
            "truncating it"
        )


#: Every LOB copied whole (full LOB mode): what a task without LOB settings gets.
FULL_LOBS = LobSettings("full")
