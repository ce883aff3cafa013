"""Cutover downtime: how long the application is stopped, at pgbench scale 4 and 40, in one run.

For each scale, a fresh pair of databases on the same two clusters: ``pgbench -i -s N`` on the source, the
schema copied to the target whole (``schema_copy.copy_schema``, as ``pg2rds run --local --copy-schema``
does with CDC), then a ``full-load-and-cdc`` migration through the real state machine in the embedded AWS
with the DMS stand-in (the same code ``pg2rds serve --local`` serves), at the local clock
(``LOCAL_TIME_SCALE``, Wait states compressed 100×) and the local polling (``LOCAL_POLLING``). A
rate-limited pgbench writer
(``pgbench -n -c 2 -R <rate>``) runs from before the start, through the full load and replication, and
for a while once the cutover is offered; then the application stops (the writer is ended) and the
operator decides (``send_decision``, as ``pg2rds cutover`` does).

Downtime = that decision → "Clean up" entered (the history's clock and the bench's are the same process
clock). What it consists of is read from the execution history: each state's entry → exit after the
decision. Target: downtime at scale 40 ÷ downtime at scale 4 ≤ 1.5 (the downtime does not grow with the
data). Both migrations must end SUCCEEDED with the target equal (row counts and the sum of balances are
compared here too).

``--foreign-keys``: ``pgbench -i --foreign-keys`` (the four tables reference each other: tellers and
accounts the branches, history all three), so the foreign-key checks are part of what is measured; the
writer changes every table, so each is written to after the check made before the decision.

The source runs ``synchronous_commit = on``, PostgreSQL's and RDS's default, where the test clusters turn
it off for speed. With it off a commit reaches the walsender, and so the slot and DMS's validation, only
at the WAL writer's next flush (``wal_writer_delay``, 200 ms): each check of a changed record then waited
up to that long, 20 s at the local clock's ×0.01, and the polls after the decision waited on records still
pending (2–7 polls where 2 suffice), at either scale. ``--async-commit`` measures that configuration.
"""

import sys
import time
from datetime import UTC, datetime
from typing import Any

from _common import fingerprint, first_entry, pgbench, pgbench_init, state_spans, table, verdict

from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_cli.executions import ExecutionReader, history, is_watcher_state
from pg2rds_emulator import LOCAL_TIME_SCALE
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.local_run import LOCAL_POLLING, build_spec, secrets_of
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, Cluster, start_cluster
from pg2rds_emulator.schema_copy import copy_schema

SCALES = (4, 40)
TARGET_RATIO = 1.5
#: Transactions per second of the writer (two clients); each is pgbench's TPC-B-like transaction (three
#: updates, a select and an insert). The stand-in applies changes one statement at a time: on the shared
#: 2-core machine it kept up with about 10 per second, and fell ever further behind at 50 (never caught up).
WRITER_RATE = 5
#: Seconds the writer keeps writing once the cutover is offered, before the application is stopped.
WRITE_WHILE_OFFERED = 5.0
#: The source's settings: a logical source, committing as PostgreSQL does by default (see the docstring).
SOURCE_SETTINGS = {**LOGICAL_SOURCE_SETTINGS, "synchronous_commit": "on"}
#: States run inside the verification Map's iterations.
INSIDE_MAP = {"Verify a chunk"}


def overlapping(name: str) -> bool:
    """States that run alongside others: the Map's iterations and the cutover wait's watcher."""
    return name in INSIDE_MAP or is_watcher_state(name)


JUDGED = {
    "pgbench_accounts": "count(*), sum(abalance)",
    "pgbench_tellers": "count(*), sum(tbalance)",
    "pgbench_branches": "count(*), sum(bbalance)",
    "pgbench_history": "count(*), sum(delta)",
}


def wait_for(reader: ExecutionReader, condition: Any, timeout: float) -> Any:
    """Read the execution every 0.25 s until ``condition``. Through one reader, which asks only for the
    events since its last read: reading the whole history at each look (as this bench did until
    2026-11-28) competed with the run for the CPU in this same process, and more so the longer the
    history, so it lengthened the scale-40 downtime more than the scale-4 one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = reader.read()
        if condition(view) or view.done:
            return view
        time.sleep(0.25)
    raise TimeoutError(f"execution still in {view.current_state!r} after {timeout} s")


def migrate(source: Cluster, target: Cluster, scale: int, foreign_keys: bool) -> dict[str, Any]:
    database = f"bench_cutover_s{scale}"
    source.create_database(database)
    target.create_database(database)
    init = pgbench_init(source, database, scale, *(["--foreign-keys"] if foreign_keys else []))
    copy_schema(source.dsn(database), target.dsn(database))
    engine = StandInEngine()
    result: dict[str, Any] = {"scale": scale, "init": init}
    writer = pgbench(source, database, "-n", "-c", "2", "-j", "1", "-R", str(WRITER_RATE), "-T", "3600")
    try:
        secrets = secrets_of(source.dsn(database), target.dsn(database))
        with EmbeddedAws(engine, time_scale=LOCAL_TIME_SCALE) as aws:
            spec = build_spec(
                aws, source.dsn(database), target.dsn(database),
                {"migration_id": f"bench-cutover-{scale}", "migration_type": "full-load-and-cdc"}, secrets,
            )  # fmt: skip
            sfn = aws.client("stepfunctions")
            started = time.time()
            started_execution = sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=_json(spec))
            arn = started_execution["executionArn"]
            reader = ExecutionReader(sfn, arn)
            view = wait_for(reader, lambda v: v.current_state == WAITING_STATE, timeout=900)
            result["offered_after"] = time.time() - started
            if view.done:
                raise RuntimeError(f"migration ended before the cutover: {view.status} {view.cause[:500]}")
            time.sleep(WRITE_WHILE_OFFERED)
            writer.terminate()  # the application stops
            writer.wait()
            result["writes"] = source.execute(database, "SELECT count(*) FROM pgbench_history")[0][0]
            decided = datetime.now(UTC).timestamp()
            send_decision(sfn, arn)  # reads the history for the wait's task token, then sends it
            result["send"] = datetime.now(UTC).timestamp() - decided
            view = wait_for(reader, lambda v: False, timeout=900)
            events = history(sfn, arn)
    finally:
        if writer.poll() is None:
            writer.terminate()
            writer.wait()
        engine.shutdown()
    cleanup = first_entry(events, "Clean up", since=decided)
    read = first_entry(events, "Read the decision", since=decided)
    expected = fingerprint(source, database, JUDGED)
    result.update(
        status=view.status,
        cause=view.cause,
        downtime=(cleanup - decided) if cleanup else float("nan"),
        spans=state_spans(events, since=decided, until=cleanup or float("inf")),
        equal=expected == fingerprint(target, database, JUDGED),
        rows=sum(v[0] for v in expected.values()),
        mismatched=(view.output or {}).get("finish", {}).get("mismatched"),
        verification=(view.output or {}).get("verification", {}),
        reached=(read - decided) if read else float("nan"),
        wait_seconds=_waits_after(events, decided, cleanup or float("inf")),
        polls=_polls_around(events, decided, cleanup or float("inf")),
    )
    source.drop_database(database)
    target.drop_database(database)
    return result


def _json(spec: dict[str, Any]) -> str:
    import json

    return json.dumps(spec)


def _waits_after(events: list[dict[str, Any]], since: float, until: float) -> list[int]:
    """Seconds each Wait state entered between ``since`` and ``until`` was told to wait (at AWS's clock);
    the cutover wait's watcher is left out (it runs alongside, and is cancelled by the decision)."""
    import json

    told = []
    for event in events:
        details = event.get("stateEnteredEventDetails") or {}
        at = event["timestamp"].timestamp()
        if event["type"] != "WaitStateEntered" or is_watcher_state(details["name"]):
            continue
        if since <= at < until:
            state = json.loads(details.get("input") or "{}")
            for key in ("progress", "cleanup"):
                if isinstance(state.get(key), dict) and "wait_seconds" in state[key]:
                    told.append(int(state[key]["wait_seconds"]))
                    break
    return told


def _polls_around(events: list[dict[str, Any]], since: float, until: float) -> list[str]:
    """What each poll from the last one before the decision until cleanup saw: the task's status and
    DMS's validation records still pending (the task is stopped once the slot has confirmed the
    decision's position and nothing is pending: a poll that sees none pending waits for the slot)."""
    import json

    seen = []
    for event in events:
        details = event.get("stateExitedEventDetails") or {}
        if event["type"] != "TaskStateExited" or details.get("name") != "Check task progress":
            continue
        at = event["timestamp"].timestamp()
        if at >= until:
            break
        progress = json.loads(details.get("output") or "{}").get("progress") or {}
        pending = (progress.get("validation") or {}).get("pending_records")
        seen.append((at, f"{progress.get('task_status')} ({pending} pending)"))
    return [text for at, text in seen if at < since][-1:] + [text for at, text in seen if at >= since]


def composition(result: dict[str, Any]) -> list[list[str]]:
    """Each state entered between the decision and cleanup: how often, how long in all, the longest. The
    cutover wait's watcher (cancelled by the decision) and the Map's iterations (inside "Verify chunks",
    run several at once) overlap other states, so they are listed apart."""
    rows, apart = [], []
    for name, spans in sorted(result["spans"].items(), key=lambda item: -sum(item[1])):
        row = [name, str(len(spans)), f"{sum(spans):.2f} s", f"{max(spans):.2f} s"]
        if overlapping(name):
            apart.append([f"  ({name}: overlaps the above)", *row[1:]])
        else:
            rows.append(row)
    return rows + apart


def show(r: dict[str, Any]) -> None:
    """One scale's figures, printed as soon as it is done."""
    print(
        f"scale {r['scale']}: {r['rows']:,} rows, cutover offered {r['offered_after']:.1f} s after the "
        f"start, {r['writes']} writer transactions, downtime {r['downtime']:.2f} s, {r['status']}, target "
        + ("equal" if r["equal"] else "DIFFERENT")
    )
    title = f"scale {r['scale']}: what the {r['downtime']:.2f} s consisted of"
    headers = ["state (entered after the decision)", "times", "total", "longest"]
    print(table(headers, composition(r), title=title))
    in_states = sum(sum(spans) for name, spans in r["spans"].items() if not overlapping(name))
    print(
        f"  send_decision took {r['send']:.2f} s (it reads the history for the token); the decision "
        f"reached the execution (Read the decision entered) {r['reached']:.2f} s after it was sent; "
        f"between the states above (transitions, the Parallel state ending): "
        f"{r['downtime'] - in_states:.2f} s"
    )
    told = sum(r["wait_seconds"])
    print(
        f"  Wait states after the decision were told {r['wait_seconds']} s, {told} s in all, run at "
        f"×{LOCAL_TIME_SCALE} ({told * LOCAL_TIME_SCALE:.2f} s here): at AWS's clock this downtime would be "
        f"{r['downtime'] + told * (1 - LOCAL_TIME_SCALE):.0f} s with the local polling {LOCAL_POLLING}"
    )
    polls = r["polls"]
    print(f"  polls: the last before the decision {polls[:1]}, then {len(polls) - 1} after it {polls[1:]}")
    verification = r["verification"]
    if verification:
        print(
            f"  verification: {verification.get('chunks_checked')} chunks, "
            f"{verification.get('mismatch_count')} differ; foreign keys of "
            f"{verification.get('foreign_keys_checked_before', '-')} tables checked before the offer, "
            f"{verification.get('foreign_keys_checked_after', '-')} after the decision "
            f"({verification.get('foreign_keys_unchanged', '-')} unchanged since, "
            f"{verification.get('foreign_keys_held_by_validation', '-')} held by DMS's validation and the "
            "source's constraints)"
        )
    if r["status"] != "SUCCEEDED":
        print(f"  did not succeed: {r['cause'][:800]}")
    print(flush=True)


def main() -> int:
    foreign_keys = "--foreign-keys" in sys.argv[1:]
    settings = LOGICAL_SOURCE_SETTINGS if "--async-commit" in sys.argv[1:] else SOURCE_SETTINGS
    commit = settings.get("synchronous_commit", "off (the test clusters)")
    fks = "--foreign-keys" if foreign_keys else "(no foreign keys)"
    print(f"pgbench -i {fks}; source synchronous_commit = {commit}", flush=True)
    source = start_cluster("bench-cutover-source", settings)
    target = start_cluster("bench-cutover-target", {})
    results = []
    try:
        for scale in SCALES:
            results.append(migrate(source, target, scale, foreign_keys))
            show(results[-1])
    finally:
        source.destroy()
        target.destroy()
    rows = [
        [r["scale"], f"{r['rows']:,}", f"{r['init']:.1f} s", f"{r['offered_after']:.1f} s", r["writes"],
         f"{r['downtime']:.2f} s", r["status"], "equal" if r["equal"] else "DIFFERENT"]
        for r in results
    ]  # fmt: skip
    headers = ["scale", "source rows", "pgbench -i", "start → cutover offered", "writer transactions",
               "downtime", "status", "target"]  # fmt: skip
    print(table(headers, rows, title="Cutover downtime (decision → Clean up entered)"))
    small, large = results[0]["downtime"], results[-1]["downtime"]
    ratio = large / small
    print()
    print(
        f"downtime ratio scale {SCALES[-1]} / scale {SCALES[0]}: {large:.2f} s / {small:.2f} s = {ratio:.2f} "
        f"(target ≤ {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
