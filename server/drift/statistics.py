"""Two-sample tests and effect sizes of live counts against baseline counts in the same bins,
vectorised over a version's series (one padded row per series: no Python loop per series).

Numeric series (features, regression values, class probabilities): the two-sample
Kolmogorov-Smirnov statistic on the binned data -- the largest gap between the two empirical CDFs
at the bins' upper ends, in the order below, the bins, above, missing (a missing value sorts above
every number, so a change of the missing rate moves the CDF too). It equals
``scipy.stats.ks_2samp`` on data that has every value of a bin at one point of that bin (ties).
Against the raw values, with p_k, q_k the baseline and live shares of bin k,

    D_binned <= D_raw <= D_binned + max_k max(p_k, q_k)

(inside a bin each CDF rises by at most its own share), so with hundreds of quantile bins of the
training data the statistic misses at most a few thousandths of the raw one. Ties only make
the test conservative. The p-value is scipy's for (n, m): ``kstwo.sf(D, round(n m / (n + m)))``,
which is ``ks_2samp(method="asymp")`` and what ``ks_2samp``'s "auto" picks once either sample
exceeds 10,000 rows (a training baseline usually does); ``kstwo_sf`` computes it in numpy to
within 1e-3 of it (relative, for p >= 1e-4), since scipy's own call costs milliseconds a value.

Categorical series (categorical features, predicted labels): Pearson's chi-square test of
homogeneity on the 2 x K table live/baseline, without Yates' correction, as
``scipy.stats.chi2_contingency(table, correction=False)``. Cochran's rule: cells whose expected
count is below 5 in either row are pooled into one cell ("rare"), and that cell, while still below
5, into the kept cell with the fewest rows; empty cells are dropped.

Effect sizes: the Jensen-Shannon distance (base 2, in [0, 1]) of the two bin distributions
(``scipy.spatial.distance.jensenshannon``), and for numeric series the Wasserstein-1 distance in
the feature's own units between the finite values placed at their bin's midpoint (below at the
first edge, above at the last; ``scipy.stats.wasserstein_distance`` with weights).

The flag: Benjamini-Hochberg across a version's series in one view (features and predictions
together): a series is drifted when its BH-adjusted p-value (``q_value``,
``scipy.stats.false_discovery_control``) is at most ``alpha`` and it has at least its
``min_rows``. Under no drift at all, P(any series flagged in a window) <= alpha (for independent
or positively dependent series, as BH assumes).

Minimum rows, derived from each test: KS (valid at any size; ties make it conservative): the rows
at which a complete separation (D = 1) could be flagged at all, even at Bonferroni's level
alpha / k, under the limiting Kolmogorov distribution: n m / (n + m) >= kolmogi(alpha / k)^2.
Chi-square: the rows at which Cochran's rule keeps two cells of the baseline, i.e. 5 divided by
the second-largest baseline share (fewer rows than that pool everything into one cell: no test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.stats import kstwo

KS, CHI2 = "ks", "chi2"
COCHRAN = 5.0  # the least expected count a chi-square cell keeps
PSI_SMOOTHING = 0.5


@dataclass(frozen=True)
class SeriesBins:
    """What the tests need to know of one series: which slots of the count vector, the test,
    the baseline counts and, for numeric series, each slot's representative value."""

    offset: int
    baseline: Sequence[int]
    test: str  # KS | CHI2
    values: Sequence[float] = ()  # KS: each slot's point for Wasserstein (nan: not a number)


def numeric_points(edges: Sequence[float], below_above_missing: bool = True) -> list[float]:
    """Each numeric slot's point for the Wasserstein distance: below at the first edge, a bin at
    its midpoint, above at the last edge, missing not a number (nan)."""
    e = np.asarray(edges, dtype=np.float64)
    mids = ((e[:-1] + e[1:]) / 2).tolist()
    return [float(e[0]), *mids, float(e[-1]), math.nan] if below_above_missing else mids


def kstwo_sf(d: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``scipy.stats.kstwo.sf(d, n)`` for arrays, fast enough for every series of a window.

    scipy (Simard & L'Ecuyer's ``_kolmogn``) evaluates Smirnov's exact formula where
    n d^2 >= 2.2, which costs O(n) per value (5 ms at n = 5,000, 2 s at 10^6), and Durbin's
    matrix where d is tiny (~1 ms). Here, for n > 140 and d > 1/n: where scipy uses the
    Pelz-Good expansion the same terms in numpy (equal to ~1e-14); where scipy uses Smirnov's
    formula and n d^2 < 18, or Durbin's matrix (p > 0.9 there), the Pelz-Good expansion too
    (relative error <= 1e-3 for p >= 1e-4, absolute <= 5e-6 everywhere, measured at
    n = 141..100,000 against scipy, and tested); for n d^2 >= 18 (p < 5e-16) the DKW bound
    2 exp(-2 n d^2), above the exact value; Ruben-Gambino's exact tail as scipy. The rest
    (n <= 140, or d <= 1/n) is scipy's own call, element by element."""
    d = np.asarray(d, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    d, n = np.broadcast_arrays(d, n)
    out = np.full(d.shape, np.nan)
    todo = np.isfinite(d) & (n >= 1)
    out[todo & (d >= 1.0)] = 0.0
    out[todo & (d <= 0.0)] = 1.0
    todo &= (d > 0.0) & (d < 1.0)
    t = n * d
    nx2 = t * d
    big = todo & (n > 140) & (t > 1.0)
    rg = big & (t >= n - 1)  # Ruben-Gambino: exact
    dkw = big & ~rg & (nx2 >= 18.0)
    pelz = big & ~rg & ~dkw
    with np.errstate(all="ignore"):
        out[rg] = np.clip(2 * (1.0 - d[rg]) ** n[rg], 0.0, 1.0)
        out[dkw] = np.minimum(2 * np.exp(-2 * nx2[dkw]), 1.0)
        out[pelz] = np.clip(_pelz_good_sf(n[pelz], d[pelz]), 0.0, 1.0)
    slow = todo & ~(rg | dkw | pelz)
    for i in np.flatnonzero(slow):
        out.flat[i] = kstwo.sf(d.flat[i], n.flat[i])
    return out


_PI2, _PI4, _PI6 = np.pi**2, np.pi**4, np.pi**6
_SQRT2PI, _SQRT3 = np.sqrt(2 * np.pi), np.sqrt(3.0)
_MIN_LOG = -708


def _pelz_good_sf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """scipy's ``_kolmogn_PelzGood(n, x, cdf=False)`` for arrays. scipy's Horner loop over
    k = maxk..1 is the sum over odd m = 2k - 1 of c_m q^(m^2); here that sum as one matrix
    (terms up to the largest maxk of all elements: the extra ones are below 1e-17)."""
    z = np.sqrt(n) * x
    z2, z3, z4, z6 = z**2, z**3, z**4, z**6
    qlog = -_PI2 / 8 / z2
    maxk = int(np.ceil(16 * z.max(initial=0.0) / np.pi))
    k = np.arange(1, maxk + 1, dtype=np.float64)[:, None]
    m2 = (2 * k - 1) ** 2
    qm = np.exp(qlog[None, :] * m2)  # q^(m^2)
    k0 = qm.sum(axis=0)
    k1 = ((-z2)[None, :] + (_PI2 / 4) * m2) * qm
    k2 = ((6 * z6 + 2 * z4)[None, :] + ((2 * z4 - 5 * z2) * _PI2 / 4)[None, :] * m2
          + (_PI4 * (1 - 2 * z2) / 16)[None, :] * m2**2) * qm
    k3 = ((-30 * z6 - 90 * z**8)[None, :] + (_PI2 * (135 * z4 - 96 * z6) / 4)[None, :] * m2
          + (_PI4 * (-60 * z2 + 212 * z4) / 16)[None, :] * m2**2 + (_PI6 * (5 - 30 * z2) / 64)[None, :] * m2**3) * qm
    K0 = k0 * _SQRT2PI / z
    K1 = k1.sum(axis=0) * _SQRT2PI / (6 * z4)
    K2 = k2.sum(axis=0) * _SQRT2PI / (72 * z**7)
    K3 = k3.sum(axis=0) * _SQRT2PI / (6480 * z**10)
    # the sums over all integers k: K_2 gets (pi^2 k^2) q'^(k^2), K_3 (3 pi^2 k^2 z^2 - pi^4 k^4) q'^(k^2)
    k2s = k**2
    qk = np.exp((-_PI2 / 2 / z2)[None, :] * k2s)
    sqrt3z = _SQRT3 * z
    kspi = np.pi * k
    K2 = K2 + (k2s * qk).sum(axis=0) * (_PI2 * _SQRT2PI / (-36 * z3))
    K3 = K3 + ((sqrt3z[None, :] + kspi) * (sqrt3z[None, :] - kspi) * k2s * qk).sum(axis=0) * (_PI2 * _SQRT2PI / (216 * z6))
    sqrt_n = np.sqrt(n)
    sf = (((0.0 + (1.0 - K0)) - K1 / sqrt_n) - K2 / n) - K3 / (n * sqrt_n)  # scipy: sum([1 - K0, -K1, ...])
    return np.where(qlog < _MIN_LOG, 1.0, sf)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (``scipy.stats.false_discovery_control(p, method="bh")``) of the
    finite entries; nan stays nan (a series not tested is not counted in the family)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok) == 0:
        return out
    order = np.argsort(p[ok])
    ranked = p[ok][order] * len(ok) / np.arange(1, len(ok) + 1)
    ranked = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    out[ok[order]] = ranked
    return out


@dataclass
class Results:
    """One view's tests, one entry per series in the order given (nan or -1 where not tested)."""

    test: list[str]
    rows: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    dof: np.ndarray  # chi-square: degrees of freedom after pooling; KS: -1
    js_distance: np.ndarray
    wasserstein: np.ndarray  # numeric only
    psi: np.ndarray
    min_rows: np.ndarray
    drifted: np.ndarray


class _Group:
    """The series of one test as one padded matrix: an index matrix into the count vector
    (padding reads a zero appended past its end), the baseline counts, shares and CDFs."""

    def __init__(self, series: Sequence[SeriesBins]) -> None:
        width = max((len(s.baseline) for s in series), default=1)
        self.idx = np.full((len(series), width), -1, dtype=np.intp)
        self.base = np.zeros((len(series), width), dtype=np.float64)
        self.mask = np.zeros((len(series), width), dtype=bool)
        points = np.full((len(series), width), np.nan)
        for i, s in enumerate(series):
            k = len(s.baseline)
            self.idx[i, :k] = np.arange(s.offset, s.offset + k)
            self.base[i, :k] = s.baseline
            self.mask[i, :k] = True
            if len(s.values):
                points[i, :k] = s.values
        self.m = self.base.sum(axis=1)
        safe_m = np.where(self.m > 0, self.m, 1.0)[:, None]
        self.base_share = self.base / safe_m
        self.base_cdf = np.cumsum(self.base, axis=1) / safe_m
        self.bins = self.mask.sum(axis=1)
        self.base_entropy = _entropy(self.base_share)
        # PSI's smoothed baseline shares and their logs (padding: 1, log 0, masked out)
        self.psi_base = np.where(self.mask, (self.base + PSI_SMOOTHING) / (self.m + PSI_SMOOTHING * self.bins)[:, None], 1.0)
        self.psi_log_base = np.log(self.psi_base)
        # Wasserstein: the finite slots' points (missing has none) and the gaps between them;
        # the finite slots come first (missing is last), so their CDF is the same cumulative sum
        finite = np.isfinite(points)
        self.has_points = finite.any(axis=1)
        self.gaps = np.nan_to_num(np.where(finite[:, 1:] & finite[:, :-1], np.diff(points, axis=1), 0.0))
        self.last_finite = np.where(self.has_points, finite.sum(axis=1) - 1, 0)
        rows = np.arange(len(series))
        mf = np.cumsum(self.base, axis=1)[rows, self.last_finite] if len(series) else np.zeros(0)
        self.base_finite_cdf = np.cumsum(self.base, axis=1)[:, :-1] / np.where(mf > 0, mf, 1.0)[:, None]
        self.rows = rows


class DriftTests:
    """The tests of one version's series, set up once per load (the bins never change while
    it is loaded); ``run(counts)`` tests one view's count vector."""

    def __init__(self, series: Sequence[SeriesBins], alpha: float = 0.05, min_rows: int = 1) -> None:
        self.series = list(series)
        self.alpha = float(alpha)
        self.size = len(self.series)
        self.ks = np.array([s.test == KS for s in self.series], dtype=bool)
        self.cat = ~self.ks
        self._num = _Group([s for s in self.series if s.test == KS])
        self._cat = _Group([s for s in self.series if s.test != KS])
        self.min_rows = np.maximum(self._min_rows(), int(min_rows))  # a configured floor on top

    def _min_rows(self) -> np.ndarray:
        out = np.zeros(self.size, dtype=np.int64)
        never = np.iinfo(np.int64).max
        en_min = float(special.kolmogi(self.alpha / max(self.size, 1))) ** 2  # D = 1 flaggable at alpha / k
        m = self._num.m
        # n m / (n + m) >= en_min  <=>  n >= en_min m / (m - en_min)
        with np.errstate(divide="ignore", invalid="ignore"):
            ks = np.where(m > en_min, np.ceil(en_min * m / (m - en_min)), np.inf)
        out[self.ks] = np.where(np.isfinite(ks), ks, never).astype(np.int64)
        shares = -np.sort(-np.where(self._cat.mask, self._cat.base_share, 0.0), axis=1)
        second = shares[:, 1] if shares.shape[1] > 1 else np.zeros(len(shares))
        with np.errstate(divide="ignore"):
            cat = np.where(second > 0, np.ceil(COCHRAN / np.where(second > 0, second, 1.0)), np.inf)
        out[self.cat] = np.where(np.isfinite(cat), cat, never).astype(np.int64)
        return out

    def run(self, counts: np.ndarray) -> Results:
        # integer counts: their cumulative sums are exact and ~6x faster than in floats
        ext = np.append(np.asarray(counts, dtype=np.int64), 0)
        size = self.size
        stat, p, js, w, psi = (np.full(size, np.nan) for _ in range(5))
        n = np.zeros(size)
        dof = np.full(size, -1, dtype=np.int64)
        if self.ks.any():
            g = self._num
            live = ext[g.idx]
            nk = live.sum(axis=1)
            safe = np.where(nk > 0, nk, 1.0)
            cum = _row_cumsum(live)
            d = np.abs(cum / safe[:, None] - g.base_cdf).max(axis=1)
            big, small = np.maximum(nk, g.m), np.minimum(nk, g.m)  # scipy sorts them: the product's rounding
            en = np.round(big * small / np.where(big + small > 0, big + small, 1.0))
            ok = (nk > 0) & (g.m > 0)
            pk = np.full(len(nk), np.nan)
            pk[ok] = kstwo_sf(d[ok], en[ok])
            nf = cum[g.rows, g.last_finite]
            cdf_f = cum[:, :-1] / np.where(nf > 0, nf, 1.0)[:, None]
            wk = (np.abs(cdf_f - g.base_finite_cdf) * g.gaps).sum(axis=1)
            n[self.ks], stat[self.ks], p[self.ks] = nk, d, pk
            w[self.ks] = np.where(g.has_points & (nf > 0), wk, np.nan)
            js[self.ks] = _js_distance(live / safe[:, None], g.base_share, g.base_entropy)
            psi[self.ks] = _psi(live, nk, g)
        if self.cat.any():
            g = self._cat
            live = ext[g.idx]
            nc = live.sum(axis=1)
            L, B = pool_cells(live, g.base)
            stat[self.cat], p[self.cat], dof[self.cat] = _chi2_homogeneity(L, B)
            n[self.cat] = nc
            js[self.cat] = _js_distance(live / np.where(nc > 0, nc, 1.0)[:, None], g.base_share, g.base_entropy)
            psi[self.cat] = _psi(live, nc, g)
        none = n == 0
        for a in (stat, p, js, w, psi):
            a[none] = np.nan
        tested = np.isfinite(p) & (n >= self.min_rows)
        q = benjamini_hochberg(np.where(tested, p, np.nan))
        drifted = tested & (q <= self.alpha)
        return Results([KS if k else CHI2 for k in self.ks], n.astype(np.int64), stat, p, q, dof, js, w, psi,
                       self.min_rows.copy(), drifted)


def _psi(live: np.ndarray, n: np.ndarray, g: _Group) -> np.ndarray:
    """PSI of each row, PSI_SMOOTHING added to each of its own bins (not the padding, where
    live + smoothing over the total never equals the stored 1: masked)."""
    pl = np.where(g.mask, (live + PSI_SMOOTHING) / (n + PSI_SMOOTHING * g.bins)[:, None], 1.0)
    return ((pl - g.psi_base) * (np.log(pl) - g.psi_log_base)).sum(axis=1)


def _row_cumsum(x: np.ndarray) -> np.ndarray:
    """np.cumsum(x, axis=1) of integer rows as one flat cumulative sum less each row's start."""
    if x.size == 0:
        return x.copy()
    flat = np.cumsum(x.ravel()).reshape(x.shape)
    flat[1:] -= flat[:-1, -1:].copy()  # the previous rows' total, before it changes
    return flat


def pool_cells(live: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cochran's pooling, row by row of two S x K count matrices: cells whose expected count is
    below 5 in either sample move into one extra last cell; that cell, while its own expected
    count is still below 5, into the kept cell with the fewest rows. Returns S x (K + 1)."""
    live = np.asarray(live, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    n, m = live.sum(axis=1, keepdims=True), base.sum(axis=1, keepdims=True)
    total = np.where(n + m > 0, n + m, 1.0)
    t = live + base
    expected = np.minimum(t * n / total, t * m / total)
    rare = (t > 0) & (expected < COCHRAN)
    L = np.concatenate([np.where(rare, 0.0, live), (live * rare).sum(axis=1, keepdims=True)], axis=1)
    B = np.concatenate([np.where(rare, 0.0, base), (base * rare).sum(axis=1, keepdims=True)], axis=1)
    tr = L[:, -1] + B[:, -1]
    er = np.minimum(tr * n[:, 0] / total[:, 0], tr * m[:, 0] / total[:, 0])
    kept_t = np.where(~rare & (t > 0), t, np.inf)
    has_kept = np.isfinite(kept_t).any(axis=1)
    fold = (tr > 0) & (er < COCHRAN) & has_kept
    rows = np.flatnonzero(fold)
    target = kept_t[rows].argmin(axis=1)
    L[rows, target] += L[rows, -1]
    B[rows, target] += B[rows, -1]
    L[rows, -1] = 0.0
    B[rows, -1] = 0.0
    return L, B


def _chi2_homogeneity(L: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson's chi-square of the 2 x K tables [L_i; B_i] (empty columns dropped), no Yates."""
    n, m = L.sum(axis=1), B.sum(axis=1)
    total = n + m
    t = L + B
    cells = t > 0
    safe = np.where(total > 0, total, 1.0)
    el = t * (n / safe)[:, None]
    eb = t * (m / safe)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(cells, (L - el) ** 2 / el + (B - eb) ** 2 / eb, 0.0)
    stat = terms.sum(axis=1)
    dof = cells.sum(axis=1) - 1
    ok = (dof >= 1) & (n > 0) & (m > 0)
    p = np.where(ok, special.chdtrc(np.maximum(dof, 1), stat), np.nan)
    return np.where(ok, stat, np.nan), p, np.where(ok, dof, 0)


def _entropy(x: np.ndarray) -> np.ndarray:
    """-sum x log x of each row (0 log 0 = 0), nats."""
    return -(x * np.log(np.where(x > 0, x, 1.0))).sum(axis=1)


def _js_distance(p: np.ndarray, q: np.ndarray, hq: np.ndarray | None = None) -> np.ndarray:
    """Jensen-Shannon distance, base 2, row by row: the divergence as H(mid) - (H(p) + H(q)) / 2,
    which is scipy's sum of the two relative entropies rearranged (rows sum to 1; ``hq``: the
    baseline's entropies, computed once). Equal to scipy's to ~1e-12 of the divergence."""
    mid = (p + q) / 2.0
    js = _entropy(mid) - (_entropy(p) + (_entropy(q) if hq is None else hq)) / 2.0
    return np.sqrt(np.maximum(js / np.log(2.0), 0.0))
