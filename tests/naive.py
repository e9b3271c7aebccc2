"""Plain-numpy reference implementations the numba kernels are checked against.

Obviously correct and slow: Python loops over tracks, no numba. One section per kernel
module; keep each section self-contained.
"""

from __future__ import annotations

import numpy as np

# =========================================================================================
# Diffusion: covariance-based estimator (CVE) per track  — reference for kernels/diffusion.py
# Vestergaard, Blainey & Flyvbjerg, Phys. Rev. E 89, 022726 (2014). Pixels and frames.
# =========================================================================================


def naive_cve_track(pos, frame, r):
    """CVE of one track, written out step by step.

    The covariance of adjacent steps is averaged over the pairs of adjacent unit steps
    (three consecutive frames with points), as in Vestergaard et al., and over the lag-2
    displacements whose middle frame has no point, each counted as Δ₂x² / 2 − ⟨Δx²⟩ (the
    same expectation: Δ₂ = Δ_n + Δ_{n+1}).

    Parameters
    ----------
    pos : (m, 2) float64, px (NaN = missing point)
    frame : (m,) int64, strictly increasing
    r : float, motion-blur coefficient R

    Returns
    -------
    tuple (D px²/frame, var(D) px⁴/frame², σ² px², n_steps, n_pairs, n_points), n_pairs
    counting both kinds of covariance term
    """
    pos = np.asarray(pos, dtype=float).reshape(-1, 2)
    frame = np.asarray(frame, dtype=np.int64)
    finite = np.isfinite(pos).all(axis=1)
    n_points = int(finite.sum())
    at = {int(f): i for i, f in enumerate(frame) if finite[i]}  # frame → row of a finite point
    steps = {f: pos[at[f + 1]] - pos[i] for f, i in at.items() if f + 1 in at}  # unit lag, by start frame
    adjacent = [steps[f] * steps[f + 1] for f in steps if f + 1 in steps]  # (x, y) products
    across = [pos[at[f + 2]] - pos[i] for f, i in at.items() if f + 2 in at and f + 1 not in at]
    n_steps, n_pairs = len(steps), len(adjacent) + len(across)
    if n_steps < 2 or n_pairs < 1:
        return np.nan, np.nan, np.nan, n_steps, n_pairs, n_points
    s1 = np.array(list(steps.values()))
    d_axes, s2_axes = [], []
    for ax in (0, 1):
        sq = np.mean(s1[:, ax] ** 2)
        terms = [p[ax] for p in adjacent] + [g[ax] ** 2 / 2.0 - sq for g in across]
        cov = np.mean(terms)
        d_axes.append(sq / 2.0 + cov)  # Δt = 1 frame
        s2_axes.append(r * sq + (2.0 * r - 1.0) * cov)
    d = np.mean(d_axes)
    s2 = np.mean(s2_axes)
    # variance with the estimates clipped to D >= 0, σ² >= 0 (ε >= -2R), a = D ε
    dc, s2c = max(d, 0.0), max(s2, 0.0)
    a = s2c - 2.0 * r * dc
    n = float(n_steps)
    var_one_axis = (6 * dc**2 + 4 * dc * a + 2 * a**2) / n + 4 * (dc + a) ** 2 / n**2
    return d, var_one_axis / 2.0, s2, n_steps, n_pairs, n_points


def naive_cve_adjacent_track(pos, frame, r):
    """Vestergaard et al.'s CVE with the covariance from adjacent unit steps only (three
    consecutive frames), as nta computed it before 2026-11-30 (no term for the lag-2
    displacements across a missing point): kept to show, in the tests, the bias that
    detection selection gives it. Returns D px²/frame (NaN if undefined)."""
    pos = np.asarray(pos, dtype=float).reshape(-1, 2)
    frame = np.asarray(frame, dtype=np.int64)
    finite = np.isfinite(pos).all(axis=1)
    at = {int(f): i for i, f in enumerate(frame) if finite[i]}
    steps = {f: pos[at[f + 1]] - pos[i] for f, i in at.items() if f + 1 in at}
    pairs = [steps[f] * steps[f + 1] for f in steps if f + 1 in steps]
    if len(steps) < 2 or len(pairs) < 1:
        return np.nan
    sq = np.mean(np.array(list(steps.values())) ** 2, axis=0)
    cov = np.mean(np.array(pairs), axis=0)
    return float(np.mean(sq / 2.0 + cov))


def naive_cve_tracks(pos, frame, offsets, r):
    """:func:`naive_cve_track` for every track; same outputs as kernels.diffusion.cve_tracks."""
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = [naive_cve_track(pos[offsets[k] : offsets[k + 1]], frame[offsets[k] : offsets[k + 1]], r) for k in range(len(offsets) - 1)]
    cols = list(zip(*rows)) if rows else [()] * 6
    return (
        np.array(cols[0], dtype=np.float64),
        np.array(cols[1], dtype=np.float64),
        np.array(cols[2], dtype=np.float64),
        np.array(cols[3], dtype=np.int64),
        np.array(cols[4], dtype=np.int64),
        np.array(cols[5], dtype=np.int64),
    )


# =========================================================================================
# FTLA: Gamma likelihood of the CVE and EM / EMS deconvolution — reference for kernels/ftla.py
# Walker, Meas. Sci. Technol. 23, 065605 (2012); Vestergaard et al., PRE 89, 022726 (2014);
# Silverman, Jones, Wilson & Nychka, J. R. Stat. Soc. B 52, 271 (1990).
# =========================================================================================


def naive_gamma_loglik(d_hat, n_steps, sigma2, dt, r, d_grid):
    """log p(D̂_k | D_j) as a (K, G) array, via scipy.stats.gamma (−inf where D̂ ≤ 0)."""
    from scipy.stats import gamma

    out = np.full((len(d_hat), len(d_grid)), -np.inf)
    for k in range(len(d_hat)):
        for j in range(len(d_grid)):
            D, n, dh = d_grid[j], n_steps[k], d_hat[k]
            if not (dh > 0) or not (n > 0):
                continue
            eps = sigma2[k] / (D * dt) - 2 * r
            var = D**2 * ((6 + 4 * eps + 2 * eps**2) / n + 4 * (1 + eps) ** 2 / n**2) / 2
            out[k, j] = gamma.logpdf(dh, a=D**2 / var, scale=var / D)
    return out


def naive_em(lik, track_w, w0, smoother, max_iter, tol):
    """EM weights with an optional smoothing matrix; same stopping rule as the kernel."""
    w = np.asarray(w0, float) / np.sum(w0)
    c = np.asarray(track_w, float)
    it = 0
    while it < max_iter:
        it += 1
        den = lik @ w
        f = np.where((c > 0) & (den > 0), c / np.where(den > 0, den, 1.0), 0.0)
        new = w * (lik.T @ f) / c.sum()
        if smoother.shape[0] == w.size:
            new = smoother @ new
        new = new / new.sum()
        delta = np.max(np.abs(new - w))
        w = new
        if delta < tol:
            break
    den = lik @ w
    ll = float(np.sum(np.where((c > 0) & (den > 0), c * np.log(np.where(den > 0, den, 1.0)), 0.0)))
    return w, it, ll


# =========================================================================================
# Consistency: split tracks at implausible steps — reference for kernels/consistency.py
# Threshold from the F(2, 2(M-1)) law of (largest step²) / (mean of the other steps²)
# with a Bonferroni bound over the M steps.
# =========================================================================================


def naive_split_threshold(m, alpha):
    """F* = (M − 1)[(M/α)^{1/(M−1)} − 1]: P(max ratio > F*) ≤ α for M Brownian steps."""
    return (m - 1.0) * ((m / alpha) ** (1.0 / (m - 1.0)) - 1.0)


def naive_split_track(pos, frame, alpha, min_steps):
    """Boolean per row, True where a piece made by a cut starts (recursive, numpy)."""
    pos = np.asarray(pos, float).reshape(-1, 2)
    frame = np.asarray(frame, np.int64)
    cut = np.zeros(len(frame), bool)

    def rec(a, b):
        p = pos[a:b]
        ok = np.isfinite(p).all(axis=1)
        valid = ok[:-1] & ok[1:]
        if valid.sum() < max(min_steps, 2):
            return
        u = (np.diff(p, axis=0) ** 2).sum(axis=1) / np.diff(frame[a:b])
        u = np.where(valid, u, -1.0)
        j = int(np.argmax(u))  # first maximum, as the kernel
        m = int(valid.sum())
        rest = (u[valid].sum() - u[j]) / (m - 1)
        if rest > 0 and u[j] / rest > naive_split_threshold(m, alpha):
            cut[a + j + 1] = True
            rec(a, a + j + 1)
            rec(a + j + 1, b)

    if len(frame) > 2:
        rec(0, len(frame))
    return cut


def naive_split_cuts(pos, frame, offsets, alpha, min_steps):
    pos = np.asarray(pos, float).reshape(-1, 2)
    out = np.zeros(pos.shape[0], bool)
    for k in range(len(offsets) - 1):
        a, b = int(offsets[k]), int(offsets[k + 1])
        out[a:b] = naive_split_track(pos[a:b], np.asarray(frame)[a:b], alpha, min_steps)
    return out
