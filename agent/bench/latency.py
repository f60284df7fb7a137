"""Latency summaries shared by the benchmarks: one percentile rule for every figure printed."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank rule on the sorted values
    (index ``round(q * (n - 1))``), so the median of an even count is its upper middle value
    rounded to the nearer one. Raises ``ValueError`` on no values or ``q`` outside [0, 1]."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q}")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: Sequence[float], digits: int = 3) -> dict | None:
    """``{"n", "p50", "p95", "max"}`` of latencies in seconds, rounded to ``digits``; None for
    no values."""
    if not values:
        return None
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), digits),
        "p95": round(percentile(values, 0.95), digits),
        "max": round(max(values), digits),
    }
