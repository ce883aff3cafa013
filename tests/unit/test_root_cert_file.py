"""root_cert_file: where the functions find the CA bundle they verify a server with."""

from pathlib import Path

import boto3
import pytest
from conftest import REGION, LocalCa

from pg2rds.errors import SecretUnusable, SpecInvalid
from pg2rds.spec import DatabaseRef
from pg2rds.tls import CERTS_DIR, root_cert_file, scratch_dir

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg2rds/source-AbCdEf"
CERT = "arn:aws:dms:us-east-1:123456789012:cert:ABCDEF"


def verifying(bundle: str) -> DatabaseRef:
    return DatabaseRef(secret_arn=SECRET, ssl_mode="verify-full", ssl_root_cert=bundle, certificate_arn=CERT)


def test_nothing_unless_verifying() -> None:
    assert root_cert_file(DatabaseRef(secret_arn=SECRET, ssl_mode="require"), "source") is None


def test_a_name_is_a_file_in_the_layer_and_a_missing_one_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecInvalid, match=r"source.ssl_root_cert: no CA bundle at .*pg2rds/certs/absent.pem"):
        root_cert_file(verifying("absent.pem"), "source")
    bundle = tmp_path / "ca.pem"
    bundle.write_text(LocalCa.make("file CA").pem)
    assert root_cert_file(verifying(str(bundle)), "source") == str(bundle)
    assert CERTS_DIR.name == "certs" and CERTS_DIR.parent.name == "pg2rds"


def test_a_secret_bundle_is_written_once_to_a_file(aws) -> None:
    pem = LocalCa.make("secret CA").pem
    client = boto3.client("secretsmanager", region_name=REGION)
    arn = client.create_secret(Name="pg2rds/ca/unit", SecretString=pem)["ARN"]
    path = root_cert_file(verifying(arn), "target")
    assert path is not None and Path(path).read_text() == pem
    assert Path(path).parent == scratch_dir()  # the sandbox's /tmp (the test's own directory here)
    assert root_cert_file(verifying(arn), "target") == path

    junk = client.create_secret(Name="pg2rds/ca/junk", SecretString="not a certificate")["ARN"]
    with pytest.raises(SecretUnusable, match="must hold a PEM CA bundle"):
        root_cert_file(verifying(junk), "target")
