"""A plain-trackpy NTA pipeline, as a typical user writes it: the benchmark's baseline.

locate (``trackpy.batch``) → link (``trackpy.link``, memory 3) → drop short tracks
(``trackpy.filter_stubs``) → drift subtraction (``trackpy.compute_drift`` /
``subtract_drift``) → per-track MSDs (``trackpy.imsd``) → per-track linear fit
MSD(τ) = 4 D τ + b over the first lags → Stokes–Einstein d = k_B T / (3 π η D).

Nothing of nta is used except the water viscosity formula and the Stokes–Einstein
constant (:mod:`nta.calibration`), so the two pipelines convert D to size identically.

Usage::

    from benchmarks.baseline_trackpy import run_baseline
    res = run_baseline("video.avi", pixel_size_um=0.166, fps=25, temperature_c=22,
                       diameter=9, minmass=500)
    res["diameter_nm"]   # per-track diameters, nm
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["read_grey_frames", "run_baseline"]


def read_grey_frames(video_path, *, keep_dtype: bool = False) -> np.ndarray:
    """All frames of a video, TIFF stack or folder of images as a (n, H, W) array.

    Parameters
    ----------
    video_path : str or os.PathLike
        ``.avi``/``.mov``/``.mp4`` (read with imageio's PyAV plugin), ``.tif``/``.tiff``
        (tifffile) or a folder of ``.png``/``.tif`` images (sorted by name).
    keep_dtype : bool
        Keep grey integer frames as recorded (videos decoded straight to 8-bit grey by
        PyAV): 2 GB for 1500 frames of 1280×1024, where float32 needs 7.9 GB and the
        colour decode 5.9 GB more (the script was killed for memory at 22 GB that way).

    Returns
    -------
    ndarray, (n, H, W) float32 (or the recorded integer dtype with ``keep_dtype``)
        Grey frames (colour frames are averaged over channels), counts.
    """
    import imageio.v3 as iio

    p = Path(video_path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".bmp"))
        frames = np.stack([np.asarray(iio.imread(f)) for f in files])
    elif p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        frames = tifffile.imread(p)
    elif keep_dtype:
        return np.asarray(iio.imread(p, plugin="pyav", format="gray"))
    else:
        frames = np.asarray(iio.imread(p, plugin="pyav"))
    if keep_dtype and frames.ndim == 3:
        return frames
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 4:
        frames = frames[..., :3].mean(axis=-1)
    return frames


def run_baseline(
    video_path,
    *,
    pixel_size_um: float,
    fps: float,
    temperature_c: float,
    invert: bool = False,
    diameter: int = 9,
    minmass: float = 100.0,
    search_range: float = 15.0,
    memory: int = 3,
    min_track_length: int = 13,
    max_lagtime: int = 10,
    viscosity_mpas: float | None = None,
    processes: int = 1,
    keep_dtype: bool = False,
) -> dict:
    """Run the plain-trackpy pipeline on one recording.

    Parameters
    ----------
    video_path : str or os.PathLike
        Recording (see :func:`read_grey_frames`).
    pixel_size_um : float
        µm/px.
    fps : float
        frames/s.
    temperature_c : float
        °C (viscosity: water at this temperature unless ``viscosity_mpas``).
    invert : bool
        Dark particles on a bright background.
    diameter : int
        trackpy feature diameter, odd px.
    minmass : float
        trackpy minimum integrated brightness.
    search_range : float
        Linking radius, px (trackpy's adaptive search shrinks it in dense subnets).
    memory : int
        Linking memory, frames.
    min_track_length : int
        ``filter_stubs`` threshold, frames.
    max_lagtime : int
        Lags (frames) of the per-track MSD and of the linear fit.
    viscosity_mpas : float, optional
        mPa·s.
    processes : int
        Processes of ``trackpy.batch`` (numba engine). The pipeline benchmark uses 2, the
        script issue 4 describes; the accuracy benchmark 1 (its timing is not compared).
    keep_dtype : bool
        Read grey frames as recorded (:func:`read_grey_frames`); the pipeline benchmark
        uses it so the 1280×1024 video fits in memory (2 GB instead of > 22 GB).

    Returns
    -------
    dict
        ``diameter_nm`` (ndarray (n_tracks,) float64, nm; tracks with a positive fitted
        slope), ``D_um2_s`` (same tracks, µm²/s), ``particle`` (track ids),
        ``n_tracks``, ``time_s`` (wall time of the whole run, s, reading included),
        ``time_read_s``, ``time_locate_s`` (``trackpy.batch``), ``time_link_s`` (``link`` and
        ``filter_stubs``), ``time_drift_s`` (``compute_drift`` and ``subtract_drift``),
        ``time_size_s`` (``imsd``, per-track fit, Stokes–Einstein), all s, ``n_frames``.
    """
    import trackpy as tp

    from nta.calibration import stokes_einstein_diameter, water_viscosity

    tp.quiet()
    t0 = time.perf_counter()
    frames = read_grey_frames(video_path, keep_dtype=keep_dtype)
    t_read = time.perf_counter() - t0
    f = tp.batch(frames, diameter, minmass=minmass, invert=invert, processes=processes, engine="numba")
    t_loc = time.perf_counter()
    t = tp.link(f, search_range, memory=memory, adaptive_stop=1.0, adaptive_step=0.9)
    t = tp.filter_stubs(t, min_track_length)
    t_link = time.perf_counter()
    stages = dict(time_read_s=t_read, time_locate_s=t_loc - t0 - t_read, time_link_s=t_link - t_loc)
    if len(t) == 0:
        empty = np.zeros(0)
        return dict(diameter_nm=empty, D_um2_s=empty, particle=empty.astype(np.int64), n_tracks=0,
                    time_s=time.perf_counter() - t0, n_frames=len(frames), time_drift_s=0.0, time_size_s=0.0, **stages)
    d = tp.compute_drift(t)
    tm = tp.subtract_drift(t.copy(), d)
    if "frame" in tm.index.names and "frame" in tm.columns:
        tm = tm.reset_index(drop=True)
    t_drift = time.perf_counter()
    stages["time_drift_s"] = t_drift - t_link
    im = tp.imsd(tm, pixel_size_um, fps, max_lagtime=max_lagtime)  # µm², index lag time s
    lag = im.index.to_numpy(float)
    diam, dd, ids = [], [], []
    for pid in im.columns:
        msd = im[pid].to_numpy(float)
        ok = np.isfinite(msd)
        if ok.sum() < 2:
            continue
        slope, _ = np.polyfit(lag[ok], msd[ok], 1)
        D = slope / 4.0  # 2-D: MSD = 4 D τ
        if D > 0:
            dd.append(D)
            ids.append(pid)
    dd = np.asarray(dd, float)
    eta = water_viscosity(temperature_c) if viscosity_mpas is None else viscosity_mpas
    diam = np.asarray(stokes_einstein_diameter(dd, temperature_c, eta), float).reshape(-1)
    t_end = time.perf_counter()
    return dict(diameter_nm=diam, D_um2_s=dd, particle=np.asarray(ids), n_tracks=int(diam.size),
                time_s=t_end - t0, n_frames=len(frames), time_size_s=t_end - t_drift, **stages)
