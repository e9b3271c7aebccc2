"""Mislinks against the simulator's truth: identity changes per step, per population.

Every located feature of a track is given the identity of the true particle behind it:
the nearest visible true particle in that frame within ``max_dist_px`` (3 px), its true
position taken at the middle of the exposure (``simulate_positions`` gives the start of
the exposure; the spot is the mean over the open shutter, so the start position is moved
half an exposure toward the next frame's start). A link (consecutive rows of a track)
whose two ends carry different identities is an *identity change*; a track holding one is
*contaminated*.

Reported per run: identity changes per labelled link, contaminated fraction of the tracks
that enter the distribution (``included``), and per true population (nearest in ln d):
particles in the truth (visible in ≥ ``truth_min_frames`` frames), tracks whose majority
identity belongs to it, how many are included, their mean number of rows, their
contaminated fraction, and the mean D̂ / D_true of its included tracks.

Run::

    python benchmarks/mislinks.py VIDEO.avi [--search-range PX] [--out RESULT.h5]

(the video's ``.truth.json`` must be beside it, as ``nta simulate`` writes it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def truth_positions(truth_json) -> tuple[dict, dict]:
    """The simulator's true positions behind a video, from its ``.truth.json``.

    Returns
    -------
    positions : dict
        :func:`nta.simulate.simulate_positions` output (px, frames, nm, µm²/s).
    truth : dict
        The truth file's content.
    """
    from nta import simulate as S

    t = json.loads(Path(truth_json).read_text())
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in t.items() if k in S._DEFAULTS}
    return S.simulate_positions(**kw), t


def label_rows(tracks: pd.DataFrame, P: dict, *, max_dist_px: float = 3.0) -> np.ndarray:
    """True identity of each track row (``-1`` if no visible true particle within ``max_dist_px``).

    Parameters
    ----------
    tracks : pandas.DataFrame
        Columns ``frame``, ``x_raw``, ``y_raw`` (px, as located, drift not removed).
    P : dict
        :func:`nta.simulate.simulate_positions` output.
    max_dist_px : float
        Largest distance from the true mid-exposure position, px.
    """
    df = pd.DataFrame({k: np.asarray(P[k]) for k in ("frame", "particle", "x_px", "y_px", "visible")})
    df = df.sort_values(["particle", "frame"], kind="stable")
    g = df.groupby("particle")
    nx, ny = g["x_px"].shift(-1), g["y_px"].shift(-1)
    same = g["frame"].shift(-1) == df["frame"] + 1
    exp_ms = P["params"].get("exposure_ms") or 1e3 / P["params"]["fps"]
    w = 0.5 * exp_ms * 1e-3 * P["params"]["fps"]  # half the open shutter, in frames
    df["x_px"] = np.where(same, df["x_px"] + w * (nx - df["x_px"]), df["x_px"])
    df["y_px"] = np.where(same, df["y_px"] + w * (ny - df["y_px"]), df["y_px"])
    df = df[df["visible"].to_numpy(bool)]
    fr, ids = df["frame"].to_numpy(), df["particle"].to_numpy()
    xy = df[["x_px", "y_px"]].to_numpy()
    lab = np.full(len(tracks), -1, np.int64)
    tf = tracks["frame"].to_numpy()
    txy = tracks[["x_raw", "y_raw"]].to_numpy()
    order = np.argsort(fr, kind="stable")
    keys, starts = np.unique(fr[order], return_index=True)
    ends = np.r_[starts[1:], order.size]
    bounds = {int(k): (a, b) for k, a, b in zip(keys, starts, ends)}
    torder = np.argsort(tf, kind="stable")
    tkeys, tstarts = np.unique(tf[torder], return_index=True)
    tends = np.r_[tstarts[1:], torder.size]
    for f, a0, b0 in zip(tkeys, tstarts, tends):
        if int(f) not in bounds:
            continue
        a, b = bounds[int(f)]
        sel = order[a:b]
        rows = torder[a0:b0]
        d, j = cKDTree(xy[sel]).query(txy[rows])
        ok = d < max_dist_px
        lab[rows[ok]] = ids[sel[j[ok]]]
    return lab


def mislink_stats(tracks: pd.DataFrame, per_track: pd.DataFrame, P: dict, truth: dict, *, max_dist_px: float = 3.0) -> dict:
    """Identity changes per link and per-population track statistics (see the module docstring)."""
    tr = tracks.sort_values(["particle", "frame"], kind="stable").reset_index(drop=True)
    lab = label_rows(tr, P, max_dist_px=max_dist_px)
    pid = tr["particle"].to_numpy()
    link = pid[1:] == pid[:-1]
    both = link & (lab[1:] >= 0) & (lab[:-1] >= 0)
    change = both & (lab[1:] != lab[:-1])
    tr["truth"] = lab
    chg = pd.Series(np.r_[False, change], index=tr.index).groupby(tr["particle"]).sum()
    lab_ok = tr[tr["truth"] >= 0]
    maj = lab_ok.groupby("particle")["truth"].agg(lambda s: s.value_counts().index[0])
    n_rows = tr.groupby("particle").size()
    per = per_track.set_index("particle")
    inc = per["included"].astype(bool)
    # truth per identity
    tid = pd.Series(np.asarray(P["diameter_nm"]), index=np.asarray(P["particle"])).groupby(level=0).first()
    tD = pd.Series(np.asarray(P["D_um2_s"]), index=np.asarray(P["particle"])).groupby(level=0).first()
    sizes = np.asarray(truth["sizes_nm"], float)
    pop_of = lambda d: np.argmin(np.abs(np.log(np.asarray(d, float))[:, None] - np.log(sizes)[None, :]), axis=1)
    nvis = np.asarray(truth["particle_frames_visible"], float)
    dtr = np.asarray(truth["particle_diameters_nm"], float)[nvis >= truth.get("truth_min_frames", 5)]
    tpop = pop_of(dtr)
    out = dict(links=int(link.sum()), labelled_links=int(both.sum()), identity_changes=int(change.sum()),
               changes_per_link=float(change.sum() / max(1, both.sum())),
               unlabelled_rows=float(np.mean(lab < 0)) if lab.size else float("nan"),
               tracks=int(per.shape[0]), included=int(inc.sum()),
               contaminated_included=float((chg.reindex(per.index[inc]).fillna(0) > 0).mean()) if inc.any() else float("nan"),
               populations=[])
    ptab = pd.DataFrame({"maj": maj}).join(n_rows.rename("rows")).join(chg.rename("changes"))
    ptab = ptab.join(per[["included", "D_um2_s"]], how="inner")
    ptab["pop"] = pop_of(tid.reindex(ptab["maj"]).to_numpy())
    ptab["r"] = ptab["D_um2_s"].to_numpy() / tD.reindex(ptab["maj"]).to_numpy()
    for i, s in enumerate(sizes):
        q = ptab[ptab["pop"] == i]
        qi = q[q["included"].astype(bool)]
        out["populations"].append(dict(
            size_nm=float(s), truth_particles=int(np.sum(tpop == i)), tracks=int(len(q)), included=int(len(qi)),
            mean_rows=float(q["rows"].mean()) if len(q) else float("nan"),
            mean_rows_included=float(qi["rows"].mean()) if len(qi) else float("nan"),
            distinct_particles_included=int(qi["maj"].nunique()),
            contaminated_included=float((qi["changes"] > 0).mean()) if len(qi) else float("nan"),
            D_over_true_median=float(np.nanmedian(qi["r"])) if len(qi) else float("nan")))
    return out


def run(video, *, out=None, **process_kwargs) -> dict:
    """Process a simulated video with :func:`nta.pipeline.process` and measure its mislinks."""
    from nta.pipeline import process
    from nta.store import read_table

    video = Path(video)
    P, t = truth_positions(video.with_name(video.stem + ".truth.json"))
    out = Path(out) if out else video.with_suffix(".mislinks.h5")
    s = process(video, out, pixel_size_um=t["pixel_size_um"], temperature_c=t["temperature_c"],
                exposure_ms=t["exposure_ms"], overwrite=True, n_boot=0, **process_kwargs)
    res = mislink_stats(read_table(out, "tracks"), read_table(out, "per_track"), P, t)
    res.update(search_range_px=s["search_range_px"], d50_nm=s["d50_nm"], peaks_nm=s["peaks_nm"],
               peak_fractions=s["peak_fractions"], tracks_valid=s["tracks_valid"])
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--search-range", type=float, default=None, help="px; default nta's")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    r = run(a.video, out=a.out, search_range_px=a.search_range)
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
