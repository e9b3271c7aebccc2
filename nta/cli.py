"""The ``nta`` command: a thin layer over the public functions.

Every error nta raises on purpose (:class:`nta.errors.NTAError`) is printed as one line,
``nta: error: <file>: <problem> (<fix>)``, with exit code 2; no traceback. Ctrl-C or
SIGTERM stop a run cleanly: the result file is left readable and marked incomplete
(exit code 130).
"""

from __future__ import annotations

import argparse
import os
import json
import math
import shlex
import signal
import sys
import warnings

from . import __version__
from .errors import NTAError

__all__ = ["main", "build_parser"]


def _fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def _ci(v, nd=1):
    if not v or any(x is None or (isinstance(x, float) and not math.isfinite(x)) for x in v):
        return ""
    return f"  [95% CI {v[0]:.{nd}f}–{v[1]:.{nd}f}]"


def format_summary(s: dict) -> str:
    """Human-readable result table of a summary dictionary."""
    lines = []
    status = "complete" if s.get("complete", True) else f"INCOMPLETE ({s.get('status', '')})"
    if "file" in s:
        lines.append(f"file          {s['file']}  [{status}]")
    lo, hi = (s.get("window_nm") or [40.0, 150.0])[:2]
    tv, tt = s.get("tracks_valid"), s.get("tracks_total")
    lines.append(f"tracks valid  {'n/a' if tv is None else tv}" + (f" of {tt}" if tt is not None else ""))
    if "n_frames" in s:
        tracked = s.get("particles_per_frame_tracked")
        lines.append(f"frames        {s['n_frames']}   detections/frame {_fmt(s.get('particles_per_frame'))}   "
                     + (f"tracked particles/frame {_fmt(tracked)}   " if tracked is not None else "") +
                     f"drift {_fmt((s.get('drift_px_per_frame') or [float('nan')])[0], 2)}, "
                     f"{_fmt((s.get('drift_px_per_frame') or [0, float('nan')])[1], 2)} px/frame")
    if s.get("search_range_px") is not None:
        src = s.get("search_range_source")
        lines.append(f"link radius   {_fmt(s.get('search_range_px'))} px" + (f"  ({src})" if src else ""))
    lines.append(f"mean          {_fmt(s.get('mean_nm'))} nm{_ci(s.get('mean_nm_ci95'))}")
    lines.append(f"mode          {_fmt(s.get('mode_nm'))} nm{_ci(s.get('mode_nm_ci95'))}")
    sdr = s.get("sd_robust_nm")
    lines.append(f"SD            {_fmt(s.get('sd_nm'))} nm" + (
        f"  (robust {_fmt(sdr)} nm: half the 16–84 % range, blind to the tails)"
        if isinstance(sdr, float) and math.isfinite(sdr) else ""))
    if s.get("distribution"):
        lines.append(f"distribution  {s['distribution']}" + (
            f"; raw per-track D50 {_fmt(s.get('raw_d50_nm'))} nm" if s.get("raw_d50_nm") is not None else ""))
    lines.append(f"D10/D50/D90   {_fmt(s.get('d10_nm'))} / {_fmt(s.get('d50_nm'))} / {_fmt(s.get('d90_nm'))} nm{_ci(s.get('d50_nm_ci95'))} (D50)")
    other = [w for w in ("number", "area", "volume") if w != (s.get("weighting") or "number")
             and s.get(f"{w}_d50_nm") is not None]
    if other:  # the same distribution in the instruments' other weightings
        lines.append("weighted by   " + "; ".join(
            f"{'surface area' if w == 'area' else w}: D50 {_fmt(s.get(f'{w}_d50_nm'))}, mean {_fmt(s.get(f'{w}_mean_nm'))}, "
            f"mode {_fmt(s.get(f'{w}_mode_nm'))} nm" for w in other))
    peaks = s.get("peaks_nm")
    if peaks:
        fr = s.get("peak_fractions") or [float("nan")] * len(peaks)
        lines.append("peaks         " + ", ".join(f"{p:.1f} nm ({f:.0%})" for p, f in zip(peaks, fr)))
    wf = s.get("window_fraction")
    lines.append(f"in {lo:g}–{hi:g} nm  {_fmt(100 * wf if isinstance(wf, float) else wf)} %" + (
        _ci([100 * x for x in s["window_fraction_ci95"]]) if s.get("window_fraction_ci95") and all(
            isinstance(x, float) and math.isfinite(x) for x in s["window_fraction_ci95"]) else ""))
    if s.get("tracks_valid"):
        d50_in = "inside" if s.get("d50_in_window") else "OUTSIDE"
        mode_in = "inside" if s.get("mode_in_window") else "OUTSIDE"
        lines.append(f"window        D50 {d50_in}, mode {mode_in} the {lo:g}–{hi:g} nm window")
    conc = s.get("concentration_per_ml")
    if isinstance(conc, (int, float)) and math.isfinite(conc):
        wc = s.get("window_concentration_per_ml")
        lines.append(f"concentration {conc:.3g} particles/mL" + (
            f" ({wc:.3g} in {lo:g}–{hi:g} nm)" if isinstance(wc, (int, float)) and math.isfinite(wc) else "")
            + f"  (detection depth {_fmt(s.get('detection_depth_um'), 2)} µm, dilution {_fmt(s.get('dilution_factor'), 0)}×)")
    for n in s.get("notes") or []:
        lines.append(f"note          {n}")
    return "\n".join(lines)


def _histogram_text(path, width=40) -> str:
    """A small text plot: the reported distribution (number %) with the raw track counts."""
    import numpy as np

    from .store import read_distribution, read_summary

    dist = read_distribution(path)
    if "counts" not in dist or dist["counts"].sum() == 0:
        return ""
    s = read_summary(path)
    edges, counts = dist["bin_edges_nm"], dist["counts"]
    rep = dist.get("counts_ftla")
    rep = counts if rep is None or not np.nansum(rep) > 0 else np.nan_to_num(rep)
    d90 = s.get("d90_nm") or edges[-1]
    top = min(edges[-1], max(50.0, 1.6 * float(d90)))
    step = max(1.0, math.ceil(top / 20 / 5) * 5)
    e2 = np.arange(0, top + step, step)
    left = edges[:-1]
    c2 = np.array([counts[(left >= a) & (left < b)].sum() for a, b in zip(e2[:-1], e2[1:])])
    r2 = np.array([rep[(left >= a) & (left < b)].sum() for a, b in zip(e2[:-1], e2[1:])]) / rep.sum()
    m = r2.max() if r2.max() > 0 else 1
    kind = "FTLA deconvolution" if "counts_ftla" in dist else "per-track histogram"
    out = [f"size distribution: bars = reported number % ({kind}); right column = raw tracks per bin"]
    for a, b, r, c in zip(e2[:-1], e2[1:], r2, c2):
        out.append(f"{a:7.0f}–{b:<6.0f} nm |{'#' * int(round(width * r / m)):<{width}}| {100 * r:5.1f} %  {int(c):5d}")
    last = e2[-1]
    above_r = rep[left >= last].sum() / rep.sum()
    above_c = counts[left >= last].sum()
    if above_c > 0 or above_r > 0.0005:
        out.append(f"{'above ' + format(last, '.0f') + ' nm':>17} {'':<{width + 2}} {100 * above_r:5.1f} %  {int(above_c):5d}")
    return "\n".join(out)


def _print_result(path) -> None:
    """Print a finished result: the text distribution, then the result table."""
    from .store import read_summary

    h = _histogram_text(path)
    if h:
        print(h)
    print(format_summary(read_summary(path)))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nta`` command."""
    p = argparse.ArgumentParser(prog="nta", description="Nanoparticle tracking analysis: NTA videos to sizes, distributions and HDF5.")
    p.add_argument("--version", action="version", version=f"nta {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    pp = sub.add_parser("process", help="process one video into sizes and an HDF5 result")
    pp.add_argument("input", help="video (AVI, MOV, MP4), TIFF stack, or folder of images")
    pp.add_argument("-o", "--output", required=True, help="result file (.h5)")
    pp.add_argument("--pixel-size", type=float, dest="pixel_size_um", help="pixel size, µm/px (required)")
    pp.add_argument("--fps", type=float, help="frame rate, frames/s (default: the container's)")
    pp.add_argument("--temperature", type=float, dest="temperature_c", help="temperature, °C (required)")
    pp.add_argument("--viscosity", type=float, dest="viscosity_mpas", help="viscosity, mPa·s (default: water at --temperature)")
    pp.add_argument("--exposure", type=float, dest="exposure_ms", help="exposure time, ms (optional)")
    pp.add_argument("--invert", action="store_true", help="dark particles on a bright background (bright-field)")
    pp.add_argument("--window", type=float, nargs=2, metavar=("LOW", "HIGH"), default=(40.0, 150.0), help="size window, nm (default 40 150)")
    pp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    pp.add_argument("--diameter", type=int, dest="diameter_px", help="feature diameter, odd px (default: estimated)")
    pp.add_argument("--minmass", type=float, help="mass threshold (default: derived from the noise)")
    pp.add_argument("--search-range", type=float, dest="search_range_px", help="linking radius, px (default: from physics for the smallest size, then narrowed to the fastest population the first linking pass finds)")
    pp.add_argument("--memory", type=int, default=3, help="linking memory, frames (default 3)")
    pp.add_argument("--no-length-model", action="store_false", dest="length_model",
                    help="Walker's FTLA without the track-length model (default: lengths modelled with sizes)")
    pp.add_argument("--split-alpha", type=float, default=0.0, dest="split_alpha",
                    help="cut tracks at steps implausible under their own Brownian statistics at this level "
                         "(e.g. 1e-4; default 0 = off)")
    pp.add_argument("--min-track-length", type=int, help="minimum one-frame steps per track in the distribution")
    pp.add_argument("--max-frames", type=int, help="process only the first N frames")
    pp.add_argument("--locator", choices=("fast", "trackpy"), default="fast",
                    help="particle locator: the numba one (default) or trackpy's reference (same algorithm, slower)")
    pp.add_argument("--dilution", type=float, default=1.0, dest="dilution_factor", help="dilution factor of the measured suspension (default 1)")
    pp.add_argument("--detection-depth", type=float, dest="detection_depth_um", help="effective light-sheet depth, µm (for concentration)")
    pp.add_argument("--protein", type=float, dest="protein_ug_ml", help="protein concentration of the sample, µg/mL")
    pp.add_argument("--sample", help="sample name (default: the input's name)")
    pp.add_argument("--no-progress", action="store_true", help="no progress bar")

    ps = sub.add_parser("summary", help="print a result file's summary")
    ps.add_argument("result", help="result file (.h5)")
    ps.add_argument("--json", action="store_true", help="one JSON object")

    pm = sub.add_parser("simulate", help="write a synthetic NTA video with its ground truth")
    pm.add_argument("output", help="video file (.avi raw 8-bit grey, .tif stack, .mp4)")
    pm.add_argument("--sizes", type=float, nargs="+", default=[100.0], help="diameters of the populations, nm")
    pm.add_argument("--fractions", type=float, nargs="+", help="number fractions of the populations")
    pm.add_argument("--size-cv", type=float, default=0.0, help="relative SD within each population")
    pm.add_argument("--frames", type=int, default=300, help="number of frames")
    pm.add_argument("--width", type=int, default=640)
    pm.add_argument("--height", type=int, default=480)
    pm.add_argument("--fps", type=float, default=25.0, help="frame rate, frames/s")
    pm.add_argument("--pixel-size", type=float, default=0.166, dest="pixel_size_um", help="µm/px")
    pm.add_argument("--exposure", type=float, dest="exposure_ms", help="exposure, ms")
    pm.add_argument("--temperature", type=float, default=22.0, dest="temperature_c", help="°C")
    pm.add_argument("--particles", type=float, default=40.0, dest="particles_per_frame", help="mean visible particles per frame")
    pm.add_argument("--drift", type=float, nargs=2, default=(3.0, 0.0), metavar=("DX", "DY"), help="drift, px/frame")
    pm.add_argument("--seed", type=int, default=0)
    pm.add_argument("--overwrite", action="store_true")
    pb = sub.add_parser("batch", help="process every video in folders/globs (and import every instrument export), in parallel, restartably")
    pb.add_argument("inputs", nargs="+", help="folders (searched recursively), glob patterns (quoted) or files")
    pb.add_argument("-o", "--output", required=True, help="results folder (one .h5 per video, batch.h5 and CSV tables)")
    pb.add_argument("--pixel-size", type=float, dest="pixel_size_um", help="pixel size, µm/px (default: nta.toml beside the videos)")
    pb.add_argument("--fps", type=float, help="frame rate, frames/s (default: .nano / summary CSV / nta.toml / the container)")
    pb.add_argument("--temperature", type=float, dest="temperature_c", help="temperature, °C (default: .nano / summary CSV / nta.toml)")
    pb.add_argument("--viscosity", type=float, dest="viscosity_mpas", help="viscosity, mPa·s (default: sidecar, else water at the temperature)")
    pb.add_argument("--exposure", type=float, dest="exposure_ms", help="exposure time, ms")
    pb.add_argument("--locator", choices=("fast", "trackpy"), default=None,
                    help="particle locator: the numba one (default) or trackpy's reference")
    pb.add_argument("--invert", action="store_const", const=True, default=None, help="dark particles on a bright background")
    pb.add_argument("--window", type=float, nargs=2, metavar=("LOW", "HIGH"), dest="window_nm", help="size window, nm (default 40 150)")
    pb.add_argument("--dilution", type=float, dest="dilution_factor", help="dilution factor (default 1, or nta.toml)")
    pb.add_argument("--detection-depth", type=float, dest="detection_depth_um", help="effective light-sheet depth, µm")
    pb.add_argument("--protein", type=float, dest="protein_ug_ml", help="protein concentration of the sample, µg/mL")
    pb.add_argument("--diameter", type=int, dest="diameter_px", help="feature diameter, odd px (default: estimated per video)")
    pb.add_argument("--minmass", type=float, help="mass threshold (default: from each video's noise)")
    pb.add_argument("--search-range", type=float, dest="search_range_px", help="linking radius, px (default: from physics for the smallest size, then narrowed to the fastest population the first linking pass finds)")
    pb.add_argument("--memory", type=int, help="linking memory, frames (default 3)")
    pb.add_argument("--min-track-length", type=int, help="minimum one-frame steps per track in the distribution")
    pb.add_argument("--no-length-model", action="store_false", dest="length_model",
                    help="Walker's FTLA without the track-length model (default: lengths modelled with sizes)")
    pb.add_argument("--max-frames", type=int, help="process only the first N frames of each video")
    pb.add_argument("--samples", dest="samples_csv", help="CSV with columns file,sample (default: samples.csv in the input root, nta.toml [samples], names)")
    pb.add_argument("--overwrite", action="store_true", help="redo complete results made with other parameters")
    pb.add_argument("--scheduler", help="run on an existing Dask cluster: tcp://HOST:PORT")
    pb.add_argument("--dask-local", type=int, metavar="N", help="start a local Dask cluster with N worker processes")
    pb.add_argument("--jobs", "-j", type=int, help="worker processes of the default local engine (default: the cores; 1: in this process)")
    pb.add_argument("--no-progress", action="store_true", help="no progress bar")

    pi = sub.add_parser("import", help="store an instrument export's own results in nta's HDF5 schema")
    pi.add_argument("exports", nargs="+", help="NanoSight ExperimentSummary / Summary / ParticleData / AllTracks CSV, ZetaView .txt")
    pi.add_argument("-o", "--output", default=".",
                    help="result file (.h5; several videos: OUT.<video>.h5) or folder (default: the current folder, "
                         "never the instrument's data folder)")
    pi.add_argument("--window", type=float, nargs=2, metavar=("LOW", "HIGH"), default=(40.0, 150.0), help="size window, nm (default 40 150)")
    pi.add_argument("--overwrite", action="store_true", help="replace existing result files")

    pc = sub.add_parser("compare", help="two results side by side: summary differences and overlaid distributions")
    pc.add_argument("a", help="result file A (.h5), e.g. the instrument's (nta import)")
    pc.add_argument("b", help="result file B (.h5), e.g. nta's")
    pc.add_argument("--png", help="write the overlaid distributions to this PNG")
    pc.add_argument("--json", action="store_true", help="the table as JSON")

    # -- qc / report / calibrate / export-csv (issue 6) ------------------------------------
    def _analysis_args(x):
        x.add_argument("--samples", help="samples.csv mapping videos to samples and groups (columns file or video, sample, group; "
                       "default RESULTS/samples.csv if present)")
        x.add_argument("--rules", help="QC rules file (TOML) overriding nta/rules_default.toml")
        x.add_argument("--detection-depth", type=float, dest="detection_depth_um", help="effective light-sheet depth, µm (for concentration)")
        x.add_argument("--calibration", help="bead calibration JSON written by `nta calibrate` (detection depth)")
        x.add_argument("--protein", type=float, dest="protein_ug_ml", help="protein concentration of the sample, µg/mL")

    pq = sub.add_parser("qc", help="apply QC rules to a result file or a folder of results; exit 1 on FAIL")
    pq.add_argument("results", help="result file (.h5) or folder of result files")
    _analysis_args(pq)
    pq.add_argument("--no-write", action="store_true", help="do not store the QC in the result files")
    pq.add_argument("--json", action="store_true", help="print the QC as JSON")

    pr = sub.add_parser("report", help="self-contained HTML report of a result file or folder")
    pr.add_argument("results", help="result file (.h5) or folder of result files")
    pr.add_argument("-o", "--output", required=True, help="HTML file to write")
    pr.add_argument("--png", dest="png_dir", help="also write every figure as PNG into this folder")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing report (and PNGs)")
    _analysis_args(pr)

    pcal = sub.add_parser("calibrate", help="measure the detection depth on bead videos of known concentration")
    pcal.add_argument("results", nargs="+", help="result files (or folders) of bead videos processed with nta process")
    pcal.add_argument("--known", type=float, required=True, dest="known_per_ml", help="bead concentration of the stock, particles/mL")
    pcal.add_argument("--dilution", type=float, dest="dilution_factor", help="dilution of the measured beads (default: as recorded)")
    pcal.add_argument("-o", "--output", required=True, help="calibration JSON to write")
    pcal.add_argument("--overwrite", action="store_true", help="replace an existing calibration file")

    pe = sub.add_parser("export-csv", help="export a result as CSV in the vendor's summary layout (1-nm bins)")
    pe.add_argument("result", help="result file (.h5)")
    pe.add_argument("-o", "--output", required=True, help="CSV file to write")
    pe.add_argument("--overwrite", action="store_true", help="replace an existing CSV file")
    pe.add_argument("--detection-depth", type=float, dest="detection_depth_um", help="effective light-sheet depth, µm")
    pe.add_argument("--calibration", help="bead calibration JSON written by `nta calibrate`")
    return p


def _limit_malloc_arenas(n: int = 2) -> bool:
    """Let glibc's malloc keep at most ``n`` arenas for the threads started from now on.

    By default each thread that allocates while another holds the main arena gets an
    arena of its own (up to 8 per CPU), and memory freed in one cannot serve another: the
    locator's, decoder's, writer's, import and bootstrap threads each kept a share. With 2,
    measured with ``MALLOC_ARENA_MAX=2`` (the same setting) on a 640×480 video (2 runs
    each): peak RSS at 750 frames 356–358 against 364–365 MB, at 3000 frames 376–377
    against 391–408 MB (3000 / 750: 1.05 against 1.07–1.12); a 1500-frame 1280×1024 run
    573–575 against 598–603 MB, in 15.5–17.4 against 15.3–17.8 s (3 interleaved runs on a
    loaded machine: no measurable change). Only the command sets it (it owns the process);
    :func:`nta.pipeline.process` called from Python leaves the host's malloc alone.

    Returns
    -------
    bool
        True if glibc accepted the setting (False elsewhere, e.g. macOS or musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(-8, int(n)))  # M_ARENA_MAX (glibc malloc.h)
    except (OSError, AttributeError):
        return False


def _process(a) -> int:
    _limit_malloc_arenas()  # before any thread starts
    from .pipeline import process

    if _PENDING_STOP:  # a SIGTERM during the imports, whose KeyboardInterrupt a library swallowed
        raise KeyboardInterrupt(_PENDING_STOP[0])

    def log(msg):
        print(f"nta: {msg}", file=sys.stderr)

    if str(a.input).lower().endswith(".csv"):
        return _process_all_tracks(a, log)

    process(
        a.input,
        a.output,
        pixel_size_um=a.pixel_size_um,
        fps=a.fps,
        temperature_c=a.temperature_c,
        viscosity_mpas=a.viscosity_mpas,
        exposure_ms=a.exposure_ms,
        invert=a.invert,
        window_nm=tuple(a.window),
        overwrite=a.overwrite,
        diameter_px=a.diameter_px,
        minmass=a.minmass,
        search_range_px=a.search_range_px,
        memory=a.memory,
        split_alpha=a.split_alpha,
        length_model=a.length_model,
        min_track_length=a.min_track_length,
        max_frames=a.max_frames,
        locator=a.locator,
        dilution_factor=a.dilution_factor,
        detection_depth_um=a.detection_depth_um,
        protein_ug_ml=a.protein_ug_ml,
        sample=a.sample,
        progress=not a.no_progress and sys.stderr is not None and sys.stderr.isatty(),
        command=" ".join(shlex.quote(x) for x in sys.argv),
        log=log,
    )
    _print_result(a.output)
    return 0


def _summary(a) -> int:
    from .store import dumps, read_summary

    s = read_summary(a.result)
    if a.json:
        print(dumps(s))
    else:
        print(format_summary(s))
    return 0


def _simulate(a) -> int:
    from .simulate import simulate_video

    truth = simulate_video(
        a.output,
        sizes_nm=tuple(a.sizes),
        fractions=None if a.fractions is None else tuple(a.fractions),
        size_cv=a.size_cv,
        n_frames=a.frames,
        width=a.width,
        height=a.height,
        fps=a.fps,
        pixel_size_um=a.pixel_size_um,
        exposure_ms=a.exposure_ms,
        temperature_c=a.temperature_c,
        particles_per_frame=a.particles_per_frame,
        drift_px_per_frame=tuple(a.drift),
        seed=a.seed,
        overwrite=a.overwrite,
    )
    keys = ["true_mean_nm", "true_median_nm", "true_sd_nm", "true_window_fraction", "mean_visible_per_frame"]
    print(f"wrote {a.output}")
    print(json.dumps({k: truth.get(k) for k in keys}))
    return 0


def _process_all_tracks(a, log) -> int:
    """`nta process X_AllTracks.csv`: re-size the instrument's tracks with nta's kernel."""
    from pathlib import Path

    from .errors import InputError
    from .io.vendor import detect_export, read_nanosight_all_tracks
    from .pipeline import process_tracks
    from .sidecar import find_calibration

    path = Path(a.input)
    if not path.is_file():
        raise InputError("no such file", path=path, fix="check the path")
    if detect_export(path) != "nanosight_all_tracks":
        raise InputError("is a CSV but not a NanoSight AllTracks export (Particle ID, Frame, X, Y columns)", path=path,
                         fix="give a video, or a *_AllTracks.csv; import other exports with `nta import`")
    stem = path.stem[: -len("_AllTracks")] if path.stem.lower().endswith("_alltracks") else path.stem
    flags = {"pixel_size_um": a.pixel_size_um, "fps": a.fps, "temperature_c": a.temperature_c,
             "viscosity_mpas": a.viscosity_mpas, "exposure_ms": a.exposure_ms}
    values, sources, _ = find_calibration(path.with_name(stem + ".avi"), flags)
    for k, v in sources.items():
        if v != "flag" and k in flags:
            log(f"{k} = {values[k]} from {v}")
    cal = {k: values.get(k) for k in flags}
    cal["sources"] = {k: v for k, v in sources.items() if k in flags}
    tracks = read_nanosight_all_tracks(path)
    process_tracks(tracks, a.output, calibration=cal, window_nm=tuple(a.window), min_track_length=a.min_track_length,
                   dilution_factor=a.dilution_factor, sample=a.sample or stem, input_path=path, overwrite=a.overwrite,
                   length_model=a.length_model,
                   command=" ".join(shlex.quote(x) for x in sys.argv), log=log)
    _print_result(a.output)
    return 0


def _batch(a) -> int:
    from .batch import run_batch

    def log(msg):
        print(f"nta: {msg}", file=sys.stderr)

    flags = {k: getattr(a, k) for k in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms", "invert",
                                        "window_nm", "dilution_factor", "detection_depth_um", "protein_ug_ml", "diameter_px",
                                        "minmass", "search_range_px", "memory", "min_track_length", "max_frames", "locator",
                                        "length_model")}
    r = run_batch(a.inputs, a.output, flags=flags, samples_csv=a.samples_csv, overwrite=a.overwrite, scheduler=a.scheduler,
                  dask_local=a.dask_local, jobs=a.jobs, progress=not a.no_progress and sys.stderr.isatty(),
                  command=" ".join(shlex.quote(x) for x in sys.argv), log=log)
    c = r["counts"]
    s = r["samples"]
    if len(s):
        print(f"{'sample':24s}{'kind':>11s}{'videos':>7s}  {'mean ± SD (nm)':>18s}  {'D50 ± SD (nm)':>18s}  {'D50 95% CI (nm)':>18s}")
        for _, row in s.iterrows():
            def pm(m):
                return f"{_fmt(row[m + '_mean'])} ± {_fmt(row[m + '_sd'])}"
            ci = f"{_fmt(row['d50_nm_ci95_low'])}–{_fmt(row['d50_nm_ci95_high'])}"
            print(f"{str(row['sample'])[:24]:24s}{row['kind']:>11s}{int(row['n_videos']):>7d}  {pm('mean_nm'):>18s}  {pm('d50_nm'):>18s}  {ci:>18s}")
    print(f"{c['done']} done, {c['skipped']} skipped (complete already), {c['failed']} failed or left untouched, "
          f"in {r['time_s']:.1f} s; tables: {r['paths']['h5']}, {r['paths']['videos_csv']}, {r['paths']['samples_csv']}")
    return 0 if c["failed"] == 0 else 1


def _import(a) -> int:
    from .importer import import_export
    from .store import read_summary

    cmd = " ".join(shlex.quote(x) for x in sys.argv)
    if a.output and str(a.output).endswith(".h5") and len(a.exports) > 1:
        from .errors import InputError

        raise InputError("several exports cannot share one -o file", fix="give -o a folder")
    for e in a.exports:
        for out in import_export(e, a.output, window_nm=tuple(a.window), overwrite=a.overwrite, command=cmd):
            s = read_summary(out)
            print(f"{out}  mean {_fmt(s.get('mean_nm'))} nm  D50 {_fmt(s.get('d50_nm'))} nm  tracks {s.get('tracks_valid', 'n/a')}")
    return 0


def _compare(a) -> int:
    from .compare import compare_results, format_comparison, plot_comparison
    from .store import dumps

    table, info = compare_results(a.a, a.b)
    if a.json:
        print(dumps({"info": info, "table": table.to_dict(orient="index")}))
    else:
        print(format_comparison(table, info))
    if a.png:
        print(f"wrote {plot_comparison(a.a, a.b, a.png)}")
    return 0


def _calibration_of(a):
    from .concentration import read_calibration_file

    return read_calibration_file(a.calibration) if getattr(a, "calibration", None) else None


def _qc(a) -> int:
    from .qc import evaluate, format_qc, load_rules, load_runs, write_qc
    from .store import dumps

    rules = load_rules(a.rules)
    runs = load_runs(a.results, samples_csv=a.samples, detection_depth_um=a.detection_depth_um,
                     calibration=_calibration_of(a), protein_ug_ml=a.protein_ug_ml)
    res = evaluate(runs, rules)
    if not a.no_write:
        for r in runs:
            try:
                write_qc(r, res["samples"][r.sample], res["rules_source"])
            except (OSError, NTAError) as e:
                why = getattr(e, "strerror", None) or getattr(e, "problem", None) or str(e).splitlines()[0]
                print(f"nta: warning: {r.path}: the QC verdict was not recorded in the file ({why}); "
                      "the verdict below stands (use --no-write to skip recording)", file=sys.stderr)
    if a.json:
        samples = {k: {**{kk: vv for kk, vv in v.items() if kk != "metrics"},
                       "metrics": {m: x for m, x in v["metrics"].items() if not m.startswith("_")}} for k, v in res["samples"].items()}
        print(dumps({"verdict": res["verdict"], "rules_source": res["rules_source"], "samples": samples,
                     "runs": [{"file": str(r.path), "sample": r.sample, "verdict": r.verdict, "qc": r.qc, "concentration": r.conc} for r in runs]}))
    else:
        print(format_qc(runs, res))
    return 1 if res["verdict"] == "FAIL" else 0


def _result_inputs(paths) -> list:
    """The result files named by ``paths`` (files or folders), for the output check; a path
    that holds none is passed on as itself (the command reports it properly later)."""
    from .errors import NTAError
    from .qc import find_results

    out = []
    for x in paths:
        try:
            out.extend(find_results(x))
        except NTAError:
            out.append(x)
    return out


def _report(a) -> int:
    from .qc import load_rules
    from .report import build_report
    from .store import check_new_output

    check_new_output(a.output, overwrite=a.overwrite, what="report", inside_input_folders=False,
                     inputs=_result_inputs(a.results) + ([a.samples] if a.samples else []))
    r = build_report(a.results, a.output, samples_csv=a.samples, rules=load_rules(a.rules), detection_depth_um=a.detection_depth_um,
                     calibration=_calibration_of(a), protein_ug_ml=a.protein_ug_ml, png_dir=a.png_dir,
                     overwrite_png=a.overwrite)
    print(f"wrote {r['output']} ({r['figures']} figures, QC {r['verdict']})")
    for f in r["png"]:
        print(f"wrote {f}")
    return 0


def _calibrate(a) -> int:
    from .concentration import calibrate_depth, write_calibration_file
    from .qc import find_results

    from .store import check_new_output

    check_new_output(a.output, overwrite=a.overwrite, what="calibration file", inside_input_folders=False,
                     inputs=_result_inputs(a.results))
    files = [f for x in a.results for f in find_results(x)]
    cal = calibrate_depth(files, a.known_per_ml, dilution_factor=a.dilution_factor)
    write_calibration_file(cal, a.output)
    sd = cal["detection_depth_sd_um"]
    print(f"detection depth {cal['detection_depth_um']:.3f} µm" + (f" (SD {sd:.3f} µm over {len(files)} videos)" if sd == sd else "")
          + f"; wrote {a.output}")
    return 0


def _export_csv(a) -> int:
    from .report import export_csv

    from .store import check_new_output

    check_new_output(a.output, overwrite=a.overwrite, what="CSV export", inputs=[a.result])
    out = export_csv(a.result, a.output, detection_depth_um=a.detection_depth_um, calibration=_calibration_of(a))
    print(f"wrote {out}")
    return 0


#: A SIGTERM that arrived before nta.pipeline was imported (checked before processing starts).
_PENDING_STOP = []


def _on_sigterm(signum, frame):
    # Also leave a flag the pipeline checks between chunks and stages: an exception raised
    # here can be swallowed when the signal lands inside a library callback (numba, h5py).
    # No import here: a signal landing while nta.pipeline is being imported made the
    # handler's own import fail (ImportError from a partially initialised module), which a
    # library's ``except ImportError`` could swallow, and the run went on to completion.
    reason = f"signal {signum}"
    pipeline = sys.modules.get("nta.pipeline")
    if pipeline is not None and hasattr(pipeline, "request_stop"):
        pipeline.request_stop(reason)
    else:
        _PENDING_STOP.append(reason)
    raise KeyboardInterrupt(reason)


def main(argv=None) -> int:
    """Entry point of the ``nta`` command; returns the exit code."""
    return _dispatch(build_parser().parse_args(argv))


def _dispatch(a) -> int:
    """Run the parsed command ``a``; returns the exit code (errors reported in one line)."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    # the readers' TruncatedVideoWarning is for library callers; the command reports a short
    # video once, in its own words, among the result's notes ("nta: warning: ...")
    warnings.filterwarnings("ignore", message=r".*the container header announces .*the file may be truncated")
    handlers = {"process": _process, "summary": _summary, "simulate": _simulate, "batch": _batch, "import": _import, "compare": _compare, "qc": _qc, "report": _report, "calibrate": _calibrate, "export-csv": _export_csv}
    try:
        return handlers[a.command](a)
    except NTAError as e:
        print(f"nta: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _interrupted(a)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:
        # permissions, a full disk, a vanished folder: the system's words, on one line
        if _caused_by_interrupt(e):
            _interrupted(a)
            return 130
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"nta: error: {where}{e.strerror or e} (check the path, its permissions and free space)", file=sys.stderr)
        return 2
    except Exception as e:
        # a signal landing inside a library (e.g. numba unpickling a kernel) may surface as
        # another exception raised "from" our KeyboardInterrupt: still an interruption
        if _caused_by_interrupt(e):
            _interrupted(a)
            return 130
        raise


def _interrupted(a=None) -> None:
    """Report an interruption; silence the clean-up noise of half-built library objects.

    A signal that lands inside a library (e.g. numba/llvmlite compiling a kernel) can leave
    objects whose ``__del__`` fails at exit, printing "Exception ignored ... Traceback";
    the result file is already closed and marked incomplete, so those messages are dropped.
    """
    out = getattr(a, "output", None) if a is not None and getattr(a, "command", "") == "process" else None
    if out:
        from pathlib import Path

        partial = Path(str(out) + ".partial")
        where = partial if partial.exists() else Path(out)
        if where.exists():
            print(f"nta: interrupted; {where} is kept, marked incomplete (nta summary shows it)", file=sys.stderr)
        else:
            print("nta: interrupted before any result was written", file=sys.stderr)
    else:
        print("nta: interrupted; any result file being written is marked incomplete", file=sys.stderr)
    sys.unraisablehook = lambda unraisable: None


def _caused_by_interrupt(exc) -> bool:
    """Whether ``exc`` was raised while handling a KeyboardInterrupt (Ctrl-C or SIGTERM)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def run() -> None:
    """Console entry point of ``nta`` (and ``python -m nta.cli``): :func:`main`, then exit.

    After a completed ``nta process`` (exit code 0) the interpreter exits at once
    (``os._exit`` after flushing stdout and stderr) instead of tearing down its modules: the
    result file is closed and in place by then, and the teardown (numba, scipy, pandas,
    idle thread pools) took 0.5 s of a 3-s run (measured). Every other command, and every
    failed or interrupted run, exits normally (``nta batch`` must stop its Dask cluster).
    """
    a = build_parser().parse_args(sys.argv[1:])
    rc = _dispatch(a)
    if rc == 0 and a.command == "process":
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:  # None when the stream was closed (``>&-``)
                    stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
        os._exit(0)
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    run()
