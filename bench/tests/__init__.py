"""Tests of the benchmark tooling itself (the load harness)."""
