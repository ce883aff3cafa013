"""Helpers shared by the benchmark scripts: tables, medians, the machine's description."""

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any


def median_time(run: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float], Any]:
    """Median wall time in seconds over ``repeats`` runs after ``warmup`` runs; also every sample and
    the last result."""
    result = None
    for _ in range(warmup):
        result = run()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), samples, result


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table, left-aligned, with a rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title] if title else []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as info:
            kib = int(info.readline().split()[1])
            memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    postgres = "unknown"
    try:
        from pg2rds_emulator.pgcluster import find_bindir

        out = subprocess.run([str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True)
        postgres = out.stdout.strip()
    except Exception:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu,
        "postgres": postgres,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def state_spans(
    events: list[dict[str, Any]], since: float = 0.0, until: float = float("inf")
) -> dict[str, list[float]]:
    """Seconds from each state's entry to its exit, by state name, for states entered at or after ``since``
    and before ``until`` (POSIX times). A state entered n times has n spans; entries and exits of one name
    are paired in order, so the iterations of a Map and the states of parallel branches are measured each
    on their own."""
    entered: dict[str, list[float]] = {}
    spans: dict[str, list[float]] = {}
    for event in events:
        kind, at = event["type"], event["timestamp"].timestamp()
        if kind.endswith("StateEntered"):
            entered.setdefault(event["stateEnteredEventDetails"]["name"], []).append(at)
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            start = entered.get(name, []).pop(0) if entered.get(name) else None
            if start is not None and since <= start < until:
                spans.setdefault(name, []).append(at - start)
    return spans


def first_entry(events: list[dict[str, Any]], state: str, since: float = 0.0) -> float | None:
    """POSIX time ``state`` was first entered at or after ``since``."""
    for event in events:
        if event["type"].endswith("StateEntered") and event["stateEnteredEventDetails"]["name"] == state:
            at = event["timestamp"].timestamp()
            if at >= since:
                return at
    return None


def pgbench(cluster: Any, database: str, *args: str, **popen: Any) -> subprocess.Popen:
    """``pgbench <args>`` against ``database`` (password through the environment, never the command line)."""
    from pg2rds_emulator.pgcluster import SUPERUSER, find_bindir

    command = [str(find_bindir() / "pgbench"), *args, "-h", "127.0.0.1", "-p", str(cluster.port),
               "-U", SUPERUSER, database]  # fmt: skip
    env = {**os.environ, "PGPASSWORD": cluster.password}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def pgbench_init(cluster: Any, database: str, scale: int, *options: str) -> float:
    """``pgbench -i -q -s scale [options]``; its wall time in seconds."""
    started = time.perf_counter()
    process = pgbench(cluster, database, "-i", "-q", "-s", str(scale), *options)
    _, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {err.decode()}")
    return time.perf_counter() - started


def fingerprint(cluster: Any, database: str, judged: dict[str, str]) -> dict[str, tuple]:
    """Per table, the aggregates ``judged`` names (e.g. counts and sums of the pgbench tables): enough for a
    benchmark to tell that a copy is whole, without the tests' full fingerprint."""
    return {t: tuple(cluster.execute(database, f"SELECT {what} FROM {t}")[0]) for t, what in judged.items()}
