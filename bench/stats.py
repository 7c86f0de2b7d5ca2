"""Percentiles of latency samples (microseconds in, milliseconds out).

Nearest-rank on the sorted samples: p99.9 of 10,000 samples is the 9,990th.
Empty input gives NaN so a missing number is visible, never a fake zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentiles(samples_us: Iterable[int], ps: Sequence[float]) -> tuple[float, ...]:
    data = sorted(samples_us)
    if not data:
        return tuple(math.nan for _ in ps)
    out: list[float] = []
    n = len(data)
    for p in ps:
        rank = max(1, math.ceil(p / 100 * n))
        out.append(round(data[min(rank, n) - 1] / 1000, 2))
    return tuple(out)
