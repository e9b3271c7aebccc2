"""Issue 7 property tests (hypothesis): parsers and kernels never crash other than with nta's
own error types, and kernels match their plain-numpy references (tests/naive.py).

(The CVE diffusion kernel's property test lives in tests/test_diffusion.py.)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from nta.calibration import Calibration, make_calibration, stokes_einstein_diameter, stokes_einstein_diffusion  # noqa: E402
from nta.errors import CalibrationError, InputError, NTAError  # noqa: E402
from nta.io import natural_sort_key, open_frames, to_grey  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

anything = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
    st.text(max_size=8), st.just("0.166"), st.just([1.0]),
)


# ----------------------------------------------------------------------------- calibration


@FAST
@given(px=anything, fps=anything, t=anything, eta=st.one_of(st.none(), anything), exp=st.one_of(st.none(), anything))
def test_make_calibration_valid_or_calibration_error(px, fps, t, eta, exp):
    try:
        c = make_calibration(pixel_size_um=px, fps=fps, temperature_c=t, viscosity_mpas=eta, exposure_ms=exp)
    except CalibrationError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(c, Calibration)
    for v in (c.pixel_size_um, c.fps, c.viscosity_mpas):
        assert math.isfinite(v) and v > 0
    assert 0.01 <= c.pixel_size_um <= 20 and c.fps <= 10000
    assert math.isfinite(c.temperature_c)
    if eta is None:
        assert 0 <= c.temperature_c <= 100
    assert 0 <= c.motion_blur_r <= 1 / 6


@FAST
@given(d=st.floats(1.0, 5000.0), t=st.floats(0.0, 100.0), eta=st.floats(0.2, 50.0))
def test_stokes_einstein_round_trip(d, t, eta):
    D = stokes_einstein_diffusion(d, t, eta)
    assert stokes_einstein_diameter(D, t, eta) == pytest.approx(d, rel=1e-12)


# ----------------------------------------------------------------------------- frame parsing


@FAST
@given(a=hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16, np.bool_]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
))
def test_to_grey_shape_dtype_or_input_error(a):
    try:
        g = to_grey(a)
    except InputError:
        assert not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4)))
        return
    assert g.ndim == 2 and g.shape == a.shape[:2]
    assert g.dtype == a.dtype
    if a.ndim == 3 and a.shape[-1] >= 3 and np.issubdtype(a.dtype, np.integer):
        # luma is a convex combination: within the channels' range
        assert np.all(g >= a[..., :3].min(axis=-1)) and np.all(g <= a[..., :3].max(axis=-1))


@FAST
@given(names=st.lists(st.text(alphabet="ab0123456789_. ", max_size=10), max_size=20))
def test_natural_sort_key_is_a_total_order(names):
    s1 = sorted(names, key=natural_sort_key)
    s2 = sorted(reversed(names), key=natural_sort_key)
    assert s1 == s2


@pytest.fixture(scope="module")
def sample_bytes(tmp_path_factory):
    import tifffile

    from nta.simulate import simulate_video

    d = tmp_path_factory.mktemp("prop")
    v = d / "p.avi"
    simulate_video(v, sizes_nm=(100.0,), n_frames=6, width=48, height=32, particles_per_frame=3, seed=1)
    t = d / "p.tif"
    tifffile.imwrite(t, np.arange(6 * 32 * 48, dtype=np.uint16).reshape(6, 32, 48))
    return {".avi": v.read_bytes(), ".tif": t.read_bytes()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ext=st.sampled_from([".avi", ".tif"]), data=st.data())
def test_damaged_files_read_or_input_error(sample_bytes, tmp_path_factory, ext, data):
    """Truncations and byte flips of a small AVI/TIFF: frames come out, or InputError — nothing else."""
    raw = bytearray(sample_bytes[ext])
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=12), label="flips")
    for i, v in flips:
        raw[i] = v
    p = tmp_path_factory.mktemp("dmg") / f"d{ext}"
    p.write_bytes(bytes(raw[:cut]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open_frames(p) as src:
                n = 0
                for _, block in src.chunks(4):
                    assert block.ndim == 3 and block.shape[1:] == tuple(src.shape)
                    n += block.shape[0]
                assert n >= 1
        except InputError as e:
            assert str(p) in str(e) and "\n" not in str(e)


# ----------------------------------------------------------------------------- vendor exports


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400), enc=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
       kind=st.sampled_from(["summary", "particles", "tracks", "zetaview", "detect"]))
def test_vendor_parsers_result_or_nta_error(tmp_path_factory, text, enc, kind):
    from nta.io import vendor

    fns = {
        "summary": vendor.read_nanosight_summary,
        "particles": vendor.read_nanosight_particle_data,
        "tracks": vendor.read_nanosight_all_tracks,
        "zetaview": vendor.read_zetaview_txt,
        "detect": vendor.read_export,
    }
    p = tmp_path_factory.mktemp("vendor") / "export.csv"
    p.write_bytes(text.encode(enc, errors="replace"))
    try:
        fns[kind](p)
    except NTAError as e:
        assert "\n" not in str(e).strip()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.one_of(st.text(alphabet="0123456789.,-eE naNYesno", max_size=6),
                                        st.floats(allow_nan=True).map(str)), min_size=0, max_size=6), max_size=12),
       header=st.sampled_from(["Particle ID,Size/nm,True particle?,Frame\n", "Track,Frame,X,Y\n", "[Section]\n", ""]))
def test_vendor_csv_like_rows_result_or_nta_error(tmp_path_factory, rows, header):
    from nta.io import vendor

    p = tmp_path_factory.mktemp("vendor_rows") / "ParticleData.csv"
    p.write_text(header + "\n".join(",".join(r) for r in rows), encoding="utf-8")
    for fn in (vendor.read_nanosight_particle_data, vendor.read_nanosight_all_tracks, vendor.read_export):
        try:
            fn(p)
        except NTAError:
            pass


# ----------------------------------------------------------------------------- FTLA kernels vs naive


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 12), G=st.integers(1, 15),
       r=st.sampled_from([0.0, 1 / 12, 1 / 6]))
def test_gamma_loglik_kernel_matches_naive(seed, K, G, r):
    from nta.kernels.ftla import gamma_loglik_matrix
    from tests.naive import naive_gamma_loglik

    rng = np.random.default_rng(seed)
    d_hat = rng.lognormal(0, 1.5, K)
    bad = rng.random(K) < 0.3  # estimates with no likelihood: negative, zero, NaN
    d_hat[bad] = rng.choice([-0.3, 0.0, np.nan], bad.sum())
    n = rng.integers(0, 100, K).astype(float)
    s2 = rng.uniform(0, 0.05, K)
    grid = np.geomspace(0.01, 100, G)
    got = gamma_loglik_matrix(d_hat, n, s2, 0.04, r, grid)
    with np.errstate(all="ignore"):
        ref = naive_gamma_loglik(d_hat, n, s2, 0.04, r, grid)
    fin = np.isfinite(ref)
    assert np.array_equal(np.isfinite(got), fin)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-8, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 10), G=st.integers(1, 12), smooth=st.booleans())
def test_em_kernel_matches_naive(seed, K, G, smooth):
    from nta.kernels.ftla import em_weights
    from tests.naive import naive_em

    rng = np.random.default_rng(seed)
    lik = rng.random((K, G)) ** 3
    c = rng.integers(0, 4, K).astype(float)
    c[0] = max(c[0], 1.0)
    lik[lik.sum(axis=1) == 0, 0] = 1.0
    w0 = np.full(G, 1.0 / G)
    if smooth and G > 2:
        S = np.eye(G) * 0.5 + np.eye(G, k=1) * 0.25 + np.eye(G, k=-1) * 0.25
        S /= S.sum(axis=0, keepdims=True)
    else:
        S = np.zeros((0, 0))
    w, it, ll = em_weights(lik, c, w0, S, 30, 1e-12)
    wr, itr, llr = naive_em(lik, c, w0, S, 30, 1e-12)
    assert it == itr
    np.testing.assert_allclose(w, wr, rtol=1e-8, atol=1e-12)
    assert ll == pytest.approx(llr, rel=1e-9, abs=1e-9)
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
