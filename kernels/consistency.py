"""Track consistency: split tracks at steps implausible under the track's own Brownian law.

Plain arrays in and out, pixels and frames inside: no I/O, no pandas, no validation. The
validated wrapper is :func:`nta.link.split_implausible_steps`; the numpy reference is
``tests/naive.py`` (section "Consistency").

Data layout as :mod:`nta.kernels.diffusion` (flat, sorted by track then frame; ``offsets``
delimit the tracks).

Test (per piece of a track, repeated on the two pieces after every split). For the
M valid steps i between adjacent rows (both points finite; frame gap k_i ≥ 1) let
u_i = |Δr_i|² / k_i (px²/frame). For a Brownian track the two axis components of a step
are Gaussian with the same variance, so u_i / (2 s²) ~ Exp(1) (χ²₂ / 2), independent
between steps up to the weak correlation of adjacent steps from localization noise and
motion blur (Vestergaard et al. 2014). For the largest step i* the ratio

    F = u_i* / mean_{j ≠ i*} u_j

is, for any fixed i, F(2, 2(M − 1))-distributed with survival (1 + F/(M − 1))^−(M−1).
A union (Bonferroni) bound over the M steps gives the threshold at family-wise level α:

    F* = (M − 1) [(M / α)^{1/(M−1)} − 1].

If F > F*, the track is cut between the two points of step i* and both pieces are tested
again. Pieces with fewer than ``min_steps`` valid steps are not tested. The false-split
rate on genuine Brownian tracks is measured in ``tests/test_link.py`` and
``benchmarks/results/accuracy.md``.

A step across a gap of k frames (trackpy ``memory``) has variance ≈ k times a unit step
(the localization-noise part does not grow with k, which makes the test conservative for
gap steps).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["split_threshold", "split_cuts"]


@numba.njit(cache=True, nogil=True)
def split_threshold(m, alpha):
    """Threshold F* on max step² / mean of the other steps², for M = ``m`` steps at level ``alpha``."""
    nu = m - 1.0
    return nu * (math.exp(math.log(m / alpha) / nu) - 1.0)


@numba.njit(cache=True, nogil=True)
def _split_one(pos, frame, start, stop, alpha, min_steps, cut, stack):
    """Iterative splitting of rows start:stop; marks cut[j] = True where a new piece starts."""
    top = 0
    stack[top, 0] = start
    stack[top, 1] = stop
    top += 1
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        m = 0
        s = 0.0
        umax = -1.0
        jmax = -1
        for j in range(a, b - 1):
            x0 = pos[j, 0]
            y0 = pos[j, 1]
            x1 = pos[j + 1, 0]
            y1 = pos[j + 1, 1]
            if not (math.isfinite(x0) and math.isfinite(y0) and math.isfinite(x1) and math.isfinite(y1)):
                continue
            k = frame[j + 1] - frame[j]
            u = ((x1 - x0) ** 2 + (y1 - y0) ** 2) / k
            m += 1
            s += u
            if u > umax:
                umax = u
                jmax = j
        if m < min_steps or m < 2:
            continue
        rest = (s - umax) / (m - 1.0)
        if not (rest > 0.0):
            continue
        if umax / rest > split_threshold(float(m), alpha):
            cut[jmax + 1] = True
            stack[top, 0] = a
            stack[top, 1] = jmax + 1
            top += 1
            stack[top, 0] = jmax + 1
            stack[top, 1] = b
            top += 1


@numba.njit(cache=True, nogil=True)
def split_cuts(pos, frame, offsets, alpha, min_steps):
    """Rows where a consistent piece of a track starts after a cut.

    Parameters
    ----------
    pos : (n, 2) float64
        Positions, px, sorted by track then frame; NaN marks a missing point.
    frame : (n,) int64
        Frame numbers, strictly increasing within a track.
    offsets : (n_tracks + 1,) int64
        Track k is rows ``offsets[k]:offsets[k + 1]``.
    alpha : float
        Family-wise false-split level per piece tested (0 < alpha < 1).
    min_steps : int
        Pieces with fewer valid steps are not tested (≥ 2).

    Returns
    -------
    (n,) bool
        True at the first row of every piece made by a cut (never at a track's first row).
    """
    n = pos.shape[0]
    cut = np.zeros(n, np.bool_)
    longest = 1
    for k in range(offsets.size - 1):
        longest = max(longest, offsets[k + 1] - offsets[k])
    stack = np.empty((longest + 1, 2), np.int64)
    for k in range(offsets.size - 1):
        if offsets[k + 1] - offsets[k] > 2:
            _split_one(pos, frame, offsets[k], offsets[k + 1], alpha, min_steps, cut, stack)
    return cut
