"""`pg2rds serve --local` makes the embedded AWS an endpoint: the AWS-side commands work against it from
other processes, unchanged, as they would against AWS (start, cutover, watch, status)."""

import json
from pathlib import Path

import pytest
from conftest import Database
from served import operator_env, pg2rds, serve


@pytest.mark.slow
def test_other_processes_migrate_through_the_served_endpoint(source_db: Database, target_db: Database,
                                                             tmp_path: Path) -> None:  # fmt: skip
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    source_db.execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 1000) g")
    server, ready, spec_path = serve(
        source_db, target_db, tmp_path, {"migration_id": "served", "migration_type": "full-load-and-cdc"}
    )
    try:
        env = operator_env(ready)
        spec = json.loads(spec_path.read_text())
        assert spec["source"]["secret_arn"].startswith("arn:aws:secretsmanager:")
        assert source_db.cluster.password not in spec_path.read_text()

        started = pg2rds("start", str(spec_path), env=env)
        assert started.returncode == 0, started.stderr
        arn = started.stdout.strip()
        assert ":execution:pg2rds-migration:served-" in arn

        for _ in range(200):  # cutover is refused until the migration waits for it
            decided = pg2rds("cutover", arn, env=env)
            if decided.returncode == 0:
                break
        assert decided.returncode == 0, decided.stderr

        watched = pg2rds("watch", arn, env=env)
        assert watched.returncode == 0, watched.stderr
        assert "Migration SUCCEEDED" in watched.stderr
        status = pg2rds("status", arn, "--json", env=env)
        assert json.loads(status.stdout)["cutover"]["decision"] == "cutover"
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    exports = server.stderr.read().splitlines()  # whole lines, whatever the width: they are copied
    assert f"export PG2RDS_STATE_MACHINE_ARN={ready['state_machine_arn']}" in exports
    assert f"export AWS_ENDPOINT_URL={ready['endpoint_url']} AWS_DEFAULT_REGION=us-east-1" in exports
    assert target_db.execute("SELECT count(*), sum(id) FROM items") == [(1000, 500500)]
    assert source_db.execute(
        "SELECT count(*) FROM pg_replication_slots WHERE database = %s", (source_db.name,)
    ) == [(0,)]
