"""process(): read → locate → link → diffusion/size → distribution → store, streaming.

Frames are read in chunks and never held whole; located features stream into the HDF5
file chunk by chunk; tracks, the per-track table, the distribution and the summary follow.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .calibration import make_calibration
from .concentration import concentration, tracked_particles_per_frame
from .distribution import DEFAULT_WINDOW_NM, size_distribution
from .errors import CalibrationError, InputError
from .io import open_frames
from .link import DEFAULT_MEMORY, StreamLinker, search_radius_px
from .locate import (
    FAST_MAX_DIAMETER,
    background_model,
    estimate_minmass,
    estimate_spot_diameter,
    locate_frames,
    noise_features_per_frame,
    subtract_background,
)
from .store import ResultWriter, file_fingerprint

__all__ = ["process", "request_stop", "DEFAULT_BACKGROUND_FRAMES"]

_STOP = {"reason": None}


def request_stop(reason: str = "stop requested") -> None:
    """Ask a running :func:`process` to stop at the next chunk or stage boundary.

    The run then raises ``KeyboardInterrupt`` and its result file is left marked incomplete.
    Used by the command line's SIGTERM handler; safe to call from a signal handler.
    """
    _STOP["reason"] = reason


def _check_stop() -> None:
    if _STOP["reason"] is not None:
        raise KeyboardInterrupt(_STOP["reason"])


#: Frames sampled (evenly through the video) for the temporal-median background.
DEFAULT_BACKGROUND_FRAMES = 100


def contrast_check(diff, noise_sd: float, *, invert: bool) -> str | None:
    """Warn when the particles look dark on a bright background (or the reverse).

    In background-subtracted frames, particles are the pixels far from zero. Bright
    particles on dark (NTA scattering) put them in the positive tail, dark ones on bright
    (bright-field) in the negative tail. When pixels beyond −5σ outnumber those beyond +5σ
    five times over (after ``invert`` has been applied), the contrast is probably the
    other way round.

    Parameters
    ----------
    diff : ndarray of float32, shape (n, H, W)
        Background-subtracted sample frames, as located (inverted if ``invert``).
    noise_sd : float
        Pixel noise, counts.
    invert : bool
        Whether ``--invert`` was given.

    Returns
    -------
    str or None
        The warning, or None when the contrast looks right.
    """
    pos = int(np.count_nonzero(diff > 5 * noise_sd))
    neg = int(np.count_nonzero(diff < -5 * noise_sd))
    if neg >= 50 and neg > 5 * pos:
        if invert:
            return ("the particles look bright on a dark background, but --invert was given: "
                    "check whether --invert is wanted (sizes may be wrong)")
        return ("the particles look dark on a bright background (bright-field?): "
                "run again with --invert, the sizes from this run are likely wrong")
    return None


def _calibration_summary(cal, notes) -> dict:
    """Summary entries shared by :func:`process` and :func:`process_tracks`: the calibration
    used (°C, mPa·s, µm/px, frames/s) and the notes with the calibration's warnings."""
    return dict(temperature_c=cal.temperature_c, viscosity_mpas=cal.viscosity_mpas, pixel_size_um=cal.pixel_size_um,
                fps=cal.fps, notes=list(notes) + [f"warning: {x}" for x in cal.warnings])


def _check_linking_options(search_range_px, memory, min_track_length, *, frame_shape=None, split_alpha=0.0,
                           diameter_px=None, locator=None) -> None:
    """Refuse linking, locating and track-length options that cannot give a size distribution.

    Raises
    ------
    CalibrationError
        ``search_range_px`` not a finite number ≥ 1 px or larger than the frame's larger
        side (``frame_shape``, px), ``memory`` not an integer ≥ 0, ``min_track_length`` not
        an integer ≥ 2 one-frame steps (the CVE needs two steps), ``split_alpha`` outside
        [0, 1), ``diameter_px`` not an integer ≥ 3 px, or (``locator="fast"``) larger than
        the fast locator takes (:data:`nta.locate.FAST_MAX_DIAMETER`, after rounding up to odd).
    """
    if search_range_px is not None:
        try:
            r = float(search_range_px)
        except (TypeError, ValueError):
            r = float("nan")
        if not (np.isfinite(r) and r >= 1.0):
            raise CalibrationError(f"search range {search_range_px!r} px must be a finite number of at least 1 px",
                                   fix="give --search-range in px (e.g. 10), or leave it out to have it set from physics")
        if frame_shape is not None and r > max(frame_shape):
            raise CalibrationError(f"search range {r:g} px is larger than the frames ({frame_shape[1]}×{frame_shape[0]} px): "
                                   "no step between two frames can be that long",
                                   fix="give a --search-range in px below the frame size (e.g. 10), or leave it out to "
                                       "have it set from physics")
    try:
        sa = float(split_alpha)
    except (TypeError, ValueError):
        sa = float("nan")
    if not (0.0 <= sa < 1.0):
        raise CalibrationError(f"split level {split_alpha!r} must be a number in [0, 1)",
                               fix="give --split-alpha 0 (no cuts, the default) or a small level such as 1e-4")
    if diameter_px is not None and (int(diameter_px) != diameter_px or diameter_px < 3):
        raise CalibrationError(f"spot diameter {diameter_px!r} px must be a whole number of at least 3 px",
                               fix="give --diameter as an odd number of px (e.g. 9), or leave it out to have it estimated")
    if diameter_px is not None and locator == "fast" and (int(diameter_px) | 1) > FAST_MAX_DIAMETER:
        raise CalibrationError(f"spot diameter {int(diameter_px) | 1} px is larger than the fast locator takes "
                               f"({FAST_MAX_DIAMETER} px)",
                               fix=f"give --locator trackpy for spots this large, or a --diameter of at most {FAST_MAX_DIAMETER} px")
    if memory is not None and (int(memory) != memory or memory < 0):
        raise CalibrationError(f"memory {memory!r} must be a whole number of frames ≥ 0",
                               fix="give --memory 0 or more (default 3)")
    if min_track_length is not None and (int(min_track_length) != min_track_length or min_track_length < 2):
        raise CalibrationError(f"minimum track length {min_track_length!r} must be a whole number of at least 2 one-frame steps",
                               fix="give --min-track-length 2 or more (default 13)")


def _versions() -> dict:
    """Versions of nta and the libraries it ran on, from the installed packages' metadata
    (importing trackpy and scipy.stats only for their ``__version__`` took 0.6 s)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    return {
        "nta": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": v("scipy"),
        "pandas": pd.__version__,
        "trackpy": v("trackpy"),
        "h5py": v("h5py"),
        "numba": v("numba"),
        "platform": platform.platform(),
    }


#: Fewest CPUs for the linking thread to link frames while the locator runs (below: after it).
FOLLOW_MIN_CPUS = 3


def _follow_locator(locator: str) -> bool:
    """Whether linking runs beside the locator (:class:`nta.link.StreamLinker` ``follow``):
    with the fast locator on at least :data:`FOLLOW_MIN_CPUS` CPUs."""
    from .locate import default_workers

    return locator == "fast" and default_workers() >= FOLLOW_MIN_CPUS


def _input_warnings(src, w) -> list:
    """Warnings about the input found while reading it, stored in the result file.

    Irregular frame timing (duplicate or dropped frames in a video container's timestamps;
    the timing report goes to provenance ``timing``), a video shorter than its header
    announces, and NaN/Inf pixels replaced (see :mod:`nta.io.frames`). Returned as
    ``"warning: ..."`` notes for the summary.
    """
    from .errors import NTAError

    out = []
    if getattr(src, "kind", "") == "video":
        try:
            rep = src.timing_report()
        except NTAError as e:
            rep = {"available": False, "irregular": None, "reason": str(e)}
        w.set_provenance(timing=rep)
        if rep.get("irregular"):
            at = rep.get("irregular_at_frames") or []
            out.append(
                f"warning: irregular frame timing in the container: {rep.get('n_duplicate', 0)} duplicate "
                f"and {rep.get('n_gaps', 0)} gap step(s) (about {rep.get('n_dropped_estimate', 0)} frames dropped), "
                f"at frame(s) {', '.join(map(str, at[:10]))}{', ...' if len(at) > 10 else ''}; sizes assume a "
                "constant 1/fps between frames, so tracks across these frames are biased")
        if getattr(src, "truncated", False):
            out.append(f"warning: the video decoded to {src.n_frames} frames but its header announces "
                       f"{src.n_frames_header}: the file may be truncated")
    note = src.nonfinite_note() if hasattr(src, "nonfinite_note") else None
    if note:
        out.append(f"warning: {note}")
    return out


def _prefetch(gen, depth: int = 1):
    """Iterate ``gen`` in a background thread, ``depth`` items ahead.

    The next chunk is decoded while the locator's threads work on this one (the decoder
    and the numba locator release the GIL), instead of the locator waiting for the
    decoder. Errors of ``gen`` are raised here; leaving the loop early (an exception,
    a stop request) stops and closes ``gen`` in its thread.
    """
    import queue
    import threading

    q = queue.Queue(maxsize=max(1, int(depth)))
    done = object()
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for item in gen:
                if not put((item, None)):
                    break
            else:
                put((done, None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            put((done, e))
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=run, name="nta-decode", daemon=True)
    t.start()
    try:
        while True:
            item, err = q.get()
            if item is done:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        t.join()


class _WriteBehind:
    """Appends to a :class:`~nta.store.ResultWriter` table in one background thread, in order.

    The compression and HDF5 write of a chunk's features (~25 ms for 10 000 rows, in the
    main thread while the locator's threads waited) overlap the locating of the next chunk.
    At most one append is pending: :meth:`append` first waits for the previous one and
    re-raises its error, so rows land in order and a failure (disk full) surfaces within
    one chunk. :meth:`close` (always call it, e.g. in ``finally``) waits for the pending
    append without raising, so the file is never closed under a running write.
    """

    def __init__(self, writer):
        from concurrent.futures import ThreadPoolExecutor

        self._w = writer
        self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nta-write")
        self._pending = None

    def append(self, group, table):
        self.wait()
        self._pending = self._ex.submit(self._w.append_table, group, table)

    def wait(self):
        """Wait for the pending append; re-raise its error."""
        p, self._pending = self._pending, None
        if p is not None:
            p.result()

    def close(self):
        p, self._pending = self._pending, None
        if p is not None:
            try:
                p.result()
            except BaseException:  # noqa: BLE001 - the run is already failing or stopping
                pass
        self._ex.shutdown(wait=True)


class _Background:
    """``fn(*args, cancel=event)`` run in a daemon thread; :meth:`result` joins it."""

    def __init__(self, fn, *args):
        import threading

        self._event = threading.Event()
        self._out = {}

        def run():
            try:
                self._out["value"] = fn(*args, cancel=self._event)
            except BaseException as e:  # noqa: BLE001 - re-raised by result()
                self._out["error"] = e

        self._thread = threading.Thread(target=run, name="nta-sha256", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]

    def cancel(self):
        """Stop early (no effect once finished); the run is ending without the result."""
        self._event.set()


class _Progress:
    def __init__(self, enabled: bool, total, desc):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def process(
    input_path,
    output_path,
    *,
    pixel_size_um=None,
    fps=None,
    temperature_c=None,
    viscosity_mpas=None,
    exposure_ms=None,
    invert: bool = False,
    window_nm=DEFAULT_WINDOW_NM,
    overwrite: bool = False,
    diameter_px: int | None = None,
    minmass: float | None = None,
    search_range_px: float | None = None,
    smallest_diameter_nm: float | None = None,
    split_alpha: float = 0.0,
    memory: int = DEFAULT_MEMORY,
    min_track_length: int | None = None,
    chunk_size: int = 64,
    n_background: int = DEFAULT_BACKGROUND_FRAMES,
    max_frames: int | None = None,
    n_boot: int = 1000,
    length_model: bool = True,
    locator: str = "fast",
    dilution_factor: float = 1.0,
    detection_depth_um: float | None = None,
    protein_ug_ml: float | None = None,
    sample: str | None = None,
    calibration_sources: dict | None = None,
    progress: bool = False,
    command: str | None = None,
    log=None,
) -> dict:
    """Process one NTA recording into per-track sizes, a distribution and an HDF5 file.

    Parameters
    ----------
    input_path : str or os.PathLike
        Video (AVI, MOV/MP4), TIFF stack, or folder / glob of images.
    output_path : str or os.PathLike
        Result file (``.h5``). Never overwritten unless ``overwrite``.
    pixel_size_um : float
        Pixel size, µm/px. Required.
    fps : float, optional
        Frame rate, frames/s; default the container's, required when it has none.
    temperature_c : float
        Temperature, °C. Required.
    viscosity_mpas : float, optional
        Viscosity, mPa·s; default water at ``temperature_c``.
    exposure_ms : float, optional
        Exposure time, ms (for the motion-blur term of the localization precision).
    invert : bool
        Dark particles on a bright background (bright-field).
    window_nm : (float, float)
        Size window, nm (default 40–150 nm).
    overwrite : bool
        Replace an existing output.
    diameter_px : int, optional
        Feature diameter for the locator, odd px; default estimated from the spots.
    minmass : float, optional
        Mass threshold, counts; default derived from the measured noise.
    search_range_px : float, optional
        Linking radius, px; default from physics (:func:`nta.link.search_radius_px`) for
        ``smallest_diameter_nm``.
    smallest_diameter_nm : float, optional
        Smallest particle to follow, nm: it sets the physical search radius. Default the
        lower edge of ``window_nm`` (at least 10 nm).
    split_alpha : float
        Cut tracks at steps implausible under their own Brownian statistics at this
        family-wise level (:func:`nta.link.split_implausible_steps`, e.g. 1e-4); 0, the
        default, does not cut (real recordings have heavier-tailed localization errors).
    memory : int
        Linking memory, frames.
    min_track_length : int, optional
        Minimum number of one-frame steps for a track to enter the distribution
        (default :data:`nta.diffusion.DEFAULT_MIN_TRACK_LENGTH`).
    locator : {"fast", "trackpy"}
        Particle locator: the numba one (:mod:`nta.kernels.locate`, frames in parallel) or
        trackpy's; same algorithm and mass definition (see :func:`nta.locate.locate_frames`).
    chunk_size : int
        Frames per chunk (the streaming unit).
    n_background : int
        Frames sampled for the background median.
    max_frames : int, optional
        Process only the first ``max_frames`` frames.
    n_boot : int
        Bootstrap resamples for confidence intervals.
    length_model : bool
        Model the tracks' lengths jointly with their sizes in the FTLA deconvolution
        (:func:`nta.distribution.fit_length_aware`, default); False gives Walker's FTLA.
    dilution_factor : float
        Dilution of the measured suspension relative to the sample (≥ 1), for
        concentration (particles/mL of the original sample).
    detection_depth_um : float, optional
        Effective depth of the light sheet, µm, for concentration; stored for the QC stage.
    protein_ug_ml : float, optional
        Protein concentration of the sample, µg/mL (particle-to-protein ratio).
    sample : str, optional
        Sample name (default: the input's file name without extension).
    calibration_sources : dict, optional
        Where each calibration value came from (e.g. ``{"pixel_size_um": "nta.toml"}``),
        recorded in the file; values not listed are recorded as given by flag.
    progress : bool
        Show a progress bar on stderr.
    command : str, optional
        Command line, recorded in the file.
    log : callable, optional
        ``log(str)`` receives notes for the user (linking, calibration warnings).

    Returns
    -------
    dict
        The summary written to the file (see :func:`nta.distribution.summarize_sizes`),
        plus run facts: ``n_frames``, ``features``, ``particles_per_frame`` (detections per
        frame), ``particles_per_frame_tracked`` (tracked particles present per frame,
        :func:`nta.concentration.tracked_particles_per_frame`), with ``detection_depth_um``
        also ``concentration_per_ml`` and ``window_concentration_per_ml`` (particles/mL of the
        sample, :func:`nta.concentration.concentration`), ``tracks_total``,
        ``drift_px_per_frame``, ``search_range_px``, ``diameter_px``, ``minmass``, ``notes``.

    Raises
    ------
    CalibrationError
        Pixel size, frame rate or temperature missing or impossible.
    InputError
        The input cannot be read, or holds no frames.
    OutputExistsError
        The output exists and ``overwrite`` is False.

    Notes
    -----
    A run with no particles, or no track long enough, still writes a complete file whose
    summary says so (``tracks_valid`` = 0, statistics NaN, ``notes`` giving the reason).
    """
    from .diffusion import DEFAULT_MIN_TRACK_LENGTH, per_track_table

    say = log or (lambda s: None)
    t_start = time.perf_counter()
    input_path = Path(input_path) if not any(c in str(input_path) for c in "*?[") else input_path
    lo, hi = float(window_nm[0]), float(window_nm[1])
    if not (0 <= lo < hi):
        raise CalibrationError(f"size window {lo:g}–{hi:g} nm is empty or negative", fix="give --window LOW HIGH with 0 ≤ LOW < HIGH (nm)")
    src = open_frames(input_path, fps=fps)
    fp = None  # background SHA-256 of the input (started once the output is known to be new)
    linker = None  # StreamLinker (made before the background step)
    try:
        cal = make_calibration(
            pixel_size_um=pixel_size_um,
            fps=src.fps,
            temperature_c=temperature_c,
            viscosity_mpas=viscosity_mpas,
            exposure_ms=exposure_ms,
            sources={**({"fps": "flag" if fps is not None else "container"} if src.fps is not None else {}),
                     **(calibration_sources or {})},
            input_name=str(input_path),
        )
        for w in cal.warnings:
            say(f"warning: {w}")
        if not (np.isfinite(dilution_factor) and dilution_factor >= 1.0):
            raise CalibrationError(f"dilution factor {dilution_factor!r} must be a finite number ≥ 1",
                                   fix="give --dilution as sample volume over measured volume, e.g. 1000")
        if detection_depth_um is not None and not (np.isfinite(detection_depth_um) and detection_depth_um > 0):
            raise CalibrationError(f"detection depth {detection_depth_um!r} µm must be positive", fix="give --detection-depth in µm")
        if protein_ug_ml is not None and not (np.isfinite(protein_ug_ml) and protein_ug_ml > 0):
            raise CalibrationError(f"protein concentration {protein_ug_ml!r} µg/mL must be positive", fix="give --protein in µg/mL")
        sample_name = sample or (Path(str(input_path)).stem if str(input_path) else "sample")
        _check_linking_options(search_range_px, memory, min_track_length, frame_shape=src.shape,
                               split_alpha=split_alpha, diameter_px=diameter_px, locator=locator)
        min_len = DEFAULT_MIN_TRACK_LENGTH if min_track_length is None else int(min_track_length)
        smallest = lo if smallest_diameter_nm is None else float(smallest_diameter_nm)
        smallest = max(smallest, 10.0)
        if search_range_px is None:
            search_range = search_radius_px(cal, smallest_diameter_nm=smallest, memory=memory)
        else:
            search_range = float(search_range_px)

        from .store import check_new_output

        check_new_output(output_path, overwrite=overwrite, what="output",  # fail fast, before any work
                         inputs=[input_path] if isinstance(input_path, (str, Path)) else [])
        # the input's SHA-256 (1.2 s of CPU for a 2 GB video) is computed in a background
        # thread from here on, first beside the single-threaded background and spot-size
        # steps (a CPU is free; hashlib and file reads release the GIL), and joined before
        # the file is marked complete; until then provenance ``inputs`` holds only the path
        # (the file is marked incomplete meanwhile, so nothing trusts it)
        if isinstance(input_path, Path):
            fp = _Background(file_fingerprint, input_path)
        # the linker collects each chunk's features as they are located (default radius: two
        # passes, the second with the radius of the fastest population the first finds, never
        # above the physics radius; a --search-range is used as given). From 3 CPUs a thread
        # links them while the locator runs (it also imports trackpy beside the background
        # step); on 2 or fewer the locator keeps every CPU busy and linking beside it gained
        # nothing (see StreamLinker), so linking runs here after the last chunk.
        linker = StreamLinker(search_range_px=search_range, memory=memory, split_alpha=split_alpha,
                              adaptive_radius=search_range_px is None, min_track_length=min_len,
                              follow=_follow_locator(locator))
        # ---- pass 1: background from frames sampled through the video ------------------
        n_known = n_header = src.n_frames  # the container's announced count (a reader may update src.n_frames)
        stop = max_frames if max_frames is not None else None
        if n_known is not None and stop is not None:
            n_known = min(n_known, stop)
        if n_known is None:
            n_known = sum(c.shape[0] for _, c in src.chunks(chunk_size, stop=stop))
        if max_frames is not None and int(max_frames) < 2:
            raise InputError(f"--max-frames {max_frames} leaves fewer than two frames to track", fix="give --max-frames 2 or more", path=input_path)
        if n_known == 0:
            raise InputError("the input holds no frames", fix="check the file was recorded completely", path=input_path)
        if n_known == 1:
            raise InputError("holds a single frame; sizing follows particles from frame to frame",
                             fix="give a video or image sequence of many frames (300 or more is typical)", path=input_path)
        step = max(1, n_known // max(1, n_background))
        # one chunk holding every sampled frame: no concatenation of a second 100-frame copy
        # (0.27-0.50 s for 1280x1024, mostly first writes to new memory)
        samples = [c for _, c in src.chunks(max(1, -(-n_known // step)), stop=n_known, step=step)]
        sample = samples[0] if len(samples) == 1 else np.concatenate(samples, axis=0)
        bg = background_model(sample)
        n_bg = int(len(sample))  # the frames actually sampled (fewer than planned when the header overstates the length)
        probe = subtract_background(sample[np.linspace(0, len(sample) - 1, min(5, len(sample))).astype(int)], bg, invert=invert)
        if diameter_px is not None:
            diameter = int(diameter_px)
        else:
            try:
                diameter = estimate_spot_diameter(probe)
            except ValueError as e:  # frames too small for the autocorrelation window
                raise InputError(f"the spot size could not be estimated: {e}",
                                 fix="give --diameter (odd, px, e.g. 9)", path=input_path) from None
        if diameter % 2 == 0:
            diameter += 1
            if diameter_px is not None:  # an estimate is odd already; a flag may not be
                say(f"note: --diameter {int(diameter_px)} is even; the locator needs an odd spot diameter, so "
                    f"{diameter} px is used")
        noise = estimate_minmass(probe, diameter=diameter, locator=locator)
        contrast_note = contrast_check(probe, noise["noise_sd"], invert=invert)
        mm = float(minmass) if minmass is not None else noise["minmass"]
        noise_note = None
        if minmass is not None and mm < noise["minmass"]:
            rate = noise_features_per_frame(noise, mm)
            if rate >= 1.0:  # the default threshold allows 0.05 per frame
                noise_note = (f"--minmass {mm:g} is below the noise-derived threshold {noise['minmass']:.4g}: pure noise "
                              f"alone gives about {rate:.0f} features per frame above it, which can link into tracks "
                              "and be sized; leave --minmass out to use the noise-derived threshold")
        del sample, samples, probe

        params = {
            "invert": invert,
            "window_nm": [lo, hi],
            "diameter_px": diameter,
            "diameter_source": "flag" if diameter_px is not None else "estimated from the spots' autocorrelation",
            "minmass": mm,
            "minmass_source": "flag" if minmass is not None else "noise-derived (0.05 noise features per frame)",
            "noise_sd_counts": noise["noise_sd"],
            "search_range_px": search_range,
            "search_range_source": "flag" if search_range_px is not None else f"physics: 99.9 % of one-frame steps of a {smallest:g} nm particle + 1 px",
            "memory_frames": memory,
            "split_alpha": split_alpha,
            "min_track_length_steps": min_len,
            "background": f"temporal median of {n_bg} frames (one in every {step})",
            "chunk_size": chunk_size,
            "locator": locator,
            "max_frames": max_frames,
            "n_boot": n_boot,
            "ftla_length_model": bool(length_model),
            "dilution_factor": float(dilution_factor),
            "detection_depth_um": detection_depth_um,
            "protein_ug_ml": protein_ug_ml,
            "sample": sample_name,
        }
        with ResultWriter(output_path, overwrite=overwrite) as w:
            w.set_provenance(
                inputs=[{"path": str(input_path.resolve() if isinstance(input_path, Path) else input_path)}],
                input_info=src.info(),
                calibration=cal.to_dict(),
                parameters=params,
                versions=_versions(),
                warnings=list(cal.warnings),
                command=command or "",
            )
            # ---- pass 2: locate, streaming features into the file -----------------------
            _check_stop()
            w.set_status("running: locating")
            feats = []
            n_frames = 0
            bar = _Progress(progress, n_known, "locate")
            writer = _WriteBehind(w)
            try:
                for first, chunk in _prefetch(src.chunks(chunk_size, stop=stop)):
                    # background subtraction fused into the locator (no float32 copy of the chunk)
                    f = locate_frames(chunk, first, diameter=diameter, minmass=mm, locator=locator,
                                      background=bg, invert=invert)
                    writer.append("features", f)  # compressed and written while the next chunk is located
                    feats.append(f)
                    linker.add(f, first, chunk.shape[0])
                    n_frames += chunk.shape[0]
                    bar.update(chunk.shape[0])
                    _check_stop()
                writer.wait()
            finally:
                writer.close()
                bar.close()
            features = pd.concat(feats, ignore_index=True) if feats else pd.DataFrame()
            del feats  # the chunks are in `features` now (and in the file): keep one copy
            t_locate = time.perf_counter()
            notes = [f"warning: {contrast_note}"] if contrast_note else []
            if noise_note:
                notes.append(f"warning: {noise_note}")
            notes.extend(_input_warnings(src, w))  # irregular timing, truncation, NaN pixels (issue 7)
            if n_header is not None and n_frames > n_header:
                notes.append(f"warning: the file's header announces {n_header} frames but {n_frames} were read; "
                             "all were analysed (the header is wrong; the background was sampled from the first "
                             f"{n_header})")
            # ---- link (the rest of it: most frames were linked while locating) -----------
            _check_stop()
            w.set_status("running: linking")
            lr = linker.finish(features)
            n_feat = int(len(features))
            del features  # the tracks hold every feature now (and the file has them)
            notes.extend(lr.notes)
            if lr.radius_info is not None:
                params.update(search_range_px=lr.search_range_px, search_range_first_pass_px=search_range,
                              search_range_source=f"{lr.radius_info['reason']}; first pass {params['search_range_source']}")
                search_range = lr.search_range_px
                w.set_provenance(parameters=params)
            tracks = lr.tracks
            if len(tracks):
                w.write_table("tracks", tracks[[c for c in ["frame", "particle", "parent", "x", "y", "x_raw", "y_raw", "mass", "size", "signal"] if c in tracks.columns]])
            drift = lr.drift.reset_index()
            w.write_table("drift", drift)
            t_link = time.perf_counter()
            # ---- diffusion and size ---------------------------------------------------
            _check_stop()
            w.set_status("running: sizing")
            per = per_track_table(tracks, cal, min_track_length=min_len) if len(tracks) else pd.DataFrame(
                {"particle": np.zeros(0, np.int64), "diameter_nm": np.zeros(0), "included": np.zeros(0, bool)})
            w.write_table("per_track", per)
            t_size = time.perf_counter()
            drift_velocity = lr.drift_velocity
            ppf_tracked = tracked_particles_per_frame(tracks, n_frames)  # for the concentration
            del tracks, lr  # written; freed before the bootstrap, the run's peak of memory
            # ---- distribution -----------------------------------------------------------
            summary, arrays, dist_attrs = size_distribution(per, cal, window_nm=(lo, hi), n_boot=n_boot, length_model=length_model)
            w.write_arrays("distribution", arrays, attrs=dist_attrs)
            t_dist = time.perf_counter()
            if n_feat == 0:
                notes.append("no particles found: check --invert (dark particles on bright?), the focus, or give --minmass")
            elif summary["tracks_valid"] == 0:
                notes.append(f"no track has {min_len} or more one-frame steps with D > 0: the distribution is empty")
            summary.update(
                n_frames=int(n_frames),
                features=n_feat,
                particles_per_frame=float(n_feat / n_frames) if n_frames else float("nan"),
                tracks_total=int(len(per)),
                drift_px_per_frame=[float(drift_velocity[0]), float(drift_velocity[1])],
                search_range_px=float(search_range),
                search_range_source=str(params["search_range_source"]),
                diameter_px=int(diameter),
                minmass=float(mm),
                min_track_length_steps=int(min_len),
                frame_shape_px=[int(src.shape[0]), int(src.shape[1])],
                field_of_view_um2=float(src.shape[0] * src.shape[1] * cal.pixel_size_um**2),
                dilution_factor=float(dilution_factor),
                detection_depth_um=detection_depth_um,
                protein_ug_ml=protein_ug_ml,
                sample=sample_name,
                **_calibration_summary(cal, notes),
                time_s=time.perf_counter() - t_start,
                time_locate_s=t_locate - t_start,  # background + locate (+ linking alongside, from 3 CPUs)
                time_link_s=t_link - t_locate,  # linking's rest, tracks and drift written
                time_size_s=t_size - t_link,  # per-track D and diameters, written
                time_distribution_s=t_dist - t_size,  # FTLA, bootstrap, written
            )
            summary["particles_per_frame_tracked"] = ppf_tracked  # what concentrations count
            if detection_depth_um is not None:  # particles/mL, as nta qc / report / export-csv compute it
                c = concentration(summary, None, particles_per_frame_tracked=ppf_tracked)
                summary.update({k: c[k] for k in ("detection_volume_ml", "concentration_per_ml",
                                                  "window_concentration_per_ml", "particles_per_ug")})
            w.write_summary(summary)
            for n in notes:
                say(n)
            _check_stop()
            if fp is not None:
                w.set_provenance(inputs=[fp.result()])
            w.finish()
        return summary
    finally:
        if fp is not None:
            fp.cancel()
        if linker is not None:
            linker.cancel()  # no effect once it has finished
        src.close()


def process_tracks(
    tracks_df,
    output_path,
    *,
    calibration,
    window_nm=DEFAULT_WINDOW_NM,
    min_track_length: int | None = None,
    subtract_drift: bool = True,
    drift_smoothing: int = 15,
    n_boot: int = 1000,
    length_model: bool = True,
    dilution_factor: float = 1.0,
    sample: str | None = None,
    input_path=None,
    overwrite: bool = False,
    command: str | None = None,
    log=None,
) -> dict:
    """Size tracks linked elsewhere (e.g. a NanoSight ``AllTracks.csv``) with nta's kernel.

    The positions are taken as given (no locating or linking); the drift common to all
    tracks is estimated and subtracted (:func:`trackpy.compute_drift`), then the per-track
    table, the distribution and the summary are made as in :func:`process` and written in
    the same schema (``/tracks``, ``/drift``, ``/per_track``, ``/distribution``,
    ``/summary``, provenance).

    Parameters
    ----------
    tracks_df : pandas.DataFrame
        ``particle``, ``frame`` (int), ``x``, ``y`` (px), one row per position, as
        returned by :func:`nta.io.vendor.read_nanosight_all_tracks`.
    output_path : str or os.PathLike
        Result file (``.h5``); never overwritten unless ``overwrite``.
    calibration : nta.calibration.Calibration or dict
        A Calibration, or keyword arguments of :func:`nta.calibration.make_calibration`
        (``pixel_size_um`` µm/px, ``fps`` frames/s, ``temperature_c`` °C, optional
        ``viscosity_mpas`` mPa·s, ``exposure_ms`` ms, ``sources``).
    window_nm : (float, float)
        Size window, nm.
    min_track_length : int, optional
        Minimum one-frame steps for a track to enter the distribution (default
        :data:`nta.diffusion.DEFAULT_MIN_TRACK_LENGTH`).
    subtract_drift : bool
        Estimate and subtract the common drift (the vendor's positions include it).
    drift_smoothing : int
        Frames in trackpy's rolling mean of the drift.
    n_boot : int
        Bootstrap resamples for confidence intervals.
    length_model : bool
        Model the tracks' lengths jointly with their sizes in the FTLA deconvolution
        (:func:`nta.distribution.fit_length_aware`, default); False gives Walker's FTLA.
    dilution_factor : float
        Dilution factor (≥ 1), recorded.
    sample : str, optional
        Sample name (default: the input's stem, else ``"tracks"``).
    input_path : str or os.PathLike, optional
        The file the tracks came from (fingerprinted into the provenance).
    overwrite : bool
        Replace an existing output.
    command : str, optional
        Command line, recorded.
    log : callable, optional
        ``log(str)`` receives notes.

    Returns
    -------
    dict
        The summary written (as :func:`process`, without the locating facts).

    Raises
    ------
    InputError
        The table lacks ``particle``, ``frame``, ``x`` or ``y``, or is empty.
    CalibrationError
        Calibration missing or impossible.
    OutputExistsError
        The output exists and ``overwrite`` is False.
    """
    from .calibration import Calibration
    from .diffusion import DEFAULT_MIN_TRACK_LENGTH, per_track_table

    say = log or (lambda s: None)
    t_start = time.perf_counter()
    where = input_path if input_path is not None else output_path
    missing = [c for c in ("particle", "frame", "x", "y") if c not in getattr(tracks_df, "columns", [])]
    if missing:
        raise InputError(f"the tracks table lacks column(s) {missing}", path=where,
                         fix="give a NanoSight AllTracks.csv (Particle ID, Frame, X, Y) or a trackpy tracks table")
    tracks = tracks_df[["particle", "frame", "x", "y"]].dropna().copy()
    if tracks.empty:
        raise InputError("the tracks table has no positions", path=where, fix="export AllTracks with the tracks included")
    tracks["particle"] = tracks["particle"].astype(np.int64)
    tracks["frame"] = tracks["frame"].astype(np.int64)
    tracks = tracks.sort_values(["particle", "frame"], kind="stable").reset_index(drop=True)
    lo, hi = float(window_nm[0]), float(window_nm[1])
    if not (0 <= lo < hi):
        raise CalibrationError(f"size window {lo:g}–{hi:g} nm is empty or negative", fix="give --window LOW HIGH with 0 ≤ LOW < HIGH (nm)")
    if isinstance(calibration, Calibration):
        cal = calibration
    else:
        cal = make_calibration(**{"input_name": str(where), **dict(calibration)})
    for w_ in cal.warnings:
        say(f"warning: {w_}")
    _check_linking_options(None, None, min_track_length)
    min_len = DEFAULT_MIN_TRACK_LENGTH if min_track_length is None else int(min_track_length)
    notes = []
    frames = np.arange(tracks["frame"].min(), tracks["frame"].max() + 1)
    drift = pd.DataFrame({"frame": frames, "dx_px": 0.0, "dy_px": 0.0}).set_index("frame")
    if subtract_drift and tracks["frame"].nunique() > 1:
        import trackpy as tp

        tp.quiet()
        d = tp.compute_drift(tracks, smoothing=drift_smoothing, pos_columns=["x", "y"])
        d = d.reset_index(drop=False) if "frame" not in d.columns else d.reset_index(drop=True)
        d = d.set_index("frame")[["x", "y"]].rename(columns={"x": "dx_px", "y": "dy_px"})
        drift = d.reindex(frames).interpolate(limit_direction="both").fillna(0.0)
        drift.index.name = "frame"
        off = drift.reindex(tracks["frame"].to_numpy()).to_numpy()
        tracks["x_raw"], tracks["y_raw"] = tracks["x"], tracks["y"]
        tracks["x"] = tracks["x_raw"] - off[:, 0]
        tracks["y"] = tracks["y_raw"] - off[:, 1]
        notes.append("drift estimated from the tracks (trackpy.compute_drift) and subtracted")
    steps = drift.diff().dropna()
    v = (float(steps["dx_px"].mean()), float(steps["dy_px"].mean())) if len(steps) else (0.0, 0.0)
    sample_name = sample or (Path(str(input_path)).stem if input_path is not None else "tracks")
    params = {
        "input_kind": "tracks (positions linked elsewhere)",
        "window_nm": [lo, hi],
        "min_track_length_steps": min_len,
        "subtract_drift": bool(subtract_drift),
        "drift_smoothing_frames": int(drift_smoothing),
        "n_boot": n_boot,
        "ftla_length_model": bool(length_model),
        "dilution_factor": float(dilution_factor),
        "sample": sample_name,
    }
    from .store import check_new_output

    check_new_output(output_path, overwrite=overwrite, what="output", inputs=[input_path] if input_path is not None else [])
    inputs = [file_fingerprint(input_path)] if input_path is not None and Path(str(input_path)).is_file() else []
    with ResultWriter(output_path, overwrite=overwrite) as w:
        w.set_provenance(inputs=inputs, calibration=cal.to_dict(), parameters=params, versions=_versions(),
                         warnings=list(cal.warnings), command=command or "")
        w.write_table("tracks", tracks)
        w.write_table("drift", drift.reset_index())
        w.set_status("running: sizing")
        per = per_track_table(tracks, cal, min_track_length=min_len)
        w.write_table("per_track", per)
        summary, arrays, dist_attrs = size_distribution(per, cal, window_nm=(lo, hi), n_boot=n_boot, length_model=length_model)
        w.write_arrays("distribution", arrays, attrs=dist_attrs)
        if summary["tracks_valid"] == 0:
            notes.append(f"no track has {min_len} or more one-frame steps with D > 0: the distribution is empty")
        summary.update(
            n_frames=int(len(frames)),
            tracks_total=int(len(per)),
            drift_px_per_frame=[v[0], v[1]],
            min_track_length_steps=int(min_len),
            dilution_factor=float(dilution_factor),
            sample=sample_name,
            **_calibration_summary(cal, notes),
            time_s=time.perf_counter() - t_start,
        )
        w.write_summary(summary)
        for n in notes:
            say(n)
        w.finish()
    return summary


__all__.append("process_tracks")
