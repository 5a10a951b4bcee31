"""Evaluation of camfast-train runs: pure metrics, the fixed attribute classifier, FID
feature extractors and the run evaluation (camfast-eval). See docs/evaluation.md."""
from . import metrics

__all__ = ["metrics"]
