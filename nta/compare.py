"""``nta compare A.h5 B.h5``: two results side by side (e.g. the instrument's and nta's).

Both files are ordinary nta result files (:mod:`nta.store`), whether written by
``nta process`` or by ``nta import``. The summary table lists each statistic for A and B,
the difference B − A and the relative difference; the plot overlays the two size
distributions, each normalised to unit area (number fraction per nm), on common bins.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import OutputError

__all__ = ["COMPARE_KEYS", "compare_results", "format_comparison", "plot_comparison"]

#: Summary keys compared, in order (units as the names say).
COMPARE_KEYS = ("mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm", "window_fraction", "tracks_valid",
                "concentration_per_ml")


def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return x


def _label(s: dict, path) -> str:
    return str(s.get("source") or "nta") + f" — {Path(path).name}"


def compare_results(a, b) -> tuple[pd.DataFrame, dict]:
    """Summary differences of two result files.

    Parameters
    ----------
    a, b : str or os.PathLike
        Result files (complete or not; an incomplete one is named in ``info``).

    Returns
    -------
    table : pandas.DataFrame
        Index :data:`COMPARE_KEYS`; columns ``A``, ``B``, ``B_minus_A`` and
        ``relative_pct`` (100 (B − A)/A). NaN where a file lacks the value.
    info : dict
        ``A`` and ``B``: labels (source and file name), ``complete`` flags, ``window_nm``,
        ``A_distribution`` / ``B_distribution``: how each file's distribution was made.

    Raises
    ------
    OutputError
        A file is missing or not an nta result file.
    """
    from .store import read_summary

    sa, sb = read_summary(a), read_summary(b)
    rows = {}
    for k in COMPARE_KEYS:
        x, y = _num(sa.get(k)), _num(sb.get(k))
        rel = 100.0 * (y - x) / x if (math.isfinite(x) and x != 0 and math.isfinite(y)) else float("nan")
        rows[k] = {"A": x, "B": y, "B_minus_A": y - x, "relative_pct": rel}
    table = pd.DataFrame.from_dict(rows, orient="index")[["A", "B", "B_minus_A", "relative_pct"]]
    info = {"A": _label(sa, a), "B": _label(sb, b), "A_complete": sa.get("complete"), "B_complete": sb.get("complete"),
            "window_nm": sa.get("window_nm") or sb.get("window_nm"),
            "A_distribution": sa.get("distribution"), "B_distribution": sb.get("distribution")}
    return table, info


def format_comparison(table: pd.DataFrame, info: dict) -> str:
    """The comparison as a text table."""
    lines = [f"A  {info['A']}" + ("" if info.get("A_complete") else "  [INCOMPLETE]"),
             f"B  {info['B']}" + ("" if info.get("B_complete") else "  [INCOMPLETE]"),
             f"{'':22s}{'A':>14s}{'B':>14s}{'B − A':>14s}{'(B − A)/A':>11s}"]
    for k, r in table.iterrows():
        def f(v):
            if not math.isfinite(v):
                return "n/a"
            if k == "tracks_valid":  # a count
                return f"{v:.0f}"
            return f"{v:.4g}" if abs(v) >= 1e5 or k == "window_fraction" else f"{v:.1f}"
        rel = f"{r['relative_pct']:+.1f} %" if math.isfinite(r["relative_pct"]) else "n/a"
        lines.append(f"{k:22s}{f(r['A']):>14s}{f(r['B']):>14s}{f(r['B_minus_A']):>14s}{rel:>11s}")
    da, db = info.get("A_distribution"), info.get("B_distribution")
    if da and db and da != db:  # e.g. FTLA with and without the track-length model
        lines += ["note: the two distributions were made differently:", f"  A  {da}", f"  B  {db}"]
    return "\n".join(lines)


def _density_on(edges_new, edges, counts):
    """Re-bin a histogram onto new edges (mass split by overlap) and normalise to unit area."""
    edges = np.asarray(edges, float)
    counts = np.nan_to_num(np.asarray(counts, float), nan=0.0)
    if counts.size == 0 or counts.sum() <= 0:
        return np.zeros(len(edges_new) - 1)
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    c_new = np.interp(edges_new, edges, cum)
    mass = np.diff(c_new)
    return mass / (mass.sum() * np.diff(edges_new)) if mass.sum() > 0 else mass


def plot_comparison(a, b, png, *, bin_nm: float | None = None) -> Path:
    """Overlay the two size distributions and write a PNG.

    Parameters
    ----------
    a, b : str or os.PathLike
        Result files.
    png : str or os.PathLike
        Output image; never overwritten silently (an existing file raises).
    bin_nm : float, optional
        Common bin width, nm (default: about 60 bins up to the larger D90 × 1.8, at least 1 nm).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputError
        The image exists, or cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .store import read_distribution, read_summary

    png = Path(png)
    if png.exists():
        raise OutputError("image exists already and was left untouched", path=png, fix="choose another --png")
    sa, sb = read_summary(a), read_summary(b)
    da, db = read_distribution(a), read_distribution(b)
    top = max(_num(sa.get("d90_nm")), _num(sb.get("d90_nm")), 50.0)
    top = 1.8 * top if math.isfinite(top) else 500.0
    step = bin_nm or max(1.0, round(top / 60.0))
    edges = np.arange(0.0, top + step, step)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for d, s, path, colour in ((da, sa, a, "tab:blue"), (db, sb, b, "tab:orange")):
        if "bin_edges_nm" in d and "counts" in d:
            y = _density_on(edges, d["bin_edges_nm"], d["counts"])
            ax.stairs(y, edges, color=colour, lw=1.8, label=f"{_label(s, path)} (D50 {_num(s.get('d50_nm')):.1f} nm)")
            for q in ("d50_nm",):
                v = _num(s.get(q))
                if math.isfinite(v):
                    ax.axvline(v, color=colour, ls="--", lw=0.8)
    w = sa.get("window_nm") or sb.get("window_nm")
    if w:
        ax.axvspan(w[0], w[1], color="0.9", zorder=0, label=f"window {w[0]:g}–{w[1]:g} nm")
    ax.set_xlabel("hydrodynamic diameter (nm)")
    ax.set_ylabel("number fraction per nm")
    ax.set_xlim(0, edges[-1])
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("size distributions (each normalised to unit area)", fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(png)
    except OSError as e:
        raise OutputError(f"cannot write the image: {e}", path=png, fix="choose a writable --png path")
    finally:
        plt.close(fig)
    return png
