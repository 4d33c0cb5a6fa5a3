"""The public path of run comparison, kept: ``pytest_meshperf.compare.compare_results`` (now verdicts/compare.py)."""
from __future__ import annotations

from pytest_meshperf.verdicts.compare import Comparison, MetricChange, compare_results

__all__ = ["Comparison", "MetricChange", "compare_results"]
