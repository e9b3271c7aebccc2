"""Tests of the distribution stage: FTLA kernels vs naive references, deconvolution answers,
peaks, weightings, bootstrap CIs, size-versus-intensity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nta import distribution as dist
from nta.calibration import make_calibration, stokes_einstein_diameter, stokes_einstein_diffusion
from nta.kernels.ftla import em_weights, gamma_loglik_matrix, likelihood_matrix
from tests.naive import naive_em, naive_gamma_loglik

CAL = make_calibration(pixel_size_um=0.166, fps=25.0, temperature_c=22.0, exposure_ms=30.0)


def synthetic_tracks(sizes_nm, fractions, n_tracks, *, seed=0, n_min=13, n_max=60, sigma_um=0.03, cv=0.0):
    """Per-track table drawn from the CVE's own sampling law: Brownian steps + noise + blur.

    Each track: N steps of a 2-D Brownian walk with localization noise σ, then the CVE.
    (Blur is left out of the positions, R enters only through the calibration's variance.)
    """
    rng = np.random.default_rng(seed)
    dt = 1.0 / CAL.fps
    pop = rng.choice(len(sizes_nm), size=n_tracks, p=np.asarray(fractions) / np.sum(fractions))
    d_true = np.asarray(sizes_nm, float)[pop]
    if cv > 0:
        s2 = math.log1p(cv**2)
        d_true = d_true * rng.lognormal(-0.5 * s2, math.sqrt(s2), n_tracks)
    D = stokes_einstein_diffusion(d_true, CAL.temperature_c, CAL.viscosity_mpas)
    rows = []
    for k in range(n_tracks):
        n = int(rng.integers(n_min, n_max + 1))
        steps = rng.normal(0, math.sqrt(2 * D[k] * dt), (n, 2))
        x = np.vstack([[0, 0], np.cumsum(steps, axis=0)]) + rng.normal(0, sigma_um, (n + 1, 2))
        dx = np.diff(x, axis=0)
        msq = np.mean(dx**2)
        cov = np.mean(dx[1:] * dx[:-1])
        dh = (msq / 2 + cov) / dt
        s2h = 0.0 * msq + (2 * 0.0 - 1) * cov  # R = 0 positions
        rows.append((k, n + 1, n, dh, math.sqrt(s2h) if s2h > 0 else np.nan, d_true[k], 1000.0 * (d_true[k] / 100) ** 6))
    per = pd.DataFrame(rows, columns=["particle", "n_points", "n_steps", "D_um2_s", "sigma_loc_um", "d_true", "mass_mean"])
    per["diameter_nm"] = stokes_einstein_diameter(per["D_um2_s"].to_numpy(), CAL.temperature_c, CAL.viscosity_mpas)
    per["included"] = (per["n_steps"] >= 13) & (per["D_um2_s"] > 0)
    return per


CAL0 = make_calibration(pixel_size_um=0.166, fps=25.0, temperature_c=22.0, exposure_ms=1e-6)  # R ≈ 0, as simulated above


# ----------------------------------------------------------------------------- kernels vs naive


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loglik_matches_naive_random(seed):
    rng = np.random.default_rng(seed)
    K, G = 17, 23
    d_hat = rng.lognormal(1.0, 0.8, K)
    d_hat[:2] = [-0.5, 0.0]  # non-positive estimates: no likelihood
    n = rng.integers(2, 80, K).astype(float)
    s2 = rng.uniform(0, 0.01, K)
    s2[3] = 0.0
    grid = np.geomspace(0.05, 50, G)
    r = float(rng.uniform(0, 1 / 6))
    got = gamma_loglik_matrix(d_hat, n, s2, 0.04, r, grid)
    ref = naive_gamma_loglik(d_hat, n, s2, 0.04, r, grid)
    assert np.array_equal(np.isfinite(got), np.isfinite(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-9, atol=1e-9)
    assert np.all(got[:2] == -np.inf)


def test_loglik_edge_cases():
    empty = gamma_loglik_matrix(np.zeros(0), np.zeros(0), np.zeros(0), 0.04, 0.1, np.array([1.0, 2.0]))
    assert empty.shape == (0, 2)
    one = gamma_loglik_matrix(np.array([1.0]), np.array([0.0]), np.array([0.0]), 0.04, 0.1, np.array([1.0]))
    assert one[0, 0] == -np.inf  # N = 0 steps
    lik, sc = likelihood_matrix(np.array([[-np.inf, -np.inf], [-3.0, -1.0]]))
    assert np.all(lik[0] == 0) and sc[0] == -np.inf
    np.testing.assert_allclose(lik[1], [math.exp(-2.0), 1.0])


@pytest.mark.parametrize("smooth", [0.0, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
def test_em_matches_naive(seed, smooth):
    rng = np.random.default_rng(seed)
    K, G = 40, 30
    lik = rng.random((K, G)) ** 3
    lik[5] = 0.0  # a track with no likelihood anywhere, weight 0
    c = rng.integers(0, 3, K).astype(float)
    c[5] = 0.0
    grid = np.geomspace(10, 1000, G)
    S = dist.smoothing_matrix(grid, smooth)
    w0 = rng.random(G) + 0.1
    w, it, ll = em_weights(lik, c, w0, S, 50, 1e-12)
    wr, itr, llr = naive_em(lik, c, w0, S, 50, 1e-12)
    assert it == itr
    np.testing.assert_allclose(w, wr, rtol=1e-9, atol=1e-14)
    assert ll == pytest.approx(llr, rel=1e-10)
    assert w.sum() == pytest.approx(1.0)
    # EM never decreases the likelihood (plain EM)
    if smooth == 0:
        _, _, ll1 = em_weights(lik, c, w0, S, 1, 0.0)
        _, _, ll2 = em_weights(lik, c, w0, S, 5, 0.0)
        assert ll2 >= ll1 - 1e-9


def test_em_stops_on_tolerance():
    lik = np.ones((3, 4))
    w, it, _ = em_weights(lik, np.ones(3), np.ones(4), np.zeros((0, 0)), 100, 1e-9)
    assert it == 1 and np.allclose(w, 0.25)


# ----------------------------------------------------------------------------- deconvolution answers


def test_known_mixture_recovered():
    per = synthetic_tracks([70.0, 130.0], [0.5, 0.5], 800, seed=3)
    s, arrays, _ = dist.size_distribution(per, CAL0, n_boot=20)
    assert len(s["peaks_nm"]) == 2, s["peaks_nm"]
    p = sorted(zip(s["peaks_nm"], s["peak_fractions"]))
    assert p[0][0] == pytest.approx(70, rel=0.06) and p[1][0] == pytest.approx(130, rel=0.06), p
    assert p[0][1] == pytest.approx(0.5, abs=0.1) and p[1][1] == pytest.approx(0.5, abs=0.1), p
    # the raw per-track histogram is kept beside the deconvolution
    # (the raw histogram's upper edge, 1.5 × the 99.9th percentile, may leave out an extreme track)
    assert 0.99 * s["tracks_valid"] <= arrays["counts"].sum() <= s["tracks_valid"]
    assert arrays["counts_ftla"].sum() == pytest.approx(s["tracks_valid"], rel=1e-6)


def test_monodisperse_not_split_and_unbiased():
    per = synthetic_tracks([100.0], [1.0], 500, seed=4, cv=0.05)
    s, arrays, attrs = dist.size_distribution(per, CAL0, n_boot=30)
    assert len(s["peaks_nm"]) == 1, s["peaks_nm"]
    assert s["peak_fractions"][0] > 0.9
    assert s["d50_nm"] == pytest.approx(100, rel=0.03)
    # narrower than the raw per-track scatter, which is dominated by the finite track length
    assert s["sd_nm"] < 0.6 * s["raw_sd_nm"]
    lo, hi = s["d50_nm_ci95"]
    assert lo < s["d50_nm"] < hi and hi - lo < 10
    for k in ("mean_nm_ci95", "mode_nm_ci95", "window_fraction_ci95"):
        assert len(s[k]) == 2 and s[k][0] <= s[k][1]
    for k in ("grid_nm", "density_number", "density_area", "density_volume"):
        assert arrays[k].shape == arrays["grid_nm"].shape
    assert arrays["density_volume"].sum() == pytest.approx(1.0)


def test_weightings_shift_to_larger_sizes():
    per = synthetic_tracks([70.0, 130.0], [0.5, 0.5], 400, seed=5)
    sn, _, _ = dist.size_distribution(per, CAL0, n_boot=0)
    sv, _, _ = dist.size_distribution(per, CAL0, n_boot=0, weighting="volume")
    assert sv["weighting"] == "volume" and sv["d50_nm"] > sn["d50_nm"]
    assert sv["peaks_nm"][0] == pytest.approx(130, rel=0.08)  # volume is dominated by the large population
    assert sn["volume_d50_nm"] == pytest.approx(sv["d50_nm"], rel=1e-9)
    with pytest.raises(ValueError):
        dist.weighted(np.array([1.0, 2.0]), np.array([0.5, 0.5]), "mass")


def test_empty_and_tiny_inputs():
    per = synthetic_tracks([100.0], [1.0], 1, seed=6)
    s, arrays, _ = dist.size_distribution(per, CAL0, n_boot=10)
    assert s["tracks_valid"] == 1 and math.isfinite(s["d50_nm"])
    assert all(math.isnan(x) for x in s["d50_nm_ci95"])
    empty = per.iloc[:0]
    s0, a0, _ = dist.size_distribution(empty, CAL0, n_boot=10)
    assert s0["tracks_valid"] == 0 and math.isnan(s0["d50_nm"]) and s0["peaks_nm"] == []


def test_size_distribution_names_a_missing_column():
    per = synthetic_tracks([100.0], [1.0], 20, seed=6)
    with pytest.raises(ValueError, match="no column diameter_nm.*per_track_table"):
        dist.size_distribution(per.drop(columns="diameter_nm"), CAL0, n_boot=0)
    with pytest.raises(ValueError, match="weighting"):
        dist.size_distribution(per.iloc[:0], CAL0, n_boot=0, weighting="mass")


# ----------------------------------------------------------------------------- grid helpers


def test_grid_statistics_point_mass_and_window():
    grid = dist.make_grid([100.0], lo_nm=10, hi_nm=1000)
    w = np.zeros(grid.size)
    j = int(np.argmin(np.abs(grid - 100)))
    w[j] = 1.0
    st = dist.grid_statistics(grid, w, (40, 150))
    assert st["d50_nm"] == pytest.approx(grid[j], rel=0.011) and st["mode_nm"] == grid[j]
    assert st["window_fraction"] == pytest.approx(1.0) and st["sd_nm"] < 1.0
    edges = np.arange(0, 1001.0)
    h = dist.binned_histogram(grid, w, edges, total=10)
    assert h.sum() == pytest.approx(10) and np.argmax(h) in (98, 99, 100)


def test_find_peaks_merges_shallow_and_drops_small():
    grid = np.geomspace(10, 1000, 300)
    lg = np.log(grid)
    w = np.exp(-0.5 * ((lg - math.log(100)) / 0.05) ** 2) + 1.0 * np.exp(-0.5 * ((lg - math.log(104)) / 0.05) ** 2)
    pk, fr = dist.find_peaks(grid, w)
    assert len(pk) == 1 and fr[0] == pytest.approx(1.0, abs=0.01)
    w2 = w + 0.02 * np.exp(-0.5 * ((lg - math.log(400)) / 0.05) ** 2)  # 1 % population: below the 5 % floor
    assert len(dist.find_peaks(grid, w2)[0]) == 1
    assert dist.find_peaks(grid, np.zeros(300)) == ([], [])


# ----------------------------------------------------------------------------- size vs intensity


def test_size_intensity_histogram_and_plot(tmp_path):
    per = synthetic_tracks([70.0, 130.0], [0.5, 0.5], 200, seed=7)
    h, de, me = dist.size_intensity(per, bins=(20, 15))
    assert h.shape == (20, 15) and de.size == 21 and me.size == 16
    assert h.sum() == per["included"].sum()
    import matplotlib

    matplotlib.use("Agg")
    ax = dist.plot_size_intensity(per)
    assert ax.get_xscale() == "log"
    ax.figure.savefig(tmp_path / "si.png")


def test_grid_statistics_robust_sd_matches_sd_and_ignores_far_outliers():
    # log-normal of 5 % CV on the grid: robust SD = plain SD within 0.5 %
    grid = dist.make_grid(np.array([50.0, 200.0]), lo_nm=20.0, hi_nm=2000.0)
    s = 0.05
    w = np.exp(-0.5 * (np.log(grid / 100.0) / s) ** 2)
    st = dist.grid_statistics(grid, w)
    exact_sd = 100.0 * math.exp(s * s / 2) * math.sqrt(math.expm1(s * s))
    assert st["sd_robust_nm"] == pytest.approx(exact_sd, rel=0.03)
    assert st["sd_robust_nm"] == pytest.approx(st["sd_nm"], rel=0.03)
    # 0.3 % of the weight at 5x the size: the plain SD is inflated several-fold, the robust SD is not
    w2 = w / w.sum() * 0.997
    w2[np.argmin(np.abs(grid - 500.0))] += 0.003
    st2 = dist.grid_statistics(grid, w2)
    assert st2["sd_nm"] > 3 * st["sd_nm"]
    assert st2["sd_robust_nm"] == pytest.approx(st["sd_robust_nm"], rel=0.02)


def test_outlier_term_keeps_stray_tracks_from_inflating_the_sd():
    # 300 tracks of 100 nm (5 % CV) + 2 stray tracks with D̂ 5x too low (~500 nm), far apart
    per = synthetic_tracks([100.0], [1.0], 300, seed=7, cv=0.05, n_min=20, n_max=60)
    per = per[per["included"]].reset_index(drop=True)
    stray = per.iloc[:2].copy()
    stray["D_um2_s"] = stray["D_um2_s"] / np.array([5.0, 8.0])
    per = pd.concat([per, stray], ignore_index=True)
    per["diameter_nm"] = stokes_einstein_diameter(per["D_um2_s"].to_numpy(), CAL0.temperature_c, CAL0.viscosity_mpas)
    st = {}
    for eps in (0.0, dist.DEFAULT_OUTLIER_WEIGHT):
        model, w, _ = dist.deconvolve(per, CAL0, outlier_weight=eps)
        assert model.outlier_weight == eps
        st[eps] = dist.grid_statistics(model.grid_nm, w)
    plain, robust = st[0.0], st[dist.DEFAULT_OUTLIER_WEIGHT]
    assert plain["sd_nm"] / plain["mean_nm"] > 0.15  # the strays alone inflate the plain SD
    assert robust["sd_nm"] / robust["mean_nm"] < 0.10
    assert robust["d50_nm"] == pytest.approx(plain["d50_nm"], rel=0.02)
    with pytest.raises(ValueError):
        dist.deconvolve(per, CAL0, outlier_weight=1.0)


def test_outlier_term_equals_adding_eps_q_to_each_row():
    per = synthetic_tracks([80.0, 150.0], [0.5, 0.5], 60, seed=3)
    per = per[per["included"]].reset_index(drop=True)
    s2 = np.full(len(per), 0.03**2)
    kw = dict(fps=CAL0.fps, blur_r=CAL0.motion_blur_r, temperature_c=CAL0.temperature_c, viscosity_mpas=CAL0.viscosity_mpas)
    m0 = dist.FTLAModel(per["D_um2_s"], per["n_steps"], s2, outlier_weight=0.0, **kw)
    m1 = dist.FTLAModel(per["D_um2_s"], per["n_steps"], s2, outlier_weight=0.1, grid_nm=m0.grid_nm, **kw)
    # unscaled densities: p_kj = lik0 * exp(scale); mixed = 0.9 p + 0.1 / (D̂ ln(Dmax/Dmin))
    p = m0.lik * np.exp(m0.row_log_scale)[:, None]
    q = 1.0 / (per["D_um2_s"].to_numpy() * math.log(m0.grid_D.max() / m0.grid_D.min()))
    ref = 0.9 * p + 0.1 * q[:, None]
    got = m1.lik * np.exp(m1.row_log_scale)[:, None]
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_mode_is_the_main_population_not_a_small_spike():
    """A few per cent of weight at small sizes (narrow cells in nm) must not become the mode."""
    from nta.distribution import grid_statistics, make_grid

    grid = make_grid(np.array([50.0, 3000.0]))
    w = np.exp(-0.5 * ((np.log(grid) - np.log(1000.0)) / 0.08) ** 2)
    w = 0.95 * w / w.sum()
    w[np.argmin(np.abs(grid - 70.0))] += 0.05
    st = grid_statistics(grid, w)
    assert st["mode_nm"] == pytest.approx(1000.0, rel=0.05)
    assert st["d50_nm"] == pytest.approx(1000.0, rel=0.05)


@pytest.mark.parametrize("n, n_boot, seed", [(4011, 1000, 0), (7, 250, 3), (2, 5, 1), (600, 3, 2)])
def test_summary_cis_equal_one_bootstrap_ci_per_statistic(n, n_boot, seed):
    """summarize_sizes draws its resamples once for all four CIs: each CI must equal the
    bootstrap_ci of that statistic alone (same seed, same resamples), bit for bit."""
    rng = np.random.default_rng(seed + 10)
    d = np.exp(rng.normal(np.log(100.0), 0.3, n))
    lo, hi = 40.0, 110.0
    old = {
        "window_fraction_ci95": list(dist.bootstrap_ci(d, lambda s: dist.window_fraction(s, (lo, hi)), n_boot=n_boot, seed=seed)),
        "mean_nm_ci95": list(dist.bootstrap_ci(d, np.mean, n_boot=n_boot, seed=seed)),
        "d50_nm_ci95": list(dist.bootstrap_ci(d, np.median, n_boot=n_boot, seed=seed)),
        "mode_nm_ci95": list(dist.bootstrap_ci(d, dist.mode_of, n_boot=min(n_boot, 200), seed=seed)),
    }
    assert dist._summary_cis(d, (lo, hi), n_boot=n_boot, seed=seed) == old
    s = dist.summarize_sizes(d, window_nm=(lo, hi), n_boot=n_boot, seed=seed)
    assert {k: s[k] for k in old} == old


def test_summary_cis_nan_for_too_few():
    assert all(np.isnan(v).all() for v in dist._summary_cis(np.array([50.0]), (40, 150), n_boot=10, seed=0).values())
    assert all(np.isnan(v).all() for v in dist._summary_cis(np.array([50.0, 60.0]), (40, 150), n_boot=0, seed=0).values())
