"""Quality control: rules applied to result files, verdicts per run and per sample.

``nta qc RESULT.h5|RESULTS/ [--rules rules.toml]`` loads one result file or every result
file of a folder, groups the runs (videos) into samples (the summary's ``sample`` key, or
a ``samples.csv`` with columns ``file`` (or ``video``), ``sample``, ``group``), applies
the rules of ``nta/rules_default.toml`` (overridden by the user's file) and gives each
run and each sample PASS / WARN / FAIL with the reasons.

Statuses: ``PASS``, ``WARN``, ``FAIL`` and ``N/A`` (not assessable, no effect on the
verdict). A run's verdict is its worst rule; a sample's verdict is the worst of its own
rules and its runs' verdicts.

Sample-level size statistics pool the valid tracks of all the sample's videos (one
number-weighted distribution); replicate consistency is the coefficient of variation
(SD / mean, ddof = 1) across the videos.

The verdict and each rule's value are written into every result file as group ``/qc``
(attrs ``verdict``, ``sample_verdict``, ``rules`` (JSON list), ``rules_source``,
``evaluated``) by :func:`write_qc`, with h5py in append mode; the root ``complete`` flag
and everything else in the file are left as they are.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InputError, OutputError

__all__ = [
    "STATUSES",
    "Run",
    "load_rules",
    "find_results",
    "read_samples_csv",
    "load_runs",
    "run_metrics",
    "sample_metrics",
    "evaluate",
    "evaluate_rule",
    "write_qc",
    "read_qc",
    "format_qc",
]

STATUSES = ("PASS", "N/A", "WARN", "FAIL")
_RANK = {s: i for i, s in enumerate(STATUSES)}
_THRESHOLD_KEYS = ("fail_below", "fail_above", "warn_below", "warn_above")
_LABELS = {
    "complete": "complete (1 = yes)", "particles_per_frame": "particles/frame", "tracks_valid": "valid tracks",
    "drift_um_s": "drift µm/s", "snr": "SNR", "short_track_fraction": "short-track share",
    "frames_lost_fraction": "frames lost", "detection_depth": "detection depth µm", "videos": "videos",
    "mode_nm": "mode nm", "d50_nm": "D50 nm", "window_fraction": "window fraction",
    "large_fraction": "large-particle share", "cv_d50": "CV of D50", "cv_concentration": "CV of concentration",
}


def worst(statuses) -> str:
    """The worst of some statuses; ``N/A`` (not assessed) counts as no evidence (``PASS`` for none)."""
    return max((s for s in statuses if s != "N/A"), key=_RANK.__getitem__, default="PASS")


# ------------------------------------------------------------------------------ rules
def _default_rules() -> dict:
    text = resources.files("nta").joinpath("rules_default.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_rules(path=None) -> dict:
    """The default rules, with a user's rules file merged over them.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A TOML file with ``[run.<rule>]`` / ``[sample.<rule>]`` tables; each key given
        replaces the default's, ``enabled = false`` turns a rule off.

    Returns
    -------
    dict
        ``{"run": {name: spec}, "sample": {name: spec}, "source": str}``.

    Raises
    ------
    InputError
        The file is missing, not valid TOML, or names an unknown rule or key.
    """
    rules = _default_rules()
    rules["source"] = "nta/rules_default.toml"
    if path is None:
        return rules
    p = Path(path)
    try:
        user = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("rules file not found", fix="check the --rules path", path=p) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"rules file is not valid TOML ({e})", fix="see nta/rules_default.toml for the format", path=p) from None
    allowed = set(_THRESHOLD_KEYS) | {"description", "missing", "enabled", "above_nm"}
    for scope, table in user.items():
        if scope not in ("run", "sample") or not isinstance(table, dict):
            raise InputError(f"unknown section [{scope}] in the rules file", fix="use [run.<rule>] or [sample.<rule>]", path=p)
        for name, spec in table.items():
            if name not in rules[scope]:
                raise InputError(f"unknown rule [{scope}.{name}]", fix=f"known {scope} rules: {', '.join(rules[scope])}", path=p)
            bad = set(spec) - allowed
            if bad:
                raise InputError(f"[{scope}.{name}] has unknown keys {sorted(bad)}", fix=f"allowed keys: {sorted(allowed)}", path=p)
            for k in _THRESHOLD_KEYS:
                if k in spec and not isinstance(spec[k], (int, float)):
                    raise InputError(f"[{scope}.{name}] {k} must be a number", fix="write e.g. fail_below = 20", path=p)
            if spec.get("missing", "warn") not in ("warn", "fail", "n/a", "pass"):
                raise InputError(f"[{scope}.{name}] missing must be warn, fail, n/a or pass", path=p)
            rules[scope][name] = {**rules[scope][name], **spec}
    rules["source"] = f"nta/rules_default.toml + {p}"
    return rules


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        a = abs(v)
        if a != 0 and (a >= 1e5 or a < 1e-3):
            return f"{v:.3g}"
        return f"{v:.3g}" if a < 1 else f"{v:.4g}"
    return str(v)


def evaluate_rule(scope: str, name: str, spec: dict, value, why_missing: str = "") -> dict:
    """Apply one rule to a value.

    Parameters
    ----------
    scope, name : str
        ``"run"`` or ``"sample"``, and the rule's name.
    spec : dict
        The rule: thresholds (``fail_below``, ``fail_above``, ``warn_below``,
        ``warn_above``), ``missing``, ``description``.
    value : float or None
        The measured value; None or NaN is "cannot be measured".
    why_missing : str
        Why the value is missing (for the reason).

    Returns
    -------
    dict
        ``rule`` ("scope.name"), ``value``, ``status``, ``reason``, the thresholds.
    """
    out = {"rule": f"{scope}.{name}", "value": value, "description": spec.get("description", "")}
    out.update({k: spec[k] for k in _THRESHOLD_KEYS if k in spec})
    label = _LABELS.get(name, name.replace("_", " "))
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        st = spec.get("missing", "warn").upper()
        out["status"] = st
        out["reason"] = f"{label} cannot be assessed" + (f": {why_missing}" if why_missing else "")
        return out
    v = float(value)
    checks = [
        ("FAIL", "fail_below", v < spec.get("fail_below", -math.inf), "<"),
        ("FAIL", "fail_above", v > spec.get("fail_above", math.inf), ">"),
        ("WARN", "warn_below", v < spec.get("warn_below", -math.inf), "<"),
        ("WARN", "warn_above", v > spec.get("warn_above", math.inf), ">"),
    ]
    for st, key, hit, op in checks:
        if hit:
            out["status"] = st
            out["reason"] = f"{label} {_fmt(v)} {op} {_fmt(float(spec[key]))} ({key})"
            return out
    out["status"] = "PASS"
    lim = [f"≥ {_fmt(float(spec[k]))}" for k in ("warn_below", "fail_below") if k in spec][:1] + \
          [f"≤ {_fmt(float(spec[k]))}" for k in ("warn_above", "fail_above") if k in spec][:1]
    out["reason"] = f"{label} {_fmt(v)}" + (f" ({', '.join(lim)})" if lim else "")
    return out


# ------------------------------------------------------------------------------ runs
@dataclass
class Run:
    """One result file (one video) with what QC and the report need.

    Attributes
    ----------
    path : pathlib.Path
    sample, group : str
    summary : dict
        :func:`nta.store.read_summary`.
    conc : dict
        :func:`nta.concentration.concentration`.
    diameters_nm : ndarray
        Diameters of the valid (included) tracks, nm.
    metrics : dict
        :func:`run_metrics`, with ``_why`` explaining missing values.
    """

    path: Path
    sample: str
    group: str
    summary: dict
    conc: dict
    diameters_nm: np.ndarray
    distribution: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    qc: list = field(default_factory=list)
    verdict: str = "PASS"

    @property
    def name(self) -> str:
        return self.path.stem


def _is_result(p: Path) -> bool:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            return f.attrs.get("format") == "nta-result"
    except OSError:
        return False


def find_results(path) -> list[Path]:
    """Result files named by ``path``: the file itself, or every nta result in a folder.

    Files of a folder that are not nta results (``batch.h5``, CSVs, partial files, ...)
    are ignored.

    Raises
    ------
    InputError
        The path does not exist, or the folder holds no result file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such result file or folder", fix="give a result .h5 or a folder of them", path=p)
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".h5", ".hdf5") and _is_result(f))
    if not files:
        raise InputError("folder holds no nta result file (.h5 written by nta process / nta batch)",
                         fix="give the folder `nta batch -o` wrote, or a result file", path=p)
    return files


def read_samples_csv(path) -> dict:
    """Map of a ``samples.csv``: key (file name, stem or video name) → (sample, group).

    Columns: ``file`` or ``video`` (the result file or the video it came from, with or
    without extension), ``sample``, and optionally ``group``.

    Raises
    ------
    InputError
        The file is missing or lacks the needed columns.
    """
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            cols = [c.strip().lower() for c in (rows[0].keys() if rows else [])]
    except FileNotFoundError:
        raise InputError("samples file not found", fix="give a CSV with columns file,sample,group", path=p) from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"samples file cannot be read ({e})", fix="save it as UTF-8 CSV with columns file,sample,group", path=p) from None
    key = "file" if "file" in cols else "video" if "video" in cols else None
    if key is None or "sample" not in cols:
        raise InputError(f"samples file needs columns file (or video) and sample; it has {cols}",
                         fix="add a header row: file,sample,group", path=p)
    out = {}
    for r in rows:
        r = {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
        if not r.get(key):
            continue
        val = (r.get("sample") or Path(r[key]).stem, r.get("group", "") or "")
        out[r[key]] = val
        out[Path(r[key]).name] = val
        out[Path(r[key]).stem] = val
    return out


def _lookup(mapping, path: Path, summary: dict):
    keys = [path.name, path.stem]
    for inp in summary.get("inputs") or []:
        if isinstance(inp, dict) and inp.get("path"):
            keys += [Path(inp["path"]).name, Path(inp["path"]).stem]
    for k in keys:
        if k in mapping:
            return mapping[k]
    return None


def load_runs(path, *, samples_csv=None, detection_depth_um=None, calibration=None, protein_ug_ml=None) -> list[Run]:
    """Load the runs of a result file or folder, with their samples, groups and concentration.

    Parameters
    ----------
    path : path
        A result file or a folder of result files.
    samples_csv : path, optional
        Mapping file; default ``<folder>/samples.csv`` when it exists.
    detection_depth_um : float, optional
        Effective light-sheet depth, µm (overrides the recorded value).
    calibration : dict, optional
        From :func:`nta.concentration.read_calibration_file`.
    protein_ug_ml : float, optional
        Protein concentration, µg/mL (overrides the recorded value).
    """
    from .concentration import concentration
    from .store import read_summary, read_table

    files = find_results(path)
    p = Path(path)
    if samples_csv is None and p.is_dir() and (p / "samples.csv").is_file():
        samples_csv = p / "samples.csv"
    mapping = read_samples_csv(samples_csv) if samples_csv else {}
    runs = []
    for f in files:
        s = read_summary(f)
        m = _lookup(mapping, f, s) if mapping else None
        sample, group = m if m else (str(s.get("sample") or f.stem), "")
        try:
            tracks = read_table(f, "tracks")
            per = read_table(f, "per_track")
        except (OSError, KeyError) as e:
            raise OutputError(f"result file is damaged ({e})", fix="process the video again", path=f) from None
        c = concentration(s, tracks, detection_depth_um=detection_depth_um, calibration=calibration, protein_ug_ml=protein_ug_ml)
        d = per["diameter_nm"].to_numpy(float)[per["included"].to_numpy(bool)] if len(per) and "included" in per else np.zeros(0)
        from .store import read_distribution

        r = Run(path=f, sample=sample, group=group, summary=s, conc=c, diameters_nm=d[np.isfinite(d) & (d > 0)],
                distribution=read_distribution(f))
        r.metrics = run_metrics(f, s, c, per)
        runs.append(r)
    return runs


def run_metrics(path, summary: dict, conc: dict, per_track) -> dict:
    """The values the run rules look at.

    Returns
    -------
    dict
        ``complete`` (1/0), ``particles_per_frame`` (tracked, 1/frame), ``tracks_valid``,
        ``drift_um_s`` (µm/s, from the fitted drift velocity × pixel size × frame rate),
        ``snr`` (median feature ``signal`` / ``noise_sd_counts``), ``short_track_fraction``,
        ``frames_lost_fraction`` ((expected − analysed + blank frames) / expected, expected
        = the container's frame count or ``max_frames``), ``detection_depth`` (µm), and
        ``_why`` (reasons for values that could not be measured).
    """
    import h5py


    why = {}
    m = {"complete": 1.0 if summary.get("complete") else 0.0}
    m["particles_per_frame"] = conc.get("particles_per_frame_tracked", float("nan"))
    m["tracks_valid"] = float(summary.get("tracks_valid") or 0)
    v = summary.get("drift_px_per_frame") or [float("nan"), float("nan")]
    px, fps = summary.get("pixel_size_um"), summary.get("fps")
    if all(isinstance(x, (int, float)) for x in v) and px and fps:
        m["drift_um_s"] = float(math.hypot(v[0], v[1]) * px * fps)
    else:
        m["drift_um_s"], why["drift_um_s"] = float("nan"), "no drift estimate in the file"
    params, info = {}, {}
    try:
        with h5py.File(path, "r") as f:
            pa = f["provenance"].attrs if "provenance" in f else {}
            params = json.loads(pa["parameters"]) if "parameters" in pa else {}
            info = json.loads(pa["input_info"]) if "input_info" in pa else {}
            sig = f["features/signal"][()] if "features" in f and "signal" in f["features"] else np.zeros(0)
            fr = f["features/frame"][()] if "features" in f and "frame" in f["features"] else np.zeros(0, np.int64)
    except (OSError, ValueError, KeyError) as e:
        raise OutputError(f"cannot read the provenance or features ({e})", fix="process the video again", path=path) from None
    noise = params.get("noise_sd_counts")
    if noise and sig.size:
        m["snr"] = float(np.median(sig) / noise)
    else:
        m["snr"], why["snr"] = float("nan"), "no features or no noise estimate"
    if len(per_track) and "n_points" in per_track:
        multi = per_track["n_points"].to_numpy() >= 2
        m["short_track_fraction"] = float(1.0 - per_track["included"].to_numpy(bool)[multi].mean()) if multi.any() else float("nan")
        if not multi.any():
            why["short_track_fraction"] = "no track of two or more detections"
    else:
        m["short_track_fraction"], why["short_track_fraction"] = float("nan"), "no tracks"
    n = int(summary.get("n_frames") or 0)
    expected = info.get("n_frames") or n
    if params.get("max_frames"):
        expected = min(int(expected), int(params["max_frames"]))
    if expected:
        blank = 0
        if fr.size and summary.get("particles_per_frame", 0) >= 5:  # at < 5 per frame, empty frames happen by chance
            blank = n - np.unique(fr).size
        m["frames_lost_fraction"] = float(max(0, int(expected) - n + blank) / int(expected))
    else:
        m["frames_lost_fraction"], why["frames_lost_fraction"] = float("nan"), "frame count unknown"
    dd = conc.get("detection_depth_um", float("nan"))
    m["detection_depth"] = dd
    if not (isinstance(dd, float) and math.isfinite(dd)):
        why["detection_depth"] = conc.get("concentration_note") or "no detection depth"
    m["_why"] = why
    return m


def _cv(x) -> float:
    x = np.asarray([v for v in x if v is not None and math.isfinite(v)], float)
    if x.size < 2 or x.mean() == 0:
        return float("nan")
    return float(x.std(ddof=1) / abs(x.mean()))


def _reported_large_fraction(run: "Run", above_nm: float) -> float:
    """Share of the run's reported number distribution above ``above_nm`` (nm).

    Uses the reported (deconvolved) 1-nm histogram ``counts_ftla`` when the file has one,
    else the file's ``counts`` histogram (nta's raw per-track one, or an instrument's own),
    else the per-track diameters.
    """
    dist = run.distribution or {}
    edges = dist.get("bin_edges_nm")
    for key in ("counts_ftla", "counts"):
        c = dist.get(key)
        if edges is not None and c is not None and np.nansum(c) > 0:
            c = np.nan_to_num(np.asarray(c, float))
            return float(c[np.asarray(edges[:-1]) >= above_nm].sum() / c.sum())
    d = run.diameters_nm
    return float(np.mean(d > above_nm)) if d.size else float("nan")


def sample_metrics(runs: list[Run], rules: dict | None = None) -> dict:
    """The values the sample rules look at: the videos' reported values, averaged.

    As the instruments report a sample, each statistic is the mean over the sample's
    videos of that video's reported value (nta's default distribution: the FTLA
    deconvolution; an imported file's own numbers); valid tracks are summed.

    Returns
    -------
    dict
        ``videos``, ``tracks_valid``, ``mode_nm``, ``d50_nm``, ``mean_nm``, ``d10_nm``,
        ``d90_nm``, ``sd_nm``, ``window_fraction``, ``large_fraction`` (share of the number
        distribution above ``above_nm``, nm), ``cv_d50``, ``cv_concentration``,
        ``concentration_per_ml`` (mean over videos), ``window_concentration_per_ml``,
        ``particles_per_ug``, ``window_nm``, ``_why``.
    """
    above = float(((rules or {}).get("sample", {}).get("large_fraction", {}) or {}).get("above_nm", 200.0))
    win = runs[0].summary.get("window_nm") or [40.0, 150.0] if runs else [40.0, 150.0]
    nan = float("nan")
    why = {}
    n_valid = sum(int(r.summary.get("tracks_valid") or 0) for r in runs)
    m = {"videos": float(len(runs)), "tracks_valid": float(n_valid), "window_nm": list(win)}

    def mean_of(vals):
        v = [float(x) for x in vals if isinstance(x, (int, float)) and math.isfinite(float(x))]
        return float(np.mean(v)) if v else nan

    for k in ("mode_nm", "d50_nm", "mean_nm", "d10_nm", "d90_nm", "sd_nm", "window_fraction"):
        m[k] = mean_of([r.summary.get(k) for r in runs if (r.summary.get("tracks_valid") or 0) > 0])
        if not math.isfinite(m[k]):
            why[k] = "no valid track in any video of the sample"
    m["large_fraction"] = mean_of([_reported_large_fraction(r, above) for r in runs if (r.summary.get("tracks_valid") or 0) > 0])
    if not math.isfinite(m["large_fraction"]):
        why["large_fraction"] = "no valid track in any video of the sample"
    m["cv_d50"] = _cv([r.summary.get("d50_nm") for r in runs])
    concs = [r.conc.get("concentration_per_ml", nan) for r in runs]
    m["cv_concentration"] = _cv(concs)
    if len(runs) < 2:
        why["cv_d50"] = why["cv_concentration"] = "one video only"
    elif not math.isfinite(m["cv_concentration"]):
        why["cv_concentration"] = "no concentration (no detection depth)"
    fin = [c for c in concs if math.isfinite(c)]
    m["concentration_per_ml"] = float(np.mean(fin)) if fin else nan
    m["window_concentration_per_ml"] = m["concentration_per_ml"] * m["window_fraction"] if fin else nan
    prot = [r.conc.get("protein_ug_ml", nan) for r in runs]
    prot = [p for p in prot if isinstance(p, float) and math.isfinite(p)]
    m["protein_ug_ml"] = float(np.mean(prot)) if prot else nan
    m["particles_per_ug"] = m["concentration_per_ml"] / m["protein_ug_ml"] if prot and fin else nan
    m["_why"] = why
    return m


def evaluate(runs: list[Run], rules: dict) -> dict:
    """Apply the rules to runs and to the samples they form.

    Sets ``run.qc`` and ``run.verdict`` on each run.

    Returns
    -------
    dict
        ``verdict`` (overall), ``samples`` ({sample: {"verdict", "group", "runs", "metrics",
        "qc"}}), ``rules_source``.
    """
    for r in runs:
        res = []
        for name, spec in rules["run"].items():
            if not spec.get("enabled", True):
                continue
            res.append(evaluate_rule("run", name, spec, r.metrics.get(name), r.metrics["_why"].get(name, "")))
        r.qc = res
        r.verdict = worst(x["status"] for x in res)
    samples = {}
    for name in dict.fromkeys(r.sample for r in runs):
        members = [r for r in runs if r.sample == name]
        sm = sample_metrics(members, rules)
        res = []
        for rname, spec in rules["sample"].items():
            if not spec.get("enabled", True):
                continue
            res.append(evaluate_rule("sample", rname, spec, sm.get(rname), sm["_why"].get(rname, "")))
        bad_runs = [r for r in members if r.verdict in ("WARN", "FAIL")]
        for r in bad_runs:
            res.append({"rule": f"run:{r.name}", "value": None, "status": r.verdict,
                        "reason": f"video {r.name}: " + "; ".join(x["reason"] for x in r.qc if x["status"] == r.verdict)})
        groups = sorted({r.group for r in members if r.group})
        samples[name] = {"verdict": worst(x["status"] for x in res), "group": ", ".join(groups),
                         "runs": [r.name for r in members], "metrics": sm, "qc": res}
    return {"verdict": worst(s["verdict"] for s in samples.values()), "samples": samples, "rules_source": rules.get("source", "")}


def write_qc(run: Run, sample_result: dict, rules_source: str = "") -> None:
    """Write a run's QC into its result file as group ``/qc`` (replacing an earlier one).

    Attributes: ``verdict`` (the run's), ``sample``, ``sample_verdict``, ``rules`` (JSON
    list: run rules then the sample's rules, each with value, status, reason and
    thresholds), ``rules_source``, ``evaluated`` (ISO 8601, UTC). The file's ``complete``
    flag is not touched.

    Raises
    ------
    OutputError
        The file cannot be opened for writing (read-only, or being written by nta now).
    """
    import h5py

    from .store import dumps

    p = Path(run.path)
    if p.with_name(p.name + ".lock").exists():
        raise OutputError("the file is being written by another nta process", fix="run nta qc when it has finished", path=p)
    try:
        with h5py.File(p, "a") as f:
            if "qc" in f:
                del f["qc"]
            g = f.create_group("qc")
            g.attrs["verdict"] = run.verdict
            g.attrs["sample"] = run.sample
            g.attrs["sample_verdict"] = sample_result["verdict"]
            g.attrs["rules"] = dumps(run.qc + sample_result["qc"])
            g.attrs["run_metrics"] = dumps({k: v for k, v in run.metrics.items() if not k.startswith("_")})
            g.attrs["sample_metrics"] = dumps({k: v for k, v in sample_result["metrics"].items() if not k.startswith("_")})
            g.attrs["concentration"] = dumps(run.conc)
            g.attrs["rules_source"] = rules_source
            g.attrs["evaluated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    except OSError as e:
        raise OutputError(f"cannot write the QC into the file ({e})", fix="check the file is writable and not open elsewhere", path=p) from None


def read_qc(path) -> dict:
    """The ``/qc`` group of a result file (empty dict when QC was not run)."""
    import h5py

    with h5py.File(path, "r") as f:
        if "qc" not in f:
            return {}
        out = {}
        for k, v in f["qc"].attrs.items():
            v = v.decode() if isinstance(v, bytes) else v
            if k in ("rules", "run_metrics", "sample_metrics", "concentration"):
                v = json.loads(v)
            out[k] = v
        return out


def format_qc(runs: list[Run], result: dict) -> str:
    """Text of the QC result: per sample its verdict, reasons, and per run its verdict."""
    lines = []
    for name, s in result["samples"].items():
        grp = f"  [group {s['group']}]" if s["group"] else ""
        lines.append(f"sample {name}{grp}: {s['verdict']}")
        for x in s["qc"]:
            if x["rule"].startswith("run:"):
                continue
            lines.append(f"  {x['status']:<4}  {x['rule']:<26} {x['reason']}")
        for r in (r for r in runs if r.sample == name):
            lines.append(f"  run {r.name}: {r.verdict}")
            for x in r.qc:
                lines.append(f"    {x['status']:<4}  {x['rule']:<26} {x['reason']}")
    lines.append(f"overall: {result['verdict']}")
    return "\n".join(lines)
