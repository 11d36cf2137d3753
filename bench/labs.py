"""What the in-process worker labs (worker_lab, import_lab, refund_lab) share: one measured
run of the worker over a pre-filled inbox, and its line of the report."""
from __future__ import annotations

import time


def timed_until_idle(worker) -> tuple[int, float, float]:
    """Run ``worker`` until nothing is due: (deliveries processed, wall seconds, CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    done = worker.run_until_idle(10 ** 6)
    return done, time.perf_counter() - wall, time.process_time() - cpu


def report_round(index: int, done: int, wall: float, cpu: float, what: str, unit: str) -> float:
    """Print one round (``what``: e.g. "orders imported"; ``unit``: per-item name) and return
    its rate per wall second."""
    print(f"round {index + 1}: {done:,} {what}, {done / wall:,.0f}/s, "
          f"CPU {1000 * cpu / done:.3f} ms/{unit}, wall {1000 * wall / done:.3f}", flush=True)
    return done / wall
