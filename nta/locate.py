"""Locate: static background removal, then a locator (the numba one of :mod:`nta.kernels.locate`
or trackpy's, same algorithm), with defaults derived from the data.

All positions are in pixels, times in frames (trackpy's conventions).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

__all__ = [
    "background_model",
    "subtract_background",
    "estimate_noise",
    "estimate_spot_diameter",
    "estimate_minmass",
    "noise_features_per_frame",
    "locate_frames",
    "FEATURE_COLUMNS",
    "LOCATORS",
    "DEFAULT_LOCATOR",
    "REFINES",
    "DEFAULT_REFINE",
    "FAST_MAX_DIAMETER",
]

#: Largest odd spot diameter (px) the fast locator takes with the default separation
#: (diameter + 1): its dilation square (:func:`nta.kernels.locate.dilation_size`) must fit
#: the kernel's 128-row buffers.
FAST_MAX_DIAMETER = 89

#: Columns of a features table (trackpy's names), pixels and frames.
FEATURE_COLUMNS = ["frame", "x", "y", "mass", "size", "ecc", "signal", "raw_mass"]


def background_model(frames, *, invert: bool = False) -> np.ndarray:
    """Static background: the temporal median of sampled frames.

    Stray light, dust and hot pixels do not move, so the per-pixel median over frames spread
    through the video keeps them and drops the particles, which move.

    Parameters
    ----------
    frames : ndarray, shape (n, H, W)
        Sampled frames (any numeric dtype), ``n ≥ 1``; 50–100 frames spread across the video
        are plenty.
    invert : bool
        Unused by the median itself (it is symmetric); kept for a uniform signature.

    Returns
    -------
    ndarray of float32, shape (H, W)
        Background, in the frames' counts.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"background_model needs frames of shape (n, H, W) with n ≥ 1, got {frames.shape}")
    # Row blocks on threads, each the exact per-pixel median of np.median(frames, axis=0)
    # (pixels are independent, so the result is identical). 8-bit frames are counted per
    # pixel in 256 bins (nta.kernels.locate.median_u8_rows); 16-bit integer frames are
    # sorted per pixel with numpy's radix sort (O(n), releases the GIL; ~5× faster than the
    # partition np.median uses at 1280×1024 × 100 frames); the median is then the mean of
    # the two middle values in float64, exactly as np.median computes it for integers.
    n, h, w = frames.shape
    out = np.empty((h, w), np.float32)
    radix = frames.dtype.kind in "ui" and frames.dtype.itemsize <= 2
    lo, hi = (n - 1) // 2, n // 2
    rows = max(1, min(h, (1 << 20) // max(1, n * w)))  # ~1 MB of pixels per block

    u8 = frames.dtype == np.uint8
    if u8:
        from .kernels.locate import median_u8_rows

        frames = np.ascontiguousarray(frames)
        rows = max(1, -(-h // (4 * _n_threads())))  # a few blocks per thread

    def one(r0):
        if u8:  # 256-bin counts per pixel (numba, GIL released): the same medians, ~4× faster
            median_u8_rows(frames, r0, min(h, r0 + rows), out)
            return
        x = frames[:, r0:r0 + rows]
        if radix:
            srt = np.sort(np.ascontiguousarray(x.reshape(n, -1).T), axis=1, kind="stable")
            m = (srt[:, lo].astype(np.float64) + srt[:, hi]) / 2.0
            out[r0:r0 + rows] = m.reshape(x.shape[1:])
        else:
            out[r0:r0 + rows] = np.median(x, axis=0)

    starts = range(0, h, rows)
    workers = min(_n_threads(), len(starts))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nta-bg") as ex:
            list(ex.map(one, starts))
    else:
        for r0 in starts:
            one(r0)
    return out


def _n_threads() -> int:
    """CPUs this process may run on."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def subtract_background(frames, background, *, invert: bool = False) -> np.ndarray:
    """Remove the static background; particles become bright on a dark, zero-mean field.

    Parameters
    ----------
    frames : ndarray, shape (n, H, W) or (H, W)
        Frames as recorded.
    background : ndarray of float, shape (H, W)
        From :func:`background_model`.
    invert : bool
        Dark particles on a bright background (bright-field): the difference is negated.

    Returns
    -------
    ndarray of float32, same shape as ``frames``
        ``frames − background`` (or its negative), not clipped, so noise stays symmetric.
    """
    out = np.asarray(frames, dtype=np.float32) - background
    if invert:
        np.negative(out, out=out)
    return out


def estimate_noise(diff) -> float:
    """Robust standard deviation of pixel noise in background-subtracted frames.

    Parameters
    ----------
    diff : ndarray of float
        Background-subtracted frames (:func:`subtract_background`); particles cover a small
        part of the field, so they hardly move the median.

    Returns
    -------
    float
        1.4826 × median absolute deviation, in the frames' units. For integer-valued
        recordings (the background-subtracted values are then multiples of 0.5) at least
        0.5 counts, the rounding of the camera; float recordings (e.g. scaled 0–1) have no
        such floor.
    """
    v = np.asarray(diff, dtype=np.float32).ravel()
    if v.size > 4_000_000:
        v = v[:: v.size // 4_000_000 + 1]
    # np.median's values, by radix selection (nta.kernels.locate.median_f32: ~2.4× faster
    # than the partition np.median does on 3.3 M pixels)
    from .kernels.locate import median_f32

    v = np.ascontiguousarray(v)
    med = np.float32(median_f32(v.view(np.uint32)))
    mad = np.float32(median_f32(np.abs(v - med).view(np.uint32)))
    probe = v[:: max(1, v.size // 100_000)].astype(np.float64)
    quantized = bool(np.all(np.abs(2.0 * probe - np.round(2.0 * probe)) < 1e-4))
    sd = 1.4826 * float(mad)
    if quantized:
        return float(max(sd, 0.5))
    if sd <= 0:
        sd = float(np.std(v)) or float(np.finfo(np.float32).eps)
    return sd


def estimate_spot_diameter(diff, *, min_diameter: int = 5, max_diameter: int = 31) -> int:
    """Feature diameter for trackpy's locator, from the spots' own width.

    The mean spatial autocorrelation of background-subtracted frames has a central peak
    whose width is that of the spots (a Gaussian spot of σ gives a Gaussian
    autocorrelation of σ√2); lag zero, which holds the white noise, is left out. The
    diameter returned is the odd integer ≥ 2·⌈3σ⌉ + 1, as trackpy advises ("when in doubt,
    round up"), clipped to ``[min_diameter, max_diameter]``.

    Parameters
    ----------
    diff : ndarray of float, shape (n, H, W)
        Background-subtracted frames (a few are enough).

    Returns
    -------
    int
        Odd diameter, px.

    Raises
    ------
    ValueError
        Frames narrower or shorter than ``2·max_diameter + 1`` px: the autocorrelation
        profile out to ``max_diameter`` lags does not fit.
    """
    diff = np.asarray(diff)
    if diff.ndim == 2:
        diff = diff[None]
    need = 2 * int(max_diameter) + 1
    if min(diff.shape[1:]) < need:
        raise ValueError(f"frames of {diff.shape[2]}×{diff.shape[1]} px are too small to measure the spot width on "
                         f"(at least {need}×{need} px are needed)")
    # Σ_i irfft2(|F_i|²) = irfft2(Σ_i |F_i|²) (linearity): the power spectra are summed and
    # transformed back once (one inverse FFT instead of one per frame; the same
    # autocorrelation up to floating-point rounding)
    power = None
    for fr in diff:
        f = np.clip(fr.astype(np.float64), 0, None)  # frame by frame in float64 (as a whole-stack copy gave)
        f -= f.mean()
        F = np.fft.rfft2(f)
        p = F.real * F.real + F.imag * F.imag  # |F|², as F·conj(F) (whose imaginary part is 0)
        power = p if power is None else np.add(power, p, out=power)
    ac = np.fft.fftshift(np.fft.irfft2(power, s=diff.shape[1:]))
    cy, cx = np.array(ac.shape) // 2
    # profile along x and y through the centre, lags 1..R
    R = max_diameter
    prof = 0.25 * (ac[cy, cx + 1 : cx + R + 1] + ac[cy, cx - R : cx][::-1] + ac[cy + 1 : cy + R + 1, cx] + ac[cy - R : cy, cx][::-1])
    if not np.all(np.isfinite(prof)) or prof[0] <= 0:
        return 7
    # far-lag baseline, then fit log(prof - base) = a - lag²/(4σ²) on lags where it is clearly above base
    base = np.median(prof[R // 2 :])
    p = prof - base
    lags = np.arange(1, R + 1, dtype=float)
    ok = p > 0.1 * p[0]
    # use the contiguous run from lag 1
    n = int(np.argmin(ok)) if not ok.all() else len(ok)
    if n < 2:
        sigma = 1.0
    else:
        slope = np.polyfit(lags[:n] ** 2, np.log(p[:n]), 1)[0]
        sigma = math.sqrt(-1.0 / (4.0 * slope)) if slope < 0 else 1.0
    d = 2 * math.ceil(3.0 * sigma) + 1
    d = int(min(max(d, min_diameter), max_diameter))
    return d if d % 2 == 1 else d + 1


def _trackpy():
    import trackpy

    from ._jitcache import cache_trackpy_jit

    trackpy.quiet()
    cache_trackpy_jit()  # trackpy's jitted refine kernels: numba's disk cache, not a compile per run
    return trackpy


def estimate_minmass(diff, *, diameter: int, separation: float | None = None, false_per_frame: float = 0.05,
                     locator: str = "fast") -> dict:
    """Mass threshold derived from the measured noise, not a constant.

    The locator is run with no mass threshold on pure noise of the measured standard
    deviation (Gaussian, same frame size, band-passed the same way), which gives the
    distribution of masses that noise alone produces. The threshold is the mass that noise
    exceeds ``false_per_frame`` times per frame (extrapolated along the exponential tail of
    the noise-mass distribution when that is beyond the simulated frames).

    Parameters
    ----------
    diff : ndarray of float, shape (n, H, W)
        Background-subtracted sample frames (used for the noise level and frame size).
    diameter : int
        Odd feature diameter, px.
    separation : float, optional
        Minimum separation passed to trackpy (default diameter + 1).
    false_per_frame : float
        Tolerated number of noise features per frame at the threshold.
    locator : {"fast", "trackpy"}
        Locator run on the noise frames; the pipeline passes the one it locates with, so
        the threshold is in that locator's mass units (both use trackpy's definition).

    Returns
    -------
    dict
        ``minmass`` (counts), ``noise_sd`` (counts per pixel) and ``noise_mass_p50`` /
        ``noise_mass_p99`` (counts), for the record; ``noise_masses`` (sorted, counts) and
        ``noise_frames``: the masses the noise frames gave, so that the noise features per
        frame above any threshold t can be counted (:func:`noise_features_per_frame`).
    """
    _check_locator(locator)
    diff = np.asarray(diff, dtype=np.float32)
    if diff.ndim == 2:
        diff = diff[None]
    sd = estimate_noise(diff)
    rng = np.random.default_rng(12345)
    h, w = diff.shape[1:]
    n_frames = 4
    masses = []
    if locator == "fast":
        # the noise frames drawn in the same order as one by one, located together (frames in
        # parallel threads): the same masses in the same order
        noise = np.stack([rng.normal(0.0, sd, size=(h, w)).astype(np.float32) for _ in range(n_frames)])
        masses.append(locate_frames(noise, 0, diameter=diameter, minmass=0, separation=separation,
                                    locator="fast")["mass"].to_numpy())
    else:
        for _ in range(n_frames):
            noise = rng.normal(0.0, sd, size=(h, w)).astype(np.float32)
            f = _trackpy().locate(noise, diameter, minmass=0, separation=separation, preprocess=True,
                                  characterize=False, engine="python")
            masses.append(f["mass"].to_numpy())
    m = np.sort(np.concatenate(masses)) if masses else np.zeros(0)
    if m.size < 10:
        return {"minmass": float(sd * diameter), "noise_sd": sd, "noise_mass_p50": float("nan"), "noise_mass_p99": float("nan"),
                "noise_masses": m, "noise_frames": n_frames}
    # rate of noise features above mass t per frame: k(t)/n_frames; fit exponential tail on the top 20 %
    k_target = false_per_frame * n_frames
    tail = m[int(0.8 * m.size) :]
    # survival counts for the tail values
    surv = m.size - np.searchsorted(m, tail, side="left")
    coef = np.polyfit(tail, np.log(surv), 1)
    if coef[0] < 0:
        thr = (math.log(k_target) - coef[1]) / coef[0]
    else:
        thr = m[-1]
    thr = max(thr, m[-1] if k_target < 1 else thr)
    return {
        "minmass": float(thr),
        "noise_sd": sd,
        "noise_mass_p50": float(np.median(m)),
        "noise_mass_p99": float(np.quantile(m, 0.99)),
        "noise_masses": m,
        "noise_frames": n_frames,
    }


def noise_features_per_frame(noise: dict, minmass: float) -> float:
    """Features per frame that pure noise gives with mass above ``minmass``.

    Counted on the noise frames of :func:`estimate_minmass` (its ``noise_masses`` and
    ``noise_frames``); 0 above the largest noise mass seen (the extrapolated tail is what
    sets the default threshold, far lower rates than these frames can show).

    Parameters
    ----------
    noise : dict
        :func:`estimate_minmass` output.
    minmass : float
        Mass threshold, counts.

    Returns
    -------
    float
        Noise features per frame (1/frame); NaN without noise masses.
    """
    m = noise.get("noise_masses")
    n = noise.get("noise_frames") or 0
    if m is None or not n:
        return float("nan")
    return float((m.size - np.searchsorted(m, float(minmass), side="right")) / n)


#: Locators: ``"fast"`` (numba, :mod:`nta.kernels.locate`) and ``"trackpy"`` (the reference).
LOCATORS = ("fast", "trackpy")
#: Default locator.
DEFAULT_LOCATOR = "fast"

_pools: dict = {}
_local = threading.local()


def default_workers() -> int:
    """Threads for the fast locator: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _pool(workers: int) -> ThreadPoolExecutor:
    p = _pools.get(workers)
    if p is None:
        p = _pools[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nta-locate")
    return p


#: Frames per call of the numba locator (:func:`nta.kernels.locate.locate_block`): the
#: calling thread takes the GIL once per block, so a Python thread running beside the
#: locator (the streaming linker) delays it less; 8 keeps a 64-frame chunk in 8 tasks for
#: the threads to share.
_BLOCK = 8


def _scratch(shape):
    from .kernels.locate import make_scratch

    cache = getattr(_local, "scratch", None)
    if cache is None or cache[0] != shape:
        _local.scratch = cache = (shape, make_scratch(shape))
    return cache[1]


#: Position refinements of the fast locator: ``"trackpy"`` (trackpy's centroid on the 8-bit
#: rescaled band-passed image), ``"float"`` (the same centroid on the float band-passed
#: image) and ``"gauss"`` (Gaussian-mask centroid on the float band-passed image, re-centred
#: sub-pixel until converged). See :mod:`nta.kernels.locate` and benchmarks/results/localization.md.
REFINES = ("trackpy", "float", "gauss")
#: Default refinement of the fast locator.
DEFAULT_REFINE = "trackpy"


def default_gauss_sigma(diameter: int) -> float:
    """σ of the Gaussian weight of ``refine="gauss"``: (diameter − 1) / 5 px, at least 1 px
    (1.6 px for the usual diameter 9, about the band-passed spot's own σ)."""
    return max(1.0, (int(diameter) - 1) / 5.0)


def _refine_mode(refine):
    if refine not in REFINES:
        raise ValueError(f"refine must be one of {REFINES}, got {refine!r}")
    return REFINES.index(refine)


def _check_locator(locator):
    if locator not in LOCATORS:
        raise ValueError(f"locator must be one of {LOCATORS}, got {locator!r}")


def _locate_fast(frames, first_frame, *, diameter, minmass, separation, maxsize, background, invert, workers,
                 percentile=64.0, max_iterations=10, refine="trackpy", gauss_sigma=None) -> pd.DataFrame:
    from .kernels import locate as K

    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    n, H, W = frames.shape
    diameter = int(diameter)
    if diameter % 2 != 1 or diameter < 1:
        raise ValueError(f"diameter must be an odd positive integer, got {diameter}")
    r = diameter // 2
    sep = float(diameter + 1) if separation is None else float(separation)
    if not (sep > 0):
        raise ValueError(f"separation must be a positive number of px, got {separation!r}")
    margin = float(max(r, sep // 2 - 1, diameter // 2))
    dil = K.dilation_size(sep)
    if dil > 128 or r > 60:
        raise ValueError(f"diameter {diameter} / separation {sep} too large for the fast locator; use locator='trackpy'")
    gk = K.gaussian_kernel(1.0, 4.0)
    my, mx, r2, cm, sm = K.mask_tables(r)
    has_bg = background is not None
    bg = np.ascontiguousarray(background, dtype=np.float32) if has_bg else np.zeros((1, 1), np.float32)
    if frames.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        frames = frames.astype(np.float32)
    frames = np.ascontiguousarray(frames)
    mm = -np.inf if minmass is None else float(minmass)
    ms = np.inf if maxsize is None else float(maxsize)
    mode = _refine_mode(refine)
    gs = float(gauss_sigma) if gauss_sigma is not None else default_gauss_sigma(diameter)

    def block(i0):
        return K.locate_block(frames, i0, min(i0 + _BLOCK, n), bg, has_bg, bool(invert), gk, diameter, sep, dil, margin,
                              my, mx, r2, cm, sm, mm, ms, float(percentile), int(max_iterations), _scratch((H, W)), mode, gs)

    workers = default_workers() if workers is None else max(1, int(workers))
    starts = range(0, n, _BLOCK)
    if workers == 1 or n <= _BLOCK:
        res = [block(i) for i in starts]
    else:
        res = list(_pool(workers).map(block, starts))
    counts = np.concatenate([c for _, c in res]) if n else np.zeros(0, np.int64)
    arr = np.concatenate([a for a, _ in res], axis=0) if n else np.zeros((0, 7))
    return pd.DataFrame({
        "frame": np.repeat(np.arange(first_frame, first_frame + n, dtype=np.int64), counts),
        "x": arr[:, 1], "y": arr[:, 0], "mass": arr[:, 2], "size": arr[:, 3], "ecc": arr[:, 4],
        "signal": arr[:, 5], "raw_mass": arr[:, 6],
    }, columns=FEATURE_COLUMNS)


def locate_frames(diff, first_frame: int, *, diameter: int, minmass: float, separation=None, maxsize=None,
                  locator: str = DEFAULT_LOCATOR, background=None, invert: bool = False,
                  workers: int | None = None, refine: str | None = None) -> pd.DataFrame:
    """Locate particles in background-subtracted frames (trackpy's algorithm, fast or reference).

    Parameters
    ----------
    diff : ndarray, shape (n, H, W) or (H, W)
        Background-subtracted frames, float32, particles bright (:func:`subtract_background`);
        or, when ``background`` is given, the frames as recorded (uint8 / uint16 / float32),
        and the subtraction is done here (fused into the fast locator, so no float32 copy
        of the chunk is made).
    first_frame : int
        Index of ``diff[0]`` in the video.
    diameter : int
        Odd feature diameter, px.
    minmass : float
        Minimum integrated brightness of the band-passed feature, counts
        (:func:`estimate_minmass`); features with mass > minmass are kept. None: no threshold.
    separation, maxsize : float, optional
        Minimum separation (default ``diameter + 1``) and largest radius of gyration, px.
    locator : {"fast", "trackpy"}
        ``"fast"``: the numba locator of :mod:`nta.kernels.locate`, frames in parallel
        threads; the same algorithm, band-pass, 8-bit rescaling, mass definition and
        output as ``"trackpy"``: :func:`trackpy.locate` frame by frame (``engine="numba"``).
    background : ndarray of float32, shape (H, W), optional
        Background to subtract (:func:`background_model`); then ``diff`` is raw frames.
    invert : bool
        With ``background``: dark particles on a bright field.
    workers : int, optional
        Threads for the fast locator (default: the CPUs available).
    refine : {"trackpy", "float", "gauss"}, optional
        Position refinement of the fast locator (:data:`REFINES`; default
        :data:`DEFAULT_REFINE`). ``"trackpy"`` is trackpy's own; the others change only
        ``x`` and ``y`` (mass, size, ecc, signal stay trackpy's, so ``minmass`` keeps its
        meaning). With ``locator="trackpy"`` only ``"trackpy"`` (or None) is allowed.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FEATURE_COLUMNS`; ``x``, ``y`` in px (sub-pixel, origin at the centre
        of pixel (0, 0)), ``mass``, ``signal``, ``raw_mass`` in counts, ``size`` in px,
        ``frame`` int64.

    Raises
    ------
    ValueError
        ``diff`` not 2-D or 3-D, ``background`` of another (H, W), an even or non-positive
        ``diameter`` or a non-positive ``separation`` (fast locator), a diameter above
        :data:`FAST_MAX_DIAMETER`-sized dilations (fast locator; use ``"trackpy"``), an
        unknown ``locator`` or ``refine``.
    """
    _check_locator(locator)
    nd = np.ndim(diff)
    if nd not in (2, 3):
        raise ValueError(f"locate_frames needs frames of shape (n, H, W) or (H, W), got {nd} dimensions "
                         f"(shape {np.shape(diff)})")
    if background is not None and np.shape(background) != np.shape(diff)[-2:]:
        raise ValueError(f"background shape {np.shape(background)} differs from the frames' {np.shape(diff)[-2:]}")
    if locator == "fast":
        return _locate_fast(diff, first_frame, diameter=diameter, minmass=minmass, separation=separation,
                            maxsize=maxsize, background=background, invert=invert, workers=workers,
                            refine=DEFAULT_REFINE if refine is None else refine)
    if refine not in (None, "trackpy"):
        raise ValueError(f"refine={refine!r} needs locator='fast' (trackpy's locator refines as trackpy does)")
    diff = np.asarray(diff)
    if diff.ndim == 2:
        diff = diff[None]
    tp = _trackpy()
    out = []
    for i, fr in enumerate(diff):
        if background is not None:  # frame by frame: a float copy of one frame, not of the chunk
            fr = subtract_background(fr, background, invert=invert)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = tp.locate(fr, diameter, minmass=minmass, separation=separation, maxsize=maxsize, engine="numba")
        f["frame"] = first_frame + i
        out.append(f)
    if not out:
        return pd.DataFrame({c: np.zeros(0, dtype=np.int64 if c == "frame" else np.float64) for c in FEATURE_COLUMNS})
    df = pd.concat(out, ignore_index=True)
    df = df.reindex(columns=FEATURE_COLUMNS)
    df["frame"] = df["frame"].astype(np.int64)
    for c in FEATURE_COLUMNS[1:]:
        df[c] = df[c].astype(np.float64)
    return df
