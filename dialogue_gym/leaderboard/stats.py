"""The leaderboard's statistics: bootstrap intervals, the normalised score, pass^k and tied ranks.

* Intervals are percentile bootstrap intervals of the mean (numpy, seeded): resample the values
  with replacement ``n_resamples`` times, take the mean of each resample, and report the 2.5th and
  97.5th percentiles of those means.
* The normalised score maps a mean return onto 0 = the naive reference agent, 100 = the oracle
  (the reference means are taken as constants, so the interval reflects the agent's variation).
* pass^k (tau-bench): the chance that ``k`` i.i.d. trials of the same task all succeed, estimated
  per task from ``n`` trials with ``c`` successes by the unbiased ``C(c, k) / C(n, k)`` and averaged
  over tasks.
* Ranks treat overlapping intervals as ties: an agent's rank is 1 + the number of agents whose
  interval lies wholly above its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    mean: float
    lo: float
    hi: float

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "—"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


NAN = Interval(math.nan, math.nan, math.nan)


def bootstrap_means(
    values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of ``values``; seeded."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"need a non-empty 1-d sequence of values, got shape {x.shape}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    return x[idx].mean(axis=1)


def percentile_interval(mean: float, draws: np.ndarray, level: float = LEVEL) -> Interval:
    """``mean`` with the central ``level`` percentile interval of bootstrap ``draws``."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(mean), float(lo), float(hi))


def bootstrap_ci(
    values: Sequence[float],
    n_resamples: int = N_RESAMPLES,
    seed: int | Sequence[int] = 0,
    level: float = LEVEL,
) -> Interval:
    """The mean of ``values`` with its percentile bootstrap interval."""
    draws = bootstrap_means(values, n_resamples, seed)
    return percentile_interval(float(np.mean(values)), draws, level)


def normalise(value: float | np.ndarray, naive: float, oracle: float) -> float | np.ndarray:
    """``value`` on the scale 0 = ``naive``, 100 = ``oracle`` (NaN when they coincide)."""
    if not (math.isfinite(naive) and math.isfinite(oracle)) or oracle == naive:
        return value * math.nan
    return 100.0 * (value - naive) / (oracle - naive)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass^k from ``n`` trials with ``c`` successes: C(c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    return math.comb(c, k) / math.comb(n, k)


def pass_k(trials_per_task: Sequence[Sequence[bool]], k: int) -> float:
    """pass^k averaged over tasks; each task's list holds its trials' successes (NaN if no task
    has ``k`` trials)."""
    per_task = [pass_hat_k(len(t), sum(bool(s) for s in t), k) for t in trials_per_task if len(t) >= k]
    return float(np.mean(per_task)) if per_task else math.nan


def tied_ranks(intervals: Sequence[Interval]) -> list[int]:
    """1 + the number of intervals wholly above each one: overlapping intervals tie.

    An interval with a NaN bound gets no rank (0)."""
    out = []
    for a in intervals:
        if math.isnan(a.lo) or math.isnan(a.hi):
            out.append(0)
            continue
        out.append(1 + sum(b.lo > a.hi for b in intervals if not math.isnan(b.lo)))
    return out
