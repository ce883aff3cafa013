"""``make bench``: run every benchmark, each in its own interpreter, then summarise the targets.

Each script prints its own figures (shown as they come); the summary repeats every line that states a
target with its verdict (MET / MISSED), plus each script's wall time and exit status.
"""

import subprocess
import sys
import time
from pathlib import Path

from _common import machine, table

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "validation_catalog.py",
    "history_budget.py",
    "data_movement.py",
    "cold_start.py",
    "cutover_downtime.py",
    "verification_throughput.py",
    "whole_run_peers.py",
    "verify_planning.py",
]


def main() -> int:
    print(table(["machine", ""], list(machine().items())))
    summary, failed = [], []
    for script in SCRIPTS:
        print(f"\n===== {script} =====", flush=True)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(HERE / script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        code = process.wait()
        seconds = time.perf_counter() - started
        verdicts = [
            line.strip()
            for line in lines
            if (("MET" in line or "MISSED" in line) and "(target" in line) or " days: " in line
        ]
        if code != 0:
            failed.append(script)
        summary.append([script, f"{seconds:.0f} s", code, verdicts[0] if verdicts else "(no target line)"])
        summary += [["", "", "", v] for v in verdicts[1:]]
    print("\n===== summary =====")
    print(table(["script", "wall", "exit", "targets"], summary))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
