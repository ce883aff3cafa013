"""Execution-history budget of a long CDC migration, from a real local execution on a compressed clock.

The real state machine runs in the embedded AWS (moto's Step Functions interpreter, the real handlers) with
the FakeEngine, whose full-load-and-cdc task never catches up (CDC latency set to a day), so poll-task keeps
answering "running". The spec keeps the default polling settings (30 s, ×1.5, capped at 600 s). Wait
states run 2,000 times faster than they say (time_scale 0.0005). Real PostgreSQL databases with one table
serve the validate-source and prep-target phases. Once ~50 polls have happened at the cap the execution is
stopped, and its history is read back:

- simulated elapsed time = the sum of the seconds each Wait state was told to wait (the
  ``wait_seconds`` that ``pg2rds_cli.executions`` reads from every WaitStateEntered's input);
- steady state = from the first Wait at the cap to the last one: events per simulated hour and per poll;
- the longest migration that fits in one execution's 25,000 events: (25,000 − events before the steady
  state) ÷ steady rate.

Targets: ≤ 60 events per simulated hour at steady state, and a 30-day migration fits (with continuation
into a new execution where the state machine has it).
"""

import json
import sys
import time
import uuid
from typing import Any

from _common import table, verdict

from pg2rds.spec import PollingSpec
from pg2rds_cli.executions import history, read_execution
from pg2rds_emulator.embedded import DEFINITION, EmbeddedAws, database_secret
from pg2rds_emulator.moto_dms import FakeEngine
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, SUPERUSER, Cluster, start_cluster

TIME_SCALE = 0.0005
CAP_POLLS_WANTED = 52  # ≥ 50 polls at the cap, then stop
HISTORY_LIMIT = 25_000
TARGET_EVENTS_PER_HOUR = 60
TARGET_DAYS = 30
POLL_WAIT_STATE = "Wait before checking again"
TABLE = "CREATE TABLE orders (id int PRIMARY KEY, note text)"


def spec_for(aws: EmbeddedAws, source: Cluster, target: Cluster, migration_id: str) -> dict[str, Any]:
    """A full-load-and-cdc spec with the default polling settings (no ``polling`` key)."""
    spec: dict[str, Any] = {"migration_id": migration_id, "migration_type": "full-load-and-cdc"}
    for side, cluster in (("source", source), ("target", target)):
        secret = database_secret("127.0.0.1", cluster.port, "app", SUPERUSER, cluster.password)
        arn = aws.put_secret(f"bench/{migration_id}/{side}", secret)
        spec[side] = {"secret_arn": arn, "ssl_mode": "none"}
    return spec


def continuation_states() -> list[str]:
    """States of the ASL that start a new execution (the continuation), by name."""
    definition = json.loads(DEFINITION.read_text())
    return [
        name
        for name, state in definition["States"].items()
        if "states:startExecution" in str(state.get("Resource", ""))
    ]


def chain(sfn: Any, state_machine_arn: str, first_arn: str) -> list[str]:
    """The first execution and every execution started after it (continuations), oldest first."""
    executions = sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=1000)["executions"]
    first = next(e for e in executions if e["executionArn"] == first_arn)
    later = [e for e in executions if e["startDate"] >= first["startDate"]]
    return [e["executionArn"] for e in sorted(later, key=lambda e: e["startDate"])]


def waits_of(events: list[dict[str, Any]], seconds: list[int]) -> list[tuple[int, str, int]]:
    """(event index, state name, seconds) for every WaitStateEntered; the seconds are those
    ``read_execution`` found in each Wait's input (``ExecutionView.wait_seconds``, in history order)."""
    entered = [
        (index, event["stateEnteredEventDetails"]["name"])
        for index, event in enumerate(events)
        if event["type"] == "WaitStateEntered"
    ]
    assert len(entered) == len(seconds), (len(entered), len(seconds))
    return [(index, name, wait) for (index, name), wait in zip(entered, seconds, strict=True)]


def run_until(
    aws: EmbeddedAws, spec: dict[str, Any], cap: int, cap_polls: int, max_executions: int, timeout: float
) -> tuple[list[str], float, str]:
    """Start an execution; stop the running one once ``cap_polls`` Waits at the cap happened over the
    chain, or ``max_executions`` executions exist. Returns the chain, wall seconds, and why it stopped."""
    sfn = aws.client("stepfunctions")
    first = sfn.start_execution(
        stateMachineArn=aws.state_machine_arn, name=f"bench-{uuid.uuid4().hex[:8]}", input=json.dumps(spec)
    )["executionArn"]
    started = time.monotonic()
    reason = "timeout"
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        arns = chain(sfn, aws.state_machine_arn, first)
        at_cap, running = 0, []
        for arn in arns:
            view = read_execution(sfn, arn)
            at_cap += sum(1 for seconds in view.wait_seconds if seconds == cap)
            if view.status == "RUNNING":
                running.append(arn)
        if not running:
            reason = f"ended by itself ({read_execution(sfn, arns[-1]).status})"
            break
        if at_cap >= cap_polls or len(arns) >= max_executions:
            for arn in running:
                sfn.stop_execution(executionArn=arn, error="Bench.Stop", cause="enough polls measured")
            reason = "stopped by the bench"
            break
    else:
        for arn in chain(sfn, aws.state_machine_arn, first):
            if read_execution(sfn, arn).status == "RUNNING":
                sfn.stop_execution(executionArn=arn, error="Bench.Stop", cause="timeout")
    wall = time.monotonic() - started
    time.sleep(0.5)
    return chain(sfn, aws.state_machine_arn, first), wall, reason


def analyse(sfn: Any, arns: list[str], cap: int) -> dict[str, Any]:
    views = [read_execution(sfn, arn) for arn in arns]
    histories = [history(sfn, arn) for arn in arns]
    first = histories[0]
    waits = waits_of(first, views[0].wait_seconds)
    cap_waits = [(i, s) for i, name, s in waits if name == POLL_WAIT_STATE and s == cap]
    result: dict[str, Any] = {
        "executions": len(arns),
        "events": [len(h) for h in histories],
        "simulated_seconds": sum(sum(v.wait_seconds) for v in views),
        "polls": sum(v.states.count("Check task progress") for v in views),
        "cap_waits": len(cap_waits),
        "statuses": [v.status for v in views],
        "errors": [f"{v.error}: {v.cause[:300]}" for v in views if v.error and v.status == "FAILED"],
        "failed_states": [v.failed_state for v in views if v.failed_state],
        "task_failures": [
            f"{d.get('error')}: {d.get('cause')}"
            for h in histories
            for d in (e.get("taskFailedEventDetails") for e in h if e["type"] == "TaskFailed")
            if d
        ],
        "wait_schedule": [s for _, name, s in waits if name == POLL_WAIT_STATE][:12],
    }
    if len(cap_waits) >= 2:
        i0, i1 = cap_waits[0][0], cap_waits[-1][0]
        seconds = sum(s for i, _, s in waits if i0 <= i < i1)
        polls = sum(1 for i, _, _ in waits if i0 <= i < i1)
        result.update(
            before_steady=i0,
            steady_events=i1 - i0,
            steady_polls=polls,
            steady_seconds=seconds,
            per_hour=(i1 - i0) / (seconds / 3600),
            per_poll=(i1 - i0) / polls,
            types=sorted({first[i]["type"] for i in range(i0, i1)}),
        )
    return result


def prepare(source: Cluster, target: Cluster) -> None:
    for cluster in (source, target):
        cluster.create_database("app")
        cluster.execute("app", TABLE)


def main() -> int:
    polling = PollingSpec()
    cap = polling.max_seconds
    source = start_cluster("bench-history-source", LOGICAL_SOURCE_SETTINGS)
    target = start_cluster("bench-history-target", {})
    try:
        prepare(source, target)
        engine = FakeEngine()
        engine.set_latency(86_400)  # a day behind: poll-task keeps answering "running"
        with EmbeddedAws(engine, time_scale=TIME_SCALE) as aws:
            sfn = aws.client("stepfunctions")
            spec = spec_for(aws, source, target, "bench-history")
            arns, wall, reason = run_until(aws, spec, cap, CAP_POLLS_WANTED, max_executions=2, timeout=300)
            main_run = analyse(sfn, arns, cap)
            handoff = continuation_check(aws, source, target, cap)
    finally:
        source.destroy()
        target.destroy()
    report(polling, main_run, wall, reason, handoff)
    return 0


def continuation_check(aws: EmbeddedAws, source: Cluster, target: Cluster, cap: int) -> dict[str, Any] | None:
    """Does the hand-off to a new execution work? Only where the ASL has a continuation state and the
    layer a per-execution poll limit; the limit is lowered in this process so it happens within seconds."""
    states = continuation_states()
    try:
        from pg2rds import polling
        from pg2rds.dms import progress

        limit = polling.POLLS_PER_EXECUTION
    except (ImportError, AttributeError):
        return {"states": states, "limit": None} if states else None
    if not states:
        return None
    saved = progress.POLLS_PER_EXECUTION
    progress.POLLS_PER_EXECUTION = 15
    try:
        spec = spec_for(aws, source, target, "bench-handoff")
        arns, _, reason = run_until(aws, spec, cap, cap_polls=10**9, max_executions=3, timeout=120)
        result = analyse(aws.client("stepfunctions"), arns, cap)
    finally:
        progress.POLLS_PER_EXECUTION = saved
    result.update(states=states, limit=limit, lowered_to=15, reason=reason)
    return result


def report(
    polling: PollingSpec, run: dict[str, Any], wall: float, reason: str, handoff: dict[str, Any] | None
) -> None:
    hours = run["simulated_seconds"] / 3600
    print(
        f"polling: initial {polling.initial_seconds} s, backoff {polling.backoff}, "
        f"cap {polling.max_seconds} s "
        f"(spec defaults); clock compressed ×{1 / TIME_SCALE:.0f}; {wall:.0f} s of wall time"
    )
    print(f"poll waits (s), first 12: {run['wait_schedule']}")
    print(f"execution(s): {run['executions']}, {reason}; statuses {run['statuses']}")
    if "per_hour" not in run:
        print(f"only {run['cap_waits']} waits at the cap: no steady state measured")
        return
    fit_hours = (HISTORY_LIMIT - run["before_steady"]) / run["per_hour"]
    rows = [
        ["history events (first execution)", run["events"][0]],
        ["polls (Check task progress)", run["polls"]],
        ["polls at the cap (600 s)", run["cap_waits"]],
        ["simulated elapsed (sum of waits)", f"{run['simulated_seconds']} s = {hours:.2f} h"],
        ["events before the steady state", run["before_steady"]],
        ["steady state: events / polls / sim. time",
         f"{run['steady_events']} / {run['steady_polls']} / {run['steady_seconds'] / 3600:.2f} h"],
        ["events per poll (steady)", f"{run['per_poll']:.2f}"],
        ["events per simulated hour (steady)", f"{run['per_hour']:.1f}"],
        ["longest migration in 25,000 events", f"{fit_hours:.0f} h = {fit_hours / 24:.1f} days"],
    ]  # fmt: skip
    print()
    print(table(["figure", "value"], rows, title="History budget of a CDC migration that never catches up"))
    print(f"event types in the steady state: {', '.join(run['types'])}")
    print()
    print(
        f"events per hour: {run['per_hour']:.1f} (target ≤ {TARGET_EVENTS_PER_HOUR}: "
        f"{verdict(run['per_hour'] <= TARGET_EVENTS_PER_HOUR)})"
    )
    single_fits = fit_hours >= TARGET_DAYS * 24
    if single_fits:
        print(f"{TARGET_DAYS} days in one execution: MET ({fit_hours / 24:.1f} days fit)")
        return
    if handoff is None:
        print(
            f"{TARGET_DAYS} days: MISSED - the state machine has no continuation state, so "
            f"{TARGET_DAYS} days "
            f"do NOT fit without continuation; one execution holds {fit_hours / 24:.1f} days"
        )
        return
    print(f"continuation state(s) in the ASL: {handoff['states']}")
    if handoff.get("limit") is None:
        print(f"{TARGET_DAYS} days: NOT SHOWN - a continuation state but no per-execution poll limit")
        return
    per_execution = run["before_steady"] + handoff["limit"] * run["per_poll"]
    worked = handoff["executions"] >= 2 and all(p > 0 for p in handoff.get("events", []))
    print(
        f"continuation hand-off (limit lowered from {handoff['limit']} to {handoff['lowered_to']} polls "
        f"in this process): {handoff['executions']} executions, events {handoff['events']}, statuses "
        f"{handoff['statuses']} ({handoff['reason']})"
    )
    for error, state in zip(handoff["errors"], handoff["failed_states"], strict=False):
        print(f"  hand-off execution failed in {state!r}: {error}")
    for failure in handoff["task_failures"]:
        print(f"  TaskFailed event: {failure[:300]}")
    print(
        f"with the product's limit of {handoff['limit']} polls an execution holds about {per_execution:.0f} "
        f"events (≤ {HISTORY_LIMIT}: {per_execution <= HISTORY_LIMIT}) and lasts "
        f"{handoff['limit'] * polling.max_seconds / 86400:.1f} simulated days at the cap"
    )
    met = worked and per_execution <= HISTORY_LIMIT
    print(
        f"{TARGET_DAYS} days: {'MET with continuation' if met else 'MISSED'} - one execution alone holds "
        f"{fit_hours / 24:.1f} days"
        + ("" if worked else "; the hand-off to a new execution did not happen in this run")
    )


if __name__ == "__main__":
    sys.exit(main())
