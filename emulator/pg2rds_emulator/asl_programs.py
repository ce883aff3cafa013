"""A state machine definition built into moto's program once per machine, not once per process.

moto parses a definition with ANTLR's pure-Python runtime (0.2–0.4 s for ``migration.asl.json`` on this
project's 2-core machines, most of a `pg2rds run --local` start-up's CPU) when the state machine is created,
to validate it as Step Functions does, and again when each execution starts; then its preprocessor builds
the program (the tree of components the interpreter evaluates, 0.04 s). The program depends on the
definition's text and moto's code alone and nothing in it is shared between executions, so:

- a definition is parsed once per process, and its program kept as a pickle; each execution gets its own
  program by unpickling it (3 ms), as it got its own from the preprocessor before;
- the pickle is also kept on disk (:func:`cache_dir`), under a name that hashes the definition with the
  versions of Python, moto and ANTLR's runtime, so the next process (the next command) skips ANTLR too.
  A file another user could have written is never read (pickles run code when loaded): the directory must
  be this user's and writable by no one else, and each file too. A file that does not load is removed and
  the definition parsed again; at most :data:`FILES_KEPT` files are kept, the least recently used going
  first. ``PG2RDS_CACHE_DIR=off`` turns the disk cache off.

A definition that does not parse is never kept: it fails each time, with moto's error.
"""

import hashlib
import os
import pickle
import stat
import sys
import tempfile
import threading
from importlib.metadata import version
from pathlib import Path

from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

CACHE_DIR_VARIABLE = "PG2RDS_CACHE_DIR"
#: Programs kept on disk: the template's two definitions, and room for the definitions tests create.
FILES_KEPT = 64
#: Programs kept in memory: the template's two, and a test's own.
PROGRAMS_KEPT = 8

_original_parse = AmazonStateLanguageParser.parse
_original_validate = StepFunctionsParserBackend._validate_definition
_programs: dict[str, bytes] = {}
_programs_lock = threading.Lock()
#: What else a program's pickle depends on: the code that built it and will load it.
_BUILDERS = f"python {sys.version}; moto {version('moto')}; antlr4 {version('antlr4-python3-runtime')}"


def cache_dir() -> Path | None:
    """``$PG2RDS_CACHE_DIR``, else ``$XDG_CACHE_HOME/pg2rds/asl`` or ``~/.cache/pg2rds/asl``; None when the
    variable says ``off``."""
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pg2rds" / "asl"


def parse(definition: str) -> tuple[EvalComponent, None]:
    """Stands in for :meth:`AmazonStateLanguageParser.parse`: a program of the definition's own, and no
    syntax tree (moto's Step Functions backend reads only the program; the tree is for LocalStack's static
    analysers, which moto does not run)."""
    built = _known(definition)
    if built is not None:
        return pickle.loads(built), None
    program, _tree = _original_parse(definition)
    _keep(definition, pickle.dumps(program, protocol=pickle.HIGHEST_PROTOCOL))
    return program, None


def validate(definition: str) -> None:
    """Stands in for moto's validation at CreateStateMachine, which builds the whole program and throws it
    away: a definition built into a program before, by the same code, is valid; any other is validated as
    moto validates it (through :func:`parse`, so it is built only once)."""
    if _known(definition) is None:
        _original_validate(definition)


def install() -> None:
    AmazonStateLanguageParser.parse = staticmethod(parse)  # type: ignore[method-assign,assignment]
    StepFunctionsParserBackend._validate_definition = staticmethod(validate)  # type: ignore[method-assign]


def _known(definition: str) -> bytes | None:
    with _programs_lock:
        built = _programs.get(definition)
    if built is None:
        built = _read(definition)
        if built is not None:
            _remember(definition, built)
    return built


def _keep(definition: str, built: bytes) -> None:
    _remember(definition, built)
    _write(definition, built)


def _remember(definition: str, built: bytes) -> None:
    with _programs_lock:
        while len(_programs) >= PROGRAMS_KEPT:
            del _programs[next(iter(_programs))]
        _programs[definition] = built


def _file(definition: str) -> Path | None:
    directory = cache_dir()
    if directory is None:
        return None
    digest = hashlib.sha256(f"{_BUILDERS}\n{definition}".encode()).hexdigest()
    return directory / f"{digest}.pickle"


def _only_mine(path: Path) -> bool:
    """Whether ``path`` belongs to this user and no one else may write to it."""
    status = path.stat()
    return status.st_uid == os.getuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read(definition: str) -> bytes | None:
    path = _file(definition)
    if path is None:
        return None
    try:
        if not (_only_mine(path.parent) and _only_mine(path)):
            return None
        built = path.read_bytes()
        pickle.loads(built)  # a file cut short or from other code is dropped here, not at an execution
        os.utime(path)  # recently used
        return built
    except FileNotFoundError:
        return None
    except Exception:
        path.unlink(missing_ok=True)
        return None


def _write(definition: str, built: bytes) -> None:
    """Write the pickle beside its final name and rename it (a reader sees all of it or nothing); a cache
    that cannot be written is no cache, not an error."""
    path = _file(definition)
    if path is None:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _only_mine(path.parent):
            return
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as part:
            part.write(built)
        os.replace(part.name, path)
        _prune(path.parent)
    except OSError:
        return


def _prune(directory: Path) -> None:
    files = sorted(directory.glob("*.pickle"), key=lambda f: f.stat().st_mtime, reverse=True)
    for stale in files[FILES_KEPT:]:
        stale.unlink(missing_ok=True)
