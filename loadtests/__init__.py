"""Runnable benchmarks: each prints its figures and writes JSON (see docs/benchmarks.md)."""
