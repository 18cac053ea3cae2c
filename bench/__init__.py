"""Gatehouse benchmarks: pytest-benchmark microbenchmarks (``bench_*.py``) and the load harness.

See docs/performance.md for how to run both and compare versions.
"""
