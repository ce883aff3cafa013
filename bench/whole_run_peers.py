"""The whole local run against its peers: pgbench scale 10 and 50, the same two clusters, one run.

For each scale the source gets ``pgbench -i -s N`` (pgbench_accounts: N × 100,000 rows, primary keys on
the three keyed tables, pgbench_history empty); each tool copies the whole database into an empty
database of its own on the target cluster, schema, data, primary keys and all:

- ``pg_dump -Fc | pg_restore --no-owner`` (one stream, one session; indexes built after the data);
- ``pgcopydb clone --no-owner`` (Debian package ``pgcopydb``; its defaults: 4 COPY jobs, 4 index jobs,
  indexes after the data); skipped, and said so, when it is not installed;
- pg2rds as ``pg2rds run --local --copy-schema`` runs it (``schema_copy.SchemaCopy``): the schema dumped
  once (``pg_dump --schema-only -Fc``), its pre-data section restored (tables without keys or indexes)
  while the embedded account starts,
  ``run_local`` with the DMS stand-in (full-load) at the CLI's default clock (``LOCAL_TIME_SCALE``) and
  polling: validation, prep, the DMS resources in moto, the full load, finish-target, chunked
  verification, cleanup; then the post-data section (keys, indexes, ``pg_restore -j 4``).
- pg2rds as ``pg2rds run --local`` with ``task.target_table_prep_mode: DROP_AND_CREATE`` runs it: no
  schema copied, DMS creates each table (columns, NOT NULL, primary key) and, in a full load, adds the
  primary key once the table's rows are in (``CreatePkAfterFullLoad``); pgbench's tables have nothing
  else (no defaults, secondary indexes or foreign keys), so the target is the same as the others'.
- The same ``pg2rds run --local --copy-schema`` as a user runs it: the command in a process of its own,
  timed from its start to its exit, so its interpreter's start, its imports (moto, botocore, the
  handlers) and the embedded account's first start-up are in the figure, as they are in each of the
  peers' (the in-process runs above pay them once per bench, not per run).
- For comparison, what ``--copy-schema`` did before: the whole schema (keys included) restored before the
  run, so rows go into keyed tables.

Where pg2rds's time goes comes from its execution history (each state's entry → exit, summed by name);
outside the execution, the embedded AWS's start-up (``EmbeddedAws.__enter__``: moto, deploying the
template) is timed on its own. The bench reads the history once more after each run: that read is not
counted. Importing the emulator (moto, about 1 s here) happens once when the bench starts and is in no
in-process figure; the command's figure includes it.

Every target is compared with the source (row counts and sums, and the number of indexes). Target:
pg2rds ÷ pgcopydb ≤ 1.2, reported for each pg2rds run; the command's is the one a user sees.

``--scales 10`` (or ``10,50``) measures only those scales. ``--repeat N`` runs every tool N times,
round-robin, and reports each tool's median (and range) and the ratio of the medians, with each round's
side-by-side ratio: on this 2-core machine one tool's time moves by ±20 % from run to run, as much as the
ratio's distance to its target.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import fingerprint, pgbench_init, state_spans, table, verdict

import pg2rds_emulator.local_run as local_run
from pg2rds_cli.executions import history
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, SUPERUSER, Cluster, find_bindir, start_cluster
from pg2rds_emulator.schema_copy import SchemaCopy, copy_meanwhile, copy_schema

SCALES = (10, 50)
TARGET_RATIO = 1.2
PG2RDS = "pg2rds run --local --copy-schema"
PG2RDS_DMS_CREATES = "pg2rds run --local, DMS creates the tables"
PG2RDS_KEYS_FIRST = "pg2rds, whole schema before the load"
PG2RDS_COMMAND = "pg2rds run --local --copy-schema, the command"
#: How each pg2rds run gets its target schema: copied as ``--copy-schema`` copies it (pre-data before the
#: run, post-data after it), created by DMS (DROP_AND_CREATE, each primary key after its table's rows), or
#: copied whole before the run (keys in place while rows go in).
SCHEMA_BY = {PG2RDS: "copy", PG2RDS_DMS_CREATES: "dms", PG2RDS_KEYS_FIRST: "whole"}
JUDGED = {
    "pgbench_accounts": "count(*), sum(abalance), sum(aid)",
    "pgbench_tellers": "count(*), sum(tid)",
    "pgbench_branches": "count(*), sum(bid)",
    "pgbench_history": "count(*)",
}


def constraints(cluster: Cluster, database: str) -> int:
    """Primary keys and indexes on the target: every tool must have built them."""
    query = "SELECT count(*) FROM pg_indexes WHERE starts_with(tablename, 'pgbench_')"
    return cluster.execute(database, query)[0][0]


def _env(cluster: Cluster) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": cluster.password, "PATH": f"{find_bindir()}:{os.environ['PATH']}"}


def _uri(cluster: Cluster, database: str) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{cluster.port}/{database}"  # password via PGPASSWORD


def dump_restore(source: Cluster, target: Cluster, database: str, into: str) -> float:
    dump = [str(find_bindir() / "pg_dump"), "-Fc", "-d", _uri(source, database)]
    restore = [str(find_bindir() / "pg_restore"), "--no-owner", "-d", _uri(target, into)]
    started = time.perf_counter()
    producer = subprocess.Popen(dump, stdout=subprocess.PIPE, env=_env(source))
    consumer = subprocess.run(restore, stdin=producer.stdout, env=_env(target), capture_output=True)
    assert producer.stdout is not None
    producer.stdout.close()
    if producer.wait() != 0 or consumer.returncode != 0:
        raise RuntimeError(f"pg_dump | pg_restore failed: {consumer.stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def pgcopydb(source: Cluster, target: Cluster, database: str, into: str) -> float:
    workdir = tempfile.mkdtemp(prefix="bench-pgcopydb-")
    command = ["pgcopydb", "clone", "--no-owner", "--dir", workdir,
               "--source", _uri(source, database), "--target", _uri(target, into)]  # fmt: skip
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=_env(source), capture_output=True)  # both clusters: one password
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"pgcopydb clone failed: {done.stderr.decode()[-2000:]}")
    return time.perf_counter() - started


def pg2rds_command(source: Cluster, target: Cluster, database: str, into: str) -> float:
    """``pg2rds run --local --copy-schema`` in a process of its own, start to exit: the installed ``pg2rds``
    script of this interpreter's environment, as a user runs it (passwords through the environment, as the
    README advises)."""
    command = [str(Path(sys.executable).with_name("pg2rds")), "run", "--local", "--copy-schema", "--quiet",
               "--migration-id", "bench-" + into.replace("_", "-"),
               "--source-dsn", _uri(source, database), "--target-dsn", _uri(target, into)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=_env(source), capture_output=True)  # both clusters: one password
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pg2rds run --local failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def map_runs(sfn: Any, arn: str) -> list[tuple[int, float]]:
    """(chunks, seconds) of each Map Run of "Verify chunks" (a Distributed Map: each chunk is a child
    execution, its states in its own history, not the parent's)."""
    runs = []
    for listed in sfn.list_map_runs(executionArn=arn)["mapRuns"]:
        run = sfn.describe_map_run(mapRunArn=listed["mapRunArn"])
        seconds = (run["stopDate"] - run["startDate"]).total_seconds() if run.get("stopDate") else 0.0
        runs.append((int(run["itemCounts"]["total"]), seconds))
    return runs


def pg2rds(source: Cluster, target: Cluster, database: str, into: str, schema_by: str) -> dict[str, Any]:
    """The pg2rds run, its target schema by ``schema_by`` (:data:`SCHEMA_BY`): "copy" (``SchemaCopy``, as
    ``--copy-schema``), "dms" (``target_table_prep_mode: DROP_AND_CREATE``), or "whole" (``copy_schema``
    before the run, a bench variant)."""
    captured: dict[str, Any] = {"bench": 0.0}
    original_watch, original_enter = local_run.watch, EmbeddedAws.__enter__

    def watch(sfn: Any, arn: str, *args: Any, **kwargs: Any) -> Any:
        view = original_watch(sfn, arn, *args, **kwargs)
        before = time.perf_counter()
        captured["spans"] = state_spans(history(sfn, arn))
        captured["map_runs"] = map_runs(sfn, arn)
        captured["bench"] += time.perf_counter() - before  # the bench's reading, not the run's
        return view

    def enter(aws: EmbeddedAws) -> EmbeddedAws:
        before = time.perf_counter()
        try:
            return original_enter(aws)
        finally:
            captured["start-up"] = time.perf_counter() - before

    local_run.watch = watch
    EmbeddedAws.__enter__ = enter  # type: ignore[method-assign]
    parts: dict[str, float] = {}
    try:
        started = time.perf_counter()
        spec: dict[str, Any] = {"migration_id": "bench-" + into.replace("_", "-")}
        with ExitStack() as stack:
            schema, ready = None, lambda: None
            if schema_by == "copy":
                schema = SchemaCopy(source.dsn(database), target.dsn(into), spec)
                ready = copy_meanwhile(schema, stack)
            elif schema_by == "whole":
                copy_schema(source.dsn(database), target.dsn(into))
            else:
                spec["task"] = {"target_table_prep_mode": "DROP_AND_CREATE"}
            parts["schema"] = time.perf_counter() - started
            view, leftovers = local_run.run_local(
                source.dsn(database), target.dsn(into), spec, notify=lambda m: None, before_start=ready
            )
            parts["run_local"] = time.perf_counter() - started - parts["schema"] - captured["bench"]
            parts["start-up"] = captured["start-up"]
            if schema is not None and view.status == "SUCCEEDED":
                before = time.perf_counter()
                schema.finish()
                parts["post-data"] = time.perf_counter() - before
        whole = time.perf_counter() - started - captured["bench"]
    finally:
        local_run.watch = original_watch
        EmbeddedAws.__enter__ = original_enter  # type: ignore[method-assign]
    if view.status != "SUCCEEDED":
        raise RuntimeError(f"pg2rds run {view.status}: {view.cause[:1000]}")
    return {"whole": whole, "parts": parts, "spans": captured.get("spans", {}), "leftovers": leftovers,
            "execution": view.duration_seconds, "map_runs": captured.get("map_runs", [])}  # fmt: skip


def pgcopydb_installed() -> bool:
    return shutil.which("pgcopydb") is not None


def one_scale(source: Cluster, target: Cluster, scale: int, repeats: int) -> dict[str, Any]:
    """Every tool ``repeats`` times, round-robin (each round runs them all in turn, so a round's ratios are
    side by side and a slow minute of the machine falls on one round, not on one tool)."""
    database = f"bench_peers_s{scale}"
    source.create_database(database)
    init = pgbench_init(source, database, scale)
    source.execute(database, "VACUUM ANALYZE")
    expected = fingerprint(source, database, JUDGED)
    indexes = constraints(source, database)
    size = source.execute(database, "SELECT pg_database_size(current_database())")[0][0]
    results: dict[str, Any] = {
        "scale": scale,
        "init": init,
        "size": size,
        "times": {},
        "checks": {},
        "runs": {},
    }

    def judged(name: str, into: str) -> None:
        equal = fingerprint(target, into, JUDGED) == expected and constraints(target, into) == indexes
        if results["checks"].get(name, "equal") == "equal":
            results["checks"][name] = "equal" if equal else "DIFFERENT"
        target.drop_database(into)

    peers: list[tuple[str, Any]] = [("pg_dump -Fc | pg_restore", dump_restore)]
    if pgcopydb_installed():
        peers.append(("pgcopydb clone", pgcopydb))
    peers.append((PG2RDS_COMMAND, pg2rds_command))
    for round_ in range(repeats):
        for name, run in peers:
            into = target.create_database(f"{database}_{round_}_{len(results['times'])}")
            results["times"].setdefault(name, []).append(run(source, target, database, into))
            judged(name, into)
        for name, schema_by in SCHEMA_BY.items():
            into = target.create_database(f"{database}_{round_}_{len(results['times'])}")
            measured = pg2rds(source, target, database, into, schema_by)
            results["times"].setdefault(name, []).append(measured["whole"])
            results["runs"].setdefault(name, []).append(measured)
            judged(name, into)
    for name, runs in results["runs"].items():  # where the time goes: the run of median length
        results[name] = sorted(runs, key=lambda run: run["whole"])[(len(runs) - 1) // 2]
    source.drop_database(database)
    return results


def _spread(seconds: list[float]) -> str:
    median = statistics.median(seconds)
    return f"{median:.2f} s" + (f" ({min(seconds):.2f}-{max(seconds):.2f})" if len(seconds) > 1 else "")


GROUPS = {
    "lease, validate, prep": ["Take the migration lease", "Validate source", "Prepare target"],
    "instance, endpoints, connection tests (with waits)": [
        "Create replication instance", "Is the instance available?", "Wait for the instance",
        "Create endpoints", "Test connections", "Can DMS reach both databases?",
        "Wait for the connection tests",
    ],
    "start task, full load, progress polls (with waits)": [
        "Start replication task", "Has the task started?", "Wait for the task to be ready",
        "Check task progress", "Is the load finished?", "Wait before checking again",
    ],
    "finish target (sequences, FKs, large objects)": ["Finish the target"],
    "verification (plan + Map of chunks)": ["Plan verification", "Is everything verified?", "Verify chunks"],
    "cleanup (with waits)": ["Clean up", "Is everything removed?", "Wait for resources to be deleted"],
}  # fmt: skip


def where_time_goes(run: dict[str, Any]) -> list[list[str]]:
    spans = run["spans"]
    rows, grouped = [], 0.0
    for label, names in GROUPS.items():
        seconds = sum(sum(spans.get(n, [])) for n in names)
        grouped += seconds
        rows.append([label, f"{seconds:.2f} s"])
        if names == GROUPS["verification (plan + Map of chunks)"] and run["map_runs"]:
            chunks = sum(count for count, _ in run["map_runs"])
            rounds = ", ".join(f"{seconds:.2f} s" for _, seconds in run["map_runs"])
            rows.append(["  of which Map Runs (chunks; each run's wall)", f"{chunks} chunks; {rounds}"])
    rows.append(["other states (choices, passes, lease renewal)", f"{run['execution'] - grouped:.2f} s"])
    rows.append(["execution (start → end)", f"{run['execution']:.2f} s"])
    rows.append(["schema before the run", f"{run['parts']['schema']:.2f} s"])
    if "post-data" in run["parts"]:
        rows.append(["post-data after the run (keys, indexes)", f"{run['parts']['post-data']:.2f} s"])
    outside = run["parts"]["run_local"] - run["execution"]
    rows.append(["outside the execution", f"{outside:.2f} s"])
    rows.append(["  of which the embedded AWS's start-up (moto, deploying the template)",
                 f"{run['parts']['start-up']:.2f} s"])  # fmt: skip
    rows.append(["  of which the rest (secrets, start, seeing the end, leftovers, shutdown)",
                 f"{outside - run['parts']['start-up']:.2f} s"])  # fmt: skip
    return rows


def main() -> int:
    repeats = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
    scales: tuple[int, ...] = SCALES
    if "--scales" in sys.argv:  # e.g. --scales 10 or --scales 10,50
        scales = tuple(int(n) for n in sys.argv[sys.argv.index("--scales") + 1].split(","))
    if not pgcopydb_installed():
        print("pgcopydb is not installed (Debian package pgcopydb): that peer is skipped")
    source = start_cluster("bench-peers-source", LOGICAL_SOURCE_SETTINGS)
    target = start_cluster("bench-peers-target", {})
    try:
        results = [one_scale(source, target, scale, repeats) for scale in scales]
    finally:
        source.destroy()
        target.destroy()
    verdicts = []
    for r in results:
        times = r["times"]
        medians = {name: statistics.median(seconds) for name, seconds in times.items()}
        reference_name = "pgcopydb clone" if "pgcopydb clone" in times else "pg_dump -Fc | pg_restore"
        rows = [[name, _spread(seconds), f"{medians[name] / medians[reference_name]:.2f}", r["checks"][name]]
                for name, seconds in times.items()]  # fmt: skip
        print()
        what = "median (min-max)" if repeats > 1 else "wall"
        headers = ["tool", what, "÷ " + reference_name.split()[0], "target"]
        title = f"pgbench scale {r['scale']} ({r['size'] / 1e6:.0f} MB; pgbench -i {r['init']:.1f} s)"
        print(table(headers, rows, title=title + (f", {repeats} rounds" if repeats > 1 else "")))
        for name in SCHEMA_BY:
            print()
            print(table(["part", "wall"], where_time_goes(r[name]), title=f"  {name}: where the time goes"))
        for name in (PG2RDS, PG2RDS_DMS_CREATES, PG2RDS_KEYS_FIRST, PG2RDS_COMMAND):
            if "pgcopydb clone" in times:
                ratio = medians[name] / medians["pgcopydb clone"]
                rounds = ", ".join(
                    f"{mine / theirs:.2f}"
                    for mine, theirs in zip(times[name], times["pgcopydb clone"], strict=True)
                )
                verdicts.append(
                    f"scale {r['scale']}: {name} / pgcopydb = {ratio:.2f}"
                    + (f" (medians; each round: {rounds})" if repeats > 1 else "")
                    + f" (target ≤ {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)})"
                )
    print()
    print("\n".join(verdicts) or "pgcopydb not installed: no ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
