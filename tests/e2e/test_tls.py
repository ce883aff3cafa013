"""``ssl_mode = verify-full`` end to end: the functions and DMS both verify the source's certificate.

The source is a cluster serving TLS with a certificate for 127.0.0.1 signed by a CA made here; a second CA
made here signed nothing. The functions get the CA bundle from a secret (``ssl_root_cert``), DMS from an
imported certificate (``certificate_arn``); the stand-in, like DMS, verifies with that certificate only.
"""

import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Database, LocalCa, spec_for

from pg2rds.errors import SourceUnreachable
from pg2rds_cli.check import run_check
from pg2rds_cli.executions import ExecutionView, watch
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.local_run import dms_leftovers, run_local
from pg2rds_emulator.pgcluster import Cluster, start_cluster

TABLE = "CREATE TABLE orders (id int PRIMARY KEY, note text)"


@pytest.fixture(scope="module")
def ca() -> LocalCa:
    return LocalCa.make("pg2rds test CA")


@pytest.fixture(scope="module")
def tls_cluster(ca: LocalCa) -> Iterator[Cluster]:
    """A source serving TLS with a certificate for 127.0.0.1 signed by ``ca``; it logs each connection."""
    cluster = start_cluster("tls-source", {"log_connections": "on"}, tls=ca.server_certificate("127.0.0.1"))
    yield cluster
    cluster.destroy()


@pytest.fixture
def tls_source(tls_cluster: Cluster) -> Iterator[Database]:
    db = Database(tls_cluster, tls_cluster.create_database("orders_tls"))
    db.execute(TABLE)
    db.execute("INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 50) g")
    yield db
    tls_cluster.drop_database(db.name)


def verifying_spec(
    aws: EmbeddedAws, source: Database, target: Database, functions_ca: str, dms_ca: str
) -> dict:
    """A spec whose source is verify-full: the functions' CA bundle in a secret, DMS's imported."""
    spec = spec_for(source, target, migration_id="tls")
    bundle = aws.client("secretsmanager").create_secret(Name="pg2rds/ca/test", SecretString=functions_ca)
    imported = aws.client("dms").import_certificate(CertificateIdentifier="test-ca", CertificatePem=dms_ca)
    spec["source"].update(
        ssl_mode="verify-full",
        ssl_root_cert=bundle["ARN"],
        certificate_arn=imported["Certificate"]["CertificateArn"],
    )
    return spec


def run(aws: EmbeddedAws, spec: dict) -> ExecutionView:
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(spec))["executionArn"]
    return watch(sfn, arn, lambda view: None, interval_seconds=0.1, timeout_seconds=120)


def tls_sessions(cluster: Cluster, since: int) -> list[str]:
    """The applications whose connections the server authorised over TLS since ``since`` (log offset)."""
    with open(cluster.log_file, errors="replace") as log:
        log.seek(since)
        lines = [line for line in log if "connection authorized" in line and "SSL enabled" in line]
    names = {line.split("application_name=")[1].split()[0] for line in lines if "application_name=" in line}
    return sorted(names)


def test_verify_full_with_the_right_ca_migrates(
    tls_source: Database, target_db: Database, ca: LocalCa
) -> None:
    target_db.execute(TABLE)
    since = tls_source.cluster.log_file.stat().st_size
    with EmbeddedAws(StandInEngine(), time_scale=0.01) as aws:
        view = run(aws, verifying_spec(aws, tls_source, target_db, ca.pem, ca.pem))
        leftovers = dms_leftovers(aws, "tls")

    assert view.status == "SUCCEEDED", view.cause
    assert target_db.execute("SELECT count(*) FROM orders") == [(50,)]
    assert leftovers == []
    applications = tls_sessions(tls_source.cluster, since)
    assert "pg2rds-validate" in applications  # the functions connected over TLS
    assert any(name.startswith("pg2rds-dms-standin") for name in applications)  # and DMS did
    # the bundle files they read went with the account, as a Lambda sandbox's /tmp goes with it
    digest = hashlib.sha256(ca.pem.encode()).hexdigest()[:16]
    assert list(Path(tempfile.gettempdir()).glob(f"pg2rds-*{digest}.pem")) == []


def test_verify_full_with_a_wrong_ca_fails_before_anything_is_created(
    tls_source: Database, target_db: Database, ca: LocalCa
) -> None:
    target_db.execute(TABLE)
    stranger = LocalCa.make("a CA that signed nothing here")
    with EmbeddedAws(StandInEngine(), time_scale=0.01) as aws:
        view = run(aws, verifying_spec(aws, tls_source, target_db, stranger.pem, ca.pem))
        instances = aws.client("dms").describe_replication_instances()["ReplicationInstances"]

    assert view.status == "FAILED"
    assert (view.failed_state, view.error) == ("Validate source", "SourceUnreachable"), view.cause
    assert "certificate verify failed" in view.cause
    assert "Create replication instance" not in view.states and instances == []
    assert target_db.execute("SELECT count(*) FROM orders") == [(0,)]


def test_dms_verifies_with_its_own_certificate(
    tls_source: Database, target_db: Database, ca: LocalCa
) -> None:
    """The functions trust the server, but the certificate imported into DMS is another CA's: DMS's
    connection test fails with the TLS error, and nothing is copied."""
    target_db.execute(TABLE)
    stranger = LocalCa.make("a CA that signed nothing here")
    with EmbeddedAws(StandInEngine(), time_scale=0.01) as aws:
        view = run(aws, verifying_spec(aws, tls_source, target_db, ca.pem, stranger.pem))
        leftovers = dms_leftovers(aws, "tls")

    assert view.status == "FAILED"
    assert (view.failed_state, view.error) == ("Test connections", "ConnectionTestFailed"), view.cause
    assert "source endpoint" in view.cause and "certificate verify failed" in view.cause
    assert target_db.execute("SELECT count(*) FROM orders") == [(0,)]
    assert leftovers == []


def test_run_local_takes_the_ca_bundle_from_a_verifying_dsn(
    tls_source: Database, target_db: Database, ca: LocalCa, tmp_path: Path
) -> None:
    """``pg2rds run --local`` with ``sslmode=verify-full&sslrootcert=…``: the bundle goes where the
    deployed app takes it (a secret, a DMS certificate), and the run verifies the server."""
    target_db.execute(TABLE)
    bundle = tmp_path / "ca.pem"
    bundle.write_text(ca.pem)
    source_dsn = tls_source.cluster.dsn(tls_source.name) + f"?sslmode=verify-full&sslrootcert={bundle}"

    target_dsn = target_db.cluster.dsn(target_db.name)
    view, leftovers = run_local(source_dsn, target_dsn, {"migration_id": "tls-local"})

    assert view.status == "SUCCEEDED", view.cause
    assert view.output["spec"]["source"]["ssl_mode"] == "verify-full"
    assert view.output["spec"]["source"]["certificate_arn"].startswith("arn:aws:dms:")
    assert target_db.execute("SELECT count(*) FROM orders") == [(50,)]
    assert leftovers == []


def test_check_verifies_with_the_dsns_ca_bundle(
    tls_source: Database, target_db: Database, ca: LocalCa, tmp_path: Path
) -> None:
    """``pg2rds check`` with a verifying DSN uses its ``sslrootcert``; another CA's bundle is refused."""
    target_db.execute(TABLE)
    target_dsn = target_db.cluster.dsn(target_db.name)
    for name, pem in (("right.pem", ca.pem), ("wrong.pem", LocalCa.make("a stranger").pem)):
        (tmp_path / name).write_text(pem)
    dsn = tls_source.cluster.dsn(tls_source.name) + "?sslmode=verify-full&sslrootcert="

    source_report, _ = run_check(dsn + str(tmp_path / "right.pem"), target_dsn, None)
    assert source_report.tables_selected == 1
    with pytest.raises(SourceUnreachable, match="certificate verify failed"):
        run_check(dsn + str(tmp_path / "wrong.pem"), target_dsn, None)
