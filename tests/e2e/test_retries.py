"""Transient failures through the real state machine: the ASL's Retry rules, the handlers' named errors and
the cleanup, with AWS mocked (moto made to throttle) and PostgreSQL real (a source that stops accepting
connections). Each test asserts what the operator sees: the execution's status, error and cause, the
retries in its history, and what is left on the source."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Database, spec_for
from judge import account_dms_resources
from moto.core.exceptions import JsonRESTError
from moto.secretsmanager.responses import SecretsManagerResponse
from psycopg2 import sql
from test_cdc import wait_until

from pg2rds import aws as pg2rds_aws
from pg2rds import secrets
from pg2rds.naming import ResourceNames
from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_cli.executions import ExecutionView, history, watch
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "migration.asl.json"
CDC_POLLING = {"initial_seconds": 2, "max_seconds": 4}


def retry_rule(state: str, error: str) -> dict:
    """The Retry rule of ``state`` that matches ``error`` (the README's table says the same: a unit test
    keeps them equal)."""
    rules = json.loads(ASL.read_text())["States"][state]["Retry"]
    return next(rule for rule in rules if error in rule["ErrorEquals"])


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    """Each test starts like a new Lambda container: new boto3 clients (so botocore's retry quota is full
    and each throttled call is tried MAX_ATTEMPTS times) and an empty secret cache."""
    pg2rds_aws.client.cache_clear()
    secrets._provider.cache_clear()
    yield
    pg2rds_aws.client.cache_clear()
    secrets._provider.cache_clear()


@pytest.fixture
def fast_aws() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(FakeEngine(), time_scale=0.01) as aws:
        yield aws


@pytest.fixture
def one_table(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    return source_db, target_db


class SecretsManagerThrottles:
    """Secrets Manager answers GetSecretValue with ThrottlingException (as AWS does above its request
    rate) for the next ``calls`` requests, or for ever when ``calls`` is None."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, calls: int | None) -> None:
        self.remaining = calls
        self.throttled = 0
        original = SecretsManagerResponse.get_secret_value

        def get_secret_value(response: SecretsManagerResponse) -> str:
            if self.remaining is None or self.remaining > 0:
                if self.remaining is not None:
                    self.remaining -= 1
                self.throttled += 1
                raise JsonRESTError("ThrottlingException", "Rate exceeded")
            return original(response)

        monkeypatch.setattr(SecretsManagerResponse, "get_secret_value", get_secret_value)


def start(aws: EmbeddedAws, spec: dict) -> str:
    sfn = aws.client("stepfunctions")
    return sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(spec))["executionArn"]


def finish(aws: EmbeddedAws, arn: str) -> ExecutionView:
    return watch(
        aws.client("stepfunctions"), arn, lambda view: None, interval_seconds=0.1, timeout_seconds=240
    )


def failures(aws: EmbeddedAws, arn: str) -> list[tuple[str, str, str]]:
    """(state, error, cause) of every failed function invocation in the history, retried or not."""
    found, state = [], ""
    for event in history(aws.client("stepfunctions"), arn):
        if event["type"].endswith("StateEntered"):
            state = event["stateEnteredEventDetails"]["name"]
        elif event["type"] == "LambdaFunctionFailed":
            details = event["lambdaFunctionFailedEventDetails"]
            found.append((state, details.get("error", ""), details.get("cause", "")))
    return found


def history_text(aws: EmbeddedAws, arn: str) -> str:
    return json.dumps(history(aws.client("stepfunctions"), arn), default=str)


# -- Secrets Manager throttling ---------------------------------------------------------------------------


def test_a_throttled_secret_read_is_retried_and_the_migration_succeeds(
    fast_aws, one_table, monkeypatch
) -> None:
    """Throttled through two invocations of Validate source (each one after botocore's own attempts), then
    fine: the state machine retries AwsThrottled and the migration ends as if nothing happened."""
    source, target = one_table
    throttle = SecretsManagerThrottles(monkeypatch, calls=2 * pg2rds_aws.MAX_ATTEMPTS)
    view = finish(fast_aws, start(fast_aws, spec_for(source, target, migration_id="throttled-twice")))

    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert throttle.throttled == 2 * pg2rds_aws.MAX_ATTEMPTS
    failed = failures(fast_aws, view.arn)
    assert [(state, error) for state, error, _ in failed] == [("Validate source", "AwsThrottled")] * 2
    assert all("ThrottlingException" in cause for _, _, cause in failed)
    assert view.retries["Validate source"] == 2  # what `pg2rds watch` and the graph show
    assert account_dms_resources(fast_aws) == []


def test_a_secret_throttled_for_ever_fails_with_awsthrottled_after_the_retries(
    fast_aws, one_table, monkeypatch
) -> None:
    source, target = one_table
    SecretsManagerThrottles(monkeypatch, calls=None)
    view = finish(fast_aws, start(fast_aws, spec_for(source, target, migration_id="throttled")))

    assert view.status == "FAILED" and view.error == "AwsThrottled", (view.error, view.cause)
    assert "ThrottlingException" in view.cause and "GetSecretValue" in view.cause
    attempts = 1 + retry_rule("Validate source", "AwsThrottled")["MaxAttempts"]
    validate = [error for state, error, _ in failures(fast_aws, view.arn) if state == "Validate source"]
    assert validate == ["AwsThrottled"] * attempts
    # the cleanup ran (and, still throttled, was retried too before giving up, saying so)
    cleanup = [error for state, error, _ in failures(fast_aws, view.arn) if state == "Clean up after failure"]
    assert cleanup == ["AwsThrottled"] * (
        1 + retry_rule("Clean up after failure", "AwsThrottled")["MaxAttempts"]
    )
    assert view.states[-1] == "Migration failed without full cleanup"
    assert "cleanup also failed with AwsThrottled" in view.cause
    # both messages as the functions wrote them: one line, no Lambda runtime JSON or stack trace
    assert "errorMessage" not in view.cause and "stackTrace" not in view.cause and "\n" not in view.cause
    assert view.cause.startswith("AWS throttled GetSecretValue (ThrottlingException)"), view.cause
    assert "Create replication instance" not in view.states and account_dms_resources(fast_aws) == []


# -- the source unreachable at the cutover ----------------------------------------------------------------


def allow_connections(db: Database, allowed: bool) -> None:
    """Whether the source database accepts new connections: a server that is down or refusing, as the
    functions see it, without touching the other tests' databases on the shared cluster."""
    db.cluster.execute(
        "postgres",
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(db.name), sql.Literal(allowed)
        ),
    )


@pytest.fixture
def refusing_source(one_table) -> Iterator[tuple[Database, Database]]:
    source, target = one_table
    yield source, target
    allow_connections(source, True)  # the fixture drops the database (and its slot) afterwards


def decide_while_the_source_refuses(aws: EmbeddedAws, source: Database, target: Database, name: str) -> str:
    """A CDC migration offered the cutover; the source stops accepting connections, then the operator
    decides: the first poll after the decision must read the source's WAL position."""
    spec = spec_for(
        source, target, migration_id=name, migration_type="full-load-and-cdc", polling=CDC_POLLING
    )
    arn = start(aws, spec)
    assert wait_until(aws, arn, lambda v: v.current_state == WAITING_STATE, interval=0.05).current_state == (
        WAITING_STATE
    )
    allow_connections(source, False)
    send_decision(aws.client("stepfunctions"), arn)
    return arn


def unreachable_at_poll(aws: EmbeddedAws, arn: str) -> list[str]:
    return [
        cause
        for state, error, cause in failures(aws, arn)
        if state == "Check task progress" and error == "SourceUnreachable"
    ]


def test_the_source_unreachable_for_a_while_at_the_cutover_is_ridden_out(refusing_source) -> None:
    """The clock runs at 0.2 here, so the first retry comes a second after the failure (5 s scaled): time
    for the test to see the failure and let connections in again, as a restarted source would."""
    source, target = refusing_source
    with EmbeddedAws(FakeEngine(), time_scale=0.2) as aws:
        arn = decide_while_the_source_refuses(aws, source, target, "refused-a-while")
        wait_until(aws, arn, lambda _: bool(unreachable_at_poll(aws, arn)), interval=0.05)
        allow_connections(source, True)
        view = finish(aws, arn)

        assert view.status == "SUCCEEDED", (view.error, view.cause)
        causes = unreachable_at_poll(aws, arn)
        assert causes and len(causes) <= retry_rule("Check task progress", "SourceUnreachable")["MaxAttempts"]
        assert "is not currently accepting connections" in causes[0]
        assert view.retries["Check task progress"] >= 1
        assert (
            view.output["progress"]["outcome"] == "stopped"
            and view.output["cutover"]["decision"] == "cutover"
        )
        assert account_dms_resources(aws) == []
        assert (
            source.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (source.name,))
            == []
        )


def test_the_source_unreachable_for_good_at_the_cutover_fails_and_says_what_is_left(refusing_source) -> None:
    source, target = refusing_source
    slot = ResourceNames("refused").slot
    with EmbeddedAws(FakeEngine(), time_scale=0.01) as aws:
        arn = decide_while_the_source_refuses(aws, source, target, "refused")
        view = finish(aws, arn)

        assert view.status == "FAILED" and view.error == "SourceUnreachable", (view.error, view.cause)
        attempts = 1 + retry_rule("Check task progress", "SourceUnreachable")["MaxAttempts"]
        assert len(unreachable_at_poll(aws, arn)) == attempts
        # the server's message, the slot that could not be dropped, and the SQL that drops it
        assert f'database "{source.name}" is not currently accepting connections' in view.cause
        assert f"slot {slot} on source (could not check it" in view.cause
        assert (
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'"
            in (view.cause)
        )
        assert "Clean up after failure" in view.states and view.states[-1] == "Migration failed"
        assert account_dms_resources(aws) == []  # what cleanup could reach is gone
        assert source.cluster.password not in history_text(aws, arn)
        # as the cause says: left on the source, to drop with the SQL given. Read from the cluster's
        # postgres database while the source still refuses: the end-of-execution rule's cleanup (started
        # by the FAILED status) goes on retrying, and drops the slot once the source accepts connections
        # again, as it would in AWS
        left = source.cluster.execute(
            "postgres", "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (source.name,)
        )
        assert left == [(slot,)]
