"""Analysis: decide from sampled time series what leaks. Pure functions; never prints."""

from __future__ import annotations

from heapwatch.analysis.findings import (
    Analysis,
    AnalysisParams,
    analyze,
    analyze_run,
    finding_series,
)
from heapwatch.analysis.tree import finding_points

__all__ = ["Analysis", "AnalysisParams", "analyze", "analyze_run", "finding_points",
           "finding_series"]
