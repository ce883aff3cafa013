"""Temporary PostgreSQL clusters started with ``initdb``/``pg_ctl``, for tests, the demo and benchmarks.

``initdb`` refuses to run as root, so when we are root the cluster is created and run by an unprivileged
system user (``postgres`` when it exists, else one we create). Clusters listen on 127.0.0.1 only, on a free
port, with password (scram) authentication over TCP, so credential errors are the server's real ones.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from pg2rds_emulator.passfile import any_server_line, password_env

SUPERUSER = "postgres"  # pg_dump files (pagila too) say OWNER TO postgres
DEFAULT_PASSWORD = "local-only-password"


class ClosingConnection(psycopg2.extensions.connection):
    """``with cluster.connect(db) as conn:`` closes the connection at the end, where psycopg2 only ends
    the transaction (and, since 2.9, opens one even in autocommit mode: use no ``with`` for a writer that
    must commit statement by statement)."""

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.close()


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries were found (the Makefile installs them)."""


def find_bindir() -> Path:
    """Newest server install: ``$PG2RDS_PG_BINDIR``, ``pg_config --bindir``, then Debian's layout."""
    candidates = []
    if os.environ.get("PG2RDS_PG_BINDIR"):
        candidates.append(Path(os.environ["PG2RDS_PG_BINDIR"]))
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise PostgresNotInstalled("PostgreSQL server binaries (initdb, pg_ctl) not found; run `make install`")


def _service_user() -> str | None:
    """The user to run the server as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pg2rds"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "pg2rds"], check=True)
    return "pg2rds"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """One running (or stopped) temporary cluster."""

    name: str
    settings: dict[str, str] = field(default_factory=dict)
    password: str = DEFAULT_PASSWORD
    port: int = 0
    base_dir: Path | None = None
    bindir: Path = field(default_factory=find_bindir)
    #: ``(certificate PEM, key PEM)``: serve TLS (``ssl = on``) with this certificate.
    tls: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        self.user = _service_user()
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix=f"pg2rds-{self.name}-"))
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "server.log"
        self.port = self.port or free_port()

    # -- running commands as the service user ---------------------------------------------------------
    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")
        return result

    def _give_to_service_user(self, path: Path) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # -- lifecycle --------------------------------------------------------------------------------------
    def init(self) -> "Cluster":
        assert self.base_dir is not None
        self._give_to_service_user(self.base_dir)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._give_to_service_user(pwfile)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            **self.settings,
        }
        if self.tls:
            settings.update(self._install_tls(*self.tls))
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        with open(self.data_dir / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 scram-sha-256\n")
        return self

    def _install_tls(self, certificate: str, key: str) -> dict[str, str]:
        """The server's certificate and key in the data directory (the key private to the server's user,
        as PostgreSQL requires), and the settings that serve them."""
        for name, content in (("server.crt", certificate), ("server.key", key)):
            path = self.data_dir / name
            path.write_text(content)
            path.chmod(0o600)
            self._give_to_service_user(path)
        return {"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"}

    def start(self) -> "Cluster":
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start")
        return self

    def restart(self) -> None:
        """``pg_ctl restart -m fast``, as a maintenance reboot does: every session is cut."""
        log = str(self.log_file)
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        if self.base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- access -----------------------------------------------------------------------------------------
    def dsn(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=database,
            user=SUPERUSER,
            password=self.password,
            connection_factory=ClosingConnection,
        )
        conn.autocommit = True
        return conn

    def execute(self, database: str, statement: str | sql.Composable, params: tuple = ()) -> list[tuple]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_database(self, database: str) -> str:
        self.execute("postgres", sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return database

    def drop_database(self, database: str) -> None:
        self.execute(
            "postgres", sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )

    def psql_file(self, database: str, path: Path) -> None:
        """Load a SQL file with psql; stops at the first error and raises with psql's message."""
        command = [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                   "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-f", str(path)]  # fmt: skip
        with password_env(self.password) as env:
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"psql -f {path} failed ({result.returncode}): {result.stderr.strip()}")


LOGICAL_SOURCE_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "10",
    "max_wal_senders": "10",
    "wal_sender_timeout": "0",
}


def start_cluster(
    name: str,
    settings: dict[str, str] | None = None,
    retries: int = 3,
    tls: tuple[str, str] | None = None,
) -> Cluster:
    """Init and start a cluster, retrying on a port taken between choosing and binding it; ``tls`` is a
    certificate and its key (PEM) to serve TLS with."""
    last: Exception | None = None
    for _ in range(retries):
        cluster = Cluster(name=name, settings=dict(settings or {}), tls=tls)
        try:
            return cluster.init().start()
        except RuntimeError as error:
            last = error
            cluster.destroy()
            time.sleep(0.2)
    raise RuntimeError(f"could not start cluster {name}: {last}")


def start_standby(primary: Cluster, name: str) -> Cluster:
    """A hot standby of ``primary`` (``pg_basebackup -R``: streaming from it, read-only, in recovery), on
    a port of its own; the primary must allow replication connections (``init`` does). The password file
    is the standby's own: ``-R`` names it in the standby's ``primary_conninfo``."""
    standby = Cluster(name=name, password=primary.password)
    assert standby.base_dir is not None
    standby._give_to_service_user(standby.base_dir)
    passfile = standby.base_dir / "primary.pgpass"
    passfile.write_text(any_server_line(primary.password))
    passfile.chmod(0o600)
    standby._give_to_service_user(passfile)
    conninfo = f"host=127.0.0.1 port={primary.port} user={SUPERUSER} passfile={passfile}"
    try:
        standby._run("pg_basebackup", "-D", str(standby.data_dir), "-R", "-X", "stream", "-d", conninfo)
    except RuntimeError:
        standby.destroy()
        raise
    with open(standby.data_dir / "postgresql.conf", "a") as conf:
        conf.write(f"port = {standby.port}\nunix_socket_directories = '{standby.base_dir}'\n")
    return standby.start()
