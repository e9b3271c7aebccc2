"""The fast locator gives the same features as before its speed-ups, bit for bit.

``tests/_locate_ref.py`` is the kernel as it was before the row-streaming band-pass (ring
buffers, interleaved running sums) and the van Herk vertical max filter. Every float
operation of the band-pass kept its order and the max filter is exact, so the outputs must
be identical arrays (same features, same order, same values), not merely close. trackpy
agreement itself is tested in tests/test_locate.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nta.kernels import locate as K

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _locate_ref as R  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "mono_100nm.avi"


def _run(M, frame, bg, *, diameter=9, separation=None, minmass=0.0, invert=False, refine=0, maxsize=np.inf):
    r = diameter // 2
    sep = float(diameter + 1) if separation is None else float(separation)
    dil = M.dilation_size(sep)
    margin = float(max(r, sep // 2 - 1, diameter // 2))
    my, mx, r2, cm, sm = M.mask_tables(r)
    has_bg = bg is not None
    b = bg if has_bg else np.zeros((1, 1), np.float32)
    return M.locate_frame(frame, b, has_bg, invert, M.gaussian_kernel(1.0, 4.0), diameter, sep, dil, margin,
                          my, mx, r2, cm, sm, minmass, maxsize, 64.0, 10, M.make_scratch(frame.shape), refine, 1.6)


def _same(frame, bg, **kw):
    a = _run(R, frame, bg, **kw)
    b = _run(K, frame, bg, **kw)
    assert a.shape == b.shape, kw
    np.testing.assert_array_equal(a, b)
    return len(a)


@pytest.fixture(scope="module")
def sample_frames():
    from nta.io import open_frames

    src = open_frames(SAMPLE)
    frames = np.concatenate([c for _, c in src.chunks(64, stop=200, step=25)])
    src.close()
    return frames, np.median(frames, axis=0).astype(np.float32)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(minmass=50.0),
    dict(diameter=7, separation=12.5, invert=True),
    dict(diameter=13, refine=2, minmass=-np.inf),
    dict(diameter=11, separation=8.0, refine=1),
    dict(diameter=5, separation=3.0),  # dilation side 4 (even), small rings
    dict(diameter=31, separation=40.0),  # dilation side 56, 32-row rings
    dict(diameter=15, minmass=-np.inf),  # largest mask of the 16-byte (SWAR) mask sums
    dict(diameter=17, refine=1),  # smallest mask summed pixel by pixel
])
def test_sample_video_frames_identical(sample_frames, kw):
    frames, bg = sample_frames
    n = sum(_same(fr, bg, **kw) for fr in frames)
    assert n > 0


def test_raw_frames_and_odd_shapes_identical():
    rng = np.random.default_rng(5)
    # shapes around the 4-row groups, the 8-wide flag words and the ring size; tiny frames
    for h, w in [(240, 320), (37, 53), (13, 9), (5, 5), (64, 7), (130, 66), (3, 40)]:
        for dt in (np.uint8, np.uint16, np.float32, np.float64):
            fr = rng.normal(100, 20, (h, w))
            for _ in range(5):
                y, x = rng.integers(0, h), rng.integers(0, w)
                fr[max(0, y - 1):y + 2, max(0, x - 1):x + 2] += 400
            fr = np.clip(fr, 0, 1000).astype(dt) if dt != np.uint8 else np.clip(fr, 0, 255).astype(dt)
            _same(fr, None)
            _same(fr, None, invert=True, diameter=7)
            _same(fr, None, diameter=15, minmass=-np.inf)  # masks clamped at every edge
            bg = rng.normal(100, 5, (h, w)).astype(np.float32)
            _same(fr, bg, minmass=10.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_background_model_is_numpy_median(dtype):
    """The 8-bit per-pixel counting median (and the other paths) equal np.median exactly."""
    from nta.locate import background_model

    rng = np.random.default_rng(11)
    for n, h, w in [(100, 37, 130), (101, 20, 65), (1, 5, 7), (2, 3, 64), (7, 1, 1), (300, 4, 9)]:
        hi = 255 if dtype == np.uint8 else 4000
        frames = rng.integers(0, hi + 1, (n, h, w)).astype(dtype)
        frames[:, 0, 0] = hi  # saturated pixel
        frames[: n // 2, -1, -1] = 0  # half the frames black here
        got = background_model(frames)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.median(frames, axis=0).astype(np.float32))


#: Frames narrower (or shorter) than the edge margins, and near it, for the diameters below.
NARROW = [(300, 1), (301, 2), (300, 3), (40, 5), (5, 40), (9, 13), (13, 9), (3, 400), (400, 3), (1, 50), (50, 1),
          (15, 17), (31, 31), (32, 33), (63, 31)]
NARROW_D = (3, 5, 7, 9, 13, 15, 17, 21, 31)


def _narrow_frames():
    rng = np.random.default_rng(9)
    for h, w in NARROW:
        for d in NARROW_D:
            fr = rng.normal(100, 10, (h, w)).clip(0, 255).astype(np.uint8)
            fr[h // 2, w // 2] = 250
            yield fr, d


def test_narrow_frames_identical():
    for fr, d in _narrow_frames():
        _same(fr, None, diameter=d, minmass=0.0)
        _same(fr.astype(np.float32), None, diameter=d, minmass=0.0)


@pytest.mark.slow
def test_kernel_stays_in_bounds_on_narrow_frames(tmp_path):
    """Every array access of the kernel is in bounds (numba's bounds checking on, in a fresh
    process with its own cache) on frames narrower than the margins: a flags-clearing loop
    once wrote before its row there (range(xhi + 1, W) with xhi < 0) and corrupted the heap."""
    import os
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import sys, numpy as np
        sys.path.insert(0, %r)
        from test_locate_equal import _narrow_frames
        from nta.kernels import locate as K
        n = 0
        for fr, d in _narrow_frames():
            r = d // 2; sep = float(d + 1); dil = K.dilation_size(sep); margin = float(max(r, sep // 2 - 1, r))
            my, mx, r2, cm, sm = K.mask_tables(r)
            K.locate_frame(fr, np.zeros((1, 1), np.float32), False, False, K.gaussian_kernel(), d, sep, dil, margin,
                           my, mx, r2, cm, sm, 0.0, np.inf, 64.0, 10, K.make_scratch(fr.shape), 0, 1.6)
            n += 1
        print("frames", n)
    """) % str(Path(__file__).resolve().parent)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"frames {len(NARROW) * len(NARROW_D)}" in p.stdout
