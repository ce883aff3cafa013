"""``pg2rds check`` against real clusters: the findings table, the exit code, nothing created, no password."""

import json

import pytest
from conftest import Database

from pg2rds_cli import main as cli


def check(source: Database, target: Database, *extra: str) -> int:
    return cli.main(
        [
            "check",
            "--source-dsn",
            source.cluster.dsn(source.name),
            "--target-dsn",
            target.cluster.dsn(target.name),
        ]
        + list(extra)
    )


def test_check_exits_1_on_a_fatal_finding_and_0_once_fixed(
    source_db: Database, target_db: Database, tmp_path, capsys: pytest.CaptureFixture
) -> None:
    source_db.execute(
        "CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, img oid);"
        "INSERT INTO sales.orders VALUES (1, lo_from_bytea(0, '\\x01'::bytea))"
    )
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"migration_id": "laptop", "tables": {"include": [{"schema": "sales"}]}}))

    assert check(source_db, target_db, str(spec), "--json") == 1
    out = capsys.readouterr()
    reports = json.loads(out.out)
    fatal = {
        (side, f["name"]) for side in ("source", "target") for f in reports[f"{side}_report"]["findings"]
        if f["severity"] == "fatal"
    }  # fmt: skip
    assert fatal == {("source", "large_objects"), ("target", "target_tables_missing")}
    assert "Findings" in out.err and "Check FAILED: 2 fatal" in out.err
    assert source_db.cluster.password not in out.out + out.err
    assert target_db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'sales'") == [(0,)]

    source_db.execute("ALTER TABLE sales.orders ALTER COLUMN img TYPE bytea USING lo_get(img)")
    source_db.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
    target_db.execute("CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, img bytea)")
    assert check(source_db, target_db, str(spec), "--json") == 0
    out = capsys.readouterr()
    reports = json.loads(out.out)
    assert reports["source_report"]["tables_selected"] == 1 and reports["target_report"]["check_fatal"] == 0
    assert "Check passed" in out.err
    assert source_db.cluster.password not in out.out + out.err


def test_check_names_an_unreachable_server_without_its_password(
    source_db: Database, target_db: Database, capsys: pytest.CaptureFixture
) -> None:
    wrong = target_db.cluster.dsn(target_db.name).replace(target_db.cluster.password, "not-the-password-42")
    code = cli.main(["check", "--source-dsn", source_db.cluster.dsn(source_db.name), "--target-dsn", wrong])
    out = capsys.readouterr()
    assert code == 1
    assert "TargetUnreachable" in out.err and "password authentication failed" in " ".join(out.err.split())
    assert "not-the-password-42" not in out.out + out.err


def without_password(db: Database) -> str:
    dsn = db.cluster.dsn(db.name)
    assert f":{db.cluster.password}@" in dsn
    return dsn.replace(f":{db.cluster.password}@", "@")


def test_check_takes_the_password_libpq_finds_for_a_dsn_without_one(
    source_db: Database, target_db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The README's advice (no password on the command line; PGPASSWORD or ~/.pgpass) held for
    ``run --local`` but not for ``check``, which handed libpq an empty password: 'no password supplied'."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    monkeypatch.setenv("PGPASSWORD", source_db.cluster.password)  # both test clusters share it
    code = cli.main(
        ["check", "--source-dsn", without_password(source_db), "--target-dsn", without_password(target_db)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Check passed" in out.err


def test_check_names_a_target_that_is_the_source(source_db: Database, capsys: pytest.CaptureFixture) -> None:
    source_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    target = source_db.cluster.dsn(source_db.name).replace("127.0.0.1", "localhost")
    code = cli.main(["check", "--source-dsn", source_db.cluster.dsn(source_db.name), "--target-dsn", target])
    out = capsys.readouterr()
    assert code == 1
    assert "target_is_source" in out.err and "Check FAILED: 1 fatal" in " ".join(out.err.split())
