"""Paired ratios with a bootstrap confidence interval, shared by the benchmarks."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator


def bootstrap_ci(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """Bootstrap 95% confidence interval of the median."""
    rng = random.Random(1)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds)]


def paired_ratio(times: list[float], base: list[float]) -> tuple[float, float, float]:
    """``(median, low, high)`` of the per-round ratios ``times[i] / base[i]``.

    Each round's figure against the baseline of the same round: load that comes and goes on a
    shared machine hits both sides of a ratio, not just one configuration's median.
    """
    ratios = [a / b for a, b in zip(times, base, strict=True)]
    lo, hi = bootstrap_ci(ratios)
    return statistics.median(ratios), lo, hi


def beside_bare(rng: random.Random, tools: list[str], bare: str) -> Iterator[tuple[str, str]]:
    """``(who runs now, whose turn it is)``: every tool's turn next to a turn of ``bare``.

    The tools come in shuffled order, each with its bare neighbour before or after it at random:
    the load on a shared machine changes over seconds, so a ratio between neighbours cancels it
    better than one against a bare turn further away.
    """
    order = list(tools)
    rng.shuffle(order)
    for tool in order:
        pair = [tool, bare]
        rng.shuffle(pair)
        for who in pair:
            yield who, tool
