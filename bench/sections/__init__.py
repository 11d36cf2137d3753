"""The benchmark's sections, one module each: ``run(session)`` measures and returns the
section's part of ``bench/results/latest.json``; ``bench.report`` renders it."""
