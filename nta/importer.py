"""``nta import``: an instrument's own results stored in nta's HDF5 schema.

So that ``nta compare`` can put the instrument's results and nta's side by side, every
export becomes one or more ordinary nta result files (:mod:`nta.store`), with
``/summary``, ``/distribution`` and provenance ``source`` naming the instrument software.

One file per measured video:

========================================  ==========================================================
export                                    files written (``-o`` a folder; see :func:`output_paths`)
========================================  ==========================================================
NanoSight ExperimentSummary.csv           ``<export>.<video>.instrument.h5`` per video column, and
                                          ``<export>.Average.instrument.h5`` for the instrument's
                                          ``Average`` column (``summary.replicate`` False: it is the
                                          vendor's mean over the videos, not a measurement)
NanoSight per-video Summary.csv           ``<export>.instrument.h5``
NanoSight ParticleData.csv / AllTracks    ``<export>.instrument.h5`` with ``/per_track`` (the
                                          instrument's per-track D and size; AllTracks also
                                          ``/tracks``); statistics by nta on those sizes
ZetaView .txt                             ``<export>.instrument.h5``
========================================  ==========================================================

With ``-o OUT.h5`` a single-result export goes to ``OUT.h5`` and a multi-video summary to
``OUT.<video>.h5`` (and ``OUT.Average.h5``).

Summaries use nta's keys: ``mean_nm``, ``mode_nm``, ``sd_nm``, ``d10_nm``, ``d50_nm``,
``d90_nm`` (nm, the instrument's number-weighted values where it reports them, otherwise
computed from its histogram and noted), ``tracks_valid``, ``concentration_per_ml`` (as the
instrument reports it), ``window_fraction`` (from the instrument's histogram).
``/distribution`` holds ``bin_edges_nm`` and ``counts``: the instrument's histogram on its
own bins (NanoSight: concentration per 1-nm bin, particles/mL; ZetaView: number per bin), with
the ``units`` attribute saying which.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .distribution import DEFAULT_WINDOW_NM
from .errors import InputError, OutputExistsError, ParseError
from .store import ResultWriter, file_fingerprint

__all__ = ["import_export", "output_paths", "histogram_stats", "EXPORT_KINDS"]

#: Export kinds (from :func:`nta.io.vendor.detect_export`) that hold results to import.
EXPORT_KINDS = ("nanosight_summary", "nanosight_particle_data", "nanosight_all_tracks", "zetaview")


def histogram_stats(centres_nm, weights, window_nm=DEFAULT_WINDOW_NM) -> dict:
    """Number-weighted statistics of a binned distribution.

    Parameters
    ----------
    centres_nm : array_like
        Bin centres, nm.
    weights : array_like
        Amount per bin (number or concentration; only proportions matter).
    window_nm : (float, float)
        Size window, nm.

    Returns
    -------
    dict
        ``mean_nm``, ``sd_nm``, ``mode_nm`` (centre of the fullest bin), ``d10_nm``,
        ``d50_nm``, ``d90_nm`` (linear interpolation of the cumulative distribution at bin
        edges), ``window_fraction`` (share of the weight with centres inside the window).
        NaN when the weights sum to 0.
    """
    x = np.asarray(centres_nm, float)
    w = np.nan_to_num(np.asarray(weights, float), nan=0.0)
    w = np.where(w > 0, w, 0.0)
    tot = w.sum()
    nan = float("nan")
    if not (tot > 0):
        return dict(mean_nm=nan, sd_nm=nan, mode_nm=nan, d10_nm=nan, d50_nm=nan, d90_nm=nan, window_fraction=nan)
    mean = float((w * x).sum() / tot)
    sd = float(math.sqrt(max(0.0, (w * (x - mean) ** 2).sum() / tot)))
    half = np.diff(x) / 2 if x.size > 1 else np.array([0.5])
    edges = np.concatenate([[x[0] - half[0]], x[:-1] + half, [x[-1] + half[-1]]])
    cum = np.concatenate([[0.0], np.cumsum(w)]) / tot
    q = [float(np.interp(p, cum, edges)) for p in (0.1, 0.5, 0.9)]
    lo, hi = window_nm
    inside = (x >= lo) & (x <= hi)
    return dict(mean_nm=mean, sd_nm=sd, mode_nm=float(x[int(np.argmax(w))]), d10_nm=q[0], d50_nm=q[1], d90_nm=q[2],
                window_fraction=float(w[inside].sum() / tot))


def _edges_from_centres(x):
    x = np.asarray(x, float)
    if x.size == 0:
        return np.zeros(1)
    half = np.diff(x) / 2 if x.size > 1 else np.array([0.5])
    return np.concatenate([[x[0] - half[0]], x[:-1] + half, [x[-1] + half[-1]]])


def _f(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def output_paths(export, names, output=None) -> dict:
    """Where the results of one export go.

    Parameters
    ----------
    export : str or os.PathLike
        The export file.
    names : list of str
        Result names: ``[None]`` for a single-result export, else the video columns
        (and ``"Average"``).
    output : str or os.PathLike, optional
        A ``.h5`` file or a folder (default: the export's folder).

    Returns
    -------
    dict
        Name → output path.
    """
    export = Path(export)
    if output is not None and str(output).endswith(".h5"):
        out = Path(output)
        if names == [None]:
            return {None: out}
        return {n: out.with_name(f"{out.stem}.{n}.h5") for n in names}
    folder = Path(output) if output is not None else export.parent
    if names == [None]:
        return {None: folder / f"{export.stem}.instrument.h5"}
    return {n: folder / f"{export.stem}.{n}.instrument.h5" for n in names}


def _same_input(result, export) -> bool:
    """Whether a result file was imported from this very export (same SHA-256)."""
    import json

    import h5py

    try:
        with h5py.File(result, "r") as f:
            inputs = json.loads(f["provenance"].attrs["inputs"])
    except (OSError, KeyError, ValueError):
        return False
    return bool(inputs) and inputs[0].get("sha256") == file_fingerprint(export)["sha256"]


def _write(out, *, export, source, summary, edges, counts, count_units, calibration, per_track=None, tracks=None,
           overwrite=False, command="", extra=None, existing="error"):
    from .pipeline import _versions
    from .store import is_complete

    out = Path(out)
    if out.exists() and is_complete(out) and not overwrite:
        same = _same_input(out, export)
        if same and existing == "skip":
            return out
        raise OutputExistsError(
            "output exists already" + (" (from the same export)" if same else " (from another input)") + " and was left untouched",
            fix="choose another -o or pass --overwrite", path=out)
    if out.exists() and not is_complete(out):
        overwrite = True  # an incomplete file is never a result worth keeping
    with ResultWriter(out, overwrite=overwrite) as w:
        w.set_provenance(
            inputs=[file_fingerprint(export)],
            source=source,
            calibration=calibration,
            parameters={"imported": True, "window_nm": summary.get("window_nm"), **(extra or {})},
            versions=_versions(),
            warnings=[],
            command=command,
        )
        if tracks is not None and len(tracks):
            w.write_table("tracks", tracks)
        if per_track is not None:
            w.write_table("per_track", per_track)
        w.write_arrays("distribution", {"bin_edges_nm": np.asarray(edges, float), "counts": np.asarray(counts, float)},
                       units={"counts": count_units}, attrs={"weighting": "number", "estimator": f"instrument histogram ({source})"})
        w.write_summary(summary)
        w.finish()
    return Path(out)


def _nanosight_summary(path, s, output, window_nm, overwrite, command, existing):
    lo, hi = window_nm
    size = (s.size_data or {}).get("number")
    hist = (s.histograms or {}).get("number")
    if size is None:
        raise ParseError("has no [Size Data] number-weighted statistics to import", path=path,
                         fix="export the experiment summary with size data from the NanoSight software")
    names = list(s.videos) + (["Average"] if "Average" in size.index else [])
    if s.kind == "video" and len(s.videos) == 1:
        outs = {s.videos[0]: output_paths(path, [None], output)[None]}
    else:
        outs = output_paths(path, names, output)
    source = f"NanoSight {s.software_version or 'NTA'} export"
    written = []
    for name in names:
        row = size.loc[name]
        summary = {
            "source": source,
            "instrument_column": name,
            "replicate": name != "Average",
            "sample": name if name == "Average" else None,
            "window_nm": [lo, hi],
        }
        for k in ("mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm"):
            summary[k] = _f(row.get(k)) if k in row.index else None
        vt = _f(row.get("valid_tracks")) if "valid_tracks" in row.index else None
        summary["tracks_valid"] = int(vt) if vt is not None else None
        notes = [f"instrument result imported from {Path(path).name}, column {name!r}"]
        if name in (s.empty_videos or []):
            notes.append("the instrument reports no valid tracks for this video")
        res = s.results
        if res is not None and name in res.index:
            for src_k, k in (("concentration_per_ml", "concentration_per_ml"), ("particles_per_frame", "particles_per_frame"),
                             ("dilution_factor", "dilution_factor"), ("completed_tracks", "tracks_total")):
                if src_k in res.columns:
                    summary[k] = _f(res.loc[name, src_k])
            if "drift_x_px_per_frame" in res.columns:
                summary["drift_px_per_frame"] = [_f(res.loc[name, "drift_x_px_per_frame"]), _f(res.loc[name, "drift_y_px_per_frame"])]
        cal, sources = {}, {}
        cond = s.conditions
        if cond is not None and name in cond.index:
            for src_k, k in (("temperature_c", "temperature_c"), ("viscosity_mpas", "viscosity_mpas"),
                             ("frame_rate_fps", "fps"), ("shutter_ms", "exposure_ms")):
                if src_k in cond.columns and _f(cond.loc[name, src_k]) is not None:
                    cal[k] = _f(cond.loc[name, src_k])
                    sources[k] = f"summary CSV ({path})"
                    summary[k] = cal[k]
        cal["sources"] = sources
        if hist is not None and name in hist.columns:
            centres = hist["bin_centre_nm"].to_numpy(float)
            counts = hist[name].to_numpy(float)
            hs = histogram_stats(centres, counts, (lo, hi))
            summary["window_fraction"] = hs["window_fraction"]
            for k in ("mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm"):
                if summary.get(k) is None and not math.isnan(hs[k]):
                    summary[k] = hs[k]
                    notes.append(f"{k} computed by nta from the instrument's histogram (not in the export)")
            edges = _edges_from_centres(centres)
        else:
            summary["window_fraction"] = None
            edges, counts = np.zeros(1), np.zeros(0)
            notes.append("the export has no number-weighted histogram")
        summary["notes"] = notes
        written.append(_write(outs[name], export=path, source=source, summary=summary, edges=edges, counts=counts,
                              count_units="particles/mL per bin (instrument histogram)", calibration=cal,
                              overwrite=overwrite, command=command, extra={"instrument_column": name}, existing=existing))
    return written


def _nanosight_tracks(path, df, kind, output, window_nm, overwrite, command, existing):
    from .distribution import histogram, summarize_sizes

    lo, hi = window_nm
    if kind == "nanosight_all_tracks":
        tracks = df[[c for c in ("frame", "particle", "x", "y") if c in df.columns]].copy()
        agg = {c: "first" for c in ("diameter_nm", "D_um2_s", "included") if c in df.columns}
        per = df.groupby("particle", sort=True).agg(agg)
        per["n_points"] = df.groupby("particle", sort=True).size()
        per = per.reset_index()
    else:
        tracks = None
        per = df[[c for c in ("particle", "diameter_nm", "D_um2_s", "frame_start", "track_length", "included") if c in df.columns]].copy()
    if "included" not in per.columns:
        per["included"] = np.isfinite(per["diameter_nm"].to_numpy(float))
    per["included"] = per["included"].fillna(False).astype(bool)
    d = per.loc[per["included"], "diameter_nm"].to_numpy(float)
    summary = summarize_sizes(d, window_nm=(lo, hi), n_boot=200)
    edges, counts = histogram(d)
    source = "NanoSight NTA export (" + ("AllTracks" if tracks is not None else "ParticleData") + ")"
    summary.update(source=source, replicate=True, tracks_total=int(len(per)),
                   notes=[f"instrument per-track sizes imported from {Path(path).name}; statistics by nta on the tracks the instrument included"]
                   + list(df.attrs.get("notes", [])))
    out = output_paths(path, [None], output)[None]
    return [_write(out, export=path, source=source, summary=summary, edges=edges, counts=counts, count_units="tracks per bin",
                   calibration={"sources": {}}, per_track=per, tracks=tracks, overwrite=overwrite, command=command, existing=existing)]


def _zetaview(path, z, output, window_nm, overwrite, command, existing):
    lo, hi = window_nm
    tab = z.linear if z.linear is not None else z.log
    if tab is None or "size_nm" not in tab.columns:
        raise ParseError("has no size-distribution table to import", path=path, fix="export the measurement with its size distribution from ZetaView")
    wcol = "number" if "number" in tab.columns else "concentration_per_cm3"
    centres = tab["size_nm"].to_numpy(float)
    counts = tab[wcol].to_numpy(float)
    hs = histogram_stats(centres, counts, (lo, hi))
    source = f"ZetaView export ({z.header.get('software') or 'software version not stated'})"
    summary = {"source": source, "replicate": True, "window_nm": [lo, hi], **hs,
               "tracks_valid": z.n_traces, "notes": [f"instrument result imported from {Path(path).name}; mean, SD, mode, D10, D90 computed by nta from its {'linear' if z.linear is not None else 'log'} histogram"]}
    if z.d50_nm is not None:
        summary["d50_nm"] = z.d50_nm
        summary["notes"].append("D50 as the instrument reports it")
    if "concentration_per_cm3" in tab.columns:
        summary["concentration_per_ml"] = float(np.nansum(tab["concentration_per_cm3"].to_numpy(float)))
        summary["notes"].append("concentration: sum of the table's concentration column (particles/cm³ = /mL), as exported")
    if z.dilution is not None:
        summary["dilution_factor"] = z.dilution
    if z.header.get("sample"):
        summary["sample"] = str(z.header["sample"])
    cal = {"temperature_c": z.temperature_c, "viscosity_mpas": z.viscosity_mpas, "fps": z.frame_rate_fps}
    cal = {k: v for k, v in cal.items() if v is not None}
    cal["sources"] = {k: f"ZetaView header ({path})" for k in cal}
    summary.update({k: v for k, v in cal.items() if k != "sources"})
    out = output_paths(path, [None], output)[None]
    return [_write(out, export=path, source=source, summary=summary, edges=_edges_from_centres(centres), counts=counts,
                   count_units="number per bin (instrument histogram)" if wcol == "number" else "particles/cm³ per bin",
                   calibration=cal, overwrite=overwrite, command=command, existing=existing)]


def import_export(path, output=None, *, window_nm=DEFAULT_WINDOW_NM, overwrite: bool = False, command: str = "",
                  existing: str = "error") -> list:
    """Store an instrument export's results as nta result files.

    Parameters
    ----------
    path : str or os.PathLike
        NanoSight experiment or per-video summary CSV, ParticleData or AllTracks CSV, or a
        ZetaView ``.txt`` export.
    output : str or os.PathLike, optional
        A ``.h5`` file or an existing folder (default: beside the export); see
        :func:`output_paths` for the names.
    window_nm : (float, float)
        Size window for ``window_fraction``, nm.
    overwrite : bool
        Replace existing result files.
    command : str
        Command line, recorded in each file.
    existing : {"error", "skip"}
        What to do with a complete output imported from the same export (same SHA-256)
        when ``overwrite`` is False: raise, or keep it and list it as written. A complete
        output from another input always raises; an incomplete one is replaced.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ParseError
        Not a recognised export, a ``.nano`` file (settings only, no results), or no
        results inside.
    OutputExistsError
        An output exists and ``overwrite`` is False (files written before it stay).
    """
    from .io.vendor import detect_export, read_export

    path = Path(path)
    if not path.is_file():
        raise InputError("no such export file", path=path, fix="check the path")
    if output is not None and not str(output).endswith(".h5") and not Path(output).is_dir():
        raise InputError(f"output folder {output} does not exist", path=path, fix="create it, or give -o NAME.h5")
    kind = detect_export(path)
    if kind == "nano":
        raise ParseError("is a .nano settings file: it holds no results to import", path=path,
                         fix="import the ExperimentSummary.csv, ParticleData.csv or AllTracks.csv exported beside it")
    if kind not in EXPORT_KINDS:
        raise ParseError("is not a recognised instrument export (NanoSight summary / ParticleData / AllTracks CSV, ZetaView .txt)",
                         path=path, fix="pass an export written by the instrument software")
    data = read_export(path)
    window_nm = (float(window_nm[0]), float(window_nm[1]))
    if kind == "nanosight_summary":
        return _nanosight_summary(path, data, output, window_nm, overwrite, command, existing)
    if kind in ("nanosight_particle_data", "nanosight_all_tracks"):
        return _nanosight_tracks(path, data, kind, output, window_nm, overwrite, command, existing)
    return _zetaview(path, data, output, window_nm, overwrite, command, existing)

