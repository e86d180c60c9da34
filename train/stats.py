"""Statistics for comparing repeated runs, on plain numbers (numpy and math only, no scipy).

Student t distribution (CDF through the regularized incomplete beta function, quantile by bisection), the
exact binomial CDF, McNemar's exact test, paired and Welch t-tests, and the sample sizes that would resolve
a difference. docs/train.md ("Comparing two configurations") shows the arithmetic.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x} is outside [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point; use the symmetry
        return 1.0 - betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (``df`` may be fractional, as in Welch's test)."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|): the two-sided p-value of a t statistic."""
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (bisection on ``t_cdf``; ``t_ppf(0.975, df)`` is the 95% CI multiplier)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"t_ppf: q={q} is outside (0, 1)")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def binom_cdf(k: int, n: int, p: float = 0.5) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space (math.lgamma)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p in (0.0, 1.0):
        return 1.0 if p == 0.0 else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    logs = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` pairs where only A is right and ``c`` where only B is right:
    the binomial test of min(b, c) out of b + c discordant pairs against p = 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binom_cdf(min(b, c), n, 0.5))


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent test examples: sqrt(p (1 - p) / n)."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n) if n > 0 else math.nan


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t; 0 for a single value)."""
    v = np.asarray(values, np.float64)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), 0.0
    return float(v.mean()), t_ppf(0.975, len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))


def _t_result(kind: str, diff: float, se: float, df: float, n_a: int, n_b: int) -> dict[str, float | int | str]:
    if se == 0.0:
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0.0 else 0.0
    else:
        t = diff / se
        p = t_two_sided_p(t, df)
    return {"test": kind, "n_a": n_a, "n_b": n_b, "diff": diff, "se": se, "df": df, "t": t, "p": p,
            "ci95": t_ppf(0.975, df) * se}


def paired_t(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int | str]:
    """Paired t-test of mean(a - b) = 0 (pairs in order): diff, se, df = n - 1, t, two-sided p, ci95 half-width."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if len(d) < 2:
        raise ValueError(f"paired t-test needs at least 2 pairs, got {len(d)}")
    return _t_result("paired", float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), len(d) - 1, len(d), len(d))


def welch_t(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int | str]:
    """Welch's unpaired t-test of mean(a) = mean(b), with the Welch-Satterthwaite degrees of freedom."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per group, got {len(x)} and {len(y)}")
    va, vb = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    se = math.sqrt(va + vb)
    if va + vb > 0:
        df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    else:
        df = float(len(x) + len(y) - 2)
    return _t_result("welch", float(x.mean() - y.mean()), se, float(df), len(x), len(y))


def spread_split(outcomes: np.ndarray) -> tuple[float, float]:
    """Split the variance across seeds of a per-seed test mean into (between-seed part, per-example part).

    ``outcomes[i, j]`` is seed i's score on test example j (1/0 correct, or A minus B in {-1, 0, 1}). The
    variance of the row means is the per-example part, mean_j var_i(outcomes[i, j]) / M, which shrinks with the
    test set size M, plus what is shared across examples (a seed that is better everywhere), which does not.
    Returned as variances of one seed's mean at this M: (shared, per-example); shared is at least 0.
    """
    x = np.asarray(outcomes, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"spread_split needs a (seeds >= 2, examples >= 1) array, got shape {x.shape}")
    total = float(x.mean(axis=1).var(ddof=1))
    per_example = float(x.var(axis=0, ddof=1).mean()) / x.shape[1]
    return max(0.0, total - per_example), per_example


def seeds_needed(diff: float, spread: float, limit: int = 100_000) -> int | None:
    """Fewest seeds n (per run) with t(0.975, n - 1) * spread / sqrt(n) <= |diff|: the 95% CI of a difference
    this size would exclude 0. ``spread`` is the SD of one seed's difference. None past ``limit`` or for diff 0."""
    if diff == 0.0 or not math.isfinite(spread):
        return None
    if spread == 0.0:
        return 2

    def resolves(n: int) -> bool:
        return t_ppf(0.975, n - 1) * spread / math.sqrt(n) <= abs(diff)

    lo, hi = 2, 2
    while not resolves(hi):
        if hi >= limit:
            return None
        lo, hi = hi, min(limit, hi * 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if resolves(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def test_size_needed(diff: float, seeds: int, shared_var: float, per_example_var: float, examples: int) -> int | None:
    """Test examples M at which, with ``seeds`` seeds, t(0.975, seeds - 1) * sqrt((shared + per_example * examples
    / M) / seeds) <= |diff|. The variances are those of one seed's difference at the current ``examples``
    (``spread_split``). None when the shared part alone is too wide: no test set would resolve ``diff``."""
    if diff == 0.0 or seeds < 2:
        return None
    budget = seeds * diff * diff / t_ppf(0.975, seeds - 1) ** 2 - shared_var
    if budget <= 0.0:
        return None
    if per_example_var <= 0.0:
        return examples
    return max(1, math.ceil(per_example_var * examples / budget))
