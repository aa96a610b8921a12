"""Statistics over seeds: percentile-bootstrap confidence intervals of a mean (rliable-style
interval estimates), per value and per point of a curve, and a metric's summary over an
algorithm's seeds (`SeedStat`: a CI with MIN_SEEDS_FOR_CI or more seeds, each seed's value with
fewer)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

CONFIDENCE = 0.95
MIN_SEEDS_FOR_CI = 3   # fewer seeds: per-seed values instead of a bootstrap interval

_BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000  # resampled values held in memory at once


def _bootstrap_means(matrix: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement) of the rows of matrix [n, points]."""
    n, points = matrix.shape
    chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // max(1, n * points))
    out = np.empty((n_resamples, points))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = matrix[idx].mean(axis=1)
    return out


def bootstrap_ci_curve(matrix: Any, confidence: float = CONFIDENCE, n_resamples: int = 10_000,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap of the mean along axis 0 of matrix [seeds, points].

    Returns (mean, low, high), each of shape [points]. NaN marks a seed without data at a point:
    each point is bootstrapped over the seeds that have data there (points sharing the same set
    of seeds are resampled together), and a point where no seed has data is NaN in all three.
    One seed at a point gives a zero-width interval. Deterministic for a given seed.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2:
        raise ValueError(f"bootstrap_ci_curve expects a [seeds, points] matrix, got shape {m.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    points = m.shape[1]
    mean, low, high = (np.full(points, np.nan) for _ in range(3))
    if m.shape[0] == 0 or points == 0:
        return mean, low, high
    have = ~np.isnan(m)
    masks, group_of = np.unique(have.T, axis=0, return_inverse=True)
    group_of = np.asarray(group_of).reshape(-1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    for g, mask in enumerate(masks):
        if not mask.any():
            continue
        cols = np.flatnonzero(group_of == g)
        sub = m[np.ix_(mask, cols)]
        mean[cols] = sub.mean(axis=0)
        if sub.shape[0] == 1:
            low[cols] = high[cols] = sub[0]
            continue
        rng = np.random.default_rng(seed)
        means = _bootstrap_means(sub, n_resamples, rng)
        low[cols], high[cols] = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return mean, low, high


def bootstrap_ci(values: Iterable[float], confidence: float = CONFIDENCE, n_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Percentile bootstrap of the mean: (mean, low, high) of a `confidence` interval.

    Resamples the values with replacement `n_resamples` times (vectorised numpy, seeded, so
    the same input gives the same interval), and takes the (1-c)/2 and (1+c)/2 percentiles of
    the resampled means. NaNs are dropped; one value v gives (v, v, v); no value gives NaNs.
    """
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean, low, high = bootstrap_ci_curve(v[:, None], confidence, n_resamples, seed)
    return float(mean[0]), float(low[0]), float(high[0])


@dataclass(frozen=True)
class SeedStat:
    """A metric over an algorithm's seeds: the mean, a bootstrap CI (low, high) when there are
    at least MIN_SEEDS_FOR_CI values, else low = high = None, and the per-seed values."""

    mean: float
    low: float | None
    high: float | None
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def has_ci(self) -> bool:
        return self.low is not None


def seed_stat(values: Iterable[Any], min_seeds: int = MIN_SEEDS_FOR_CI) -> SeedStat | None:
    """SeedStat of the values (None and NaN dropped); None if no value is left."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return None
    if len(v) >= min_seeds:
        mean, low, high = bootstrap_ci(v)
        return SeedStat(mean, low, high, tuple(v))
    return SeedStat(float(np.mean(v)), None, None, tuple(v))
