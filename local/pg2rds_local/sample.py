"""The pagila sample database: where to find it, and loading it into a cluster.

The shared test data (``../shared/testdata/pagila``) is used when present; otherwise the gzipped copy
shipped in ``data/pagila`` (same files, PostgreSQL licence, see its README), so the demo also runs on a
fresh clone.
"""

import gzip
import shutil
import tempfile
from pathlib import Path

from pg2rds_local.pgcluster import Cluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED = PROJECT_ROOT.parent / "shared" / "testdata" / "pagila"
BUNDLED = PROJECT_ROOT / "data" / "pagila"


def pagila_file(name: str) -> Path:
    """``pagila-schema.sql`` or ``pagila-data.sql``, as a plain file path."""
    shared = SHARED / name
    if shared.exists():
        return shared
    plain = Path(tempfile.gettempdir()) / f"pg2rds-{name}"
    if not plain.exists():
        with gzip.open(BUNDLED / f"{name}.gz", "rb") as packed, open(plain, "wb") as out:
            shutil.copyfileobj(packed, out)
    return plain


def load_pagila(cluster: Cluster, database: str, with_data: bool = True) -> None:
    cluster.psql_file(database, pagila_file("pagila-schema.sql"))
    if with_data:
        cluster.psql_file(database, pagila_file("pagila-data.sql"))
