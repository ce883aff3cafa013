"""argparse types shared by the CLI's commands and the emulator's local ones: bad values are refused
before anything starts, as one line naming the option."""

import argparse

import psycopg2
from psycopg2.extensions import parse_dsn


def dsn(value: str) -> str:
    """A libpq connection string or URI (the value is never echoed back: it may hold a password)."""
    try:
        parse_dsn(value)
    except psycopg2.ProgrammingError as error:
        detail = str(error).strip().splitlines()[0]
        raise argparse.ArgumentTypeError(
            f"not a PostgreSQL DSN ({detail}); write postgresql://USER@HOST:PORT/DATABASE or "
            "'host=HOST port=PORT dbname=DATABASE user=USER'"
        ) from None
    return value


def time_scale(value: str) -> float:
    """The local clock's factor: above 0 (0 or less made every wait and the execution's time-out nothing,
    and the run ended TIMED_OUT at once) and at most 1, AWS's own clock (a larger one stretched a 30 s
    wait into hours)."""
    try:
        scale = float(value)
    except ValueError:
        scale = float("nan")
    if not 0 < scale <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r} is not a factor above 0 and at most 1 (AWS's clock)")
    return scale
