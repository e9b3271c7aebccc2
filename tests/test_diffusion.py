"""Tests of the per-track diffusion kernel (CVE), its wrappers and the per-track table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

try:  # hypothesis is a test extra; without it only the property test is skipped
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None
from naive import naive_cve_tracks
from nta.calibration import make_calibration, stokes_einstein_diameter, stokes_einstein_diffusion
from nta.diffusion import (
    DEFAULT_MIN_TRACK_LENGTH,
    PER_TRACK_COLUMNS,
    diffusion_coefficients,
    diffusion_coefficients_dask,
    flatten_tracks,
    per_track_table,
    relative_sd_of_d,
)
from nta.kernels.diffusion import cve_tracks, cve_tracks_serial

# The reference case of the brief: 100 nm in water at 22 °C, 25 fps, 0.166 µm/px.
PX_UM = 0.166
FPS = 25.0
TEMP_C = 22.0


# --------------------------------------------------------------------------- helpers


def random_tracks(rng, n_tracks=60, max_len=200):
    """Random flat track set: random lengths 0–max_len, gaps, NaN points, special tracks."""
    lengths = list(rng.integers(0, max_len + 1, size=n_tracks))
    lengths[:4] = [0, 1, 2, 3]  # empty, one-point, two-point, three-point tracks
    lengths.append(25)  # the all-NaN track (last)
    pos_l, frame_l = [], []
    for k, m in enumerate(lengths):
        jumps = rng.choice([1, 1, 1, 1, 1, 1, 2, 3], size=m)  # gaps (linking memory)
        fr = rng.integers(0, 100) + np.cumsum(jumps) - jumps[0] if m else np.empty(0, np.int64)
        p = rng.normal(0, 2.0, size=(m, 2)).cumsum(axis=0) + rng.uniform(0, 500, size=2)
        if m:
            nan = rng.random(m) < 0.05
            p[nan, rng.integers(0, 2, size=nan.sum())] = np.nan  # one coordinate missing
            p[rng.random(m) < 0.02] = np.nan
        if k == len(lengths) - 1:
            p[:] = np.nan
        pos_l.append(p)
        frame_l.append(np.asarray(fr, np.int64))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    pos = np.concatenate(pos_l).reshape(-1, 2) if pos_l else np.empty((0, 2))
    frame = np.concatenate(frame_l).astype(np.int64)
    return np.ascontiguousarray(pos), frame, offsets


def simulate_blurred_brownian(rng, n_tracks, n_frames, d_px2_frame, sigma_px, blur_fraction=1.0, k_sub=30):
    """Brownian tracks seen through a shutter open for ``blur_fraction`` of each frame.

    The path is sampled at the midpoints of k_sub equal parts of the exposure window; the
    recorded position is their mean plus Gaussian localization noise. The discrete
    average has R = blur_fraction (1 − 1/k_sub²) / 6 exactly (≈ blur_fraction / 6).
    Returns pos (n_tracks * n_frames, 2), frame, offsets.
    """
    f = blur_fraction
    s = (np.arange(k_sub) + 0.5) * f / k_sub  # sample times within a frame, frames
    t = (np.arange(n_frames)[:, None] + s[None, :]).ravel()  # all sample times
    dt = np.diff(np.concatenate([[0.0], t]))
    steps = rng.normal(size=(n_tracks, t.size, 2)) * np.sqrt(2.0 * d_px2_frame * dt)[None, :, None]
    path = np.cumsum(steps, axis=1)
    obs = path.reshape(n_tracks, n_frames, k_sub, 2).mean(axis=2)
    obs = obs + rng.normal(scale=sigma_px, size=obs.shape) + 100.0
    pos = np.ascontiguousarray(obs.reshape(-1, 2))
    frame = np.tile(np.arange(n_frames, dtype=np.int64), n_tracks)
    offsets = np.arange(n_tracks + 1, dtype=np.int64) * n_frames
    return pos, frame, offsets


def assert_same(a, b, rtol=1e-10):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.isnan(x) if x.dtype.kind == "f" else x * 0, np.isnan(y) if y.dtype.kind == "f" else y * 0)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True)


def d_px(diameter_nm=100.0):
    from nta.calibration import water_viscosity

    d_um = stokes_einstein_diffusion(diameter_nm, TEMP_C, water_viscosity(TEMP_C))
    return d_um / PX_UM**2 / FPS


# --------------------------------------------------------------------------- kernel vs naive


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("r", [0.0, 1.0 / 12.0, 1.0 / 6.0])
def test_kernel_matches_naive(seed, r):
    rng = np.random.default_rng(seed)
    pos, frame, offsets = random_tracks(rng)
    ref = naive_cve_tracks(pos, frame, offsets, r)
    assert_same(cve_tracks(pos, frame, offsets, r), ref)
    assert_same(cve_tracks_serial(pos, frame, offsets, r), ref)
    # the special tracks: empty, one point, two points (one step), all NaN → NaN D
    d = ref[0]
    assert np.isnan(d[[0, 1, 2, -1]]).all()
    assert ref[5][0] == 0 and ref[5][-1] == 0 and ref[5][1] <= 1
    assert np.isfinite(d).sum() > 40


def test_kernel_empty_input():
    out = cve_tracks(np.empty((0, 2)), np.empty(0, np.int64), np.zeros(1, np.int64), 1 / 6)
    assert all(o.shape == (0,) for o in out)
    res = diffusion_coefficients(np.empty((0, 2)), np.empty(0, np.int64), np.zeros(1, np.int64), pixel_size_um=PX_UM, fps=FPS)
    assert set(res) >= {"D_um2_s", "D_var_um4_s2", "sigma_loc_um", "n_steps", "n_points"}
    assert all(v.shape == (0,) for v in res.values())
    # only zero-length tracks
    res = diffusion_coefficients(np.empty((0, 2)), np.empty(0, np.int64), np.zeros(4, np.int64), pixel_size_um=PX_UM, fps=FPS)
    assert np.isnan(res["D_um2_s"]).all() and (res["n_points"] == 0).all() and res["D_um2_s"].shape == (3,)


def test_kernel_hand_computed():
    # x steps +1, -1, +2 ; y steps 0, 2, 0 (frames 0..3) ; then a gap, then a lone pair
    pos = np.array([[0, 0], [1, 0], [0, 2], [2, 2], [5, 5], [6, 5]], float)
    frame = np.array([0, 1, 2, 3, 5, 6])
    d, var_d, s2, n_steps, n_pairs, n_points = cve_tracks(pos, frame, np.array([0, 6]), 0.0)
    # unit steps: (1,0), (-1,2), (2,0), [gap], (1,0) → N = 4, Σ|Δ|² = 11
    # adjacent pairs: frames 0-1-2 and 1-2-3, Σ (Δx Δx' + Δy Δy') = -1 + -2
    # across the missed frame 4: frames 3 → 5, Δ₂ = (3, 3), counted as |Δ₂|²/2 − 2⟨Δx²⟩
    sq = 11 / (2 * 4)
    cov = (-1 - 2 + 18 / 2 - 2 * sq) / (2 * 3)
    assert n_steps[0] == 4 and n_pairs[0] == 3 and n_points[0] == 6
    assert d[0] == pytest.approx(sq / 2 + cov)
    assert s2[0] == pytest.approx(-cov)
    # without the missed frame's lag-2 term it is Vestergaard et al.'s adjacent-step CVE
    d3, _, _, _, n3, _ = cve_tracks(pos[:4], frame[:4], np.array([0, 4]), 0.0)
    assert n3[0] == 2 and d3[0] == pytest.approx(((1 + 5 + 4) / 6) / 2 + (-3) / 4)


def test_nan_point_breaks_steps_and_pairs():
    # finite points at frames 0, 1, 3, 4, 5: unit steps 0→1, 3→4, 4→5; adjacent pair
    # 3-4-5; across the missing point: 1 → 3
    pos = np.array([[0, 0], [1, 1], [np.nan, 2], [3, 3], [4, 4], [5, 6]], float)
    frame = np.arange(6)
    _, _, _, n_steps, n_pairs, n_points = cve_tracks(pos, frame, np.array([0, 6]), 0.0)
    assert (n_steps[0], n_pairs[0], n_points[0]) == (3, 2, 5)


def test_kernel_inf_points_masked_like_nan():
    # ±inf coordinates are not finite: the point is missing, exactly as with NaN
    pos = np.array([[0, 0], [1, 1], [np.inf, 2], [3, 3], [4, -np.inf], [5, 6], [6, 6], [7, 8]], float)
    frame = np.arange(8)
    offsets = np.array([0, 8])
    got = cve_tracks(pos, frame, offsets, 0.0)
    pos_nan = np.where(np.isfinite(pos), pos, np.nan)
    assert_same(got, cve_tracks(pos_nan, frame, offsets, 0.0), rtol=0)
    assert_same(got, naive_cve_tracks(pos, frame, offsets, 0.0))
    assert (got[3][0], got[4][0], got[5][0]) == (3, 3, 6)


@pytest.mark.parametrize("order", ["random", "long_last", "empty_runs"])
def test_kernel_blocks_parallel_equals_serial_bitwise(order):
    # more tracks than the parallel kernel's blocks (1024), lengths ordered adversarially
    # for a split by track count; the parallel and serial kernels sum every track in the
    # same order, so they agree bit for bit, and both agree with the reference
    rng = np.random.default_rng(7)
    n_tracks = 3000
    lengths = rng.integers(0, 40, n_tracks)
    if order == "long_last":
        lengths = np.sort(lengths)
        lengths[-20:] = 2000
    elif order == "empty_runs":
        lengths[:700] = 0
        lengths[-900:] = 0
        lengths[1500:1600] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    step = np.where(rng.random(n) < 0.05, 2, 1)
    frame = np.cumsum(step).astype(np.int64)
    pos = rng.normal(0, 1.5, (n, 2)).cumsum(axis=0)
    pos[rng.random(n) < 0.02, rng.integers(0, 2)] = np.nan
    par = cve_tracks(pos, frame, offsets, 1 / 6)
    ser = cve_tracks_serial(pos, frame, offsets, 1 / 6)
    for a, b in zip(par, ser):
        np.testing.assert_array_equal(a, b)  # NaN == NaN here; bitwise for floats
    assert_same(par, naive_cve_tracks(pos, frame, offsets, 1 / 6))


def test_kernel_non_contiguous_positions():
    rng = np.random.default_rng(3)
    pos, frame, offsets = random_tracks(rng, n_tracks=30)
    wide = np.empty((pos.shape[0], 3))
    wide[:, :2] = pos
    strided = wide[:, :2]  # not C-contiguous
    assert not strided.flags["C_CONTIGUOUS"]
    ref = naive_cve_tracks(pos, frame, offsets, 0.1)
    assert_same(cve_tracks(strided, frame, offsets, 0.1), ref)
    assert_same(cve_tracks_serial(strided, frame, offsets, 0.1), ref)


# --------------------------------------------------------------------------- statistics


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(12345)
    d_true = d_px(100.0)  # ≈ 6.59 px²/frame
    sigma_px = 0.03 / PX_UM  # 0.03 µm localization noise
    pos, frame, offsets = simulate_blurred_brownian(rng, 3000, 101, d_true, sigma_px, blur_fraction=1.0)
    return pos, frame, offsets, d_true, sigma_px


def test_cve_unbiased_where_msd_is_biased(sim):
    pos, frame, offsets, d_true, sigma_px = sim
    d, var_d, s2, n_steps, _, _ = cve_tracks(pos, frame, offsets, 1 / 6)
    assert (n_steps == 100).all()
    rel_err = d.mean() / d_true - 1
    se = d.std() / np.sqrt(d.size) / d_true
    assert abs(rel_err) < max(0.02, 4 * se), rel_err
    # plain MSD(lag 1)/(4Δt): E = D (1 − 2R) + σ²/Δt ≈ 0.67 D for a full-frame shutter
    msd = np.nanmean((np.diff(pos.reshape(3000, 101, 2), axis=1) ** 2).sum(axis=2), axis=1) / 4
    assert msd.mean() / d_true - 1 < -0.25


def test_variance_formula_matches_empirical(sim):
    pos, frame, offsets, d_true, sigma_px = sim
    d, var_d, s2, n_steps, _, _ = cve_tracks(pos, frame, offsets, 1 / 6)
    emp = d.var(ddof=1)
    # formula at the true parameters
    r = 1 / 6
    eps = sigma_px**2 / d_true - 2 * r
    n = 100
    theory = d_true**2 * ((6 + 4 * eps + 2 * eps**2) / n + 4 * (1 + eps) ** 2 / n**2) / 2
    assert emp == pytest.approx(theory, rel=0.15)
    # formula with each track's own estimates, averaged over tracks
    assert emp == pytest.approx(var_d.mean(), rel=0.15)


def test_sigma_recovered(sim):
    pos, frame, offsets, d_true, sigma_px = sim
    res = diffusion_coefficients(pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS, exposure_ms=None)
    s2 = res["sigma2_loc_um2"]
    s2_mean = s2.mean()  # average σ̂² (unbiased), not σ̂ (NaN where σ̂² < 0)
    se = s2.std() / np.sqrt(s2.size)
    assert abs(s2_mean - 0.03**2) < max(0.1 * 0.03**2, 4 * se)
    assert np.sqrt(s2_mean) == pytest.approx(0.03, rel=0.1)
    # with the wrong R (instantaneous exposure) σ̂² is badly off: R matters for σ only
    wrong = diffusion_coefficients(pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS, exposure_ms=0.0)
    assert wrong["sigma2_loc_um2"].mean() < 0
    np.testing.assert_allclose(wrong["D_um2_s"], res["D_um2_s"], rtol=1e-12)


def test_half_exposure_sigma_and_d():
    rng = np.random.default_rng(7)
    d_true = d_px(200.0)
    sigma_px = 0.05 / PX_UM
    pos, frame, offsets = simulate_blurred_brownian(rng, 1500, 81, d_true, sigma_px, blur_fraction=0.5)
    res = diffusion_coefficients(pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS, exposure_ms=0.5 * 1000 / FPS)
    d_um = d_true * PX_UM**2 * FPS
    assert res["D_um2_s"].mean() == pytest.approx(d_um, rel=0.03)
    assert np.sqrt(res["sigma2_loc_um2"].mean()) == pytest.approx(0.05, rel=0.1)


def test_unbiased_under_blur_dependent_detection():
    # A dim particle is detected more often in frames where it moved little during the
    # exposure (a compact spot is brighter): detection selects small motions. Frames are
    # detected with probability exp(−s² / s₀²), s² the spot's motion spread within the
    # exposure (30 ms of 40 ms, R = 0.125). The adjacent-step CVE (three consecutive
    # frames, all selected) is biased low; the covariance over every pair of points
    # two frames apart (adjacent steps, or the displacement across a missed frame), counts
    # the missed middle frames at their natural rate and is not.
    from naive import naive_cve_adjacent_track

    rng = np.random.default_rng(5)
    n_tracks, n_frames, k_sub, f = 2000, 60, 30, 0.75
    d_true = d_px(100.0)
    s = (np.arange(k_sub) + 0.5) * f / k_sub
    t = (np.arange(n_frames)[:, None] + s[None, :]).ravel()
    dt = np.diff(np.concatenate([[0.0], t]))
    steps = rng.normal(size=(n_tracks, t.size, 2)) * np.sqrt(2.0 * d_true * dt)[None, :, None]
    path = np.cumsum(steps, axis=1).reshape(n_tracks, n_frames, k_sub, 2)
    obs = path.mean(axis=2)
    spread = ((path - obs[:, :, None, :]) ** 2).sum(-1).mean(-1)
    obs = obs + rng.normal(scale=0.2, size=obs.shape)
    det = rng.random(spread.shape) < np.exp(-spread / (2.0 * np.median(spread)))
    assert 0.5 < det.mean() < 0.7
    fr = [np.nonzero(det[k])[0] for k in range(n_tracks)]
    pos = np.concatenate([obs[k, fr[k]] for k in range(n_tracks)])
    frame = np.concatenate(fr).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in fr])]).astype(np.int64)
    d = cve_tracks(pos, frame, offsets, f / 6)[0]
    ok = np.isfinite(d)
    se = d[ok].std() / np.sqrt(ok.sum())
    assert abs(d[ok].mean() - d_true) < max(0.03 * d_true, 4 * se)
    old = np.array([naive_cve_adjacent_track(pos[a:b], frame[a:b], f / 6) for a, b in zip(offsets[:-1], offsets[1:])])
    assert np.nanmean(old) < 0.9 * d_true  # the selection bias the lag-2 terms remove
    # with every frame detected the two estimators are the same estimator
    full = cve_tracks(obs.reshape(-1, 2), np.tile(np.arange(n_frames), n_tracks).astype(np.int64),
                      np.arange(n_tracks + 1, dtype=np.int64) * n_frames, f / 6)[0]
    assert full.mean() == pytest.approx(d_true, rel=0.03)


# --------------------------------------------------------------------------- units


def test_stokes_einstein_reference():
    from nta.calibration import water_viscosity

    eta = water_viscosity(TEMP_C)
    assert stokes_einstein_diffusion(100.0, TEMP_C, eta) == pytest.approx(4.54, abs=0.01)
    assert stokes_einstein_diameter(4.537, TEMP_C, eta) == pytest.approx(100.0, rel=1e-3)


def test_unit_conversion_exact():
    # the wrapper's outputs are the kernel's, converted: D × px² × fps, σ × px
    rng = np.random.default_rng(3)
    pos, frame, offsets = simulate_blurred_brownian(rng, 5, 50, 3.0, 0.2)
    raw = cve_tracks(pos, frame, offsets, 1 / 6)
    res = diffusion_coefficients(pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS)
    np.testing.assert_allclose(res["D_um2_s"], raw[0] * PX_UM**2 * FPS, rtol=1e-14)
    np.testing.assert_allclose(res["D_var_um4_s2"], raw[1] * (PX_UM**2 * FPS) ** 2, rtol=1e-14)
    ok = raw[2] >= 0
    np.testing.assert_allclose(res["sigma_loc_um"][ok], np.sqrt(raw[2][ok]) * PX_UM, rtol=1e-14)
    assert np.isnan(res["sigma_loc_um"][~ok]).all()
    np.testing.assert_array_equal(res["n_steps"], raw[3])


def test_100nm_round_trip_through_table():
    """A simulated 100 nm particle population comes back at ≈ 100 nm and D ≈ 4.54 µm²/s."""
    rng = np.random.default_rng(11)
    pos, frame, offsets = simulate_blurred_brownian(rng, 400, 60, d_px(100.0), 0.03 / PX_UM)
    particle = np.repeat(np.arange(400), 60)
    df = pd.DataFrame({"frame": frame, "particle": particle, "x": pos[:, 0], "y": pos[:, 1], "mass": 1000.0 + particle})
    cal = make_calibration(pixel_size_um=PX_UM, fps=FPS, temperature_c=TEMP_C)
    table = per_track_table(df.sample(frac=1.0, random_state=1), cal)
    assert list(table.columns) == list(PER_TRACK_COLUMNS)
    assert table["D_um2_s"].mean() == pytest.approx(4.54, rel=0.03)
    # 1/mean(1/d) is the diameter of the mean D
    assert 1.0 / np.mean(1.0 / table["diameter_nm"]) == pytest.approx(100.0, rel=0.03)
    assert table["included"].all()
    np.testing.assert_allclose(table["mass_mean"], 1000.0 + np.arange(400))
    assert (table["frame_start"] == 0).all() and (table["frame_end"] == 59).all()
    np.testing.assert_allclose(table["D_sd_um2_s"] ** 2, table["D_var_um4_s2"])


# --------------------------------------------------------------------------- default min length


def test_default_min_track_length_evidence():
    from nta.calibration import water_viscosity

    d_um = stokes_einstein_diffusion(100.0, TEMP_C, water_viscosity(TEMP_C))
    kw = dict(pixel_size_um=PX_UM, fps=FPS)
    n = DEFAULT_MIN_TRACK_LENGTH
    for exp in (None, 20.0, 0.0):  # full frame, half frame, instantaneous
        assert relative_sd_of_d(n, d_um, 0.03, exposure_ms=exp, **kw) <= 0.5
    assert relative_sd_of_d(n - 1, d_um, 0.03, exposure_ms=0.0, **kw) > 0.5


# --------------------------------------------------------------------------- flatten_tracks


def _trackpy_like(rng):
    rows = []
    for p, (f0, m) in enumerate([(3, 5), (0, 8), (10, 1), (2, 4)]):
        for f in range(f0, f0 + m):
            if p == 1 and f == 4:
                continue  # a gap
            rows.append({"frame": f, "particle": p * 7 + 2, "x": rng.normal(), "y": rng.normal(), "mass": rng.uniform(100, 200)})
    return pd.DataFrame(rows)


def test_flatten_tracks_shuffled():
    rng = np.random.default_rng(0)
    df = _trackpy_like(rng)
    shuffled = df.sample(frac=1.0, random_state=3)
    ids, pos, frame, offsets = flatten_tracks(shuffled)
    assert ids.dtype == np.int64 and frame.dtype == np.int64 and offsets.dtype == np.int64 and pos.dtype == np.float64
    assert pos.flags.c_contiguous and pos.shape == (len(df), 2)
    np.testing.assert_array_equal(ids, [2, 9, 16, 23])
    np.testing.assert_array_equal(offsets, [0, 5, 12, 13, 17])
    exp = df.sort_values(["particle", "frame"])
    np.testing.assert_array_equal(frame, exp["frame"].to_numpy())
    np.testing.assert_array_equal(pos, exp[["x", "y"]].to_numpy())


def test_flatten_tracks_frame_index_collision():
    df = _trackpy_like(np.random.default_rng(1))
    with_index = df.set_index(pd.Index(df["frame"].to_numpy(), name="frame")).sample(frac=1.0, random_state=2)
    a = flatten_tracks(with_index)
    b = flatten_tracks(df)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # frame only as the index
    only_index = df.set_index("frame")
    for x, y in zip(flatten_tracks(only_index), b):
        np.testing.assert_array_equal(x, y)
    # per_track_table copes too (mass mean with the colliding index)
    cal = make_calibration(pixel_size_um=PX_UM, fps=FPS, temperature_c=TEMP_C)
    t = per_track_table(with_index, cal)
    np.testing.assert_allclose(t["mass_mean"], df.groupby("particle")["mass"].mean().to_numpy())


def test_flatten_tracks_real_trackpy():
    trackpy = pytest.importorskip("trackpy")
    trackpy.quiet()
    rng = np.random.default_rng(5)
    n_p, n_f = 6, 30
    start = rng.uniform(50, 450, size=(n_p, 2))
    rows = []
    for f in range(n_f):
        for p in range(n_p):
            x, y = start[p] + rng.normal(0, 0.5, size=2) + 0.1 * f
            rows.append({"frame": f, "x": x, "y": y, "mass": 100.0})
    feats = pd.DataFrame(rows)
    tracks = trackpy.link(feats, search_range=5, memory=2)
    ids, pos, frame, offsets = flatten_tracks(tracks)
    assert ids.size == n_p and offsets[-1] == n_p * n_f
    cal = make_calibration(pixel_size_um=PX_UM, fps=FPS, temperature_c=TEMP_C)
    t = per_track_table(tracks, cal)
    assert (t["n_steps"] == n_f - 1).all() and (t["n_points"] == n_f).all()


def test_flatten_tracks_errors():
    df = _trackpy_like(np.random.default_rng(2))
    with pytest.raises(ValueError, match="particle"):
        flatten_tracks(df.drop(columns="particle"))
    dup = pd.concat([df, df.iloc[:1]])
    with pytest.raises(ValueError, match="more than one row"):
        flatten_tracks(dup)
    bad = df.astype({"frame": float})
    bad.loc[0, "frame"] = 1.5
    with pytest.raises(ValueError, match="integers"):
        flatten_tracks(bad)
    ok = df.astype({"frame": float, "particle": float})
    for x, y in zip(flatten_tracks(ok), flatten_tracks(df)):
        np.testing.assert_array_equal(x, y)


def test_empty_table():
    cal = make_calibration(pixel_size_um=PX_UM, fps=FPS, temperature_c=TEMP_C)
    empty = pd.DataFrame({"frame": pd.Series([], dtype=np.int64), "particle": pd.Series([], dtype=np.int64), "x": [], "y": []})
    t = per_track_table(empty, cal)
    assert list(t.columns) == list(PER_TRACK_COLUMNS) and len(t) == 0
    assert t["included"].dtype == bool and t["particle"].dtype == np.int64


def test_table_short_and_negative_tracks():
    rng = np.random.default_rng(9)
    rows = []
    # particle 0: pure noise (D = 0) → D̂ ≤ 0 often; particle 1: 5 points; particle 2: single point
    for f in range(40):
        rows.append({"frame": f, "particle": 0, "x": 10 + rng.normal(0, 0.2), "y": 10 + rng.normal(0, 0.2)})
    for f in range(5):
        rows.append({"frame": f, "particle": 1, "x": rng.normal(0, 3), "y": rng.normal(0, 3)})
    rows.append({"frame": 3, "particle": 2, "x": 1.0, "y": 1.0})
    cal = make_calibration(pixel_size_um=PX_UM, fps=FPS, temperature_c=TEMP_C)
    t = per_track_table(pd.DataFrame(rows), cal)
    assert np.isnan(t["mass_mean"]).all()
    assert not t.loc[t.particle == 1, "included"].item()  # 4 steps < default
    assert np.isnan(t.loc[t.particle == 2, "D_um2_s"].item()) and not t.loc[t.particle == 2, "included"].item()
    neg = t["D_um2_s"] <= 0
    assert np.isnan(t.loc[neg, "diameter_nm"]).all() and not t.loc[neg, "included"].any()
    assert np.isfinite(t["D_var_um4_s2"].iloc[0]) and t["D_var_um4_s2"].iloc[0] > 0
    t2 = per_track_table(pd.DataFrame(rows), cal, min_track_length=2)
    assert t2.loc[t2.particle == 1, "included"].item() == bool(t2.loc[t2.particle == 1, "D_um2_s"].item() > 0)


# --------------------------------------------------------------------------- validation


def test_validation_errors():
    pos = np.zeros((4, 2))
    frame = np.arange(4)
    kw = dict(pixel_size_um=PX_UM, fps=FPS)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        diffusion_coefficients(np.zeros((4, 3)), frame, np.array([0, 4]), **kw)
    with pytest.raises(ValueError, match="frame must have shape"):
        diffusion_coefficients(pos, np.arange(3), np.array([0, 4]), **kw)
    with pytest.raises(ValueError, match="integer"):
        diffusion_coefficients(pos, frame.astype(float), np.array([0, 4]), **kw)
    with pytest.raises(ValueError, match="end at n"):
        diffusion_coefficients(pos, frame, np.array([0, 3]), **kw)
    with pytest.raises(ValueError, match="non-decreasing"):
        diffusion_coefficients(pos, frame, np.array([0, 3, 2, 4]), **kw)
    with pytest.raises(ValueError, match="strictly increasing"):
        diffusion_coefficients(pos, np.array([0, 2, 1, 3]), np.array([0, 4]), **kw)
    # frames may restart between tracks
    diffusion_coefficients(pos, np.array([0, 1, 0, 1]), np.array([0, 2, 4]), **kw)
    with pytest.raises(ValueError, match="pixel_size_um"):
        diffusion_coefficients(pos, frame, np.array([0, 4]), pixel_size_um=0, fps=FPS)
    with pytest.raises(ValueError, match="longer than the frame interval"):
        diffusion_coefficients(pos, frame, np.array([0, 4]), exposure_ms=50.0, **kw)


# --------------------------------------------------------------------------- dask


def test_dask_equals_plain():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(21)
    pos, frame, offsets = random_tracks(rng, n_tracks=80)
    plain = diffusion_coefficients(pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS, exposure_ms=10.0)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        for n_chunks in (None, 1, 3, 7, 1000):
            res = diffusion_coefficients_dask(client, pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS, exposure_ms=10.0, n_chunks=n_chunks)
            assert set(res) == set(plain)
            for key in plain:
                np.testing.assert_array_equal(res[key], plain[key])
        empty = diffusion_coefficients_dask(client, np.empty((0, 2)), np.empty(0, np.int64), np.zeros(1, np.int64), pixel_size_um=PX_UM, fps=FPS)
        assert all(v.shape == (0,) for v in empty.values())


def test_dask_local_cluster_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(22)
    pos, frame, offsets = random_tracks(rng, n_tracks=120)
    plain = diffusion_coefficients(pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            res = diffusion_coefficients_dask(client, pos, frame, offsets, pixel_size_um=PX_UM, fps=FPS)
    for key in plain:
        np.testing.assert_array_equal(res[key], plain[key])


# --------------------------------------------------------------------------- numba cache and properties


def test_kernels_cached_beside_the_source():
    import pathlib

    import nta.kernels.diffusion as kd

    cve_tracks(np.zeros((3, 2)), np.arange(3, dtype=np.int64), np.array([0, 3], dtype=np.int64), 0.1)
    expected = pathlib.Path(kd.__file__).parent / "__pycache__"
    for f in (kd.cve_tracks, kd.cve_tracks_serial, kd._cve_one):
        assert type(f._cache).__name__ == "FunctionCache"  # cache=True (NullCache otherwise)
        assert pathlib.Path(f._cache._cache_path) == expected
    assert list(expected.glob("diffusion.cve_tracks-*.nbi"))


if st is not None:

    @st.composite
    def track_sets(draw):
        n_tracks = draw(st.integers(0, 6))
        pos_l, frame_l, lengths = [], [], []
        for _ in range(n_tracks):
            m = draw(st.integers(0, 12))
            jumps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 5]), min_size=m, max_size=m))
            fr = np.cumsum(np.array(jumps, dtype=np.int64)) if m else np.empty(0, np.int64)
            xs = draw(st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(np.nan)), min_size=2 * m, max_size=2 * m))
            pos_l.append(np.array(xs, dtype=float).reshape(m, 2))
            frame_l.append(fr)
            lengths.append(m)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = np.concatenate(pos_l).reshape(-1, 2) if pos_l else np.empty((0, 2))
        frame = np.concatenate(frame_l).astype(np.int64) if frame_l else np.empty(0, np.int64)
        return np.ascontiguousarray(pos), frame, offsets


    @settings(max_examples=150, deadline=None)
    @given(track_sets(), st.sampled_from([0.0, 1 / 12, 1 / 6]))
    def test_kernel_matches_naive_property(tracks, r):
        pos, frame, offsets = tracks
        got = cve_tracks(pos, frame, offsets, r)
        ref = naive_cve_tracks(pos, frame, offsets, r)
        for x, y in zip(got, ref):
            # positions up to 1e3 px: compare with an absolute floor for cancellations
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-7, equal_nan=True)


def test_table_parent_particle_column():
    cal = make_calibration(pixel_size_um=PX_UM, fps=FPS, temperature_c=TEMP_C)
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"particle": np.repeat([3, 5, 9], 20), "frame": np.tile(np.arange(20), 3),
                      "x": rng.normal(size=60).cumsum(), "y": rng.normal(size=60).cumsum()})
    tab = per_track_table(t, cal)
    assert list(tab["parent_particle"]) == [3, 5, 9] and tab["parent_particle"].dtype == np.int64
    tab2 = per_track_table(t.assign(parent=np.repeat([3, 3, 4], 20)), cal)
    assert list(tab2["parent_particle"]) == [3, 3, 4]
