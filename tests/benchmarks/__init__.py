"""Benchmarks run by `make bench` (`python -m tests.benchmarks`), never by pytest.

Each `bench_*` module exposes `run() -> list[Row]`; numbers are reported next to a baseline
measured in the same process and run, never asserted.
"""
