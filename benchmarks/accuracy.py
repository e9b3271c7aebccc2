"""Accuracy benchmark: nta versus a plain-trackpy baseline on simulated NTA videos with truth.

Run::

    /tmp/venv/bin/python benchmarks/accuracy.py [--work DIR] [--only NAME ...] [--out STEM] [--render]

Each case is a video written by :func:`nta.simulate.simulate_video` at NanoSight-like
conditions (25 frames/s, 0.166 µm/px, 30 ms exposure of the 40 ms frame, drift 2–4
px/frame, 8-bit with shot and read noise, particles leaving the light sheet). Each
video is processed in the same run by ``nta process`` (subprocess, default settings) and
by :func:`benchmarks.baseline_trackpy.run_baseline` on the same file. The real recording
``../shared/data/bulk_water`` (1 µm latex beads) is run too. Results go to
``benchmarks/results/accuracy.md`` and ``accuracy.json`` with the machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Conditions common to every simulated case.
COMMON = dict(fps=25.0, pixel_size_um=0.166, exposure_ms=30.0, temperature_c=22.0, n_frames=1500,
              width=640, height=480, particles_per_frame=40.0, size_cv=0.05)

#: The cases: name, simulation parameters (on top of COMMON).
CASES = [
    dict(name="mono 60 nm", sizes_nm=(60.0,), drift_px_per_frame=(3.0, 0.0), seed=11),
    dict(name="mono 100 nm", sizes_nm=(100.0,), drift_px_per_frame=(2.0, 1.0), seed=12),
    dict(name="mono 200 nm", sizes_nm=(200.0,), drift_px_per_frame=(3.0, 1.0), seed=13),
    dict(name="mono 400 nm", sizes_nm=(400.0,), drift_px_per_frame=(4.0, 0.0), seed=14),
    dict(name="mix 70+130 nm", sizes_nm=(70.0, 130.0), fractions=(0.5, 0.5), drift_px_per_frame=(3.0, 0.0), seed=15),
    dict(name="mix 100+150 nm", sizes_nm=(100.0, 150.0), fractions=(0.5, 0.5), drift_px_per_frame=(2.5, 1.0), seed=16),
    dict(name="mix 80+120 nm", sizes_nm=(80.0, 120.0), fractions=(0.5, 0.5), drift_px_per_frame=(3.0, 0.5), seed=17),
    dict(name="dim 100 nm", sizes_nm=(100.0,), brightness=140.0, background=25.0, read_noise=3.0,
         drift_px_per_frame=(3.0, 0.0), seed=18),
    dict(name="dense 100 nm", sizes_nm=(100.0,), particles_per_frame=150.0, drift_px_per_frame=(3.0, 0.0), seed=19),
    dict(name="short 100 nm", sizes_nm=(100.0,), n_frames=250, drift_px_per_frame=(3.0, 0.0), seed=20),
]


#: What changed in nta between runs of this benchmark, with the numbers it changed (rendered
#: at the end of accuracy.md; the numbers before are from the previous committed table).
HISTORY = [
    "2026-11-29, mislink cuts (`nta.link.split_implausible_steps`, kernel `nta.kernels.consistency`): a track is cut "
    "where its largest step² exceeds F* × the mean of its other steps², F* the Bonferroni-bounded F(2, 2(M−1)) "
    "quantile at family-wise level α = 1e-4 (pieces re-tested; D per piece; `parent_particle` in /per_track). "
    "On 10 000 simulated genuine Brownian tracks per condition (D of 100, 34 and 450 nm spheres, 0.3–1.5 px "
    "localization noise, 30/40 ms motion blur, 5 % missing frames) it cut 0–0.01 % of tracks and moved the mean D̂ "
    "by ≤ 0.004 % (α = 1e-2: 0.94–1.07 % cut, −0.17 to −0.26 %). Of its 52 cuts in the mono 200 nm video, 49 are at "
    "steps where the simulator's particle identity changes. Before → after (same distribution code): mono 200 nm SD "
    "45.9 → 24.2 nm, peaks 191.3 (0.94) + 111.7 (0.06) → 188.4 (1.00), window 0.058 → 0.002; mono 400 nm SD "
    "129.8 → 49.2 nm, window 0.013 → 0.009; mono 60 nm and mix 70+130 nm unchanged (0 and 5 cuts). Goals: mono 200 nm "
    "single peak and window now met, SD +18.4 → +7.4 pp, but robust SD +2.2 → +9.2 pp (NOT met now) and D50 −3.4 → "
    "−4.1 %; mono 400 nm SD +28.1 → +7.7 pp, robust SD +5.2 → +2.1 pp (met now); regressions from a handful of cuts "
    "that move the FTLA mixtures: mix 100+150 nm window +0.105 → +0.148 (3 cuts), mix 80+120 nm small peak 76.6 → "
    "74.9 nm (peaks goal NOT met now, 5 cuts). Bundled sample (sample_videos/mono_100nm.avi, truth D50 99.8 nm, SD "
    "4.7 nm): 6 cuts, D50 97.8 → 100.3 nm, SD 44.9 → 43.4 nm, spurious 45.7 nm peak 8 % → 7 %: its mislinks "
    "(378 identity changes in 4314 steps) are mostly steps no larger than Brownian ones, which no step-size test can "
    "see; α = 1e-2 there cut 55 tracks, SD 27.8 nm but D50 111.6 nm. This run used the working tree with another "
    "helper's uncommitted speed changes to nta/pipeline.py, nta/distribution.py, nta/locate.py, nta/store.py.",
    "2026-11-29, mislink cuts switched OFF by default (`--split-alpha`, default 0): the same test cut 1224 of 3749 "
    "tracks of the real bright-field recording shared/data/bulk_water and moved its D50 from 1088.7 to 1273.4 nm "
    "(beads of about 1.0–1.13 µm; issue 3's goal 900–1200 nm), because real localization errors are heavier-tailed "
    "than the Gaussian model. The table above is the default again (no cuts); the numbers in the previous entry "
    "are what enabling it does on the simulated cases.",
    "2026-11-29, data-adaptive search radius (two linking passes, `nta.link.data_search_radius_px`, default when no "
    "`--search-range` is given): the first pass links with the physics radius for the window's lower edge (22.3 px here); "
    "per first-pass track of ≥ 13 one-frame steps the per-axis step SD is estimated robustly (median |Δr|² / 2 ln 2, "
    "so a track's few mislinked jumps do not count and localization noise and blur are included), the upper 95 % "
    "order-statistic bound on its 99 % quantile over tracks stands for the fastest population present, and the "
    "second pass links with 99.9 % of that population's steps + 1 px (floor 4 px, never above the physics radius; "
    "the physics radius is kept when the steps are not Gaussian in their body, share beyond the Gaussian 90 % point "
    "> 0.15: 0.100–0.120 on these videos, 0.226 on bulk_water). Radius and reason are in the file's parameters "
    "(`search_range_source`, `search_range_first_pass_px`). New table above: identity changes per 1000 links against "
    "the simulator's truth (`benchmarks/mislinks.py`), before → after: mono 60 nm 37.1 → 37.1 (radius kept), 100 nm "
    "7.4 → 6.8, 200 nm 12.7 → 4.7, 400 nm 5.6 → 0.7, 70+130 nm 9.9 → 9.7, 100+150 nm 6.3 → 5.9, 80+120 nm 5.5 → 5.3, "
    "dim 7.6 → 6.8, dense 30.9 → 26.8, short 6.7 → 5.9; contaminated included tracks 200 nm 20.0 → 9.6 %, 400 nm "
    "11.9 → 2.2 %, dense 45.0 → 40.1 %. Most remaining identity changes are short steps (median 2.7 px in the 200 nm "
    "video), i.e. neighbours passing close, which no radius removes. Benchmark before → after: mono 200 nm SD "
    "+18.4 → +5.6 pp, peaks 191.3 (0.94) + 111.7 (0.06) → 192.1 (1.00) (single peak met now), window +0.058 → +0.000 "
    "(met now), robust SD +2.2 → +0.1 pp, D50 −3.4 → −2.9 %; mono 400 nm SD +28.1 → +8.3 pp, robust SD +5.2 → +4.4 pp, "
    "window +0.013 → 0.000, D50 +2.1 → +2.2 %; mono 100 nm D50 +1.1 → +0.9 %, SD +0.5 → −0.9 pp; dense D50 −0.1 → "
    "+1.3 % (in the dense video the tracks without an identity change have a median per-track diameter of 107 nm "
    "either way; with the physics radius the contaminated ones, median 99 nm, pulled the D50 down); short D50 "
    "+2.6 → +2.9 %; dim +5.0 → +5.2 %; mono 60 nm unchanged; mixtures: 70+130 nm unchanged (peaks 131.4/95.5/65.3, "
    "fractions 0.62/0.21/0.17), 100+150 nm window +0.105 → +0.115, 80+120 nm fractions 0.30/0.70 → 0.26/0.74 and "
    "its small peak 76.6 → 75.0 nm (−5.4 %: peaks goal NOT met now; the FTLA peak moves with small changes of the "
    "track set, as with the mislink cuts above). Goals met 28 → 29 of 44. bulk_water: radius kept (steps "
    "heavy-tailed), D50 1088.7 nm unchanged; without that check the second pass used 4 px, made 4751 tracks instead "
    "of 3749 and moved D50 to 1222.5 nm. Tried: the 95 % quantile instead of 99 %: radius 11.4 / 8.4 px for 200 / 400 "
    "nm (same identity changes), but mono 60 nm went to 21.3 px with D50 +9.2 %, SD +6.8 pp, and dense D50 +2.2 %: "
    "goals 27 of 44. The baseline uses nta's (now final) search radius, so its numbers moved too. Mixture number "
    "fractions, measured against the true identities (80+120 nm, true 80 nm share 0.493): its share of the included "
    "tracks is 0.450 (fewer and shorter tracks, 43 vs 65 points), mislinks move the deconvolved share by ~0.01 (0.28 "
    "from tracks without identity change vs 0.27 from all), and the FTLA itself gives 0.36–0.39 for a true 0.45 on "
    "D̂ drawn from its own model for the same tracks (also with 10× the tracks, without the outlier term and to "
    "30 000 iterations), so the 0.26 is mostly the deconvolution at this overlap plus this sample's spread "
    "(bootstrap SD 0.06); 70+130 nm: track share 0.44 for a true 0.51, model-drawn FTLA 0.32 for 0.44, and the 70 nm "
    "tracks' D̂ are 7 % low (detection selection). No correction is applied (see `nta.distribution.deconvolve`). Bundled samples (208 × 176 px with 45 "
    "particles per frame, about 4× the benchmark's density, so neighbours sit closer than any radius): the radius only "
    "went 22.3 → 19.9 px; mono_100nm.avi identity changes 101.3 → 91.5 per 1000 links, D50 97.8 → 102.9 nm (truth "
    "99.8), spurious 45.7 nm peak (8 %) gone; mix_70_130nm.tif (truth D50 122.9 nm) 73.8 → 68.0 per 1000 links, "
    "D50 100.4 → 112.5 nm, peaks 91.9/151.4/62.9 → 107.9/151.5/58.1/270.5 nm: both poor either way.",
    "2026-11-30, videos lengthened from 500 to 1500 frames (`COMMON['n_frames']`; 60 s at 25 frames/s, the "
    "standard NanoSight capture and the length of issue 4's performance video; the short case stays at 250 frames), "
    "nta unchanged (8d38fa7). Why: at 500 frames (130–310 tracks) the 95 % bootstrap CIs of nta's D50 were wider than "
    "the 2 % goal (400 nm: 381.4–421.7 nm, ±5 %; 200 nm: 189.5–200.7; 100 nm: 98.1–103.6), so a pass or fail there "
    "measured the sample as much as the method. Videos are re-simulated when the cached one has another length or seed. "
    "Before (500 frames) → after (1500 frames): mono 60 nm D50 +8.3 → +5.9 %, SD +4.1 → +13.8 pp, robust SD −0.5 → "
    "+5.3 pp (NOT met now; 435 included tracks for 1651 true particles, 29 % of them contaminated by mislinks); "
    "mono 100 nm D50 +0.9 → +1.4 %, SD −0.9 → −2.4 pp; mono 200 nm D50 −2.9 → −1.4 % (met now), SD +5.6 → +3.2 pp, "
    "robust SD +0.1 → +0.5 pp; mono 400 nm D50 +2.2 → +0.7 %, SD +8.3 → +1.5 pp, robust SD +4.4 → −1.7 pp (all "
    "three met now); mix 70+130 nm peaks 65.3 / 131.4 nm (plus a third at 95.5) → 67.8 / 130.8 nm (met now), "
    "fractions 0.17 / 0.62 → 0.36 / 0.64 for 0.51 / 0.49; mix 100+150 nm fractions 0.48 / 0.52 → 0.42 / 0.58 (met "
    "both times), window +0.115 → −0.059; mix 80+120 nm peaks 75.0 / 114.1 → 76.3 / 115.9 nm (met now, −3.9 / "
    "−3.6 %), fractions 0.26 → 0.32 for 0.49; dim 100 nm D50 +5.2 → +2.5 %; dense 100 nm D50 +1.3 → +1.4 %; short "
    "100 nm (same 250-frame video) identical. Goals met 29 → 34 of 44. What remains is bias, not sample size: the "
    "60 nm and dim D50s (detection selects frames in which a dim, fast particle moved little, "
    "`localization.md`), the small population's number fraction in the mixtures (0.32–0.42 for 0.49–0.51; see "
    "`nta.distribution.deconvolve`), the 100+150 nm window (its 150 nm population sits on the window's edge, so a 1 % "
    "shift of that population moves 0.04 of all particles across the edge at its true 5 % spread, more at the narrower deconvolved one), and the 250-frame video. The baseline moved too "
    "(more tracks): e.g. mono 400 nm −3.6 → +7.9 %, dim +4.9 → +7.8 %.",
    "2026-11-30, FTLA with a track-length model (`nta.distribution.fit_length_aware`, default; 071de19): Walker's "
    "FTLA conditions each track's likelihood on its number of steps N but assumes one size distribution for tracks of "
    "every length, while small particles make shorter tracks (they leave the sheet sooner and are dimmer). On D̂ drawn "
    "from nta's own Gamma model (1:1 mixture of 80 and 120 nm, 1000 tracks each, lengths 13 + geometric, means about 30 "
    "vs 60 steps, 6 seeds) it gave the 80 nm population 0.29–0.40 of the number, against 0.47–0.59 with equal "
    "lengths. The joint likelihood p(D̂, b | d) = p(D̂ | d, N) P(b | d), b the track's quantile bin of N (5 bins) and "
    "P(b | d) a proportional-odds model in ln d with a N(0, 2²) prior on its slope, fitted by ECM, gave 0.46–0.59 "
    "there. Here, same videos, before → after: mix 70+130 nm fractions 0.36 / 0.64 → 0.47 / 0.53 (truth 0.51 / 0.49), "
    "peaks 67.8 / 130.8 → 71.9 / 133.4 nm (fitted slope +2.9 per unit ln d); mix 80+120 nm fractions 0.32 → 0.42 "
    "(truth 0.49), peaks 76.3 / 115.9 → 77.8 / 115.9 nm, D50 +2.7 → +0.8 % (slope +3.1); mix 100+150 nm fractions "
    "0.42 → 0.48 (truth 0.49), D50 +8.3 → +3.7 %, window −0.059 → −0.068 (slope +1.7); monodisperse slopes −1.4…+2.0, "
    "D50s within 0.1 pp, SD mono 60 nm 18.4 → 19.7 %, 200 nm 7.6 → 8.4 % (robust 4.9 → 5.6 %), 400 nm 6.2 → 6.4 %, "
    "dense 4.9 → 5.2 %, others within 0.1 pp. bulk_water 1088.7 → 1089.8 nm (slope −0.13). Goals met 34 → 36 of 44 "
    "(both fractions goals of 70+130 and 80+120 nm). Tried: the same joint model without a slope prior let the slope "
    "run to −14…+16 on monodisperse videos (short 100 nm robust SD 1.8 → 8.9 %, truth 4.9 %); strata of N fitted "
    "separately (no shared size distribution) fixed the fractions as well but inflated the plain SD through spikes "
    "fitted to a few stray tracks per stratum (400 nm: 6.2 → 12–17 %); 3 or 8 bins instead of 5 changed the fractions "
    "by ≤ 0.03. The table is the re-run on 5c55d53 (rank-based length bins, 1e63f80; products through per-bin "
    "scaled low-rank factors, d040cdc): the same as the first run on 071de19 except mono 400 nm SD 6.4 → 6.5 %, "
    "robust SD 2.8 → 2.7 %. Timings in these runs are high: other jobs ran beside them.",
    "2026-11-30, the CVE's adjacent-step covariance also taken across frames the locator missed "
    "(`nta.kernels.diffusion`, e08dd72): a lag-2 displacement whose middle frame has no point counts as "
    "Δ₂x²/2 − ⟨Δx²⟩, which has the expectation of Δx_n Δx_{n+1}; without missing points the estimator is "
    "Vestergaard et al.'s unchanged. Why: a dim particle is detected more often in frames where it moved little "
    "during the exposure, and with motion blur the adjacent-step covariance is a property of the middle frame's "
    "exposure, which the adjacent-step terms only ever see in detected frames; the missed frames' terms put them "
    "back at the rate they are missed, which removes the selection (derivation in the kernel's docstring). On "
    "simulated blurred tracks with blur-dependent detection (58 % of frames kept) the adjacent-step CVE gave "
    "0.83 D and this one 1.01 ± 0.01 D (`tests/test_diffusion.py`). Before → after, same videos and tracks: "
    "mono 60 nm D50 +5.9 → +1.7 %, SD +15.1 → −0.6 pp, robust SD +5.0 → −0.7 pp (all three met now); mono 100 nm "
    "D50 +1.4 → +1.3 %; mono 200 nm D50 −1.5 → −1.4 %, SD +3.9 → +2.8 pp (met now); mono 400 nm D50 +0.6 → +0.4 %, "
    "SD +1.7 → +1.7 pp; mix 70+130 nm unchanged (71.9 / 133.4 nm, 0.47 / 0.53); mix 100+150 nm window −0.068 → "
    "−0.038 (met now), peaks 101.4 / 151.3 → 101.6 / 151.6 nm; mix 80+120 nm peaks 77.8 / 115.9 → 78.4 / 117.0 nm, "
    "fractions 0.42 / 0.58 → 0.45 / 0.55 (truth 0.49 / 0.51); dim 100 nm D50 +2.5 → +2.2 %; dense D50 +1.3 → +1.1 %; "
    "short D50 +2.9 → +3.0 %, robust SD −3.1 → −2.9 pp (met now). bulk_water 1089.8 nm (95 % CI 1060.1–1179.4) → "
    "1075.3 nm (1055.5–1120.2). Goals met 36 → 42 of 44. Tried first: the two-point MSD slope (⟨Δ₂x²⟩ − ⟨Δx²⟩)/2 "
    "over every lag-2 pair, which removes the selection the same way (60 nm D50 +0.2 %) but is not the CVE on "
    "complete tracks: its end terms make a few short tracks extreme, and the plain SD of the 200 and 400 nm videos "
    "went to +15.8 and +4.3 pp (38 of 44). What remains: the dim 100 nm and short 100 nm D50s (+2.2 and +3.0 %; "
    "95 % CIs 100.5–103.5 and 99.8–104.0 nm for truths 99.6 and 98.9 nm). The tracked particles' own true "
    "diameters are not the cause (median of the identities behind the included tracks 99.95 nm in the dim video, "
    "98.4 nm in the short one). Other seeds of the same cases (not the benchmark's): dim 100 nm +2.0, +0.2, +0.1 %; "
    "short 100 nm +3.7, −0.7, +0.9, +2.9, +3.7 % (140–170 tracks, so a seed-to-seed SD of about 2 % against the 2 % "
    "goal). On ideal simulated tracks (every frame detected, blur, noise, 5 % CV) the FTLA D50 is unbiased: "
    "−0.49 ± 0.28 % with 900 tracks (8 seeds), −0.93 ± 0.79 % with 160 (16 seeds). What is left at 100 nm is "
    "selection the new terms do not reach: on the localization benchmark's rendered 100 nm frames (1000 frames, true "
    "exposure-mean positions of the matched frames, 450 tracks) D̂ is 0.976 ± 0.008 of the D of the same tracks over "
    "all frames (adjacent-step CVE 0.968; 60 nm: 1.007 ± 0.022 against 0.885), because misses there come in runs "
    "(28 % of frames missing, only 2.6 % of lag-2 spans with a single missed middle): the particle's brightness "
    "changes slowly as it moves through the sheet, so the selection is not independent from frame to frame, which "
    "the derivation assumes. Counting lag-3 and lag-4 displacements across runs of missed frames as well (weight "
    "L − 1, term (Δ_L² − L⟨Δ²⟩)/(2(L − 1))) gave 0.986 at 100 nm but 1.072 at 60 nm; not adopted.",
    "2026-11-30 (later, same numbers re-rendered): the width goal (SD within 3 pp of the true spread) is now checked "
    "on the mixtures too, as issue 3 states it for the benchmark as a whole (an audit pointed out it was applied to "
    "the monodisperse cases only): mix 70+130 nm −3.2 pp (NOT met; −3.4 pp before this session's estimator change), "
    "100+150 nm −1.3 pp, 80+120 nm −1.5 pp. Goals met 44 of 47. The real recording's line now also gives its mode, "
    "SD and peaks.",
]


def _slug(name):
    return name.replace(" ", "_").replace("+", "_")


def make_video(case, work: Path) -> Path:
    """Write (once) the case's video into ``work``; returns its path."""
    from nta.simulate import simulate_video

    path = work / f"{_slug(case['name'])}.avi"
    params = dict(COMMON)
    params.update({k: v for k, v in case.items() if k != "name"})
    truth = path.with_name(path.stem + ".truth.json")
    if path.exists() and truth.exists():
        t = json.loads(truth.read_text())
        if t.get("n_frames") == params["n_frames"] and t.get("seed", params["seed"]) == params["seed"]:
            return path  # the same case, written before
    simulate_video(path, overwrite=True, **params)
    return path


def truth_of(video: Path) -> dict:
    """Ground truth of a simulated case: the summary plus per-population number fractions.

    The per-population truth counts the particles visible in at least
    ``truth_min_frames`` frames (the simulator's own definition of the truth sample).
    """
    t = json.loads(video.with_name(video.stem + ".truth.json").read_text())
    d = np.asarray(t["particle_diameters_nm"], float)
    nf = np.asarray(t["particle_frames_visible"], float)
    d = d[nf >= t.get("truth_min_frames", 5)]
    sizes = np.asarray(t["sizes_nm"], float)
    # assign each particle to the nearest population in ln(d)
    pop = np.argmin(np.abs(np.log(d)[:, None] - np.log(sizes)[None, :]), axis=1)
    t["true_fractions"] = [float(np.mean(pop == i)) for i in range(sizes.size)]
    t["true_pop_median_nm"] = [float(np.median(d[pop == i])) for i in range(sizes.size)]
    return t


def run_nta(video: Path, out: Path, args) -> dict:
    """``nta process`` in a subprocess, as a user runs it; returns the summary and wall time."""
    from nta.store import read_summary

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "nta.cli", "process", str(video), "-o", str(out), "--overwrite", "--no-progress", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {r.stderr}")
    s = read_summary(out)
    s["wall_s"] = time.perf_counter() - t0
    return s


def baseline_stats(d_nm, window=(40.0, 150.0)) -> dict:
    """Statistics of the baseline's per-track sizes (as its histogram shows them)."""
    from nta.distribution import find_peaks, make_grid

    d = np.asarray(d_nm, float)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        return {}
    grid = make_grid(d)
    # the histogram a user of the baseline looks at: per-track sizes binned on the grid
    e = np.exp(np.concatenate([[np.log(grid[0]) - 0.01], 0.5 * (np.log(grid[1:]) + np.log(grid[:-1])), [np.log(grid[-1]) + 0.01]]))
    h, _ = np.histogram(d, bins=e)
    pk, fr = find_peaks(grid, h.astype(float))
    return dict(tracks=int(d.size), d50_nm=float(np.median(d)), mean_nm=float(d.mean()), sd_nm=float(d.std(ddof=1)),
                window_fraction=float(np.mean((d >= window[0]) & (d <= window[1]))), peaks_nm=pk, peak_fractions=fr)


def _match_peaks(true_sizes, peaks, fracs):
    """For each true population, the nearest reported peak (in ln d) and its fraction."""
    out = []
    for s in true_sizes:
        if not peaks:
            out.append((float("nan"), float("nan")))
            continue
        i = int(np.argmin([abs(math.log(p / s)) for p in peaks]))
        out.append((peaks[i], fracs[i]))
    # a peak claimed by two populations means they were not resolved
    if len(true_sizes) > 1 and len({p for p, _ in out}) < len(true_sizes):
        out = [(p, f) if j == 0 else (float("nan"), float("nan")) for j, (p, f) in enumerate(out)]
    return out


def run_case(case, work: Path) -> dict:
    from benchmarks.baseline_trackpy import run_baseline

    video = make_video(case, work)
    t = truth_of(video)
    args = ["--pixel-size", t["pixel_size_um"], "--temperature", t["temperature_c"], "--exposure", t["exposure_ms"]]
    s = run_nta(video, work / f"{video.stem}.h5", args)
    b = run_baseline(video, pixel_size_um=t["pixel_size_um"], fps=t["fps"], temperature_c=t["temperature_c"],
                     diameter=9, minmass=s["minmass"], search_range=s["search_range_px"])
    bs = baseline_stats(b["diameter_nm"])
    bs["time_s"] = b["time_s"]
    # mislinks of nta's tracks against the simulator's true identities (benchmarks/mislinks.py)
    from benchmarks.mislinks import mislink_stats, truth_positions
    from nta.store import read_table

    P, tt = truth_positions(video.with_name(video.stem + ".truth.json"))
    ml = mislink_stats(read_table(work / f"{video.stem}.h5", "tracks"), read_table(work / f"{video.stem}.h5", "per_track"), P, tt)
    s["mislinks"] = ml
    return dict(name=case["name"], truth=dict(
        d50_nm=t["true_median_nm"], mean_nm=t["true_mean_nm"], sd_nm=t["true_sd_nm"], window_fraction=t["true_window_fraction"],
        sizes_nm=t["sizes_nm"], fractions=t["true_fractions"], pop_median_nm=t["true_pop_median_nm"]),
        nta={k: s.get(k) for k in ("tracks_valid", "d50_nm", "mean_nm", "sd_nm", "sd_robust_nm", "mode_nm", "window_fraction", "peaks_nm",
                                    "peak_fractions", "d50_nm_ci95", "window_fraction_ci95", "raw_d50_nm", "raw_sd_nm",
                                    "raw_window_fraction", "wall_s", "ftla", "search_range_px", "mislinks")},
        baseline=bs)


def run_bulk_water(work: Path) -> dict | None:
    from benchmarks.baseline_trackpy import run_baseline

    src = ROOT.parent / "shared" / "data" / "bulk_water"
    if not src.is_dir():
        return None
    s = run_nta(src, work / "bulk_water.h5", ["--pixel-size", 0.3509, "--fps", 24, "--temperature", 21, "--invert"])
    b = run_baseline(src, pixel_size_um=0.3509, fps=24, temperature_c=21, invert=True, diameter=s["diameter_px"],
                     minmass=s["minmass"], search_range=s["search_range_px"])
    bs = baseline_stats(b["diameter_nm"])
    bs["time_s"] = b["time_s"]
    return dict(name="real: bulk_water 1 µm beads", nta={k: s.get(k) for k in ("tracks_valid", "d50_nm", "mean_nm", "sd_nm", "mode_nm",
                "peaks_nm", "peak_fractions", "d50_nm_ci95", "raw_d50_nm", "wall_s", "search_range_px")}, baseline=bs)


def _rel(a, b):
    try:
        return (a - b) / b
    except (TypeError, ZeroDivisionError):
        return float("nan")


def _f(v, nd=1, pct=False):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:+.1f} %" if pct else f"{v:.{nd}f}"


def to_markdown(results, meta) -> str:
    L = [f"# nta accuracy benchmark", "",
         f"Machine: {meta['machine']}; date {meta['date']}; versions {json.dumps(meta['versions'])}.", "",
         f"Conditions: {json.dumps(COMMON)}; per-case overrides in `benchmarks/accuracy.py`. nta: `nta process` with "
         "defaults (FTLA deconvolution). Baseline: `benchmarks/baseline_trackpy.py` (trackpy locate/link/filter_stubs(13)/"
         "drift/imsd, per-track linear MSD fit over lags 1–10, Stokes–Einstein) on the same file, with nta's minmass and "
         "search range. Truth: the particles the simulator saw in ≥ 5 frames. SD % = SD / mean; nta's robust SD is half "
         "its 15.87–84.13 % inter-quantile range (equal to the SD for a normal law), compared with the truth's plain SD.", "",
         "## Size (D50) and width (SD / mean)", "",
         "| case | truth D50 nm | nta D50 nm | baseline D50 nm | nta err | baseline err | nta raw-median err | truth SD % | nta SD % | nta robust SD % | baseline SD % | tracks nta / baseline |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t, n, b = r.get("truth"), r["nta"], r["baseline"]
        if t is None:
            continue
        cv = lambda s, m: (100 * s / m) if (s is not None and m) else float("nan")
        L.append(f"| {r['name']} | {_f(t['d50_nm'])} | {_f(n['d50_nm'])} | {_f(b.get('d50_nm'))} | {_f(_rel(n['d50_nm'], t['d50_nm']), pct=True)} | "
                 f"{_f(_rel(b.get('d50_nm'), t['d50_nm']), pct=True)} | {_f(_rel(n['raw_d50_nm'], t['d50_nm']), pct=True)} | "
                 f"{_f(cv(t['sd_nm'], t['mean_nm']))} | {_f(cv(n['sd_nm'], n['mean_nm']))} | {_f(cv(n.get('sd_robust_nm'), n['mean_nm']))} | "
                 f"{_f(cv(b.get('sd_nm'), b.get('mean_nm')))} | "
                 f"{n['tracks_valid']} / {b.get('tracks')} |")
    L += ["", "## Window fraction (40–150 nm) and peaks", "",
          "| case | truth window | nta window | baseline window | truth populations (nm: fraction) | nta peaks (nm: fraction) | baseline peaks (nm: fraction) |",
          "|---|---|---|---|---|---|---|"]
    for r in results:
        t, n, b = r.get("truth"), r["nta"], r["baseline"]
        if t is None:
            continue
        pk = lambda p, f: ", ".join(f"{a:.1f}: {c:.2f}" for a, c in zip(p or [], f or [])) or "–"
        L.append(f"| {r['name']} | {_f(t['window_fraction'], 3)} | {_f(n['window_fraction'], 3)} | {_f(b.get('window_fraction'), 3)} | "
                 f"{pk(t['pop_median_nm'], t['fractions'])} | {pk(n['peaks_nm'], n['peak_fractions'])} | {pk(b.get('peaks_nm'), b.get('peak_fractions'))} |")
    L += ["", "## Linking against the simulator's truth (`benchmarks/mislinks.py`)", "",
          "Search radius of nta's final linking pass; identity changes = links joining two different true particles "
          "(features matched to the true mid-exposure positions within 3 px); contaminated = included tracks holding one; "
          "per population: included tracks / true particles, mean points per included track.", "",
          "| case | radius px | identity changes / 1000 links | contaminated included tracks | per population (nm: included / truth, mean points) |",
          "|---|---|---|---|---|"]
    for r in results:
        m = r["nta"].get("mislinks")
        if r.get("truth") is None or not m:
            continue
        pops = "; ".join(f"{p['size_nm']:g}: {p['included']} / {p['truth_particles']}, {p['mean_rows_included']:.1f}" for p in m["populations"])
        L.append(f"| {r['name']} | {_f(r['nta'].get('search_range_px'))} | {1000 * m['changes_per_link']:.1f} | "
                 f"{100 * m['contaminated_included']:.1f} % | {pops} |")
    L += ["", "## Goals", ""]
    for r in results:
        if "goals" in r:
            L.append(f"- **{r['name']}**: " + "; ".join(f"{k}: {'met' if v[0] else 'NOT met'} ({v[1]})" for k, v in r["goals"].items()))
    real = [r for r in results if r.get("truth") is None]
    if real:
        L += ["", "## Real recording", ""]
        for r in real:
            n, b = r["nta"], r["baseline"]
            L.append(f"- {r['name']}: nta D50 {_f(n['d50_nm'])} nm (95 % CI {_f((n.get('d50_nm_ci95') or [None])[0])}–"
                     f"{_f((n.get('d50_nm_ci95') or [None, None])[1])}), raw per-track median {_f(n['raw_d50_nm'])} nm, "
                     f"{n['tracks_valid']} tracks; baseline median {_f(b.get('d50_nm'))} nm ({b.get('tracks')} tracks). "
                     f"Goal 900–1200 nm: {'met' if n['d50_nm'] and 900 <= n['d50_nm'] <= 1200 else 'NOT met'}. "
                     f"The same result's mode {_f(n.get('mode_nm'))} nm, mean {_f(n.get('mean_nm'))} nm, SD {_f(n.get('sd_nm'))} nm, "
                     "peaks " + (", ".join(f"{p:.0f} nm ({100 * q:.0f} %)" for p, q in zip(n.get("peaks_nm") or [], n.get("peak_fractions") or []))
                                 or "–") + ": the D50 is the goal; the shape of this bright-field recording's distribution is not measured against a truth.")
    if HISTORY:
        L += ["", "## Changes", ""] + [f"- {h}" for h in HISTORY]
    L += ["", "Timing (wall, s): " + ", ".join(f"{r['name']}: nta {_f(r['nta'].get('wall_s'))} / baseline {_f(r['baseline'].get('time_s'))}" for r in results)]
    return "\n".join(L) + "\n"


def goals(r) -> dict:
    t, n = r["truth"], r["nta"]
    g = {}
    sizes = t["sizes_nm"]
    dcv = 100 * (n["sd_nm"] / n["mean_nm"] - t["sd_nm"] / t["mean_nm"])
    if len(sizes) == 1:
        e = _rel(n["d50_nm"], t["d50_nm"])
        g["D50 within 2 %"] = (abs(e) <= 0.02, f"{100 * e:+.1f} %")
        g["SD within 3 pp"] = (abs(dcv) <= 3, f"{dcv:+.1f} pp")
        # the same goal for the robust SD (half the 15.87-84.13 % inter-quantile range), against the
        # truth's plain SD (the truth itself is not made robust)
        if n.get("sd_robust_nm") is not None:
            dr = 100 * (n["sd_robust_nm"] / n["mean_nm"] - t["sd_nm"] / t["mean_nm"])
            g["robust SD within 3 pp"] = (abs(dr) <= 3, f"{dr:+.1f} pp")
        g["single peak"] = (len(n["peaks_nm"] or []) == 1, f"{len(n['peaks_nm'] or [])} peaks")
    else:
        m = _match_peaks(t["pop_median_nm"], n["peaks_nm"], n["peak_fractions"])
        ok_p = all(math.isfinite(p) and abs(p / s - 1) <= 0.05 for (p, _), s in zip(m, t["pop_median_nm"]))
        ok_f = all(math.isfinite(f) and abs(f - tf) <= 0.10 for (_, f), tf in zip(m, t["fractions"]))
        g["peaks within 5 %"] = (ok_p, ", ".join(f"{p:.1f} vs {s:.1f}" for (p, _), s in zip(m, t["pop_median_nm"])))
        g["fractions within 0.10"] = (ok_f, ", ".join(f"{f:.2f} vs {tf:.2f}" for (_, f), tf in zip(m, t["fractions"])))
        # the width goal applies to every case: the whole distribution's SD / mean
        g["SD within 3 pp"] = (abs(dcv) <= 3, f"{dcv:+.1f} pp")
    dw = n["window_fraction"] - t["window_fraction"]
    g["window within 0.05"] = (abs(dw) <= 0.05, f"{dw:+.3f}")
    return g


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/nta_bench", help="folder for the videos and result files")
    ap.add_argument("--only", nargs="*", help="case names to run (default all)")
    ap.add_argument("--no-real", action="store_true", help="skip the real bulk_water recording")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "accuracy"), help="output stem (.md, .json)")
    ap.add_argument("--render", action="store_true", help="only re-render the .md from the stored .json (e.g. after editing HISTORY)")
    a = ap.parse_args(argv)
    if a.render:
        from nta.store import dumps  # noqa: F401  (same JSON conventions)

        d = json.loads(Path(a.out + ".json").read_text())
        for r in d["results"]:  # the goals as defined now, from the stored numbers
            if r.get("truth") is not None:
                r["goals"] = goals(r)
        from nta.store import dumps

        Path(a.out + ".json").write_text(dumps(d) + "\n")
        Path(a.out + ".md").write_text(to_markdown(d["results"], d["meta"]))
        return
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from nta.pipeline import _versions

    results = []
    for c in CASES:
        if a.only and c["name"] not in a.only:
            continue
        r = run_case(c, work)
        r["goals"] = goals(r)
        results.append(r)
        print(r["name"], json.dumps({k: v[1] for k, v in r["goals"].items()}), flush=True)
    if not a.no_real:
        r = run_bulk_water(work)
        if r:
            results.append(r)
            print(r["name"], r["nta"]["d50_nm"], r["baseline"].get("d50_nm"), flush=True)
    meta = dict(machine=f"{platform.node()} {platform.processor() or platform.machine()} {os.cpu_count()} CPUs",
                date=datetime.datetime.now().isoformat(timespec="seconds"), versions=_versions())
    from nta.store import dumps

    Path(a.out + ".json").write_text(dumps({"meta": meta, "common": COMMON, "cases": CASES, "results": results}) + "\n")
    Path(a.out + ".md").write_text(to_markdown(results, meta))
    print(to_markdown(results, meta))


if __name__ == "__main__":
    main()
