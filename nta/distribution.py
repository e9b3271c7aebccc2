"""Size distribution: number-weighted histogram, summary statistics and the exosome window.

Inputs are per-track hydrodynamic diameters (nm) of the tracks included in the
distribution; outputs are histograms (1-nm bins, as the vendor's software reports) and a
summary dictionary whose keys carry their units.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DEFAULT_WINDOW_NM",
    "histogram",
    "mode_of",
    "window_fraction",
    "bootstrap_ci",
    "summarize_sizes",
    "size_distribution",
]

#: Default exosome (small extracellular vesicle) size window, nm.
DEFAULT_WINDOW_NM = (40.0, 150.0)


def _clean(d) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64).ravel()
    return d[np.isfinite(d) & (d > 0)]


def histogram(diameters_nm, *, bin_nm: float = 1.0, max_nm: float | None = None, weights=None):
    """Number-weighted histogram of diameters in fixed-width bins starting at 0 nm.

    Parameters
    ----------
    diameters_nm : array_like of float, shape (n,)
        Hydrodynamic diameters, nm; NaN and non-positive values are ignored.
    bin_nm : float
        Bin width, nm (1 nm, as NanoSight reports).
    max_nm : float, optional
        Upper edge, nm. Default: the 99.9th percentile × 1.5, at least 1000 nm, rounded up to 100 nm.
    weights : array_like of float, shape (n,), optional
        Per-particle weights (e.g. d² for surface-area or d³ for volume weighting).

    Returns
    -------
    edges : ndarray of float64, shape (m + 1,)
        Bin edges, nm.
    counts : ndarray of float64, shape (m,)
        Weighted count per bin (tracks per bin when unweighted).
    """
    d = np.asarray(diameters_nm, dtype=np.float64).ravel()
    ok = np.isfinite(d) & (d > 0)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()[ok]
    d = d[ok]
    if max_nm is None:
        top = float(np.quantile(d, 0.999)) * 1.5 if d.size else 1000.0
        max_nm = max(1000.0, math.ceil(top / 100.0) * 100.0)
    nb = int(math.ceil(max_nm / bin_nm))
    edges = np.arange(nb + 1, dtype=np.float64) * bin_nm
    counts, _ = np.histogram(d, bins=edges, weights=w)
    return edges, counts.astype(np.float64)


def mode_of(diameters_nm, *, weights=None) -> float:
    """Mode of a size sample: the peak of a Gaussian kernel density estimate in log-diameter.

    The bandwidth follows Silverman's rule of thumb in log space (Silverman, Density
    Estimation for Statistics and Data Analysis, 1986), so a skewed size sample is smoothed
    proportionally to size, as vendor software smooths its 1-nm histogram before taking
    the mode.

    Parameters
    ----------
    diameters_nm : array_like of float, shape (n,)
        Diameters, nm.
    weights : array_like of float, optional
        Per-particle weights.

    Returns
    -------
    float
        Mode, nm (NaN for an empty sample).
    """
    d = np.asarray(diameters_nm, dtype=np.float64).ravel()
    ok = np.isfinite(d) & (d > 0)
    w = np.ones(ok.sum()) if weights is None else np.asarray(weights, dtype=np.float64).ravel()[ok]
    d = d[ok]
    if d.size == 0:
        return float("nan")
    if d.size == 1:
        return float(d[0])
    x = np.log(d)
    sd = np.sqrt(np.cov(x, aweights=w)) if d.size > 1 else 0.0
    q75, q25 = np.quantile(x, [0.75, 0.25])
    spread = min(sd, (q75 - q25) / 1.349) if q75 > q25 else sd
    neff = w.sum() ** 2 / np.sum(w**2)
    bw = 0.9 * spread * neff ** (-0.2) if spread > 0 else 0.01
    grid = np.linspace(x.min() - 3 * bw, x.max() + 3 * bw, 2048)
    # Gaussian KDE evaluated by binning then convolving (fast and exact enough on a fine grid)
    h, e = np.histogram(x, bins=np.append(grid - (grid[1] - grid[0]) / 2, grid[-1] + (grid[1] - grid[0]) / 2), weights=w)
    from scipy.ndimage import gaussian_filter1d

    dens = gaussian_filter1d(h.astype(float), bw / (grid[1] - grid[0]), mode="constant")
    return float(np.exp(grid[np.argmax(dens)]))


def window_fraction(diameters_nm, window_nm=DEFAULT_WINDOW_NM, *, weights=None) -> float:
    """Number fraction of particles with diameter inside ``[low, high]`` nm.

    Parameters
    ----------
    diameters_nm : array_like of float, shape (n,)
        Diameters, nm.
    window_nm : (float, float)
        Window edges, nm, inclusive.

    Returns
    -------
    float
        Fraction in [0, 1]; NaN for an empty sample.
    """
    d = np.asarray(diameters_nm, dtype=np.float64).ravel()
    ok = np.isfinite(d) & (d > 0)
    w = np.ones(ok.sum()) if weights is None else np.asarray(weights, dtype=np.float64).ravel()[ok]
    d = d[ok]
    if d.size == 0 or w.sum() == 0:
        return float("nan")
    lo, hi = window_nm
    return float(w[(d >= lo) & (d <= hi)].sum() / w.sum())


def _wquantile(d, w, q):
    o = np.argsort(d)
    d, w = d[o], w[o]
    c = np.cumsum(w)
    c = (c - 0.5 * w) / c[-1]
    return np.interp(q, c, d)


def bootstrap_ci(diameters_nm, statistic, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """Percentile bootstrap confidence interval of a statistic, resampling tracks.

    Parameters
    ----------
    diameters_nm : array_like of float, shape (n,)
        Per-track diameters, nm.
    statistic : callable
        ``statistic(sample) -> float``.
    n_boot : int
        Bootstrap resamples.
    level : float
        Confidence level.
    seed : int
        Seed of the resampling (results are reproducible).

    Returns
    -------
    (float, float)
        Lower and upper bound; NaNs for fewer than 2 tracks.

    References
    ----------
    .. [1] Efron, B. & Tibshirani, R. J. An Introduction to the Bootstrap (1993), ch. 13.
    """
    d = _clean(diameters_nm)
    if d.size < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        stats[b] = statistic(d[rng.integers(0, d.size, d.size)])
    a = (1 - level) / 2
    lo, hi = np.nanquantile(stats, [a, 1 - a])
    return (float(lo), float(hi))


def summarize_sizes(diameters_nm, *, window_nm=DEFAULT_WINDOW_NM, n_boot: int = 1000, seed: int = 0) -> dict:
    """Number-weighted summary of per-track diameters.

    Parameters
    ----------
    diameters_nm : array_like of float, shape (n,)
        Diameters of the tracks included in the distribution, nm.
    window_nm : (float, float)
        Size window, nm (default 40–150 nm, the exosome range).
    n_boot : int
        Bootstrap resamples for the confidence intervals (resampling tracks).
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        ``tracks_valid``, ``mean_nm``, ``mode_nm``, ``sd_nm``, ``d10_nm``, ``d50_nm``,
        ``d90_nm``, ``window_nm``, ``window_fraction``, ``window_fraction_ci95``,
        ``mean_nm_ci95``, ``d50_nm_ci95``, ``mode_nm_ci95``, ``d50_in_window``,
        ``mode_in_window``. Statistics of an empty sample are NaN.
    """
    d = _clean(diameters_nm)
    lo, hi = float(window_nm[0]), float(window_nm[1])
    out = {"tracks_valid": int(d.size), "window_nm": [lo, hi]}
    if d.size == 0:
        nan = float("nan")
        out.update(mean_nm=nan, mode_nm=nan, sd_nm=nan, d10_nm=nan, d50_nm=nan, d90_nm=nan, window_fraction=nan,
                   window_fraction_ci95=[nan, nan], mean_nm_ci95=[nan, nan], d50_nm_ci95=[nan, nan],
                   mode_nm_ci95=[nan, nan], d50_in_window=False, mode_in_window=False)
        return out
    d10, d50, d90 = np.quantile(d, [0.1, 0.5, 0.9])
    out.update(
        mean_nm=float(d.mean()),
        mode_nm=mode_of(d),
        sd_nm=float(d.std(ddof=1)) if d.size > 1 else float("nan"),
        d10_nm=float(d10),
        d50_nm=float(d50),
        d90_nm=float(d90),
        window_fraction=window_fraction(d, (lo, hi)),
    )
    out["window_fraction_ci95"] = list(bootstrap_ci(d, lambda s: window_fraction(s, (lo, hi)), n_boot=n_boot, seed=seed))
    out["mean_nm_ci95"] = list(bootstrap_ci(d, np.mean, n_boot=n_boot, seed=seed))
    out["d50_nm_ci95"] = list(bootstrap_ci(d, np.median, n_boot=n_boot, seed=seed))
    out["mode_nm_ci95"] = list(bootstrap_ci(d, mode_of, n_boot=min(n_boot, 200), seed=seed))
    out["d50_in_window"] = bool(lo <= out["d50_nm"] <= hi)
    out["mode_in_window"] = bool(lo <= out["mode_nm"] <= hi)
    return out


def size_distribution(per_track, calibration, *, window_nm=DEFAULT_WINDOW_NM, n_boot: int = 1000, seed: int = 0):
    """The pipeline's distribution stage: per-track table in, summary and arrays out.

    Parameters
    ----------
    per_track : pandas.DataFrame
        From :func:`nta.diffusion.per_track_table`: ``diameter_nm`` (nm), ``included`` (bool),
        ``D_um2_s``, ``D_var_um4_s2``, ``n_steps``, ``sigma_loc_um``, ``mass_mean``.
    calibration : nta.calibration.Calibration
        Temperature (°C) and viscosity (mPa·s) for converting D to diameter.
    window_nm : (float, float)
        Size window, nm.
    n_boot : int
        Bootstrap resamples for confidence intervals.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    summary : dict
        As :func:`summarize_sizes`, plus ``distribution`` naming the estimator used.
    arrays : dict of ndarray
        For the ``/distribution`` group: ``bin_edges_nm`` (m + 1,), ``counts`` (m,), ...
    attrs : dict
        Attributes of the ``/distribution`` group (weighting, estimator).
    """
    if len(per_track):
        inc = per_track["included"].to_numpy(bool)
        d = per_track["diameter_nm"].to_numpy(float)[inc]
    else:
        d = np.zeros(0)
    summary = summarize_sizes(d, window_nm=window_nm, n_boot=n_boot, seed=seed)
    summary["distribution"] = "per-track histogram (number-weighted)"
    edges, counts = histogram(d)
    arrays = {"bin_edges_nm": edges, "counts": counts}
    attrs = {"weighting": "number", "kind": "per-track histogram, 1-nm bins"}
    return summary, arrays, attrs
