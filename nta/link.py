"""Link: drift estimate, search radius from physics, trackpy linking with memory.

NTA samples often flow through the cell (NanoSight exports report 3–4 px/frame). Flow is
removed *before* linking: a first drift estimate from the displacements between the
features of consecutive frames (the peak of their 2-D histogram, which random pairs
spread flat while true steps pile up around the drift), so the search radius only has to
cover Brownian steps. After linking, trackpy's ``compute_drift`` on the tracks gives the
drift that is subtracted for the diffusion estimate.

The physical radius covers the smallest particle of interest (the window's lower edge),
whatever the sample holds; in a sample of only larger particles it is several times their
steps and joins different particles. By default the pipeline links twice: the second pass
uses the radius of the fastest population the first pass's tracks show
(:func:`data_search_radius_px`), never larger than the physical one.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from .calibration import Calibration, stokes_einstein_diffusion

__all__ = [
    "search_radius_px",
    "estimate_drift_from_features",
    "link_features",
    "LinkResult",
    "DEFAULT_MEMORY",
    "DEFAULT_SPLIT_ALPHA",
    "split_implausible_steps",
    "data_search_radius_px",
    "DEFAULT_RADIUS_FLOOR_PX",
]

log = logging.getLogger(__name__)

#: Frames a particle may vanish and still keep its track (gaps are handled by the kernel).
DEFAULT_MEMORY = 3

#: Family-wise level of the test that cuts a track at a step too large for its own
#: Brownian statistics (:func:`split_implausible_steps`): the probability that a genuine
#: Brownian track is cut at least once (measured ≈ α on simulated tracks with localization
#: noise, motion blur and gaps, ``tests/test_link.py``). 1e-4 rather than 1e-2: real tracks
#: have heavier tails than the Gaussian model (localization noise varies with brightness as
#: a particle moves through the light sheet), and at 1e-2 the test also removed large genuine
#: steps: on the bundled mono 100 nm sample D50 moved from 97.8 to 111.6 nm (truth 99.8)
#: and the 60 nm benchmark from +8.3 % to +11.4 %, while at 1e-4 both are unchanged
#: (100.3 nm; 65.2 nm) and the mislinks of the 200 and 400 nm benchmarks, steps many times
#: the particles' own, are still cut (SD 45.9 → 24.2 nm and 130 → 49 nm).
DEFAULT_SPLIT_ALPHA = 1e-4
#: The pipeline does not cut tracks unless asked (``split_alpha=0``): on the real
#: bright-field recording ``shared/data/bulk_water`` the test cut 1224 of 3749 tracks and
#: moved D50 from 1088.7 to 1273.4 nm (beads of about 1.0–1.13 µm): real localization errors
#: are heavier-tailed than the Gaussian model, so large genuine steps were cut. It stays
#: available (``--split-alpha 1e-4``) for simulated or clean fluorescence-like data, where it
#: removes mislinks (see benchmarks/results/accuracy.md, "Changes").

#: Pieces with fewer valid steps are not tested for a further cut.
SPLIT_MIN_STEPS = 4

#: Smallest search radius the data-adaptive (second-pass) radius may take, px: the 1-px
#: margin for the error of the pre-link drift estimate plus 4 standard deviations of the
#: difference of two positions of a dim feature located to 0.5 px per axis
#: (4 × √2 × 0.5 ≈ 2.8 px), rounded up. Below it the radius would follow the locator's and
#: the drift estimate's errors rather than the particles' motion.
DEFAULT_RADIUS_FLOOR_PX = 4.0

#: Quantile of the per-track step scale taken as "the fastest population present", and the
#: confidence of the order-statistic upper bound on it (:func:`data_search_radius_px`).
#: 0.99 rather than 0.95: a fast population owning only about 1 % of the trusted first-pass
#: tracks still sets the radius, and on the benchmark videos it kept nearly all of the gain
#: (identity changes per 1000 links, 0.95 → 0.99: mono 200 nm 4.5 → 4.7, 400 nm 0.7 → 0.7, against
#: 12.7 and 5.6 with the physics radius) while leaving mono 60 nm at the physics radius (0.95:
#: 21.3 px, D50 65.2 → 65.8 nm, SD 5.7 → 7.5 nm) and the dense 100 nm D50 at +1.3 % (0.95: +2.1 %).
RADIUS_QUANTILE = 0.99
RADIUS_CONFIDENCE = 0.95
#: Fewest trusted tracks for a data-adaptive radius; with fewer the physics radius is kept.
RADIUS_MIN_TRACKS = 30
#: The first (measuring) pass of the data-adaptive radius links at most this many features:
#: a prefix of the video (at least FIRST_PASS_MIN_FRAMES frames; the whole video when it
#: holds fewer). Measured on a 1500-frame 1280×1024 video of 170 features/frame (254 782
#: features): linking all of it took 3.7 s a pass; the prefix of 100 000 features gives
#: thousands of trusted tracks, far more than the radius estimate needs, and every
#: benchmark video of benchmarks/accuracy.py (≤ 75 000 features) is measured whole.
FIRST_PASS_MAX_FEATURES = 100_000
FIRST_PASS_MIN_FRAMES = 300
#: Largest share of first-pass one-frame steps with |Δr|² > 2 ln(10) s² (s² the step's own
#: track's robust per-axis step variance) for which the Gaussian step model, and so the
#: data-adaptive radius, is trusted. Gaussian steps give 0.10. Measured: 0.100–0.120 on the ten
#: simulated benchmark videos (the median-based s² and variable brightness add a little);
#: 0.226 on the real bright-field recording shared/data/bulk_water, whose steps are
#: heavy-tailed through the whole distribution (6.5 % beyond the Gaussian 99.9 % point): there a
#: radius from the Gaussian model (4 px instead of 11.2 px) cut the tracks at genuine large
#: steps, 3749 → 4751 tracks, and moved D50 from 1088.7 to 1222.5 nm.
RADIUS_MAX_BODY_TAIL = 0.15


def search_radius_px(calibration: Calibration, *, smallest_diameter_nm: float, memory: int = DEFAULT_MEMORY,
                     miss_probability: float = 1e-3, drift_uncertainty_px: float = 1.0) -> float:
    """Largest expected frame-to-frame step of the smallest particle of interest, px.

    The 2-D Brownian step of a particle with diffusion coefficient ``D`` over Δt is
    Rayleigh-distributed with σ = √(2 D Δt) per axis; it exceeds r with probability
    exp(−r² / 2σ²). The radius is r = σ √(−2 ln p) for a miss probability ``p``, plus the
    uncertainty of the drift subtracted before linking.

    Parameters
    ----------
    calibration : Calibration
        Pixel size (µm/px), frame rate (frames/s), temperature (°C), viscosity (mPa·s).
    smallest_diameter_nm : float
        Smallest hydrodynamic diameter to follow, nm (default in the pipeline: the lower
        edge of the size window).
    memory : int
        Unused for the radius (steps across a gap are not used for D); kept for the record.
    miss_probability : float
        Probability that a step of the smallest particle exceeds the radius (default 1e-3).
    drift_uncertainty_px : float
        Margin for the error of the drift estimate, px.

    Returns
    -------
    float
        Search radius, px.

    References
    ----------
    .. [1] Einstein, A. Ann. Phys. 17, 549 (1905) (Stokes–Einstein and ⟨Δx²⟩ = 2DΔt).
    """
    D = stokes_einstein_diffusion(smallest_diameter_nm, calibration.temperature_c, calibration.viscosity_mpas)
    sigma_px = math.sqrt(2.0 * D / calibration.fps) / calibration.pixel_size_um
    return float(sigma_px * math.sqrt(-2.0 * math.log(miss_probability)) + drift_uncertainty_px)


def estimate_drift_from_features(features: pd.DataFrame, *, max_displacement_px: float, window_frames: int = 25,
                                 bin_px: float = 0.5, smooth_px: float = 1.5, shift_radius_px: float | None = None) -> pd.DataFrame:
    """Drift per frame from unlinked features: the peak of the displacement histogram.

    For consecutive frames t, t+1 every pair of features closer than
    ``max_displacement_px`` gives a displacement; over a window of frames the true
    one-frame steps form a peak centred on the drift (Brownian steps are symmetric), on a
    floor of chance pairs. The peak of the smoothed 2-D histogram, refined by mean shift
    (the mean of displacements within ``shift_radius_px`` of the estimate, iterated), is
    the window's drift.

    Parameters
    ----------
    features : pandas.DataFrame
        Columns ``frame``, ``x``, ``y`` (px).
    max_displacement_px : float
        Largest drift plus Brownian step considered, px.
    window_frames : int
        Frames pooled per estimate; the estimates are interpolated between window centres.
    shift_radius_px : float, optional
        Radius of the mean-shift disc, px; default max(4, 0.35 × ``max_displacement_px``):
        wide enough to hold most Brownian steps, which makes the estimate efficient.

    Returns
    -------
    pandas.DataFrame
        Indexed by every frame from the first to the last, columns ``dx_px``, ``dy_px``:
        drift velocity (px/frame) from that frame to the next.
    """
    if shift_radius_px is None:
        shift_radius_px = max(4.0, 0.35 * float(max_displacement_px))
    frames = np.sort(features["frame"].unique())
    if frames.size < 2:
        return pd.DataFrame({"dx_px": [0.0] * frames.size, "dy_px": [0.0] * frames.size}, index=pd.Index(frames, name="frame"))
    # per-frame (x, y) arrays, rows in their original order within a frame (as groupby gives),
    # by one stable sort and split instead of a pandas group per frame
    fr = features["frame"].to_numpy()
    order = np.argsort(fr, kind="stable")
    xy = features[["x", "y"]].to_numpy()[order]
    keys, starts = np.unique(fr[order], return_index=True)
    grouped = {int(k): part for k, part in zip(keys, np.split(xy, starts[1:]))}
    R = float(max_displacement_px)
    nb = int(math.ceil(2 * R / bin_px))
    centres, vels = [], []
    f0, f1 = int(frames[0]), int(frames[-1])
    for start in range(f0, f1, window_frames):
        disp = []
        for t in range(start, min(start + window_frames, f1)):
            a, b = grouped.get(t), grouped.get(t + 1)
            if a is None or b is None or len(a) == 0 or len(b) == 0:
                continue
            tb = cKDTree(b)
            pairs = tb.query_ball_point(a, R)
            n_per = np.fromiter((len(js) for js in pairs), dtype=np.intp, count=len(pairs))
            if n_per.sum():
                # all pairs of this frame at once, in the same order as one feature at a time
                jj = np.concatenate([np.asarray(js, dtype=np.intp) for js in pairs if js])
                disp.append(b[jj] - np.repeat(a, n_per, axis=0))
        if not disp:
            continue
        d = np.concatenate(disp)
        H, xe, ye = np.histogram2d(d[:, 0], d[:, 1], bins=nb, range=[[-R, R], [-R, R]])
        H = ndimage.gaussian_filter(H, smooth_px / bin_px)
        i, j = np.unravel_index(np.argmax(H), H.shape)
        px, py = 0.5 * (xe[i] + xe[i + 1]), 0.5 * (ye[j] + ye[j + 1])
        # mean shift in a disc: chance pairs are locally uniform, so their mean within a disc is
        # the disc's centre and does not pull the estimate; true steps pull it to the drift
        for _ in range(50):
            near = np.hypot(d[:, 0] - px, d[:, 1] - py) < shift_radius_px
            if near.sum() < 3:
                break
            nx, ny = d[near, 0].mean(), d[near, 1].mean()
            done = abs(nx - px) + abs(ny - py) < 1e-3
            px, py = nx, ny
            if done:
                break
        centres.append(start + 0.5 * (min(start + window_frames, f1) - start))
        vels.append((px, py))
    allf = np.arange(f0, f1 + 1)
    if not vels:
        v = np.zeros((allf.size, 2))
    else:
        c = np.asarray(centres)
        vv = np.asarray(vels)
        v = np.column_stack([np.interp(allf, c, vv[:, 0]), np.interp(allf, c, vv[:, 1])])
    return pd.DataFrame({"dx_px": v[:, 0], "dy_px": v[:, 1]}, index=pd.Index(allf, name="frame"))


class LinkResult:
    """Linked tracks and what linking did.

    Attributes
    ----------
    tracks : pandas.DataFrame
        Columns ``frame, x, y, mass, size, ..., particle, x_raw, y_raw, parent``; ``x``, ``y``
        have the drift subtracted (px), ``x_raw``, ``y_raw`` are as located; ``parent`` is
        the track id from the linker before cuts at implausible steps
        (:func:`split_implausible_steps`), ``particle`` the id of the piece.
    drift : pandas.DataFrame
        Indexed by frame: ``dx_px``, ``dy_px``, the cumulative drift subtracted (px).
    search_range_px : float
        Search radius of the final linking pass, px (before any dense-field reduction,
        which ``notes`` report).
    radius_info : dict or None
        The second-pass radius measurement (:func:`data_search_radius_px`), if made.
    notes : list of str
        What linking had to do (adaptive search, dropped subnetworks), for the user.
    """

    def __init__(self, tracks, drift, search_range_px, notes, drift_velocity):
        self.tracks = tracks
        self.drift = drift
        self.search_range_px = search_range_px
        self.notes = notes
        self.drift_velocity = drift_velocity
        self.radius_info = None


def _cumulative(vel: pd.DataFrame) -> pd.DataFrame:
    """Cumulative displacement at each frame from per-frame velocities (0 at the first frame)."""
    c = vel.cumsum().shift(1, fill_value=0.0)
    return c


def split_implausible_steps(tracks: pd.DataFrame, *, alpha: float = DEFAULT_SPLIT_ALPHA, min_steps: int = SPLIT_MIN_STEPS,
                            pos_columns=("x", "y")) -> tuple[pd.DataFrame, int]:
    """Cut tracks at steps implausible under the track's own Brownian statistics.

    A linker whose search radius is comparable to the spacing of the particles sometimes
    continues a track on a neighbour (a mislink): one step then spans the distance
    between two particles. For the largest step of a track (squared length over its
    frame gap, u = |Δr|²/k, px²/frame) the ratio to the mean u of the track's other
    steps follows, for a genuine Brownian track of M steps, an F(2, 2(M − 1)) law; with a
    Bonferroni bound over the M steps the track is cut when the ratio exceeds
    F* = (M − 1)[(M/α)^{1/(M−1)} − 1], and the pieces are tested again
    (:mod:`nta.kernels.consistency`). D is then estimated per piece.

    Parameters
    ----------
    tracks : pandas.DataFrame
        Columns ``particle``, ``frame`` and ``pos_columns`` (px, drift removed).
    alpha : float
        Family-wise level per piece tested: the probability that a genuine Brownian track
        is cut (default :data:`DEFAULT_SPLIT_ALPHA`, 1 %). ``0`` disables the test.
    min_steps : int
        Pieces with fewer valid steps are not tested.
    pos_columns : tuple of two str
        Position columns, px.

    Returns
    -------
    tracks : pandas.DataFrame
        Same rows, sorted by the original ``particle`` then ``frame``, with a new column
        ``parent`` (int64, the track id before cutting); the first piece keeps the parent's
        id, further pieces get new ids above every existing one.
    n_cuts : int
        Number of cuts made.

    References
    ----------
    .. [1] Vestergaard, C. L., Blainey, P. C. & Flyvbjerg, H. Phys. Rev. E 89, 022726 (2014)
       (Gaussian steps of a Brownian track with localization noise and motion blur).
    """
    from .diffusion import flatten_tracks
    from .kernels.consistency import split_cuts

    if not (0.0 <= float(alpha) < 1.0):
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
    if int(min_steps) < 2:
        raise ValueError(f"min_steps must be >= 2, got {min_steps!r}")
    df = tracks.reset_index(drop=True)
    df = df.assign(parent=df["particle"].astype(np.int64)).sort_values(["particle", "frame"], kind="stable").reset_index(drop=True)
    if df.empty or float(alpha) == 0.0:
        return df, 0
    ids, pos, frame, offsets = flatten_tracks(df, pos_columns)
    cut = split_cuts(pos, frame, offsets, float(alpha), int(min_steps))
    n_cuts = int(cut.sum())
    if n_cuts:
        # piece number within the track: cumulative cuts since the track's first row
        track_of_row = np.repeat(np.arange(ids.size), np.diff(offsets))
        c = np.cumsum(cut)
        piece = c - (c[offsets[:-1]] - cut[offsets[:-1]])[track_of_row]
        new = np.flatnonzero(piece > 0)
        key = track_of_row[new] * (int(piece.max()) + 1) + piece[new]
        _, rank = np.unique(key, return_inverse=True)
        pid = df["particle"].to_numpy(np.int64).copy()
        pid[new] = int(ids.max()) + 1 + rank
        df["particle"] = pid
    return df, n_cuts


def data_search_radius_px(tracks: pd.DataFrame, *, max_radius_px: float, min_steps: int = 13,
                          quantile: float = RADIUS_QUANTILE, confidence: float = RADIUS_CONFIDENCE,
                          miss_probability: float = 1e-3, drift_uncertainty_px: float = 1.0,
                          floor_px: float = DEFAULT_RADIUS_FLOOR_PX, min_tracks: int = RADIUS_MIN_TRACKS,
                          max_body_tail: float = RADIUS_MAX_BODY_TAIL, pos_columns=("x", "y")) -> tuple[float, dict]:
    """Search radius for the fastest population actually present, from first-pass tracks, px.

    The physics radius (:func:`search_radius_px`) covers the smallest particle of interest
    (40 nm by default: about 22 px at 0.166 µm/px and 25 frames/s). When the sample holds
    only larger particles that radius is several times their steps, and the linker joins
    different particles (one leaves the sheet and another appears within the radius within
    ``memory`` frames, or neighbours swap). This function measures, on tracks linked with
    that radius, how far the fastest particles present actually step, and returns the
    radius for them:

    1. For every track with at least ``min_steps`` one-frame steps (drift removed) the
       per-axis step variance is estimated robustly as s² = median(|Δr|²) / (2 ln 2): for
       Gaussian steps |Δr|² / (2 s²) is exponential with median ln 2. s² holds everything
       that makes a step, 2DΔt, the localization noise of both ends and the motion-blur
       term, so no separate localization allowance is needed; the median ignores the few
       steps of a track that jump to another particle (a mislink of the first pass), which
       would inflate a mean.
    2. The ``quantile`` (99 %) of s² over those tracks stands for the fastest population
       present. Its estimate from n tracks is replaced by the upper ``confidence`` (95 %)
       bound from order statistics: the k-th smallest s², with k the smallest index such
       that P(Binomial(n, q) < k) ≥ confidence. The per-track s² are themselves noisy
       (relative SD of a median of M exponential variates ≈ 1.44 / √M); that noise
       widens the distribution of s², so its upper quantile errs large — toward the
       physics radius.
    3. r = s_hi √(−2 ln p) + ``drift_uncertainty_px``: the 2-D Gaussian step exceeds r with
       probability ``miss_probability`` (as in :func:`search_radius_px`), clipped to
       [``floor_px``, ``max_radius_px``].

    Limits: a fast population owning less than about 1 % of the trusted first-pass tracks
    does not set the radius, and its tracks are then cut where they step farther than it
    (fewer, shorter tracks of it enter the distribution); small fast particles give fewer
    trusted tracks than their number share (they leave the sheet sooner). Give
    ``--search-range`` when such a minority matters.

    Step 3 rests on Gaussian steps. It is checked on the body of the distribution, which
    the rare mislinks of the first pass do not reach: the share of trusted steps with
    |Δr|² > 2 ln(10) s² is 0.10 for Gaussian steps; above ``max_body_tail`` the steps are
    heavy-tailed (as the localization errors of bright-field recordings are) and
    ``max_radius_px`` is returned.

    Parameters
    ----------
    tracks : pandas.DataFrame
        First-pass tracks: ``particle``, ``frame`` and ``pos_columns`` (px, drift removed).
    max_radius_px : float
        The physics radius for the smallest particle of interest, px; never exceeded.
    min_steps : int
        One-frame steps a track needs to be trusted (default 13, the sizing's minimum).
    quantile, confidence : float
        See step 2.
    miss_probability : float
        Probability that a step of the fastest population exceeds the radius.
    drift_uncertainty_px : float
        Margin for the error of the drift estimate, px.
    floor_px : float
        Smallest radius returned, px (:data:`DEFAULT_RADIUS_FLOOR_PX`).
    min_tracks : int
        Fewest trusted tracks; with fewer, ``max_radius_px`` is returned.
    max_body_tail : float
        Largest share of steps beyond the Gaussian 90 % point (:data:`RADIUS_MAX_BODY_TAIL`).
    pos_columns : tuple of two str
        Position columns, px.

    Returns
    -------
    radius : float
        Search radius, px.
    info : dict
        ``n_tracks`` (trusted tracks), ``step_sd_px`` (s_hi, px per axis per frame, or
        None), ``body_tail`` (the share above), ``reason`` (str, for the result file's
        parameters).

    References
    ----------
    .. [1] David, H. A. & Nagaraja, H. N. Order Statistics, 3rd ed. (Wiley, 2003), §7.1
       (distribution-free confidence bounds for quantiles).
    .. [2] Einstein, A. Ann. Phys. 17, 549 (1905) (⟨Δx²⟩ = 2DΔt per axis).
    """
    from scipy import stats

    max_radius_px = float(max_radius_px)
    if not (0.0 < quantile < 1.0 and 0.0 < confidence < 1.0):
        raise ValueError(f"quantile and confidence must be in (0, 1), got {quantile!r}, {confidence!r}")
    if not (0.0 < miss_probability < 1.0):
        raise ValueError(f"miss_probability must be in (0, 1), got {miss_probability!r}")
    if not (np.isfinite(max_radius_px) and max_radius_px > 0):
        raise ValueError(f"max_radius_px must be a positive number of px, got {max_radius_px!r}")
    info = {"n_tracks": 0, "step_sd_px": None}
    df = tracks[["particle", "frame", *pos_columns]].sort_values(["particle", "frame"], kind="stable")
    pid = df["particle"].to_numpy()
    fr = df["frame"].to_numpy()
    xy = df[list(pos_columns)].to_numpy(float)
    ok = (pid[1:] == pid[:-1]) & (fr[1:] - fr[:-1] == 1)
    r2 = np.sum((xy[1:] - xy[:-1]) ** 2, axis=1)[ok]
    owner = pid[1:][ok]
    if owner.size:
        steps = pd.DataFrame({"p": owner, "r2": r2}).groupby("p")["r2"]
        n = steps.transform("size").to_numpy()
        med_row = steps.transform("median").to_numpy()
        trusted = n >= int(min_steps)
        per = steps.median()
        med = per[steps.size() >= int(min_steps)].to_numpy()
        # the body of the normalized step distribution: share beyond the Gaussian 90 % point
        z2 = r2[trusted] / np.maximum(med_row[trusted] / math.log(2.0), 1e-300)
        body_tail = float(np.mean(z2 > math.log(10.0))) if z2.size else float("nan")
    else:
        med = np.zeros(0)
        body_tail = float("nan")
    s2 = med / (2.0 * math.log(2.0))
    n_tr = int(s2.size)
    info["n_tracks"] = n_tr
    info["body_tail"] = body_tail
    if n_tr < int(min_tracks):
        info["reason"] = (f"physics radius kept: {n_tr} first-pass track(s) with ≥ {int(min_steps)} one-frame steps, "
                          f"fewer than the {int(min_tracks)} needed to measure the fastest population")
        return max_radius_px, info
    if body_tail > float(max_body_tail):
        info["reason"] = (f"physics radius kept: the first-pass steps are not Gaussian ({100 * body_tail:.1f} % beyond the "
                          f"Gaussian 90 % point of their track's step scale, more than {100 * float(max_body_tail):g} %), so "
                          "a radius from the Gaussian step model would cut the tracks at large steps it cannot tell "
                          "from mislinks")
        return max_radius_px, info
    s2 = np.sort(s2)
    # smallest k (1-based) with P(Bin(n, q) <= k - 1) >= confidence: X_(k) >= the q-quantile with that confidence
    k = int(stats.binom.ppf(confidence, n_tr, quantile)) + 1
    k = min(k, n_tr)
    s_hi = math.sqrt(float(s2[k - 1]))
    info["step_sd_px"] = s_hi
    r = s_hi * math.sqrt(-2.0 * math.log(miss_probability)) + float(drift_uncertainty_px)
    radius = float(min(max(r, float(floor_px)), max_radius_px))
    what = (f"data: {100 * (1 - miss_probability):g} % of one-frame steps of the fastest population present "
            f"(upper {100 * confidence:g} % bound on the {100 * quantile:g} % quantile of the per-track step SD, "
            f"{s_hi:.2f} px/axis, over {n_tr} first-pass tracks of ≥ {int(min_steps)} steps) + {drift_uncertainty_px:g} px")
    if radius == max_radius_px and r >= max_radius_px:
        what += f"; capped at the physics radius {max_radius_px:.1f} px"
    elif radius > r:
        what += f"; raised to the {float(floor_px):g}-px floor"
    info["reason"] = what
    return radius, info


def _trackpy_link(feats: pd.DataFrame, search_range_px: float, memory: int) -> tuple[pd.DataFrame, float, list]:
    """trackpy.link with adaptive search; on oversize subnetworks the radius shrinks by 30 % steps.

    Candidates within the radius are found with trackpy's ``neighbor_strategy="KDTree"``
    (scipy's cKDTree) instead of its default BTree: the same neighbours, so the same
    links (checked on the 254 782 features of a 1500-frame 1280×1024 video), and 18 %
    less linking time there (2.27 → 1.87 s at 18.1 px).
    """
    import trackpy as tp

    from ._jitcache import cache_trackpy_jit

    cache_trackpy_jit()  # trackpy's subnet solver from numba's disk cache, not compiled per process

    notes = []
    radius = float(search_range_px)
    tracks = None
    for _ in range(8):
        try:
            tracks = tp.link(feats, radius, memory=memory, adaptive_stop=max(0.5, 0.2 * radius), adaptive_step=0.9,
                             neighbor_strategy="KDTree")
            break
        except tp.SubnetOversizeException:
            radius *= 0.7
    if tracks is None:
        notes.append(f"dense field: linking failed down to a {radius / 0.7:.1f}-px radius; features linked with "
                     "trackpy's 'drop' strategy at 1 px (most tracks are cut)")
        tracks = tp.link(feats, 1.0, memory=0, link_strategy="drop")
    elif radius < search_range_px:
        notes.append(f"dense field: trackpy's subnetworks were too large at a {search_range_px:.1f}-px search radius; "
                     f"linked with {radius:.1f} px and adaptive search (fast small particles may be cut into short tracks)")
    tracks = tracks.reset_index(drop=True)
    # trackpy numbers new tracks in the iteration order of a set of its point objects
    # (hashed by address), so the same links get other labels from run to run; relabel by
    # first appearance in the frame-ordered table so a result is reproducible
    order = np.argsort(tracks["frame"].to_numpy(), kind="stable")
    codes = np.empty(len(tracks), np.int64)
    codes[order] = pd.factorize(tracks["particle"].to_numpy()[order])[0]
    tracks["particle"] = codes
    return tracks, radius, notes


def _remove_residual_drift(tracks: pd.DataFrame, cum: pd.DataFrame, smoothing: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Residual drift from the tracks (trackpy.compute_drift) subtracted; returns tracks and total drift."""
    import trackpy as tp

    if tracks["particle"].nunique() > 0 and tracks["frame"].nunique() > 1:
        resid = tp.compute_drift(tracks, smoothing=smoothing, pos_columns=["x", "y"])
        resid = resid.reset_index(drop=False) if "frame" not in resid.columns else resid.reset_index(drop=True)
        resid = resid.set_index("frame")[["x", "y"]].rename(columns={"x": "dx_px", "y": "dy_px"})
        resid = resid.reindex(cum.index).interpolate(limit_direction="both").fillna(0.0)
        r = resid.reindex(tracks["frame"].to_numpy()).to_numpy()
        tracks = tracks.assign(x=tracks["x"] - r[:, 0], y=tracks["y"] - r[:, 1])
        total = cum + resid
    else:
        total = cum
    total.index.name = "frame"
    return tracks, total


def link_features(features: pd.DataFrame, *, search_range_px: float, memory: int = DEFAULT_MEMORY,
                  max_drift_px: float = 10.0, drift_smoothing: int = 15, split_alpha: float = 0.0,
                  adaptive_radius: bool = False, min_track_length: int = 13) -> LinkResult:
    """Link features into tracks with the drift removed first.

    Steps: (1) drift velocity from unlinked features
    (:func:`estimate_drift_from_features`); (2) positions shifted by the cumulative drift;
    (3) :func:`trackpy.link` with ``memory`` and adaptive search (``adaptive_stop``), so
    dense fields shrink the radius locally instead of failing with
    ``SubnetOversizeException``; should it still fail, the whole radius is reduced by 30 %
    steps until linking succeeds, and a note says so; (4) residual drift from the
    tracks with :func:`trackpy.compute_drift` (smoothed over ``drift_smoothing`` frames)
    and subtracted; (5) with ``adaptive_radius``, a second pass: the radius for the fastest
    population present is measured on the first-pass tracks
    (:func:`data_search_radius_px`, never above ``search_range_px``) and, if smaller, the
    features are linked again with it and step (4) repeated; the first pass links only a
    prefix of a long video (:data:`FIRST_PASS_MAX_FEATURES` features, at least
    :data:`FIRST_PASS_MIN_FRAMES` frames), and when the radius is not reduced the whole
    video is then linked with ``search_range_px``; (6) tracks cut at steps
    implausible under their own Brownian statistics (:func:`split_implausible_steps`,
    mislinks to a neighbouring particle), if ``split_alpha`` > 0.

    Parameters
    ----------
    features : pandas.DataFrame
        Columns ``frame``, ``x``, ``y`` (px) and any others (kept).
    search_range_px : float
        Largest step between frames after drift removal, px (:func:`search_radius_px`);
        with ``adaptive_radius``, the first-pass radius and the upper bound of the second.
    memory : int
        Frames a particle may vanish and keep its identity.
    max_drift_px : float
        Largest drift considered by the pre-link estimate, px/frame.
    drift_smoothing : int
        Frames in trackpy's rolling mean of the residual drift.
    split_alpha : float
        Level of the mislink test (:func:`split_implausible_steps`); 0 (the default)
        disables it — see the note at :data:`DEFAULT_SPLIT_ALPHA` for the measured reason.
    adaptive_radius : bool
        Relink with the radius measured on the first-pass tracks (step 5).
    min_track_length : int
        One-frame steps a first-pass track needs to enter the radius measurement.

    Returns
    -------
    LinkResult
        ``search_range_px`` is the radius of the final pass; ``radius_info`` (dict) the
        measurement of step 5 (``reason`` for the result file), or None without it.
    """
    import trackpy as tp

    tp.quiet()
    feats = features.reset_index(drop=True).copy()
    if feats.empty:
        empty = feats.assign(particle=np.zeros(0, np.int64), x_raw=np.zeros(0), y_raw=np.zeros(0), parent=np.zeros(0, np.int64))
        res = LinkResult(empty, pd.DataFrame({"dx_px": [], "dy_px": []}), search_range_px, ["no features to link"], (0.0, 0.0))
        return res
    vel = estimate_drift_from_features(feats, max_displacement_px=max_drift_px + search_range_px)
    cum = _cumulative(vel)
    feats["x_raw"] = feats["x"]
    feats["y_raw"] = feats["y"]
    off = cum.reindex(feats["frame"].to_numpy()).to_numpy()
    feats["x"] = feats["x_raw"] - off[:, 0]
    feats["y"] = feats["y_raw"] - off[:, 1]
    final = float(search_range_px)
    first = feats
    frames_all = np.unique(feats["frame"].to_numpy())
    n_frames_all = first_frames = int(frames_all.size)
    if adaptive_radius and len(feats) > FIRST_PASS_MAX_FEATURES:
        # the first pass only measures the fastest population: a prefix of the video with
        # FIRST_PASS_MAX_FEATURES features (at least FIRST_PASS_MIN_FRAMES frames) is enough
        per_frame = feats["frame"].value_counts().reindex(frames_all).to_numpy()
        k = int(np.searchsorted(np.cumsum(per_frame), FIRST_PASS_MAX_FEATURES, side="right"))
        k = max(k, FIRST_PASS_MIN_FRAMES)
        if k < n_frames_all:
            first_frames = k
            first = feats[feats["frame"].to_numpy() <= frames_all[k - 1]]
    tracks, used, notes = _trackpy_link(first, final, memory)
    tracks, total = _remove_residual_drift(tracks, cum, drift_smoothing)
    info = None
    if adaptive_radius:
        r2, info = data_search_radius_px(tracks, max_radius_px=used, min_steps=min_track_length)
        info["first_pass_px"] = float(used)
        info["first_pass_frames"] = int(first_frames)
        if first_frames < n_frames_all:
            info["reason"] += f" (first pass on the first {first_frames} of {n_frames_all} frames)"
        if r2 < used or first_frames < n_frames_all:
            del tracks, first  # the first pass's tables are not needed again: free them before relinking
        if r2 < used:
            final = r2
            tracks, used, notes2 = _trackpy_link(feats, r2, memory)
            notes = notes2  # the first pass's dense-field notes concern a radius no longer used
            tracks, total = _remove_residual_drift(tracks, cum, drift_smoothing)
        elif first_frames < n_frames_all:  # the first pass saw a prefix: link everything with its radius
            tracks, used, notes = _trackpy_link(feats, final, memory)
            tracks, total = _remove_residual_drift(tracks, cum, drift_smoothing)
    steps = total.diff().dropna()
    v = (float(steps["dx_px"].mean()), float(steps["dy_px"].mean())) if len(steps) else (0.0, 0.0)
    tracks, n_cuts = split_implausible_steps(tracks, alpha=split_alpha)
    if n_cuts:
        notes.append(f"{n_cuts} track(s) cut at a step too large for the track's own Brownian steps "
                     f"(likely mislinks to a neighbour; test level {split_alpha:g})")
    res = LinkResult(tracks, total, final, notes, v)
    res.radius_info = info
    return res
