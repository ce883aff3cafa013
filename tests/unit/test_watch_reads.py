"""Following an execution reads its history once: each poll asks only for what was recorded since.

The execution runs in the embedded account (moto's Step Functions interpreter, the emulator's paging of
GetExecutionHistory as Step Functions pages it): a chain of short Wait states, polled while it runs.
"""

import json
import threading
from typing import Any

from botocore.exceptions import ClientError

from pg2rds_cli.executions import NEWEST_PAGE, read_execution, watch
from pg2rds_emulator.embedded import EmbeddedAws

STATES = 60


def _wait_chain() -> str:
    """``STATES`` Wait states of one (compressed) second each, then success: 2 events per state."""
    states: dict[str, Any] = {
        f"Wait {i}": {"Type": "Wait", "Seconds": 1, "Next": f"Wait {i + 1}"} for i in range(STATES)
    }
    states[f"Wait {STATES}"] = {"Type": "Succeed"}
    return json.dumps({"StartAt": "Wait 0", "States": states})


def _start_chain(sfn: Any, name: str) -> str:
    """A state machine of the Wait chain, started: its execution's ARN."""
    machine = sfn.create_state_machine(
        name=name, definition=_wait_chain(), roleArn="arn:aws:iam::123456789012:role/x"
    )["stateMachineArn"]
    return sfn.start_execution(stateMachineArn=machine)["executionArn"]


class _CountingClient:
    """The operator's Step Functions client, counting the history events it is sent."""

    def __init__(self, sfn: Any) -> None:
        self.sfn = sfn
        self.sent = 0
        self.reads = 0

    def describe_execution(self, **kwargs: Any) -> Any:
        self.reads += 1
        return self.sfn.describe_execution(**kwargs)

    def get_execution_history(self, **kwargs: Any) -> Any:
        page = self.sfn.get_execution_history(**kwargs)
        self.sent += len(page["events"])
        return page


def test_watching_asks_each_poll_only_for_the_new_events_and_sees_what_a_full_read_sees() -> None:
    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        arn = _start_chain(sfn, "wait-chain")
        client = _CountingClient(sfn)
        lengths: list[int] = []
        view = watch(
            client,
            arn,
            lambda v: lengths.append(v.events),
            interval_seconds=0.005,
            timeout_seconds=60,
        )
        full = read_execution(sfn, arn)

    assert view.status == full.status == "SUCCEEDED"
    assert (view.events, view.states, view.wait_seconds) == (full.events, full.states, full.wait_seconds)
    assert view.states == [f"Wait {i}" for i in range(STATES)] + [f"Wait {STATES}"]
    polls = client.reads
    assert polls >= 10, f"only {polls} polls: the test did not watch the execution grow"
    # at most one page per poll beyond the events themselves; reading the whole history each poll
    # would have sent the sum of the lengths seen
    assert client.sent <= full.events + polls * NEWEST_PAGE
    assert client.sent < sum(lengths) / 2, (client.sent, sum(lengths))


def test_a_definition_parsed_once_still_runs_each_execution_afresh_and_a_broken_one_is_still_refused() -> (
    None
):
    """The emulator keeps a definition's syntax tree (moto parses it at creation and at each start):
    every execution still runs the whole definition, and an invalid definition is still refused."""
    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        role = "arn:aws:iam::123456789012:role/x"
        machine = sfn.create_state_machine(name="twice", definition=_wait_chain(), roleArn=role)
        arns = [sfn.start_execution(stateMachineArn=machine["stateMachineArn"])["executionArn"] for _ in "ab"]
        views = [watch(sfn, arn, lambda v: None, interval_seconds=0.05, timeout_seconds=60) for arn in arns]
        broken = _wait_chain().replace('"Type": "Succeed"', '"Type": "Succeeds"')
        try:
            sfn.create_state_machine(name="broken", definition=broken, roleArn=role)
            refused = ""
        except ClientError as error:  # moto's InvalidDefinition (it sends no error code)
            refused = str(error)
    assert [v.status for v in views] == ["SUCCEEDED", "SUCCEEDED"]
    assert views[0].states == views[1].states and len(views[0].states) == STATES + 1
    assert "mismatched input '\"Succeeds\"'" in refused, refused


def test_the_embedded_account_pages_the_history_as_step_functions_does() -> None:
    """moto answers every read with the whole history, oldest first; the embedded account answers with
    the page asked for (``maxResults``, ``nextToken``, ``reverseOrder``), so the newest page of a long
    history costs what it costs on AWS. The pages add up to the whole history, oldest or newest first."""
    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        arn = _start_chain(sfn, "pages")
        watch(sfn, arn, lambda v: None, interval_seconds=0.05, timeout_seconds=60)
        newest = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=2)
        pages, sizes, token = [], [], None
        while True:
            kwargs = {"nextToken": token} if token else {}
            page = sfn.get_execution_history(executionArn=arn, maxResults=50, **kwargs)
            pages += page["events"]
            sizes.append(len(page["events"]))
            token = page.get("nextToken")
            if not token:
                break
    total = len(pages)
    assert total > 2 * STATES and [e["id"] for e in pages] == list(range(1, total + 1))
    assert [e["id"] for e in newest["events"]] == [total, total - 1]
    assert sizes[:-1] == [50] * (len(sizes) - 1) and len(sizes) > 1, sizes


def _every_kind_of_state(function_arn: str) -> str:
    """Pass, Parallel, Wait, an inline Map, a Lambda task that fails and is caught, Choice, Fail: the
    events a migration's history holds (task and Lambda events with payloads, errors and causes)."""
    return json.dumps(
        {
            "StartAt": "Pass",
            "States": {
                "Pass": {"Type": "Pass", "Result": {"n": [1, 2], "text": 'é "quoted"'}, "Next": "Both"},
                "Both": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}},
                        {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": 1, "End": True}}},
                    ],
                    "ResultPath": None,
                    "Next": "Each",
                },
                "Each": {
                    "Type": "Map",
                    "ItemsPath": "$.n",
                    "ItemProcessor": {"StartAt": "Item", "States": {"Item": {"Type": "Pass", "End": True}}},
                    "ResultPath": "$.each",
                    "Next": "Call",
                },
                "Call": {
                    "Type": "Task",
                    "Resource": function_arn,
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Which"}],
                    "Next": "Which",
                },
                "Which": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.error", "IsPresent": True, "Next": "Failed"}],
                    "Default": "Failed",
                },
                "Failed": {"Type": "Fail", "Error": "Broken", "Cause": 'a cause with \u00e9 and "quotes"'},
            },
        }
    )


def test_botocore_reads_the_same_history_from_the_embedded_pages_as_from_mot_serializer(monkeypatch) -> None:
    """The pages are written as JSON directly, not by moto's serializer (which walks the API model for each
    field, about 1 ms per event): botocore must read every kind of event, timestamps included, exactly as
    it reads moto's own answer."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def moto_history(self: StepFunctionResponse) -> Any:  # moto's own GetExecutionHistory
        return ActionResult(self.stepfunction_backend.get_execution_history(self._get_param("executionArn")))

    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="every-kind",
            definition=_every_kind_of_state(aws.function_arns["ValidateSourceFunction"]),
            roleArn="arn:aws:iam::123456789012:role/x",
        )["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"not": "a spec"}))[
            "executionArn"
        ]
        view = watch(sfn, arn, lambda v: None, interval_seconds=0.05, timeout_seconds=60)
        ours = sfn.get_execution_history(executionArn=arn, maxResults=1000)
        monkeypatch.setattr(StepFunctionResponse, "get_execution_history", moto_history)
        theirs = sfn.get_execution_history(executionArn=arn)
    kinds = {event["type"] for event in ours["events"]}
    assert view.status == "FAILED" and {"LambdaFunctionFailed", "MapStateEntered", "ExecutionFailed"} <= kinds
    assert ours["events"] == theirs["events"]


class _TruncatingHistory:
    """Step Functions' answer for an execution whose state outgrew 256 KiB: the history cuts the data
    (``truncated``), so an input or output in it need not be JSON."""

    def __init__(self) -> None:
        whole = json.dumps({"progress": {"wait_seconds": 30, "ready": False}})
        cut = json.dumps({"progress": {"wait_seconds": 30}, "big": "x" * 100})[:60]
        self.events = [
            {"id": 1, "type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{}"}},
            {
                "id": 2,
                "type": "TaskStateEntered",
                "stateEnteredEventDetails": {"name": "Check", "input": "{}"},
            },
            {
                "id": 3,
                "type": "TaskStateExited",
                "stateExitedEventDetails": {"name": "Check", "output": whole},
            },
            {
                "id": 4,
                "type": "WaitStateEntered",
                "stateEnteredEventDetails": {"name": "Wait", "input": whole},
            },
            {"id": 5, "type": "WaitStateExited", "stateExitedEventDetails": {"name": "Wait", "output": cut}},
            {
                "id": 6,
                "type": "WaitStateEntered",
                "stateEnteredEventDetails": {
                    "name": "Wait",
                    "input": cut,
                    "inputDetails": {"truncated": True},
                },
            },
        ]

    def describe_execution(self, **kwargs: Any) -> Any:
        return {"status": "RUNNING"}

    def get_execution_history(self, **kwargs: Any) -> Any:
        events = list(reversed(self.events)) if kwargs.get("reverseOrder") else list(self.events)
        return {"events": events}


def test_an_event_whose_data_cannot_be_read_does_not_stop_the_view() -> None:
    view = read_execution(_TruncatingHistory(), "arn:aws:states:us-east-1:123456789012:execution:m:x")
    assert view.states == ["Check", "Wait", "Wait"] and view.current_state == "Wait"
    assert view.wait_seconds == [30, 0]
    assert view.latest == {"progress": {"wait_seconds": 30, "ready": False}}  # the last readable output


def test_a_local_watcher_sees_the_end_when_it_comes_not_at_its_next_read() -> None:
    """A local run sleeps between reads in ``sleep_until_an_end``: the execution's end wakes it, so the run
    returns as the execution ends, not up to an interval later. Here the interval is ten minutes and the
    execution takes about a second: only the wake-up can end the watch in time."""
    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        arn = _start_chain(sfn, "woken")
        views: list[Any] = []
        watcher = threading.Thread(
            target=lambda: views.append(
                watch(sfn, arn, lambda view: None, interval_seconds=600, sleep=aws.sleep_until_an_end)
            ),
            daemon=True,
        )
        watcher.start()
        watcher.join(60)
        assert not watcher.is_alive(), "the watcher slept through the execution's end"
        assert views[0].status == "SUCCEEDED"
        assert sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
