"""`pg2rds serve --local` as the end-to-end tests start it: a subprocess serving the embedded AWS, and the
environment another process needs to act against it as it would against AWS."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pg2rds_emulator.pgcluster import free_port

PG2RDS = [sys.executable, "-m", "pg2rds_cli.main"]


def serve(source: Any, target: Any, tmp_path: Path, spec: dict) -> tuple[subprocess.Popen, dict, Path]:
    """Start the server with ``spec`` completed for the two test databases; returns the process, its
    ready line (endpoint_url, state_machine_arn) and the spec file it wrote. The caller terminates it."""
    (tmp_path / "in.json").write_text(json.dumps(spec))
    spec_path = tmp_path / "spec.json"
    server = subprocess.Popen(
        [*PG2RDS, "serve", "--local", "--port", str(free_port()), "--spec", str(tmp_path / "in.json"),
         "--spec-out", str(spec_path), "--source-dsn", source.cluster.dsn(source.name),
         "--target-dsn", target.cluster.dsn(target.name)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return server, json.loads(server.stdout.readline()), spec_path


def operator_env(ready: dict) -> dict[str, str]:
    """What `pg2rds start/cutover/watch` in another shell needs to use the served endpoint."""
    return {
        **os.environ, "AWS_ENDPOINT_URL": ready["endpoint_url"], "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        "PG2RDS_STATE_MACHINE_ARN": ready["state_machine_arn"],
    }  # fmt: skip


def pg2rds(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI in another process, as a shell in another window would run it."""
    return subprocess.run([*PG2RDS, *args], env=env, capture_output=True, text=True, timeout=120)


def eventually(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """``check()``'s first truthy value within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")
