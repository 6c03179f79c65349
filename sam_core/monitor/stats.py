"""The statistics behind the signals: percentiles, the population stability index, clicks per object.

PSI (population stability index) of a feature between a reference sample ``r`` and a current
sample ``c``: bin both on the reference's quantiles and sum ``(c_i - r_i) * ln(c_i / r_i)`` over
the bins' shares. 0 = the same distribution; > 0.1 some shift; > 0.2 a shift worth acting on
(the usual rule of thumb, made for large samples). Bins: the reference's deciles, fewer when
the reference is small (at least :data:`MIN_PER_BIN` reference values per bin).

Like every divergence estimated from samples, PSI is biased upward on small samples: for two
samples of the *same* distribution its expected value is about ``(k - 1) * (1/n_r + 1/n_c)``
for ``k`` bins (:attr:`PSIResult.noise`: 0.36 for 10 bins and 50 images on each side). Each PSI
therefore comes with the p-value of the matching chi-square test (``n_r n_c / (n_r + n_c) * PSI``
is about chi-square with ``k - 1`` degrees of freedom when nothing changed), and the drift rules
fire only when the PSI is above its threshold *and* the p-value is small: a shift that sampling
noise cannot explain. Fewer bins would lower the noise but miss shifts of a part of the
inputs (a third of the images much darker moves a median split by only ~0.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_PER_BIN", "PSIResult", "chi2_sf", "clicks_per_object", "percentile", "psi"]

#: Fewest reference values per PSI bin (the chi-square test's rule of thumb).
MIN_PER_BIN = 5


def percentile(values: np.ndarray, p: float) -> float | None:
    """Nearest-rank percentile of the finite ``values`` (an observed value), None when there are none.

    The same definition as ``sam_core.runlog.summarize``.
    """
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    return float(np.percentile(v, p, method="inverted_cdf"))


def mean(values: np.ndarray) -> float | None:
    """Mean of the finite values, None when there are none."""
    v = values[np.isfinite(values)]
    return float(v.mean()) if v.size else None


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for X chi-square with integer ``dof`` >= 1 degrees of freedom (exact closed forms)."""
    if dof < 1:
        raise ValueError("dof must be >= 1")
    if x <= 0:
        return 1.0
    half = x / 2.0
    if dof % 2 == 0:  # e^{-x/2} * sum_{i < dof/2} (x/2)^i / i!
        term, total = 1.0, 1.0
        for i in range(1, dof // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    # odd: erfc(sqrt(x/2)) + sqrt(2x/pi) e^{-x/2} * sum_{i=1}^{(dof-1)/2} x^{i-1} / (1*3*...*(2i-1))
    total, term = 0.0, 1.0
    for i in range(1, (dof - 1) // 2 + 1):
        term = 1.0 if i == 1 else term * x / (2 * i - 1)
        total += term
    return min(1.0, math.erfc(math.sqrt(half)) + math.sqrt(2 * x / math.pi) * math.exp(-half) * total)


@dataclass(frozen=True)
class PSIResult:
    """One feature's drift: ``psi`` over ``bins`` bins, the chi-square ``p_value``, sample sizes and medians."""

    psi: float
    bins: int
    p_value: float
    n_ref: int
    n_cur: int
    ref_median: float
    cur_median: float

    @property
    def noise(self) -> float:
        """The PSI expected when nothing changed, from sampling alone: ``(bins - 1) * (1/n_ref + 1/n_cur)``."""
        return (self.bins - 1) * (1.0 / self.n_ref + 1.0 / self.n_cur)

    @property
    def direction(self) -> str:
        """Where the current median sits against the reference's: "higher" or "lower"."""
        return "higher" if self.cur_median >= self.ref_median else "lower"


def psi(reference: np.ndarray, current: np.ndarray, *, max_bins: int = 10) -> PSIResult | None:
    """PSI of ``current`` against ``reference`` (finite values only; see the module notes).

    Bins: the reference's quantiles, ``k = clip(n_ref // MIN_PER_BIN, 2, max_bins)`` of them
    (fewer when values repeat: equal edges merge); shares are smoothed with half a count per bin
    so that an empty bin stays finite. Returns None when either sample is empty.
    """
    ref = np.asarray(reference, np.float64)
    cur = np.asarray(current, np.float64)
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return None
    k = int(np.clip(ref.size // MIN_PER_BIN, 2, max(2, max_bins)))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, k + 1)[1:-1], method="inverted_cdf"))
    # bin i holds edges[i-1] < x <= edges[i]: a repeated value stays in one bin
    n_bins = edges.size + 1
    r_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=n_bins).astype(np.float64)
    c_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=n_bins).astype(np.float64)
    r = (r_counts + 0.5) / (ref.size + 0.5 * n_bins)
    c = (c_counts + 0.5) / (cur.size + 0.5 * n_bins)
    value = float(np.sum((c - r) * np.log(c / r)))
    stat = value * ref.size * cur.size / (ref.size + cur.size)
    p = chi2_sf(stat, n_bins - 1) if n_bins > 1 else 1.0
    return PSIResult(value, n_bins, p, int(ref.size), int(cur.size), float(np.median(ref)), float(np.median(cur)))


@dataclass(frozen=True)
class ObjectClicks:
    """Clicks per interactive object: ``clicks`` (n,) int, ``exported`` (n,) bool, ``first_t`` (n,) float.

    ``clicks`` counts the object's ``ui`` runs up to its first export when it was exported
    (clicks until export), else all of them (clicks until the visitor stopped).
    """

    ids: np.ndarray
    clicks: np.ndarray
    exported: np.ndarray
    first_t: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def clicks_per_object(object_id: np.ndarray, source: np.ndarray, t: np.ndarray) -> ObjectClicks:
    """Clicks per object from the ``object_id``, ``source`` and ``t`` columns (log order).

    Rows without an object id, and sources other than ``ui`` (a click) and ``ui-export``,
    are ignored. Vectorised: the ids are numbered once, the rest is numpy.
    """
    click = source == "ui"
    export = source == "ui-export"
    rows = np.flatnonzero((click | export) & (object_id != None))  # noqa: E711 (elementwise on objects)
    codes_of: dict[str, int] = {}
    codes = np.fromiter(
        (codes_of.setdefault(o, len(codes_of)) for o in object_id[rows].tolist()), np.int64, count=rows.size
    )
    k = len(codes_of)
    is_export = export[rows]
    first_export = np.full(k, np.iinfo(np.int64).max)
    np.minimum.at(first_export, codes[is_export], rows[is_export])
    counted = ~is_export & (rows < first_export[codes])  # clicks after the first export do not count
    clicks = np.bincount(codes[counted], minlength=k).astype(np.int64)
    first_t = np.full(k, np.nan)
    _, first_pos = np.unique(codes, return_index=True)  # each object's first row
    first_t[codes[first_pos]] = t[rows[first_pos]]
    return ObjectClicks(
        np.array(list(codes_of), object),
        clicks,
        first_export < np.iinfo(np.int64).max,
        first_t,
    )
