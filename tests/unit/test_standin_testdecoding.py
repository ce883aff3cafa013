"""The stand-in's reading of test_decoding text: quoting, types, values, old keys, and the load line.

The lines are test_decoding's output for the statements named in each test (PostgreSQL 15); the
integration tests stream the same from a real slot.
"""

from datetime import UTC, datetime

import pytest

from pg2rds.postgres.selection import TableName
from pg2rds_emulator.standin_changes import UNCHANGED, Begin, Column, Commit, Delete, Insert, Relation, Update
from pg2rds_emulator.standin_testdecoding import (
    DecodeError,
    LoadSnapshot,
    RowChange,
    TableShape,
    Translator,
    TruncateChange,
    TxBegin,
    TxCommit,
    UnknownColumns,
    parse,
)


def test_begin_and_commit_carry_the_transaction_and_its_time() -> None:
    assert parse("BEGIN 745") == TxBegin(745)
    assert parse("COMMIT 745 (at 2026-11-28 07:40:01.123456+00)") == TxCommit(
        745, datetime(2026, 11, 28, 7, 40, 1, 123456, tzinfo=UTC)
    )
    assert parse("COMMIT 9") == TxCommit(9, None)


def test_quoted_names_types_and_values() -> None:
    line = (
        'table "My Schema"."Order ""Items""": INSERT: id[integer]:1 "Größe"[character varying]:\'it\'\'s '
        'XL\' tags[text[]]:\'{a,"b c"}\' mood["My Schema"."we]:ird"]:\'ok\' price[numeric]:-10.50 '
        "ratio[double precision]:NaN flag[boolean]:false bits[bit varying]:B'0101' note[text]:null "
        "empty[text]:''"
    )
    change = parse(line)
    assert change == RowChange(
        "INSERT",
        TableName("My Schema", 'Order "Items"'),
        None,
        {
            "id": "1",
            "Größe": "it's XL",
            "tags": '{a,"b c"}',
            "mood": "ok",
            "price": "-10.50",
            "ratio": "NaN",
            "flag": "false",
            "bits": "0101",
            "note": None,
            "empty": "",
        },
    )


def test_update_with_old_key_and_unchanged_toast() -> None:
    line = (
        "table public.accounts: UPDATE: old-key: id[integer]:7 new-tuple: id[integer]:8 "
        "blob[bytea]:unchanged-toast-datum owner[text]:'new-tuple: no'"
    )
    assert parse(line) == RowChange(
        "UPDATE",
        TableName("public", "accounts"),
        {"id": "7"},
        {"id": "8", "blob": UNCHANGED, "owner": "new-tuple: no"},
    )
    plain = parse("table public.t: UPDATE: id[integer]:1 v[text]:'x'")
    assert plain == RowChange("UPDATE", TableName("public", "t"), None, {"id": "1", "v": "x"})


def test_delete_and_the_tables_without_identity() -> None:
    assert parse("table public.t: DELETE: id[integer]:3") == RowChange(
        "DELETE", TableName("public", "t"), {"id": "3"}, None
    )
    assert parse("table public.t: DELETE: (no-tuple-data)") == RowChange(
        "DELETE", TableName("public", "t"), None, None
    )


def test_truncate_of_several_tables() -> None:
    assert parse('table public.a, s."B": TRUNCATE: restart_seqs cascade') == TruncateChange(
        [TableName("public", "a"), TableName("s", "B")], cascade=True, restart_identity=True
    )
    assert parse("table public.a: TRUNCATE: (no-flags)") == TruncateChange(
        [TableName("public", "a")], cascade=False, restart_identity=False
    )


def test_garbage_is_an_error_not_a_guess() -> None:
    with pytest.raises(DecodeError):
        parse("table public.t: INSERT: id[integer]:'unterminated")
    with pytest.raises(DecodeError):
        parse("table public.t: MERGE: id[integer]:1")


def test_a_load_snapshot_tells_which_transactions_it_saw() -> None:
    snapshot = LoadSnapshot.parse("100:105:101,103")
    assert [xid for xid in range(98, 108) if snapshot.saw(xid)] == [98, 99, 100, 102, 104]
    # ids carry an epoch in the snapshot, not in the stream: 2^32 + 5 is printed as 5
    wrapped = LoadSnapshot.parse(f"{2**32 - 3}:{2**32 + 10}:{2**32 + 5}")
    assert wrapped.saw(2**32 - 4) and wrapped.saw(2) and not wrapped.saw(5) and not wrapped.saw(10)


def shape(identity: str = "d", generated: frozenset[str] = frozenset()) -> TableShape:
    key = identity in ("d", "f")
    columns = [Column("id", 23, -1, key), Column("v", 25, -1, identity == "f")]
    return TableShape(Relation(42, "public", "t", identity, columns), generated)


def test_changes_become_rows_in_column_order_and_what_the_load_saw_is_dropped() -> None:
    table = TableName("public", "t")
    translator = Translator({table: shape(generated=frozenset({"g"}))}, {table: LoadSnapshot.parse("10:12:")})
    assert translator.messages(TxBegin(11), 0) == [Begin(11)]
    insert = RowChange("INSERT", table, None, {"v": "x", "id": "1", "g": "2"})
    assert translator.messages(insert, 0) == []  # transaction 11 is in the table's load
    translator.messages(TxBegin(12), 0)
    relation, row = translator.messages(insert, 0)
    assert relation == shape().relation and row == Insert(42, ["1", "x"])
    assert translator.messages(RowChange("INSERT", TableName("public", "other"), None, {}), 0) == []
    update = RowChange("UPDATE", table, {"id": "1"}, {"id": "2", "v": UNCHANGED})
    assert translator.messages(update, 0) == [Update(42, "K", ["1", None], ["2", UNCHANGED])]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert translator.messages(TxCommit(12, at), 99) == [Commit(12, 99, at)]
    with pytest.raises(UnknownColumns, match="'public'.'t'.*added"):
        translator.messages(RowChange("INSERT", table, None, {"id": "3", "added": "1"}), 0)


def test_full_identity_old_rows_omit_nulls_and_tables_without_identity_lose_updates() -> None:
    table = TableName("public", "t")
    full = Translator({table: shape("f")}, {})
    full.messages(TxBegin(1), 0)
    full.messages(RowChange("INSERT", table, None, {"id": "1"}), 0)
    assert full.messages(RowChange("DELETE", table, {"id": "1"}, None), 0) == [Delete(42, "O", ["1", None])]
    nothing = Translator({table: shape("n")}, {})
    nothing.messages(TxBegin(1), 0)
    assert nothing.messages(RowChange("UPDATE", table, None, {"id": "1", "v": "y"}), 0) == []
    assert nothing.messages(RowChange("DELETE", table, None, None), 0) == []
    assert nothing.ignored == 2


def test_truncate_is_not_captured_during_cdc_like_dms() -> None:
    table = TableName("public", "t")
    translator = Translator({table: shape()}, {})
    translator.messages(TxBegin(1), 0)
    assert translator.messages(TruncateChange([table], cascade=True, restart_identity=False), 0) == []
    assert translator.ignored == 1


def test_an_update_that_moves_the_primary_key_is_ignored_like_dms() -> None:
    """ "AWS DMS ignores an attempt to update a primary key segment" (User Guide, PostgreSQL as a source,
    limitations): the target keeps the row under its old key. The stand-in applied it, so a local run
    reported equal tables where DMS would have left them different."""
    table = TableName("public", "t")
    keyed = Translator({table: TableShape(shape().relation, primary_key=frozenset({"id"}))}, {})
    keyed.messages(TxBegin(1), 0)
    moved = keyed.messages(RowChange("UPDATE", table, {"id": "1"}, {"id": "2", "v": "x"}), 0)[-1]
    assert moved == Update(42, "K", ["1", None], ["2", "x"], key_moved=True)  # validated, not applied
    assert keyed.ignored == 1

    full = Translator({table: TableShape(shape("f").relation, primary_key=frozenset({"id"}))}, {})
    full.messages(TxBegin(1), 0)
    kept = RowChange("UPDATE", table, {"id": "1", "v": "a"}, {"id": "1", "v": "b"})
    assert full.messages(kept, 0)[-1] == Update(42, "O", ["1", "a"], ["1", "b"])
    moved_full = full.messages(RowChange("UPDATE", table, {"id": "1", "v": "b"}, {"id": "3", "v": "b"}), 0)
    assert moved_full[-1].key_moved  # type: ignore[union-attr]
    assert full.ignored == 1

    # the old tuple of another unique index (REPLICA IDENTITY USING INDEX) lacks the key's columns: applied
    other = Relation(42, "public", "t", "i", [Column("id", 23, -1, False), Column("v", 25, -1, True)])
    by_index = Translator({table: TableShape(other, primary_key=frozenset({"id"}))}, {})
    by_index.messages(TxBegin(1), 0)
    moved_index = RowChange("UPDATE", table, {"v": "a"}, {"id": "1", "v": "c"})
    assert by_index.messages(moved_index, 0)[-1] == Update(42, "K", [None, "a"], ["1", "c"])
    assert by_index.ignored == 0
