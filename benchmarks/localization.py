"""Localization accuracy of the fast locator's refinements against the simulator's truth.

Frames are rendered with the simulator's own functions (same random streams as
``nta.simulate.simulate_video`` with the same seed, so the same frames), and for every
particle the true position *the camera saw* is kept: the spot is the PSF drawn at the
exposure sub-steps, so the reported truth is the intensity-weighted mean of the sub-step
positions (``simulate_positions`` gives the position at the start of the exposure, which
the spot does not show). Located features are matched to isolated true particles per
frame (mutual nearest neighbours within 1.5 px, no other drawn particle within 10 px).

Reported per size and locator variant:

* ``lock``: pixel-locking slope k from ``err = −k · δ`` with δ = true − nearest pixel
  centre and err = located − true (pooled x, y); k > 0 pulls positions toward pixel
  centres (k = 1: fully locked).
* ``centre frac``: fraction of located positions within ±0.25 px of a pixel centre
  (0.5 if the sub-pixel histogram is flat); ``hist``: the 10-bin histogram of (x mod 1)
  of located x, as densities (1 = flat), bins from −0.5 to 0.5 around a pixel centre.
* ``rms``: RMS of err (px, per axis); ``bias``: mean err (px).
* ``step slope``: regression slope of located on true frame-to-frame steps (1 = no
  shrinkage of the motion).
* ``D̂ loc/SE``, ``D̂ true/SE``: mean over matched tracks (≥ 10 points) of the CVE D̂ from
  located positions and from the true (exposure-mean) positions of the same frames,
  relative to the Stokes–Einstein D; ``loc/true``: their ratio of means.

Run: ``python -m benchmarks.localization`` (writes benchmarks/results/localization.md).
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from nta.diffusion import diffusion_coefficients
from nta.locate import background_model, estimate_minmass, estimate_spot_diameter, locate_frames, subtract_background
from nta import simulate as S

CONDITIONS = dict(fps=25.0, pixel_size_um=0.166, exposure_ms=30.0, temperature_c=22.0, width=640, height=480,
                  particles_per_frame=40.0, size_cv=0.0, seed=11)
SIZES = (60.0, 100.0, 200.0)
N_FRAMES = 300

VARIANTS = [
    ("trackpy (default d)", dict(refine="trackpy"), 0),
    ("trackpy, d+2", dict(refine="trackpy"), 2),
    ("float", dict(refine="float"), 0),
    ("float, d+2", dict(refine="float"), 2),
    ("gauss", dict(refine="gauss"), 0),
    ("gauss, d+2", dict(refine="gauss"), 2),
]


FINDINGS = """## Findings (run of 2026-11-29, 300 frames per size)

- **No localization bias that shrinks the motion.** For every size and variant the CVE D̂ from
  located positions equals the D̂ from the true (exposure-mean) positions of the same frames
  within ±2 % (D̂ loc/true 0.99–1.02), and the step slope (located on true steps) is 0.99–1.02.
  Pixel locking is negligible: k ≤ 0.02 for 60 nm, |k| ≤ 0.005 for 100 and 200 nm. trackpy's
  refinement shows a slight excess of positions near pixel centres only for 60 nm (centre
  fraction 0.546 vs 0.5 for a flat histogram), which the float band-pass does not remove
  (so the 8-bit rescale is not its cause) and the Gaussian-mask refinement does (0.501); it
  does not change D̂.
- **The low D̂ of dim 60 nm tracks is in the truth too.** Over the detected frames, D̂ from the
  *true* positions is already 0.83–0.88 × Stokes–Einstein (100 nm: 0.96–0.98; 200 nm:
  0.98–1.01), while over *all* frames of the same particles (a one-off check on the same 60 nm render) the CVE gives 0.99 (exposure-mean)
  and 1.01 (start of exposure): a dim particle is detected preferentially in frames where it
  moved little during the 30 ms exposure (a compact, brighter spot), so detection selects
  small motions. That selection, not the locator, is what shrinks D̂ for 60 nm; a better
  centroid cannot fix it (it needs e.g. a detection model or a lower threshold).
  (2026-11-30: the CVE now also takes its step covariance across frames the locator missed,
  which puts the missed, larger motions back and removes most of this selection; see
  `nta.kernels.diffusion`: on 1000 rendered 60 nm frames, true positions of the detected
  frames, D̂ 0.987 × Stokes–Einstein against 0.868 before; 0.980 over all frames of the same
  tracks.)
- **Variants.** ``float`` (trackpy's centroid on the un-quantized band-passed image) is
  indistinguishable from trackpy's here and agrees with it within 0.02 px on isolated
  particles above 3×minmass (tests/test_locate.py). ``gauss`` (Gaussian-mask centroid,
  sub-pixel re-centred) lowers the RMS error for 60 nm (0.48 vs 0.50 px) and 200 nm (0.11 vs
  0.12) but raises it for 100 nm (0.24 vs 0.19: on motion-blurred spots it finds the peak, not
  the centroid, and differs from trackpy by up to ~1 px on blurred bright spots). A larger
  mask (d+2) changes nothing systematic. None measurably improves D̂/D for 60–100 nm, so the
  default stays ``refine="trackpy"`` (trackpy-equivalent).
"""


def render(size_nm, n_frames):
    """Frames (uint8) and per-frame truth, exactly as simulate_video draws them."""
    p = S._params(dict(CONDITIONS, sizes_nm=(size_nm,), n_frames=n_frames))
    model = S._Model(p)
    rng_traj, rng_bg, rng_noise = S._rngs(p["seed"])
    traj = S._Trajectories(model, rng_traj)
    bg = S._static_background(p, rng_bg)
    ren = S._Renderer(p)
    ns = p["n_substeps"]
    frames = np.empty((n_frames, p["height"], p["width"]), np.uint8)
    truth = []
    for f in range(n_frames):
        ids, diam, start, sub = traj.step()
        m0 = model.mass(diam)
        msub = m0[None, :] * model.sheet(sub[:, :, 2]) / ns  # (ns, n)
        xs, ys, ms = sub[:, :, 0].ravel(), sub[:, :, 1].ravel(), msub.ravel()
        draw = ms * ns >= S._RENDER_MASS
        signal = ren.render(xs[draw], ys[draw], ms[draw])
        frames[f] = S._camera_noise(bg + signal, p["read_noise"], rng_noise)
        mtot = msub.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            xm = (msub * sub[:, :, 0]).sum(0) / mtot
            ym = (msub * sub[:, :, 1]).sum(0) / mtot
        truth.append(dict(ids=ids.copy(), x=xm, y=ym, x0=start[:, 0].copy(), y0=start[:, 1].copy(), mass=mtot,
                          D=traj.D_um2_s.copy()))
    return frames, truth, p


def match(feats, truth, p):
    """Per frame: rows (frame, id, x_loc, y_loc, x_true, y_true, D_SE) for isolated matched particles."""
    out = []
    W, H = p["width"], p["height"]
    by_frame = {f: g for f, g in feats.groupby("frame")}
    for f, t in enumerate(truth):
        g = by_frame.get(f)
        if g is None:
            continue
        drawn = t["mass"] >= 20.0
        tx, ty = t["x"][drawn], t["y"][drawn]
        tid, tD = t["ids"][drawn], t["D"][drawn]
        inside = (tx > 8) & (tx < W - 9) & (ty > 8) & (ty < H - 9)
        tt = cKDTree(np.c_[tx, ty])
        dn, _ = tt.query(np.c_[tx, ty], k=2)
        iso = inside & (dn[:, 1] > 10.0)
        loc = g[["x", "y"]].to_numpy()
        d, j = tt.query(loc, distance_upper_bound=1.5)
        ok = np.isfinite(d)
        if not ok.any():
            continue
        lt = cKDTree(loc)
        d2, i2 = lt.query(np.c_[tx, ty])
        for a in np.nonzero(ok)[0]:
            b = j[a]
            if iso[b] and i2[b] == a:
                out.append((f, tid[b], loc[a, 0], loc[a, 1], tx[b], ty[b], tD[b], t["x0"][drawn][b], t["y0"][drawn][b]))
    return np.array(out, dtype=float).reshape(-1, 9)


def metrics(m, p):
    err = np.r_[m[:, 2] - m[:, 4], m[:, 3] - m[:, 5]]
    tru = np.r_[m[:, 4], m[:, 5]]
    loc = np.r_[m[:, 2], m[:, 3]]
    delta = tru - np.round(tru)
    k = -float(np.polyfit(delta, err, 1)[0])
    fl = loc - np.round(loc)
    hist = np.histogram(fl, bins=10, range=(-0.5, 0.5))[0] / (len(fl) / 10.0)
    # tracks: same id, drift removed, frames sorted
    drift = np.asarray(p["drift_px_per_frame"])
    order = np.lexsort((m[:, 0], m[:, 1]))
    m = m[order]
    fr = m[:, 0].astype(np.int64)
    pid = m[:, 1].astype(np.int64)
    locp = m[:, 2:4] - fr[:, None] * drift[None, :]
    trup = m[:, 4:6] - fr[:, None] * drift[None, :]
    startp = m[:, 7:9] - fr[:, None] * drift[None, :]
    bounds = np.r_[0, np.nonzero(np.diff(pid))[0] + 1, len(pid)]
    keep = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 10]
    sel = np.concatenate([np.arange(a, b) for a, b in keep]) if keep else np.zeros(0, int)
    offs = np.r_[0, np.cumsum([b - a for a, b in keep])].astype(np.int64)
    kw = dict(pixel_size_um=p["pixel_size_um"], fps=p["fps"], exposure_ms=p["exposure_ms"])
    Dl = diffusion_coefficients(locp[sel], fr[sel], offs, **kw)["D_um2_s"]
    Dt = diffusion_coefficients(trup[sel], fr[sel], offs, **kw)["D_um2_s"]
    Ds = diffusion_coefficients(startp[sel], fr[sel], offs, **kw)["D_um2_s"]
    Dse = m[offs[:-1], 6] if len(keep) else np.zeros(0)
    good = np.isfinite(Dl) & np.isfinite(Dt)
    # frame-to-frame steps of the same particle
    same = (np.diff(pid) == 0) & (np.diff(fr) == 1)
    sl = np.r_[np.diff(locp[:, 0])[same], np.diff(locp[:, 1])[same]]
    st = np.r_[np.diff(trup[:, 0])[same], np.diff(trup[:, 1])[same]]
    slope = float(np.sum(sl * st) / np.sum(st * st))
    return dict(
        n=int(len(m)), lock=k, centre_frac=float(np.mean(np.abs(fl) <= 0.25)), hist=[round(float(h), 2) for h in hist],
        rms=float(np.sqrt(np.mean(err**2))), bias=float(np.mean(err)), step_slope=slope,
        n_tracks=int(good.sum()),
        D_loc_se=float(np.mean(Dl[good] / Dse[good])), D_true_se=float(np.mean(Dt[good] / Dse[good])),
        D_start_se=float(np.mean(Ds[good] / Dse[good])),
        loc_over_true=float(np.mean(Dl[good]) / np.mean(Dt[good])),
    )


def run(sizes=SIZES, n_frames=N_FRAMES):
    rows = []
    for size in sizes:
        t0 = time.time()
        frames, truth, p = render(size, n_frames)
        sample = frames[:: max(1, n_frames // 100)]
        bg = background_model(sample)
        probe = subtract_background(sample[np.linspace(0, len(sample) - 1, 5).astype(int)], bg)
        d0 = estimate_spot_diameter(probe)
        print(f"{size:g} nm: rendered {n_frames} frames in {time.time() - t0:.1f} s, diameter {d0}", flush=True)
        mms = {}
        for name, kw, dd in VARIANTS:
            d = d0 + dd
            if d not in mms:
                mms[d] = estimate_minmass(probe, diameter=d)["minmass"]
            feats = locate_frames(frames, 0, diameter=d, minmass=mms[d], background=bg, **kw)
            r = metrics(match(feats, truth, p), p)
            r.update(size_nm=size, variant=name, diameter=d, minmass=mms[d], n_features=int(len(feats)))
            rows.append(r)
            print(f"  {name:22s} n={r['n']:6d} lock={r['lock']:+.3f} centre={r['centre_frac']:.3f} rms={r['rms']:.3f} "
                  f"bias={r['bias']:+.3f} step={r['step_slope']:.3f} Dloc/SE={r['D_loc_se']:.3f} "
                  f"Dtrue/SE={r['D_true_se']:.3f} Dstart/SE={r['D_start_se']:.3f} loc/true={r['loc_over_true']:.3f} ({r['n_tracks']} tracks)", flush=True)
    return rows


def write(rows, path):
    lines = [
        "# Localization accuracy of the fast locator's refinements",
        "",
        f"Date {datetime.datetime.now().isoformat(timespec='minutes')}; `python -m benchmarks.localization`. "
        f"Simulated frames (nta.simulate's renderer, same streams as `simulate_video`): {json.dumps(CONDITIONS)}, "
        f"{N_FRAMES} frames per size, default simulator optics (PSF σ 1.6 px, brightness 400, drift 3 px/frame). "
        "Truth = intensity-weighted mean of the exposure sub-step positions (what the spot shows). "
        "Matched: isolated true particles (no other drawn particle within 10 px) that are mutual nearest "
        "neighbours of a located feature within 1.5 px. Diameter and minmass as the pipeline derives them "
        "(minmass re-derived for d+2). Column meanings in the module docstring.",
        "",
        "| size nm | variant | d | matched | lock k | centre frac | RMS px | bias px | step slope | D̂ loc/SE | D̂ true/SE | D̂ start/SE | D̂ loc/true | tracks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['size_nm']:g} | {r['variant']} | {r['diameter']} | {r['n']} | {r['lock']:+.3f} | {r['centre_frac']:.3f} | "
                     f"{r['rms']:.3f} | {r['bias']:+.4f} | {r['step_slope']:.3f} | {r['D_loc_se']:.3f} | {r['D_true_se']:.3f} | {r['D_start_se']:.3f} | "
                     f"{r['loc_over_true']:.3f} | {r['n_tracks']} |")
    lines += ["", "Sub-pixel histograms of located x and y (10 bins from −0.5 to +0.5 px around a pixel centre, density; flat = 1):", ""]
    for r in rows:
        lines.append(f"- {r['size_nm']:g} nm, {r['variant']}: {' '.join(f'{h:.2f}' for h in r['hist'])}")
    lines += ["", FINDINGS]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_FRAMES
    N_FRAMES = n
    rows = run(n_frames=n)
    out = Path(__file__).parent / "results" / "localization.md"
    write(rows, out)
    (out.with_suffix(".json")).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print("wrote", out)
