"""StreamLinker (linking beside the locator) gives link_features' result bit for bit."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import nta.link as L
from nta.calibration import make_calibration
from nta.link import StreamLinker, link_features, search_radius_px
from nta.simulate import simulate_positions

CAL = make_calibration(pixel_size_um=0.166, fps=25, temperature_c=22)
R_PHYS = search_radius_px(CAL, smallest_diameter_nm=40.0)


def _features(size_nm=150.0, ppf=30, n_frames=160, seed=3, drop=0.15, first_frame=0):
    r = simulate_positions(sizes_nm=(size_nm,), n_frames=n_frames, particles_per_frame=ppf, width=320, height=240,
                           drift_px_per_frame=(3.0, -1.0), seed=seed, brightness=2000.0)
    vis = np.asarray(r["visible"], bool) & (np.random.default_rng(seed + 1).random(len(r["frame"])) > drop)
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({"frame": r["frame"][vis].astype(np.int64) + first_frame,
                      "x": r["x_px"][vis] + rng.normal(0, 0.1, vis.sum()),
                      "y": r["y_px"][vis] + rng.normal(0, 0.1, vis.sum()),
                      "mass": rng.uniform(100, 200, vis.sum())})
    return f.sort_values("frame", kind="stable").reset_index(drop=True)


def _stream(f, n_frames, chunk, **kw):
    sl = StreamLinker(**kw)
    fr = f["frame"].to_numpy()
    for first in range(0, n_frames, chunk):
        m = (fr >= first) & (fr < first + chunk)
        sl.add(f[m], first, min(chunk, n_frames - first))
    return sl.finish(f)


def _same(a, b):
    pd.testing.assert_frame_equal(a.tracks, b.tracks, check_exact=True)
    pd.testing.assert_frame_equal(a.drift, b.drift, check_exact=True)
    assert a.search_range_px == b.search_range_px
    assert a.drift_velocity == b.drift_velocity
    assert a.notes == b.notes
    assert a.radius_info == b.radius_info


@pytest.mark.parametrize("chunk,follow", [(1, True), (7, True), (64, True), (500, True), (7, False)])
def test_stream_equals_batch_two_pass(chunk, follow):
    f = _features()
    a = link_features(f, search_range_px=R_PHYS, adaptive_radius=True)
    b = _stream(f, 160, chunk, search_range_px=R_PHYS, adaptive_radius=True, follow=follow)
    _same(a, b)
    assert a.search_range_px < R_PHYS  # the second pass ran (150 nm particles: a smaller radius)
    assert a.tracks["particle"].nunique() > 20


def test_stream_equals_batch_one_pass_and_split():
    f = _features(size_nm=100.0, seed=5)
    a = link_features(f, search_range_px=12.0, split_alpha=1e-4)
    b = _stream(f, 160, 16, search_range_px=12.0, split_alpha=1e-4)
    _same(a, b)


def test_stream_equals_batch_with_first_pass_prefix(monkeypatch):
    """A long video: the measuring pass stops at the prefix link_features uses, decided as
    the feature counts arrive; the final pass follows the locator from frame 0 again."""
    monkeypatch.setattr(L, "FIRST_PASS_MAX_FEATURES", 1500)
    monkeypatch.setattr(L, "FIRST_PASS_MIN_FRAMES", 30)
    f = _features(n_frames=200, seed=8)
    assert len(f) > 3 * 1500
    a = link_features(f, search_range_px=R_PHYS, adaptive_radius=True)
    assert "first pass on the first" in a.radius_info["reason"]
    for chunk in (5, 64):
        _same(a, _stream(f, 200, chunk, search_range_px=R_PHYS, adaptive_radius=True))
    _same(a, _stream(f, 200, 5, search_range_px=R_PHYS, adaptive_radius=True, follow=False))
    # the prefix rule's floor of FIRST_PASS_MIN_FRAMES frames
    monkeypatch.setattr(L, "FIRST_PASS_MIN_FRAMES", 120)
    a = link_features(f, search_range_px=R_PHYS, adaptive_radius=True)
    assert a.radius_info["first_pass_frames"] == 120
    _same(a, _stream(f, 200, 9, search_range_px=R_PHYS, adaptive_radius=True))


def test_stream_with_empty_frames_at_start_middle_and_end():
    """Frames without features (before the first, in a gap, after the last) and chunks holding none."""
    f = _features(first_frame=10)
    f = f[(f["frame"] < 70) | (f["frame"] > 95)].reset_index(drop=True)  # a 25-frame gap: one window without pairs
    n = 190  # 20 trailing frames without features
    a = link_features(f, search_range_px=R_PHYS, adaptive_radius=True)
    for chunk in (3, 25, 64):
        _same(a, _stream(f, n, chunk, search_range_px=R_PHYS, adaptive_radius=True))
        _same(a, _stream(f, n, chunk, search_range_px=R_PHYS, adaptive_radius=True, follow=False))


def test_stream_falls_back_to_batch_without_enough_frames():
    f = _features(n_frames=40)
    one = f[f["frame"] == 5].reset_index(drop=True)
    _same(link_features(one, search_range_px=10.0), _stream(one, 40, 8, search_range_px=10.0))
    none = f.iloc[:0]
    b = _stream(none, 40, 8, search_range_px=10.0)
    assert len(b.tracks) == 0 and b.notes == ["no features to link"]


def test_stream_falls_back_to_batch_on_oversize_subnetwork(monkeypatch):
    """trackpy giving up on a subnetwork: the whole table is linked by link_features, which
    shrinks the radius (here forced: the stream's own pass raises)."""
    f = _features(n_frames=60)

    class Boom(Exception):
        pass

    calls = {"n": 0}
    real = L.StreamLinker._pass

    def failing(self, radius, stop_at_prefix=False):
        import trackpy as tp

        calls["n"] += 1
        raise tp.SubnetOversizeException("too large")

    monkeypatch.setattr(L.StreamLinker, "_pass", failing)
    b = _stream(f, 60, 16, search_range_px=R_PHYS, adaptive_radius=True)
    monkeypatch.setattr(L.StreamLinker, "_pass", real)
    assert calls["n"] == 1
    _same(link_features(f, search_range_px=R_PHYS, adaptive_radius=True), b)


def test_stream_error_reaches_the_caller(monkeypatch):
    f = _features(n_frames=40)

    def broken(*a, **k):
        raise ValueError("broken window")

    monkeypatch.setattr(L, "_window_velocity", broken)
    with pytest.raises(ValueError, match="broken window"):
        _stream(f, 40, 8, search_range_px=10.0)


def test_cancel_ends_the_thread():
    f = _features(n_frames=60)
    sl = StreamLinker(search_range_px=R_PHYS, adaptive_radius=True)
    sl.add(f[f["frame"] < 30], 0, 30)
    sl.cancel()
    assert StreamLinker(search_range_px=5.0, follow=False)._thread is None
    t = time.perf_counter()
    sl._thread.join(timeout=10)
    assert not sl._thread.is_alive()
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("follow", [True, False])
def test_process_links_as_link_features_on_its_features(tmp_path, monkeypatch, follow):
    """End to end: the tracks and drift nta process writes (linked while locating, or after
    it on 2 CPUs) are those of link_features on the features it wrote."""
    import nta.pipeline as P
    from nta.pipeline import process

    monkeypatch.setattr(P, "_follow_locator", lambda locator: follow)
    from nta.simulate import simulate_video
    from nta.store import read_table

    v = tmp_path / "v.avi"
    simulate_video(v, sizes_nm=(150.0,), n_frames=200, width=320, height=240, particles_per_frame=30, seed=4,
                   drift_px_per_frame=(2.0, 0.0))
    out = tmp_path / "v.h5"
    s = process(v, out, pixel_size_um=0.166, temperature_c=22.0, n_boot=20, chunk_size=16)
    f = read_table(out, "features")
    t = read_table(out, "tracks")
    a = link_features(f, search_range_px=R_PHYS, adaptive_radius=True)
    assert s["search_range_px"] == a.search_range_px < R_PHYS
    want = a.tracks[list(t.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(t.reset_index(drop=True), want, check_exact=True, check_dtype=False)
    d = read_table(out, "drift")
    np.testing.assert_array_equal(d[["dx_px", "dy_px"]].to_numpy(), a.drift[["dx_px", "dy_px"]].to_numpy())
