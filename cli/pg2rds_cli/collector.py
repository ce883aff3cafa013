"""The cyclic garbage collector, paused while a command loads.

Loading the command's modules (boto3, botocore, rich; for local commands moto and the handlers) and
deploying the embedded account create some 300,000 objects that live as long as the process, and almost no
garbage; yet every 700 allocations start a collection, and each full one traverses everything created so
far. Paused for those phases alone, the collector does that work once instead (0.1-0.2 s of the 0.5 s of
imports and 0.6 s of a cold start-up of ``pg2rds run --local``, measured with the command as a user runs
it). Outside them it runs as usual: a long ``watch`` or a migration keeps collecting what it discards.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No collection while the block runs; the collector is as it was afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
