#!/usr/bin/env python
"""Microbenchmark of the CAM-consistency loss; the same as the ``camfast-bench`` command.

    python benchmarks/bench_loss.py --quick
    python benchmarks/bench_loss.py --help

The code lives in camfast/benchmark/loss.py so that the installed ``camfast-bench`` needs no
benchmarks/ folder; see docs/benchmarks.md for what is measured and how.
"""
import os
import sys

try:
    from camfast.benchmark import loss
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from camfast.benchmark import loss

if __name__ == "__main__":
    sys.exit(loss.main())
