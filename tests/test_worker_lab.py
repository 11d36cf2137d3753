"""bench/worker_lab.py, the in-process worker bench, on a tiny kept database: it fills the
database once, then every round's deliveries are applied (and the second run reuses it)."""
from bench import worker_lab


def test_worker_lab_applies_every_round_and_keeps_its_database(tmp_path, capsys):
    assert worker_lab.main(["--orders", "20", "--size", "10", "--rounds", "2",
                            "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "round 1: 10 deliveries" in out and "round 2: 10 deliveries" in out
    assert "median:" in out
    kept = list(tmp_path.glob("worker-lab-20.db"))
    assert kept
    size = kept[0].stat().st_size
    assert worker_lab.main(["--orders", "20", "--size", "10", "--rounds", "1",
                            "--dir", str(tmp_path)]) == 0
    assert "round 1: 10 deliveries" in capsys.readouterr().out
    assert kept[0].stat().st_size >= size  # the same file, grown by the new round's rows
