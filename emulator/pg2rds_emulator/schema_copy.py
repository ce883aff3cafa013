"""The target's schema for a local run (``pg2rds run --local --copy-schema``, the demo): the runbook's
``pg_dump --schema-only``, restored in the order AWS recommends.

DMS creates tables and primary keys only; the operator creates the rest of the schema. For a full load
only, AWS's advice is to have no primary keys, secondary indexes, foreign keys or triggers on the target
while DMS loads, and to create them once the load has completed ("When can I add secondary objects to a
target database during AWS DMS migration?", AWS Knowledge Center): every index is then built once from the
loaded rows instead of maintained row by row (on pgbench_accounts, 5 M rows, the keyed load took 1.5× the
time of the load and the key built after it, bench/README.md section 7), and a foreign key cannot fail a
table that DMS loads before its parent. pg_dump's sections are exactly that split: ``pre-data`` (tables,
sequences, types, functions, defaults, check constraints) and ``post-data`` (indexes, primary, unique and
foreign keys, triggers, rules, policies), as ``pg_restore`` and pgcopydb restore them.

With CDC the whole schema goes first: DMS applies each change by the table's key, which needs its index,
and the AWS pages do not say when cached changes would meet keys added mid-task. Likewise with
``DROP_AND_CREATE``, where DMS drops the tables and creates its own with their primary keys.

The schema is dumped once, in the custom format, to a file only this process can read; both sections are
restored from it (one snapshot of the source's catalog), ``post-data`` with several jobs, as pgcopydb and
``pg_restore -j`` build indexes in parallel. The DSNs go on the command lines without their passwords,
which reach libpq through a password file (:mod:`pg2rds_emulator.passfile`): a command line is readable by
every local user.
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg2

from pg2rds.spec import MigrationSpec, TaskOptions
from pg2rds_emulator.passfile import password_env, without_password
from pg2rds_emulator.pgcluster import find_bindir
from pg2rds_emulator.post_data_progress import QUERY_SECONDS, PostDataProgress, listed_items

#: ``pg_restore -j`` for the post-data section (pgcopydb's default index jobs).
POST_DATA_JOBS = 4
#: What the post-data section holds, as the CLI names it.
POST_DATA_OBJECTS = "indexes, keys, foreign keys and triggers"


class SchemaCopyFailed(Exception):
    """``pg_dump`` or ``pg_restore`` failed; the message is the tool's error, on one line."""


def defers_post_data(spec: dict[str, Any] | None) -> bool:
    """Whether this migration's target gets its post-data section only after the load: a full load (no
    CDC) into the operator's tables (not ``DROP_AND_CREATE``). The defaults are the spec's own."""
    spec = spec or {}
    migration_type = spec.get("migration_type", MigrationSpec.model_fields["migration_type"].default)
    prep_mode = (spec.get("task") or {}).get(
        "target_table_prep_mode", TaskOptions.model_fields["target_table_prep_mode"].default
    )
    return migration_type == "full-load" and prep_mode != "DROP_AND_CREATE"


def _tool(name: str) -> str:
    return shutil.which(name, path=str(find_bindir())) or name


#: How long pg_dump or pg_restore may take to stop (cancelling its queries) once told to, before it is killed.
STOP_SECONDS = 10


#: The last lines of a tool's stderr kept for its error message (``--verbose`` writes one per item).
STDERR_LINES_KEPT = 200
#: How pg_dump and pg_restore begin an error's line (``pg_restore: error: could not execute query: ...``);
#: not a verbose line naming an item whose name says "error".
_ERROR = re.compile(r"^\S+: (error|fatal): ", re.IGNORECASE)


def _run(
    command: list[str],
    password: str | None,
    what: str,
    environment: Mapping[str, str],
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Run pg_dump or pg_restore to its end, each line of its stderr handed to ``on_line`` as it comes; if
    this process is interrupted meanwhile (Ctrl-C, SIGTERM), stop it and the workers it forked
    (``--jobs``), which are in its process group: killing the leader alone left them building indexes on
    the target after the command had exited."""
    first_error: str | None = None
    tail: deque[str] = deque(maxlen=STDERR_LINES_KEPT)
    with password_env(password, environment) as env:
        tool = subprocess.Popen(
            [command[0], "--no-password", *command[1:]],  # a missing password fails; it is never asked for
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: stopped as a whole, below
        )
        try:
            assert tool.stderr is not None
            for line in tool.stderr:  # the password file lasts as long as the tool may read it
                tail.append(line.rstrip("\n"))
                if first_error is None and _ERROR.match(line):
                    first_error = line.rstrip("\n")
                if on_line is not None:
                    on_line(line)
            tool.wait()
        except BaseException:
            _stop_group(tool)
            raise
    if tool.returncode != 0:
        said = [line for line in tail if "error" in line.lower()] or list(tail)[-1:]
        raise SchemaCopyFailed(f"{what} failed: {first_error or (said or [f'exit {tool.returncode}'])[0]}")


def _stop_group(tool: subprocess.Popen) -> None:
    """SIGTERM to the tool's group (pg_dump and pg_restore then cancel their queries on the server and
    exit), SIGKILL if it is still there after :data:`STOP_SECONDS`."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(tool.pid, sent)
        try:
            tool.wait(STOP_SECONDS)
            if not _group_alive(tool.pid):
                return
        except subprocess.TimeoutExpired:
            pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class SchemaDump:
    """The source's schema, dumped once to a private file, restored to the target by section. A context
    manager: the file goes when the block ends, whatever ends it."""

    def __init__(self, source_dsn: str, target_dsn: str) -> None:
        self._source, self._source_password = without_password(source_dsn)
        self._target, self._target_password = without_password(target_dsn)
        # the shell's environment as it is now: pg_dump and pg_restore are the user's own tools, with the
        # user's libpq settings, also while an embedded account (which hides them) is open
        self._environment = dict(os.environ)
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def _file(self) -> Path:
        assert self._directory is not None, "used outside its with block"
        return Path(self._directory.name) / "schema.dump"

    def __enter__(self) -> "SchemaDump":
        self._directory = tempfile.TemporaryDirectory(prefix="pg2rds-schema-")  # mode 0700
        try:
            dump = [_tool("pg_dump"), "--schema-only", "--format=custom", f"--file={self._file}"]
            _run(
                [*dump, "-d", self._source], self._source_password, "pg_dump --schema-only", self._environment
            )
        except BaseException:
            self._directory.cleanup()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._directory is not None:
            self._directory.cleanup()

    def restore(self, section: str | None = None, progress: Callable[[str], None] | None = None) -> None:
        """Restore ``section`` ("pre-data" or "post-data"; None: the whole schema) into the target, without
        owners or privileges (the target's roles are the operator's). One transaction, except post-data,
        which builds its indexes in :data:`POST_DATA_JOBS` sessions, saying how far it is to ``progress``
        every :data:`~pg2rds_emulator.post_data_progress.PROGRESS_SECONDS`; the first error stops it."""
        options = ["--no-owner", "--no-privileges", "--exit-on-error"]
        if section == "post-data":
            options += [f"--jobs={POST_DATA_JOBS}"]
        else:
            options += ["--single-transaction"]
        if section is not None:
            options += [f"--section={section}"]
        command = [_tool("pg_restore"), *options, "-d", self._target, str(self._file)]
        what = "pg_restore" + (f" --section={section}" if section else "")
        if section != "post-data" or progress is None:
            _run(command, self._target_password, what, self._environment)
            return
        listing = subprocess.run(
            [_tool("pg_restore"), "--list", "--section=post-data", str(self._file)],
            capture_output=True,
            text=True,
        )
        if listing.returncode != 0:
            said = listing.stderr.strip().splitlines() or [f"exit {listing.returncode}"]
            raise SchemaCopyFailed(f"pg_restore --list failed: {said[0]}")
        with PostDataProgress(listed_items(listing.stdout), progress, self._connect_target) as watcher:
            _run([command[0], "--verbose", *command[1:]], self._target_password, what, self._environment,
                 watcher.line)  # fmt: skip

    def _connect_target(self) -> Any:
        """A session on the target (its DSN's password if it had one, else the one libpq finds)."""
        password = {} if self._target_password is None else {"password": self._target_password}
        return psycopg2.connect(
            self._target,
            connect_timeout=QUERY_SECONDS,
            options=f"-c statement_timeout={QUERY_SECONDS * 1000}",
            application_name="pg2rds-post-data-progress",
            **password,
        )

    def post_data_command(self) -> str:
        """The commands that build the post-data section by hand (passwords left out), for a run that ended
        before it could or where it failed part way: psql goes on past an error, so what was built is
        reported as existing and the rest is built."""
        dump = "pg_dump --schema-only --section=post-data --no-owner --no-privileges"
        return f"{dump} -d {shlex.quote(self._source)} | psql -X -d {shlex.quote(self._target)}"


class SchemaCopy(SchemaDump):
    """The schema a migration with ``spec`` needs, copied in the order above: on entering, the whole schema,
    or only its pre-data section when :func:`defers_post_data`; :meth:`finish` then builds the post-data
    section, once the load has completed."""

    def __init__(self, source_dsn: str, target_dsn: str, spec: dict[str, Any] | None) -> None:
        super().__init__(source_dsn, target_dsn)
        self.deferred = defers_post_data(spec)

    @property
    def announcement(self) -> str:
        if self.deferred:
            return (
                "Copying the schema (pg_dump --schema-only | pg_restore): tables now; "
                f"{POST_DATA_OBJECTS} once the full load is done …"
            )
        return "Copying the schema (pg_dump --schema-only | pg_restore) …"

    def __enter__(self) -> "SchemaCopy":
        super().__enter__()
        try:
            self.restore("pre-data" if self.deferred else None)
        except BaseException:
            super().__exit__(None, None, None)
            raise
        return self

    def finish(self, progress: Callable[[str], None] | None = None) -> None:
        """Build the post-data section (nothing when the whole schema went first), saying how far it is to
        ``progress`` while it lasts."""
        if self.deferred:
            self.restore("post-data", progress)


def copy_meanwhile(schema: SchemaCopy, stack: ExitStack) -> Callable[[], None]:
    """Copy ``schema`` on a thread while the embedded account starts (pg_dump and pg_restore wait on the
    servers; the account's start is this process's CPU: 0.25-0.3 s of a cold run's 1.4 s start); the
    callable returned waits for it, raising what it raised (``run_local``'s ``before_start``). ``stack``
    removes the dump once the thread is done."""
    stack.callback(schema.__exit__, None, None, None)
    pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="schema-copy"))
    copying = pool.submit(schema.__enter__)

    def ready() -> None:
        copying.result()

    return ready


def copy_schema(source_dsn: str, target_dsn: str) -> None:
    """The whole schema at once, as before a CDC migration."""
    with SchemaDump(source_dsn, target_dsn) as dump:
        dump.restore()
