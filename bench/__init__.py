"""Benchmarks (`make bench`), kept out of the test suite; see bench/run.py."""
