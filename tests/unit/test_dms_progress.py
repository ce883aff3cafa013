"""poll_task: outcomes, table statistics (paginated, bounded), CDC latency from CloudWatch, failures."""

import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from conftest import REGION, make_secret

from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.dms.instance import ensure_instance
from pg2rds.dms.progress import MAX_TABLES, poll_task
from pg2rds.dms.task import ensure_task_started
from pg2rds.errors import PhaseTimedOut, TaskFailed
from pg2rds.spec import parse_spec
from pg2rds.state import SourceReport, TargetReport
from pg2rds_emulator import moto_dms
from pg2rds_emulator.dms_engine import TableStats

ROLE = "arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access"


@pytest.fixture
def engine(aws) -> moto_dms.FakeEngine:
    engine = moto_dms.FakeEngine(
        tables=[
            TableStats("sales", "orders", full_load_rows=1200),
            TableStats("sales", "customers", full_load_rows=34),
        ]
    )
    moto_dms.install(engine)
    return engine


@pytest.fixture
def dms(engine):
    return boto3.client("dms", region_name=REGION)


def started(dms, migration_type: str = "full-load", **overrides):
    spec = parse_spec(
        {
            "migration_id": "orders",
            "migration_type": migration_type,
            "source": {"host": "src.example", "database": "shop", "secret_arn": make_secret("u", "p")},
            "target": {"host": "tgt.example", "database": "shop", "secret_arn": make_secret("u", "p")},
            "polling": {"initial_seconds": 5, "max_seconds": 60, "backoff": 2},
            **overrides,
        }
    )
    instance = ensure_instance(dms, spec, ensure_instance(dms, spec, None))
    found = {"database": "shop", "server_version": "16", "server_version_num": 160000}
    endpoints = ensure_endpoints(dms, spec, SourceReport(**found), TargetReport(**found), ROLE)
    task = ensure_task_started(dms, spec, instance, endpoints, None)
    task = ensure_task_started(dms, spec, instance, endpoints, task)
    assert task.ready
    return spec, task


def test_full_load_complete_with_table_statistics(dms) -> None:
    spec, task = started(dms)
    progress = poll_task(dms, spec, task, None)
    assert (progress.outcome, progress.ready, progress.wait_seconds) == ("full-load-complete", True, 0)
    assert progress.task_status == "stopped" and "FULL_LOAD_ONLY_FINISHED" in progress.stop_reason
    assert progress.full_load_percent == 100 and progress.tables_loaded == 2
    assert progress.rows_loaded == 1234
    assert {(t.table_name, t.full_load_rows, t.state) for t in progress.tables} == {
        ("orders", 1200, "Table completed"),
        ("customers", 34, "Table completed"),
    }


def test_many_tables_are_summed_over_all_pages_but_kept_bounded(dms, engine) -> None:
    engine.tables = [TableStats("public", f"t{i:03}", full_load_rows=i) for i in range(250)]
    spec, task = started(dms)
    progress = poll_task(dms, spec, task, None)
    assert progress.rows_loaded == sum(range(250))  # 250 rows across three pages of 100
    assert len(progress.tables) == MAX_TABLES and progress.tables_not_shown == 250 - MAX_TABLES
    assert len(progress.model_dump_json()) < 40_000


def test_ten_thousand_tables_keep_the_progress_small(dms, engine) -> None:
    engine.tables = [TableStats(f"schema_{i % 50}", f"table_{i:05}", full_load_rows=i) for i in range(10_000)]
    spec, task = started(dms)
    progress = poll_task(dms, spec, task, None)
    size = len(progress.model_dump_json().encode())
    print(f"progress of 10,000 tables: {size:,} bytes")
    assert progress.rows_loaded == sum(range(10_000))
    assert progress.tables_not_shown == 10_000 - MAX_TABLES
    assert size < 16_000


def test_ten_thousand_errored_tables_and_a_long_dms_message_keep_the_cause_small(dms, engine) -> None:
    engine.tables = [TableStats("public", f"table_{i:05}") for i in range(10_000)]
    spec, task = started(dms, "full-load-and-cdc")
    engine.fail_task("ERROR: " + "x" * 1_000_000, [f"public.table_{i:05}" for i in range(10_000)])
    with pytest.raises(TaskFailed) as raised:
        poll_task(dms, spec, task, None)
    message = str(raised.value)
    print(f"TaskFailed cause for 10,000 errored tables: {len(message.encode()):,} bytes")
    assert "and 998007 more characters" in message  # DMS's message, cut
    assert "public.table_00019, and 9980 more" in message
    assert len(message.encode()) < 10_000


def test_running_task_waits_with_growing_intervals(dms, engine) -> None:
    engine.set_latency(120)
    spec, task = started(dms, "full-load-and-cdc")
    first = poll_task(dms, spec, task, None)
    second = poll_task(dms, spec, task, first)
    third = poll_task(dms, spec, task, second)
    assert [p.outcome for p in (first, second, third)] == ["running"] * 3
    assert [p.wait_seconds for p in (first, second, third)] == [5, 10, 20]
    assert third.started_at == first.started_at and third.polls == 3
    assert third.cdc_latency_source_seconds == 120 and third.cdc_latency_target_seconds == 120


def test_cdc_caught_up_reads_latency_from_cloudwatch(dms, engine) -> None:
    engine.set_latency(3)
    spec, task = started(dms, "full-load-and-cdc", cdc={"max_latency_seconds": 5})
    progress = poll_task(dms, spec, task, None)
    assert (progress.outcome, progress.ready, progress.task_status) == ("cdc-caught-up", True, "running")
    assert progress.cdc_latency_source_seconds == 3
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    metrics = cloudwatch.list_metrics(Namespace="AWS/DMS", MetricName="CDCLatencyTarget")["Metrics"]
    assert {tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"])) for m in metrics} == {
        (("ReplicationInstanceIdentifier", "pg2rds-orders"), ("ReplicationTaskIdentifier", "pg2rds-orders"))
    }


def test_unknown_latency_counts_as_caught_up_once_loaded(dms, engine) -> None:
    engine.set_latency(None)
    spec, task = started(dms, "full-load-and-cdc")
    progress = poll_task(dms, spec, task, None)
    assert progress.outcome == "cdc-caught-up"
    assert progress.cdc_latency_source_seconds is None


def test_failed_task_raises_with_message_reason_and_errored_tables(dms, engine) -> None:
    spec, task = started(dms, "full-load-and-cdc")
    engine.fail_task(
        'ERROR: column "total" is of type numeric but expression is of type text', ["sales.orders"]
    )
    with pytest.raises(TaskFailed) as raised:
        poll_task(dms, spec, task, None)
    message = str(raised.value)
    assert 'column "total" is of type numeric' in message
    assert "Stop Reason FATAL_ERROR" in message
    assert "sales.orders" in message and "sales.customers" not in message


def test_a_task_stopped_by_someone_else_is_a_failure(dms) -> None:
    spec, task = started(dms, "full-load-and-cdc")
    dms.stop_replication_task(ReplicationTaskArn=task.arn)
    with pytest.raises(TaskFailed, match="'stopped' \\(Stop Reason NORMAL\\)"):
        poll_task(dms, spec, task, None)


def test_times_out_after_task_timeout_hours(dms, engine) -> None:
    engine.set_latency(600)
    spec, task = started(dms, "full-load-and-cdc", polling={"task_timeout_hours": 1})
    first = poll_task(dms, spec, task, None)
    long_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    with pytest.raises(PhaseTimedOut, match="task_timeout_hours"):
        poll_task(dms, spec, task, first.model_copy(update={"started_at": long_ago}))


def test_after_the_decision_the_waits_start_short_again(dms, engine) -> None:
    """The application is stopped once the operator decides: the polls that wait for the slot and the task's
    stop must not wait the migration's backed-off cap (600 s by default) — that would be downtime."""
    spec, task = started(dms, "full-load-and-cdc")
    progress = None
    for _ in range(8):  # weeks of replication, compressed: the backoff is at its cap
        progress = poll_task(dms, spec, task, progress)
    assert progress.outcome == "cdc-caught-up" and progress.wait_seconds == 60

    def behind() -> tuple[str, bool]:
        return "0/3000000", False  # the slot has not confirmed the decision's position yet

    after = [poll_task(dms, spec, task, progress, cutover_position=behind)]
    after.append(poll_task(dms, spec, task, after[-1], cutover_position=behind))
    after.append(poll_task(dms, spec, task, after[-1], cutover_position=behind))
    assert [p.wait_seconds for p in after] == [2, 4, 8]
    assert [p.cutover_polls for p in after] == [1, 2, 3]
    assert after[-1].polls == 11  # the migration's count (history budget) still grows


def caught_up_cdc(dms, **overrides):
    spec, task = started(dms, "full-load-and-cdc", cdc={"revalidate_minutes": 60}, **overrides)
    return spec, task


def test_verification_dms_withholds_the_cutover_while_a_table_differs_and_names_it(dms, engine) -> None:
    spec, task = caught_up_cdc(dms)
    engine.mismatch("sales.orders", ["7", "9"])
    first = poll_task(dms, spec, task, None)
    assert first.outcome == "running"
    assert "sales.orders: Mismatched records, 2 failed records" in first.withheld
    assert first.validation.difference_count == 1 and first.validation.failed_records == 2
    assert first.validation.notify  # the topic hears of it, once
    assert engine.reloads == [(task.arn, "sales.orders", "validate-only")]

    second = poll_task(dms, spec, task, first)
    assert second.outcome == "running" and not second.validation.notify
    assert len(engine.reloads) == 1  # at most one re-validation per spec.cdc.revalidate_minutes

    engine.fix_target("sales.orders")
    assert poll_task(dms, spec, task, second).outcome == "running"  # DMS does not know yet
    assert len(engine.reloads) == 1


def test_the_topic_hears_of_a_differing_table_once_however_often_dms_revalidates_it(dms, engine) -> None:
    """Each re-validation changes the table's state and counts; only a table newly different, or
    different again after it was validated, is notified."""
    spec, task = started(dms, "full-load-and-cdc", cdc={"revalidate_minutes": 1e-6})
    engine.mismatch("sales.orders", ["7", "9"])
    polls = [poll_task(dms, spec, task, None)]
    engine.mismatch("sales.orders", ["7"])  # re-validated: one record still differs
    polls.append(poll_task(dms, spec, task, polls[-1]))
    assert polls[-1].validation.failed_records == 1 and len(engine.reloads) == 2
    engine.mismatch("sales.customers", ["3"])
    polls.append(poll_task(dms, spec, task, polls[-1]))
    engine.fix_target("sales.orders")
    engine.fix_target("sales.customers")
    polls.append(poll_task(dms, spec, task, polls[-1]))  # re-validated against the fixed target
    polls.append(poll_task(dms, spec, task, polls[-1]))
    engine.mismatch("sales.orders", ["8"])
    polls.append(poll_task(dms, spec, task, polls[-1]))
    notified = [p.validation.notify.split(": ", 1)[0] for p in polls]
    assert notified == [
        "DMS's validation found 1 table(s) different",
        "",
        "DMS's validation found 2 table(s) different",
        "",
        "",
        "DMS's validation found 1 table(s) different",
    ], [p.validation.notify for p in polls]


def test_a_difference_seen_while_offered_is_revalidated_by_the_poll_loop_that_remembers_it(
    dms, engine
) -> None:
    """The watcher beside the cutover wait withdraws the offer when a table differs, and the state machine
    keeps only its error: the poll after the withdrawal starts from the offer's record. A re-validation the
    watcher requested was forgotten, and DMS's re-validating table (failed records reset, "Pending
    records") was then taken for merely pending: the cutover was offered again, the target still
    different. The poll loop requests it instead, and keeps withholding the cutover while DMS re-validates."""
    spec, task = caught_up_cdc(dms)
    offered = poll_task(dms, spec, task, None)
    assert offered.outcome == "cdc-caught-up"
    engine.mismatch("sales.orders", ["7", "9"])
    watcher = poll_task(dms, spec, task, offered)
    assert watcher.outcome == "running" and "sales.orders: Mismatched records" in watcher.withheld
    assert engine.reloads == []  # its record is dropped with the offer: nothing to remember it by

    after_withdrawal = poll_task(dms, spec, task, offered)  # what the state machine passes on
    assert after_withdrawal.outcome == "running"
    asked = poll_task(dms, spec, task, after_withdrawal)
    assert engine.reloads == [(task.arn, "sales.orders", "validate-only")]

    del engine.mismatches["sales.orders"]  # DMS re-validates: failed records reset while the pass runs
    engine.set_validation("sales.orders", "Pending records", pending=2)
    revalidating = poll_task(dms, spec, task, asked)
    assert revalidating.outcome == "running"
    assert revalidating.withheld == (  # named as differing, not "0 table(s) different"
        "DMS's validation found 1 table(s) different: sales.orders: Pending records, re-validated at "
        "pg2rds's request after DMS found it different"
    )
    engine.set_validation("sales.orders", "Validated")  # the pass found the target fixed
    assert poll_task(dms, spec, task, revalidating).outcome == "cdc-caught-up"


def test_a_fixed_target_is_revalidated_and_the_cutover_offered(dms, engine) -> None:
    spec, task = started(dms, "full-load-and-cdc", cdc={"revalidate_minutes": 0.0001})
    engine.mismatch("sales.orders", ["7"])
    progress = poll_task(dms, spec, task, None)
    assert progress.outcome == "running"
    engine.fix_target("sales.orders")
    time.sleep(0.1)
    progress = poll_task(dms, spec, task, progress)  # asks DMS to re-validate the fixed table
    assert engine.reloads[-1] == (task.arn, "sales.orders", "validate-only")
    progress = poll_task(dms, spec, task, progress)
    assert progress.outcome == "cdc-caught-up", progress.withheld
    assert progress.validation.states == {"Validated": 2}
    assert progress.withheld == ""


def test_the_expected_downtime_names_the_tables_pg2rds_will_checksum(dms, engine) -> None:
    spec, task = started(dms, "full-load-and-cdc")
    engine.set_validation("sales.customers", "No primary key")
    progress = poll_task(dms, spec, task, None)
    assert progress.outcome == "cdc-caught-up"
    assert progress.validation.states == {"No primary key": 1, "Validated": 1}
    assert progress.validation.unvalidated == ["sales.customers (~34 rows)"]
    assert "DMS validated 1 of the 1 tables it can validate" in progress.validation.summary
    assert "pg2rds checksums 1 tables DMS cannot validate (~34 rows): sales.customers" in (
        progress.validation.summary
    )


def test_pending_validation_withholds_the_cutover_and_says_so(dms, engine) -> None:
    spec, task = started(dms, "full-load-and-cdc", cdc={"max_pending_validation_records": 100})
    engine.set_validation("sales.orders", "Pending records", pending=120)
    progress = poll_task(dms, spec, task, None)
    assert progress.outcome == "running"
    assert progress.withheld == (
        "DMS is still validating 1 table(s) (120 records pending, at most 100 by "
        "spec.cdc.max_pending_validation_records)"
    )
    engine.set_validation("sales.orders", "Pending records", pending=90)  # validated after the decision
    progress = poll_task(dms, spec, task, progress)
    assert progress.outcome == "cdc-caught-up"
    assert "90 records pending validation" in progress.validation.summary
    engine.set_validation("sales.orders", "Pending validation")  # its pass has not started: size unknown
    assert poll_task(dms, spec, task, None).outcome == "running"


def test_reload_tables_is_refused_unless_the_task_runs_and_validates(dms, engine) -> None:
    spec, task = started(dms, "full-load-and-cdc", verification="checksums")
    with pytest.raises(dms.exceptions.InvalidResourceStateFault, match="does not validate"):
        dms.reload_tables(
            ReplicationTaskArn=task.arn,
            TablesToReload=[{"SchemaName": "sales", "TableName": "orders"}],
            ReloadOption="validate-only",
        )
    dms.stop_replication_task(ReplicationTaskArn=task.arn)
    with pytest.raises(dms.exceptions.InvalidResourceStateFault, match="only while it runs"):
        dms.reload_tables(
            ReplicationTaskArn=task.arn, TablesToReload=[{"SchemaName": "sales", "TableName": "orders"}]
        )


def test_after_the_decision_the_waits_are_short_whatever_the_spec_polls_at(dms, engine) -> None:
    """With the default polling (30 s, x1.5, 600 s) the decision's polls wait 2 s, back off to 30 s."""
    spec, task = started(dms, "full-load-and-cdc", polling={"initial_seconds": 30, "max_seconds": 600})
    progress = poll_task(dms, spec, task, None)
    waits = []
    for _ in range(8):
        progress = poll_task(dms, spec, task, progress, cutover_position=lambda: ("0/3000000", False))
        waits.append(progress.wait_seconds)
    assert waits == [2, 3, 4, 6, 10, 15, 22, 30]


def test_after_the_decision_the_task_stops_only_on_validation_read_after_the_slot(dms, engine) -> None:
    """A last change applied and confirmed to the slot while the poll reads is pending validation in the
    task's statistics: the poll must not pair that confirmation with statistics read before it (the task
    was stopped before DMS had validated the change)."""
    spec, task = caught_up_cdc(dms)
    progress = poll_task(dms, spec, task, None)
    assert progress.outcome == "cdc-caught-up"

    def applied_meanwhile() -> tuple[str, bool]:
        engine.set_validation("sales.orders", "Pending records", pending=1)  # the change, applied now
        return "0/3000000", True

    progress = poll_task(dms, spec, task, progress, cutover_position=applied_meanwhile)
    assert progress.task_status == "running"
    assert "1 records pending validation" in progress.validation.summary

    engine.set_validation("sales.orders", "Validated")
    progress = poll_task(dms, spec, task, progress, cutover_position=lambda: ("0/3000000", True))
    assert progress.task_status in ("stopping", "stopped")
