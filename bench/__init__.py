"""Benchmarks of dsar: ``make bench`` (``python -m bench``)."""
