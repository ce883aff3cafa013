"""EventBridge in the embedded AWS delivers as AWS does: the template's rules exist, a matching event
starts the state machine (InputPath applied) or invokes the Lambda function, and an execution's end is
announced as "Step Functions Execution Status Change" on the default bus."""

import json
import time

import pytest

from pg2rds_emulator import embedded
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine


def eventually(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("not within the time limit")


@pytest.fixture
def aws():
    with EmbeddedAws(FakeEngine(), time_scale=0.01) as account:
        yield account


def test_a_start_event_starts_the_state_machine_with_its_detail(aws: EmbeddedAws) -> None:
    events, sfn = aws.client("events"), aws.client("stepfunctions")
    detail = {"migration_id": "from-event"}  # not a full spec: the execution fails, naming the fields
    entry = {"Source": "pg2rds", "DetailType": "Start migration", "Detail": json.dumps(detail)}
    events.put_events(Entries=[entry])  # the default bus has no start rule
    events.put_events(Entries=[{**entry, "EventBusName": "pg2rds-start"}])
    execution = eventually(lambda: sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"])[
        0
    ]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == detail


def test_an_execution_end_reaches_a_lambda_target_as_a_status_change_event(aws: EmbeddedAws) -> None:
    received: list[dict] = []
    lam = aws.client("lambda")
    role = lam.list_functions()["Functions"][0]["Role"]
    function = lam.create_function(
        FunctionName="pg2rds-test-receiver", Runtime="python3.12", Role=role, Handler="app.handler",
        Code={"ZipFile": b"in-process"},
    )  # fmt: skip
    embedded._handlers["pg2rds-test-receiver"] = lambda event, context: received.append(event) or {}
    events, sfn = aws.client("events"), aws.client("stepfunctions")
    pattern = {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["FAILED", "TIMED_OUT", "ABORTED"], "stateMachineArn": [aws.state_machine_arn]},
    }
    events.put_rule(Name="ended", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="ended", Targets=[{"Id": "receiver", "Arn": function["FunctionArn"]}])

    arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, name="bad", input="{}")["executionArn"]
    event = eventually(lambda: received)[0]
    assert event["detail"]["executionArn"] == arn
    assert event["detail"]["status"] == "FAILED"
    assert event["detail"]["error"] == "SpecInvalid"
    assert json.loads(event["detail"]["input"]) == {}
    assert event["resources"] == [arn]
