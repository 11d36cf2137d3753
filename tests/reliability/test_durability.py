"""Durability (CI version): a burst over several channels while gunicorn workers
and worker processes are killed with SIGKILL at random; the long version is ``python -m
bench.chaos`` (2,000 deliveries; figures in docs/reliability.md)."""
from __future__ import annotations

from bench.chaos import run, summary


def test_nothing_acknowledged_is_lost_and_nothing_applied_twice_under_kill_9(database_url,
                                                                               tmp_path):
    result = run(database_url, deliveries=250, channels=3, web_workers=3, worker_procs=3,
                 seed=7, log_dir=tmp_path / "live", kill_interval=(0.3, 1.0),
                 settle_timeout=180, chaos_seconds=25, min_burst_seconds=10,
                 out=lambda m: print(m))
    print("durability:", summary(result))
    print("durability counts:", {k: v for k, v in result.items() if k != "violations"})
    assert result["kills_web"] > 0 and result["kills_worker"] > 0, "nothing was killed"
    assert result["lost"] == 0, result["violations"]
    assert result["applied_twice"] == 0, result["violations"]
    assert result["wrong_delivery_id"] == 0, result["violations"]
    assert result["never_acknowledged"] == 0  # every refused delivery was accepted when re-sent
    assert result["stored"] == result["deliveries_sent"] == 250
    assert result["applied"] == 250, result["violations"]
    # no change without its event, no event without its change
    assert result["events_mismatch"] == 0, result["violations"]
    assert result["events"] == 250
