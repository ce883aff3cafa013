"""Data movement: pgbench scale 10 (1,000,000 rows in pgbench_accounts) moved between two local clusters.

Both sides move the same rows of the same four tables (pgbench_accounts, _branches, _tellers, _history)
into the same pre-created, empty tables on the target (``schema_copy.copy_schema``: pg_dump --schema-only,
so the target tables have their primary keys while rows go in):

- baseline: ``pg_dump -Fc -t <the 4 tables> <source> | pg_restore --data-only -d <target>`` (one stream,
  COPY per table, one session);
- pg2rds: ``pg2rds run --local``, i.e. ``pg2rds_emulator.local_run.run_local`` with the DMS stand-in at the
  CLI's default clock (``LOCAL_TIME_SCALE``, 0.01): validate-source, prep-target, the DMS resources in
  moto, the full load (COPY source → target per table, up to 4 tables at once), finish-target with
  checksum verification of every table (reads both sides again), and cleanup. The whole run is timed, and the
  data-movement part separately: the stand-in task's ElapsedTimeMillis (start to last table committed)
  and, from the execution history, "Start replication task" entered → the poll that saw the load finished.

The baseline runs before and after pg2rds (the target is truncated between runs); the ratio uses the
faster baseline. Target: whole pg2rds run ÷ baseline ≤ 1.5.
"""

import os
import subprocess
import sys
import time
from typing import Any

from _common import table, verdict

from pg2rds_cli.executions import history, read_execution
from pg2rds_emulator import local_run
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, SUPERUSER, Cluster, find_bindir, start_cluster
from pg2rds_emulator.schema_copy import copy_schema

SCALE = 10
DATABASE = "bench"
TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]
TARGET_RATIO = 1.5


class TimedStandIn(StandInEngine):
    """The stand-in engine, remembering the last runtime it reported for each task (its ElapsedTimeMillis
    survives the task's deletion by the cleanup phase)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, Any] = {}

    def task_runtime(self, task_arn: str):
        runtime = super().task_runtime(task_arn)
        if runtime is not None and runtime.full_load_finished:
            self.last.setdefault(task_arn, runtime)
        return runtime


def counts(cluster: Cluster) -> dict[str, int]:
    return {t: cluster.execute(DATABASE, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def truncate(cluster: Cluster) -> None:
    cluster.execute(DATABASE, f"TRUNCATE {', '.join(TABLES)}")
    cluster.execute(DATABASE, "CHECKPOINT")


def pgbench_init(cluster: Cluster) -> float:
    started = time.perf_counter()
    command = [str(find_bindir() / "pgbench"), "-i", "-q", "-s", str(SCALE), "-h", "127.0.0.1",
               "-p", str(cluster.port), "-U", SUPERUSER, DATABASE]  # fmt: skip
    subprocess.run(command, env=_env(cluster), capture_output=True, check=True)
    return time.perf_counter() - started


def _env(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": cluster.password}


def dump_restore(source: Cluster, target: Cluster) -> float:
    bindir = find_bindir()
    dump = [str(bindir / "pg_dump"), "-Fc", "-h", "127.0.0.1", "-p", str(source.port), "-U", SUPERUSER]
    for name in TABLES:
        dump += ["-t", name]
    restore = [str(bindir / "pg_restore"), "--data-only", "-h", "127.0.0.1", "-p", str(target.port),
               "-U", SUPERUSER, "-d", DATABASE]  # fmt: skip
    started = time.perf_counter()
    producer = subprocess.Popen([*dump, DATABASE], stdout=subprocess.PIPE, env=_env(source))
    consumer = subprocess.run(restore, stdin=producer.stdout, env=_env(target), capture_output=True)
    assert producer.stdout is not None
    producer.stdout.close()
    if producer.wait() != 0 or consumer.returncode != 0:
        raise RuntimeError(f"pg_dump | pg_restore failed: {consumer.stderr.decode()}")
    return time.perf_counter() - started


def phase_seconds(events: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state (entered → next state entered, or the execution's end), summed by name."""
    spent: dict[str, float] = {}
    current, since = None, None
    for event in events:
        if event["type"].endswith("StateEntered") or (event["type"].startswith("Execution") and since):
            if current is not None:
                spent[current] = spent.get(current, 0.0) + (event["timestamp"] - since).total_seconds()
            current = (event.get("stateEnteredEventDetails") or {}).get("name")
            since = event["timestamp"]
        elif since is None:
            since = event["timestamp"]
    return spent


def history_span(sfn: Any, arn: str) -> tuple[float, dict[str, float]]:
    """Seconds from "Start replication task" entered to the exit of the poll that saw the load finished,
    and the seconds spent in each state."""
    events = history(sfn, arn)
    start = end = None
    for event in events:
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
        if (
            event["type"] == "TaskStateEntered"
            and details.get("name") == "Start replication task"
            and not start
        ):
            start = event["timestamp"]
        if (
            event["type"] == "TaskStateExited"
            and details.get("name") == "Check task progress"
            and '"outcome":"full-load-complete"' in (details.get("output") or "").replace(" ", "")
        ):
            end = event["timestamp"]
    span = (end - start).total_seconds() if start and end else float("nan")
    return span, phase_seconds(events)


def pg2rds_run(source: Cluster, target: Cluster) -> dict[str, Any]:
    engine = TimedStandIn()
    captured: dict[str, Any] = {}

    def on_update(view: Any) -> None:
        captured["arn"] = view.arn

    # history timestamps must be read inside the embedded account: wrap run_local's watch via on_update
    import pg2rds_emulator.local_run as lr

    original_watch = lr.watch

    def watch(sfn: Any, arn: str, *args: Any, **kwargs: Any) -> Any:
        view = original_watch(sfn, arn, *args, **kwargs)
        captured["span"], captured["phases"] = history_span(sfn, arn)
        captured["states"] = read_execution(sfn, arn).states
        return view

    lr.watch = watch
    try:
        started = time.perf_counter()
        view, leftovers = local_run.run_local(
            source.dsn(DATABASE), target.dsn(DATABASE), {"migration_id": "bench-pgbench"}, engine=engine,
            on_update=on_update,
        )  # fmt: skip
        whole = time.perf_counter() - started
    finally:
        lr.watch = original_watch
    runtime = next(iter(engine.last.values()), None)
    return {
        "status": view.status,
        "cause": view.cause,
        "whole": whole,
        "task_seconds": runtime.elapsed_millis / 1000 if runtime else float("nan"),
        "history_span": captured.get("span", float("nan")),
        "phases": captured.get("phases", {}),
        "leftovers": leftovers,
        "execution": view.duration_seconds,
        "verification": {
            **(view.output or {}).get("finish", {}),
            **(view.output or {}).get("verification", {}),
        },
    }


def main() -> int:
    source = start_cluster("bench-data-source", LOGICAL_SOURCE_SETTINGS)
    target = start_cluster("bench-data-target", {})
    try:
        source.create_database(DATABASE)
        target.create_database(DATABASE)
        init_seconds = pgbench_init(source)
        copy_schema(source.dsn(DATABASE), target.dsn(DATABASE))
        expected = counts(source)
        print(f"pgbench -i -s {SCALE}: {init_seconds:.1f} s; source rows {expected}")
        source.execute(DATABASE, "SELECT count(*) FROM pgbench_accounts")  # warm the source's cache

        baseline = [dump_restore(source, target)]
        baseline_ok = counts(target) == expected
        truncate(target)

        run = pg2rds_run(source, target)
        pg2rds_ok = counts(target) == expected
        truncate(target)

        baseline.append(dump_restore(source, target))
        baseline_ok = baseline_ok and counts(target) == expected
        truncate(target)
    finally:
        source.destroy()
        target.destroy()

    best = min(baseline)
    finish = run["verification"]
    rows = [
        ["pg_dump -Fc -t (4 tables) | pg_restore --data-only", " / ".join(f"{b:.2f} s" for b in baseline),
         "1.00", "rows match" if baseline_ok else "ROW COUNTS DIFFER"],
        ["pg2rds run --local, whole run", f"{run['whole']:.2f} s", f"{run['whole'] / best:.2f}",
         ("rows match" if pg2rds_ok else "ROW COUNTS DIFFER") + f"; {run['status']}"],
        ["  of which: DMS stand-in task (ElapsedTimeMillis)", f"{run['task_seconds']:.2f} s",
         f"{run['task_seconds'] / best:.2f}", ""],
        ["  of which: history, start-task → load seen finished", f"{run['history_span']:.2f} s",
         f"{run['history_span'] / best:.2f}", "includes polling delay"],
    ]  # fmt: skip
    print()
    print(
        table(["side", "wall", "÷ baseline", "check"], rows, title=f"pgbench scale {SCALE}, source → target")
    )
    print()
    groups = {
        "validate + prep": ["Validate source", "Prepare target"],
        "instance, endpoints, connection tests (incl. waits)": [
            "Create replication instance", "Is the instance available?", "Wait for the instance",
            "Create endpoints", "Test connections", "Can DMS reach both databases?",
            "Wait for the connection tests",
        ],
        "start task + progress polls (incl. waits)": [
            "Start replication task", "Has the task started?", "Wait for the task to be ready",
            "Check task progress", "Is the load finished?", "Wait before checking again",
        ],
        "finish target (sequences, FKs, checksums)": ["Finish the target"],
        "cleanup": ["Clean up", "Is everything removed?", "Wait for resources to be deleted"],
    }  # fmt: skip
    phases = run["phases"]
    grouped = [[label, f"{sum(phases.get(n, 0.0) for n in names):.2f} s"] for label, names in groups.items()]
    known = {n for names in groups.values() for n in names}
    grouped.append(["other states", f"{sum(v for k, v in phases.items() if k not in known):.2f} s"])
    grouped.append(["execution (start → end)", f"{run['execution']:.2f} s"])
    grouped.append(
        ["outside the execution (moto, deploy, secrets)", f"{run['whole'] - run['execution']:.2f} s"]
    )
    print(table(["part of the pg2rds run", "wall"], grouped, title="Where the pg2rds run's time goes"))
    print()
    print(
        f"verification {finish.get('verification')}: {finish.get('tables_checked')} tables in "
        f"{finish.get('chunks_checked')} chunks, {finish.get('mismatch_count')} differ; "
        f"DMS leftovers {run['leftovers'] or 'none'}"
    )
    if run["status"] != "SUCCEEDED":
        print(f"pg2rds run did not succeed: {run['cause'][:500]}")
    ratio = run["whole"] / best
    movement = run["task_seconds"] / best
    print(
        f"ratio whole run / baseline: {ratio:.2f} (target ≤ {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)})"
    )
    print(f"ratio data movement only (task ElapsedTimeMillis) / baseline: {movement:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
