"""bench/trickle_lab.py measures what it says: every delivery goes through the intake, the
worker and the sender to its receiver, one at a time, and its statements are counted."""
from __future__ import annotations

from bench import trickle_lab


def test_the_trickle_lab_carries_each_delivery_to_the_receiver(tmp_path):
    report = trickle_lab.run(f"sqlite:///{tmp_path}/trickle.db", deliveries=4, warmup=1)
    assert report["deliveries"] == 4
    assert len(trickle_lab._Receiver.received) == 5  # one signed event per delivery
    assert all(r.startswith("evt_") for r in trickle_lab._Receiver.received)
    # the worker's claim and batch of one delivery run statements, and the count reaches it
    assert report["worker"]["statements"]["p50"] >= 5
    assert report["worker"]["cpu_ms"]["p50"] > 0 and report["sender"]["wall_ms"]["p50"] > 0
