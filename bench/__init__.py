"""Benchmarks: `make bench` runs every `bench/bench_*.py` and each prints a table.

Targets live here, never in timed unit tests; each benchmark measures its reference in the same
run and reports ratios, so results compare across machines.
"""
