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

    Parameters
    ----------
    pos : (m, 2) float64, px (NaN = missing point)
    frame : (m,) int64, strictly increasing
    r : float, motion-blur coefficient R

    Returns
    -------
    tuple (D px²/frame, var(D) px⁴/frame², σ² px², n_steps, n_pairs, n_points)
    """
    pos = np.asarray(pos, dtype=float).reshape(-1, 2)
    frame = np.asarray(frame, dtype=np.int64)
    finite = np.isfinite(pos).all(axis=1)
    n_points = int(finite.sum())
    # step i goes from row i to row i + 1; valid if unit lag and both ends finite
    steps = []  # (row index i, dx, dy)
    for i in range(len(frame) - 1):
        if frame[i + 1] - frame[i] == 1 and finite[i] and finite[i + 1]:
            steps.append((i, pos[i + 1, 0] - pos[i, 0], pos[i + 1, 1] - pos[i, 1]))
    # adjacent pairs: step from row i and step from row i + 1 (frames f, f+1, f+2)
    pairs = [(a, b) for a, b in zip(steps[:-1], steps[1:]) if b[0] == a[0] + 1]
    n_steps, n_pairs = len(steps), len(pairs)
    if n_steps < 2 or n_pairs < 1:
        return np.nan, np.nan, np.nan, n_steps, n_pairs, n_points
    dx = np.array([s[1] for s in steps])
    dy = np.array([s[2] for s in steps])
    cx = np.array([a[1] * b[1] for a, b in pairs])
    cy = np.array([a[2] * b[2] for a, b in pairs])
    d_axes, s2_axes = [], []
    for sq, cov in ((np.mean(dx**2), np.mean(cx)), (np.mean(dy**2), np.mean(cy))):
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
