"""``nta batch``: every video (and instrument export) in folders or globs, in parallel, restartably.

Layout of the results folder ``RESULTS/``::

    RESULTS/<sub/folder>/<video stem>.h5                    one nta result per video (nta.store schema)
    RESULTS/<sub/folder>/<export stem>[.<video>].instrument.h5   imported instrument results
    RESULTS/batch.h5                                        attrs format="nta-batch"; groups
                                                            /videos (one row per result) and
                                                            /samples (statistics per sample)
    RESULTS/batch_videos.csv, RESULTS/batch_samples.csv     the same two tables as CSV

``<sub/folder>`` mirrors the input folders below their common root, so two days' folders
with the same video names do not collide.

Engine: :mod:`concurrent.futures` worker processes on the local cores by default;
``scheduler="tcp://HOST:PORT"`` submits the same tasks to an existing
:mod:`dask.distributed` cluster, ``dask_local=N`` starts a local one with N worker
processes. Each task reads its input and writes its own HDF5 file; the batch files are
written by the client only, after every task has reported.

Restart rule (checked by the task, on the worker): a complete result made from the same
input (SHA-256) with the same request (calibration values and options) is kept and
reported ``skipped``; an incomplete one (killed run) is redone; a complete one with other
parameters is redone only with ``overwrite``, else reported ``exists with other parameters``
and left untouched. A task that fails is reported with its error and does not stop the others.
"""

from __future__ import annotations

import csv
import datetime as _dt
import glob
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError, NTAError, OutputError

__all__ = [
    "VIDEO_SUFFIXES",
    "Job",
    "discover",
    "plan_batch",
    "run_job",
    "run_batch",
    "sample_statistics",
    "read_samples_csv",
    "read_batch",
]

#: File suffixes treated as videos / image stacks.
VIDEO_SUFFIXES = (".avi", ".mov", ".mp4", ".m4v", ".mkv", ".tif", ".tiff")
_EXPORT_SUFFIXES = (".csv", ".txt")
#: Options that may come from flags or ``nta.toml`` (besides the calibration values).
_OPTION_DEFAULTS = {"invert": False, "window_nm": (40.0, 150.0), "dilution_factor": 1.0,
                    "detection_depth_um": None, "protein_ug_ml": None}
#: Options given by flag only.
_FLAG_ONLY = ("diameter_px", "minmass", "search_range_px", "memory", "min_track_length", "max_frames", "n_boot", "locator",
              "length_model")
#: Summary statistics aggregated per sample.
SAMPLE_METRICS = ("mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm", "window_fraction", "tracks_valid",
                  "concentration_per_ml")
#: Columns of the per-video table, in order.
VIDEO_COLUMNS = ("file", "result", "kind", "sample", "replicate", "status", "error", "pixel_size_um", "fps",
                 "temperature_c", "viscosity_mpas", "exposure_ms", "calibration_sources", "tracks_valid", "tracks_total",
                 "mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm", "window_fraction", "concentration_per_ml",
                 "qc_flags", "time_s")
_OK = ("done", "skipped")
#: Rows whose numbers enter the sample table: besides new and unchanged results, complete
#: results kept because they were made with other parameters (their numbers are the ones on
#: disk; the video table says which parameters differ). Without them a re-run with other
#: parameters and no --overwrite rewrote the tables with every sample empty.
_USED = _OK + ("exists with other parameters",)


@dataclass
class Job:
    """One unit of work: process a video, or import an export.

    Attributes
    ----------
    kind : {"video", "import"}
    input : str
        Absolute path of the video or export.
    output : str
        Result file (video) or output folder (import).
    sample : str
        Sample name for the batch table.
    options : dict
        Keyword arguments for :func:`nta.process` (calibration in µm/px, frames/s, °C,
        mPa·s, ms; options) — for imports only ``window_nm``.
    sources : dict
        Where each calibration value / option came from.
    overwrite : bool
        Redo a complete result made with other parameters.
    error : str or None
        A problem found while planning (e.g. calibration missing): the job is reported failed.
    """

    kind: str
    input: str
    output: str
    sample: str
    options: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    overwrite: bool = False
    error: str | None = None


# ------------------------------------------------------------------------------------------
# discovery and planning
# ------------------------------------------------------------------------------------------
def discover(inputs, *, exclude=None) -> tuple[list, list]:
    """Videos and instrument exports under folders, globs or files.

    Parameters
    ----------
    inputs : str or list of str
        Folders (searched recursively), glob patterns (``**`` allowed) or files.
    exclude : str or os.PathLike, optional
        A folder whose contents are ignored (the results folder).

    Returns
    -------
    videos, exports : list of pathlib.Path
        Absolute paths, sorted. Exports are the files :func:`nta.io.vendor.detect_export`
        recognises as results (NanoSight summary / ParticleData / AllTracks, ZetaView).

    Raises
    ------
    InputError
        An input does not exist or a glob matches nothing.
    """
    from .importer import EXPORT_KINDS
    from .io.vendor import detect_export

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    excl = Path(exclude).resolve() if exclude is not None else None
    files = []
    for inp in inputs:
        s = str(inp)
        if any(c in s for c in "*?["):
            hits = [Path(h) for h in sorted(glob.glob(s, recursive=True))]
            if not hits:
                raise InputError(f"the pattern {s!r} matches no file", fix="check the pattern (quote it so the shell does not expand it)")
            for h in hits:
                files.extend(sorted(p for p in h.rglob("*") if p.is_file()) if h.is_dir() else [h])
        else:
            p = Path(s)
            if p.is_dir():
                files.extend(sorted(q for q in p.rglob("*") if q.is_file()))
            elif p.is_file():
                files.append(p)
            else:
                raise InputError("no such file or folder", path=p, fix="check the path")
    videos, exports, seen = [], [], set()
    for f in files:
        f = f.resolve()
        if f in seen or any(part.startswith(".") for part in f.parts[-2:]):
            continue
        seen.add(f)
        if excl is not None and (excl == f.parent or excl in f.parents):
            continue
        suf = f.suffix.lower()
        if suf in VIDEO_SUFFIXES:
            videos.append(f)
        elif suf in _EXPORT_SUFFIXES:
            try:
                if detect_export(f) in EXPORT_KINDS:
                    exports.append(f)
            except NTAError:
                continue
    return sorted(videos), sorted(exports)


def read_samples_csv(path) -> dict:
    """Read a ``samples.csv`` mapping (columns ``file`` and ``sample``).

    Parameters
    ----------
    path : str or os.PathLike
        CSV with a header line; ``file`` is a file name, a path relative to the batch root,
        or a stem; ``sample`` the sample name.

    Returns
    -------
    dict
        File → sample.

    Raises
    ------
    InputError
        Missing file, or no ``file`` / ``sample`` column.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("no such samples file", path=p, fix="give --samples a CSV with columns file,sample")
    with open(p, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"file", "sample"} <= {k.strip().lower() for k in rows[0].keys() if k}:
        raise InputError("needs a header line with columns 'file' and 'sample'", path=p, fix="write e.g. file,sample then day1_001.avi,exosomes A")
    out = {}
    for r in rows:
        r = {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
        if r["file"]:
            out[r["file"]] = r["sample"]
    return out


def _common_root(paths) -> Path:
    if not paths:
        return Path.cwd()
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def plan_batch(inputs, results_dir, *, flags: dict | None = None, samples_csv=None, overwrite: bool = False,
               exclude_results: bool = True) -> list:
    """The jobs of a batch: one per video, one per export, with calibration resolved.

    Parameters
    ----------
    inputs : str or list of str
        Folders, globs or files (see :func:`discover`).
    results_dir : str or os.PathLike
        Folder of the results (created if missing).
    flags : dict, optional
        Values given on the command line: calibration (``pixel_size_um``, ``fps``,
        ``temperature_c``, ``viscosity_mpas``, ``exposure_ms``), options (``invert``,
        ``window_nm``, ``dilution_factor``, ``detection_depth_um``, ``protein_ug_ml``) and
        flag-only options (``diameter_px``, ``minmass``, ``search_range_px``, ``memory``,
        ``min_track_length``, ``max_frames``, ``n_boot``). None means not given.
    samples_csv : str or os.PathLike, optional
        ``samples.csv`` mapping file → sample (default: ``samples.csv`` in the batch root
        if present, then ``[samples]`` of ``nta.toml``, then the name without its
        replicate number).
    overwrite : bool
        Redo complete results made with other parameters.

    Returns
    -------
    list of Job
        Videos first, then exports, each sorted by path. A video whose calibration is
        incomplete gets ``error`` set (it is reported failed, the others run).

    Raises
    ------
    InputError
        No video or export found, or an input is missing.
    """
    from .sidecar import find_calibration, sample_for

    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    results_dir = Path(results_dir)
    videos, exports = discover(inputs, exclude=results_dir if exclude_results else None)
    if not videos and not exports:
        raise InputError(f"no video ({', '.join(VIDEO_SUFFIXES)}) and no instrument export found in {', '.join(map(str, inputs if isinstance(inputs, list) else [inputs]))}",
                         fix="give a folder, a glob such as 'data/**/*.avi', or files")
    root = _common_root(videos + exports)
    mapping = {}
    if samples_csv is not None:
        mapping = read_samples_csv(samples_csv)
    elif (root / "samples.csv").is_file():
        mapping = read_samples_csv(root / "samples.csv")
    jobs = []
    stems: dict = {}
    for v in videos:
        rel = v.parent.relative_to(root)
        stems.setdefault((rel, v.stem), []).append(v)
    for v in videos:
        rel = v.parent.relative_to(root)
        name = v.stem if len(stems[(rel, v.stem)]) == 1 else f"{v.stem}_{v.suffix.lstrip('.').lower()}"
        out = results_dir / rel / f"{name}.h5"
        cal_flags = {k: flags.get(k) for k in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms", *_OPTION_DEFAULTS)}
        err = None
        try:
            values, sources, extra = find_calibration(v, cal_flags, root=root)
        except NTAError as e:
            values, sources, extra, err = {}, {}, {"samples": {}}, str(e)
        smap = {**extra.get("samples", {}), **mapping}
        relname = str(v.relative_to(root))
        sample = smap.get(relname) or sample_for(v, smap)
        opts = {k: values.get(k) for k in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms")}
        for k, dflt in _OPTION_DEFAULTS.items():
            opts[k] = values.get(k, dflt)
            sources.setdefault(k, "default")
        opts["window_nm"] = tuple(float(x) for x in opts["window_nm"])
        for k in _FLAG_ONLY:
            if k in flags:
                opts[k] = flags[k]
        if err is None:
            missing = [k for k in ("pixel_size_um", "temperature_c") if opts.get(k) is None]
            if missing:
                names = {"pixel_size_um": "--pixel-size (µm/px)", "temperature_c": "--temperature (°C)"}
                err = (f"{v}: {', '.join(missing)} not given and not found beside the video "
                       f"(give {' and '.join(names[m] for m in missing)}, or write them into an nta.toml in the video's folder)")
        jobs.append(Job("video", str(v), str(out), sample, opts, sources, overwrite, err))
    window = tuple(float(x) for x in flags.get("window_nm", _OPTION_DEFAULTS["window_nm"]))
    for e in exports:
        rel = e.parent.relative_to(root)
        jobs.append(Job("import", str(e), str(results_dir / rel), sample_for(e, mapping), {"window_nm": window, "samples": mapping},
                        {"window_nm": "flag" if "window_nm" in flags else "default"}, overwrite))
    return jobs


# ------------------------------------------------------------------------------------------
# one task (runs on a worker)
# ------------------------------------------------------------------------------------------
def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return a == b


def request_differences(result, job: Job) -> list:
    """How an existing complete result differs from what ``job`` would produce.

    Compares the input's SHA-256, the calibration values and the options the user
    controls (not values nta derives, such as an estimated spot diameter, and not the
    sample name, which only groups the batch table), and whether the distribution was
    made with the current method (the FTLA's track-length model, 2026-11-30).

    Parameters
    ----------
    result : str or os.PathLike
        A complete nta result file.
    job : Job

    Returns
    -------
    list of str
        Empty when the result answers the job; else one phrase per difference.
    """
    import h5py

    from .diffusion import DEFAULT_MIN_TRACK_LENGTH
    from .link import DEFAULT_MEMORY
    from .store import file_fingerprint

    with h5py.File(result, "r") as f:
        pa = f["provenance"].attrs
        inputs = json.loads(pa.get("inputs", "[]"))
        params = json.loads(pa.get("parameters", "{}"))
        cal = json.loads(pa.get("calibration", "{}"))
        summ = json.loads(f["summary"].attrs.get("json", "{}")) if "summary" in f else {}
    diffs = []
    if not inputs or inputs[0].get("sha256") != file_fingerprint(job.input)["sha256"]:
        return ["made from another input (SHA-256 differs)"]
    o = job.options
    for k in ("pixel_size_um", "temperature_c", "exposure_ms"):
        if not _close(cal.get(k), o.get(k)):
            diffs.append(f"{k} {cal.get(k)} → {o.get(k)}")
    if o.get("fps") is not None and not _close(cal.get("fps"), o["fps"]):
        diffs.append(f"fps {cal.get('fps')} → {o['fps']}")
    if o.get("fps") is None and (cal.get("sources") or {}).get("fps") not in (None, "container"):
        diffs.append("fps was given, now from the container")
    if o.get("viscosity_mpas") is not None:
        if not _close(cal.get("viscosity_mpas"), o["viscosity_mpas"]):
            diffs.append(f"viscosity_mpas {cal.get('viscosity_mpas')} → {o['viscosity_mpas']}")
    elif "water" not in str((cal.get("sources") or {}).get("viscosity_mpas", "")):
        diffs.append("viscosity was given, now water at the temperature")
    pairs = [("invert", "invert", bool(o.get("invert", False))),
             ("window_nm", "window_nm", list(o.get("window_nm", (40.0, 150.0)))),
             ("dilution_factor", "dilution_factor", float(o.get("dilution_factor", 1.0))),
             ("detection_depth_um", "detection_depth_um", o.get("detection_depth_um")),
             ("protein_ug_ml", "protein_ug_ml", o.get("protein_ug_ml")),
             ("memory", "memory_frames", o.get("memory", DEFAULT_MEMORY)),
             ("min_track_length", "min_track_length_steps", o.get("min_track_length") or DEFAULT_MIN_TRACK_LENGTH),
             ("max_frames", "max_frames", o.get("max_frames")),
             ("n_boot", "n_boot", o.get("n_boot", 1000))]
    for name, key, want in pairs:
        if not _close(params.get(key), want):
            diffs.append(f"{name} {params.get(key)} → {want}")
    for name, key, src in (("diameter_px", "diameter_px", "diameter_source"), ("minmass", "minmass", "minmass_source"),
                           ("search_range_px", "search_range_px", "search_range_source")):
        given = o.get(name)
        was_flag = params.get(src) == "flag"
        if given is None and was_flag:
            diffs.append(f"{name} was {params.get(key)}, now automatic")
        elif given is not None and (not was_flag or not _close(params.get(key), given)):
            diffs.append(f"{name} {params.get(key)} → {given}")
    # the FTLA's track-length model (2026-11-30): on unless --no-length-model; a result made
    # before it has no "ftla_length_model" parameter and no ftla.length_model in its summary
    ftla = summ.get("ftla")
    had = params.get("ftla_length_model", isinstance(ftla, dict) and "length_model" in ftla)
    want = o.get("length_model")
    want = True if want is None else bool(want)
    if isinstance(ftla, dict) and bool(had) != want:
        diffs.append(f"track-length model {'on' if had else 'off'} → {'on' if want else 'off'}"
                     + ("" if "ftla_length_model" in params else " (made by an earlier nta)"))
    return diffs


def _row_from_summary(job: Job, result, status, *, error="", sample=None, time_s=None) -> dict:
    from .store import read_summary

    s = read_summary(result)
    cal = s.get("calibration") or {}
    flags = []
    for n in s.get("notes") or []:
        flags.append(str(n))
    for w in s.get("warnings") or []:
        if f"warning: {w}" not in flags:
            flags.append(f"warning: {w}")
    for q in s.get("qc_flags") or []:
        flags.append(str(q))
    row = {k: None for k in VIDEO_COLUMNS}
    row.update(
        file=job.input, result=str(result), kind="nta" if job.kind == "video" else "instrument",
        sample=sample or job.sample, replicate=bool(s.get("replicate", True)), status=status, error=error,
        calibration_sources=json.dumps({**(cal.get("sources") or {}), **({k: v for k, v in job.sources.items()} if job.kind == "video" else {})},
                                       ensure_ascii=False),
        qc_flags="; ".join(flags), time_s=time_s if time_s is not None else s.get("time_s"),
    )
    for k in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms"):
        row[k] = cal.get(k, s.get(k))
    for k in ("tracks_valid", "tracks_total", "mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm", "window_fraction",
              "concentration_per_ml"):
        row[k] = s.get(k)
    return row


def _failed_row(job: Job, status, error) -> dict:
    row = {k: None for k in VIDEO_COLUMNS}
    row.update(file=job.input, result=job.output if job.kind == "video" else "", kind="nta" if job.kind == "video" else "instrument",
               sample=job.sample, replicate=True, status=status, error=error,
               calibration_sources=json.dumps(job.sources, ensure_ascii=False), qc_flags="")
    for k in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms"):
        row[k] = job.options.get(k)
    return row


def _run_video(job: Job) -> list:
    from .pipeline import process
    from .store import is_complete

    out = Path(job.output)
    overwrite = False
    if out.exists():
        if is_complete(out):
            diffs = request_differences(out, job)
            if not diffs:
                return [_row_from_summary(job, out, "skipped")]
            if not job.overwrite:
                # the row keeps the existing result's numbers, so the batch tables lose nothing
                return [_row_from_summary(job, out, "exists with other parameters",
                                          error=f"{out}: a complete result with other parameters exists and was left untouched "
                                                f"({'; '.join(diffs)}); pass --overwrite to redo it")]
        overwrite = True  # incomplete (interrupted) results are redone; complete ones only with --overwrite
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = []
    t0 = time.perf_counter()
    kw = {k: v for k, v in job.options.items() if v is not None}
    srcs = {k: v for k, v in job.sources.items() if k in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms")
            and kw.get(k) is not None}
    process(job.input, out, overwrite=overwrite, sample=job.sample, command=f"nta batch (video {job.input})",
            calibration_sources=srcs, log=notes.append, **kw)
    return [_row_from_summary(job, out, "done", time_s=time.perf_counter() - t0)]


def _run_import(job: Job) -> list:
    from .importer import import_export
    from .sidecar import sample_for
    from .store import read_summary

    Path(job.output).mkdir(parents=True, exist_ok=True)
    before = {str(q): q.stat().st_mtime_ns for q in Path(job.output).glob("*.h5")}
    outs = import_export(job.input, job.output, window_nm=job.options.get("window_nm", (40.0, 150.0)), overwrite=job.overwrite,
                         command=f"nta batch (import {job.input})", existing="skip")
    rows = []
    mapping = job.options.get("samples") or {}
    cols = [read_summary(o).get("instrument_column") for o in outs]
    col_samples = {sample_for(c, mapping) for c in cols if c and c != "Average"}
    for o in outs:
        s = read_summary(o)
        col = s.get("instrument_column")
        if col and col != "Average":
            sample = sample_for(col, mapping)
        elif col == "Average":
            sample = col_samples.pop() if len(col_samples) == 1 else sample_for(job.input, mapping)
        else:
            sample = s.get("sample") or job.sample
        st = "skipped" if before.get(str(o)) == Path(o).stat().st_mtime_ns else "done"
        rows.append(_row_from_summary(job, o, st, sample=sample))
    return rows


def run_job(job: Job) -> list:
    """Run one job and return its rows for the batch table (never raises for bad inputs).

    Parameters
    ----------
    job : Job

    Returns
    -------
    list of dict
        One row per result file (:data:`VIDEO_COLUMNS`); ``status`` is ``"done"``,
        ``"skipped"`` (a complete result for the same input and request existed),
        ``"exists with other parameters"`` or ``"failed"`` with ``error`` set.
    """
    if job.error:
        return [_failed_row(job, "failed", job.error)]
    try:
        return _run_video(job) if job.kind == "video" else _run_import(job)
    except NTAError as e:
        return [_failed_row(job, "failed", str(e))]
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # one bad video must not stop the batch: report it
        return [_failed_row(job, "failed", f"{job.input}: unexpected {type(e).__name__}: {e} (please report this as an nta bug)")]


def _worker_init():
    import signal

    def _term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)


# ------------------------------------------------------------------------------------------
# statistics across replicate videos
# ------------------------------------------------------------------------------------------
def sample_statistics(videos: pd.DataFrame, metrics=SAMPLE_METRICS) -> pd.DataFrame:
    """Mean ± SD, standard error and 95 % CI of each metric across a sample's videos.

    Parameters
    ----------
    videos : pandas.DataFrame
        The per-video table (:data:`VIDEO_COLUMNS`).
    metrics : sequence of str
        Columns to aggregate (units as their names say).

    Returns
    -------
    pandas.DataFrame
        One row per (``sample``, ``kind``) — nta's and the instrument's results are kept
        apart —, columns ``n_videos`` (results used), ``n_failed``, and per metric
        ``<m>_mean``, ``<m>_sd`` (ddof = 1), ``<m>_se`` (SD/√n), ``<m>_ci95_low``,
        ``<m>_ci95_high`` (mean ± t₀.₉₇₅,ₙ₋₁ · SE, Student's t). Statistics of a metric use
        the videos where it is finite (a video with no valid track has no sizes); SD, SE
        and CI need two. Rows not ``done``/``skipped``/``exists with other parameters``
        (:data:`_USED`) and non-replicate rows (the instrument's own ``Average`` column)
        are left out; ``n_failed`` counts the rows left out for failing.
    """
    from scipy import stats

    rows = []
    if videos.empty:
        return pd.DataFrame(columns=["sample", "kind", "n_videos", "n_failed"])
    for (sample, kind), g in videos.groupby(["sample", "kind"], sort=True, dropna=False):
        ok = g[g["status"].isin(_USED) & g["replicate"].fillna(True).astype(bool)]
        r = {"sample": sample, "kind": kind, "n_videos": int(len(ok)), "n_failed": int((~g["status"].isin(_USED)).sum())}
        for m in metrics:
            x = pd.to_numeric(ok[m], errors="coerce").to_numpy(float) if m in ok else np.zeros(0)
            x = x[np.isfinite(x)]
            n = x.size
            mean = float(x.mean()) if n else float("nan")
            sd = float(x.std(ddof=1)) if n > 1 else float("nan")
            se = sd / math.sqrt(n) if n > 1 else float("nan")
            half = float(stats.t.ppf(0.975, n - 1)) * se if n > 1 else float("nan")
            r.update({f"{m}_mean": mean, f"{m}_sd": sd, f"{m}_se": se, f"{m}_ci95_low": mean - half, f"{m}_ci95_high": mean + half})
        rows.append(r)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------
# batch files (client only)
# ------------------------------------------------------------------------------------------
def _write_table_group(h5, name, df: pd.DataFrame):
    import h5py

    g = h5.create_group(name)
    for c in df.columns:
        col = df[c]
        if col.dtype == object or col.dtype.kind in "OSU":
            vals = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in col]
            g.create_dataset(c, data=np.array(vals, dtype=object), dtype=h5py.string_dtype("utf-8"))
        else:
            g.create_dataset(c, data=col.to_numpy())
    g.attrs["columns"] = json.dumps(list(df.columns))
    g.attrs["n_rows"] = len(df)


def write_batch_files(results_dir, videos: pd.DataFrame, samples: pd.DataFrame, *, command: str = "", info: dict | None = None) -> dict:
    """Write ``batch.h5``, ``batch_videos.csv`` and ``batch_samples.csv`` (atomically).

    These files index the results present; they are rewritten by each run.

    Returns
    -------
    dict
        ``{"h5": Path, "videos_csv": Path, "samples_csv": Path}``.

    Raises
    ------
    OutputError
        The folder is not writable.
    """
    import h5py

    from . import __version__

    d = Path(results_dir)
    paths = {"h5": d / "batch.h5", "videos_csv": d / "batch_videos.csv", "samples_csv": d / "batch_samples.csv"}
    try:
        tmp = paths["h5"].with_name("batch.h5.partial")
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "nta-batch"
            f.attrs["nta_version"] = __version__
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["command"] = command
            f.attrs["info"] = json.dumps(info or {}, ensure_ascii=False)
            _write_table_group(f, "videos", videos)
            _write_table_group(f, "samples", samples)
        os.replace(tmp, paths["h5"])
        for key, df in (("videos_csv", videos), ("samples_csv", samples)):
            t = paths[key].with_name(paths[key].name + ".partial")
            df.to_csv(t, index=False)
            os.replace(t, paths[key])
    except OSError as e:
        raise OutputError(f"cannot write the batch files: {e}", path=d, fix="check the results folder is writable and has space")
    return paths


def read_batch(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read ``batch.h5``: the per-video and per-sample tables.

    Raises
    ------
    OutputError
        Not an nta batch file.
    """
    import h5py

    p = Path(path)
    if p.is_dir():
        p = p / "batch.h5"
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise OutputError(f"not a readable batch file ({e})", path=p, fix="give RESULTS/batch.h5 written by nta batch")
    with f:
        if f.attrs.get("format") != "nta-batch":
            raise OutputError("not an nta batch file", path=p, fix="give RESULTS/batch.h5 written by nta batch")
        out = []
        for g in ("videos", "samples"):
            cols = json.loads(f[g].attrs["columns"])
            data = {}
            for c in cols:
                v = f[g][c][()]
                if v.dtype == object:
                    v = np.array([x.decode() if isinstance(x, bytes) else x for x in v], dtype=object)
                data[c] = v
            out.append(pd.DataFrame(data, columns=cols))
    return out[0], out[1]


def _table(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(VIDEO_COLUMNS))
    for c in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms", "tracks_valid", "tracks_total", "mean_nm",
              "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm", "window_fraction", "concentration_per_ml", "time_s"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["replicate"] = df["replicate"].fillna(True).astype(bool)
    for c in ("file", "result", "kind", "sample", "status", "error", "calibration_sources", "qc_flags"):
        df[c] = df[c].fillna("").astype(str)
    return df.sort_values(["kind", "file", "result"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# the batch
# ------------------------------------------------------------------------------------------
class _Bar:
    def __init__(self, total, enabled):
        self.n = {"done": 0, "skipped": 0, "failed": 0}
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="batch", unit="file", file=sys.stderr, dynamic_ncols=True)

    def update(self, rows):
        for r in rows:
            k = r["status"] if r["status"] in self.n else "failed"
            self.n[k] += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(self.n, refresh=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _run_local(jobs, n_workers, on_rows):
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    import multiprocessing as mp

    if n_workers <= 1:
        for j in jobs:
            on_rows(j, run_job(j))
        return
    ex = ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    futs = {}
    try:
        futs = {ex.submit(run_job, j): j for j in jobs}
        for fut in as_completed(futs):
            j = futs[fut]
            try:
                rows = fut.result()
            except BrokenProcessPool as e:
                rows = [_failed_row(j, "failed", f"{j.input}: the worker process died ({e}); out of memory?")]
            on_rows(j, rows)
    except BaseException:
        for f in futs:
            f.cancel()
        procs = list(getattr(ex, "_processes", {}).values())
        for p in procs:
            if p.is_alive():
                p.terminate()  # workers mark their result incomplete (SIGTERM → KeyboardInterrupt)
        for p in procs:
            p.join(10)
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _run_dask(jobs, on_rows, *, scheduler=None, n_local=None, log=None):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({e})",
                             fix="check the address (tcp://HOST:PORT) and that the scheduler runs")
    else:
        cluster = LocalCluster(n_workers=int(n_local), threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    futs = {}
    try:
        if log:
            log(f"dask: {client.scheduler.address if hasattr(client.scheduler, 'address') else scheduler}, "
                f"{len(client.scheduler_info().get('workers', {}))} workers")
        futs = {client.submit(run_job, j, pure=False, key=f"nta-{i}-{Path(j.input).name}"): j for i, j in enumerate(jobs)}
        for fut in as_completed(list(futs)):
            j = futs[fut]
            try:
                rows = fut.result()
            except Exception as e:  # a worker died (KilledWorker) or the task could not run
                rows = [_failed_row(j, "failed", f"{j.input}: the Dask task failed ({type(e).__name__}: {e})")]
            on_rows(j, rows)
    except BaseException:
        client.cancel(list(futs))
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_batch(inputs, results_dir, *, flags: dict | None = None, samples_csv=None, overwrite: bool = False,
              scheduler: str | None = None, dask_local: int | None = None, jobs: int | None = None,
              progress: bool = False, command: str = "", log=None) -> dict:
    """Process every video and import every export found; write the batch tables.

    Parameters
    ----------
    inputs : str or list of str
        Folders (recursive), glob patterns or files.
    results_dir : str or os.PathLike
        Results folder (created if missing); layout in the module docstring.
    flags : dict, optional
        Calibration and options as for :func:`plan_batch` (flags override sidecar values).
    samples_csv : str or os.PathLike, optional
        Mapping file → sample.
    overwrite : bool
        Redo complete results made with other parameters.
    scheduler : str, optional
        Address of a running Dask scheduler, ``tcp://HOST:PORT``.
    dask_local : int, optional
        Start a local Dask cluster with this many worker processes.
    jobs : int, optional
        Worker processes of the default local engine (default: the number of cores,
        at most the number of jobs); 1 runs in this process.
    progress : bool
        One progress bar for the batch on stderr (files done / skipped / failed, time left).
    command : str
        Command line, stored in ``batch.h5``.
    log : callable, optional
        ``log(str)`` receives one line per failed file and engine notes.

    Returns
    -------
    dict
        ``videos`` and ``samples`` (DataFrames), ``paths`` (batch files), ``counts``
        (done / skipped / failed), ``time_s``.

    Raises
    ------
    InputError
        Nothing found, or the scheduler cannot be reached.
    OutputError
        The results folder cannot be created or written.
    """
    say = log or (lambda s: None)
    t0 = time.perf_counter()
    if scheduler is not None and dask_local is not None:
        raise InputError("give either --scheduler or --dask-local, not both", fix="drop one of them")
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the results folder: {e.strerror}", path=results_dir, fix="choose a writable -o")
    plan = plan_batch(inputs, results_dir, flags=flags, samples_csv=samples_csv, overwrite=overwrite)
    bar = _Bar(len(plan), progress)
    rows: list = []

    def on_rows(job, rs):
        rows.extend(rs)
        for r in rs:
            if r["status"] not in _OK:
                say(f"{r['status']}: {r['error']}")
        bar.update(rs)

    try:
        if scheduler is not None or dask_local is not None:
            _run_dask(plan, on_rows, scheduler=scheduler, n_local=dask_local, log=say)
        else:
            n = jobs if jobs is not None else min(os.cpu_count() or 1, len([j for j in plan if not j.error]) or 1)
            _run_local(plan, max(1, int(n)), on_rows)
    finally:
        bar.close()
    videos = _table(rows)
    samples = sample_statistics(videos)
    counts = {"done": int((videos["status"] == "done").sum()), "skipped": int((videos["status"] == "skipped").sum())}
    counts["failed"] = int(len(videos) - counts["done"] - counts["skipped"])
    engine = f"dask scheduler {scheduler}" if scheduler else (f"dask LocalCluster ({dask_local} workers)" if dask_local else "local processes")
    paths = write_batch_files(results_dir, videos, samples, command=command,
                              info={"inputs": [str(i) for i in (inputs if isinstance(inputs, (list, tuple)) else [inputs])],
                                    "engine": engine, "counts": counts, "time_s": time.perf_counter() - t0})
    return {"videos": videos, "samples": samples, "paths": paths, "counts": counts, "time_s": time.perf_counter() - t0}
