"""The CA bundle the functions verify a server's certificate with (``ssl_mode`` verify-ca or verify-full).

libpq verifies against ``sslrootcert``; without one it looks in ``~/.postgresql/root.crt``, which a Lambda
function does not have. The operator gives the bundle (for RDS, Amazon's ``global-bundle.pem``) either as a
file shipped in the layer (``layers/pg2rds/pg2rds/certs/NAME``, named ``NAME`` in the spec) or as a Secrets
Manager secret whose value is the PEM text (named by ARN, under the secrets prefix the functions may read).
A secret's bundle is written once per warm container to the temporary directory, named by its digest.
"""

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from pg2rds.errors import SecretUnusable, SpecInvalid
from pg2rds.secrets import read_secret
from pg2rds.spec import DatabaseRef

#: Where bundles shipped in the layer live (``/opt/python/pg2rds/certs`` in Lambda).
CERTS_DIR = Path(__file__).parent / "certs"
VERIFYING_MODES = ("verify-ca", "verify-full")


def root_cert_file(ref: DatabaseRef, side: str) -> str | None:
    """The ``sslrootcert`` for ``ref``'s connections: None unless its ``ssl_mode`` verifies the server."""
    if ref.ssl_mode not in VERIFYING_MODES or ref.ssl_root_cert is None:
        return None
    if ref.ssl_root_cert.startswith("arn:"):
        return _from_secret(ref.ssl_root_cert)
    path = Path(ref.ssl_root_cert)
    if not path.is_absolute():
        path = CERTS_DIR / path
    if not path.is_file():
        raise SpecInvalid(
            f"invalid migration spec: {side}.ssl_root_cert: no CA bundle at {path} (a name is looked up in "
            "the layer's pg2rds/certs/; or give the ARN of a secret holding the PEM)"
        )
    return str(path)


#: Where a file the functions write goes, if set: the embedded account gives each run a directory of its own
#: and removes it, as a Lambda sandbox's /tmp goes with the sandbox.
SCRATCH_DIR_VARIABLE = "PG2RDS_SCRATCH_DIR"


def scratch_dir() -> Path:
    """The sandbox's temporary directory (``/tmp`` in Lambda)."""
    return Path(os.environ.get(SCRATCH_DIR_VARIABLE) or tempfile.gettempdir())


def pem_file(pem: str, prefix: str) -> str:
    """``pem`` as the file libpq reads (``sslrootcert``), in :func:`scratch_dir`, named by its digest and
    written once: renamed into place whole, so a thread or process reading it never sees half of it."""
    path = scratch_dir() / f"{prefix}-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(pem)
        partial.replace(path)
    return str(path)


def _from_secret(secret_arn: str) -> str:
    pem = read_secret(secret_arn, "the CA bundle secret", max_age=300)
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise SecretUnusable(f"secret {secret_arn} must hold a PEM CA bundle (-----BEGIN CERTIFICATE-----)")
    return pem_file(pem, "pg2rds-ca")
