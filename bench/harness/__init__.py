"""The end-to-end load harness: ``python -m bench.harness`` (see docs/performance.md)."""
