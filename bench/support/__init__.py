"""Helpers shared by the microbenchmarks and the load harness."""
