"""Per-track diffusion coefficients: the covariance-based estimator (CVE), numba kernels.

Plain arrays in and out, pixels and frames inside (Δt = 1 frame): no I/O, no pandas, no
validation and no unit conversion. The public, validated wrappers are in
:mod:`nta.diffusion`; the obviously-correct numpy reference is ``tests/naive.py``.

Data layout (flat, sorted by track then frame)::

    pos      (n, 2) float64, px (x, y); a NaN coordinate marks a missing point
    frame    (n,)   int64, strictly increasing within a track (gaps allowed)
    offsets  (n_tracks + 1,) int64; track k is rows offsets[k]:offsets[k + 1]

Estimator (Vestergaard, Blainey & Flyvbjerg, Phys. Rev. E 89, 022726 (2014)), per axis,
from the N valid unit-lag steps Δx_n = x_{n+1} − x_n (frame step exactly 1, both points
finite) and the M pairs of *adjacent* valid steps (three consecutive frames):

    D̂  = ⟨Δx²⟩ / (2Δt) + ⟨Δx_n Δx_{n+1}⟩ / Δt
    σ̂² = R ⟨Δx²⟩ + (2R − 1) ⟨Δx_n Δx_{n+1}⟩

with R the motion-blur coefficient. The two axes are pooled by averaging D̂ and σ̂².

Variance of D̂ (the paper's Eq. for var(D̂), one axis, N steps):

    var(D̂) = D² [(6 + 4ε + 2ε²) / N + 4 (1 + ε)² / N²],   ε = σ² / (D Δt) − 2R

evaluated with the track's own estimates and halved for the two pooled axes (independent
axes, same N). Written with a = D ε = σ²/Δt − 2R D it reads
``(6 D² + 4 D a + 2 a²) / N + 4 (D + a)² / N²``, which needs no division by D. The
estimates are first clipped to their physical range, D ≥ 0 and σ² ≥ 0; this clips ε to
[−2R, ∞) and keeps the variance finite and positive for a track whose D̂ ≤ 0 (there it is
the noise-only variance, a = σ̂²). No upper clip is needed in the a-form.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["cve_tracks", "cve_tracks_serial"]


@numba.njit(cache=True, nogil=True)
def _cve_one(pos, frame, start, stop, r):
    """CVE of one track (rows start:stop). Returns (D, var_D, sigma2, n_steps, n_pairs, n_points)."""
    n_points = 0
    n_steps = 0
    n_pairs = 0
    sum_sq = 0.0  # Σ (Δx² + Δy²) over valid steps
    sum_cov = 0.0  # Σ (Δx_n Δx_{n+1} + Δy_n Δy_{n+1}) over adjacent valid steps
    prev_ok = False
    pdx = 0.0
    pdy = 0.0
    for i in range(start, stop):
        xi = pos[i, 0]
        yi = pos[i, 1]
        fin_i = np.isfinite(xi) and np.isfinite(yi)
        if fin_i:
            n_points += 1
        ok = False
        if fin_i and i + 1 < stop and frame[i + 1] - frame[i] == 1:
            xj = pos[i + 1, 0]
            yj = pos[i + 1, 1]
            if np.isfinite(xj) and np.isfinite(yj):
                ok = True
                dx = xj - xi
                dy = yj - yi
                n_steps += 1
                sum_sq += dx * dx + dy * dy
                if prev_ok:
                    n_pairs += 1
                    sum_cov += dx * pdx + dy * pdy
                pdx = dx
                pdy = dy
        prev_ok = ok
    if n_steps < 2 or n_pairs < 1:
        return np.nan, np.nan, np.nan, n_steps, n_pairs, n_points
    msq = sum_sq / (2.0 * n_steps)  # ⟨Δx²⟩ averaged over the two axes
    cov = sum_cov / (2.0 * n_pairs)  # ⟨Δx_n Δx_{n+1}⟩ averaged over the two axes
    d = 0.5 * msq + cov
    s2 = r * msq + (2.0 * r - 1.0) * cov
    dc = d if d > 0.0 else 0.0
    s2c = s2 if s2 > 0.0 else 0.0
    a = s2c - 2.0 * r * dc  # = D ε
    nf = float(n_steps)
    var1 = (6.0 * dc * dc + 4.0 * dc * a + 2.0 * a * a) / nf + 4.0 * (dc + a) * (dc + a) / (nf * nf)
    return d, 0.5 * var1, s2, n_steps, n_pairs, n_points


@numba.njit(cache=True, parallel=True)
def cve_tracks(pos, frame, offsets, r):
    """CVE for every track at once, parallel over tracks (``prange``).

    Parameters
    ----------
    pos : ndarray, (n, 2) float64
        Positions, px; NaN marks a missing point.
    frame : ndarray, (n,) int64
        Frame numbers, strictly increasing within each track.
    offsets : ndarray, (n_tracks + 1,) int64
        Track k is rows ``offsets[k]:offsets[k + 1]``.
    r : float
        Motion-blur coefficient R (0 … 1/6).

    Returns
    -------
    d : (n_tracks,) float64
        D̂, px²/frame (NaN with < 2 valid steps or no adjacent pair; may be negative).
    var_d : (n_tracks,) float64
        Variance of D̂, px⁴/frame² (two pooled axes).
    sigma2 : (n_tracks,) float64
        σ̂², px² (may be negative).
    n_steps, n_pairs, n_points : (n_tracks,) int64
        Valid unit-lag steps, adjacent step pairs, finite points.
    """
    n_tracks = offsets.shape[0] - 1
    if n_tracks < 0:
        n_tracks = 0
    d = np.empty(n_tracks, np.float64)
    var_d = np.empty(n_tracks, np.float64)
    sigma2 = np.empty(n_tracks, np.float64)
    n_steps = np.empty(n_tracks, np.int64)
    n_pairs = np.empty(n_tracks, np.int64)
    n_points = np.empty(n_tracks, np.int64)
    for k in numba.prange(n_tracks):
        res = _cve_one(pos, frame, offsets[k], offsets[k + 1], r)
        d[k] = res[0]
        var_d[k] = res[1]
        sigma2[k] = res[2]
        n_steps[k] = res[3]
        n_pairs[k] = res[4]
        n_points[k] = res[5]
    return d, var_d, sigma2, n_steps, n_pairs, n_points


@numba.njit(cache=True, nogil=True)
def cve_tracks_serial(pos, frame, offsets, r):
    """Same as :func:`cve_tracks`, single-threaded and GIL-free.

    For callers that parallelise themselves (Dask workers running several tasks in
    threads of one process), where nested numba thread pools would oversubscribe.
    """
    n_tracks = offsets.shape[0] - 1
    if n_tracks < 0:
        n_tracks = 0
    d = np.empty(n_tracks, np.float64)
    var_d = np.empty(n_tracks, np.float64)
    sigma2 = np.empty(n_tracks, np.float64)
    n_steps = np.empty(n_tracks, np.int64)
    n_pairs = np.empty(n_tracks, np.int64)
    n_points = np.empty(n_tracks, np.int64)
    for k in range(n_tracks):
        res = _cve_one(pos, frame, offsets[k], offsets[k + 1], r)
        d[k] = res[0]
        var_d[k] = res[1]
        sigma2[k] = res[2]
        n_steps[k] = res[3]
        n_pairs[k] = res[4]
        n_points[k] = res[5]
    return d, var_d, sigma2, n_steps, n_pairs, n_points
