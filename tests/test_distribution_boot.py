"""Tests of the bootstrap's batched EM: the low-rank likelihood products against the full
float64 products and against the EM kernel, resample by resample."""

from __future__ import annotations

import numpy as np
import pytest

from nta import distribution as dist
from nta.kernels.ftla import em_weights
from tests.test_distribution import CAL0, synthetic_tracks


def _model(n_tracks, *, seed=0, outlier_weight=dist.DEFAULT_OUTLIER_WEIGHT, sizes=(80.0, 130.0), fractions=(0.4, 0.6)):
    per = synthetic_tracks(list(sizes), list(fractions), n_tracks, seed=seed, n_min=8, n_max=80, cv=0.1)
    per = per[per["included"]]
    s2 = np.full(len(per), 0.03**2)
    return dist.FTLAModel(per["D_um2_s"], per["n_steps"], s2, fps=CAL0.fps, blur_r=CAL0.motion_blur_r,
                          temperature_c=CAL0.temperature_c, viscosity_mpas=CAL0.viscosity_mpas,
                          outlier_weight=outlier_weight)


@pytest.fixture(scope="module")
def big():
    model = _model(1500)
    w, _, _ = model.fit(max_iter=300)
    lik = np.ascontiguousarray(model.lik[model.valid])
    rng = np.random.default_rng(5)
    k = lik.shape[0]
    draws = np.stack([rng.multinomial(k, np.full(k, 1.0 / k)) for _ in range(12)], axis=1).astype(np.float64)
    return model, w, lik, draws


def test_lowrank_factors_meet_their_row_bound(big):
    _, _, lik, _ = big
    fac = dist._lowrank_factors(lik)
    assert fac is not None
    lf, mf = fac
    r = lf.shape[1]
    assert 5 < r < lik.shape[1] // 2  # smooth Gamma rows: a low rank
    np.testing.assert_allclose(mf @ mf.T, np.eye(r), atol=1e-12)  # orthonormal rows
    err = np.linalg.norm(lik - lf @ mf, axis=1)
    assert np.all(err <= dist.EM_LOWRANK_TOL * lik.min(axis=1) * (1 + 1e-6))
    # a tighter tolerance needs a higher rank
    fac2 = dist._lowrank_factors(lik, 1e-12)
    assert fac2 is None or fac2[0].shape[1] > r


def test_lowrank_factors_declined_without_a_floor_or_when_not_cheaper(big):
    _, _, lik, _ = big
    no_floor = lik.copy()
    no_floor[0, -1] = 0.0  # a row with a zero likelihood somewhere: no relative bound
    assert dist._lowrank_factors(no_floor) is None
    assert dist._lowrank_factors(lik[:40]) is None  # 40 tracks: r (K + G) is not below K G
    assert dist._lowrank_factors(lik[:1]) is None
    m0 = _model(1500, outlier_weight=0.0)  # plain ML: no floor, far columns ~1e-100 of the peak
    lik0 = np.ascontiguousarray(m0.lik[m0.valid])
    assert lik0.min() < 1e-50
    assert dist._lowrank_factors(lik0) is None  # the relative bound cannot be met: full products


@pytest.mark.parametrize("smooth", [0.0, 0.02])
def test_em_batch_lowrank_matches_full_products_and_kernel(big, smooth):
    model, w, lik, draws = big
    S = model._smoother(smooth)
    w0 = w + 1e-12
    full = dist._em_batch(lik, draws, w0, S, 150, dist.DEFAULT_TOL)
    low = dist._em_batch(lik, draws, w0, S, 150, dist.DEFAULT_TOL, factors=dist._lowrank_factors(lik))
    assert np.abs(low - full).max() < 1e-10
    np.testing.assert_allclose(low.sum(axis=0), 1.0, rtol=1e-12)
    # the full products follow the kernel resample by resample
    for b in (0, 7):
        wk, _, _ = em_weights(lik, draws[:, b].copy(), w0, S, 150, dist.DEFAULT_TOL)
        np.testing.assert_allclose(full[:, b], wk, rtol=1e-9, atol=1e-15)


def test_bootstrap_cis_lowrank_equal_full_products():
    model = _model(1200, seed=3)
    w, _, _ = model.fit(max_iter=300)
    kw = dict(n_boot=24, max_iter=60, seed=11)
    full = dist.bootstrap_deconvolved(model, w, lowrank_tol=0.0, **kw)
    low = dist.bootstrap_deconvolved(model, w, **kw)
    assert dist._lowrank_factors(np.ascontiguousarray(model.lik[model.valid])) is not None  # the low-rank path ran
    for k in full:
        np.testing.assert_allclose(low[k], full[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert np.isfinite(low["mean_nm_ci95"]).all() and low["mean_nm_ci95"][0] < low["mean_nm_ci95"][1]


@pytest.mark.parametrize("smooth", [0.0, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
def test_em_factored_kernel_matches_naive(seed, smooth):
    # an exactly rank-6 positive likelihood matrix: the factored kernel must follow the
    # plain-numpy EM on L @ M step for step (only the summation order differs)
    from tests.naive import naive_em
    from nta.kernels.ftla import em_weights_factored

    rng = np.random.default_rng(seed)
    K, G, r = 60, 30, 6
    lf = rng.random((K, r)) + 0.05
    mf = rng.random((r, G)) + 0.05
    lik = lf @ mf
    c = rng.integers(0, 3, K).astype(float)
    S = dist.smoothing_matrix(np.geomspace(10, 1000, G), smooth)
    w0 = rng.random(G) + 0.1
    w, it, ll = em_weights_factored(lf, mf, lik, c, w0, S, 40, 1e-12)
    wr, itr, llr = naive_em(lik, c, w0, S, 40, 1e-12)
    assert it == itr
    np.testing.assert_allclose(w, wr, rtol=1e-9, atol=1e-14)
    assert ll == pytest.approx(llr, rel=1e-10)


def test_fit_lowrank_matches_full_products(big):
    model = big[0]
    assert model.lowrank_factors() is not None and model.lowrank_factors(0) is None
    w_full, n_full, ll_full = model.fit(max_iter=400, lowrank_tol=0)
    w_low, n_low, ll_low = model.fit(max_iter=400)
    assert n_low == n_full
    assert np.abs(w_low - w_full).max() < 1e-10
    assert ll_low == pytest.approx(ll_full, rel=1e-12)
    # tracks dropped by weight, as in a resample
    tw = np.random.default_rng(1).integers(0, 3, model.valid.size).astype(float)
    a, _, _ = model.fit(max_iter=200, track_weights=tw, lowrank_tol=0)
    b, _, _ = model.fit(max_iter=200, track_weights=tw)
    assert np.abs(a - b).max() < 1e-10


def _em_batch_factored_ref(lik, c, w0, smoother, max_iter, tol, lf, mf):
    """The factored batched EM with the back-product written as ((c/den)ᵀ L) M, transposed
    (the order _em_batch used before it computed Mᵀ (Lᵀ (c/den)))."""
    tot = c.sum(axis=0)
    w = np.repeat((w0 / w0.sum())[:, None], c.shape[1], axis=1)
    active = np.arange(c.shape[1])
    for _ in range(max_iter):
        if active.size == 0:
            break
        wa, ca = w[:, active], c[:, active]
        f = ca / (lf @ (mf @ wa))
        new = wa * ((f.T @ lf) @ mf).T / tot[active]
        if smoother.shape[0] == w.shape[0]:
            new = smoother @ new
        new /= new.sum(axis=0)
        delta = np.max(np.abs(new - wa), axis=0)
        w[:, active] = new
        active = active[~(delta < tol)]
    return w


@pytest.mark.parametrize("smooth", [0.0, 0.02])
def test_em_batch_factored_equals_transposed_product_order(big, smooth):
    model, w, lik, draws = big
    S = model._smoother(smooth)
    lf, mf = dist._lowrank_factors(lik)
    got = dist._em_batch(lik, draws, w + 1e-12, S, 150, dist.DEFAULT_TOL, factors=(lf, mf))
    ref = _em_batch_factored_ref(lik, draws, w + 1e-12, S, 150, dist.DEFAULT_TOL, lf, mf)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("k, n_boot, seed", [(4011, 200, 0), (300, 57, 4), (2, 3, 1)])
def test_multinomial_draws_in_one_call_equal_one_by_one(k, n_boot, seed):
    """bootstrap_deconvolved draws all multiplicities with one size=n_boot call: the same
    vectors, in the same order, as n_boot single draws (so the same resamples and CIs)."""
    p = np.full(k, 1.0 / k)
    rng = np.random.default_rng(seed)
    one_by_one = np.stack([rng.multinomial(k, p) for _ in range(n_boot)], axis=1)
    together = np.random.default_rng(seed).multinomial(k, p, size=n_boot).T
    assert np.array_equal(one_by_one, together)
