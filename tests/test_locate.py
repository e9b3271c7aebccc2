"""The fast locator (nta.kernels.locate) against trackpy's, its reference.

Frames come from nta.simulate (Brownian particles, 60–150 nm, shot and read noise, 8-bit
camera) and from plain random / edge-case arrays. No timings here (see benchmarks/).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from nta.kernels import locate as K
from nta.locate import (
    background_model,
    estimate_minmass,
    locate_frames,
    subtract_background,
)

trackpy = pytest.importorskip("trackpy")


@pytest.fixture(scope="module")
def sim_frames(tmp_path_factory):
    from nta.io import open_frames
    from nta.simulate import simulate_video

    d = tmp_path_factory.mktemp("loc")
    path = d / "sim.tif"
    simulate_video(path, sizes_nm=(60.0, 100.0, 150.0), n_frames=12, width=320, height=240,
                   particles_per_frame=25, seed=7)
    src = open_frames(path)
    frames = np.concatenate([c for _, c in src.chunks(64)])
    src.close()
    return frames


def _both(frames, *, diameter=9, minmass=0.0, background=None, invert=False, separation=None, maxsize=None):
    if background is None:
        diff = np.asarray(frames, dtype=np.float32)
    else:
        diff = subtract_background(frames, background, invert=invert)
    fast = locate_frames(frames if background is not None else diff, 0, diameter=diameter, minmass=minmass,
                         separation=separation, maxsize=maxsize, locator="fast",
                         background=background, invert=invert, workers=2)
    ref = locate_frames(diff, 0, diameter=diameter, minmass=minmass, separation=separation, maxsize=maxsize,
                        locator="trackpy")
    return fast, ref


def _match(fast, ref, tol=0.05):
    """Nearest-neighbour pairs per frame within 1 px; returns (n matched, max |Δ| px, unmatched fast, unmatched ref)."""
    worst, n, uf, ur = 0.0, 0, 0, 0
    for fr in np.union1d(fast["frame"].unique(), ref["frame"].unique()):
        a = fast[fast["frame"] == fr][["x", "y"]].to_numpy()
        b = ref[ref["frame"] == fr][["x", "y"]].to_numpy()
        if len(a) == 0 or len(b) == 0:
            uf += len(a)
            ur += len(b)
            continue
        dist, j = cKDTree(b).query(a, distance_upper_bound=1.0)
        ok = np.isfinite(dist)
        n += int(ok.sum())
        uf += int((~ok).sum())
        ur += len(b) - len(np.unique(j[ok]))
        if ok.any():
            worst = max(worst, float(np.abs(a[ok] - b[j[ok]]).max()))
    return n, worst, uf, ur


def test_fast_matches_trackpy_on_simulated_frames(sim_frames):
    bg = background_model(sim_frames)
    for diameter in (7, 9, 11):
        fast, ref = _both(sim_frames, diameter=diameter, background=bg)
        n, worst, uf, ur = _match(fast, ref)
        assert len(ref) > 100
        # every feature found by one is found by the other, at the same place
        assert uf == 0 and ur == 0, (uf, ur)
        assert n == len(ref) == len(fast)
        assert worst < 0.05, worst
        # same row order and the same mass definition (so minmass means the same thing)
        np.testing.assert_allclose(fast[["x", "y"]].to_numpy(), ref[["x", "y"]].to_numpy(), atol=0.05)
        m = ref["mass"].to_numpy()
        # 8-bit rescaling: one level of the band-passed image is max/255 counts
        np.testing.assert_allclose(fast["mass"].to_numpy(), m, rtol=0.02, atol=1.0)
        np.testing.assert_allclose(fast["raw_mass"].to_numpy(), ref["raw_mass"].to_numpy(), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(fast["size"].to_numpy(), ref["size"].to_numpy(), atol=0.01)


def test_isolated_particles_within_005_px(sim_frames):
    """The issue's criterion: isolated particles (no other feature within 3 diameters), above a real minmass."""
    bg = background_model(sim_frames)
    diff = subtract_background(sim_frames, bg)
    mm = estimate_minmass(diff[:4], diameter=9, locator="trackpy")["minmass"]
    fast, ref = _both(sim_frames, diameter=9, minmass=mm, background=bg)
    assert len(ref) > 50
    iso = []
    for fr, g in ref.groupby("frame"):
        p = g[["x", "y"]].to_numpy()
        d, _ = cKDTree(p).query(p, k=2) if len(p) > 1 else (np.full((len(p), 2), np.inf), None)
        iso.append(g[d[:, 1] > 27])
    import pandas as pd

    iso = pd.concat(iso)
    n, worst, uf, ur = _match(fast, iso)
    assert n == len(iso) > 30
    assert worst < 0.05


def test_minmass_threshold_same_for_both_locators(sim_frames):
    bg = background_model(sim_frames)
    diff = subtract_background(sim_frames[:4], bg)
    a = estimate_minmass(diff, diameter=9, locator="fast")
    b = estimate_minmass(diff, diameter=9, locator="trackpy")
    assert a["noise_sd"] == b["noise_sd"]
    assert a["minmass"] == pytest.approx(b["minmass"], rel=0.02)


def test_noise_features_per_frame_counts_the_noise_masses(sim_frames):
    from nta.locate import noise_features_per_frame

    bg = background_model(sim_frames)
    noise = estimate_minmass(subtract_background(sim_frames[:4], bg), diameter=9)
    m, n = noise["noise_masses"], noise["noise_frames"]
    assert m.size > 100 and np.all(np.diff(m) >= 0) and n == 4
    for t in (0.0, float(np.median(m)), noise["noise_mass_p99"], noise["minmass"], float(m[-1])):
        assert noise_features_per_frame(noise, t) == np.count_nonzero(m > t) / n
    assert noise_features_per_frame(noise, float(np.median(m))) == pytest.approx(m.size / n / 2, rel=0.01)
    assert noise_features_per_frame(noise, noise["minmass"]) <= 0.25  # the default threshold: ≈ 0.05 per frame
    assert math.isnan(noise_features_per_frame({}, 1.0))


def test_minmass_filter_before_duplicates_is_exact(sim_frames):
    """The fast locator drops sub-minmass candidates before the duplicate search (kernels/locate.py,
    step 6); trackpy drops duplicates among all candidates first. Same features either way: the
    run with a threshold equals the run without one, filtered afterwards, row for row."""
    bg = background_model(sim_frames)
    mm = estimate_minmass(subtract_background(sim_frames[:4], bg), diameter=9)["minmass"]
    for m in (0.0, 0.5 * mm, mm, 2.0 * mm):
        a = locate_frames(sim_frames, 0, diameter=9, minmass=m, background=bg, workers=2)
        b = locate_frames(sim_frames, 0, diameter=9, minmass=None, background=bg, workers=2)
        b = b[b["mass"] > m].reset_index(drop=True)
        assert len(a) > 0
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    # and against trackpy at the noise-derived threshold: every trackpy feature found
    fast, ref = _both(sim_frames, diameter=9, minmass=mm, background=bg)
    n, worst, uf, ur = _match(fast, ref)
    assert ur == 0 and uf == 0 and n == len(ref) > 50


@pytest.mark.parametrize("seed", range(4))
def test_random_frames(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(30, 90, size=2)
    fr = rng.normal(0, 3, (2, h, w)).astype(np.float32)
    # a few Gaussian spots, some at the edges
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(8):
        cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)
        fr[k % 2] += rng.uniform(20, 200) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.6**2))
    fast, ref = _both(fr, diameter=int(rng.choice([5, 7, 9])))
    assert len(fast) == len(ref)
    np.testing.assert_allclose(fast[["x", "y"]].to_numpy(), ref[["x", "y"]].to_numpy(), atol=1e-3)
    np.testing.assert_allclose(fast["mass"].to_numpy(), ref["mass"].to_numpy(), rtol=1e-3, atol=0.05)


def test_uint16_invert_separation_maxsize():
    rng = np.random.default_rng(5)
    h, w = 64, 80
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.full((h, w), 3000.0)
    frames = []
    for t in range(3):
        f = base + rng.normal(0, 20, (h, w))
        for cy, cx in [(20, 20), (40 + t, 55), (30, 31)]:
            f -= 800 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
        frames.append(f)
    frames = np.clip(np.rint(frames), 0, 65535).astype(np.uint16)
    bg = np.full((h, w), 3000, np.float32)
    fast, ref = _both(frames, diameter=7, background=bg, invert=True, separation=12, maxsize=3.0)
    assert len(fast) == len(ref) >= 9
    np.testing.assert_allclose(fast[["x", "y"]].to_numpy(), ref[["x", "y"]].to_numpy(), atol=1e-3)


def test_edge_cases():
    # black frame: trackpy finds nothing, nor does the fast locator
    z = np.zeros((2, 40, 50), np.float32)
    fast, ref = _both(z, diameter=7)
    assert len(fast) == len(ref) == 0
    assert list(fast.columns) == list(ref.columns)
    # constant frame
    c = np.full((1, 40, 50), 7.0, np.float32)
    fast, ref = _both(c, diameter=7)
    assert len(fast) == len(ref) == 0
    # a flat plateau (duplicate maxima resolved the same way)
    p = np.zeros((1, 40, 50), np.float32)
    p[0, 18:21, 20:24] = 100.0
    fast, ref = _both(p, diameter=7)
    assert len(fast) == len(ref) == 1
    # float32 band-pass here vs float64 in trackpy: an 8-bit level may flip (~1e-5 px)
    np.testing.assert_allclose(fast[["x", "y"]].to_numpy(), ref[["x", "y"]].to_numpy(), atol=1e-3)
    # one frame given as 2-D
    one = locate_frames(p[0], 5, diameter=7, minmass=0, locator="fast")
    assert (one["frame"] == 5).all()


def test_building_blocks_against_numpy_and_scipy():
    rng = np.random.default_rng(1)
    # percentile threshold from the histogram equals numpy's linear percentile of the nonzero values
    for n in (1, 2, 3, 10, 101, 5000):
        q = rng.integers(0, 256, n).astype(np.uint8)
        if not (q > 0).any():
            q[0] = 1
        hist = np.bincount(q, minlength=256).astype(np.int64)
        assert K._percentile_threshold(hist, 64.0) == np.percentile(q[q > 0], 64)
    assert np.isnan(K._percentile_threshold(np.zeros(256, np.int64), 64.0))
    # horizontal + vertical max filters equal scipy's grey dilation (odd and even sides)
    q = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    for dil in (1, 2, 3, 8, 11, 14, 16, 17, 25, 32, 33, 60):
        hm = np.empty_like(q)
        K._hmax(q, dil, hm, np.full((2, 53 + 2 * dil), 7, np.uint8))  # scratch starts dirty
        dl = ndimage.grey_dilation(q, (dil, dil), mode="constant")
        lo = dil // 2 - (0 if dil % 2 else 1)
        hi = dil - 1 - lo
        vm = np.zeros_like(q)
        for k in range(-lo, hi + 1):
            sl = np.roll(hm, -k, axis=0)
            if k > 0:
                sl[-k:] = 0
            elif k < 0:
                sl[:-k] = 0
            vm = np.maximum(vm, sl)
        np.testing.assert_array_equal(vm, dl)
    # band-pass equals trackpy's (float32 vs float64 rounding only)
    from trackpy.preprocessing import bandpass

    img = rng.normal(0, 5, (41, 57)).astype(np.float32)
    img[20, 30] += 300
    sc = K.make_scratch(img.shape)
    bmax = K._bandpass(img, np.zeros((1, 1), np.float32), False, False, K.gaussian_kernel(), 9, *sc[:3], sc[5], sc[7])
    ref = bandpass(img, 1, 9, 1 / 255.0)
    np.testing.assert_allclose(sc[2], ref, atol=2e-4)
    assert bmax == pytest.approx(ref.max(), rel=1e-6)


def test_trackpy_locator_subtracts_background_frame_by_frame(sim_frames):
    """locator='trackpy' with a background gives what it gives on the pre-subtracted chunk
    (it subtracts one frame at a time, so a chunk's float copy is never held whole)."""
    frames = sim_frames[:6]
    bg = np.median(sim_frames, axis=0).astype(np.float32)
    for invert in (False, True):
        got = locate_frames(frames, 3, diameter=9, minmass=0.0, locator="trackpy", background=bg, invert=invert)
        ref = locate_frames(subtract_background(frames, bg, invert=invert), 3, diameter=9, minmass=0.0, locator="trackpy")
        assert len(got) > 0 and got["frame"].min() == 3
        pd.testing.assert_frame_equal(got, ref)


def test_bad_arguments():
    with pytest.raises(ValueError):
        locate_frames(np.zeros((1, 20, 20), np.float32), 0, diameter=8, minmass=0, locator="fast")
    with pytest.raises(ValueError):
        locate_frames(np.zeros((1, 20, 20), np.float32), 0, diameter=7, minmass=0, locator="nope")
    # the limit the pipeline checks up front is the kernel's own: the largest diameter runs, the next raises
    from nta.locate import FAST_MAX_DIAMETER

    locate_frames(np.zeros((1, 200, 200), np.float32), 0, diameter=FAST_MAX_DIAMETER, minmass=0, locator="fast")
    with pytest.raises(ValueError, match="locator='trackpy'"):
        locate_frames(np.zeros((1, 200, 200), np.float32), 0, diameter=FAST_MAX_DIAMETER + 2, minmass=0, locator="fast")
    for sep in (0, -5.0):  # a zero-size dilation (was a ZeroDivisionError)
        with pytest.raises(ValueError, match="separation"):
            locate_frames(np.zeros((1, 20, 20), np.float32), 0, diameter=7, minmass=0, separation=sep)
    for loc in ("fast", "trackpy"):
        for bad in (np.zeros(20, np.float32), np.zeros((1, 1, 20, 20), np.float32)):
            with pytest.raises(ValueError, match="shape"):
                locate_frames(bad, 0, diameter=7, minmass=0, locator=loc)
        with pytest.raises(ValueError, match="background shape"):
            locate_frames(np.zeros((2, 20, 20), np.uint8), 0, diameter=7, minmass=0, locator=loc,
                          background=np.zeros((20, 21), np.float32))


# ---- position refinements other than trackpy's (benchmarks/results/localization.md) ----------


def test_refine_options_keep_mass_and_agree_on_isolated_particles(sim_frames):
    """``refine="float"`` / ``"gauss"`` change x, y only: same features, same mass / size / ecc /
    signal (so minmass keeps its meaning). ``"float"`` (trackpy's centroid on the un-quantized
    band-passed image) agrees with trackpy within 0.05 px on isolated particles above 3×minmass;
    ``"gauss"`` finds the peak of a motion-blurred spot rather than its centroid, so it may differ
    by up to ~1 px there (measured max 0.95 px), and is only checked to stay within 1.5 px."""
    bg = background_model(sim_frames)
    mm = estimate_minmass(subtract_background(sim_frames[:4], bg), diameter=9)["minmass"]
    ref = locate_frames(sim_frames, 0, diameter=9, minmass=mm, background=bg, refine="trackpy", workers=2)
    dflt = locate_frames(sim_frames, 0, diameter=9, minmass=mm, background=bg, workers=2)
    np.testing.assert_array_equal(ref.to_numpy(), dflt.to_numpy())  # "trackpy" is the default
    for refine, tol in (("float", 0.05), ("gauss", 1.5)):
        f = locate_frames(sim_frames, 0, diameter=9, minmass=mm, background=bg, refine=refine, workers=2)
        # at most a close pair resolved differently; compare matched rows
        n, worst, uf, ur = _match(f, ref, tol=tol)
        assert uf <= 2 and ur <= 2 and n >= len(ref) - 2
        iso = []
        for fr, g in ref.groupby("frame"):
            p = g[["x", "y"]].to_numpy()
            d, _ = cKDTree(p).query(p, k=2) if len(p) > 1 else (np.full((len(p), 2), np.inf), None)
            iso.append(g[(d[:, 1] > 27) & (g["mass"] > 3 * mm)])
        import pandas as pd

        iso = pd.concat(iso)
        worst, n_iso = 0.0, 0
        # "gauss" may resolve an equal-mass duplicate pair differently (trackpy's tie-break is by
        # position), keeping the other candidate of the pair: same mass, its own size / ecc
        cols = ["mass", "size", "ecc", "signal", "raw_mass"] if refine == "float" else ["mass"]
        for fr, g in iso.groupby("frame"):
            a = f[f["frame"] == fr]
            d, j = cKDTree(a[["x", "y"]].to_numpy()).query(g[["x", "y"]].to_numpy())
            m = a.iloc[j]
            worst = max(worst, float(np.abs(m[["x", "y"]].to_numpy() - g[["x", "y"]].to_numpy()).max()))
            np.testing.assert_allclose(m[cols].to_numpy(), g[cols].to_numpy())
            n_iso += len(g)
        assert n_iso > 30
        assert worst < tol, (refine, worst)


def test_refine_unbiased_on_noiseless_gaussian_spots():
    """Noiseless pixel-integrated Gaussian spots (σ 1.6 px) at sub-pixel offsets across a pixel:
    every refinement finds the centre, the float ones without the 8-bit quantization error."""
    from scipy.special import erf

    h, w = 40, 400
    offs = np.linspace(-0.5, 0.45, 20)
    true = [(20.0 + o, 15.0 + 19 * k + o) for k, o in enumerate(offs)]
    img = np.zeros((h, w))
    s2 = np.sqrt(2) * 1.6
    for y, x in true:
        gx = 0.5 * (erf((np.arange(w) + 0.5 - x) / s2) - erf((np.arange(w) - 0.5 - x) / s2))
        gy = 0.5 * (erf((np.arange(h) + 0.5 - y) / s2) - erf((np.arange(h) - 0.5 - y) / s2))
        img += 30.0 * np.outer(gy, gx)
    img = img.astype(np.float32)
    errs = {}
    for refine in ("trackpy", "float", "gauss"):
        f = locate_frames(img, 0, diameter=9, minmass=1.0, refine=refine).sort_values("x")
        assert len(f) == len(true)
        errs[refine] = np.abs(f[["y", "x"]].to_numpy() - np.array(true)).max()
    assert errs["trackpy"] < 0.05
    assert errs["float"] < 0.01 and errs["gauss"] < 0.01, errs


def test_refine_validation():
    img = np.zeros((30, 30), np.float32)
    with pytest.raises(ValueError):
        locate_frames(img, 0, diameter=7, minmass=0, refine="nope")
    with pytest.raises(ValueError):
        locate_frames(img, 0, diameter=7, minmass=0, locator="trackpy", refine="gauss")


def test_locate_block_equals_frame_by_frame(sim_frames):
    """locate_block (frames in one call, the GIL taken once per block) = locate_frame per frame,
    for a block, one frame, an empty block and frames without features; and through
    locate_frames for block sizes that do not divide the chunk."""
    import nta.locate as NL
    from nta.locate import _scratch

    frames = np.ascontiguousarray(sim_frames)
    frames = np.concatenate([frames, np.zeros((2,) + frames.shape[1:], frames.dtype)])  # two black frames
    H, W = frames.shape[1:]
    r = 4
    args = (np.zeros((1, 1), np.float32), False, False, K.gaussian_kernel(1.0, 4.0), 9, 10.0, K.dilation_size(10.0),
            float(r), *K.mask_tables(r), 50.0, np.inf, 64.0, 10, _scratch((H, W)), 0, 1.6)
    per = [K.locate_frame(frames[i], *args) for i in range(len(frames))]
    for i0, i1 in [(0, len(frames)), (3, 4), (5, 5), (len(frames) - 2, len(frames))]:
        out, counts = K.locate_block(frames, i0, i1, *args)
        assert counts.dtype == np.int64 and counts.shape == (i1 - i0,)
        assert list(counts) == [len(p) for p in per[i0:i1]]
        want = np.concatenate(per[i0:i1]) if i1 > i0 else np.zeros((0, 7))
        np.testing.assert_array_equal(out, want)
    assert counts[-1] == 0 and len(per[3]) > 0
    a = locate_frames(frames, 0, diameter=9, minmass=50.0, locator="fast", workers=2)
    old = NL._BLOCK
    try:
        for b in (1, 5):
            NL._BLOCK = b
            pd_b = locate_frames(frames, 0, diameter=9, minmass=50.0, locator="fast", workers=2)
            assert pd_b.equals(a)
    finally:
        NL._BLOCK = old
def _spot_diameter_per_frame_autocorr(diff, min_diameter=5, max_diameter=31):
    """estimate_spot_diameter as first written: one inverse FFT per frame, autocorrelations summed."""
    import math

    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim == 2:
        diff = diff[None]
    acc = None
    for fr in diff:
        f = np.clip(fr, 0, None)
        f = f - f.mean()
        F = np.fft.rfft2(f)
        ac = np.fft.irfft2(F * np.conj(F), s=f.shape)
        acc = ac if acc is None else acc + ac
    ac = np.fft.fftshift(acc)
    cy, cx = np.array(ac.shape) // 2
    R = max_diameter
    prof = 0.25 * (ac[cy, cx + 1 : cx + R + 1] + ac[cy, cx - R : cx][::-1] + ac[cy + 1 : cy + R + 1, cx] + ac[cy - R : cy, cx][::-1])
    if not np.all(np.isfinite(prof)) or prof[0] <= 0:
        return 7
    base = np.median(prof[R // 2 :])
    p = prof - base
    lags = np.arange(1, R + 1, dtype=float)
    ok = p > 0.1 * p[0]
    n = int(np.argmin(ok)) if not ok.all() else len(ok)
    if n < 2:
        sigma = 1.0
    else:
        slope = np.polyfit(lags[:n] ** 2, np.log(p[:n]), 1)[0]
        sigma = math.sqrt(-1.0 / (4.0 * slope)) if slope < 0 else 1.0
    d = int(min(max(2 * math.ceil(3.0 * sigma) + 1, min_diameter), max_diameter))
    return d if d % 2 == 1 else d + 1


@pytest.mark.parametrize("sigma", [0.8, 1.3, 1.7, 2.2, 3.5, 6.0])
@pytest.mark.parametrize("n_frames", [1, 5])
def test_spot_diameter_summed_power_spectrum_equals_per_frame_autocorrelation(sigma, n_frames):
    """One inverse FFT of the summed power spectra gives the diameter the per-frame
    autocorrelations gave (float32 and float64 frames, 2-D and 3-D input)."""
    from nta.locate import estimate_spot_diameter

    rng = np.random.default_rng(int(sigma * 10) + n_frames)
    frames = rng.normal(0, 2.0, (n_frames, 160, 200))
    yy, xx = np.mgrid[:160, :200]
    for k in range(n_frames):
        for y, x in rng.uniform(10, 150, (40, 2)):
            frames[k] += 60 * np.exp(-((yy - y) ** 2 + (xx - x * 1.25) ** 2) / (2 * sigma**2))
    for arr in (frames, frames.astype(np.float32), frames[0]):
        assert estimate_spot_diameter(arr) == _spot_diameter_per_frame_autocorr(arr)


def test_spot_diameter_edge_cases():
    from nta.locate import estimate_spot_diameter

    z = np.zeros((2, 64, 64), np.float32)
    assert estimate_spot_diameter(z) == _spot_diameter_per_frame_autocorr(z) == 7  # no signal: the default
    neg = -np.ones((64, 64))
    assert estimate_spot_diameter(neg) == _spot_diameter_per_frame_autocorr(neg)
    one = np.zeros((64, 64))
    one[30, 30] = 100.0  # a single hot pixel
    assert estimate_spot_diameter(one) == _spot_diameter_per_frame_autocorr(one)
    # too small for the profile out to max_diameter lags: a plain message, not numpy's broadcast error
    assert estimate_spot_diameter(np.zeros((2, 63, 63), np.float32)) == 7  # the smallest that fits
    for shape in [(2, 300, 2), (2, 62, 200), (2, 24, 24)]:
        with pytest.raises(ValueError, match="too small to measure the spot width"):
            estimate_spot_diameter(np.zeros(shape, np.float32))


def _median_f32(a):
    return K.median_f32(np.ascontiguousarray(a, dtype=np.float32).view(np.uint32))


@pytest.mark.parametrize("seed", range(6))
def test_median_f32_matches_numpy_random(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 3, 4, 5, 17, 64, 1000, 1001, 65536, 300001):
        for a in (rng.normal(0, 3, n), rng.integers(-6, 6, n) * 0.5, rng.exponential(1e3, n),
                  rng.normal(0, 1e-41, n), -rng.random(n), rng.integers(0, 2, n) * 2.0**100):
            a = a.astype(np.float32)
            got, want = _median_f32(a), np.median(a)
            assert got == want, (n, got, want)
            assert np.float32(got) == want


def test_median_f32_edge_cases():
    assert np.isnan(_median_f32(np.zeros(0, np.float32)))
    nan = np.array([1.0, np.nan, 3.0], np.float32)
    assert np.isnan(_median_f32(nan))
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.median(nan))
    for a in ([-0.0, 0.0], [-0.0, -0.0, 1.0], [0.0, -0.0, -1.0, 5.0], [np.inf, -np.inf, 1.0], [np.inf, np.inf],
              [-np.inf, 1.0], [3.4e38, 3.4e38], [-3.4e38, -3.4e38], [1e-45, 2e-45], [7.0] * 9, [2.0, 1.0]):
        a = np.array(a, np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            want = np.median(a)
        got = _median_f32(a)
        assert got == want or (np.isnan(got) and np.isnan(want)), (a, got, want)


def _estimate_noise_np(diff):
    """estimate_noise with numpy's median (as first written)."""
    v = np.asarray(diff, dtype=np.float32).ravel()
    if v.size > 4_000_000:
        v = v[:: v.size // 4_000_000 + 1]
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    probe = v[:: max(1, v.size // 100_000)].astype(np.float64)
    quantized = bool(np.all(np.abs(2.0 * probe - np.round(2.0 * probe)) < 1e-4))
    sd = 1.4826 * float(mad)
    if quantized:
        return float(max(sd, 0.5))
    if sd <= 0:
        sd = float(np.std(v)) or float(np.finfo(np.float32).eps)
    return sd


@pytest.mark.parametrize("seed", range(3))
def test_estimate_noise_same_as_numpy_median(seed):
    from nta.locate import estimate_noise

    rng = np.random.default_rng(seed)
    bg = rng.normal(100, 5, (96, 128)).astype(np.float32)
    frames = rng.poisson(100, (5, 96, 128)).astype(np.uint8)
    cases = [frames.astype(np.float32) - bg, rng.normal(0, 0.01, (3, 50, 70)), np.zeros((2, 8, 8)),
             rng.integers(-3, 4, (4, 1100, 1000)) * 0.5]  # the last above 4 M pixels (subsampled)
    for d in cases:
        assert estimate_noise(d) == _estimate_noise_np(d)
