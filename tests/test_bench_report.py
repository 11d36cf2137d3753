"""The benchmark's report names every target's verdict from the figures it is given (here a
made-up result: no benchmark runs in the test suite), and the README's table is the report of
the committed result."""
import json
import re

from bench.common import RESULTS, ROOT
from bench.report import BEGIN, END, markdown as _markdown

#: What every result carries besides its sections (the shape bench.run writes).
BASE = {"started_at": "2026-12-01T00:00:00+00:00", "command": "python -m bench.run",
        "mode": "full", "seconds": 1.0, "code": {"commit": "abc1234"},
        "machine": {"nproc": 2, "cpu": "test cpu", "ram_gib": 1.0, "kernel": "x",
                    "python": "3.11", "sqlite": "3.40"},
        "settings": {"web_workers": 2, "web_threads": 8, "rounds": 1, "load_generator": "wrk",
                     "connections": 16, "duration_s": 15.0}}


def markdown(sections: dict) -> str:
    return _markdown({**BASE, **sections})


def _worker_row(orders: int, rate: float, ratio: float | None = None) -> dict:
    row = {"db": "sqlite", "orders": orders, "channel": "shopify", "worker_procs": 1,
           "applied_per_s": rate, "deliveries": 5000, "worker_cpu_ms_per_delivery": 0.4}
    if ratio is not None:
        row["vs_smallest_db"] = ratio
    return row


def _verdict(md: str, start: str) -> str:
    lines = [line for line in md.splitlines() if line.startswith(f"| {start}")]
    assert len(lines) == 1, (start, lines)
    return lines[0]


def test_target_3_is_judged_both_ways_at_the_big_database():
    md = markdown({"worker": [_worker_row(1000, 2800.0),
                              _worker_row(1_000_000, 2100.0, ratio=0.75)]})
    assert "**met**" in _verdict(md, "3. worker ≥ 1,000 applied/s")
    ratio = _verdict(md, "3. … within 20 % with 1,000,000 orders")
    assert "0.75 of the small db" in ratio and "**missed**" in ratio
    absolute = _verdict(md, "3. … within 20 % of 1,000/s with 1,000,000 orders")
    assert "2100/s" in absolute and "**met**" in absolute


def test_target_3_absolute_reading_misses_below_800_per_second():
    md = markdown({"worker": [_worker_row(1000, 900.0),
                              _worker_row(1_000_000, 790.0, ratio=0.88)]})
    assert "**missed**" in _verdict(md, "3. worker ≥ 1,000 applied/s")
    assert "**met**" in _verdict(md, "3. … within 20 % with 1,000,000 orders")
    assert "**missed**" in _verdict(md, "3. … within 20 % of 1,000/s with 1,000,000 orders")


def test_memory_target_counts_only_a_full_length_run():
    rss = {"processed": 100_000, "deliveries_target": 100_000, "channel": "bigcommerce",
           "db": "sqlite", "seconds": 200.0, "rss_start_mib": 150.0, "rss_start_after": 1000,
           "rss_end_mib": 152.0, "rss_max_mib": 152.0, "anon_start_mib": 55.0,
           "anon_end_mib": 57.0, "anon_max_mib": 57.0, "machine_load": {}}
    short = _verdict(markdown({"rss": rss}), "6. worker memory flat")
    assert "shorter run than the target" in short
    full = _verdict(markdown({"rss": {**rss, "processed": 1_000_000,
                                      "deliveries_target": 1_000_000}}), "6. worker memory flat")
    assert "+2.0 MiB" in full and "**met**" in full


def test_worker_rounds_are_timed_from_the_end_of_the_first_batch(tmp_path):
    """10 batches of 50, one every 0.1 s, each stamped as it is recorded: 500/s. Counting from
    the first stamp would give 499 deliveries in 0.9 s (554/s)."""
    import sqlite3
    from datetime import datetime, timedelta
    from types import SimpleNamespace

    from bench.peek import Peek
    from bench.sections.worker import span
    path = tmp_path / "span.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE deliveries (id INTEGER PRIMARY KEY, state TEXT, outcome TEXT, "
                 "processed_at TEXT)")
    start = datetime(2026, 12, 1)
    rows = [(i + 1, "done", "applied",
             str(start + timedelta(seconds=0.1 * (i // 50 + 1), microseconds=i % 50)))
            for i in range(500)]
    conn.executemany("INSERT INTO deliveries VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    peek = Peek(f"sqlite:///{path}")
    try:
        got = span(SimpleNamespace(worker_batch=50), peek, 1)
        assert got["count"] == 500 and got["applied"] == 500
        assert got["timed"] == 450
        assert abs(got["timed"] / got["seconds"] - 500) < 1
        two = span(SimpleNamespace(worker_batch=25), peek, 1, procs=2)  # 2 x 25 skipped
        assert two["timed"] == 450
    finally:
        peek.close()


def test_readme_table_is_the_report_of_the_committed_result():
    """README.md's Benchmarks table and bench/results/latest.md are what the report renders
    from bench/results/latest.json: a figure in the README is one the benchmark measured."""
    md = _markdown(json.loads((RESULTS / "latest.json").read_text()))
    readme = (ROOT / "README.md").read_text()
    block = re.search(re.escape(BEGIN) + "\n(.*?)\n" + re.escape(END), readme, re.S)
    assert block is not None, "README.md has no benchmark table"
    assert block.group(1) == md.rstrip()
    assert (RESULTS / "latest.md").read_text() == md


def test_pacing_counts_calls_per_api_window_and_per_sliding_window():
    """The stand-in opens a window at the first call after the last one closed; a sliding
    window can straddle two of those and see more calls than either."""
    from bench.sections.pacing import max_in_fixed_windows, max_in_sliding_window
    times = [0.0, 0.5, 2.5, 2.9, 3.1, 3.2, 5.0]  # windows of 3 s: [0, 3) and [3.1, 6.1)
    assert max_in_fixed_windows(times, 3.0) == 4
    assert max_in_sliding_window(times, 3.0) == 5  # 0.5 .. 3.2
    assert max_in_fixed_windows([], 3.0) == max_in_sliding_window([], 3.0) == 0


def test_pacing_plan_sends_what_bigcommerce_sends_per_order():
    """Per order statusUpdated and updated; every 5th order also shipment/created; the plan
    stops at exactly the deliveries wanted, part-way through an order if need be."""
    from bench.sections.pacing import store_plan
    orders, scopes = store_plan(11)
    assert orders == 5 and len(scopes) == 11
    assert [s for o, s in scopes if o == 5] == ["store/order/statusUpdated",
                                                "store/order/updated", "store/shipment/created"]
    assert all(len([s for o, s in scopes if o == n]) == 2 for n in range(1, 5))
    orders, scopes = store_plan(9)
    assert orders == 5 and scopes[-1] == (5, "store/order/statusUpdated")


def test_header_names_the_generator_of_each_channels_rows():
    result = {**BASE, "settings": {**BASE["settings"], "load_generator": {
        "bigcommerce": "wrk", "shopify": "python"}}}
    md = _markdown(result)
    assert "load: **wrk** for every bigcommerce row; **python** for every shopify row," in md
    assert "load: **wrk**, 16 connections" in markdown({})
