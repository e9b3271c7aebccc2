"""Reports: one self-contained HTML file (plots embedded as PNG data URIs), PNG figures,
and a CSV export in the layout of the vendor's summary.

``nta report RESULT.h5|RESULTS/ -o report.html [--png DIR]`` builds, per sample: the size
distribution (raw per-track histogram in grey behind any estimated density the file holds,
the window shaded), the sample's videos overlaid, the cumulative distribution with
D10/D50/D90, size versus intensity, the track-length histogram and the drift over time;
then the QC table with reasons, the concentration with the source of its detection
depth, group statistics with a forest plot (when samples are mapped to groups), and the
calibration and provenance of every file. The HTML has no external resource and opens
offline.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from .errors import OutputError

__all__ = ["build_report", "figures_for_sample", "export_csv"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def _density_arrays(dist: dict, n_bins: int) -> dict:
    """Estimated densities in ``/distribution`` (anything bin-shaped besides the raw counts)."""
    return {k: np.asarray(v, float) for k, v in dist.items()
            if k not in ("counts", "bin_edges_nm", "bin_centers_nm") and np.ndim(v) == 1 and len(v) == n_bins}


def _estimator(run) -> str:
    """Short name of the distribution a run reports."""
    text = str(run.summary.get("distribution") or "")
    return "FTLA deconvolution" if "FTLA" in text else (text.split("(")[0].strip() or "histogram")


def _reported_density(run, edges):
    """A run's reported number distribution re-binned to ``edges`` (nm), as a density (1/nm).

    The deconvolved 1-nm histogram ``counts_ftla`` when present, else the file's ``counts``
    (nta's raw per-track histogram, or an imported instrument's own), else the per-track
    diameters. None when the run has nothing to show.
    """
    dist = run.distribution or {}
    e = dist.get("bin_edges_nm")
    for key in ("counts_ftla", "counts"):
        c = dist.get(key)
        if e is not None and c is not None and np.nansum(c) > 0:
            c = np.nan_to_num(np.asarray(c, float))
            centres = 0.5 * (np.asarray(e[1:]) + np.asarray(e[:-1]))
            h, _ = np.histogram(centres, bins=edges, weights=c)
            return h / (c.sum() * np.diff(edges))
    if run.diameters_nm.size:
        h, _ = np.histogram(run.diameters_nm, bins=edges, density=True)
        return h
    return None


def figures_for_sample(runs) -> dict:
    """The figures of one sample's runs, as matplotlib Figures keyed by a short name.

    Parameters
    ----------
    runs : list of nta.qc.Run
        The sample's runs.

    Returns
    -------
    dict of str → matplotlib.figure.Figure
        ``distribution``, ``replicates``, ``cumulative``, ``size_intensity``,
        ``track_length``, ``drift``.
    """
    from .store import read_table

    plt = _plt()
    win = runs[0].summary.get("window_nm") or [40.0, 150.0]
    d = np.concatenate([r.diameters_nm for r in runs]) if runs else np.zeros(0)
    top = float(max(300.0, np.quantile(d, 0.99) * 1.3)) if d.size else 300.0
    figs = {}

    # size distribution: the reported distribution (FTLA deconvolution, or an instrument's
    # own histogram) in front, the raw per-track histogram behind it
    edges = np.arange(0, top + 5, 5.0)
    centres = 0.5 * (edges[1:] + edges[:-1])
    reported = [(r, _reported_density(r, edges)) for r in runs]
    reported = [(r, h) for r, h in reported if h is not None]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.axvspan(win[0], win[1], color="tab:green", alpha=0.12, label=f"window {win[0]:g}–{win[1]:g} nm")
    if d.size:
        ax.hist(d, bins=edges, density=True, color="0.75", label=f"raw per-track histogram (n = {d.size})")
    if reported:
        mean_h = np.mean([h for _, h in reported], axis=0)
        ax.plot(centres, mean_h, lw=2, color="C0", label=f"reported ({_estimator(runs[0])})")
    ax.set_xlim(0, top)
    ax.set_xlabel("hydrodynamic diameter (nm)")
    ax.set_ylabel("number density (1/nm)")
    ax.legend(fontsize=8)
    ax.set_title("size distribution")
    fig.tight_layout()
    figs["distribution"] = fig

    # replicate videos overlaid (their reported distributions)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.axvspan(win[0], win[1], color="tab:green", alpha=0.10)
    for r, h in reported:
        ax.plot(centres, h, lw=1.4, label=f"{r.name} (n = {r.summary.get('tracks_valid', r.diameters_nm.size)})")
    ax.set_xlim(0, top)
    ax.set_xlabel("hydrodynamic diameter (nm)")
    ax.set_ylabel("number density (1/nm)")
    ax.set_title("replicate videos")
    if reported:
        ax.legend(fontsize=7)
    fig.tight_layout()
    figs["replicates"] = fig

    # cumulative of the reported distribution (videos averaged) with D10/D50/D90
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if reported:
        cum = np.concatenate([[0.0], np.cumsum(np.mean([h for _, h in reported], axis=0) * np.diff(edges))])
        cum = cum / cum[-1] if cum[-1] > 0 else cum
        ax.plot(edges, cum, color="C0", label="reported")
        if d.size:
            sd = np.sort(d)
            ax.plot(sd, np.arange(1, sd.size + 1) / sd.size, color="0.6", lw=1, label="raw per-track")
        for q, lab in ((0.1, "D10"), (0.5, "D50"), (0.9, "D90")):
            v = float(np.interp(q, cum, edges))
            ax.axvline(v, ls="--", color="0.4", lw=1)
            ax.text(v, q, f" {lab} {v:.0f} nm", fontsize=8, va="bottom")
        ax.legend(fontsize=8, loc="lower right")
    ax.axvspan(win[0], win[1], color="tab:green", alpha=0.10)
    ax.set_xlim(0, top)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("hydrodynamic diameter (nm)")
    ax.set_ylabel("cumulative number fraction")
    ax.set_title("cumulative distribution")
    fig.tight_layout()
    figs["cumulative"] = fig

    # size vs intensity, track length, drift
    fig1, ax1 = plt.subplots(figsize=(5, 3.6))
    fig2, ax2 = plt.subplots(figsize=(5, 3.2))
    fig3, ax3 = plt.subplots(figsize=(7, 3.2))
    lengths = []
    scattered = False  # any valid track with a positive size and intensity (log axes need one)
    for i, r in enumerate(runs):
        per = read_table(r.path, "per_track")
        if len(per) and "mass_mean" in per:
            inc = per["included"].to_numpy(bool)
            dd, mm = per["diameter_nm"][inc], per["mass_mean"][inc]
            ax1.scatter(dd, mm, s=4, alpha=0.5, color=f"C{i % 10}", label=r.name)
            scattered |= bool(np.any((dd.to_numpy(float) > 0) & (mm.to_numpy(float) > 0)))
        if len(per) and "n_points" in per:
            lengths.append(per["n_points"].to_numpy())
        dr = read_table(r.path, "drift")
        px = float(r.summary.get("pixel_size_um") or 1.0)
        fps = float(r.summary.get("fps") or 1.0)
        if len(dr):
            t = dr["frame"].to_numpy() / fps
            ax3.plot(t, dr["dx_px"] * px, color=f"C{i % 10}", lw=1.2, label=f"{r.name} x")
            ax3.plot(t, dr["dy_px"] * px, color=f"C{i % 10}", lw=1.2, ls="--", label=f"{r.name} y")
    if scattered:
        ax1.set_xscale("log")
        ax1.set_yscale("log")
    else:
        ax1.text(0.5, 0.5, "no valid tracks", ha="center", va="center", transform=ax1.transAxes, color="0.4")
    ax1.set_xlabel("hydrodynamic diameter (nm)")
    ax1.set_ylabel("mean intensity (counts)")
    ax1.set_title("size vs intensity (valid tracks)")
    fig1.tight_layout()
    figs["size_intensity"] = fig1
    ln = np.concatenate(lengths) if lengths else np.zeros(0)
    if ln.size:
        ax2.hist(ln, bins=np.arange(0.5, max(ln.max(), 2) + 1.5, max(1, int(ln.max() // 60) or 1)), color="C0")
        mtl = runs[0].summary.get("min_track_length_steps")
        if mtl:
            ax2.axvline(mtl + 1, color="C3", ls="--", lw=1, label=f"minimum for sizing ({mtl + 1} points)")
            ax2.legend(fontsize=8)
        ax2.set_yscale("log")
    else:
        ax2.text(0.5, 0.5, "no tracks", ha="center", va="center", transform=ax2.transAxes, color="0.4")
    ax2.set_xlabel("track length (detections)")
    ax2.set_ylabel("tracks")
    ax2.set_title("track lengths")
    fig2.tight_layout()
    figs["track_length"] = fig2
    ax3.set_xlabel("time (s)")
    ax3.set_ylabel("cumulative drift (µm)")
    ax3.set_title("drift over time")
    if ax3.lines:
        ax3.legend(fontsize=7, ncol=2)
    fig3.tight_layout()
    figs["drift"] = fig3
    return figs


def _e(x) -> str:
    return html.escape(str(x))


def _num(v, nd=1, sci=False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if sci:
        return f"{v:.3g}"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


_CSS = """body{font-family:system-ui,Arial,sans-serif;margin:24px;max-width:1150px;color:#222}
h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.PASS{background:#d8f5d8}.WARN{background:#fff1c2}.FAIL{background:#ffd0d0}.NA{background:#eee}
.verdict{display:inline-block;padding:4px 14px;border-radius:6px;font-weight:bold;font-size:18px}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:8px;padding:8px 14px;min-width:150px}
.card b{display:block;font-size:20px}img{max-width:100%;border:1px solid #eee;margin:4px 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px}small{color:#666}pre{background:#f7f7f7;padding:8px;font-size:11px;overflow:auto}"""


def _cls(status: str) -> str:
    return "NA" if status == "N/A" else status


def build_report(path, output, *, samples_csv=None, rules=None, detection_depth_um=None, calibration=None,
                 protein_ug_ml=None, png_dir=None, write_qc_to_files: bool = False, overwrite_png: bool = True) -> dict:
    """Write the HTML report of a result file or folder.

    Parameters
    ----------
    path : path
        A result file or a folder of result files.
    output : path
        The HTML file to write.
    samples_csv, detection_depth_um, calibration, protein_ug_ml
        As :func:`nta.qc.load_runs`.
    rules : dict, optional
        From :func:`nta.qc.load_rules` (default rules when None).
    png_dir : path, optional
        Also write every figure as a PNG file there (created if missing), named after its
        sample and plot.
    write_qc_to_files : bool
        Also store the QC in each result file (as ``nta qc`` does).
    overwrite_png : bool
        Replace PNG files already in ``png_dir``. False (``nta report`` without
        ``--overwrite``): an existing one is an error, raised before anything is written.

    Returns
    -------
    dict
        ``verdict``, ``figures`` (number embedded), ``png`` (files written), ``output``.

    Raises
    ------
    OutputError
        The output's folder does not exist, or (``overwrite_png`` False) a PNG to write
        exists already.
    """
    from . import __version__
    from .qc import evaluate, load_rules, load_runs, write_qc
    from .stats import METRICS, forest_plot, group_statistics, sample_table

    out = Path(output)
    if not out.parent.exists():
        raise OutputError(f"folder {out.parent} does not exist", fix="create it or choose another -o", path=out)
    rules = rules or load_rules()
    runs = load_runs(path, samples_csv=samples_csv, detection_depth_um=detection_depth_um, calibration=calibration,
                     protein_ug_ml=protein_ug_ml)
    res = evaluate(runs, rules)
    if write_qc_to_files:
        for r in runs:
            write_qc(r, res["samples"][r.sample], res["rules_source"])
    pngs = {}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nta report</title><style>{_CSS}</style></head><body>",
             f"<h1>NTA report</h1><small>{_e(path)} · {len(runs)} video(s), {len(res['samples'])} sample(s) · nta {__version__}</small>",
             f"<p>Overall QC: <span class='verdict {_cls(res['verdict'])}'>{res['verdict']}</span></p>"]
    # overview table
    parts.append("<h2>Overview</h2><table><tr><th>sample</th><th>group</th><th>videos</th><th>QC</th><th>mode (nm)</th>"
                 "<th>D50 (nm)</th><th>in window</th><th>&gt; 200 nm</th><th>particles/mL</th><th>in window (particles/mL)</th>"
                 "<th>particles/µg</th></tr>")
    for name, s in res["samples"].items():
        m = s["metrics"]
        parts.append(f"<tr><td>{_e(name)}</td><td>{_e(s['group'])}</td><td>{len(s['runs'])}</td>"
                     f"<td class='{_cls(s['verdict'])}'>{s['verdict']}</td><td>{_num(m['mode_nm'])}</td><td>{_num(m['d50_nm'])}</td>"
                     f"<td>{_num(100 * m['window_fraction'])} %</td><td>{_num(100 * m['large_fraction'])} %</td>"
                     f"<td>{_num(m['concentration_per_ml'], sci=True)}</td><td>{_num(m['window_concentration_per_ml'], sci=True)}</td>"
                     f"<td>{_num(m['particles_per_ug'], sci=True)}</td></tr>")
    parts.append("</table>")

    # groups
    table = sample_table(runs)
    gs = group_statistics(table) if (table["group"].astype(str) != "").any() else None
    if gs and gs["groups"]:
        parts.append("<h2>Group statistics</h2><p><small>Unit: the sample (videos of a sample averaged first). "
                     "Mean ± SD, 95 % CI of the mean (t); differences with Welch 95 % CI, Hedges' g, Welch's t-test "
                     "and Mann–Whitney U (scipy).</small></p><table><tr><th>metric</th><th>group</th><th>n</th><th>mean ± SD</th><th>95 % CI</th></tr>")
        for mkey, per in gs["describe"].items():
            sci = mkey == "concentration_per_ml"
            for g, d in per.items():
                parts.append(f"<tr><td>{_e(METRICS[mkey])}</td><td>{_e(g)}</td><td>{d['n']}</td>"
                             f"<td>{_num(d['mean'], 3, sci)} ± {_num(d['sd'], 3, sci)}</td><td>{_num(d['ci_low'], 3, sci)} – {_num(d['ci_high'], 3, sci)}</td></tr>")
        parts.append("</table><table><tr><th>metric</th><th>comparison</th><th>difference [95 % CI]</th><th>Hedges' g</th>"
                     "<th>Welch p</th><th>Mann–Whitney p</th></tr>")
        for mkey, pairs in gs["compare"].items():
            sci = mkey == "concentration_per_ml"
            for c in pairs:
                parts.append(f"<tr><td>{_e(METRICS[mkey])}</td><td>{_e(c['a'])} − {_e(c['b'])}</td>"
                             f"<td>{_num(c['diff'], 3, sci)} [{_num(c['diff_ci_low'], 3, sci)}, {_num(c['diff_ci_high'], 3, sci)}]</td>"
                             f"<td>{_num(c['hedges_g'], 2)}</td><td>{_num(c['welch_p'], 3)}</td><td>{_num(c['mannwhitney_p'], 3)}</td></tr>")
        parts.append("</table>")
        png = _png(forest_plot(gs))
        pngs["groups_forest"] = png
        parts.append(f"<img alt='forest plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")

    # per sample
    for si, (name, s) in enumerate(res["samples"].items()):
        members = [r for r in runs if r.sample == name]
        m = s["metrics"]
        parts.append(f"<h2>Sample {_e(name)} <span class='verdict {_cls(s['verdict'])}'>{s['verdict']}</span></h2>")
        parts.append("<div class='cards'>" + "".join(
            f"<div class='card'>{lab}<b>{val}</b></div>" for lab, val in [
                ("mode", f"{_num(m['mode_nm'])} nm"), ("D10 / D50 / D90", f"{_num(m['d10_nm'], 0)} / {_num(m['d50_nm'], 0)} / {_num(m['d90_nm'], 0)} nm"),
                ("mean ± SD", f"{_num(m['mean_nm'])} ± {_num(m['sd_nm'])} nm"),
                (f"in {m['window_nm'][0]:g}–{m['window_nm'][1]:g} nm", f"{_num(100 * m['window_fraction'])} %"),
                ("concentration", f"{_num(m['concentration_per_ml'], sci=True)} /mL"),
                ("in window", f"{_num(m['window_concentration_per_ml'], sci=True)} /mL"),
                ("particles/µg protein", _num(m["particles_per_ug"], sci=True)),
                ("valid tracks", str(int(m["tracks_valid"])))]) + "</div>")
        figs = figures_for_sample(members)
        imgs = []
        for k, fig in figs.items():
            png = _png(fig)
            key = f"{name}_{k}"
            pngs[key] = png
            imgs.append(f"<img alt='{_e(k)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
        parts.append(imgs[0] + imgs[1] + imgs[2] + "<div class='grid'>" + "".join(imgs[3:5]) + "</div>" + imgs[5])
        # QC table
        parts.append("<h3>QC</h3><table><tr><th>scope</th><th>rule</th><th>status</th><th>value / reason</th></tr>")
        for x in s["qc"]:
            if not x["rule"].startswith("run:"):
                parts.append(f"<tr><td>sample</td><td>{_e(x['rule'])}</td><td class='{_cls(x['status'])}'>{x['status']}</td><td>{_e(x['reason'])}</td></tr>")
        for r in members:
            for x in r.qc:
                parts.append(f"<tr><td>{_e(r.name)}</td><td>{_e(x['rule'])}</td><td class='{_cls(x['status'])}'>{x['status']}</td><td>{_e(x['reason'])}</td></tr>")
        parts.append("</table>")
        # concentration + calibration + provenance
        parts.append("<h3>Concentration, calibration and provenance</h3><table><tr><th>video</th><th>particles/frame (tracked)</th>"
                     "<th>detection depth (µm)</th><th>depth source</th><th>dilution</th><th>particles/mL</th><th>note</th></tr>")
        for r in members:
            c = r.conc
            parts.append(f"<tr><td>{_e(r.name)}</td><td>{_num(c['particles_per_frame_tracked'])}</td><td>{_num(c['detection_depth_um'], 2)}</td>"
                         f"<td>{_e(c['detection_depth_source'])}</td><td>{_num(c['dilution_factor'], 0)}</td>"
                         f"<td>{_num(c['concentration_per_ml'], sci=True)}</td><td>{_e(c['concentration_note'])}</td></tr>")
        parts.append("</table>")
        for r in members:
            s_ = r.summary
            prov = {"file": str(r.path), "status": s_.get("status"), "inputs": s_.get("inputs"), "calibration": s_.get("calibration"),
                    "pixel_size_um": s_.get("pixel_size_um"), "fps": s_.get("fps"), "temperature_c": s_.get("temperature_c"),
                    "viscosity_mpas": s_.get("viscosity_mpas"), "warnings": s_.get("warnings"), "notes": s_.get("notes")}
            parts.append(f"<details><summary>{_e(r.name)}: calibration and provenance</summary><pre>{_e(json.dumps(prov, indent=1, ensure_ascii=False, default=str))}</pre></details>")
    parts.append(f"<p><small>QC rules: {_e(res['rules_source'])}. Concentration: tracked particles per frame / "
                 "(effective field of view × detection depth) × dilution; see nta/concentration.py.</small></p></body></html>")
    from .store import write_text_atomic

    targets = {}
    if png_dir:
        pd_ = Path(png_dir)
        targets = {k: pd_ / f"{''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in k)}.png" for k in pngs}
        clash = [f for f in targets.values() if f.exists()]
        if clash and not overwrite_png:  # checked before anything is written
            raise OutputError(f"{len(clash)} of the report's PNG files exist already in {pd_} (e.g. {clash[0].name})",
                              fix="give --overwrite to replace them, or another --png folder", path=clash[0])
    write_text_atomic(out, "\n".join(parts), overwrite=True, what="report")
    written = []
    if targets:
        pd_.mkdir(parents=True, exist_ok=True)
        for k, f in targets.items():
            f.write_bytes(pngs[k])
            written.append(str(f))
    return {"verdict": res["verdict"], "figures": len(pngs), "png": written, "output": str(out), "runs": runs, "qc": res}


def _reported_quantile(dist: dict, d, q: float) -> float:
    """Quantile ``q`` of the reported distribution: the deconvolved 1-nm histogram
    ``counts_ftla`` when present (what ``[Results]`` reports), else the per-track diameters."""
    e, c = dist.get("bin_edges_nm"), dist.get("counts_ftla")
    if e is not None and c is not None and np.nansum(c) > 0:
        c = np.nan_to_num(np.asarray(c, float))
        cum = np.concatenate([[0.0], np.cumsum(c)]) / c.sum()
        return float(np.interp(q, cum, np.asarray(e, float)))
    return float(np.quantile(d, q)) if np.size(d) else float("nan")


def export_csv(result, output, *, detection_depth_um=None, calibration=None) -> Path:
    """Export one run as CSV in the layout of NanoSight's summary file.

    ``[Section]`` blocks as the vendor writes them: ``[Experiment Details]``,
    ``[Conditions]``, ``[Results]`` (Mean, Mode, SD, D10, D50, D90 in nm, concentration in
    particles/mL, valid tracks), ``[Percentiles]`` (D1…D99, nm) and ``[Size Data]`` (1-nm
    bins: bin centre, nm; concentration, particles/mL per nm — or the number fraction per
    nm when no detection depth is known — of the reported distribution (the FTLA
    deconvolution, as in ``[Results]``), and the raw track count). Percentiles are those of
    the reported distribution too.

    Parameters
    ----------
    result : path
        A result file.
    output : path
        The CSV file to write.
    detection_depth_um : float, optional
        Detection depth, µm (as :func:`nta.concentration.concentration`).
    calibration : dict, optional
        Bead calibration.

    Returns
    -------
    pathlib.Path
    """
    from .concentration import concentration
    from .store import read_distribution, read_summary, read_table

    s = read_summary(result)
    per = read_table(result, "per_track")
    c = concentration(s, read_table(result, "tracks"), detection_depth_um=detection_depth_um, calibration=calibration)
    dist = read_distribution(result)
    d = per["diameter_nm"].to_numpy(float)[per["included"].to_numpy(bool)] if len(per) else np.zeros(0)
    d = d[np.isfinite(d) & (d > 0)]
    conc = c["concentration_per_ml"]
    rows = [["NTA Single Analysis Summary File (nta export)"], ["[Experiment Details]"],
            ["Sample Name", s.get("sample", "")], ["Result file", str(result)], ["Status", s.get("status", "")],
            ["[Conditions]"], ["Temperature/°C", s.get("temperature_c")], ["Viscosity/mPa·s", s.get("viscosity_mpas")],
            ["Frame rate/fps", s.get("fps")], ["Pixel size/µm", s.get("pixel_size_um")], ["Frames", s.get("n_frames")],
            ["Dilution factor", c["dilution_factor"]], ["Detection depth/µm", c["detection_depth_um"]],
            ["Detection depth source", c["detection_depth_source"]],
            ["[Results]"],
            ["Mean/nm", s.get("mean_nm")], ["Mode/nm", s.get("mode_nm")], ["SD/nm", s.get("sd_nm")],
            ["D10/nm", s.get("d10_nm")], ["D50/nm", s.get("d50_nm")], ["D90/nm", s.get("d90_nm")],
            ["Concentration/particles/ml", conc], ["Concentration in window/particles/ml", c["window_concentration_per_ml"]],
            ["Particles per frame", c["particles_per_frame_tracked"]], ["Valid tracks", s.get("tracks_valid")],
            ["Window fraction", s.get("window_fraction")],
            ["[Percentiles]"], ["Percentile", "Diameter/nm"]]
    for q in (1, 5, *range(10, 100, 10), 95, 99):
        rows.append([f"D{q}", _reported_quantile(dist, d, q / 100)])
    rows.append(["[Size Data]"])
    edges = dist.get("bin_edges_nm")
    counts = dist.get("counts")
    if edges is None or counts is None:
        edges = np.arange(0, 1001, 1.0)
        counts = np.histogram(d, bins=edges)[0].astype(float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    reported = dist.get("counts_ftla")
    if reported is None or not np.nansum(reported) > 0 or len(reported) != len(counts):
        reported = counts  # no deconvolution stored: the per-track histogram is what is reported
    reported = np.nan_to_num(np.asarray(reported, float))
    total = reported.sum()
    frac = reported / total / np.diff(edges) if total else np.zeros_like(reported)
    if math.isfinite(conc):
        rows.append(["Bin centre/nm", "Concentration/particles/ml per nm", "Tracks"])
        vals = frac * conc
    else:
        rows.append(["Bin centre/nm", "Number fraction per nm", "Tracks"])
        vals = frac
    for x, v, n in zip(centres, vals, counts):
        rows.append([x, v, int(n)])
    out = Path(output)

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return "" if not math.isfinite(v) else f"{v:.6g}"
        return v

    import io

    from .store import write_text_atomic

    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    for r in rows:
        w.writerow([cell(v) for v in r])
    write_text_atomic(out, buf.getvalue(), overwrite=True, what="CSV export", newline="")
    return out
