"""Metrics (MONAI's) on full-resolution label maps in their own geometry, and scoring files (``tskd evaluate``)."""

from tskd.evaluation.metrics import CaseMetrics, case_metrics, summarize_metrics

__all__ = ["CaseMetrics", "case_metrics", "summarize_metrics"]
