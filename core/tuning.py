"""Process tuning for a long-running worker: the throughput side of the service.

Two settings, each measured with ``bench/worker_lab.py`` (the figures are in
docs/performance.md): fewer, larger WAL checkpoints on the worker's SQLite connections, and fewer
garbage-collector passes."""
from __future__ import annotations

import gc

#: The worker process's collector thresholds: a young-generation pass every 10,000 net
#: allocations. A batch allocates tens of thousands of short-lived ORM and JSON objects, nearly
#: all freed by reference counting, so the default (700) runs a pass every few deliveries; a much
#: larger young generation lets memory step up between passes.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_gc() -> None:
    """For a long-running worker process, after its imports and app set-up: those objects move
    to the collector's permanent generation (``gc.freeze``: never scanned again), and collections
    run less often (``GC_THRESHOLDS``). Garbage cycles are still collected, so memory stays flat
    (the benchmark's memory run shows it)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def tune_for_long_run(app) -> None:
    """Tune this process for a long worker run: fewer, larger WAL checkpoints on its SQLite
    connections (``Database.sqlite_autocheckpoint``) and fewer collector passes
    (:func:`tune_gc`). ``orderhooks worker`` calls it once its app is set up; so does
    ``bench/worker_lab.py``, to measure the same worker."""
    app.extensions["orderhooks.db"].sqlite_autocheckpoint(
        app.config["SQLITE_WORKER_AUTOCHECKPOINT"])
    tune_gc()
