"""Local mode keeps passwords out of process lists: every local user can read ``/proc/PID/cmdline``.

A watcher reads every process's command line while ``--copy-schema``'s schema copy runs ``pg_dump`` and
``pg_restore`` (the tables before the load, the keys after it); it must see them all (so it would have seen a
password) and no command line may hold either password.
"""

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Database
from psycopg2 import sql

from pg2rds_cli import main as cli
from pg2rds_cli.passwords import password_of
from pg2rds_emulator.local_run import secret_of
from pg2rds_emulator.passfile import without_password
from pg2rds_emulator.pgcluster import free_port
from pg2rds_emulator.schema_copy import SchemaCopy

TABLES = 300  # enough schema for pg_dump and psql to run for a while


class CommandLines:
    """Reads ``/proc/*/cmdline`` in a loop on a thread until stopped; keeps each distinct command line."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for path in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    line = path.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:  # the process ended meanwhile
                    continue
                if line:
                    self.seen.add(line)

    def __enter__(self) -> "CommandLines":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def own_login(db: Database, side: str) -> Iterator[tuple[str, str]]:
    name, password = f"pg2rds_{side}_{uuid.uuid4().hex[:6]}", f"{side}-password-{uuid.uuid4().hex}"
    create = sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}")
    db.execute(create.format(sql.Identifier(name), sql.Literal(password)))
    yield name, password
    db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def source_login(source_db: Database) -> Iterator[tuple[str, str]]:
    yield from own_login(source_db, "source")


@pytest.fixture
def target_login(target_db: Database) -> Iterator[tuple[str, str]]:
    yield from own_login(target_db, "target")


def test_copy_schema_puts_no_password_on_a_command_line(
    source_db: Database, target_db: Database, source_login, target_login
) -> None:
    for i in range(TABLES):
        source_db.execute(f"CREATE TABLE t{i} (id int PRIMARY KEY, note text)")
    source_dsn = source_db.cluster.dsn(source_db.name, *source_login)
    target_dsn = target_db.cluster.dsn(target_db.name, *target_login)

    full_load = {"migration_type": "full-load"}
    with CommandLines() as watcher, SchemaCopy(source_dsn, target_dsn, full_load) as schema:
        schema.finish()

    tools = [line for line in watcher.seen if "pg_dump" in line or "pg_restore" in line]
    assert any("pg_dump" in line for line in tools), tools
    assert any("--section=pre-data" in line for line in tools), tools
    assert any("--section=post-data" in line for line in tools), tools
    for _, password in (source_login, target_login):
        assert [line for line in watcher.seen if password in line] == []
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert target_db.execute(tables) == [(TABLES,)]
    keys = "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND connamespace = 'public'::regnamespace"
    assert target_db.execute(keys) == [(TABLES,)]


def test_a_dsn_without_password_takes_it_from_the_password_file(
    source_db: Database, source_login, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What lets ``pg2rds run --local`` take DSNs without passwords on its own command line."""
    user, password = source_login
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{source_db.cluster.port}:*:{user}:{password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    dsn = f"postgresql://{user}@127.0.0.1:{source_db.cluster.port}/{source_db.name}"

    assert password_of(dsn) == password
    assert secret_of(dsn, "source")["password"] == password


@pytest.mark.parametrize("what", ["wrong password", "no server"])
def test_a_dsn_whose_password_cannot_be_found_ends_the_run_in_one_line(
    source_db: Database,
    target_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    what: str,
) -> None:
    """A DSN without its password is connected to, to read the one libpq finds. When that failed, the
    command printed psycopg2's class and libpq's message over several lines ("pg2rds: OperationalError:
    connection to server ... failed: ... (run with --debug for the traceback)"), exit 1; now the side and
    the reason on one line, exit 2, before anything is created."""
    source_dsn = without_password(source_db.cluster.dsn(source_db.name))[0]
    if what == "wrong password":
        monkeypatch.setenv("PGPASSWORD", "not-the-password")
        reason = 'password authentication failed for user "postgres"'
    else:
        source_dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/{source_db.name}"
        reason = "Connection refused"
    monkeypatch.delenv("PGPASSFILE", raising=False)
    target_dsn = target_db.cluster.dsn(target_db.name)

    code = cli.main(["run", "--local", "--quiet", "--source-dsn", source_dsn, "--target-dsn", target_dsn])

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("pg2rds: cannot connect to the source database "), err
    assert f"'{source_db.name}' at 127.0.0.1:" in lines[0] and reason in lines[0], err
    assert "OperationalError" not in err and "Migration" not in err
    assert source_db.execute("SELECT slot_name FROM pg_replication_slots") == []
