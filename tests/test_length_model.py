"""The FTLA's track-length model (nta.distribution.fit_length_aware and its parts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nta import distribution as dist
from tests.test_distribution import CAL0, synthetic_tracks


def _mixture_with_lengths(n_per_pop, small_len, large_len, *, seed):
    """1:1 mixture of 80 and 120 nm whose tracks have size-dependent lengths (steps),
    drawn as Brownian tracks with localization noise (tests.test_distribution)."""
    a = synthetic_tracks([80.0], [1.0], n_per_pop, seed=seed, n_min=small_len[0], n_max=small_len[1])
    b = synthetic_tracks([120.0], [1.0], n_per_pop, seed=seed + 1000, n_min=large_len[0], n_max=large_len[1])
    per = pd.concat([a, b], ignore_index=True)
    per["particle"] = np.arange(len(per))
    return per


def _small_fraction(model, w, split_nm=98.0):
    return float(w[model.grid_nm < split_nm].sum())


# ----------------------------------------------------------------------------- parts


def test_length_bins_quantiles_ties_and_one_length():
    n = np.arange(13, 113, dtype=float)  # 100 distinct lengths
    b, edges = dist.length_bins(n, 5)
    assert edges.size == 6 and b.min() == 0 and b.max() == 4
    assert np.all(np.bincount(b) == 20)  # quantile bins: equal counts
    assert np.all(np.diff(b) >= 0)  # shorter tracks in lower bins
    # ties: most tracks of one length give fewer, distinct bins
    n2 = np.r_[np.full(90, 13.0), np.arange(14, 24, dtype=float)]
    b2, e2 = dist.length_bins(n2, 5)
    assert e2.size - 1 < 5 and np.all(np.diff(e2) > 0)
    assert b2.max() == e2.size - 2
    # one length: one bin
    b3, e3 = dist.length_bins(np.full(7, 20.0), 5)
    assert np.all(b3 == 0) and e3.size == 2
    # interpolated quantiles between two lengths would leave empty bins: none are kept
    b4, e4 = dist.length_bins(np.r_[np.full(5, 10.0), np.full(5, 20.0)], 5)
    assert np.all(np.bincount(b4) > 0) and e4.size - 1 == b4.max() + 1 == 2
    assert dist.length_bins([], 5)[0].size == 0
    with pytest.raises(ValueError, match="n_bins"):
        dist.length_bins(n, 0)


def test_ordinal_probs_sum_to_one_and_shift_with_slope():
    x = np.linspace(-1, 1, 41)
    par = np.array([-1.0, np.log(0.7), np.log(0.9), 2.0])  # 4 bins, β = 2
    p = dist.ordinal_bin_probs(par, x, 4)
    assert p.shape == (41, 4) and np.allclose(p.sum(axis=1), 1.0) and np.all(p > 0)
    mean_bin = p @ np.arange(4)
    assert np.all(np.diff(mean_bin) > 0)  # β > 0: larger particles, longer tracks
    p0 = dist.ordinal_bin_probs(np.r_[par[:3], 0.0], x, 4)
    assert np.allclose(p0, p0[0])  # β = 0: the same for every size


def test_ordinal_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = np.linspace(-0.8, 0.9, 30)
    cnt = rng.uniform(0, 5, (30, 5))
    par = np.array([-0.7, np.log(0.5), np.log(0.8), np.log(0.6), 1.3])
    f, g = dist._ordinal_objective(par, cnt, x, 5, 2.0)
    eps = 1e-6
    num = np.array([(dist._ordinal_objective(par + eps * e, cnt, x, 5, 2.0)[0]
                     - dist._ordinal_objective(par - eps * e, cnt, x, 5, 2.0)[0]) / (2 * eps) for e in np.eye(5)])
    assert np.allclose(g, num, rtol=1e-5, atol=1e-6), (g, num)


def test_mstep_recovers_a_known_slope():
    from scipy.optimize import minimize

    x = np.linspace(-1, 1, 60)
    true = np.array([-0.5, np.log(1.0), np.log(0.8), -1.5])
    cnt = 1e4 * dist.ordinal_bin_probs(true, x, 4)  # expected counts, no noise
    res = minimize(dist._ordinal_objective, np.zeros(4), args=(cnt, x, 4, 1e6), jac=True, method="BFGS")
    assert np.allclose(res.x, true, atol=1e-3), res.x


# ----------------------------------------------------------------------------- the deconvolution


def test_length_model_recovers_a_mixture_whose_small_particles_make_short_tracks():
    # 80 nm tracks of 13–40 steps, 120 nm tracks of 40–120 steps, 1:1 by number
    per = _mixture_with_lengths(1000, (13, 40), (40, 120), seed=0)
    sub = per[per["included"]]
    plain_model, plain_w, _ = dist.deconvolve(per, CAL0, length_model=False)
    model, w, info = dist.deconvolve(per, CAL0)
    truth = float(np.mean(sub["d_true"] < 98))
    assert truth == pytest.approx(0.5, abs=0.02)
    # Walker's FTLA gives the short-track population too little weight ...
    assert _small_fraction(plain_model, plain_w) < truth - 0.08
    # ... the length model does not, and finds a positive slope (larger: longer tracks)
    assert _small_fraction(model, w) == pytest.approx(truth, abs=0.08)
    assert info["length_model"]["bins"] == 5 and info["length_model"]["slope"] > 0
    peaks, fracs = dist.find_peaks(model.grid_nm, w)
    assert len(peaks) == 2 and sorted(peaks)[0] == pytest.approx(80, rel=0.06) and sorted(peaks)[1] == pytest.approx(120, rel=0.06)


def test_length_model_changes_little_when_lengths_do_not_depend_on_size():
    per = synthetic_tracks([70.0, 130.0], [0.5, 0.5], 800, seed=3)  # lengths 13–60 for both
    m0, w0, _ = dist.deconvolve(per, CAL0, length_model=False)
    m1, w1, info = dist.deconvolve(per, CAL0)
    assert _small_fraction(m1, w1, 95.0) == pytest.approx(_small_fraction(m0, w0, 95.0), abs=0.03)
    assert abs(info["length_model"]["slope"]) < 1.0


def test_monodisperse_with_spread_of_lengths_not_split():
    per = synthetic_tracks([100.0], [1.0], 600, seed=4, cv=0.05, n_min=13, n_max=150)
    s, _, _ = dist.size_distribution(per, CAL0, n_boot=20)
    assert len(s["peaks_nm"]) == 1 and s["d50_nm"] == pytest.approx(100, rel=0.03)
    assert s["ftla"]["length_model"]["bins"] == 5
    lo, hi = s["d50_nm_ci95"]
    assert lo <= s["d50_nm"] <= hi


def test_one_track_length_is_the_plain_fit():
    per = synthetic_tracks([100.0], [1.0], 200, seed=5, n_min=30, n_max=30)
    m0, w0, i0 = dist.deconvolve(per, CAL0, length_model=False)
    m1, w1, i1 = dist.deconvolve(per, CAL0)
    assert i1["length_model"]["bins"] == 1 and i1["length_model"]["slope"] is None
    assert np.array_equal(w0, w1) and i0["n_iter"] == i1["n_iter"]


def test_bootstrap_uses_the_joint_likelihood_and_summary_records_the_model():
    per = _mixture_with_lengths(300, (13, 40), (40, 120), seed=2)
    s1, a1, _ = dist.size_distribution(per, CAL0, n_boot=30)
    s0, a0, _ = dist.size_distribution(per, CAL0, n_boot=30, length_model=False)
    lm = s1["ftla"]["length_model"]
    assert lm["bins"] == 5 and np.isfinite(lm["slope"]) and lm["slope_prior_sd"] == dist.LENGTH_SLOPE_PRIOR_SD
    assert len(lm["bin_edges_steps"]) == 6
    assert s0["ftla"]["length_model"] == {"bins": 0}
    for s in (s0, s1):
        lo, hi = s["window_fraction_ci95"]
        assert lo <= s["window_fraction"] <= hi
        lo, hi = s["d50_nm_ci95"]
        assert lo <= s["d50_nm"] <= hi
    # the joint model moves number to the short-track (small) population (true share 0.5)
    small = [float(a["density_number"][a["grid_nm"] < 98].sum()) for a in (a0, a1)]
    assert small[0] < 0.3 and small[1] == pytest.approx(0.5, abs=0.08), small


def test_bad_arguments():
    per = synthetic_tracks([100.0], [1.0], 50, seed=6)
    model, _, _ = dist.deconvolve(per, CAL0, length_model=False)
    with pytest.raises(ValueError, match="slope_prior_sd"):
        dist.fit_length_aware(model, slope_prior_sd=0.0)
    with pytest.raises(ValueError, match="mstep_every"):
        dist.fit_length_aware(model, mstep_every=0)


def test_refit_starts_from_the_plain_rows_and_summary_names_the_model():
    per = _mixture_with_lengths(300, (13, 40), (40, 120), seed=4)
    model, w1, info = dist.deconvolve(per, CAL0)
    w2, _, _, info2 = dist.fit_length_aware(model)  # again on the same model: the same answer
    assert np.allclose(w1, w2, atol=1e-12) and info2["slope"] == pytest.approx(info["length_model"]["slope"])
    assert model.lik_plain is not None and model.lik_plain.shape == model.lik.shape
    # the stored thresholds and centring rebuild P(b | d)
    lm = info2
    par = np.r_[lm["thresholds"][0], np.log(np.diff(lm["thresholds"])), lm["slope"]]
    x = np.log(model.grid_nm) - lm["x_center_ln_nm"]
    p = dist.ordinal_bin_probs(par, x, lm["bins"])
    assert np.allclose(p, dist.ordinal_bin_probs(model.length_model["par"], model.length_model["x"], lm["bins"]))
    s, _, _ = dist.size_distribution(per, CAL0, n_boot=10)
    assert "track-length model" in s["distribution"]
    s0, _, _ = dist.size_distribution(per, CAL0, n_boot=10, length_model=False)
    assert "track-length model" not in s0["distribution"]
    with pytest.raises(ValueError, match="n_bins"):
        dist.ordinal_bin_probs(np.zeros(1), x, 1)


# ----------------------------------------------------------------------------- factored products


def _joint_case(seed=7, n=400):
    per = _mixture_with_lengths(n, (13, 40), (40, 120), seed=seed)
    model, w, info = dist.deconvolve(per, CAL0)
    lm = model.length_model
    return model, w, lm


def test_binned_factored_kernel_matches_naive_em_on_the_joint_rows():
    from nta.kernels.ftla import em_weights_factored_binned
    from tests.naive import naive_em

    model, w, lm = _joint_case()
    assert lm["factors"] is not None  # the unscaled rows have a low-rank form
    joint = np.ascontiguousarray(model.lik[model.valid])
    c = np.ones(joint.shape[0])
    w0 = np.full(joint.shape[1], 1.0 / joint.shape[1])
    for smooth in (0.0, 0.05):
        S = dist.smoothing_matrix(model.grid_nm, smooth) if smooth else np.zeros((0, 0))
        wk, itk, llk = em_weights_factored_binned(lm["factors"][0], lm["factors"][1], lm["pi"], lm["bins"], joint, c, w0, S, 300, 0.0)
        wn, itn, lln = naive_em(joint, c, w0, S, 300, 0.0)
        assert itk == itn == 300
        np.testing.assert_allclose(wk, wn, rtol=1e-7, atol=1e-12)
        assert llk == pytest.approx(lln, rel=1e-12)
    # zero-weight tracks are skipped as by em_weights
    c2 = c.copy()
    c2[::3] = 0.0
    wk, _, _ = em_weights_factored_binned(lm["factors"][0], lm["factors"][1], lm["pi"], lm["bins"], joint, c2, w0, np.zeros((0, 0)), 100, 0.0)
    wn, _, _ = naive_em(joint, c2, w0, np.zeros((0, 0)), 100, 0.0)
    np.testing.assert_allclose(wk, wn, rtol=1e-7, atol=1e-12)


def test_fit_with_and_without_factors_agree():
    per = _mixture_with_lengths(400, (13, 40), (40, 120), seed=8)
    m1, w1, i1 = dist.deconvolve(per, CAL0)
    m2 = dist.FTLAModel(per.loc[per.included, "D_um2_s"], per.loc[per.included, "n_steps"],
                        dist._sigma2_model(per.loc[per.included, "sigma_loc_um"].to_numpy(), per.loc[per.included, "mass_mean"].to_numpy()),
                        fps=CAL0.fps, blur_r=CAL0.motion_blur_r, temperature_c=CAL0.temperature_c,
                        viscosity_mpas=CAL0.viscosity_mpas, grid_nm=m1.grid_nm)
    m2._plain_factors_cache = (None,)  # force the full products
    w2, _, _, i2 = dist.fit_length_aware(m2)
    assert m1.length_model["factors"] is not None and m2.length_model["factors"] is None
    np.testing.assert_allclose(w1, w2, atol=1e-6)
    assert i1["length_model"]["slope"] == pytest.approx(i2["slope"], abs=1e-4)


def test_batched_bootstrap_with_binned_factors_equals_full_products():
    model, w, lm = _joint_case(seed=9, n=300)
    joint = np.ascontiguousarray(model.lik[model.valid])
    rng = np.random.default_rng(0)
    counts = rng.multinomial(joint.shape[0], np.full(joint.shape[0], 1.0 / joint.shape[0]), size=6).T.astype(float)
    wf = dist._em_batch(joint, counts, w, np.zeros((0, 0)), 200, dist.DEFAULT_TOL, factors=lm["factors"], bins=(lm["bins"], lm["pi"]))
    wn = dist._em_batch(joint, counts, w, np.zeros((0, 0)), 200, dist.DEFAULT_TOL)
    np.testing.assert_allclose(wf, wn, rtol=1e-7, atol=1e-12)
    a = dist.bootstrap_deconvolved(model, w, n_boot=40)
    b = dist.bootstrap_deconvolved(model, w, n_boot=40, lowrank_tol=0.0)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-9)


def test_binned_factored_kernel_edge_cases_match_naive():
    from nta.kernels.ftla import em_weights_factored_binned
    from tests.naive import naive_em

    rng = np.random.default_rng(3)
    g = 12
    for k, nb in ((1, 1), (2, 2), (7, 3)):  # one track, one bin; bins with one track each
        lf = rng.uniform(0.1, 1.0, (k, 3))
        mf = rng.uniform(0.1, 1.0, (3, g))
        plain = lf @ mf  # exactly rank 3
        pi = rng.uniform(0.05, 1.0, (g, nb))
        pi /= pi.sum(axis=1, keepdims=True)
        bins = np.arange(k, dtype=np.int64) % nb
        joint = plain * pi[:, bins].T
        c = np.ones(k)
        w0 = np.full(g, 1.0 / g)
        wk, itk, llk = em_weights_factored_binned(lf, mf, pi, bins, joint, c, w0, np.zeros((0, 0)), 50, 0.0)
        wn, itn, lln = naive_em(joint, c, w0, np.zeros((0, 0)), 50, 0.0)
        np.testing.assert_allclose(wk, wn, rtol=1e-10, atol=1e-14)
        assert itk == itn and llk == pytest.approx(lln, rel=1e-12)
    # a track with weight 0 (a gap in a resample) and a NaN row that is weighted 0 are skipped
    lf = rng.uniform(0.1, 1.0, (4, 2)); mf = rng.uniform(0.1, 1.0, (2, g))
    pi = np.full((g, 2), 0.5); bins = np.array([0, 1, 0, 1])
    joint = (lf @ mf) * 0.5
    lf_nan = lf.copy(); lf_nan[2] = np.nan
    c = np.array([1.0, 1.0, 0.0, 2.0])
    wk, _, _ = em_weights_factored_binned(lf_nan, mf, pi, bins, joint, c, np.full(g, 1.0 / g), np.zeros((0, 0)), 30, 0.0)
    wn, _, _ = naive_em(joint, c, np.full(g, 1.0 / g), np.zeros((0, 0)), 30, 0.0)
    assert np.all(np.isfinite(wk))
    np.testing.assert_allclose(wk, wn, rtol=1e-10, atol=1e-14)
