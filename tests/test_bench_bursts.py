"""The product-edit and order-import bursts: what they send, and how the report judges them (a
made-up result: no benchmark runs in the test suite)."""
import random

from bench.sections.bursts import import_plan, product_plan
from tests.test_bench_report import _verdict, markdown


def _store(store: str, finish: float, alone: float | None = None, **figures) -> dict:
    row = {"store": store, "deliveries": 300, "objects": 100, "api_calls": 100, "429s": 0,
           "product_reads": 100, "reads_per_product": 1.0, "products_read_more_than_once": 0,
           "same_batch_rereads": 0, "edits_per_read": 3.0, "order_calls": 0, "orders_imported": 0,
           "calls_per_order": None, "max_calls_in_api_window": 140, "quota": 150,
           "median_delay_s": finish / 2, "finish_s": finish, **figures}
    if alone is not None:
        row["finish_alone_s"] = alone
    return row


def _burst(kind: str, per_store: list, calls_per_object: float, **figures) -> dict:
    return {"kind": kind, "deliveries": 3000, "objects": 1000, "stores": 5,
            "shares": [0.6, 0.1, 0.1, 0.1, 0.1], "quota": 150, "window_s": 3.0, "factor": 10.0,
            "worker_procs": 1, "db": "sqlite", "finished": True, "elapsed_s": 40.0,
            "lower_bound_s": 38.0, "429s": 0, "api_calls": 1000,
            "api_calls_per_object": calls_per_object, "same_batch_rereads": 0,
            "ideal_calls_per_object": 1 if kind == "products" else 3, "lost": 0,
            "alone": {"store": "store2", "finish_s": per_store[1].get("finish_alone_s"),
                      "429s": 0, "api_calls": 100, "machine_load": {}},
            "machine_load": {}, "per_store": per_store, **figures}


def test_a_small_store_is_judged_against_its_own_time_alone():
    fair = [_store("store1", 40.0), _store("store2", 9.0, alone=6.0)]
    md = markdown({"pacing_products": _burst("products", fair, 1.02)})
    assert "**met**" in _verdict(md, "7. product burst: small stores finish within 2×")
    assert "**met**" in _verdict(md, "7. product burst: small stores not stuck")
    assert "store2 9.0 s vs 6.0 s alone" in md
    starved = [_store("store1", 40.0), _store("store2", 30.0, alone=6.0)]
    md = markdown({"pacing_products": _burst("products", starved, 1.02)})
    assert "**missed**" in _verdict(md, "7. product burst: small stores finish within 2×")
    assert "**missed**" in _verdict(md, "7. product burst: small stores not stuck")


def test_one_read_per_product_per_batch_and_three_calls_per_order():
    stores = [_store("store1", 40.0), _store("store2", 9.0, alone=6.0)]
    # Read twice over the burst (edits in two batches) is within the rule; twice in one batch
    # is not.
    spread = markdown({"pacing_products": _burst("products", stores, 1.3)})
    assert "**met**" in _verdict(spread, "7. product burst: at most one API read per product")
    twice = markdown({"pacing_products": _burst("products", stores, 1.3,
                                                same_batch_rereads=2)})
    assert "**missed**" in _verdict(twice, "7. product burst: at most one API read per product")
    assert "**met**" in _verdict(markdown({"pacing_imports": _burst("imports", stores, 3.0)}),
                                 "8. order burst: at most 3 API calls per new order")
    missed = markdown({"pacing_imports": _burst("imports", stores, 3.2, **{"429s": 2})})
    assert "**missed**" in _verdict(missed, "8. order burst: at most 3 API calls per new order")
    assert "**missed**" in _verdict(missed, "8. order burst: zero 429s")


def test_a_read_in_the_batch_that_had_read_the_product_is_told_apart():
    """With one worker, a batch reads before it records: read 2 made before read 1's first
    delivery was recorded came in the same batch."""
    from bench.sections.bursts import same_batch_rereads
    served = {("7", 1): 10.0, ("7", 2): 20.0, ("8", 1): 10.0}
    assert same_batch_rereads({"7": [9.0, 15.0], "8": [9.0]}, served) == 0
    assert same_batch_rereads({"7": [9.0, 9.5], "8": [9.0]}, served) == 1
    assert same_batch_rereads({"7": [9.5, 9.0, 30.0]}, served) == 1  # read times come unsorted


def test_product_plan_edits_each_product_one_to_five_times_in_a_row():
    plan = product_plan(1000, random.Random(1))
    assert len(plan) == 1000 and {scope for _, scope in plan} == {"store/product/updated"}
    edits = {}
    for product, _ in plan:
        edits[product] = edits.get(product, 0) + 1
    assert list(edits) == list(range(1, len(edits) + 1))
    assert all(1 <= n <= 5 for n in edits.values()) and 2.5 < 1000 / len(edits) < 3.5


def test_import_plan_announces_every_other_new_order_by_its_payment():
    assert import_plan(3) == [(1, "store/order/created"), (2, "store/order/statusUpdated"),
                              (3, "store/order/created")]
