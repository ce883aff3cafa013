"""Regenerate events/phases/*.json: the state each phase's Lambda receives, from a real local execution.

Run after changing the state's shape: `.venv/bin/python scripts/phase_events.py`. A full-load and a CDC
migration run in the embedded AWS (fake DMS engine, real temporary PostgreSQL clusters); the first input of
each Task state is kept, with the spec replaced by the one in events/migration.json (or -cdc.json), so
the samples show AWS-looking hosts and secrets. `sam local invoke PollTaskFunction -e
events/phases/poll-task.json` feeds one to a function; tests/test_events.py checks that they all parse.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Database, spec_for  # noqa: E402

from pg2rds_cli.cutover import WAITING_STATE, send_decision  # noqa: E402
from pg2rds_cli.executions import history, read_execution, watch  # noqa: E402
from pg2rds_emulator.embedded import EmbeddedAws  # noqa: E402
from pg2rds_emulator.moto_dms import FakeEngine  # noqa: E402
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, start_cluster  # noqa: E402

PHASES = {
    "Validate source": "validate-source", "Prepare target": "prep-target",
    "Create replication instance": "create-instance", "Create endpoints": "create-endpoints",
    "Test connections": "test-connections", "Start replication task": "start-task",
    "Check task progress": "poll-task", "Finish the target": "finish-target", "Clean up": "cleanup",
    "Clean up after failure": "cleanup-after-failure",
}  # fmt: skip


def first_inputs(aws: EmbeddedAws, arn: str, spec: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for event in history(aws.client("stepfunctions"), arn):
        details = event.get("stateEnteredEventDetails")
        if event["type"] == "TaskStateEntered" and details["name"] in PHASES:
            found.setdefault(PHASES[details["name"]], {**json.loads(details["input"]), "spec": spec})
    return found


def main() -> None:
    import os

    os.environ.setdefault("DMS_SECRETS_ACCESS_ROLE_ARN", "arn:aws:iam::123456789012:role/pg2rds-dms-secrets")
    source, target = start_cluster("events-source", LOGICAL_SOURCE_SETTINGS), start_cluster("events-target")
    out = ROOT / "events" / "phases"
    out.mkdir(exist_ok=True)
    try:
        for cluster in (source, target):
            cluster.create_database("shop")
            cluster.execute("shop", "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)")
        src, dst = Database(source, "shop"), Database(target, "shop")
        samples: dict[str, dict] = {}
        with EmbeddedAws(FakeEngine(), time_scale=0.01) as aws:
            sfn = aws.client("stepfunctions")
            for name, migration_type in (
                ("migration.json", "full-load"),
                ("migration-cdc.json", "full-load-and-cdc"),
            ):
                shown = json.loads((ROOT / "events" / name).read_text())
                spec = spec_for(src, dst, migration_id=shown["migration_id"], migration_type=migration_type,
                                polling={"initial_seconds": 1, "max_seconds": 2})  # fmt: skip
                arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(spec))[
                    "executionArn"
                ]
                if migration_type != "full-load":
                    while read_execution(sfn, arn).current_state != WAITING_STATE:
                        pass
                    send_decision(sfn, arn)
                watch(sfn, arn, lambda view: None, interval_seconds=0.1, timeout_seconds=120)
                for phase, state in first_inputs(aws, arn, shown).items():
                    samples.setdefault(phase, state)
            # a failed run, for cleanup after a failure
            target.execute("shop", "DROP TABLE orders")
            shown = json.loads((ROOT / "events" / "migration.json").read_text())
            arn = sfn.start_execution(
                stateMachineArn=aws.state_machine_arn,
                input=json.dumps(spec_for(src, dst, migration_id=shown["migration_id"] + "-failed")),
            )["executionArn"]
            watch(sfn, arn, lambda view: None, interval_seconds=0.1, timeout_seconds=120)
            samples.update(
                {k: v for k, v in first_inputs(aws, arn, shown).items() if k == "cleanup-after-failure"}
            )
        for phase, state in sorted(samples.items()):
            (out / f"{phase}.json").write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n")
            print(f"events/phases/{phase}.json")
    finally:
        source.destroy()
        target.destroy()


if __name__ == "__main__":
    main()
