"""An interrupted ``pg2rds run --local`` removes what it created: Ctrl-C at the cutover prompt, SIGTERM
while the data moves, end of input at the prompt. The command runs as a user runs it, in a process on a
terminal (a pty), against real clusters; what is checked is what the user sees (exit code, no traceback)
and what the source is left with (no slot, no publication)."""

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import Database

PG2RDS = [sys.executable, "-m", "pg2rds_cli.main"]
PROMPT = "Stop the application"


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """The command on a pseudo-terminal, its output collected as it comes."""

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "400", "LINES": "50", "TERM": "xterm"}
        # Ctrl-C reaches a terminal's foreground job; a shell starts a background job (`pytest ... &`) with
        # SIGINT ignored, which its children inherit, and Python then leaves SIGINT ignored
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=_interruptible
        )
        os.close(slave)
        self.master = master
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"exited ({code}) before {what}:\n{self.text[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {timeout} s:\n{self.text[-3000:]}")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def exit_code(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(5)
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def slots(db: Database) -> list[tuple]:
    return db.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db.name,))


def publications(db: Database) -> list[tuple]:
    return db.execute("SELECT pubname FROM pg_publication")


@pytest.fixture
def cdc_run(source_db: Database, target_db: Database, tmp_path: Path):
    """Start ``pg2rds run --local --cutover ask`` on a CDC spec; yields (terminal, source)."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    source_db.execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 20000) g")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"migration_id": "interrupted", "migration_type": "full-load-and-cdc"}))
    terminal = Terminal(
        [*PG2RDS, "run", "--local", str(spec), "--cutover", "ask", "--source-dsn",
         source_db.cluster.dsn(source_db.name), "--target-dsn", target_db.cluster.dsn(target_db.name)]
    )  # fmt: skip
    try:
        yield terminal, source_db
    finally:
        terminal.kill()


def assert_cleaned_up(terminal: Terminal, source: Database, code: int, reason: str) -> None:
    assert code == 130, terminal.text[-3000:]
    assert "Traceback" not in terminal.text
    assert reason in terminal.text
    assert "aborting the migration and removing what it created" in terminal.text
    assert "Removed: " in terminal.text  # (what the end-of-execution rule's cleanup removed is not listed)
    assert "Still left" not in terminal.text
    assert slots(source) == []
    assert publications(source) == []


@pytest.mark.slow
def test_ctrl_c_at_the_cutover_prompt_removes_the_slot(cdc_run) -> None:
    terminal, source = cdc_run
    terminal.wait_for(lambda: PROMPT in terminal.text, "cutover prompt")
    assert slots(source) == [("pg2rds_interrupted",)]
    terminal.process.send_signal(signal.SIGINT)
    assert_cleaned_up(terminal, source, terminal.exit_code(timeout=60), "Interrupted (Ctrl-C)")


@pytest.mark.slow
def test_end_of_input_at_the_cutover_prompt_removes_the_slot(cdc_run) -> None:
    terminal, source = cdc_run
    terminal.wait_for(lambda: PROMPT in terminal.text, "cutover prompt")
    terminal.type(b"\x04")  # Ctrl-D on an empty line: end of input
    assert_cleaned_up(terminal, source, terminal.exit_code(timeout=60), "End of input")


@pytest.mark.slow
def test_sigterm_while_the_data_moves_removes_the_slot(cdc_run) -> None:
    terminal, source = cdc_run
    terminal.wait_for(lambda: slots(source) != [], "replication slot")
    terminal.process.send_signal(signal.SIGTERM)
    assert_cleaned_up(terminal, source, terminal.exit_code(timeout=60), "Terminated (SIGTERM)")
    assert PROMPT not in terminal.text


def test_cutover_ask_without_a_terminal_is_refused_before_anything_is_created(
    source_db: Database, target_db: Database
) -> None:
    source_db.execute("CREATE TABLE items (id int PRIMARY KEY)")
    done = subprocess.run(
        [*PG2RDS, "run", "--local", "--cutover", "ask", "--copy-schema", "--source-dsn",
         source_db.cluster.dsn(source_db.name), "--target-dsn", target_db.cluster.dsn(target_db.name)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--cutover ask needs a terminal" in done.stderr
    assert target_db.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'items'") == [(0,)]
    assert slots(source_db) == []


def printed_statements(text: str) -> list[str]:
    """The SQL lines the runner printed after "Exiting without finishing the cleanup"."""
    tail = text.split("Exiting without finishing the cleanup", 1)[1]
    return [line.strip() for line in tail.splitlines() if line.strip().upper().startswith(("SELECT", "DROP"))]


@pytest.mark.slow
def test_second_ctrl_c_during_the_cleanup_exits_at_once_with_the_sql_that_finishes_it(cdc_run) -> None:
    terminal, source = cdc_run
    terminal.wait_for(lambda: PROMPT in terminal.text, "cutover prompt")
    terminal.process.send_signal(signal.SIGINT)
    terminal.wait_for(lambda: "Ctrl-C again to exit at once" in terminal.text, "the abort's announcement")
    terminal.process.send_signal(signal.SIGINT)
    code = terminal.exit_code(timeout=20)
    assert code == 130, terminal.text[-3000:]
    assert "Traceback" not in terminal.text
    assert "Exiting without finishing the cleanup" in terminal.text, terminal.text[-3000:]
    assert "Removed: " not in terminal.text  # it did not wait for the cleanup
    statements = printed_statements(terminal.text)
    assert statements, terminal.text[-3000:]
    # the process is gone; once its walsender has noticed, nothing reads the slot and the SQL drops it
    # (while it is still read, the SQL leaves it, as the message says: run it again)
    deadline = time.monotonic() + 30
    while True:
        for statement in statements:
            source.execute(statement)
        if not slots(source) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert slots(source) == []
    assert publications(source) == []
