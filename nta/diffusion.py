"""Per-track diffusion coefficients and hydrodynamic diameters.

The tracks table of :mod:`nta.link` is flattened into plain arrays
(:func:`flatten_tracks`), the numba kernel :mod:`nta.kernels.diffusion` estimates D and the
localization precision of every track at once in pixels and frames, and the wrappers here
validate the arrays and convert to physical units once:

    D [µm²/s] = D [px²/frame] × pixel_size² [µm²/px²] × fps [frames/s]
    σ [µm]    = σ [px] × pixel_size [µm/px]

Estimator: the covariance-based estimator (CVE) of Vestergaard, Blainey & Flyvbjerg
(2014), both axes pooled, with its variance formula, and with the covariance of adjacent
steps also estimated across frames the locator missed (so that detection favouring frames
with little motion does not bias D̂ low); see :mod:`nta.kernels.diffusion` for the
formulas, the reason and the conventions (gaps, missing points, clipping).

References
----------
.. [1] Vestergaard, C. L., Blainey, P. C. & Flyvbjerg, H. Optimal estimation of
   diffusion coefficients from single-particle trajectories. Phys. Rev. E 89, 022726
   (2014).
.. [2] Michalet, X. Mean square displacement analysis of single-particle trajectories
   with localization error: Brownian motion in an isotropic medium. Phys. Rev. E 82,
   041914 (2010).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .calibration import Calibration, stokes_einstein_diameter
from .kernels.diffusion import cve_tracks, cve_tracks_serial

__all__ = [
    "DEFAULT_MIN_TRACK_LENGTH",
    "PER_TRACK_COLUMNS",
    "flatten_tracks",
    "diffusion_coefficients",
    "diffusion_coefficients_dask",
    "per_track_table",
    "relative_sd_of_d",
]

#: Default minimum number of valid unit-lag steps for a track to be ``included``.
#:
#: Chosen from the CVE variance formula (:func:`relative_sd_of_d`): for a 100 nm sphere in
#: water at 22 °C (D ≈ 4.54 µm²/s) filmed at 25 frames/s, 0.166 µm/px, with 0.03 µm
#: localization noise, the relative SD of D̂ (two pooled axes) falls to ≤ 50 % at N = 11
#: steps for a shutter open the whole frame (R = 1/6, 44 % at 13) and at N = 13 steps for
#: an instantaneous exposure (R = 0, 49 % at 13; 57 % at 10). 13 therefore meets the 50 %
#: target whatever the exposure, and for 30–400 nm as well (≤ 49.6 %; 50.2 % at 1000 nm,
#: R = 0): the relative SD hardly depends on the size while the localization noise is small
#: compared with the diffusion step. It sits between NanoSight's own default minimum (about
#: 10 steps) and trackpy's walkthrough (drops tracks shorter than 25 frames; 31.5–35 % here).
DEFAULT_MIN_TRACK_LENGTH = 13

#: Columns of :func:`per_track_table`, in order.
PER_TRACK_COLUMNS = (
    "particle",
    "n_points",
    "n_steps",
    "frame_start",
    "frame_end",
    "D_um2_s",
    "D_var_um4_s2",
    "D_sd_um2_s",
    "sigma_loc_um",
    "diameter_nm",
    "mass_mean",
    "included",
    "parent_particle",
)


# --------------------------------------------------------------------------- flattening


def flatten_tracks(tracks: pd.DataFrame, pos_columns=("x", "y")):
    """Flatten a tracks table into the sorted flat arrays the kernels take.

    Parameters
    ----------
    tracks : pandas.DataFrame
        One row per localization, with columns ``particle`` (integer track id), ``frame``
        (integer frame number) and the two position columns (px). Row order is free. A
        trackpy table is accepted as is, including one whose index is named ``frame``
        (trackpy under pandas 3 may return such an index beside the ``frame`` column;
        the index is then dropped). If there is no ``frame`` column but the index is
        named ``frame``, the index is used.
    pos_columns : tuple of two str, default ("x", "y")
        The position columns, px. NaN marks a missing localization.

    Returns
    -------
    particle_ids : ndarray, (n_tracks,) int64
        Track ids, ascending; track k is ``particle_ids[k]``.
    pos : ndarray, (n, 2) float64, C-contiguous
        Positions, px, sorted by particle then frame.
    frame : ndarray, (n,) int64
        Frame numbers, same order.
    offsets : ndarray, (n_tracks + 1,) int64
        Track k is rows ``offsets[k]:offsets[k + 1]``; ``offsets[0] == 0``,
        ``offsets[-1] == n``.

    Raises
    ------
    ValueError
        A required column is missing; ``particle`` or ``frame`` has missing or
        non-integral values; a particle has two rows in the same frame.
    """
    ids, pos, frame, offsets, _, _ = _flatten(tracks, pos_columns)
    return ids, pos, frame, offsets


def _flatten(tracks, pos_columns):
    """flatten_tracks, also returning the normalised table and the sort order of its rows."""
    if not isinstance(tracks, pd.DataFrame):
        raise ValueError(f"tracks must be a pandas DataFrame, got {type(tracks).__name__}")
    pos_columns = tuple(pos_columns)
    if len(pos_columns) != 2:
        raise ValueError(f"pos_columns must name two columns (x, y), got {pos_columns!r}")
    df = tracks
    index_names = [n for n in df.index.names if n is not None]
    if "frame" not in df.columns and "frame" in index_names:
        df = df.reset_index(level="frame") if df.index.nlevels > 1 else df.reset_index()
        index_names = [n for n in df.index.names if n is not None]
    if any(n in df.columns for n in index_names):
        # trackpy (pandas 3) may set an index named 'frame' beside the 'frame' column
        df = df.reset_index(drop=True)
    missing = [c for c in ("particle", "frame", *pos_columns) if c not in df.columns]
    if missing:
        raise ValueError(
            f"tracks table lacks column(s) {missing}; it has {list(df.columns)} "
            "(expected the output of nta.link / trackpy.link)"
        )
    particle = _integral_column(df["particle"], "particle")
    frame = _integral_column(df["frame"], "frame")
    pos = np.column_stack(
        [pd.to_numeric(df[c], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan) for c in pos_columns]
    ) if len(df) else np.empty((0, 2), np.float64)
    order = _track_order(particle, frame)
    particle = particle[order]
    frame = np.ascontiguousarray(frame[order])
    pos = np.ascontiguousarray(pos[order], dtype=np.float64).reshape(-1, 2)
    if particle.size:
        same = (particle[1:] == particle[:-1]) & (frame[1:] == frame[:-1])
        if same.any():
            i = int(np.flatnonzero(same)[0])
            raise ValueError(
                f"particle {int(particle[i])} has more than one row in frame {int(frame[i])}; "
                "a track must have at most one position per frame"
            )
    # particle is sorted: tracks start where it changes
    starts = np.flatnonzero(np.concatenate([[True], particle[1:] != particle[:-1]])) if particle.size else np.empty(0, np.int64)
    ids = particle[starts]
    offsets = np.empty(ids.size + 1, np.int64)
    offsets[:-1] = starts
    offsets[-1] = particle.size
    return ids.astype(np.int64), pos, frame, offsets, df, order


def _track_order(particle, frame):
    """Row order sorting by particle then frame (one integer key when it fits, else lexsort)."""
    if particle.size == 0:
        return np.empty(0, np.intp)
    p0, p1 = int(particle.min()), int(particle.max())
    f0, f1 = int(frame.min()), int(frame.max())
    span = f1 - f0 + 1
    if (p1 - p0 + 1) * span < 2**62:
        key = (particle - p0) * span + (frame - f0)
        return np.argsort(key, kind="stable")
    return np.lexsort((frame, particle))


def _integral_column(col: pd.Series, name: str) -> np.ndarray:
    if col.isna().any():
        raise ValueError(f"column {name!r} has missing values; every row needs a {name} number")
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        raise ValueError(f"column {name!r} must hold integers, got dtype {col.dtype}")
    if pd.api.types.is_integer_dtype(col):
        return col.to_numpy(dtype=np.int64)
    v = col.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
        raise ValueError(f"column {name!r} must hold integers, found non-integral values")
    return v.astype(np.int64)


# --------------------------------------------------------------------------- validation


def _validate_arrays(pos, frame, offsets):
    """Check and normalise the flat arrays; returns C-contiguous float64/int64 copies or views."""
    pos = np.asarray(pos)
    frame = np.asarray(frame)
    offsets = np.asarray(offsets)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"pos must have shape (n, 2), got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.floating):
        raise ValueError(f"pos must be floating point (px), got dtype {pos.dtype}")
    n = pos.shape[0]
    if frame.ndim != 1 or frame.shape[0] != n:
        raise ValueError(f"frame must have shape ({n},) to match pos, got {frame.shape}")
    if frame.size and not np.issubdtype(frame.dtype, np.integer):
        raise ValueError(f"frame must be integer frame numbers, got dtype {frame.dtype}")
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        raise ValueError(f"offsets must have shape (n_tracks + 1,) with n_tracks >= 0, got {offsets.shape}")
    if not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(f"offsets must be integers, got dtype {offsets.dtype}")
    if offsets[0] != 0 or offsets[-1] != n:
        raise ValueError(f"offsets must start at 0 and end at n = {n} (the number of rows), got {int(offsets[0])} … {int(offsets[-1])}")
    if np.any(np.diff(offsets) < 0):
        k = int(np.flatnonzero(np.diff(offsets) < 0)[0])
        raise ValueError(f"offsets must be non-decreasing; offsets[{k + 1}] < offsets[{k}]")
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    frame = np.ascontiguousarray(frame, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if n > 1:
        # frames strictly increasing inside every track (sorted by track then frame)
        within = np.ones(n - 1, bool)
        inner = offsets[1:-1]
        inner = inner[(inner > 0) & (inner < n)]
        within[inner - 1] = False  # the step from the last row of one track to the next track
        bad = within & (np.diff(frame) <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            k = int(np.searchsorted(offsets, i, side="right") - 1)
            raise ValueError(
                f"frames must be strictly increasing within each track (sorted by track then frame); "
                f"track {k} has frame {int(frame[i + 1])} after {int(frame[i])} at row {i + 1}"
            )
    return pos, frame, offsets


def _blur_r(pixel_size_um, fps, exposure_ms):
    for name, v in (("pixel_size_um", pixel_size_um), ("fps", fps)):
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {v!r}") from None
        if not (math.isfinite(fv) and fv > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if exposure_ms is None:
        return 1.0 / 6.0
    e = float(exposure_ms)
    if not (math.isfinite(e) and e >= 0):
        raise ValueError(f"exposure_ms must be a finite number >= 0 or None, got {exposure_ms!r}")
    frac = e * 1e-3 * float(fps)
    if frac > 1.0001:
        raise ValueError(f"exposure {e:g} ms is longer than the frame interval {1000.0 / float(fps):.4g} ms")
    return min(1.0, frac) / 6.0


def _to_units(raw, pixel_size_um, fps):
    d, var_d, s2, n_steps, n_pairs, n_points = raw
    px2 = float(pixel_size_um) ** 2
    dconv = px2 * float(fps)
    with np.errstate(invalid="ignore"):
        sigma = np.where(s2 >= 0, np.sqrt(np.where(s2 >= 0, s2, 0.0)), np.nan) * float(pixel_size_um)
    return {
        "D_um2_s": d * dconv,
        "D_var_um4_s2": var_d * dconv * dconv,
        "sigma_loc_um": sigma,
        "sigma2_loc_um2": s2 * px2,
        "n_steps": n_steps,
        "n_pairs": n_pairs,
        "n_points": n_points,
    }


# --------------------------------------------------------------------------- estimators


def diffusion_coefficients(pos, frame, offsets, *, pixel_size_um, fps, exposure_ms=None):
    """Diffusion coefficient and localization precision of every track (CVE).

    Parameters
    ----------
    pos : array_like, (n, 2) float
        Positions, px, sorted by track then frame; NaN marks a missing point.
    frame : array_like, (n,) int
        Frame numbers, strictly increasing within each track; gaps (jumps > 1) allowed.
    offsets : array_like, (n_tracks + 1,) int
        Track k is rows ``offsets[k]:offsets[k + 1]`` (empty tracks allowed).
    pixel_size_um : float
        Pixel size, µm/px (> 0).
    fps : float
        Frame rate, frames/s (> 0).
    exposure_ms : float or None, optional
        Exposure time, ms, 0 … frame interval. Sets the motion-blur coefficient
        R = (exposure × fps) / 6; None means a shutter open the whole frame (R = 1/6).
        R affects σ̂ only; D̂ is unbiased for any R.

    Returns
    -------
    dict of str to ndarray, each (n_tracks,)
        ``D_um2_s`` (float64, µm²/s): D̂, unbiased for Brownian tracks with motion blur and
        localization noise, and on average over tracks when detection favours frames of
        little motion (limits in :mod:`nta.kernels.diffusion`); may be ≤ 0 for short noisy tracks;
        NaN with fewer than 2 valid unit-lag steps or no covariance term.
        ``D_var_um4_s2`` (float64, µm⁴/s²): variance of D̂ from Vestergaard et al.'s
        formula, halved for the two pooled axes, evaluated with the track's own estimates.
        ``sigma_loc_um`` (float64, µm): localization precision σ̂; NaN where σ̂² < 0.
        ``sigma2_loc_um2`` (float64, µm²): σ̂², signed (average it over tracks rather than σ̂).
        ``n_steps`` (int64): valid unit-lag steps (frame step 1, both points finite).
        ``n_pairs`` (int64): covariance terms: pairs of adjacent valid steps plus lag-2
        displacements across a frame with no point.
        ``n_points`` (int64): points with finite x and y.

    Raises
    ------
    ValueError
        Wrong shapes or dtypes, offsets not starting at 0 / ending at n / non-decreasing,
        frames not strictly increasing within a track, non-positive pixel size or frame
        rate, exposure negative or longer than the frame interval.

    References
    ----------
    .. [1] Vestergaard, C. L., Blainey, P. C. & Flyvbjerg, H. Phys. Rev. E 89, 022726 (2014).
    """
    r = _blur_r(pixel_size_um, fps, exposure_ms)
    pos, frame, offsets = _validate_arrays(pos, frame, offsets)
    raw = cve_tracks(pos, frame, offsets, r)
    return _to_units(raw, pixel_size_um, fps)


def _cve_chunk(pos, frame, offsets, r):
    """Dask task: the serial kernel on one chunk of tracks (raw px/frame outputs)."""
    return cve_tracks_serial(pos, frame, offsets, r)


def _split_tracks(offsets, n_chunks):
    """Chunk boundaries (track indices) with roughly equal numbers of rows."""
    n_tracks = offsets.size - 1
    n_chunks = max(1, min(int(n_chunks), n_tracks))
    n = int(offsets[-1])
    targets = np.linspace(0, n, n_chunks + 1)[1:-1]
    cuts = np.searchsorted(offsets, targets, side="left")
    bounds = np.unique(np.concatenate([[0], cuts, [n_tracks]]).astype(np.int64))
    return bounds


def diffusion_coefficients_dask(client, pos, frame, offsets, *, pixel_size_um, fps, exposure_ms=None, n_chunks=None):
    """:func:`diffusion_coefficients` computed on a Dask cluster.

    The tracks are split by ``offsets`` into ``n_chunks`` chunks of about equal numbers
    of rows, each chunk is scattered to the workers, the single-threaded kernel
    (:func:`nta.kernels.diffusion.cve_tracks_serial`) runs on each, and the results are
    gathered and concatenated in track order (the pattern of ``stumpy.stumped``).
    Results are identical to :func:`diffusion_coefficients`.

    Parameters
    ----------
    client : distributed.Client
        A connected Dask client.
    pos, frame, offsets, pixel_size_um, fps, exposure_ms
        As in :func:`diffusion_coefficients`.
    n_chunks : int, optional
        Number of chunks; default the total number of worker threads. Capped at the
        number of tracks.

    Returns
    -------
    dict of str to ndarray
        As :func:`diffusion_coefficients`.

    Raises
    ------
    ValueError
        As :func:`diffusion_coefficients`; also ``n_chunks`` < 1.
    """
    r = _blur_r(pixel_size_um, fps, exposure_ms)
    pos, frame, offsets = _validate_arrays(pos, frame, offsets)
    if n_chunks is None:
        n_chunks = max(1, sum(client.nthreads().values()))
    elif int(n_chunks) < 1:
        raise ValueError(f"n_chunks must be >= 1, got {n_chunks!r}")
    n_tracks = offsets.size - 1
    if n_tracks == 0:
        return _to_units(cve_tracks_serial(pos, frame, offsets, r), pixel_size_um, fps)
    bounds = _split_tracks(offsets, n_chunks)
    chunks = []
    for k0, k1 in zip(bounds[:-1], bounds[1:]):
        o0, o1 = int(offsets[k0]), int(offsets[k1])
        chunks.append((pos[o0:o1].copy(), frame[o0:o1].copy(), offsets[k0 : k1 + 1] - o0))
    scattered = [client.scatter(list(c)) for c in chunks]
    futures = [client.submit(_cve_chunk, *s, r, pure=False) for s in scattered]
    parts = client.gather(futures)
    raw = tuple(np.concatenate([p[i] for p in parts]) for i in range(6))
    return _to_units(raw, pixel_size_um, fps)


def relative_sd_of_d(n_steps, d_um2_s, sigma_um, *, pixel_size_um, fps, exposure_ms=None):
    """Relative SD of D̂ (two pooled axes) expected from the CVE variance formula.

    sqrt(var(D̂)) / D with var(D̂) = D² [(6 + 4ε + 2ε²)/N + 4(1 + ε)²/N²] / 2,
    ε = σ²/(D Δt) − 2R: the evidence behind :data:`DEFAULT_MIN_TRACK_LENGTH`.

    Parameters
    ----------
    n_steps : int or array_like
        Number of unit-lag steps N.
    d_um2_s : float
        True diffusion coefficient, µm²/s (> 0).
    sigma_um : float
        Localization precision, µm.
    pixel_size_um, fps, exposure_ms
        As in :func:`diffusion_coefficients` (the result depends on them only through
        σ²/(D Δt) and R).

    Returns
    -------
    float or ndarray of float64
        Relative SD (dimensionless).
    """
    r = _blur_r(pixel_size_um, fps, exposure_ms)
    n = np.asarray(n_steps, dtype=float)
    eps = sigma_um**2 / (d_um2_s / fps) - 2.0 * r
    var_rel = ((6.0 + 4.0 * eps + 2.0 * eps**2) / n + 4.0 * (1.0 + eps) ** 2 / n**2) / 2.0
    out = np.sqrt(var_rel)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- table


def per_track_table(tracks: pd.DataFrame, calibration: Calibration, *, min_track_length=DEFAULT_MIN_TRACK_LENGTH, pos_columns=("x", "y")) -> pd.DataFrame:
    """One row per track: D, its uncertainty, localization precision and diameter.

    Parameters
    ----------
    tracks : pandas.DataFrame
        Tracks table (``particle``, ``frame``, x, y in px; optionally ``mass``), as from
        :mod:`nta.link` / ``trackpy.link``; see :func:`flatten_tracks`.
    calibration : nta.calibration.Calibration
        Pixel size, frame rate, exposure (motion blur), temperature and viscosity.
    min_track_length : int, default :data:`DEFAULT_MIN_TRACK_LENGTH` (13)
        Minimum number of valid unit-lag steps (``n_steps``) for ``included``.
    pos_columns : tuple of two str, default ("x", "y")
        Position columns, px.

    Returns
    -------
    pandas.DataFrame
        Columns, in order (:data:`PER_TRACK_COLUMNS`), one row per particle, ascending:
        ``particle`` (int64); ``n_points`` (int64, finite points); ``n_steps`` (int64, valid
        unit-lag steps); ``frame_start``, ``frame_end`` (int64, first and last frame of the
        track's rows); ``D_um2_s`` (float64, µm²/s, may be ≤ 0 or NaN);
        ``D_var_um4_s2`` (float64, µm⁴/s²); ``D_sd_um2_s`` (float64, µm²/s, its square
        root); ``sigma_loc_um`` (float64, µm, NaN where σ̂² < 0); ``diameter_nm``
        (float64, nm, Stokes–Einstein; NaN where D ≤ 0 or NaN); ``mass_mean`` (float64,
        mean of the ``mass`` column over the track's rows, NaN if there is no such column);
        ``included`` (bool: ``n_steps >= min_track_length`` and D > 0);
        ``parent_particle`` (int64: the track id before :func:`nta.link.split_implausible_steps`
        cut it at an implausible step, from the tracks' ``parent`` column; equal to
        ``particle`` when there is no such column).

    Raises
    ------
    ValueError
        As :func:`flatten_tracks`; ``min_track_length`` < 2; ``calibration`` is not a
        Calibration.
    """
    if not isinstance(calibration, Calibration):
        raise ValueError(f"calibration must be an nta.calibration.Calibration, got {type(calibration).__name__}")
    if int(min_track_length) != min_track_length or min_track_length < 2:
        raise ValueError(f"min_track_length must be an integer >= 2 (valid steps), got {min_track_length!r}")
    ids, pos, frame, offsets, df, order = _flatten(tracks, pos_columns)
    res = diffusion_coefficients(
        pos, frame, offsets, pixel_size_um=calibration.pixel_size_um, fps=calibration.fps, exposure_ms=calibration.exposure_ms
    )
    n_tracks = ids.size
    starts = offsets[:-1]
    ends = offsets[1:] - 1
    frame_start = frame[starts] if n_tracks else np.empty(0, np.int64)
    frame_end = frame[ends] if n_tracks else np.empty(0, np.int64)
    d = res["D_um2_s"]
    diameter = np.asarray(stokes_einstein_diameter(d, calibration.temperature_c, calibration.viscosity_mpas), dtype=np.float64).reshape(-1)
    mass_mean = np.full(n_tracks, np.nan)
    if "mass" in df.columns and n_tracks:
        mass = pd.to_numeric(df["mass"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)[order]
        fin = np.isfinite(mass)
        sums = np.add.reduceat(np.where(fin, mass, 0.0), offsets[:-1])
        counts = np.add.reduceat(fin.astype(np.int64), offsets[:-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            mass_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    parent = ids.astype(np.int64)
    if "parent" in df.columns and n_tracks:
        par = _integral_column(df["parent"], "parent")[order]
        parent = par[offsets[:-1]]
    with np.errstate(invalid="ignore"):
        included = (res["n_steps"] >= int(min_track_length)) & (d > 0)
    table = pd.DataFrame(
        {
            "particle": ids.astype(np.int64),
            "n_points": res["n_points"].astype(np.int64),
            "n_steps": res["n_steps"].astype(np.int64),
            "frame_start": np.asarray(frame_start, np.int64),
            "frame_end": np.asarray(frame_end, np.int64),
            "D_um2_s": d,
            "D_var_um4_s2": res["D_var_um4_s2"],
            "D_sd_um2_s": np.sqrt(res["D_var_um4_s2"]),
            "sigma_loc_um": res["sigma_loc_um"],
            "diameter_nm": diameter,
            "mass_mean": mass_mean.astype(np.float64),
            "included": included.astype(bool),
            "parent_particle": parent,
        },
        columns=list(PER_TRACK_COLUMNS),
    )
    return table
