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
finite) and the covariance of adjacent steps:

    D̂  = ⟨Δx²⟩ / (2Δt) + ĉ / Δt
    σ̂² = R ⟨Δx²⟩ + (2R − 1) ĉ

with R the motion-blur coefficient. ĉ estimates ⟨Δx_n Δx_{n+1}⟩; it averages M terms:
each pair of *adjacent* valid steps (three consecutive frames with points) gives
Δx_n Δx_{n+1}, as in the paper, and each lag-2 displacement Δ₂x = x_{f+2} − x_f whose
middle frame f + 1 has no point (a frame the locator missed and the linker bridged, or a
NaN point) gives Δ₂x² / 2 − ⟨Δx²⟩, which has the same expectation (Δ₂x = Δx_n + Δx_{n+1}).
The two axes are pooled by averaging D̂ and σ̂². Without missing points this is exactly the
paper's CVE.

Why the second kind of term (nta, 2026-11-30). A dim particle is detected more often in
frames where it moved little during the exposure (its spot is more compact, so brighter):
detection selects the motion inside the exposures of the frames it keeps. With motion
blur, ⟨Δx_n Δx_{n+1}⟩ is a property of frame n + 1's exposure (the covariance of the
motion before and after its centroid), and that frame is one that was detected, so the
adjacent-step terms alone see only selected exposures and D̂ comes out low: 0.83 D with
58 % of frames detected (``tests/test_diffusion.py``; 0.78 D at 37 %), and the accuracy
benchmark's 60 nm D50 came out 5.9 % high. Per axis, with σ² the localization variance,
A the (selected) variance of a detected frame's centroid-to-edge motion (the same at both
ends by time reversal) and M_det / M_miss the mean square of a detected / missed frame's
motion across its exposure, an adjacent pair's term has expectation M_det / 2 − A − σ² and a
term across a missed frame M_miss / 2 − A − σ²; averaged over both at the rate the frames
are missed, M becomes the unselected 2D·t_exposure, and with ⟨Δx²⟩ / 2 (expectation
A + σ² + D(Δt − t_exposure)) D̂ has expectation D again, whatever the detection probability
depends on within each exposure.

Limits (measured; ``tests/test_diffusion.py`` and the history in ``benchmarks/accuracy.py``):

* The balance holds on average over tracks. One track's ĉ weights the two kinds of term by
  its own share of missed middles, f, not the population's, q, so given its detection
  pattern E[D̂] = D + (f − q)(M_miss − M_det) / 2: tracks with few misses come out low and
  tracks with many high. A selection of tracks correlated with f brings part of the bias
  back; the pipeline's minimum number of unit steps is one (a fresh-clone review's
  simulation, 60-frame tracks, about half the frames detected according to their motion:
  mean D̂ / D 1.015–1.020 over all tracks, 0.937–0.965 over those with ≥ 13 unit steps;
  the adjacent-step CVE 0.47–0.63).
* It assumes the selection is independent from frame to frame. Where misses come in runs
  (a particle dimming as it moves through the light sheet) part of it remains: on rendered
  100 nm frames, true positions of the detected frames, D̂ was 0.976 ± 0.008 of the
  all-frames D (adjacent-step CVE 0.968); at 60 nm 1.007 ± 0.022 (0.885).
* σ̂² absorbs the selected blur: with motion-dependent detection it comes out low, even
  negative on average (same review: −0.03 and 0.05 px² for a true 0.25; correct with
  every frame kept or frames dropped at random), and with it the localization precision
  ``sigma_loc_um`` and the ε the FTLA likelihood uses (:mod:`nta.distribution` models σ²
  against brightness over all tracks).

The test gives 1.01 ± 0.01 D at 58 % detected (1.03 ± 0.01 at 37 %), and the accuracy
benchmark's 60 nm D50 +1.7 %. Without missing points nothing changes.

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


# Implementation notes (speed; the results are bit-for-bit those of the straightforward loop)
#
# * One pass over the track's rows, branch-free per point for the steps and adjacent pairs:
#   their conditions are booleans, and invalid terms are added as exactly 0.0 (``x + 0.0 ==
#   x`` for every accumulated value, which starts at +0.0 and so is never −0.0), so the sums
#   see the same operands in the same order as a loop that skips them. NaN / inf points are
#   masked, never multiplied by 0 (0 × NaN would be NaN). The lag-2 terms across a missing
#   point sit behind one rarely taken branch (only where the unit step is invalid), which
#   reads the row before row i from memory instead of carrying it: measured with the
#   benchmark's data (2 % gaps), serial 4.8 ns per point branch-free with the row carried,
#   3.4 with the branch; 2 threads 2.6 and 1.8.
# * Rows are addressed through a flat (2n,) view of ``pos`` with unsigned indices: no
#   per-access negative-index wraparound and no runtime stride multiply; no array views are
#   made per track (each view costs reference-count calls).
# * ``cve_tracks`` hands each thread contiguous blocks of tracks with equal numbers of
#   points (not of tracks), so a thread is never left with the long tracks.
# History, on the benchmark's 10⁶ tracks / 52 M points (benchmarks/kernel.py data, old and new
# kernels interleaved in one process, 2 shared CPUs): the branch-free loop took the
# adjacent-step-only kernel from 4.1 to 2.4 ns per point serial, 3.3 to 2.0 with 2 threads
# (outputs bit-for-bit equal); the missed-frame terms (2026-11-30) then cost the numbers
# in the previous item.


# Blocks of tracks for the parallel loop (a constant: numba.get_num_threads() inside a
# cached function would make it uncacheable). 1024 blocks of ≈ equal rows balance up to
# 64 threads to within a few per cent.
_N_BLOCKS = 1024


@numba.njit(cache=True, nogil=True)
def _cve_one(flat, frame, start, stop, r):
    """CVE of one track (rows start:stop of the flat layout).

    ``flat`` is ``pos.reshape(-1)`` (x0, y0, x1, y1, …); returns
    (D, var_D, sigma2, n_steps, n_pairs, n_points) as documented in :func:`cve_tracks`.
    """
    n_points = 0
    n_steps = 0
    n_pairs = 0  # adjacent valid steps (three consecutive frames)
    n_gap = 0  # lag-2 displacements whose middle frame has no point
    sum_sq = 0.0  # Σ (Δx² + Δy²) over valid steps
    sum_cov = 0.0  # Σ (Δx_n Δx_{n+1} + Δy_n Δy_{n+1}) over adjacent valid steps
    sum_gap = 0.0  # Σ (Δ₂x² + Δ₂y²) over lag-2 displacements across a missing point
    if stop > start:
        one = np.uint64(1)
        two = np.uint64(2)
        u0 = np.uint64(start)
        u1 = np.uint64(stop)
        xi = flat[two * u0]
        yi = flat[two * u0 + one]
        fi = frame[u0]
        fin_i = np.isfinite(xi) & np.isfinite(yi)
        n_points += fin_i
        prev_ok = False  # the step into row i was valid
        pdx = 0.0
        pdy = 0.0
        for j in range(u0 + one, u1):
            xj = flat[two * j]
            yj = flat[two * j + one]
            fj = frame[j]
            fin_j = np.isfinite(xj) & np.isfinite(yj)
            n_points += fin_j
            ok = fin_i & fin_j & (fj - fi == 1)  # valid unit-lag step i → j
            dx = xj - xi
            dy = yj - yi
            sq = dx * dx + dy * dy
            n_steps += ok
            sum_sq += sq if ok else 0.0
            pair = ok & prev_ok  # adjacent valid steps (three consecutive frames)
            n_pairs += pair
            cv = dx * pdx + dy * pdy
            sum_cov += cv if pair else 0.0
            if not ok and fin_j:
                # rare (a gap or a missing point): a lag-2 displacement into row j across a
                # frame with no point, from row i two frames back (a missed frame) or, when
                # row i is one frame back but not finite, from the row before it
                if fin_i and fj - fi == 2:
                    n_gap += 1
                    sum_gap += sq
                elif (not fin_i) and fj - fi == 1 and j >= u0 + two:
                    h = j - two
                    xh = flat[two * h]
                    yh = flat[two * h + one]
                    if frame[h] == fj - 2 and np.isfinite(xh) and np.isfinite(yh):
                        gx = xj - xh
                        gy = yj - yh
                        n_gap += 1
                        sum_gap += gx * gx + gy * gy
            pdx = dx
            pdy = dy
            prev_ok = ok
            xi = xj
            yi = yj
            fi = fj
            fin_i = fin_j
    n_cov = n_pairs + n_gap
    if n_steps < 2 or n_cov < 1:
        return np.nan, np.nan, np.nan, n_steps, n_cov, n_points
    msq = sum_sq / (2.0 * n_steps)  # ⟨Δx²⟩ averaged over the two axes
    # ⟨Δx_n Δx_{n+1}⟩ averaged over the two axes: adjacent steps as they are, and each
    # lag-2 displacement across a missing point as Δ₂x² / 2 − ⟨Δx²⟩ (the same expectation)
    cov = (sum_cov + 0.5 * sum_gap - 2.0 * msq * n_gap) / (2.0 * n_cov)
    d = 0.5 * msq + cov
    s2 = r * msq + (2.0 * r - 1.0) * cov
    dc = d if d > 0.0 else 0.0
    s2c = s2 if s2 > 0.0 else 0.0
    a = s2c - 2.0 * r * dc  # = D ε
    nf = float(n_steps)
    var1 = (6.0 * dc * dc + 4.0 * dc * a + 2.0 * a * a) / nf + 4.0 * (dc + a) * (dc + a) / (nf * nf)
    return d, 0.5 * var1, s2, n_steps, n_cov, n_points


@numba.njit(cache=True, nogil=True)
def _cve_block(flat, frame, offsets, r, k0, k1, d, var_d, sigma2, n_steps, n_pairs, n_points):
    """:func:`_cve_one` for tracks k0:k1, written into the output arrays."""
    for k in range(k0, k1):
        res = _cve_one(flat, frame, offsets[k], offsets[k + 1], r)
        d[k] = res[0]
        var_d[k] = res[1]
        sigma2[k] = res[2]
        n_steps[k] = res[3]
        n_pairs[k] = res[4]
        n_points[k] = res[5]


@numba.njit(cache=True, nogil=True)
def _block_bounds(offsets, n_blocks):
    """Track indices splitting the tracks into ``n_blocks`` runs of ≈ equal numbers of rows.

    Returns (n_blocks + 1,) int64, non-decreasing, from 0 to n_tracks.
    """
    n_tracks = offsets.shape[0] - 1
    bounds = np.empty(n_blocks + 1, np.int64)
    n_rows = offsets[n_tracks] - offsets[0]
    for b in range(n_blocks + 1):
        target = offsets[0] + (n_rows * b) // n_blocks
        kb = np.searchsorted(offsets, target)
        bounds[b] = min(kb, n_tracks)
    bounds[0] = 0
    bounds[n_blocks] = n_tracks
    return bounds


@numba.njit(cache=True, parallel=True)
def cve_tracks(pos, frame, offsets, r):
    """CVE for every track at once, parallel over blocks of tracks (``prange``).

    Parameters
    ----------
    pos : ndarray, (n, 2) float64
        Positions, px; NaN marks a missing point.
    frame : ndarray, (n,) int64
        Frame numbers, strictly increasing within each track.
    offsets : ndarray, (n_tracks + 1,) int64
        Track k is rows ``offsets[k]:offsets[k + 1]``; non-decreasing, within 0 … n (not
        checked here: the wrappers in :mod:`nta.diffusion` validate).
    r : float
        Motion-blur coefficient R (0 … 1/6).

    Returns
    -------
    d : (n_tracks,) float64
        D̂, px²/frame (NaN with < 2 valid steps or no covariance term; may be negative).
    var_d : (n_tracks,) float64
        Variance of D̂, px⁴/frame² (two pooled axes).
    sigma2 : (n_tracks,) float64
        σ̂², px² (may be negative).
    n_steps, n_pairs, n_points : (n_tracks,) int64
        Valid unit-lag steps; covariance terms (adjacent step pairs plus lag-2
        displacements across a missing point); finite points.

    Notes
    -----
    The tracks are split into up to ``_N_BLOCKS`` (1024) blocks with equal numbers of rows,
    handed out to the threads in contiguous runs, so the work per thread does not depend on
    how track lengths are ordered. Results are identical to
    :func:`cve_tracks_serial` (each track is summed by one thread, in row order).
    """
    n_tracks = offsets.shape[0] - 1
    if n_tracks < 0:
        n_tracks = 0
    flat = np.ascontiguousarray(pos).reshape(-1)
    d = np.empty(n_tracks, np.float64)
    var_d = np.empty(n_tracks, np.float64)
    sigma2 = np.empty(n_tracks, np.float64)
    n_steps = np.empty(n_tracks, np.int64)
    n_pairs = np.empty(n_tracks, np.int64)
    n_points = np.empty(n_tracks, np.int64)
    if n_tracks == 0:
        return d, var_d, sigma2, n_steps, n_pairs, n_points
    n_blocks = min(n_tracks, _N_BLOCKS)
    bounds = _block_bounds(offsets, n_blocks)
    for b in numba.prange(n_blocks):
        _cve_block(flat, frame, offsets, r, bounds[b], bounds[b + 1], d, var_d, sigma2, n_steps, n_pairs, n_points)
    return d, var_d, sigma2, n_steps, n_pairs, n_points


@numba.njit(cache=True, nogil=True)
def cve_tracks_serial(pos, frame, offsets, r):
    """Same as :func:`cve_tracks`, single-threaded and GIL-free.

    For callers that parallelise themselves (Dask workers running several tasks in
    threads of one process), where nested numba thread pools would oversubscribe.
    Parameters and returns as :func:`cve_tracks`.
    """
    n_tracks = offsets.shape[0] - 1
    if n_tracks < 0:
        n_tracks = 0
    flat = np.ascontiguousarray(pos).reshape(-1)
    d = np.empty(n_tracks, np.float64)
    var_d = np.empty(n_tracks, np.float64)
    sigma2 = np.empty(n_tracks, np.float64)
    n_steps = np.empty(n_tracks, np.int64)
    n_pairs = np.empty(n_tracks, np.int64)
    n_points = np.empty(n_tracks, np.int64)
    _cve_block(flat, frame, offsets, r, 0, n_tracks, d, var_d, sigma2, n_steps, n_pairs, n_points)
    return d, var_d, sigma2, n_steps, n_pairs, n_points
