"""verification dms through the real state machine: DMS's data validation decides when the cutover is
offered, the difference is named when it is not, the last changes are validated before the task stops,
and pg2rds checksums only what DMS did not validate.

DMS is moto's with the FakeEngine scripting validation (statistics, failures table rows on the real target,
ReloadTables); PostgreSQL is real. The end-to-end test with the stand-in, which validates for real, is in
test_validation_standin.py.
"""

import json
from collections.abc import Iterator

import pytest
from conftest import Database, spec_for
from judge import account_dms_resources, chunks_handed_to_the_map
from test_cdc import (
    CDC_POLLING,
    finish,
    notifications,
    polls_after_decision,
    start,
    subscribe,
    wait_for_state,
    wait_until,
)

from pg2rds import phases
from pg2rds_cli import main as cli
from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_emulator.dms_engine import TableStats
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine


@pytest.fixture
def two_tables(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    """``t`` has a primary key (DMS validates it), ``log`` has none (pg2rds checksums it)."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        db.execute("CREATE TABLE log (line text)")
    return source_db, target_db


@pytest.fixture
def fake_aws() -> Iterator[tuple[EmbeddedAws, FakeEngine]]:
    engine = FakeEngine(
        tables=[TableStats("public", "t", full_load_rows=3), TableStats("public", "log", full_load_rows=2)]
    )
    engine.set_validation("public.log", "No primary key")
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        yield aws, engine


def cdc_spec(source: Database, target: Database, migration_id: str, **overrides) -> dict:
    return spec_for(
        source, target, migration_id=migration_id, migration_type="full-load-and-cdc", polling=CDC_POLLING,
        **overrides,
    )  # fmt: skip


def chunks_verified(aws: EmbeddedAws, arn: str) -> list[str]:
    """The tables whose rows the Map state's chunks compared, from the execution history."""
    return [
        f"{chunk['schema_name']}.{chunk['table_name']}"
        for chunk in chunks_handed_to_the_map(aws.client("stepfunctions"), arn)
        if chunk["compare"]  # rows compared (a chunk may also only check foreign keys)
    ]


def test_differences_withhold_the_cutover_are_named_and_a_fixed_target_proceeds(
    fake_aws, two_tables, capsys
) -> None:
    aws, engine = fake_aws
    source, target = two_tables
    mailbox = subscribe(aws)
    engine.mismatch("public.t", ["3", "5"])  # DMS's validation finds two rows of t different
    arn = start(aws, cdc_spec(source, target, "differs", cdc={"revalidate_minutes": 0.002}))

    view = wait_until(aws, arn, lambda v: "Report the differences" in v.states)
    assert WAITING_STATE not in view.states, "the cutover was offered while the target differs"
    progress = view.record["progress"]
    assert progress["outcome"] == "running"
    assert progress["validation"]["differences"] == [
        "public.t: Mismatched records, 2 failed records: RECORD_DIFF 5; RECORD_DIFF 3"
    ] or progress["validation"]["differences"] == [
        "public.t: Mismatched records, 2 failed records: RECORD_DIFF 3; RECORD_DIFF 5"
    ]
    [(subject, message)] = notifications(aws, mailbox, expect=1)
    assert subject == "pg2rds: the target differs, cutover withheld"
    assert "public.t: Mismatched records, 2 failed records: RECORD_DIFF" in message["differences"]
    assert "3" in message["differences"] and "5" in message["differences"]

    capsys.readouterr()
    assert cli.main(["status", arn]) == 0  # running: the panel, on stderr
    shown = capsys.readouterr().err
    assert "cutover withheld" in shown and "public.t" in shown and "RECORD_DIFF" in shown

    revalidated = len(engine.reloads)
    assert revalidated >= 1 and engine.reloads[0][1:] == ("public.t", "validate-only")
    engine.fix_target("public.t")  # the operator fixes the rows; pg2rds's next re-validation sees it
    view = wait_for_state(aws, arn, WAITING_STATE)
    assert view.current_state == WAITING_STATE, (view.status, view.cause)
    assert len(engine.reloads) > revalidated
    subjects = [(subject, message) for subject, message in notifications(aws, mailbox, expect=1)]
    assert [subject for subject, _ in subjects] == ["pg2rds: ready for cutover"]
    offer = subjects[0][1]
    assert "DMS validated 1 of the 1 tables it can validate" in offer["expected_downtime"]
    assert "public.log (~2 rows)" in offer["expected_downtime"]
    assert offer["verification_states"] == {"No primary key": 1, "Validated": 1}

    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert account_dms_resources(aws) == []


def test_a_change_just_before_the_decision_is_validated_before_the_task_stops(fake_aws, two_tables) -> None:
    aws, engine = fake_aws
    source, target = two_tables
    arn = start(aws, cdc_spec(source, target, "pending"))
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    # the application's last write: applied, but not yet validated by DMS
    engine.set_validation("public.t", "Pending records", pending=1)
    send_decision(aws.client("stepfunctions"), arn)

    view = polls_after_decision(aws, arn, 3)
    assert not view.done, (view.status, view.cause)
    assert view.record["progress"]["task_status"] == "running"
    assert aws.client("dms").describe_replication_tasks()["ReplicationTasks"][0]["Status"] == "running"

    engine.set_validation("public.t", "Validated")
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert view.output["progress"]["outcome"] == "stopped"


def test_a_difference_found_after_the_decision_fails_naming_table_and_keys(fake_aws, two_tables) -> None:
    aws, engine = fake_aws
    source, target = two_tables
    arn = start(aws, cdc_spec(source, target, "late"))
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    engine.hold_slot()  # the last changes are not applied yet: the task keeps running after the decision
    source.execute("INSERT INTO t VALUES (42, 'last')")
    send_decision(aws.client("stepfunctions"), arn)
    assert not polls_after_decision(aws, arn, 1).done
    engine.mismatch("public.t", ["42"], "MISSING_TARGET")  # validating them, DMS finds a row missing
    engine.hold_slot(False)
    view = finish(aws, arn)
    assert view.status == "FAILED" and view.error == "VerificationFailed", (view.error, view.cause)
    assert "public.t: Mismatched records, 1 failed records: MISSING_TARGET 42" in view.cause
    assert account_dms_resources(aws) == []


def test_after_the_decision_pg2rds_checksums_only_the_tables_dms_did_not_validate(
    fake_aws, two_tables
) -> None:
    aws, _ = fake_aws
    source, target = two_tables
    for db in (source, target):
        db.execute("INSERT INTO log VALUES ('a'), ('b')")
    # the fake engine copies nothing (nor truncates): the rows are on both sides already, as if loaded
    spec = cdc_spec(
        source,
        target,
        "onlylog",
        verification_chunk_rows=1,
        task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
    )
    arn = start(aws, spec)
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert chunks_verified(aws, arn) == ["public.log"]
    verification = view.output["verification"]
    assert verification["tables_validated_by_dms"] == 1
    assert view.output["finish"]["verification"] == "dms"


def test_a_table_dms_did_not_validate_that_differs_fails_the_migration(fake_aws, two_tables) -> None:
    aws, _ = fake_aws
    source, target = two_tables
    source.execute("INSERT INTO log VALUES ('a')")
    arn = start(aws, cdc_spec(source, target, "logdiff"))
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)
    assert view.status == "FAILED" and view.error == "VerificationFailed", (view.error, view.cause)
    assert "public.log" in view.cause


def test_full_load_keeps_its_own_checksums_of_every_table(fake_aws, two_tables) -> None:
    aws, engine = fake_aws
    source, target = two_tables
    arn = start(aws, spec_for(source, target, migration_id="fullload", verification_chunk_rows=1000))
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert "ValidationSettings" not in json.loads(engine.started[0].settings)
    assert sorted(chunks_verified(aws, arn)) == ["public.log", "public.t"]
    assert view.output["verification"]["tables_validated_by_dms"] == 0
    assert view.output["finish"]["verification"] == "checksums"
    assert view.output["progress"]["validation"]["enabled"] is False


def test_checksums_with_cdc_rechecks_every_table_after_the_decision(fake_aws, two_tables) -> None:
    aws, engine = fake_aws
    source, target = two_tables
    arn = start(aws, cdc_spec(source, target, "cdcsums", verification="checksums"))
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert "ValidationSettings" not in json.loads(engine.started[0].settings)
    assert sorted(chunks_verified(aws, arn)) == ["public.log", "public.t"]  # every table, after the decision


def test_a_keyless_table_is_verified_in_block_ranges_across_rounds(fake_aws, two_tables, monkeypatch) -> None:
    """``log`` has no key: its block ranges go through the Map 3 a round, their totals travel in the state
    from round to round, and a difference fails the migration naming the table."""
    aws, _ = fake_aws
    source, target = two_tables
    monkeypatch.setattr(phases, "MAX_CHUNKS_PER_ROUND", 3)
    for db, order in ((source, "g"), (target, "-g")):  # the same rows, in other blocks on the target
        db.execute(
            f"INSERT INTO log SELECT repeat('x', 200) || g FROM generate_series(1, 1000) g ORDER BY {order}"
        )
        db.execute("ANALYZE log")
    # the fake engine copies nothing (nor truncates): the rows are on both sides already, as if loaded
    prep = {"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"}
    spec = spec_for(source, target, migration_id="logblocks", verification_chunk_rows=200, task=prep)
    view = finish(aws, start(aws, spec))
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    ranges = [
        c for c in chunks_handed_to_the_map(aws.client("stepfunctions"), view.arn) if c["table_name"] == "log"
    ]
    assert len(ranges) >= 4 and ranges[-1]["end_block"] is None, ranges
    assert view.output["verification"]["rows_checked"] == 1000

    target.execute("UPDATE log SET line = 'changed' WHERE line = repeat('x', 200) || 500")
    view = finish(aws, start(aws, {**spec, "migration_id": "logblocks2"}))
    assert view.status == "FAILED" and view.error == "VerificationFailed", (view.error, view.cause)
    assert (
        f"public.log (whole table, {len(ranges)} block ranges): same 1000 rows, different content"
        in view.cause
    )
