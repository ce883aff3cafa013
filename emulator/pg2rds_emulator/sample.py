"""The pagila sample database: where to find it, and loading it into a cluster.

Always the gzipped copy shipped in ``data/pagila`` (PostgreSQL licence, see its README), so the demo and
the tests run the same way from a fresh clone placed anywhere.
"""

import gzip
import os
import shutil
import tempfile
from pathlib import Path

from pg2rds_emulator.pgcluster import Cluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUNDLED = PROJECT_ROOT / "data" / "pagila"


def pagila_file(name: str) -> Path:
    """``pagila-schema.sql`` or ``pagila-data.sql``, as a plain file path: decompressed once, under a name
    of this process's own, then renamed into place whole, so another process (a test worker) that finds
    the file never reads half of it."""
    plain = Path(tempfile.gettempdir()) / f"pg2rds-{name}"
    if not plain.exists():
        partial = plain.with_suffix(f".{os.getpid()}.tmp")
        with gzip.open(BUNDLED / f"{name}.gz", "rb") as packed, open(partial, "wb") as out:
            shutil.copyfileobj(packed, out)
        partial.replace(plain)
    return plain


def load_pagila(cluster: Cluster, database: str, with_data: bool = True) -> None:
    cluster.psql_file(database, pagila_file("pagila-schema.sql"))
    if with_data:
        cluster.psql_file(database, pagila_file("pagila-data.sql"))
