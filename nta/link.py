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

import itertools
import logging
import math
import os
import signal

import numpy as np
import pandas as pd

from .calibration import Calibration, stokes_einstein_diffusion

__all__ = [
    "search_radius_px",
    "estimate_drift_from_features",
    "link_features",
    "StreamLinker",
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


#: Frames pooled per pre-link drift estimate, histogram bin and smoothing (px) of
#: :func:`estimate_drift_from_features` (and of :class:`StreamLinker`, which must agree).
DRIFT_WINDOW_FRAMES = 25
DRIFT_BIN_PX = 0.5
DRIFT_SMOOTH_PX = 1.5


def _shift_radius_px(max_displacement_px: float) -> float:
    """Default mean-shift disc of :func:`estimate_drift_from_features`, px."""
    return max(4.0, 0.35 * float(max_displacement_px))


def estimate_drift_from_features(features: pd.DataFrame, *, max_displacement_px: float,
                                 window_frames: int = DRIFT_WINDOW_FRAMES, bin_px: float = DRIFT_BIN_PX,
                                 smooth_px: float = DRIFT_SMOOTH_PX, shift_radius_px: float | None = None) -> pd.DataFrame:
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
        shift_radius_px = _shift_radius_px(max_displacement_px)
    frames = np.sort(features["frame"].unique())
    if frames.size < 2:
        return pd.DataFrame({"dx_px": [0.0] * frames.size, "dy_px": [0.0] * frames.size}, index=pd.Index(frames, name="frame"))
    grouped = _frames_xy(features)
    centres, vels = [], []
    f0, f1 = int(frames[0]), int(frames[-1])
    for start in range(f0, f1, window_frames):
        stop = min(start + window_frames, f1)
        v = _window_velocity(grouped, start, stop, float(max_displacement_px), bin_px=bin_px, smooth_px=smooth_px,
                             shift_radius_px=shift_radius_px)
        if v is not None:
            centres.append(start + 0.5 * (stop - start))
            vels.append(v)
    return _velocity_table(centres, vels, f0, f1)


def _frames_xy(features: pd.DataFrame, columns=("x", "y")) -> dict:
    """{frame: (n, 2) float64 array of ``columns``}, rows in their order within a frame, by
    one stable sort and split instead of a pandas group per frame."""
    fr = features["frame"].to_numpy(np.int64)
    order = np.argsort(fr, kind="stable")
    return dict(zip(*_split_by_frame(fr[order], features[list(columns)].to_numpy(np.float64)[order])))


def _split_by_frame(fr: np.ndarray, values: np.ndarray) -> tuple[list, list]:
    """The frames (ascending ints) of ``fr`` (sorted) and the blocks of rows of ``values`` of each."""
    keys, starts = np.unique(fr, return_index=True)
    return keys.tolist(), np.split(values, starts[1:])


def _window_velocity(grouped: dict, start: int, stop: int, R: float, *, bin_px: float, smooth_px: float,
                     shift_radius_px: float):
    """Drift velocity (px/frame) of the window of frame pairs (t, t + 1), start ≤ t < stop:
    the peak of the displacement histogram refined by mean shift
    (:func:`estimate_drift_from_features`); None when the window holds no pair."""
    from scipy import ndimage  # here, not at import: scipy.ndimage and .spatial took 0.2 s
    from scipy.spatial import cKDTree  # of every run's start-up, before any work

    nb = int(math.ceil(2 * R / bin_px))
    disp = []
    for t in range(start, stop):
        a, b = grouped.get(t), grouped.get(t + 1)
        if a is None or b is None or len(a) == 0 or len(b) == 0:
            continue
        tb = cKDTree(b)
        pairs = tb.query_ball_point(a, R)
        n_per = np.fromiter((len(js) for js in pairs), dtype=np.intp, count=len(pairs))
        if n_per.sum():
            # all pairs of this frame at once, in the same order as one feature at a time
            jj = np.fromiter(itertools.chain.from_iterable(pairs), dtype=np.intp, count=int(n_per.sum()))
            disp.append(b[jj] - np.repeat(a, n_per, axis=0))
    if not disp:
        return None
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
    return px, py


def _velocity_table(centres, vels, f0: int, f1: int) -> pd.DataFrame:
    """Per-frame drift velocity f0..f1 interpolated between window centres (held constant
    beyond the first and last), as a DataFrame ``dx_px``, ``dy_px`` indexed by ``frame``."""
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


def _subtract_drift(feats: pd.DataFrame, cum: pd.DataFrame) -> None:
    """In place: ``x``, ``y`` (px) become ``x_raw``, ``y_raw`` and the cumulative drift
    ``cum`` (indexed by frame) is subtracted from ``x``, ``y``."""
    feats["x_raw"] = feats["x"]
    feats["y_raw"] = feats["y"]
    off = cum.reindex(feats["frame"].to_numpy()).to_numpy()
    feats["x"] = feats["x_raw"] - off[:, 0]
    feats["y"] = feats["y_raw"] - off[:, 1]


def _cumulative(vel: pd.DataFrame) -> pd.DataFrame:
    """Cumulative displacement at each frame from per-frame velocities (0 at the first frame)."""
    v = vel[["dx_px", "dy_px"]].to_numpy(np.float64)
    c = np.zeros_like(v)
    if len(v) > 1:
        c[1:] = np.cumsum(v[:-1], axis=0)  # sequential sums (as StreamLinker's, bit for bit)
    return pd.DataFrame(c, index=vel.index, columns=["dx_px", "dy_px"])


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
    feats = feats.iloc[np.argsort(feats["frame"].to_numpy(), kind="stable")]
    tracks = None
    for _ in range(8):
        try:
            tracks = _link_table(feats, radius, memory)
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
    return _relabel(tracks.reset_index(drop=True)), radius, notes


def _link_kwargs(radius: float, memory: int) -> dict:
    """trackpy.link_iter options of every nta linking pass (adaptive search, KDTree)."""
    return dict(memory=int(memory), adaptive_stop=max(0.5, 0.2 * float(radius)), adaptive_step=0.9,
                neighbor_strategy="KDTree")


def _frame_coords(feats: pd.DataFrame):
    """(t, (n, 2) [y, x] array) for every frame from the first to the last with features
    (empty arrays between), as :func:`trackpy.link` feeds :func:`trackpy.link_iter`;
    ``feats`` sorted by frame."""
    keys, blocks = _split_by_frame(feats["frame"].to_numpy(np.int64), feats[["y", "x"]].to_numpy(np.float64))
    parts = dict(zip(keys, blocks))
    empty = np.empty((0, 2))
    for t in range(keys[0], keys[-1] + 1):
        yield t, parts.get(t, empty)


def _link_table(feats: pd.DataFrame, radius: float, memory: int) -> pd.DataFrame:
    """``feats`` (sorted by frame, not empty) with a ``particle`` column from
    :func:`trackpy.link_iter`: what :func:`trackpy.link` does, with the frame order kept
    stable, so that :class:`StreamLinker` (the same calls, fed while locating) gives the
    same table. Long videos are linked in two processes (:func:`_link_ids`)."""
    out = feats.copy()
    out["particle"] = _link_ids(list(_frame_coords(feats)), radius, memory)
    return out


#: Linking passes of at least this many features run in two processes (:func:`_link_ids`)
#: when two CPUs are free for it; smaller ones (~0.2 s of linking) are not worth a fork.
SPLIT_MIN_FEATURES = 20_000


def _split_warmup_frames(memory: int) -> int:
    """Frames the second process links before its share, to forget its fresh start: the
    splice check needs ``memory + 2`` agreeing frames, and the predecessors of their
    features lie up to ``memory + 1`` frames earlier."""
    return max(30, 4 * (int(memory) + 2))


def _can_fork() -> bool:
    """Linux with fork and at least two CPUs available to this process."""
    import sys

    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


def _link_sequential(coords, radius: float, memory: int, check=None) -> np.ndarray:
    """Labels of :func:`trackpy.link_iter` over ``coords`` (iterable of (t, (n, 2) [y, x])),
    concatenated in frame order, int64; ``check()`` is called after every frame."""
    import trackpy as tp

    ids = []
    for _, labels in tp.link_iter(iter(coords), float(radius), **_link_kwargs(radius, memory)):
        ids.extend(labels)
        if check is not None:
            check()
    return np.asarray(ids, dtype=np.int64)


def _predecessors(labels: np.ndarray) -> np.ndarray:
    """For features in frame order with track ``labels``: the index of the previous feature
    of the same track, or -1 (int64)."""
    order = np.argsort(labels, kind="stable")  # by track, frame order kept within a track
    pred = np.full(labels.size, -1, np.int64)
    same = labels[order[1:]] == labels[order[:-1]]
    pred[order[1:][same]] = order[:-1][same]
    return pred


def _link_ids(coords: list, radius: float, memory: int, check=None) -> np.ndarray:
    """Labels of one :func:`trackpy.link_iter` pass over ``coords``, the same as one
    sequential pass gives (the same partition into tracks; the numbers may differ, and
    every caller renumbers with :func:`_relabel`), computed in two processes.

    trackpy links frame by frame, and what it does at frame ``t + 1`` depends on the
    past only through its state after frame ``t``: which features of the last
    ``memory + 1`` frames end a track so far (no motion predictor is used). So the video
    is cut at frame ``s``: this process links frames ``[0, s)``, a forked child links
    ``[s − w, end)`` from a fresh start (``w`` warm-up frames,
    :func:`_split_warmup_frames`). If, on the last ``memory + 2`` frames before ``s``,
    every feature has the same predecessor in both runs, both are in the same state
    after frame ``s − 1`` and the child's links from ``s`` on are the ones this process
    would make; its tracks are joined to ours through their last feature before ``s``.
    Otherwise (or if the child fails) this process links on from ``s`` itself, so the
    result never depends on the split. Used for passes of at least
    :data:`SPLIT_MIN_FEATURES` features on Linux with two CPUs. Measured on a 1500-frame
    1280×1024 video (254 782 features, 2 CPUs, 2 runs each): the final pass 1.72–1.84 →
    0.96–0.98 s, the measuring pass (100 000 features) 0.75–0.81 → 0.49–0.63 s; the whole
    ``nta process`` run 14.6 → 13.5 s (median of 3 interleaved runs each).

    Parameters
    ----------
    coords : list of (int, ndarray)
        ``(t, (n_t, 2) float64 [y, x] px)`` for consecutive frames, as
        :func:`_frame_coords` gives.
    radius : float
        Search radius, px.
    memory : int
        trackpy's memory, frames.
    check : callable, optional
        Called after every frame this process links (it may raise to stop).

    Returns
    -------
    ndarray, (N,) int64
        Track labels of the N features in frame order.
    """
    import mmap

    counts = np.fromiter((len(c) for _, c in coords), np.int64, len(coords))
    n = int(counts.sum())
    warm = _split_warmup_frames(memory)
    if n < SPLIT_MIN_FEATURES or len(coords) < 4 * warm or not _can_fork():
        return _link_sequential(coords, radius, memory, check)
    cum = np.concatenate([[0], np.cumsum(counts)])  # cum[i]: features in coords[:i]
    cand = np.arange(warm + 1, len(coords) - 1)
    s = int(cand[np.argmin(np.abs(cum[cand] - (n - cum[cand - warm])))])  # equal shares
    c0 = int(cum[s - warm])  # first feature the child labels
    import warnings

    import trackpy as tp

    try:
        buf = mmap.mmap(-1, 8 * (n - c0 + 1))  # anonymous, shared with the child
    except OSError as e:
        log.info("two-process linking not possible (%s); linking in one process", e)
        return _link_sequential(coords, radius, memory, check)
    parent = os.getpid()
    pid = None
    try:
        # SIGINT and SIGTERM are blocked across the fork and stay blocked in the child: no
        # Python signal handler can raise in the child before it is inside its own
        # try/os._exit (an exception escaping there would run this function's clean-up
        # in the child); a signal pending meanwhile reaches this process when it unblocks
        # them, with the child's pid known, so the clean-up below stops the child
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            with warnings.catch_warnings():  # Python ≥ 3.12 warns of fork in a threaded process:
                warnings.simplefilter("ignore", DeprecationWarning)  # the child only links and exits
                pid = os.fork()
                if pid == 0:
                    _split_child(buf, coords[s - warm:], radius, memory, parent)  # never returns
        except OSError as e:  # no process to spare (limits, memory): one process, as before
            log.info("two-process linking not possible (%s); linking in one process", e)
        finally:
            if os.getpid() == parent:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if not pid:
            return _link_sequential(coords, radius, memory, check)
        gen = tp.link_iter(iter(coords), float(radius), **_link_kwargs(radius, memory))
        ids = []
        for k, (_, labels) in enumerate(gen):
            ids.extend(labels)
            if check is not None:
                check()
            if k == s - 1:
                break
        _, status = os.waitpid(pid, 0)
        pid = None
        own = np.asarray(ids, dtype=np.int64)
        view = np.frombuffer(buf, np.int64)
        child = view[1:].copy() if status == 0 and view[0] == 1 else None
        del view  # no view may outlive the buffer (closed below)
        if child is not None:
            w0 = int(cum[s - (memory + 2)])  # first feature of the checked frames
            pa = _predecessors(own[c0:])  # both relative to feature c0
            pc = _predecessors(child[: own.size - c0])
            if np.array_equal(pa[w0 - c0:], pc[w0 - c0:]):
                # the child's tracks, joined to ours through their last feature before s
                rest = child[own.size - c0:]
                head = child[: own.size - c0]
                last = {}
                for j in range(w0 - c0, head.size):
                    last[int(head[j])] = j
                new = int(own.max()) + 1 if own.size else 0
                mapped = np.fromiter((own[c0 + last[c]] if c in last else new + c for c in rest.tolist()),
                                     np.int64, rest.size)
                log.debug("two-process linking: spliced at frame %d of %d", s, len(coords))
                return np.concatenate([own, mapped])
            log.info("two-process linking: the runs disagree before frame %d; linking on in one process", s)
        else:
            log.info("two-process linking: the second process failed (status %d); linking on in one process", status)
        for _, labels in gen:  # go on from frame s in this process (the sequential result)
            ids.extend(labels)
            if check is not None:
                check()
        return np.asarray(ids, dtype=np.int64)
    finally:
        if os.getpid() != parent:  # never the child's way out (see _split_child)
            os._exit(1)
        if pid:  # this process raised while the child runs: stop it
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        buf.close()


def _split_child(buf, coords, radius: float, memory: int, parent: int) -> None:
    """The forked process of :func:`_link_ids`: link ``coords``, write the labels into the
    shared ``buf`` (flag, then labels), and leave with ``os._exit`` whatever happens
    (never returning into the caller's code: no clean-up of the parent's objects runs
    here). It dies with its parent (``PR_SET_PDEATHSIG``): killed with ``kill -9`` the
    parent would otherwise leave it linking on, holding the output's lock."""
    status = 1
    try:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - only a safeguard
            pass
        if os.getppid() != parent:  # the parent died before the safeguard was set
            return
        import trackpy as tp

        tp.quiet()
        out = np.frombuffer(buf, np.int64)
        out[1:] = _link_sequential(coords, radius, memory)
        out[0] = 1
        status = 0
    finally:
        os._exit(status)


def _relabel(tracks: pd.DataFrame) -> pd.DataFrame:
    """Track labels numbered by first appearance in the frame-ordered table.

    trackpy numbers new tracks in the iteration order of a set of its point objects
    (hashed by address), so the same links get other labels from run to run; relabelled,
    a result is reproducible."""
    order = np.argsort(tracks["frame"].to_numpy(), kind="stable")
    codes = np.empty(len(tracks), np.int64)
    codes[order] = pd.factorize(tracks["particle"].to_numpy()[order])[0]
    tracks["particle"] = codes
    return tracks


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
    _subtract_drift(feats, cum)
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
        _first_pass_note(info, first_frames, n_frames_all, used)
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
    return _link_result(tracks, total, final, notes, info, split_alpha)


def _link_result(tracks, total, final, notes, info, split_alpha) -> LinkResult:
    """The last step of :func:`link_features` (and :class:`StreamLinker`): mean drift
    velocity, cuts at implausible steps, the :class:`LinkResult`."""
    steps = total.diff().dropna()
    v = (float(steps["dx_px"].mean()), float(steps["dy_px"].mean())) if len(steps) else (0.0, 0.0)
    tracks, n_cuts = split_implausible_steps(tracks, alpha=split_alpha)
    if n_cuts:
        notes.append(f"{n_cuts} track(s) cut at a step too large for the track's own Brownian steps "
                     f"(likely mislinks to a neighbour; test level {split_alpha:g})")
    res = LinkResult(tracks, total, final, notes, v)
    res.radius_info = info
    return res


def _first_pass_note(info: dict, first_frames: int, n_frames_all: int, used: float) -> None:
    info["first_pass_px"] = float(used)
    info["first_pass_frames"] = int(first_frames)
    if first_frames < n_frames_all:
        info["reason"] += f" (first pass on the first {first_frames} of {n_frames_all} frames)"


class _Cancelled(Exception):
    """The run stopped: the linking thread ends without a result."""


class _Fallback(Exception):
    """Streaming linking gave up (an oversize subnetwork, too few frames): link in one batch."""


def _import_linking() -> None:
    """Import what linking needs (trackpy, with scipy.stats; trackpy's numba functions set
    to load from the disk cache) and silence trackpy's progress messages. Idempotent; the
    errors of a failed import are raised again by the linking that needs it."""
    try:
        import trackpy as tp
        from scipy import stats  # noqa: F401 - data_search_radius_px

        from ._jitcache import cache_trackpy_jit
    except Exception:  # noqa: BLE001 - raised again where trackpy is used
        return
    tp.quiet()
    cache_trackpy_jit()


class StreamLinker:
    """:func:`link_features`, fed chunk by chunk while locating goes on.

    Linking (trackpy, Python) used to start after the last frame was located; here it runs
    in a background thread beside the locator (whose numba threads release the GIL), on
    each frame as soon as that frame's pre-link drift is final. The steps and their
    results are those of :func:`link_features`, bit for bit (``tests/test_link_stream.py``):

    1. The drift windows of :func:`estimate_drift_from_features` are computed as their
       frames arrive (a window of frame pairs needs its last frame located); a frame's
       velocity is final once the window centres around it are, and its cumulative
       drift once every earlier frame's velocity is.
    2. Each linking pass is one :func:`trackpy.link_iter` fed frame by frame (the calls
       :func:`trackpy.link` makes). With ``adaptive_radius`` the measuring pass stops at
       the prefix :func:`link_features` would use (decided as the feature counts arrive),
       the radius is measured, and the final pass runs from the first frame again,
       following the locator.
    3. :meth:`finish` joins the thread and builds the tracks table, the residual drift
       and the cuts in the caller's thread.

    Should trackpy meet a subnetwork too large even with adaptive search, or the video
    hold fewer than two frames with features, :meth:`finish` links the whole table with
    :func:`link_features` (which then reduces the radius), so the result never depends
    on streaming.

    With ``follow=False`` no linking thread is started: the chunks are collected and linked
    in the caller's thread by :meth:`finish` (the same result), each pass in two processes
    when it is long enough (:func:`_link_ids`); trackpy is imported meanwhile in a short
    thread started with the first chunk. A linking thread also raised
    the peak memory of a 3000-frame 640×480 run by 30–45 MB (its allocations land in a
    malloc arena of their own). On 2 CPUs, where the locator's
    two threads keep both busy, linking beside them was measured no faster (5 interleaved
    runs of a 1500-frame 1280×1024 video: median 14.9 s against 14.3 s linking afterwards)
    — each second the linker took was a second the locator lost, plus contention for the
    GIL and the caches. With a CPU to spare (the locator on 1 thread of 2) following
    saved 3.5 s (20.1 → 16.6 s).

    Parameters
    ----------
    search_range_px, memory, max_drift_px, drift_smoothing, split_alpha, adaptive_radius, min_track_length
        As :func:`link_features` (px, frames, px/frame, frames, level, bool, steps).
    follow : bool
        Link while the chunks arrive (True) or only after the last one (False).

    Examples
    --------
    >>> sl = StreamLinker(search_range_px=10.0)  # doctest: +SKIP
    >>> for first, chunk in chunks:  # doctest: +SKIP
    ...     f = locate_frames(chunk, first, diameter=9, minmass=100.0)
    ...     sl.add(f, first, len(chunk))
    >>> result = sl.finish(pd.concat(all_f, ignore_index=True))  # doctest: +SKIP
    """

    def __init__(self, *, search_range_px: float, memory: int = DEFAULT_MEMORY, max_drift_px: float = 10.0,
                 drift_smoothing: int = 15, split_alpha: float = 0.0, adaptive_radius: bool = False,
                 min_track_length: int = 13, follow: bool = True):
        import queue
        import threading

        self.follow = bool(follow)

        self.search_range_px = float(search_range_px)
        self.memory = int(memory)
        self.drift_smoothing = int(drift_smoothing)
        self.split_alpha = float(split_alpha)
        self.adaptive_radius = bool(adaptive_radius)
        self.min_track_length = int(min_track_length)
        self.max_drift_px = float(max_drift_px)
        self._R = float(max_drift_px) + self.search_range_px
        self._shift = _shift_radius_px(self._R)
        self._q = queue.Queue()
        self._xy = {}  # frame -> (n, 2) float64 [x, y] as located (frames with features only)
        self._index = {}  # frame -> its index among the frames with features
        self._cumcount = 0  # features so far
        self._k = None  # first-pass prefix length (frames with features), once known
        self._located = None  # last frame located
        self._last_feat = None  # last frame with features so far
        self._f0 = None
        self._ended = False
        self._cancelled = False
        # drift: windows computed in order from f0 (start, velocity or None)
        self._wins = []
        self._cum = []  # cumulative drift (x, y) of frames f0, f0 + 1, ... (final values only)
        self._cum_last = np.zeros((1, 2))
        self._v_done = None  # velocity final (and summed into _cum) for frames < _v_done
        self._out = {}
        self._thread = None
        self._imports = None
        if self.follow:
            self._thread = threading.Thread(target=self._run, name="nta-link", daemon=True)
            self._thread.start()

    # ---- caller's side ---------------------------------------------------------------
    def add(self, features: pd.DataFrame, first_frame: int, n_frames: int) -> None:
        """Hand over the features of frames ``first_frame`` .. ``first_frame + n_frames - 1``
        (all of them located, in order; a chunk may hold no feature)."""
        fr = features["frame"].to_numpy(np.int64)
        xy = features[["x", "y"]].to_numpy(np.float64)
        self._q.put(("chunk", fr, xy, int(first_frame), int(n_frames)))
        if not self.follow and self._imports is None:
            # trackpy's import (with scipy.stats: 0.6-0.7 s of Python holding the GIL) in a
            # thread beside the locator, not in finish(). Measured against importing in
            # finish(), 3-4 interleaved runs each: 1500 frames 640×480 4.53 vs 4.87 s,
            # 1280×1024 13.7 vs 14.0 s (median); the peak RSS rises 35 MB (the thread's
            # allocations land in a malloc arena of their own). Started with the first
            # chunk, not before the background step: there it held up the sampled frames'
            # decoding (Python between PyAV calls waits for the GIL), 0.3 s more for 640×480.
            import threading

            self._imports = threading.Thread(target=_import_linking, name="nta-import", daemon=True)
            self._imports.start()

    def cancel(self) -> None:
        """Stop the thread (the run is ending without linking); returns at once."""
        self._cancelled = True
        self._q.put(("cancel",))

    def finish(self, features: pd.DataFrame) -> LinkResult:
        """All frames are in: wait for the linking thread and return what
        :func:`link_features` returns for ``features`` (the concatenated chunks).

        Raises
        ------
        Exception
            Whatever the linking thread raised (other than the fallbacks above).
        """
        self._q.put(("end",))
        if self._thread is not None:
            self._thread.join()
        else:
            if self._imports is not None:
                self._imports.join()
            self._run()  # follow=False: link here, in the caller's thread (one malloc arena)
        if "error" in self._out:
            raise self._out["error"]
        if "fallback" in self._out:
            log.info("streaming linking fell back to one batch: %s", self._out["fallback"])
            self._release()
            return link_features(features, search_range_px=self.search_range_px, memory=self.memory,
                                 max_drift_px=self.max_drift_px, drift_smoothing=self.drift_smoothing,
                                 split_alpha=self.split_alpha, adaptive_radius=self.adaptive_radius,
                                 min_track_length=self.min_track_length)
        o = self._out
        self._release()
        # frame order (as link_features sorts); the pipeline's chunks come in order already,
        # and then no reordered copy of the table is made (pandas copies on write: the
        # caller's table is never changed by the columns set below)
        feats = features.reset_index(drop=True)
        fr = feats["frame"].to_numpy()
        if fr.size > 1 and np.any(fr[1:] < fr[:-1]):
            feats = feats.iloc[np.argsort(fr, kind="stable")].reset_index(drop=True)
        if len(feats) != len(o["ids"]):
            raise RuntimeError(f"streaming linker saw {len(o['ids'])} features, the table holds {len(feats)}")
        cum = o["cum"]
        _subtract_drift(feats, cum)
        feats["particle"] = o["ids"]
        tracks = _relabel(feats)
        tracks, total = _remove_residual_drift(tracks, cum, self.drift_smoothing)
        return _link_result(tracks, total, o["final"], [], o["info"], self.split_alpha)

    def _release(self):
        """Drop the per-frame copies (positions, drift) once linked: the caller keeps this
        object until its run ends, and they held ~9 MB per 128 000 features through sizing."""
        self._xy, self._index, self._cum, self._wins, self._out = {}, {}, [], [], {}

    # ---- linking thread ----------------------------------------------------------------
    def _run(self):
        try:
            _import_linking()
            self._link()
        except _Cancelled:
            pass
        except _Fallback as e:
            self._out["fallback"] = str(e)
        except BaseException as e:  # noqa: BLE001 - handed to finish()
            import trackpy as tp

            if isinstance(e, tp.SubnetOversizeException):
                self._out["fallback"] = "subnetwork too large"
            else:
                self._out["error"] = e

    def _pull(self):
        """Take one item from the caller; update the drift state."""
        item = self._q.get()
        if self._cancelled or item[0] == "cancel":
            self._cancelled = True
            raise _Cancelled()
        if item[0] == "end":
            self._ended = True
            self._end_drift()
            return
        _, fr, xy, first, n = item
        if fr.size:
            if np.any(np.diff(fr) < 0) or (self._last_feat is not None and fr[0] <= self._last_feat):
                raise _Fallback("features not in frame order")
            for k, part in zip(*_split_by_frame(fr, xy)):
                if self._f0 is None:
                    self._f0 = k
                    self._v_done = k
                self._xy[k] = part
                i = len(self._index)
                self._index[k] = i
                self._cumcount += len(part)
                if self._k is None and self._cumcount > FIRST_PASS_MAX_FEATURES:
                    self._k = max(i, FIRST_PASS_MIN_FRAMES)
                self._last_feat = k
        self._located = first + n - 1
        if self.follow:
            self._advance_drift()

    def _window(self, start, stop):
        return _window_velocity(self._xy, start, stop, self._R, bin_px=DRIFT_BIN_PX, smooth_px=DRIFT_SMOOTH_PX,
                                shift_radius_px=self._shift)

    def _advance_drift(self):
        """Compute the windows whose frames are all located; extend the final cumulative drift."""
        if self._f0 is None:
            return
        W = DRIFT_WINDOW_FRAMES
        while True:
            start = self._f0 + W * len(self._wins)
            if start + W > self._located:
                break
            self._wins.append((start, self._window(start, start + W)))
        # centres final: windows ending at or before the last frame with features seen
        cs, vs = [], []
        for start, v in self._wins:
            if start + W > self._last_feat:
                break
            if v is not None:
                cs.append(start + 0.5 * W)
                vs.append(v)
        if cs:
            self._extend_cum(cs, vs, int(math.floor(cs[-1])))

    def _extend_cum(self, cs, vs, through):
        """Velocities of frames _v_done .. through are final: add them to the cumulative drift."""
        if through < self._v_done:
            return
        t = np.arange(self._v_done, through + 1)
        c = np.asarray(cs)
        vv = np.asarray(vs)
        v = np.column_stack([np.interp(t, c, vv[:, 0]), np.interp(t, c, vv[:, 1])])
        block = np.cumsum(np.vstack([self._cum_last, v]), axis=0)  # sequential, as _cumulative
        self._cum.extend(block[:-1])
        self._cum_last = block[-1:]
        self._v_done = through + 1

    def _end_drift(self):
        """The last frame is in: the remaining windows and the last (possibly short) one."""
        if self._f0 is None or self._last_feat == self._f0:
            raise _Fallback("fewer than two frames with features")
        f0, f1, W = self._f0, self._last_feat, DRIFT_WINDOW_FRAMES
        wins = [(s, v) for s, v in self._wins if s < f1]
        for start in range(f0 + W * len(wins), f1, W):
            wins.append((start, self._window(start, min(start + W, f1))))
        cs, vs = [], []
        for start, v in wins:
            if v is not None:
                cs.append(start + 0.5 * (min(start + W, f1) - start))
                vs.append(v)
        self._wins = wins
        if not cs:
            cs, vs = [0.0], [(0.0, 0.0)]  # no pair anywhere: no drift (as _velocity_table)
        # frames up to f1 - 1 carry a velocity into the sum; frame f1's own is not needed
        self._extend_cum(cs, vs, f1)

    def _coords(self, stop_at_prefix: bool):
        """(t, [y, x] drift-corrected) for frames f0 .. f1 as they become final."""
        while self._f0 is None:
            if self._ended:
                return
            self._pull()
        t = self._f0
        empty = np.empty((0, 2))
        while True:
            while t >= self._f0 + len(self._cum) and not self._ended:
                self._pull()
            if t > self._last_feat and self._ended:
                return
            if t >= self._f0 + len(self._cum):
                return
            if stop_at_prefix and self._k is not None and self._index.get(t, -1) >= self._k:
                self._prefix_stop = True
                return
            xy = self._xy.get(t)
            if xy is None:
                yield t, empty
            else:
                cx, cy = self._cum[t - self._f0]
                yield t, np.column_stack([xy[:, 1] - cy, xy[:, 0] - cx])
            t += 1

    def _pass(self, radius, stop_at_prefix=False):
        """One linking pass; returns the labels of the features it saw, in frame order.
        Following the locator, frames are linked as they come; otherwise every frame is
        there and the pass may run in two processes (:func:`_link_ids`)."""
        self._prefix_stop = False
        coords = self._coords(stop_at_prefix)
        if not self.follow:
            return _link_ids(list(coords), radius, self.memory, check=self._check_cancel)
        return _link_sequential(coords, radius, self.memory, check=self._check_cancel)

    def _check_cancel(self):
        if self._cancelled:
            raise _Cancelled()

    def _cum_frame(self, upto):
        """The cumulative drift of frames f0 .. ``upto`` as :func:`_cumulative` gives it."""
        n = upto - self._f0 + 1
        arr = np.asarray(self._cum[:n]).reshape(-1, 2)
        return pd.DataFrame(arr, index=pd.Index(np.arange(self._f0, self._f0 + n), name="frame"),
                            columns=["dx_px", "dy_px"])

    def _link(self):
        while self._f0 is None and not self._ended:
            self._pull()
        if self._f0 is None:
            raise _Fallback("no features")
        used = self.search_range_px
        ids = self._pass(used, stop_at_prefix=self.adaptive_radius)
        info = None
        final = used
        if self.adaptive_radius:
            prefix = self._prefix_stop
            n1 = ids.size
            frames1 = sorted(self._index)[: len(self._index) if not prefix else self._k]
            if not prefix:
                while not self._ended:
                    self._pull()
            last1 = frames1[-1]
            fr = np.repeat(np.asarray(frames1, np.int64), [len(self._xy[f]) for f in frames1])
            if fr.size != n1:
                raise RuntimeError(f"first pass labelled {n1} features of {fr.size}")
            xy = np.concatenate([self._xy[f] for f in frames1])
            cum = self._cum_frame(last1)
            off = cum.reindex(fr).to_numpy()
            t1 = pd.DataFrame({"frame": fr, "x": xy[:, 0] - off[:, 0], "y": xy[:, 1] - off[:, 1], "particle": ids})
            t1, _ = _remove_residual_drift(_relabel(t1), cum, self.drift_smoothing)
            r2, info = data_search_radius_px(t1, max_radius_px=used, min_steps=self.min_track_length)
            del t1
            if r2 < used:
                final = r2
                ids = self._pass(r2)
            elif prefix:
                ids = self._pass(final)
        while not self._ended:
            self._pull()
        if info is not None:
            _first_pass_note(info, len(frames1), len(self._index), used)
        self._out.update(ids=ids, cum=self._cum_frame(self._last_feat), final=final, info=info)
