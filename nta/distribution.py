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
    "make_grid",
    "smoothing_matrix",
    "FTLAModel",
    "deconvolve",
    "bootstrap_deconvolved",
    "grid_statistics",
    "binned_histogram",
    "find_peaks",
    "weighted",
    "WEIGHTING_POWERS",
    "size_intensity",
    "plot_size_intensity",
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
        Lower and upper bound; NaNs for fewer than 2 tracks or ``n_boot`` < 1.

    References
    ----------
    .. [1] Efron, B. & Tibshirani, R. J. An Introduction to the Bootstrap (1993), ch. 13.
    """
    d = _clean(diameters_nm)
    if d.size < 2 or n_boot < 1:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        stats[b] = statistic(d[rng.integers(0, d.size, d.size)])
    a = (1 - level) / 2
    lo, hi = np.nanquantile(stats, [a, 1 - a])
    return (float(lo), float(hi))


#: Elements (resamples × tracks) gathered at once by :func:`_summary_cis` (2 MB of float64).
#: Results do not depend on it. At 2 000 000 its blocks (the index, the gathered sizes and
#: the median's copy) were the peak of a long run's memory, growing with the number of
#: tracks; measured with tracemalloc (1000 resamples): 549 / 2142 / 4011 tracks peak 14.0 /
#: 32.3 / 48.1 MB at 2 000 000, 6.2 / 6.0 / 6.0 MB at 250 000, in the same time (0.31–0.37 s)
#: and with bit-identical CIs.
_SUMMARY_BOOT_ELEMENTS = 250_000


def _summary_cis(d, window_nm, *, n_boot: int, seed: int, level: float = 0.95) -> dict:
    """The bootstrap CIs of :func:`summarize_sizes`, each equal to its :func:`bootstrap_ci`.

    ``bootstrap_ci(d, stat, n_boot=n, seed=seed)`` draws resample b as the b-th
    ``rng.integers(0, n_tracks, n_tracks)`` of ``default_rng(seed)`` whatever ``stat`` is, so
    the window-fraction, mean, median and mode CIs (the mode on the first ``min(n_boot, 200)``
    resamples) share their resamples: they are drawn once here, in the same order, and the
    mean, median and window fraction are evaluated on blocks of resamples at once (row-wise
    ``mean`` / ``median`` / counts: bit-identical to the per-resample calls).

    Parameters
    ----------
    d : ndarray of float64, shape (n,)
        Cleaned diameters (finite, > 0), nm.
    window_nm : (float, float)
        Window edges, nm, inclusive.
    n_boot : int
        Resamples.
    seed : int
        Seed, as :func:`bootstrap_ci`.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``window_fraction_ci95``, ``mean_nm_ci95``, ``d50_nm_ci95``, ``mode_nm_ci95``
        ([low, high], nm; the fraction unitless); NaNs for fewer than 2 tracks or ``n_boot`` < 1.
    """
    keys = ("window_fraction_ci95", "mean_nm_ci95", "d50_nm_ci95", "mode_nm_ci95")
    n_boot = int(n_boot)
    if d.size < 2 or n_boot < 1:
        return {k: [float("nan"), float("nan")] for k in keys}
    lo, hi = window_nm
    n_mode = min(n_boot, 200)
    rng = np.random.default_rng(seed)
    frac, mean, med, mode = np.empty(n_boot), np.empty(n_boot), np.empty(n_boot), np.empty(n_mode)
    block = max(1, _SUMMARY_BOOT_ELEMENTS // d.size)
    for b0 in range(0, n_boot, block):
        nb = min(block, n_boot - b0)
        x = d[np.stack([rng.integers(0, d.size, d.size) for _ in range(nb)])]  # (nb, n): resamples b0 ...
        frac[b0:b0 + nb] = np.count_nonzero((x >= lo) & (x <= hi), axis=1) / float(d.size)
        mean[b0:b0 + nb] = x.mean(axis=1)
        med[b0:b0 + nb] = np.median(x, axis=1)
        for j in range(nb):
            if b0 + j < n_mode:
                mode[b0 + j] = mode_of(x[j])
    a = (1 - level) / 2
    return {k: [float(v) for v in np.nanquantile(s, [a, 1 - a])] for k, s in zip(keys, (frac, mean, med, mode))}


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
    out.update(_summary_cis(d, (lo, hi), n_boot=n_boot, seed=seed))
    out["d50_in_window"] = bool(lo <= out["d50_nm"] <= hi)
    out["mode_in_window"] = bool(lo <= out["mode_nm"] <= hi)
    return out


# =========================================================================================
# Finite-track-length adjustment: maximum-likelihood deconvolution on a size grid
# =========================================================================================

#: Grid spacing in ln(d): 0.02 (2 % per point); see :func:`make_grid`.
GRID_STEP_LOG = 0.02
#: Default smoothness prior strength: the EMS kernel SD in ln(d). 0 = plain ML-EM, with
#: the iteration cap below as the (implicit, Richardson–Lucy-style) regulariser. Evidence
#: (benchmarks/accuracy.py videos and tests/test_distribution.py synthetic tracks): EMS
#: smoothing is applied every iteration, so its effective width is far larger than the
#: kernel: SD 0.02–0.05 merged a 70+130 nm mixture (800 synthetic tracks) into one peak,
#: 0.01 moved the D50 of the 100+150 nm video by −8.9 % (ML-EM: +1.0 %); 0.005 changed
#: nothing measurable against 0. Hence 0 by default; ``smooth_log`` stays an option.
DEFAULT_SMOOTH_LOG = 0.0
#: EM stopping rule: stop when no grid weight changes by more than DEFAULT_TOL in one
#: iteration, or after DEFAULT_MAX_ITER iterations. Evidence (same videos, ML-EM): at 300
#: iterations the 100+150 nm D50 was −5.4 % off (under-resolved), at 3000 the 400 nm
#: monodisperse sample split into two peaks (410 + 336 nm) and its D50 drifted to +3.1 %;
#: 1000 gave −0.2…+2.2 % on the monodisperse videos and resolved both 1.5-ratio mixtures.
DEFAULT_TOL = 1e-7
DEFAULT_MAX_ITER = 1000
#: Outlier weight ε of each track's likelihood (see :class:`FTLAModel`): every track is
#: modelled as ``(1 − ε) × Gamma(D̂ | D_j) + ε × q(D̂)``, q uniform in ln D̂ over the grid's
#: range of D. A fixed prior, not fitted: fitted jointly with the grid weights by EM, ε goes
#: to 0, because the unregularised ML distribution can always put a spike on a stray
#: track (measured: ε̂ < 10⁻⁴ on all ten benchmark videos as an extra EM component, plain SD
#: unchanged; 0–0.011 with leave-one-out responsibilities, see :func:`deconvolve`). Evidence
#: for 0.05 (benchmark per-track tables, 2026-11-29; plain SD / mean, truth 4.6–5.1 %):
#: ε = 0 / 0.02 / 0.05 / 0.10 gave 100 nm 28.6 / 8.6 / 5.4 / 4.3 %, dense 100 nm 23.3 /
#: 9.5 / 5.4 / 4.2 %, short 100 nm 8.0 / 7.2 / 5.8 / 1.8 %, 60 nm 15.2 / 13.1 / 8.7 / 3.6 %,
#: 200 and 400 nm 27.7 → 23.0 % and 39.5 → 32.8 % at 0.05 (their stray weight is in groups
#: of mislinked tracks, which a per-track floor does not absorb); D50s moved ≤ 0.5 %,
#: mixture peaks and fractions ≤ 0.02, but the 100+150 nm window fraction error grew from
#: +0.082 to +0.105. In the same videos 17–35 % of the included tracks mixed points of
#: two particles (matched to the simulator's true positions), so ε = 0.05 is not an
#: implausible mislink rate. Cost: a population owning fewer than about
#: ε q / ((1 − ε) p) ≈ 1 % of the tracks (p the Gamma density at its peak) is treated as
#: outliers. 0 restores plain ML.
DEFAULT_OUTLIER_WEIGHT = 0.05
#: Bootstrap of the deconvolved statistics: at most this many resamples, each a warm-
#: started EM from the full-sample solution with at most BOOT_MAX_ITER iterations.
BOOT_MAX_RESAMPLES = 200
BOOT_MAX_ITER = 200
#: Peaks: minimum number fraction of a peak, and the valley-to-peak ratio above which two
#: neighbouring maxima are one peak.
PEAK_MIN_FRACTION = 0.05
#: Quantiles Φ(−1), Φ(+1) of the standard normal: ``sd_robust_nm`` is half the distance
#: between them (see :func:`grid_statistics`).
ROBUST_SD_QUANTILES = (0.15865525393145707, 0.8413447460685429)
PEAK_VALLEY_RATIO = 0.6
#: Extra smoothing (Gaussian SD in ln d) of the density on which peaks are sought: 0.06,
#: because at 0.04 the ML-EM spikes of the 200 nm video formed two peaks (192 + 254 nm)
#: while 0.06–0.08 merged them and still separated the 80+120 nm mixture (ln ratio 0.41).
PEAK_SMOOTH_LOG = 0.06
#: Track-length model of the deconvolution (:func:`fit_length_aware`): tracks are put in
#: this many quantile bins of their number of steps N, and the bin's probability given the
#: size is a proportional-odds model in ln(d). Evidence (benchmarks/accuracy.py, 1500-frame
#: videos, 2026-11-30): 3, 5 and 8 bins gave the same mixture fractions within 0.03; 5 bins
#: keep ≥ 100 tracks per bin in those videos.
LENGTH_BINS = 5
#: SD of the zero-mean Gaussian prior on the proportional-odds slope β (per unit ln d).
#: Without it, in a monodisperse sample (no spread of sizes to tie N to) β ran to −14…+16
#: and turned length-dependent estimation noise into spurious width (short 100 nm video:
#: robust SD 1.8 → 8.9 % of the mean, truth 4.9 %); with SD 2 the fitted slopes were
#: −1.4…+2.0 on the seven monodisperse videos (plain and robust SD within 1.3 pp of the
#: plain FTLA's) and 1.7–3.1 on the three mixtures, where the data determine it (SD 3:
#: 1.8–3.3); −0.13 on the real bulk_water recording.
LENGTH_SLOPE_PRIOR_SD = 2.0
#: EM iterations between two updates of the track-length model (an ECM cycle). 10 and 50
#: gave the same fractions within 0.02 and D50s within 0.3 % on the benchmark videos; 50
#: does a fifth of the updates.
LENGTH_MSTEP_EVERY = 50


def make_grid(diameters_nm, *, step_log: float = GRID_STEP_LOG, lo_nm: float | None = None, hi_nm: float | None = None) -> np.ndarray:
    """Log-spaced diameter grid for the deconvolution.

    From ``min(10 nm, half the 1st percentile of the per-track sizes)`` to ``5 × the 99th
    percentile`` (at least 300 nm), with ``step_log`` spacing in ln(d) (2 % per point by
    default: finer than the resolution that tracks of tens of steps allow, coarse enough
    to keep the EM fast), at most 600 points.

    Parameters
    ----------
    diameters_nm : array_like of float, shape (n,)
        Per-track diameters, nm (only their percentiles are used).
    step_log : float
        Spacing in ln(d).
    lo_nm, hi_nm : float, optional
        Explicit ends, nm.

    Returns
    -------
    ndarray of float64, shape (G,)
        Grid diameters, nm, ascending.
    """
    d = _clean(diameters_nm)
    if lo_nm is None:
        lo_nm = min(10.0, 0.5 * float(np.quantile(d, 0.01))) if d.size else 10.0
    if hi_nm is None:
        hi_nm = max(300.0, 5.0 * float(np.quantile(d, 0.99))) if d.size else 1000.0
    n = int(math.ceil(math.log(hi_nm / lo_nm) / step_log)) + 1
    n = min(max(n, 50), 600)
    return np.exp(np.linspace(math.log(lo_nm), math.log(hi_nm), n))


def _log_edges(grid):
    lg = np.log(grid)
    mid = 0.5 * (lg[1:] + lg[:-1])
    h0 = lg[1] - lg[0] if lg.size > 1 else 0.01
    h1 = lg[-1] - lg[-2] if lg.size > 1 else 0.01
    return np.exp(np.concatenate([[lg[0] - h0 / 2], mid, [lg[-1] + h1 / 2]]))


def smoothing_matrix(grid_nm, sd_log: float) -> np.ndarray:
    """Column-stochastic Gaussian smoothing matrix in ln(d) (the EMS smoothing step).

    Parameters
    ----------
    grid_nm : ndarray, shape (G,)
        Grid, nm.
    sd_log : float
        Kernel SD in ln(d); 0 gives a 0×0 array (no smoothing).

    Returns
    -------
    ndarray of float64, shape (G, G) or (0, 0)
        S with S[i, j] the share of weight j moved to i; columns sum to 1.
    """
    if sd_log <= 0:
        return np.zeros((0, 0))
    lg = np.log(np.asarray(grid_nm, float))
    s = np.exp(-0.5 * ((lg[:, None] - lg[None, :]) / sd_log) ** 2)
    return s / s.sum(axis=0, keepdims=True)


def _sigma2_model(sigma_loc_um, mass, n_bins: int = 5) -> np.ndarray:
    """Per-track localization variance σ², µm²: median of σ̂² in mass quantile bins.

    The per-track σ̂² of a track of tens of steps is too noisy to use alone (and is
    negative for some tracks, NaN in the table); the precision depends on brightness, so
    tracks are grouped into ``n_bins`` quantile bins of ``mass_mean`` and given the
    median σ̂² of their bin (σ̂² < 0 counted as 0). Without masses: one bin.
    """
    s = np.asarray(sigma_loc_um, float)
    s2 = np.where(np.isfinite(s), s * s, 0.0)
    m = np.asarray(mass, float) if mass is not None else np.full(s.size, np.nan)
    out = np.full(s.size, float(np.median(s2)) if s2.size else 0.0)
    ok = np.isfinite(m)
    if ok.sum() >= 5 * n_bins:
        qs = np.quantile(m[ok], np.linspace(0, 1, n_bins + 1))
        b = np.clip(np.searchsorted(qs, m, side="right") - 1, 0, n_bins - 1)
        for i in range(n_bins):
            sel = ok & (b == i)
            if sel.any():
                out[sel] = float(np.median(s2[sel]))
    return out


class FTLAModel:
    """Per-track likelihoods on a size grid, ready for (repeated) EM deconvolution.

    Parameters
    ----------
    d_um2_s : array_like of float, shape (K,)
        CVE estimates D̂, µm²/s; tracks with D̂ ≤ 0 or NaN get no likelihood (weight 0).
    n_steps : array_like of int, shape (K,)
        Valid unit-lag steps per track.
    sigma2_um2 : array_like of float, shape (K,)
        Localization variance σ² per track, µm² (≥ 0).
    fps : float
        Frame rate, frames/s (Δt = 1/fps, s).
    blur_r : float
        Motion-blur coefficient R (0 … 1/6), :attr:`nta.calibration.Calibration.motion_blur_r`.
    temperature_c : float
        °C.
    viscosity_mpas : float
        mPa·s.
    grid_nm : ndarray, shape (G,), optional
        Diameter grid, nm; default :func:`make_grid` of the per-track diameters.
    outlier_weight : float
        ε in [0, 1): each track's likelihood is ``(1 − ε) p(D̂ | D_j) + ε q(D̂)`` with
        q(D̂) = 1 / (D̂ ln(D_max / D_min)), uniform in ln D̂ over the grid's D range, a
        per-track outlier (mislink) term; see :data:`DEFAULT_OUTLIER_WEIGHT`.

    Attributes
    ----------
    lik : ndarray of float64, shape (K, G)
        Row-scaled likelihoods (with the outlier term); after :func:`fit_length_aware` the
        valid rows are the joint (D̂, length bin) likelihoods, and the plain ones are kept
        in ``lik_plain``.
    valid : ndarray of bool, shape (K,)
        Tracks with a likelihood (D̂ > 0 and finite).
    n_steps : ndarray of float64, shape (K,)
        Valid unit-lag steps per track.
    length_model : dict or None
        After :func:`fit_length_aware`: ``bins`` (K_valid,) int, ``par`` (B,), ``x`` (G,) and
        ``pi`` (G, B), the fitted proportional-odds model (:func:`ordinal_bin_probs`), and
        ``factors``, the low-rank factors of the unscaled rows (or None).

    Notes
    -----
    The likelihood is the Gamma approximation of the CVE's sampling distribution with the
    Vestergaard et al. (2014) variance (:mod:`nta.kernels.ftla`), the model of Walker,
    Meas. Sci. Technol. 23, 065605 (2012) extended to localization noise and motion blur,
    made heavy-tailed by the outlier term (a contaminated likelihood in the sense of
    Huber's ε-contamination model, Huber, Ann. Math. Stat. 35, 73 (1964)). Since
    Σ_j w_j = 1, the term adds ε q_k to every entry of row k; ``lik`` holds the mixed,
    row-scaled values, so EM and the bootstrap use it unchanged.
    """

    def __init__(self, d_um2_s, n_steps, sigma2_um2, *, fps, blur_r, temperature_c, viscosity_mpas, grid_nm=None,
                 outlier_weight=DEFAULT_OUTLIER_WEIGHT):
        from .calibration import stokes_einstein_diameter, stokes_einstein_diffusion
        from .kernels.ftla import gamma_loglik_matrix, likelihood_matrix

        d = np.ascontiguousarray(d_um2_s, dtype=np.float64).ravel()
        n = np.ascontiguousarray(n_steps, dtype=np.float64).ravel()
        s2 = np.ascontiguousarray(sigma2_um2, dtype=np.float64).ravel()
        if not (d.shape == n.shape == s2.shape):
            raise ValueError(f"d_um2_s, n_steps and sigma2_um2 must have the same length, got {d.size}, {n.size}, {s2.size}")
        if not (fps > 0) or not (0 <= blur_r <= 1 / 6 + 1e-12):
            raise ValueError(f"need fps > 0 and 0 ≤ blur_r ≤ 1/6, got {fps!r}, {blur_r!r}")
        s2 = np.where(np.isfinite(s2) & (s2 > 0), s2, 0.0)
        self.temperature_c, self.viscosity_mpas = float(temperature_c), float(viscosity_mpas)
        diam = np.asarray(stokes_einstein_diameter(d, temperature_c, viscosity_mpas), float).reshape(-1)
        self.grid_nm = make_grid(diam) if grid_nm is None else np.asarray(grid_nm, np.float64)
        self.grid_D = np.ascontiguousarray(stokes_einstein_diffusion(self.grid_nm, temperature_c, viscosity_mpas), dtype=np.float64)
        ll = gamma_loglik_matrix(d, n, s2, 1.0 / float(fps), float(blur_r), self.grid_D)
        self.lik, self.row_log_scale = likelihood_matrix(ll)
        self.valid = np.isfinite(self.row_log_scale)
        self.n_steps = n
        self.length_model = None
        self.n_tracks = int(self.valid.sum())
        eps = float(outlier_weight)
        if not (0.0 <= eps < 1.0):
            raise ValueError(f"outlier_weight must be in [0, 1), got {outlier_weight!r}")
        self.outlier_weight = eps
        if eps > 0 and self.n_tracks and self.grid_D.size > 1:
            span = math.log(float(self.grid_D.max()) / float(self.grid_D.min()))
            with np.errstate(divide="ignore", invalid="ignore"):
                lq = -np.log(d) - math.log(span) - self.row_log_scale  # log q(D̂_k), on the row's scale
            q = np.where(self.valid, np.exp(np.minimum(np.where(self.valid, lq, 0.0), 700.0)), 0.0)
            self.lik = np.ascontiguousarray((1.0 - eps) * self.lik + eps * q[:, None])

    def fit(self, *, smooth_log=DEFAULT_SMOOTH_LOG, track_weights=None, w0=None, max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL,
            lowrank_tol=None):
        """EM / EMS weights on the grid (see :func:`nta.kernels.ftla.em_weights`).

        Parameters
        ----------
        smooth_log : float
            EMS smoothing SD in ln(d) (0: plain ML-EM).
        track_weights : (K,) float64, optional
            Weight of each track (default 1; invalid tracks get 0).
        w0 : (G,) float64, optional
            Starting weights (default uniform).
        max_iter, tol : int, float
            Iteration cap and stopping rule.
        lowrank_tol : float, optional
            Products through the low-rank factors of :meth:`lowrank_factors` (relative
            error ≤ ``lowrank_tol`` per product, :func:`nta.kernels.ftla.em_weights_factored`)
            when they exist; default :data:`EM_LOWRANK_TOL`; 0: full products.

        Returns
        -------
        w : ndarray of float64, shape (G,)
            Number fraction at each grid point (sum 1).
        n_iter : int
        loglik : float
            Log-likelihood (up to the per-track row scales), with the full products.
        """
        from .kernels.ftla import em_weights, em_weights_factored

        g = self.grid_nm.size
        c = np.where(self.valid, 1.0, 0.0) if track_weights is None else np.where(self.valid, np.asarray(track_weights, float), 0.0)
        if c.sum() <= 0:
            return np.full(g, np.nan), 0, float("nan")
        w0 = np.full(g, 1.0 / g) if w0 is None else np.asarray(w0, np.float64) + 1e-12
        fac = self.lowrank_factors(EM_LOWRANK_TOL if lowrank_tol is None else float(lowrank_tol))
        if fac is not None:
            v = self.valid
            return em_weights_factored(fac[0], fac[1], np.ascontiguousarray(self.lik[v]), np.ascontiguousarray(c[v]), w0,
                                       self._smoother(smooth_log), int(max_iter), float(tol))
        return em_weights(self.lik, c, w0, self._smoother(smooth_log), int(max_iter), float(tol))

    def lowrank_factors(self, tol=None):
        """:func:`_lowrank_factors` of the valid tracks' likelihood rows, cached; None if none.

        ``tol`` defaults to :data:`EM_LOWRANK_TOL`; ≤ 0 gives None (full products).

        Computed with a single-threaded BLAS (a threaded QR / SVD collapses on a loaded
        machine: 0.6 s instead of 0.05 s for 4000 × 250, measured).
        """
        tol = EM_LOWRANK_TOL if tol is None else float(tol)
        if not tol > 0:
            return None
        cached = getattr(self, "_lowrank_cache", None)
        if cached is None or cached[0] != tol:
            cached = (tol, _lowrank_factors_1blas(self.lik[self.valid], tol))
            self._lowrank_cache = cached
        return cached[1]

    def _set_valid_rows(self, lik_valid):
        """Replace the valid tracks' likelihood rows (K_valid, G) and drop the cached factors;
        the first call keeps the rows it replaces in ``lik_plain`` (so a refit starts from them)."""
        if getattr(self, "lik_plain", None) is None:
            self.lik_plain = self.lik
        lik = np.array(self.lik, dtype=np.float64, copy=True)
        lik[self.valid] = lik_valid
        self.lik = np.ascontiguousarray(lik)
        self._lowrank_cache = None

    def _smoother(self, smooth_log):
        """The EMS smoothing matrix for ``smooth_log``, cached (one pair, replaced atomically)."""
        cached = getattr(self, "_S_cache", None)
        if cached is None or cached[0] != smooth_log:
            cached = (smooth_log, smoothing_matrix(self.grid_nm, smooth_log))
            self._S_cache = cached
        return cached[1]


def length_bins(n_steps, n_bins: int = LENGTH_BINS):
    """Quantile bins of the tracks' numbers of steps for the track-length model.

    Parameters
    ----------
    n_steps : array_like of float, shape (K,)
        Valid unit-lag steps per track.
    n_bins : int
        Bins wanted (≥ 1): equal numbers of tracks, fewer bins where lengths tie (many
        tracks of one length).

    Returns
    -------
    bins : ndarray of int64, shape (K,)
        Bin of each track, 0 … B − 1 (shorter tracks in lower bins).
    edges : ndarray of float64, shape (B + 1,)
        Edges, steps: bin b holds ``edges[b] ≤ N < edges[b + 1]`` (the last bin also
        ``N = edges[-1]``, the longest track); every bin holds at least one track.

    Raises
    ------
    ValueError
        ``n_bins`` < 1.
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins!r}")
    n = np.asarray(n_steps, float).ravel()
    if n.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    srt = np.sort(n)
    # lower edges: the lengths at ranks ⌊b K / B⌋ of the sorted tracks; tied lengths merge
    # bins, and every bin starts at a length some track has (none is empty)
    lower = np.unique(srt[(np.arange(int(n_bins)) * n.size) // int(n_bins)])
    b = np.searchsorted(lower, n, side="right") - 1
    return b.astype(np.int64), np.concatenate([lower, srt[-1:]]).astype(np.float64)


def _ordinal_thresholds(par, n_bins):
    """θ_1 < … < θ_{B−1} from the unconstrained parameters (θ_1, ln(θ_2 − θ_1), …)."""
    a = np.asarray(par[:n_bins - 1], float)
    return np.cumsum(np.concatenate([a[:1], np.exp(a[1:])]))


def ordinal_bin_probs(par, x, n_bins: int) -> np.ndarray:
    """Probabilities of the track-length bins given the size: the proportional-odds model.

    ``P(bin ≤ i | d) = 1 / (1 + exp(−(θ_i − β x)))`` for i = 1 … B − 1, with x = ln d
    (centred) and thresholds θ_1 < … < θ_{B−1} (McCullagh, J. R. Stat. Soc. B 42, 109
    (1980)); β > 0 means larger particles make longer tracks.

    Parameters
    ----------
    par : ndarray of float64, shape (B,)
        ``(θ_1, ln(θ_2 − θ_1), …, ln(θ_{B−1} − θ_{B−2}), β)``.
    x : ndarray of float64, shape (G,)
        Centred ln(diameter / nm) of the grid points.
    n_bins : int
        B ≥ 2.

    Returns
    -------
    ndarray of float64, shape (G, B)
        P(bin b | grid point j); rows sum to 1, entries ≥ 1e-300.

    Raises
    ------
    ValueError
        ``n_bins`` < 2 or ``par`` not of length ``n_bins``.
    """
    from scipy.special import expit

    if int(n_bins) < 2 or len(par) != int(n_bins):
        raise ValueError(f"need n_bins ≥ 2 and len(par) == n_bins, got n_bins={n_bins!r}, len(par)={len(par)}")
    th = _ordinal_thresholds(par, n_bins)
    cdf = expit(th[None, :] - float(par[n_bins - 1]) * np.asarray(x, float)[:, None])
    g = cdf.shape[0]
    cdf = np.hstack([np.zeros((g, 1)), cdf, np.ones((g, 1))])
    return np.maximum(np.diff(cdf, axis=1), 1e-300)


def _ordinal_objective(par, cnt, x, n_bins, prior_sd):
    """−Σ cnt log P(b | d_j) + β² / (2 prior_sd²) and its gradient (the ECM M-step)."""
    from scipy.special import expit

    th = _ordinal_thresholds(par, n_bins)
    beta = float(par[n_bins - 1])
    cdf = expit(th[None, :] - beta * x[:, None])  # (G, B−1)
    g = x.size
    full = np.hstack([np.zeros((g, 1)), cdf, np.ones((g, 1))])
    pi = np.maximum(np.diff(full, axis=1), 1e-300)  # (G, B)
    f = cdf * (1.0 - cdf)  # dF_i / dθ_i
    ratio = cnt / pi  # (G, B)
    # θ_i sits in F_i: + in π_i, − in π_{i+1} (bins 0-based: i ↔ bin i−1 / bin i)
    g_th = np.sum(f * (ratio[:, :-1] - ratio[:, 1:]), axis=0)  # (B−1,)
    fz = np.hstack([np.zeros((g, 1)), f, np.zeros((g, 1))])
    g_beta = float(np.sum(ratio * (-x[:, None]) * (fz[:, 1:] - fz[:, :-1])))
    # chain rule to (θ_1, ln Δθ_2, …): dθ_i/da_1 = 1, dθ_i/da_m = exp(a_m) for i ≥ m
    tail = np.cumsum(g_th[::-1])[::-1]
    g_a = tail.copy()
    g_a[1:] *= np.exp(np.asarray(par[1:n_bins - 1], float))
    val = -float(np.sum(cnt * np.log(pi))) + 0.5 * (beta / prior_sd) ** 2
    grad = -np.concatenate([g_a, [g_beta]])
    grad[-1] += beta / prior_sd ** 2
    return val, grad


def _plain_factors(model: FTLAModel, lik0):
    """Low-rank factors (:func:`_lowrank_factors`) of the unscaled valid rows ``lik0``, or None
    (computed once per model, with a single-threaded BLAS as :meth:`FTLAModel.lowrank_factors`)."""
    cached = getattr(model, "_plain_factors_cache", None)
    if cached is None:
        cached = (_lowrank_factors_1blas(lik0, EM_LOWRANK_TOL),)
        model._plain_factors_cache = cached
    return cached[0]


def fit_length_aware(model: FTLAModel, *, n_bins: int = LENGTH_BINS, slope_prior_sd: float = LENGTH_SLOPE_PRIOR_SD,
                     smooth_log=DEFAULT_SMOOTH_LOG, max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL,
                     mstep_every: int = LENGTH_MSTEP_EVERY):
    """FTLA weights with the tracks' lengths modelled jointly with their sizes.

    Walker's FTLA, as :meth:`FTLAModel.fit` does, conditions each track's likelihood on its
    number of steps N but assumes the size distribution is the same for tracks of every
    length. It is not: a smaller particle diffuses out of the light sheet and the field
    sooner and is dimmer, so its tracks are shorter, and its short, noisy tracks are then
    explained by the population with the long, precise ones. Measured on D̂ drawn from the
    model itself (1:1 mixture of 80 and 120 nm, 40 vs 65 steps per track, 4000 tracks per
    population): the plain fit gave the 80 nm population 0.34–0.35 of the number; with equal
    N it gave 0.47–0.49. Here the likelihood of track k becomes that of its (D̂_k, bin_k)::

        p(D̂_k, b_k | D_j) = p(D̂_k | D_j, N_k) · P(b_k | d_j),

    with b_k the track's quantile bin of N (:func:`length_bins`) and P(b | d) the
    proportional-odds model :func:`ordinal_bin_probs` (slope β with a N(0, ``slope_prior_sd``²)
    prior). The weights and (θ, β) are fitted by ECM (Meng & Rubin, Biometrika 80, 267
    (1993)): ``mstep_every`` EM iterations of the weights (with the EMS smoothing of
    ``smooth_log``; through the low-rank factors of the unscaled rows, scaled per bin,
    :func:`nta.kernels.ftla.em_weights_factored_binned`, when they exist, else
    :func:`nta.kernels.ftla.em_weights` on the joint rows) alternate with a maximisation over (θ, β)
    (BFGS with the analytic gradient), for ``max_iter`` EM iterations in all (the same cap,
    and the same implicit regularisation, as the plain fit), or until the weights stop
    changing by ``tol`` and (θ, β) by 1e-6.

    On return the model's valid likelihood rows are the joint ones at the fitted (θ, β),
    so :func:`bootstrap_deconvolved` resamples with the length model held fixed (the
    uncertainty of (θ, β) is not propagated into the CIs). With fewer than two distinct
    bins (all tracks of one length) this is :meth:`FTLAModel.fit`.

    Parameters
    ----------
    model : FTLAModel
        Per-track likelihoods (its ``n_steps`` give the bins); changed in place (see above).
    n_bins : int
        Quantile bins of N (:data:`LENGTH_BINS`).
    slope_prior_sd : float
        Prior SD of β per unit ln d (:data:`LENGTH_SLOPE_PRIOR_SD`), > 0.
    smooth_log, max_iter, tol
        As :meth:`FTLAModel.fit`.
    mstep_every : int
        EM iterations per ECM cycle.

    Returns
    -------
    w : ndarray of float64, shape (G,)
        Number fraction at each grid point (sum 1).
    n_iter : int
        EM iterations done.
    loglik : float
        Σ_k log Σ_j p(D̂_k, b_k | D_j) w_j (up to the row scales).
    info : dict
        ``bins`` (B used; 1: no length model, the plain fit), ``bin_edges_steps`` (list,
        see :func:`length_bins`), ``slope`` (β per unit ln d; None without a length model),
        ``thresholds`` (θ_1 … θ_{B−1}, list), ``x_center_ln_nm`` (the centring of x = ln(d / nm)
        − x_center), ``slope_prior_sd``. With them P(b | d) = :func:`ordinal_bin_probs`.

    Raises
    ------
    ValueError
        ``slope_prior_sd`` ≤ 0, ``mstep_every`` < 1 or ``n_bins`` < 1.

    References
    ----------
    Walker, J. G. Meas. Sci. Technol. 23, 065605 (2012).
    McCullagh, P. J. R. Stat. Soc. B 42, 109 (1980).
    Meng, X.-L. & Rubin, D. B. Biometrika 80, 267 (1993).

    Examples
    --------
    >>> import numpy as np
    >>> from nta.distribution import FTLAModel, fit_length_aware
    >>> rng = np.random.default_rng(0)
    >>> d_hat = rng.gamma(50.0, 4.3 / 50.0, 400)        # µm²/s, about 100 nm at 22 °C
    >>> n = rng.integers(13, 80, 400).astype(float)
    >>> m = FTLAModel(d_hat, n, np.full(400, 0.0025), fps=25.0, blur_r=0.125,
    ...               temperature_c=22.0, viscosity_mpas=0.9544)
    >>> w, n_iter, ll, info = fit_length_aware(m)
    >>> round(float(w.sum()), 6), info["bins"]
    (1.0, 5)
    """
    from scipy.optimize import minimize

    from .kernels.ftla import em_weights, em_weights_factored_binned

    if not (slope_prior_sd > 0):
        raise ValueError(f"slope_prior_sd must be > 0, got {slope_prior_sd!r}")
    if int(mstep_every) < 1:
        raise ValueError(f"mstep_every must be at least 1, got {mstep_every!r}")
    v = model.valid
    b, edges = length_bins(model.n_steps[v], n_bins)
    nb = max(1, edges.size - 1)
    info = {"bins": int(nb), "bin_edges_steps": [float(e) for e in edges], "slope": None, "thresholds": [],
            "x_center_ln_nm": None, "slope_prior_sd": float(slope_prior_sd)}
    if nb < 2 or model.n_tracks < 2:
        w, n_iter, ll = model.fit(smooth_log=smooth_log, max_iter=max_iter, tol=tol)
        info["bins"] = 1
        return w, n_iter, ll, info
    plain = getattr(model, "lik_plain", None)
    lik0 = np.ascontiguousarray((model.lik if plain is None else plain)[v])  # a refit starts from the plain rows
    k_n, g_n = lik0.shape
    lg = np.log(model.grid_nm)
    x = lg - lg.mean()
    onehot = np.zeros((k_n, nb))
    onehot[np.arange(k_n), b] = 1.0
    cum = np.cumsum(onehot.mean(axis=0))[:-1]
    th0 = np.log(cum / (1.0 - cum))
    par = np.concatenate([th0[:1], np.log(np.maximum(np.diff(th0), 1e-6)), [0.0]])
    c = np.ones(k_n)
    S = model._smoother(smooth_log)
    w = np.full(g_n, 1.0 / g_n)
    fac = _plain_factors(model, lik0)
    no_rows = np.zeros((0, g_n))
    done = 0
    while True:
        pi = np.ascontiguousarray(ordinal_bin_probs(par, x, nb))
        step = min(int(mstep_every), int(max_iter) - done)
        if step <= 0:
            break
        w0 = w + 1e-12 if done else w
        if fac is not None:
            # the unscaled rows' factors, scaled per bin (the same error bound); the expected
            # counts cnt_jb = w_j π_jb Σ_{k in b} p_kj / den_k through the factors too
            lf, mf = fac
            w, it, _ = em_weights_factored_binned(lf, mf, pi, b, no_rows, c, w0, S, step, float(tol))
            u = mf @ (pi * w[:, None])  # (r, B)
            den = np.einsum("kr,kr->k", lf, u[:, b].T)
            cnt = w[:, None] * pi * (mf.T @ (onehot.T @ (lf / den[:, None])).T)
        else:
            lik = np.ascontiguousarray(lik0 * pi[:, b].T)
            w, it, _ = em_weights(lik, c, w0, S, step, float(tol))
            den = lik @ w
            cnt = (onehot.T @ (lik / den[:, None])).T * w[:, None]  # (G, B) expected counts
        done += int(it)
        res = minimize(_ordinal_objective, par, args=(cnt, x, nb, float(slope_prior_sd)), jac=True, method="BFGS")
        moved = float(np.max(np.abs(res.x - par)))
        par = res.x
        if (it < step and moved < 1e-6) or done >= int(max_iter):
            break
    pi = np.ascontiguousarray(ordinal_bin_probs(par, x, nb))
    lik = np.ascontiguousarray(lik0 * pi[:, b].T)
    ll = float(np.sum(np.log(np.maximum(lik @ w, 1e-300))))
    model._set_valid_rows(lik)
    model.length_model = {"bins": b, "par": par, "x": x, "pi": pi, "factors": fac}
    info["slope"] = float(par[nb - 1])
    info["thresholds"] = [float(t) for t in _ordinal_thresholds(par, nb)]
    info["x_center_ln_nm"] = float(lg.mean())
    return w, done, ll, info


def grid_statistics(grid_nm, w, window_nm=DEFAULT_WINDOW_NM) -> dict:
    """Statistics of a distribution given as weights on a log-spaced grid.

    Each weight is spread uniformly in ln(d) over its grid cell, so the cumulative
    distribution is piecewise linear in ln(d) and quantiles and window fractions do not
    jump from point to point.

    Parameters
    ----------
    grid_nm : ndarray, shape (G,)
        Log-spaced grid, nm.
    w : ndarray, shape (G,)
        Weights (number fractions, or area/volume weights), ≥ 0.
    window_nm : (float, float)
        Size window, nm.

    Returns
    -------
    dict
        ``mean_nm``, ``sd_nm``, ``sd_robust_nm``, ``d10_nm``, ``d50_nm``, ``d90_nm``,
        ``mode_nm`` (the top of the peak holding the largest number fraction, see
        :func:`_smoothed_mode`), ``window_fraction``
        (NaN throughout for an empty or non-finite ``w``).

    Notes
    -----
    ``sd_nm`` is the plain standard deviation of the distribution, nm. ``sd_robust_nm``
    is half the 15.87–84.13 % inter-quantile range, nm (:data:`ROBUST_SD_QUANTILES`):
    equal to the SD for a normal distribution (and within 0.2 % of it for a log-normal
    of 5 % CV), but insensitive to a few tenths of a percent of weight far from the
    bulk. Measured reason (benchmarks/results/accuracy.md): on the monodisperse videos
    0.3–2 % of the deconvolved weight sits at 3–6× the true size (single mislinked or
    implausibly slow tracks), which alone inflates the plain SD from 5 % to 20–40 % of
    the mean. Both are reported; the plain SD is kept as the headline ``sd_nm``.
    """
    grid = np.asarray(grid_nm, float)
    w = np.asarray(w, float)
    keys = ("mean_nm", "sd_nm", "sd_robust_nm", "d10_nm", "d50_nm", "d90_nm", "mode_nm", "window_fraction")
    if not np.all(np.isfinite(w)) or w.sum() <= 0:
        return {k: float("nan") for k in keys}
    w = w / w.sum()
    edges = _log_edges(grid)
    le = np.log(edges)
    # exact moments of the log-uniform cell: E[d] over [a, b] in ln d = (b - a)/(ln b - ln a)
    dl = np.diff(le)
    m1 = np.diff(edges) / dl
    m2 = np.diff(edges**2) / (2 * dl)
    mean = float(np.sum(w * m1))
    sd = float(math.sqrt(max(np.sum(w * m2) - mean**2, 0.0)))
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    q = np.interp([0.1, 0.5, 0.9], cdf, le)
    qr = np.exp(np.interp(ROBUST_SD_QUANTILES, cdf, le))
    lo, hi = window_nm
    c_lo, c_hi = np.interp(np.log([max(lo, 1e-9), max(hi, 1e-9)]), le, cdf, left=0.0, right=1.0)
    return dict(mean_nm=mean, sd_nm=sd, sd_robust_nm=float(0.5 * (qr[1] - qr[0])), d10_nm=float(np.exp(q[0])), d50_nm=float(np.exp(q[1])), d90_nm=float(np.exp(q[2])),
                mode_nm=_smoothed_mode(grid, w), window_fraction=float(c_hi - c_lo))


def _smoothed_mode(grid, w) -> float:
    """Mode: the top of the peak that holds the largest number fraction.

    The deconvolved weights are spiky on the grid scale, and a few per cent of weight at
    small diameters (narrow cells in nm) can have a larger density per nm than the main
    population (seen on real bright-field data: 5 % near 70 nm out-ranking 1-µm beads).
    The mode reported is therefore the diameter of the largest peak of
    :func:`find_peaks` (smoothed with SD :data:`PEAK_SMOOTH_LOG` in ln d), i.e. the most
    frequent size of the dominant population, which is ``peaks_nm[0]``; when no peak is
    found, the maximum of the smoothed density per nm.
    """
    peaks, _ = find_peaks(grid, w)
    if peaks:
        return float(peaks[0])
    if grid.size < 3:
        return float(grid[int(np.argmax(w))])
    ws = smoothing_matrix(grid, PEAK_SMOOTH_LOG) @ w
    return float(grid[int(np.argmax(ws / np.diff(_log_edges(grid))))])


def binned_histogram(grid_nm, w, edges_nm, total: float = 1.0) -> np.ndarray:
    """Grid weights re-binned into arbitrary (e.g. 1-nm) bins, log-uniform within cells.

    Parameters
    ----------
    grid_nm, w : ndarray, shape (G,)
        Grid (nm) and weights.
    edges_nm : ndarray, shape (m + 1,)
        Output bin edges, nm, ascending.
    total : float
        Scale (e.g. the number of tracks, for counts).

    Returns
    -------
    ndarray of float64, shape (m,)
    """
    w = np.asarray(w, float)
    if not np.all(np.isfinite(w)) or w.sum() <= 0:
        return np.zeros(len(edges_nm) - 1)
    le = np.log(_log_edges(np.asarray(grid_nm, float)))
    cdf = np.concatenate([[0.0], np.cumsum(w / w.sum())])
    with np.errstate(divide="ignore"):
        x = np.log(np.maximum(np.asarray(edges_nm, float), 1e-300))
    c = np.interp(x, le, cdf, left=0.0, right=1.0)
    return np.diff(c) * total


def find_peaks(grid_nm, w, *, min_fraction: float = PEAK_MIN_FRACTION, valley_ratio: float = PEAK_VALLEY_RATIO,
               smooth_log: float = PEAK_SMOOTH_LOG):
    """Modes of a number distribution on a log grid and the number fraction in each.

    The density per nm (w / cell width) is smoothed with a Gaussian of SD ``smooth_log``
    in ln(d) (below the resolution of tracks of tens of steps, so it only removes grid-
    scale ripples), its local maxima are found, neighbouring maxima separated by a
    valley higher than ``valley_ratio`` × the lower maximum are merged, each peak owns the
    weight between the valleys (minima) that bound it, and peaks owning less than
    ``min_fraction`` are dropped (their weight stays with no peak).

    Parameters
    ----------
    grid_nm, w : ndarray, shape (G,)
        Log-spaced grid (nm) and weights.
    min_fraction : float
        Smallest number fraction reported as a peak.
    valley_ratio : float
        Merge criterion (0–1).
    smooth_log : float
        Smoothing SD in ln(d) before the search.

    Returns
    -------
    peaks_nm : list of float
        Peak diameters, nm, largest fraction first.
    fractions : list of float
        Number fraction owned by each peak, same order.
    """
    grid = np.asarray(grid_nm, float)
    w = np.asarray(w, float)
    if grid.size < 3 or not np.all(np.isfinite(w)) or w.sum() <= 0:
        return [], []
    w = w / w.sum()
    if smooth_log > 0:
        S = smoothing_matrix(grid, smooth_log)
        ws = S @ w
    else:
        ws = w
    f = ws / np.diff(_log_edges(grid))
    fp = np.concatenate([[-1.0], f, [-1.0]])
    maxima = [i for i in range(grid.size) if fp[i + 1] > fp[i] and fp[i + 1] >= fp[i + 2] and f[i] > 0]
    if not maxima:
        return [], []
    # merge maxima separated by shallow valleys (repeat until stable)
    changed = True
    while changed and len(maxima) > 1:
        changed = False
        for a in range(len(maxima) - 1):
            i, j = maxima[a], maxima[a + 1]
            v = f[i:j + 1].min()
            if v > valley_ratio * min(f[i], f[j]):
                maxima.pop(a + 1 if f[i] >= f[j] else a)
                changed = True
                break
    bounds = [0]
    for i, j in zip(maxima[:-1], maxima[1:]):
        bounds.append(i + int(np.argmin(f[i:j + 1])))
    bounds.append(grid.size)
    peaks, fracs = [], []
    for m, (b0, b1) in zip(maxima, zip(bounds[:-1], bounds[1:])):
        fr = float(ws[b0:b1].sum())
        if fr >= min_fraction:
            peaks.append(float(grid[m]))
            fracs.append(fr)
    order = np.argsort(fracs)[::-1]
    return [peaks[i] for i in order], [fracs[i] for i in order]


#: Power of d by which each weighting multiplies the number weights ("surface" = "area").
WEIGHTING_POWERS = {"number": 0, "area": 2, "surface": 2, "volume": 3}


def _check_weighting(weighting) -> int:
    """The power of d for ``weighting``; ValueError if it is not one of :data:`WEIGHTING_POWERS`."""
    p = WEIGHTING_POWERS.get(weighting)
    if p is None:
        raise ValueError(f"weighting must be 'number', 'area' or 'volume', got {weighting!r}")
    return p


def weighted(grid_nm, w, weighting: str = "number") -> np.ndarray:
    """Number weights converted to ``"number"``, ``"area"`` (∝ d²) or ``"volume"`` (∝ d³) weights.

    Returns
    -------
    ndarray of float64, shape (G,)
        Normalised to sum 1.

    Raises
    ------
    ValueError
        Unknown weighting.
    """
    p = _check_weighting(weighting)
    v = np.asarray(w, float) * np.asarray(grid_nm, float) ** p
    s = v.sum()
    return v / s if s > 0 else v


def deconvolve(per_track, calibration, *, smooth_log=DEFAULT_SMOOTH_LOG, min_steps=None, grid_nm=None,
               max_iter=DEFAULT_MAX_ITER, tol=DEFAULT_TOL, outlier_weight=DEFAULT_OUTLIER_WEIGHT,
               length_model: bool = True):
    """Finite-track-length adjusted (FTLA) number distribution of a per-track table.

    Maximum-likelihood deconvolution of the per-track CVE estimates on a log-spaced
    diameter grid (Walker, Meas. Sci. Technol. 23, 065605 (2012), the method NanoSight's
    FTLA follows), with each track's likelihood knowing its number of steps, the
    localization variance and the motion blur (:mod:`nta.kernels.ftla`), and an EMS
    smoothing step as a smoothness prior (Silverman et al. 1990; in the spirit of MAP-NTA,
    Silmore et al., ACS Nano 13, 3940 (2019)).

    Parameters
    ----------
    per_track : pandas.DataFrame
        :func:`nta.diffusion.per_track_table` output: ``D_um2_s`` (µm²/s), ``n_steps``,
        ``sigma_loc_um`` (µm), ``mass_mean``, ``included``.
    calibration : nta.calibration.Calibration
        ``fps`` (frames/s), ``motion_blur_r``, ``temperature_c`` (°C), ``viscosity_mpas`` (mPa·s).
    smooth_log : float
        Smoothing kernel SD in ln(d) (0: plain ML-EM, stopped by the rule below).
    min_steps : int, optional
        Use tracks with at least this many steps and D̂ > 0; default the table's
        ``included`` tracks. Tracks with D̂ ≤ 0 have no Gamma likelihood and are left out.
    grid_nm : ndarray, optional
        Diameter grid, nm; default :func:`make_grid`.
    max_iter, tol : int, float
        EM stops when no grid weight changes by more than ``tol`` in one iteration, or
        after ``max_iter`` iterations.
    outlier_weight : float
        Per-track outlier term ε (:data:`DEFAULT_OUTLIER_WEIGHT`; 0: plain ML).
    length_model : bool
        Model the tracks' lengths jointly with their sizes (:func:`fit_length_aware`,
        the default); False gives Walker's FTLA, which assumes the same size distribution
        for tracks of every length.

    Notes
    -----
    The track-length model (2026-11-30) removed most of the under-count of the small
    population described below: on the 1500-frame benchmark videos the small population's
    number fraction went 0.36 → 0.47 (70+130 nm, truth 0.51), 0.42 → 0.48 (100+150 nm,
    truth 0.49) and 0.32 → 0.42 (80+120 nm, truth 0.49); see benchmarks/results/accuracy.md.
    The notes below were measured without it.

    Measured limits (benchmarks/results/accuracy.md): the number distribution is per
    *track*, not per particle; no correction is made for the length bias (small, dim,
    fast particles give fewer tracks of ≥ 13 steps); the track-length model corrects the
    deconvolution for the *lengths* of the tracks that are there, not for the missing ones. On the 70+130 nm and 80+120 nm
    videos the small population's track share was 0.18–0.30 against a true particle
    share of 0.51; lowering ``min_steps`` to 3–8 did not close the gap (0.22) and widened
    the SD through noisy short tracks, so the included tracks stay the default (re-measured
    2026-11-29, small-population peak fraction at min_steps 5 / 8 / 13 / 20: 0.22 / 0.20 /
    0.18 / 0.13). Isolated tracks whose D̂ is far below the Gamma model's range (e.g. one
    track, 0.3 % of the 100 nm video's weight, near 580 nm) used to inflate the plain SD
    from 5 % to 29 % of the mean; the per-track outlier term (``outlier_weight``,
    :data:`DEFAULT_OUTLIER_WEIGHT`) now gives such single tracks no grid weight, and the
    robust SD (``sd_robust_nm``, :func:`grid_statistics`) is reported beside the plain
    SD. Tried and not adopted (2026-11-29, the benchmark's stored per-track tables): a
    contamination component uniform in ln D̂ whose per-track responsibility used the leave-one-out
    predictive of the grid distribution (an isolated track cannot be explained by the
    others) lowered the plain SD only where the outlier is a single track (100 nm video
    28.6 → 17.0 % of the mean, 400 nm 39.5 → 31.1 %) and not at all on the other videos,
    whose off-peak weight comes from groups of mislinked tracks (e.g. 6 % near 110 nm in
    the 200 nm video). The small population of the 70+130 nm video is not under-counted
    at the track level (~0.40–0.45 of the included tracks by brightness, truth 0.51) but
    its D̂ is low (median of the dim included tracks 5.1–5.9 µm²/s against 6.48), so its
    weight lands between the peaks (0.22 at 95 nm): a tracking, not a deconvolution, bias.
    Matched to the simulator's true positions (mid-exposure, drift removed), the 108
    included tracks of 70 nm particles had nta D̂ / D_true of mean 0.92 (median 0.87),
    while the CVE of the true positions over the same frames had mean 0.98: the bias is
    in localization, not in which steps survive linking (2026-11-30: the localization
    benchmark later traced such low D̂ to detection favouring frames of little motion
    within the exposure, which the CVE's missed-frame terms in :mod:`nta.kernels.diffusion`
    now mostly remove). Deconvolved alone, those tracks
    give one peak at 83 nm; deconvolved with the 130 nm tracks, 41 of their 108 tracks'
    posterior weight goes to 110–150 nm, and running EM to convergence (30 000
    iterations) lowers the weight below the 95 nm midpoint further (0.25 → 0.18): the
    ML solution itself, given these D̂, under-counts the small population.
    80+120 nm video, matched to the true identities (2026-11-29, data-adaptive linking
    radius): true particle share of the 80 nm population 0.493; its share of the included
    tracks 0.450 (125 of 278; 88 of 196 distinct particles; 43 vs 65 points per track), so
    track qualification costs 0.04; deconvolving only the tracks without an identity change
    gives 0.28 below the 98 nm midpoint against 0.27 for all, so mislinks cost ~0.01; each
    population deconvolved alone gives one peak (76.8, 118.3 nm) and the Gamma model is
    calibrated on both (z = (D̂ − D_true)/SD: mean −0.03 / 0.07, SD 0.96 / 0.85). With D̂
    drawn from the model itself for the same tracks (N, σ², true D) the deconvolution gives
    0.36–0.39 below the midpoint for a true 0.45, unchanged with 4× and 10× as many tracks,
    with ε = 0 and up to 30 000 EM iterations: an estimator limit at this overlap (~20 %
    per-track noise on D̂; nonparametric deconvolution converges slowly), not a model
    mismatch; the rest (0.36 → 0.27) is about 1.5 bootstrap SDs of this sample (0.06, for a
    two-point ML fraction). No correction is applied.

    Returns
    -------
    model : FTLAModel
        The likelihoods (reused by the bootstrap).
    w : ndarray of float64, shape (G,)
        Number fractions on ``model.grid_nm``.
    info : dict
        ``n_iter``, ``loglik``, ``tracks`` (tracks used), ``length_model`` (the ``info`` of
        :func:`fit_length_aware`, or None).
    """
    per = per_track
    if min_steps is None:
        sel = per["included"].to_numpy(bool)
    else:
        with np.errstate(invalid="ignore"):
            sel = (per["n_steps"].to_numpy(float) >= min_steps) & (per["D_um2_s"].to_numpy(float) > 0)
    sub = per[sel]
    mass = sub["mass_mean"].to_numpy(float) if "mass_mean" in sub else None
    s2 = _sigma2_model(sub["sigma_loc_um"].to_numpy(float), mass)
    model = FTLAModel(sub["D_um2_s"].to_numpy(float), sub["n_steps"].to_numpy(float), s2, fps=calibration.fps,
                      blur_r=calibration.motion_blur_r, temperature_c=calibration.temperature_c,
                      viscosity_mpas=calibration.viscosity_mpas, grid_nm=grid_nm, outlier_weight=outlier_weight)
    if length_model:
        w, n_iter, ll, linfo = fit_length_aware(model, smooth_log=smooth_log, max_iter=max_iter, tol=tol)
    else:
        w, n_iter, ll = model.fit(smooth_log=smooth_log, max_iter=max_iter, tol=tol)
        linfo = None
    return model, w, {"n_iter": int(n_iter), "loglik": float(ll), "tracks": model.n_tracks, "length_model": linfo}


def _boot_workers() -> int:
    """Threads for the bootstrap fits: the CPUs this process may run on (as the locator)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Work-array budget of :func:`_em_batch` in :func:`bootstrap_deconvolved`: resamples are
#: fitted in blocks of at most this many (tracks × resamples) elements (16 MB of float64
#: per array; 16 to 200 resamples per block). Results do not depend on it.
BOOT_BLOCK_ELEMENTS = 2_000_000
#: Low-rank likelihood products in the EM (the full-sample fit, :meth:`FTLAModel.fit`, and
#: the bootstrap's batched EM, :func:`_em_batch`; factors from :func:`_lowrank_factors`):
#: the rank is the smallest for which, for every track k, the discarded part E_k of the
#: likelihood row has ‖E_k‖₂ ≤ EM_LOWRANK_TOL × min_j p_kj. Since every weight vector
#: has Σ_j w_j = 1 (so ‖w‖₂ ≤ 1 and Σ_j p_kj w_j ≥ min_j p_kj), this bounds the relative
#: error of every Σ_j p_kj w_j, and of every Σ_k p_kj c_k / den_k, by EM_LOWRANK_TOL in
#: each iteration. The rows are smooth Gamma curves on a log grid, so the rank is small:
#: 76 of 250 grid points for 3985 tracks of a 1280×1024 video, where the products then
#: cost a third (bootstrap 3.4 → 1.4 s, full-sample fit 0.71 → 0.14 s + 0.07 s for the
#: factorisation, measured interleaved on 2 shared CPUs); below ~300 tracks the factored
#: products are not cheaper and the full ones are used. Measured against the full products (2026-11-29, same draws, 100
#: resamples × 200 iterations): weights differ by ≤ 4e-13, per-resample mean / D50 / SD by
#: ≤ 3e-12 nm; the 200-resample CIs by ≤ 1.5e-12 nm, the window-fraction CI by ≤ 2e-16
#: (tests/test_distribution_boot.py checks the CIs).
EM_LOWRANK_TOL = 1e-10


#: Elements (rows × rank) of the rank criterion of :func:`_lowrank_factors` computed at once.
_LOWRANK_BLOCK_ELEMENTS = 250_000


def _lowrank_factors(lik, tol: float = EM_LOWRANK_TOL):
    """Truncated SVD of the likelihood matrix for :func:`_em_batch`, or None.

    Parameters
    ----------
    lik : (K, G) float64
        Likelihoods p_kj ≥ 0 of the tracks used.
    tol : float
        Per-row bound: ‖p_k − (L M)_k‖₂ ≤ tol × min_j p_kj for every row k.

    Returns
    -------
    (L, M) or None
        ``L`` (K, r) float64 = lik V_r and ``M`` (r, G) float64 = V_rᵀ (orthonormal rows),
        with r the smallest rank meeting the bound; None when no rank does (a row with
        min_j p_kj = 0, as without the outlier term) or when r (K + G) > 0.6 K G (the
        factored products would not be cheaper).

    Notes
    -----
    V comes from the SVD of the R factor of a QR decomposition of ``lik`` (G × G), and the
    discarded norm of row k at rank r is ‖(lik V)_k, r:‖₂, exact by orthogonality (no
    cancellation).
    """
    k_n, g_n = lik.shape
    if k_n < 2 or g_n < 2:
        return None
    floor = lik.min(axis=1)
    if not np.all(np.isfinite(lik)):
        return None
    # float64 rounding of the SVD alone leaves ~1e-16 ‖p_k‖₂ per row: rows with a smaller
    # floor than that allows (no outlier term: min_j p_kj ~ 1e-100) can never meet the bound
    if not np.all(floor * tol > 1e-15 * np.sqrt(np.einsum("kg,kg->k", lik, lik))):
        return None
    r_fac = np.linalg.qr(lik, mode="r")
    _, _, vt = np.linalg.svd(r_fac, full_matrices=False)
    lfull = lik @ vt.T  # (K, n) coordinates of each row in the right singular basis
    n = lfull.shape[1]
    # crit[r]: the worst row's ‖E_k‖₂ / min_j p_kj at rank r, from tail[k, r] = Σ_{i ≥ r}
    # lfull[k, i]², over blocks of rows (the same maxima; the (K, n) temporaries of the whole
    # matrix at once were, after the bootstrap CIs' blocks, the peak of a long run's memory:
    # 27.3 MB for 2142 tracks, measured with tracemalloc)
    crit = np.zeros(n)
    step = max(1, _LOWRANK_BLOCK_ELEMENTS // n)
    for k0 in range(0, k_n, step):
        lb = lfull[k0:k0 + step]
        tail = np.cumsum((lb * lb)[:, ::-1], axis=1)[:, ::-1]
        np.maximum(crit, np.max(np.sqrt(tail) / floor[k0:k0 + step, None], axis=0), out=crit)
    ok = np.flatnonzero(crit <= tol)
    r = int(ok[0]) if ok.size else n
    if r == 0 or r * (k_n + g_n) > 0.6 * k_n * g_n:
        return None
    return np.ascontiguousarray(lfull[:, :r]), np.ascontiguousarray(vt[:r])


def _lowrank_factors_1blas(lik, tol: float):
    """:func:`_lowrank_factors` of ``lik`` with a single-threaded BLAS (a threaded QR / SVD
    collapses on a loaded machine: 0.6 s instead of 0.05 s for 4000 × 250, measured)."""
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK, threadpool_limits(limits=1, user_api="blas"):
        return _lowrank_factors(np.ascontiguousarray(lik), tol)


def _em_batch(lik, track_w, w0, smoother, max_iter: int, tol: float, *, factors=None, bins=None) -> np.ndarray:
    """:func:`nta.kernels.ftla.em_weights` for many track weightings at once.

    Column b of ``track_w`` (K, B) is one resample's multiplicities; all start from ``w0``
    (G,). Each column follows exactly the kernel's iteration (multiplicative EM step,
    smoothing by ``smoother`` (G, G), renormalisation, stop when no weight changes by
    ``tol`` or more; a column that has stopped is frozen), with Σ_j p_kj w_jb and
    Σ_k p_kj c_kb / den_kb as matrix products, so results equal the kernel's up to
    floating-point summation order (~1e-15 relative).

    Parameters
    ----------
    lik : (K, G) float64
        Likelihoods p_kj (row-scaled), ≥ 0.
    track_w : (K, B) float64
        Multiplicities c_kb of the tracks in each of B resamples.
    w0 : (G,) float64
        Starting weights (normalised inside).
    smoother : (G, G) float64 or (0, 0)
        EMS smoothing matrix, or none.
    max_iter : int
        Iteration cap.
    tol : float
        Per-column stopping rule (largest weight change < ``tol``).
    factors : (L, M), optional
        :func:`_lowrank_factors` of ``lik``: the products go through ``L @ (M @ w)`` and
        ``((c / den)ᵀ L) M``, each within a relative error of the factors' tolerance
        (:data:`EM_LOWRANK_TOL`) of the full products, in a fraction r (K + G) / (K G)
        of the work.
    bins : (bins, pi), optional
        With ``factors`` of the *unscaled* rows: ``lik`` is p_kj π_{j, bins_k} (the
        track-length model of :func:`fit_length_aware`; bins (K,) int, pi (G, nb)), and the
        products go per bin as in :func:`nta.kernels.ftla.em_weights_factored_binned`, with
        the same error bound.

    Returns
    -------
    w : (G, B) float64
        Weights of each resample (columns sum to 1).
    """
    lik = np.ascontiguousarray(lik, dtype=np.float64)
    c = np.asarray(track_w, np.float64)
    g_n, b_n = lik.shape[1], c.shape[1]
    tot = c.sum(axis=0)
    w = np.repeat((np.asarray(w0, np.float64) / np.sum(w0))[:, None], b_n, axis=1)
    use_s = smoother.shape[0] == g_n
    active = np.arange(b_n)
    den = np.empty((lik.shape[0], b_n))
    fbuf = np.empty((lik.shape[0], b_n))
    if factors is not None:
        lf, mf = factors
        lft, mft = np.ascontiguousarray(lf.T), np.ascontiguousarray(mf.T)
    if factors is not None and bins is not None:
        # tracks sorted by bin (the same products, summed in another order): contiguous blocks
        bb, pi = np.asarray(bins[0]), np.asarray(bins[1], np.float64)
        order = np.argsort(bb, kind="stable")
        c = np.ascontiguousarray(c[order])
        lf = lf[order]
        bounds = np.searchsorted(bb[order], np.arange(pi.shape[1] + 1))
        blocks = [(int(a), int(e), np.ascontiguousarray(lf[a:e]), np.ascontiguousarray(lf[a:e].T), pi[:, g:g + 1])
                  for g, (a, e) in enumerate(zip(bounds[:-1], bounds[1:])) if e > a]
    else:
        blocks = None
    for _ in range(int(max_iter)):
        if active.size == 0:
            break
        wa = w[:, active] if active.size < b_n else w
        ca = c[:, active] if active.size < b_n else c
        d, f = den[:, :active.size], fbuf[:, :active.size]
        if blocks is not None:
            for a, e, lfb, _, pib in blocks:
                np.matmul(lfb, mf @ (pib * wa), out=d[a:e])
            np.divide(ca, d, out=f)
            back = np.zeros_like(wa)
            for a, e, _, lftb, pib in blocks:
                back += pib * (mft @ (lftb @ f[a:e]))
            new = wa * back / tot[active]
        elif factors is not None:
            np.matmul(lf, mf @ wa, out=d)
            # den_kb ≥ (1 − tol) min_j p_kj > 0 for every row (see _lowrank_factors)
            np.divide(ca, d, out=f)
            # Mᵀ (Lᵀ f) = ((fᵀ L) M)ᵀ with both products on C-ordered operands (~10 % faster)
            new = wa * (mft @ (lft @ f)) / tot[active]
        else:
            np.matmul(lik, wa, out=d)
            f.fill(0.0)
            np.divide(ca, d, out=f, where=d > 0.0)  # c_kb / den_kb; 0 where den ≤ 0 (the kernel skips those)
            new = wa * (f.T @ lik).T / tot[active]
        if use_s:
            new = smoother @ new
        new /= new.sum(axis=0)
        delta = np.max(np.abs(new - wa), axis=0)
        w[:, active] = new
        active = active[~(delta < tol)]
    return w


_BLAS_LOCK = __import__("threading").Lock()


def bootstrap_deconvolved(model: FTLAModel, w_hat, *, window_nm=DEFAULT_WINDOW_NM, smooth_log=DEFAULT_SMOOTH_LOG,
                          n_boot: int = BOOT_MAX_RESAMPLES, max_iter: int = BOOT_MAX_ITER, level: float = 0.95, seed: int = 0,
                          lowrank_tol: float = EM_LOWRANK_TOL) -> dict:
    """Percentile bootstrap CIs of the deconvolved statistics, resampling tracks.

    Each resample draws the tracks with replacement (multinomial multiplicities, so the
    likelihood matrix is reused) and reruns the EM warm-started from the full-sample
    weights ``w_hat`` for at most ``max_iter`` iterations (the warm start is close to the
    resample's optimum, so this suffices; Efron & Tibshirani 1993, ch. 13).

    Parameters
    ----------
    model : FTLAModel
        Likelihoods of the full sample.
    w_hat : (G,) float64
        Full-sample weights on ``model.grid_nm`` (the warm start).
    window_nm : (float, float)
        Size window, nm.
    smooth_log : float
        EMS smoothing SD in ln(d), as in the full-sample fit.
    n_boot : int
        Resamples.
    max_iter : int
        EM iterations per resample (cap).
    level : float
        Confidence level.
    seed : int
        Seed of the multinomial draws.
    lowrank_tol : float
        Tolerance of the low-rank likelihood products (:data:`EM_LOWRANK_TOL`); 0 gives
        the full float64 products.

    Returns
    -------
    dict
        ``mean_nm_ci95``, ``mode_nm_ci95``, ``d50_nm_ci95``, ``sd_nm_ci95``,
        ``sd_robust_nm_ci95``, ``window_fraction_ci95``: [low, high]; NaNs for fewer than 2 tracks.
    """
    keys = ("mean_nm", "mode_nm", "d50_nm", "sd_nm", "sd_robust_nm", "window_fraction")
    idx = np.flatnonzero(model.valid)
    if idx.size < 2 or n_boot < 1:
        return {f"{k}_ci95": [float("nan"), float("nan")] for k in keys}
    rng = np.random.default_rng(seed)
    vals = {k: np.empty(n_boot) for k in keys}
    # all multiplicities drawn first, in resample order (the same draws as one-by-one); the
    # resamples then run as one batched EM (:func:`_em_batch`): the same iterations as
    # :func:`nta.kernels.ftla.em_weights` per resample, with the likelihood products of a
    # block of resamples done as float64 matrix-matrix products (BLAS) per iteration, through
    # the model's low-rank factors when they exist (:data:`EM_LOWRANK_TOL`)
    p = np.full(idx.size, 1.0 / idx.size)
    S = model._smoother(smooth_log)
    lik = np.ascontiguousarray(model.lik[idx])
    w0 = np.asarray(w_hat, np.float64) + 1e-12  # as FTLAModel.fit's warm start
    workers = min(_boot_workers(), n_boot)
    # blocks of resamples on threads, each with a single-threaded BLAS (numpy's matrix
    # products release the GIL): a multi-threaded BLAS per product collapses on a loaded
    # machine (measured 18 s instead of 4 s with the load average at 3 on 2 CPUs)
    block = int(min(200, max(16, BOOT_BLOCK_ELEMENTS // max(1, idx.size))))
    block = max(1, min(block, -(-n_boot // workers)))
    lm = getattr(model, "length_model", None)
    bins = None
    if lowrank_tol <= 0:
        factors = None
    elif lm is not None:  # joint rows: the unscaled rows' factors, scaled per bin
        factors = lm["factors"] if float(lowrank_tol) == EM_LOWRANK_TOL else _lowrank_factors_1blas(
            model.lik_plain[idx], float(lowrank_tol))
        bins = (lm["bins"], lm["pi"]) if factors is not None else None
    else:
        factors = model.lowrank_factors(float(lowrank_tol))  # cached by the fit
    # the multiplicities, block after block in resample order (successive calls draw the
    # same vectors, in the same order, as one call with size=n_boot), kept as int32 (a count
    # is at most the number of tracks) and made float64 one block at a time, instead of a
    # float64 (tracks × n_boot) matrix and its int64 draw (34 MB at 2142 tracks, growing
    # with the video's length; the run's measured peak RSS did not change with it)
    starts = range(0, n_boot, block)
    draws = {b0: rng.multinomial(idx.size, p, size=min(block, n_boot - b0)).astype(np.int32) for b0 in starts}

    def run(b0):
        counts = np.ascontiguousarray(draws[b0].T, dtype=np.float64)
        wb = _em_batch(lik, counts, w0, S, int(max_iter), float(DEFAULT_TOL), factors=factors, bins=bins)
        for j in range(wb.shape[1]):
            st = grid_statistics(model.grid_nm, wb[:, j], window_nm)
            for k in keys:
                vals[k][b0 + j] = st[k]

    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK, threadpool_limits(limits=1, user_api="blas"):
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nta-boot") as ex:
                list(ex.map(run, starts))
        else:
            for b0 in starts:
                run(b0)
    a = (1 - level) / 2
    return {f"{k}_ci95": [float(x) for x in np.nanquantile(vals[k], [a, 1 - a])] for k in keys}


# =========================================================================================
# Size versus intensity
# =========================================================================================


def size_intensity(per_track, *, bins=(60, 50), included_only: bool = True):
    """2-D histogram of per-track size against mean scattering intensity (log × log).

    Populations of similar size but different material (vesicles vs. lipoproteins vs.
    polystyrene) separate by intensity, and two sizes of one material lie on one
    intensity ∝ d⁶ (Rayleigh) line: the view instrument users rely on.

    Parameters
    ----------
    per_track : pandas.DataFrame
        ``diameter_nm`` (nm), ``mass_mean`` (integrated brightness, counts), ``included``.
    bins : (int, int)
        Bins in log10(diameter) and log10(mass).
    included_only : bool
        Use only the tracks in the distribution.

    Returns
    -------
    counts : ndarray of float64, shape (bins[0], bins[1])
        Tracks per (size, intensity) cell.
    d_edges_nm : ndarray, shape (bins[0] + 1,)
        Diameter bin edges, nm (log-spaced).
    mass_edges : ndarray, shape (bins[1] + 1,)
        Intensity bin edges, counts (log-spaced).
    """
    d = per_track["diameter_nm"].to_numpy(float)
    m = per_track["mass_mean"].to_numpy(float) if "mass_mean" in per_track else np.full(d.size, np.nan)
    ok = np.isfinite(d) & (d > 0) & np.isfinite(m) & (m > 0)
    if included_only and "included" in per_track:
        ok &= per_track["included"].to_numpy(bool)
    d, m = d[ok], m[ok]
    if d.size == 0:
        return np.zeros(bins), np.geomspace(10, 1000, bins[0] + 1), np.geomspace(1, 1e6, bins[1] + 1)
    de = np.geomspace(max(d.min() * 0.9, 1e-3), d.max() * 1.1, bins[0] + 1)
    me = np.geomspace(max(m.min() * 0.9, 1e-6), m.max() * 1.1, bins[1] + 1)
    h, _, _ = np.histogram2d(d, m, bins=[de, me])
    return h, de, me


def plot_size_intensity(path_or_table, ax=None, *, bins=(60, 50)):
    """Plot the size-versus-intensity histogram (log–log) of a result file or per-track table.

    Parameters
    ----------
    path_or_table : str, os.PathLike or pandas.DataFrame
        An nta result file (``/per_track`` is read) or a per-track table.
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; default a new figure.
    bins : (int, int)
        As :func:`size_intensity`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if isinstance(path_or_table, (str, bytes)) or hasattr(path_or_table, "__fspath__"):
        from .store import read_table

        table = read_table(path_or_table, "per_track")
    else:
        table = path_or_table
    h, de, me = size_intensity(table, bins=bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    hm = np.ma.masked_equal(h.T, 0)
    mesh = ax.pcolormesh(de, me, hm, norm=LogNorm(vmin=1, vmax=max(1.0, float(h.max()))), cmap="viridis")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hydrodynamic diameter (nm)")
    ax.set_ylabel("mean scattering intensity (mass, counts)")
    ax.figure.colorbar(mesh, ax=ax, label="tracks")
    return ax


# =========================================================================================
# The pipeline's distribution stage
# =========================================================================================


def size_distribution(per_track, calibration, *, window_nm=DEFAULT_WINDOW_NM, n_boot: int = 1000, seed: int = 0,
                      smooth_log: float = DEFAULT_SMOOTH_LOG, weighting: str = "number", length_model: bool = True):
    """The pipeline's distribution stage: per-track table in, summary and arrays out.

    The reported distribution is the FTLA deconvolution (:func:`deconvolve`); the raw
    per-track histogram and its statistics are kept beside it (``raw_*`` keys,
    ``counts``).

    Parameters
    ----------
    per_track : pandas.DataFrame
        From :func:`nta.diffusion.per_track_table`: ``diameter_nm`` (nm), ``included`` (bool),
        ``D_um2_s`` (µm²/s), ``D_var_um4_s2``, ``n_steps``, ``sigma_loc_um`` (µm), ``mass_mean``.
    calibration : nta.calibration.Calibration
        Frame rate, motion blur, temperature (°C) and viscosity (mPa·s).
    window_nm : (float, float)
        Size window, nm.
    n_boot : int
        Bootstrap resamples for the raw statistics' CIs; the deconvolved statistics use
        ``min(n_boot, BOOT_MAX_RESAMPLES)`` warm-started resamples (:func:`bootstrap_deconvolved`).
    seed : int
        Seed of the bootstrap.
    smooth_log : float
        Smoothness prior strength (EMS kernel SD in ln d); see :data:`DEFAULT_SMOOTH_LOG`.
    weighting : {"number", "area", "volume"}
        Weighting of the headline statistics (mean, mode, SD, D10/50/90, window fraction,
        peaks); the number-weighted values are always in ``number_*`` keys too.
    length_model : bool
        Track lengths modelled jointly with sizes in the deconvolution (default; see
        :func:`fit_length_aware`); False: Walker's FTLA.

    Returns
    -------
    summary : dict
        ``tracks_valid``, ``mean_nm``, ``mode_nm``, ``sd_nm``, ``d10_nm``, ``d50_nm``,
        ``d90_nm``, ``sd_robust_nm`` (half the 15.87–84.13 % inter-quantile range, nm; see
        :func:`grid_statistics`), ``window_nm``, ``window_fraction`` and their ``*_ci95``, ``peaks_nm``,
        ``peak_fractions``, ``d50_in_window``, ``mode_in_window``, ``distribution``,
        ``weighting``, ``ftla`` (iterations, prior, grid, ``loglik``: the joint (D̂, length bin)
        log-likelihood with the length model, ``length_model``: the ``info`` of
        :func:`fit_length_aware` or ``{"bins": 0}`` when off), the area- and volume-weighted
        ``area_d50_nm`` / ``volume_d50_nm`` / ``*_mean_nm`` / ``*_mode_nm``, and the
        raw per-track statistics ``raw_*``.
    arrays : dict of ndarray
        ``bin_edges_nm`` (m + 1,) and ``counts`` (m,): raw per-track histogram, 1-nm bins;
        ``counts_ftla`` (m,): the deconvolved number distribution in the same bins, scaled
        to the number of tracks; ``grid_nm`` (G,); ``density_number``, ``density_area``,
        ``density_volume`` (G,): weights on the grid (each sums to 1).
    attrs : dict
        Attributes of the ``/distribution`` group.

    Raises
    ------
    ValueError
        ``per_track`` lacks the ``included`` or ``diameter_nm`` column, or ``weighting``
        is not one of the three.
    """
    lo, hi = float(window_nm[0]), float(window_nm[1])
    missing = sorted({"included", "diameter_nm"} - set(per_track.columns))
    if missing:
        raise ValueError(f"size_distribution: the per-track table has no column {', '.join(missing)}; pass the "
                         "table nta.diffusion.per_track_table returns (diameter_nm in nm, included as bool)")
    _check_weighting(weighting)
    if len(per_track):
        inc = per_track["included"].to_numpy(bool)
        d = per_track["diameter_nm"].to_numpy(float)[inc]
    else:
        d = np.zeros(0)
    raw = summarize_sizes(d, window_nm=window_nm, n_boot=n_boot, seed=seed)
    edges, counts = histogram(d)
    arrays = {"bin_edges_nm": edges, "counts": counts}
    attrs = {"weighting": weighting, "kind": "FTLA maximum-likelihood deconvolution; counts = raw per-track histogram, 1-nm bins"}
    summary = {"tracks_valid": raw["tracks_valid"], "window_nm": [lo, hi]}
    for k, v in raw.items():
        if k not in ("tracks_valid", "window_nm"):
            summary[f"raw_{k}"] = v
    nan2 = [float("nan"), float("nan")]
    if d.size == 0 or not {"D_um2_s", "n_steps", "sigma_loc_um"} <= set(per_track.columns):
        summary.update({k: raw[k] for k in raw if k not in ("tracks_valid", "window_nm")})
        summary.update(peaks_nm=[], peak_fractions=[], distribution="per-track histogram (number-weighted)", weighting=weighting)
        return summary, arrays, attrs
    model, w, info = deconvolve(per_track, calibration, smooth_log=smooth_log, length_model=length_model)
    grid = model.grid_nm
    dens = {k: weighted(grid, w, k) for k in ("number", "area", "volume")}
    wsel = dens[weighting] if weighting in dens else weighted(grid, w, weighting)
    st = grid_statistics(grid, wsel, (lo, hi))
    summary.update(st)
    peaks, fracs = find_peaks(grid, wsel)
    summary["peaks_nm"], summary["peak_fractions"] = peaks, fracs
    if weighting == "number":
        ci = bootstrap_deconvolved(model, w, window_nm=(lo, hi), smooth_log=smooth_log, n_boot=min(n_boot, BOOT_MAX_RESAMPLES), seed=seed)
        summary.update({k: ci[k] for k in ("mean_nm_ci95", "mode_nm_ci95", "d50_nm_ci95", "window_fraction_ci95", "sd_nm_ci95",
                                             "sd_robust_nm_ci95")})
    else:
        summary.update(mean_nm_ci95=nan2, mode_nm_ci95=nan2, d50_nm_ci95=nan2, window_fraction_ci95=nan2)
    for k in ("area", "volume"):
        sk = grid_statistics(grid, dens[k], (lo, hi))
        summary[f"{k}_mean_nm"], summary[f"{k}_mode_nm"], summary[f"{k}_d50_nm"] = sk["mean_nm"], sk["mode_nm"], sk["d50_nm"]
    nst = grid_statistics(grid, dens["number"], (lo, hi))
    for k in ("mean_nm", "d50_nm", "mode_nm", "window_fraction"):
        summary[f"number_{k}"] = nst[k]
    summary["d50_in_window"] = bool(lo <= summary["d50_nm"] <= hi)
    summary["mode_in_window"] = bool(lo <= summary["mode_nm"] <= hi)
    with_lm = "with track-length model, " if (info["length_model"] or {}).get("bins", 0) >= 2 else ""
    summary["distribution"] = f"FTLA maximum-likelihood deconvolution ({with_lm}{weighting}-weighted)"
    summary["weighting"] = weighting
    summary["ftla"] = {
        "tracks": info["tracks"], "n_iter": info["n_iter"], "loglik": info["loglik"], "smooth_log": smooth_log,
        "grid_points": int(grid.size), "grid_nm": [float(grid[0]), float(grid[-1])], "tol": DEFAULT_TOL,
        "max_iter": DEFAULT_MAX_ITER, "bootstrap_resamples": min(n_boot, BOOT_MAX_RESAMPLES) if weighting == "number" else 0,
        "bootstrap_max_iter": BOOT_MAX_ITER, "outlier_weight": model.outlier_weight,
        "length_model": info["length_model"] or {"bins": 0},
    }
    arrays.update(counts_ftla=binned_histogram(grid, w, edges, total=float(info["tracks"])), grid_nm=grid,
                  density_number=dens["number"], density_area=dens["area"], density_volume=dens["volume"])
    return summary, arrays, attrs
