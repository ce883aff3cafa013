"""Shared fixtures: real PostgreSQL clusters (started once per session) and an embedded AWS (moto).

Clusters are expensive to start (about a second each) and cheap to isolate in: each test gets fresh
databases on the session's clusters, so tests never see each other's tables or slots.
"""

import ipaddress
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto import mock_aws

from pg2rds.tls import SCRATCH_DIR_VARIABLE
from pg2rds_emulator import moto_dms
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, SUPERUSER, Cluster, start_cluster

REGION = "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def _aws_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fake credentials and a region, so nothing can ever reach a real AWS account; and the built state
    machine programs kept in the session's own directory, not in the user's cache."""
    os.environ.update(
        PG2RDS_CACHE_DIR=str(tmp_path_factory.mktemp("asl-programs")),
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_SERVICE_NAME="pg2rds",
        DMS_SECRETS_ACCESS_ROLE_ARN="arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access",
    )


def _cluster(name: str, settings: dict[str, str]) -> Iterator[Cluster]:
    cluster = start_cluster(name, settings)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def source_cluster() -> Iterator[Cluster]:
    """A source ready for DMS: wal_level=logical, room for slots and senders, wal_sender_timeout=0."""
    yield from _cluster("source", LOGICAL_SOURCE_SETTINGS)


@pytest.fixture(scope="session")
def replica_source_cluster() -> Iterator[Cluster]:
    """A source that is not ready for CDC: wal_level=replica, defaults otherwise."""
    yield from _cluster("replica-source", {"wal_level": "replica"})


@pytest.fixture(scope="session")
def target_cluster() -> Iterator[Cluster]:
    yield from _cluster("target", {})


@dataclass
class Database:
    cluster: Cluster
    name: str

    def execute(self, statement, params: tuple = ()) -> list[tuple]:
        return self.cluster.execute(self.name, statement, params)

    def connect(self):
        return self.cluster.connect(self.name)


def _fresh_database(cluster: Cluster) -> Iterator[Database]:
    name = "db_" + uuid.uuid4().hex[:10]
    cluster.create_database(name)
    yield Database(cluster, name)
    # slots pin a database: drop ours before the database
    cluster.execute(
        "postgres",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
        (name,),
    )
    cluster.drop_database(name)


@pytest.fixture
def source_db(source_cluster: Cluster) -> Iterator[Database]:
    yield from _fresh_database(source_cluster)


@pytest.fixture
def replica_source_db(replica_source_cluster: Cluster) -> Iterator[Database]:
    yield from _fresh_database(replica_source_cluster)


@pytest.fixture
def target_db(target_cluster: Cluster) -> Iterator[Database]:
    yield from _fresh_database(target_cluster)


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An empty embedded AWS account for one test; the functions' files (CA bundles) in its own directory,
    as the embedded account's run keeps them."""
    monkeypatch.setenv(SCRATCH_DIR_VARIABLE, str(tmp_path))
    with mock_aws():
        yield


@pytest.fixture
def engine(aws: None) -> moto_dms.FakeEngine:
    """moto's DMS made faithful (pg2rds_emulator.moto_dms) with a scriptable fake engine behind it."""
    engine = moto_dms.FakeEngine()
    moto_dms.install(engine)
    return engine


@pytest.fixture
def dms(engine: moto_dms.FakeEngine):
    return boto3.client("dms", region_name=REGION)


def make_secret(
    username: str,
    password: str,
    name: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 5432,
    dbname: str | None = None,
) -> str:
    """Store a database secret in (moto's) Secrets Manager as RDS and DMS lay it out; returns the ARN."""
    secret = {"engine": "postgres", "host": host, "port": port, "username": username, "password": password}
    if dbname is not None:
        secret["dbname"] = dbname
    client = boto3.client("secretsmanager", region_name=REGION)
    response = client.create_secret(
        Name=name or f"pg2rds-test-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(secret)
    )
    return response["ARN"]


def secret_for(db: Database, username: str = SUPERUSER, password: str | None = None) -> str:
    """The secret of a test database: its server, its name, and a login (the superuser's by default)."""
    return make_secret(
        username,
        db.cluster.password if password is None else password,
        port=db.cluster.port,
        dbname=db.name,
    )


def verify_in_chunks(state, rounds: list | None = None):
    """The state machine's verification loop in process: Plan verification, then verify-chunk for each
    chunk of the round (the Map), until done; returns the summary or raises VerificationFailed. Each
    round's plan is appended to ``rounds`` when given."""
    from pg2rds import phases

    while True:
        summary = phases.plan_verification(state)
        if summary.done:
            return summary
        if rounds is not None:
            rounds.append(summary)
        results = [phases.verify_chunk(state.model_copy(update={"chunk": c})) for c in summary.chunks]
        state = state.model_copy(update={"verification": summary.model_copy(update={"results": results})})


def spec_for(source: Database, target: Database, migration_id: str | None = None, **overrides) -> dict:
    """A migration spec (as JSON data) for two test databases; needs the ``aws`` fixture.

    Each side names only its secret: the secret is the server (host, port, dbname)."""
    spec = {
        "migration_id": migration_id or "t" + uuid.uuid4().hex[:8],
        "source": {"secret_arn": secret_for(source), "ssl_mode": "none"},
        "target": {"secret_arn": secret_for(target), "ssl_mode": "none"},
        "polling": {"initial_seconds": 1, "max_seconds": 2},
    }
    spec.update(overrides)
    return spec


# -- TLS: a CA made in the test, and server certificates it signs -----------------------------------------


@dataclass
class LocalCa:
    """A certificate authority made for one test session (never a real one)."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def make(cls, name: str) -> "LocalCa":
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        return cls(name, key, certificate)

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def server_certificate(self, host: str = "127.0.0.1") -> tuple[str, str]:
        """A server certificate for ``host`` (an IP address or a DNS name) and its key, both PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([name]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
