"""How far the post-data build is, said while it runs: on a large target it is the longest step after the load
(every index and key built from all the rows; hours at a terabyte), and a command silent for that long looks
hung.

``pg_restore --verbose`` reports each item of the section as its jobs launch and finish it (``launching
item 3212 CONSTRAINT pgbench_accounts pgbench_accounts_pkey``, ``finished item 3212 ...``; an item the
leader runs itself: ``processing item N ...``, ``processing missed item N ...``), and ``pg_restore
--list`` how many items the section holds. The target's ``pg_stat_progress_create_index`` says how far
each index build is (its phase, and the blocks or tuples done of its total), by table. Every
:data:`PROGRESS_SECONDS` a line says both::

    Post-data after 1m30s: 3 of 12 built; building public.pgbench_accounts (building index: scanning
    table, 45%) and 1 more

or, where the target does not say (no index build under way: a foreign key being validated), the items
pg_restore is running and for how long: ``building FK CONSTRAINT orders orders_customer_fk (1m02s)``.
"""

import re
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import psycopg2

#: Seconds between two progress lines; a build shorter than that prints none.
PROGRESS_SECONDS = 10.0
#: Items named in one line at most (a line stays a line with thousands of indexes building).
NAMED = 3
#: How long the target may take to say how far its index builds are.
QUERY_SECONDS = 5

#: pg_restore's verbose lines about an item: launched and finished by a job, or processed by the leader
#: before its parallel loop ("processing item") or after it ("processing missed item").
_EVENT = re.compile(r"^pg_restore: (launching|finished|processing)(?: missed)? item (\d+) (.*)$")

_INDEX_BUILDS = """
SELECT format('%I.%I', n.nspname, c.relname), p.phase, p.blocks_done, p.blocks_total, p.tuples_done,
       p.tuples_total
FROM pg_stat_progress_create_index p
JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE p.datname = current_database()
ORDER BY p.pid
"""


def listed_items(listing: str) -> set[int]:
    """The item ids of a ``pg_restore --list`` (``3212; 2606 16406 CONSTRAINT public ...``; ``;`` starts a
    comment)."""
    return {int(line.split(";", 1)[0]) for line in listing.splitlines() if line[:1].isdigit()}


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def index_builds(conn: Any) -> list[str]:
    """Each index build under way on ``conn``'s database: its table, phase and share done."""
    builds = []
    with conn.cursor() as cur:
        cur.execute(_INDEX_BUILDS)
        for table, phase, blocks_done, blocks_total, tuples_done, tuples_total in cur.fetchall():
            done = ""
            if blocks_total:
                done = f", {100 * blocks_done // blocks_total}%"
            elif tuples_total:
                done = f", {100 * tuples_done // tuples_total}%"
            builds.append(f"{table} ({phase}{done})")
    return builds


class PostDataProgress:
    """Fed pg_restore's stderr lines (:meth:`line`); while it is entered, says every :data:`PROGRESS_SECONDS`
    how many of the ``items`` are built and what is being built (``report`` gets the line). ``connect``
    opens a session on the target for ``pg_stat_progress_create_index``; if it cannot, the line names the
    items alone."""

    def __init__(
        self,
        items: set[int],
        report: Callable[[str], None],
        connect: Callable[[], Any],
    ) -> None:
        self._items = items
        self._report = report
        self._connect = connect
        self._interval = PROGRESS_SECONDS
        self._done: set[int] = set()
        self._building: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._ticker = threading.Thread(target=self._tick, name="post-data-progress", daemon=True)

    def __enter__(self) -> "PostDataProgress":
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ticker.join()

    def line(self, text: str) -> None:
        event = _EVENT.match(text.rstrip("\n"))
        if event is None:
            return
        what, item, description = event.group(1), int(event.group(2)), event.group(3)
        if item not in self._items:
            return  # the archive's header entries (ENCODING, SEARCHPATH, ...), processed in every section
        with self._lock:
            if what == "launching":
                self._building[item] = (description, time.monotonic())
            else:
                self._building.pop(item, None)
                self._done.add(item)

    def summary(self, builds: list[str]) -> str:
        """The progress line, with ``builds`` (the target's index builds) where the target told them."""
        now = time.monotonic()
        with self._lock:
            done = len(self._done)
            building = sorted(self._building.values(), key=lambda item: item[1])
        named = builds[:NAMED] or [f"{what} ({duration(now - since)})" for what, since in building[:NAMED]]
        more = max(len(building), len(builds)) - len(named)
        line = f"Post-data after {duration(now - self._started)}: {done} of {len(self._items)} built"
        if named:
            line += "; building " + ", ".join(named) + (f" and {more} more" if more > 0 else "")
        return line

    def _tick(self) -> None:
        conn = None
        try:
            while not self._stop.wait(self._interval):
                if conn is None:
                    with suppress(psycopg2.Error):
                        conn = self._connect()
                        conn.autocommit = True
                builds: list[str] = []
                if conn is not None:
                    try:
                        builds = index_builds(conn)
                    except psycopg2.Error:
                        with suppress(psycopg2.Error):
                            conn.close()
                        conn = None  # asked again at the next line
                self._report(self.summary(builds))
        finally:
            if conn is not None:
                with suppress(psycopg2.Error):
                    conn.close()
