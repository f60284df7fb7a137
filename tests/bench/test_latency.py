"""The benchmarks' one percentile rule, on hand-worked cases."""

import pytest

from agent.bench.latency import percentile, summary


def test_nearest_rank_percentiles():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # sorted: 1 2 3 4 5
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 5.0
    assert percentile(values, 0.5) == 3.0  # index round(0.5 * 4) = 2
    assert percentile(values, 0.95) == 5.0  # index round(3.8) = 4
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 3.0  # index round(1.5) = 2 (round half to even)


def test_summary_and_refusals():
    assert summary([]) is None
    assert summary([0.12341, 0.2, 0.3]) == {"n": 3, "p50": 0.2, "p95": 0.3, "max": 0.3}
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="q must lie"):
        percentile([1.0], 1.5)
