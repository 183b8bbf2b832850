"""Benchmarks side by side with the peers. `python -m bench NAME` (NAME: a module here)."""
