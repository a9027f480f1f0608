"""Runnable benchmarks: each prints its figures and writes JSON (see the README)."""
