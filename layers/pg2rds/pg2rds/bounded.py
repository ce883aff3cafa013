"""Keeping what goes into the execution state, and into a failure's Cause, bounded.

Step Functions refuses a state or result larger than 256 KiB (``States.DataLimitExceeded``), and a
database can have any number of tables, constraints or differences. So every list of names that reaches the
state is cut to its first few and says how many it left out ("and 9980 more"), and every message that
carries text from elsewhere (DMS, PostgreSQL) is cut to a fixed length. These are the only two ways pg2rds
shortens anything, so the wording is the same everywhere.
"""

from collections.abc import Sequence

#: Names one list (a finding's objects, the differences in a Cause) shows; the rest are counted.
MAX_NAMES = 20
#: Characters of one message (an error's text, DMS's failure message): a few screens, far below the
#: Cause's 32,768 characters and the state's 256 KiB.
MAX_MESSAGE_CHARS = 8000


def more(shown: int, total: int) -> str:
    """``"and N more"`` for the ``total - shown`` items left out ("" when none were)."""
    return f"and {total - shown} more" if total > shown else ""


def capped(items: Sequence[str], total: int | None = None, limit: int = MAX_NAMES) -> list[str]:
    """The first ``limit`` items, then ``"and N more"`` when there were more.

    ``total`` is the real count when ``items`` is already a prefix (a query that returned the first names
    and a count)."""
    count = len(items) if total is None else max(total, len(items))
    shown = list(items[:limit])
    rest = more(len(shown), count)
    return shown + [rest] if rest else shown


def joined(
    items: Sequence[str], separator: str = ", ", total: int | None = None, limit: int = MAX_NAMES
) -> str:
    """:func:`capped` as one string: ``"a, b, c, and 17 more"``."""
    return separator.join(capped(items, total, limit))


def clipped(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (and {len(text) - limit} more characters)"
