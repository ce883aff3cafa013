"""``pg2rds serve --local``: the embedded AWS as an endpoint other processes can use.

The same deployed app as ``pg2rds run --local`` (the real ASL, the handlers, the DMS stand-in), served
over HTTP by moto's server from this process. Every other command (``pg2rds start``, ``status``,
``watch``, ``cutover``, ``graph``) and the AWS CLI then work against it unchanged, with
``AWS_ENDPOINT_URL`` pointing here: for them, local mode is only another endpoint.
"""

import json
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from pg2rds_emulator.dms_engine import DmsEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.local_run import build_spec


class LocalEndpoint:
    """``with LocalEndpoint(port, engine) as endpoint:`` serves the embedded account until the block ends."""

    def __init__(self, port: int, engine: DmsEngine | None = None, time_scale: float = 0.01) -> None:
        self.port = port
        self.aws = EmbeddedAws(engine, time_scale=time_scale)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalEndpoint":
        self.aws.__enter__()
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
        self.aws.__exit__(*exc)

    def write_spec(
        self,
        path: Path,
        source_dsn: str,
        target_dsn: str,
        spec: dict[str, Any] | None,
        secrets: dict[str, dict[str, Any]],
    ) -> dict:
        """A spec for the two DSNs, their credentials (``secrets``, read before the account opened:
        :func:`~pg2rds_emulator.local_run.secrets_of`) stored as secrets in the served account."""
        full = build_spec(self.aws, source_dsn, target_dsn, spec, secrets)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(full, indent=2) + "\n")
        return full
