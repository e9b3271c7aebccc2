"""Finite-track-length adjustment (FTLA): per-track likelihoods and EM deconvolution, numba.

Plain arrays in and out, no I/O, no pandas, no validation. The public, validated wrapper
is :func:`nta.distribution.deconvolve`; the plain-numpy reference is ``tests/naive.py``
(section "FTLA").

Model (one track k, one grid point j)
-------------------------------------
A track of N_k valid unit-lag steps gives the CVE estimate D̂_k (Vestergaard, Blainey &
Flyvbjerg, Phys. Rev. E 89, 022726 (2014)); see :mod:`nta.kernels.diffusion`. Given the
true coefficient D_j of grid point j, D̂_k is unbiased, E[D̂] = D_j, with the paper's
variance, halved for the two pooled axes::

    var(D̂ | D_j) = [(6 D² + 4 D a + 2 a²) / N + 4 (D + a)² / N²] / 2,   a = σ²/Δt − 2 R D

(σ² the localization variance, Δt the frame interval, R the motion-blur coefficient).
D̂ is a sum of squares and products of Gaussian steps, so its sampling distribution is
approximated by the Gamma law with that mean and variance (the "scaled chi-square" of
Qian, Sheetz & Elson, Biophys. J. 60, 910 (1991) and of Walker, Meas. Sci. Technol. 23,
065605 (2012), generalised to the CVE with localization noise and blur)::

    shape α = D² / var,   rate β = D / var,
    log p(D̂ | D_j) = α log β − lnΓ(α) + (α − 1) log D̂ − β D̂       (D̂ > 0)

Deconvolution
-------------
The number distribution on the grid, weights w_j (Σ w_j = 1), maximises the (track-
weighted) log-likelihood Σ_k c_k log Σ_j w_j p(D̂_k | D_j): the EM / Richardson–Lucy
multiplicative update of Walker (2012)::

    w_j ← w_j Σ_k c_k p_kj / (Σ_i p_ki w_i) / Σ_k c_k

optionally followed each iteration by a smoothing step w ← S w (the "EMS" algorithm of
Silverman, Jones, Wilson & Nychka, J. R. Stat. Soc. B 52, 271 (1990)), the smoothness
prior that stands in for the regularisation of MAP-NTA (Silmore, Gong, Strano & Swan,
ACS Nano 13, 3940 (2019)).

The rows p_k· are smooth Gamma curves on a log grid, so the (K, G) matrix has a low
numerical rank; :func:`em_weights_factored` runs the same iteration with p ≈ L M (a
truncated SVD, made and error-bounded by :func:`nta.distribution._lowrank_factors`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["gamma_loglik_matrix", "likelihood_matrix", "em_weights", "em_weights_factored", "em_weights_factored_binned"]


@numba.njit(cache=True, nogil=True)
def _loglik_one(dhat, n, s2, dt, r, dtrue):
    """log p(D̂ | D_true) of the Gamma approximation (−inf for D̂ ≤ 0 or bad input)."""
    if not (dhat > 0.0) or not (dtrue > 0.0) or not (n > 0.0):
        return -np.inf
    a = s2 / dt - 2.0 * r * dtrue
    var = 0.5 * ((6.0 * dtrue * dtrue + 4.0 * dtrue * a + 2.0 * a * a) / n + 4.0 * (dtrue + a) * (dtrue + a) / (n * n))
    alpha = dtrue * dtrue / var
    beta = dtrue / var
    return alpha * math.log(beta) - math.lgamma(alpha) + (alpha - 1.0) * math.log(dhat) - beta * dhat


@numba.njit(cache=True, parallel=True)
def gamma_loglik_matrix(d_hat, n_steps, sigma2, dt, r, d_grid):
    """Log-likelihood of every track at every grid point.

    Parameters
    ----------
    d_hat : (K,) float64
        CVE estimates D̂_k (any unit of D, e.g. µm²/s; must match ``d_grid``).
    n_steps : (K,) float64
        Valid unit-lag steps N_k of each track.
    sigma2 : (K,) float64
        Localization variance σ_k² (length², consistent with D × time), ≥ 0.
    dt : float
        Frame interval Δt (time unit of D).
    r : float
        Motion-blur coefficient R (0 … 1/6).
    d_grid : (G,) float64
        True diffusion coefficients of the grid, > 0.

    Returns
    -------
    (K, G) float64
        log p(D̂_k | D_j); −inf where D̂_k ≤ 0 or N_k ≤ 0.
    """
    k_n = d_hat.shape[0]
    g_n = d_grid.shape[0]
    out = np.empty((k_n, g_n), np.float64)
    for k in numba.prange(k_n):
        for j in range(g_n):
            out[k, j] = _loglik_one(d_hat[k], n_steps[k], sigma2[k], dt, r, d_grid[j])
    return out


@numba.njit(cache=True, parallel=True)
def likelihood_matrix(loglik):
    """Row-scaled likelihoods exp(ll_kj − max_j ll_kj) (row scale cancels in EM).

    Parameters
    ----------
    loglik : (K, G) float64

    Returns
    -------
    lik : (K, G) float64
        In [0, 1]; a row with no finite entry is all zeros.
    row_log_scale : (K,) float64
        max_j ll_kj (−inf for such a row).
    """
    k_n, g_n = loglik.shape
    lik = np.zeros((k_n, g_n), np.float64)
    scale = np.empty(k_n, np.float64)
    for k in numba.prange(k_n):
        m = -np.inf
        for j in range(g_n):
            if loglik[k, j] > m:
                m = loglik[k, j]
        scale[k] = m
        if m > -np.inf:
            for j in range(g_n):
                lik[k, j] = math.exp(loglik[k, j] - m)
    return lik, scale


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _em_step(w, acc, new, tot, smoother, use_s):
    """The end of one EM / EMS iteration, shared by :func:`em_weights` and
    :func:`em_weights_factored`: w ← normalise(S (w ⊙ acc / tot)) (S only with ``use_s``),
    ``acc`` and ``new`` (G,) used as scratch. Returns the largest change of a weight."""
    g_n = w.shape[0]
    for j in range(g_n):
        new[j] = w[j] * acc[j] / tot
    if use_s:
        for i in range(g_n):
            v = 0.0
            for j in range(g_n):
                v += smoother[i, j] * new[j]
            acc[i] = v
        for j in range(g_n):
            new[j] = acc[j]
    s = 0.0
    for j in range(g_n):
        s += new[j]
    delta = 0.0
    for j in range(g_n):
        new[j] /= s
        dd = abs(new[j] - w[j])
        if dd > delta:
            delta = dd
        w[j] = new[j]
    return delta


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _loglik(lik, track_w, w):
    """Σ_k c_k log Σ_j p_kj w_j over the tracks with c_k ≠ 0 and a positive sum."""
    ll = 0.0
    for k in range(lik.shape[0]):
        c = track_w[k]
        if c == 0.0:
            continue
        den = 0.0
        for j in range(lik.shape[1]):
            den += lik[k, j] * w[j]
        if den > 0.0:
            ll += c * math.log(den)
    return ll


# fastmath limited to re-association and FMA contraction (no NaN/Inf assumptions): lets LLVM
# vectorise the Σ_j p_kj w_j reductions (about 3× faster; the bootstrap runs hundreds of these
# fits); results differ from strict left-to-right summation only by rounding (~1e-15 relative).
@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def em_weights(lik, track_w, w0, smoother, max_iter, tol):
    """EM (Richardson–Lucy) mixing weights on the grid, with an optional smoothing step.

    Parameters
    ----------
    lik : (K, G) float64
        Likelihoods p_kj (any positive per-row scale), ≥ 0.
    track_w : (K,) float64
        Weight c_k of each track (1 for all tracks; bootstrap multiplicities; 0 drops a
        track). Rows of ``lik`` that are all zero must have weight 0.
    w0 : (G,) float64
        Starting weights, ≥ 0, positive sum (normalised inside).
    smoother : (G, G) float64
        Smoothing matrix S applied after each multiplicative step (columns sum to 1);
        a 0×0 array means none (plain ML-EM).
    max_iter : int
        Maximum iterations.
    tol : float
        Stop when the largest change of any weight in one iteration is below ``tol``.

    Returns
    -------
    w : (G,) float64
        Weights, sum 1.
    n_iter : int
        Iterations done.
    loglik : float
        Σ_k c_k log Σ_j p_kj w_j at the returned weights (row scales excluded).
    """
    k_n, g_n = lik.shape
    w = w0 / w0.sum()
    tot = track_w.sum()
    acc = np.empty(g_n, np.float64)
    new = np.empty(g_n, np.float64)
    use_s = smoother.shape[0] == g_n
    it = 0
    while it < max_iter:
        it += 1
        for j in range(g_n):
            acc[j] = 0.0
        for k in range(k_n):
            c = track_w[k]
            if c == 0.0:
                continue
            den = 0.0
            for j in range(g_n):
                den += lik[k, j] * w[j]
            if den <= 0.0:
                continue
            f = c / den
            for j in range(g_n):
                acc[j] += lik[k, j] * f
        if _em_step(w, acc, new, tot, smoother, use_s) < tol:
            break
    return w, it, _loglik(lik, track_w, w)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def em_weights_factored(lf, mf, lik, track_w, w0, smoother, max_iter, tol):
    """:func:`em_weights` with the likelihood products through a rank-r factorisation.

    With p ≈ L M, Σ_j p_kj w_j = Σ_i L_ki (M w)_i and Σ_k c_k p_kj / den_k =
    Σ_i M_ij (Σ_k L_ki c_k / den_k): K r + r G multiply-adds per product instead of K G.
    Everything else (stopping rule, smoothing, renormalisation, skipped tracks) is
    :func:`em_weights`'s. The returned log-likelihood uses the full ``lik``.

    Parameters
    ----------
    lf : (K, r) float64
        Left factor L.
    mf : (r, G) float64
        Right factor M.
    lik : (K, G) float64
        The likelihoods p_kj themselves (for the final log-likelihood only).
    track_w, w0, smoother, max_iter, tol
        As :func:`em_weights`.

    Returns
    -------
    w : (G,) float64
        Weights, sum 1.
    n_iter : int
        Iterations done.
    loglik : float
        Σ_k c_k log Σ_j p_kj w_j at the returned weights, with the full ``lik``.

    Notes
    -----
    If every row satisfies ‖p_k − (L M)_k‖₂ ≤ τ min_j p_kj (the factors of
    :func:`nta.distribution._lowrank_factors`), each Σ_j p_kj w_j (Σ w = 1) and each
    Σ_k p_kj c_k / den_k is within relative error τ of the full product, every iteration.
    """
    # the binned kernel with one bin and π ≡ 1 (multiplying by 1.0 changes no value)
    return em_weights_factored_binned(lf, mf, np.ones((mf.shape[1], 1)), np.zeros(lf.shape[0], np.int64), lik, track_w,
                                      w0, smoother, max_iter, tol)


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def em_weights_factored_binned(lf, mf, pi, bins, lik, track_w, w0, smoother, max_iter, tol):
    """:func:`em_weights_factored` for likelihood rows scaled per bin: p_kj π_{j, b_k}.

    The track-length model of :func:`nta.distribution.fit_length_aware` multiplies row k of
    the likelihood matrix by the probability π_{j, b_k} of the track's length bin b_k given
    grid point j. With p ≈ L M (factors of the *unscaled* rows),
    Σ_j p_kj π_{j,b_k} w_j = Σ_i L_ki (M (π_{·,b_k} ⊙ w))_i and
    Σ_k c_k p_kj π_{j,b_k} / den_k = Σ_b π_jb Σ_i M_ij (Σ_{k: b_k = b} L_ki c_k / den_k):
    2 (K r + B r G) multiply-adds per iteration instead of 2 K G.

    Parameters
    ----------
    lf : (K, r) float64
        Left factor L of the unscaled rows.
    mf : (r, G) float64
        Right factor M.
    pi : (G, B) float64
        π_jb ≥ 0.
    bins : (K,) int64
        b_k in 0 … B − 1.
    lik : (K, G) float64
        The scaled rows p_kj π_{j,b_k} themselves (for the final log-likelihood only).
    track_w, w0, smoother, max_iter, tol
        As :func:`em_weights`.

    Returns
    -------
    w : (G,) float64
        Weights, sum 1.
    n_iter : int
        Iterations done.
    loglik : float
        Σ_k c_k log Σ_j lik_kj w_j at the returned weights, with the full ``lik``.

    Notes
    -----
    If every unscaled row satisfies ‖p_k − (L M)_k‖₂ ≤ τ min_j p_kj, each scaled product
    keeps relative error ≤ τ: with a_j = π_{j,b} w_j ≥ 0, |Σ_j E_kj a_j| ≤ ‖E_k‖₂ ‖a‖₂ ≤
    τ min_j p_kj Σ_j a_j ≤ τ Σ_j p_kj a_j (‖a‖₂ ≤ ‖a‖₁), and each term of the second sum
    is within τ of its exact value (|E_kj| ≤ τ p_kj).
    """
    k_n, r_n = lf.shape
    g_n = mf.shape[1]
    b_n = pi.shape[1]
    w = w0 / w0.sum()
    tot = track_w.sum()
    u = np.empty((b_n, r_n), np.float64)
    accr = np.empty((b_n, r_n), np.float64)
    acc = np.empty(g_n, np.float64)
    tmp = np.empty(g_n, np.float64)
    pw = np.empty(g_n, np.float64)
    new = np.empty(g_n, np.float64)
    use_s = smoother.shape[0] == g_n
    it = 0
    while it < max_iter:
        it += 1
        for b in range(b_n):  # u_b = M (π_b ⊙ w)
            for j in range(g_n):
                pw[j] = pi[j, b] * w[j]
            for i in range(r_n):
                v = 0.0
                for j in range(g_n):
                    v += mf[i, j] * pw[j]
                u[b, i] = v
                accr[b, i] = 0.0
        for k in range(k_n):
            c = track_w[k]
            if c == 0.0:
                continue
            b = bins[k]
            den = 0.0
            for i in range(r_n):
                den += lf[k, i] * u[b, i]
            if den <= 0.0:
                continue
            f = c / den
            for i in range(r_n):
                accr[b, i] += lf[k, i] * f
        for j in range(g_n):
            acc[j] = 0.0
        for b in range(b_n):  # acc = Σ_b π_b ⊙ (Mᵀ accr_b)
            for j in range(g_n):
                tmp[j] = 0.0
            for i in range(r_n):
                a = accr[b, i]
                for j in range(g_n):
                    tmp[j] += mf[i, j] * a
            for j in range(g_n):
                acc[j] += pi[j, b] * tmp[j]
        if _em_step(w, acc, new, tot, smoother, use_s) < tol:
            break
    return w, it, _loglik(lik, track_w, w)
