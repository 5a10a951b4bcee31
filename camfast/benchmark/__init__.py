"""Benchmarks: ``harness`` (timing, memory, bandwidth floor, tables, CSV, plot) and ``loss``
(``camfast-bench``, the CAM-consistency loss), which is built on it."""
