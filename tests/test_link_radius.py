"""Data-adaptive (two-pass) search radius: nta.link.data_search_radius_px and link_features(adaptive_radius=True)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nta.calibration import make_calibration
from nta.link import (DEFAULT_RADIUS_FLOOR_PX, data_search_radius_px, link_features, search_radius_px)
from nta.simulate import simulate_positions

CAL = make_calibration(pixel_size_um=0.166, fps=25, temperature_c=22)
R_PHYS = search_radius_px(CAL, smallest_diameter_nm=40.0)  # ≈ 22.3 px


def _features(size_nm, ppf, n_frames, seed, *, width=320, height=240, noise_px=0.1, drop=0.15):
    """Located-like features from the simulator's true positions: Gaussian position noise and a
    random 15 % of detections missed (as dim particles flicker), with the true identity."""
    r = simulate_positions(sizes_nm=(size_nm,), n_frames=n_frames, particles_per_frame=ppf, width=width, height=height,
                           drift_px_per_frame=(3.0, 0.0), seed=seed, brightness=2000.0 if size_nm >= 100 else 3e5)
    vis = np.asarray(r["visible"], bool) & (np.random.default_rng(seed + 1).random(len(r["frame"])) > drop)
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"frame": r["frame"][vis], "x": r["x_px"][vis] + rng.normal(0, noise_px, vis.sum()),
                         "y": r["y_px"][vis] + rng.normal(0, noise_px, vis.sum()), "true": r["particle"][vis]})


def _identity_changes(tracks, f, min_step_px=0.0):
    """Links of a track joining two different true particles (with a drift-corrected step ≥ min_step_px, px)."""
    m = tracks.merge(f, left_on=["frame", "x_raw", "y_raw"], right_on=["frame", "x", "y"], suffixes=("", "_f"))
    assert len(m) == len(f)
    m = m.sort_values(["particle", "frame"])
    p, t = m["particle"].to_numpy(), m["true"].to_numpy()
    step = np.hypot(np.diff(m["x"].to_numpy()), np.diff(m["y"].to_numpy()))
    link = p[1:] == p[:-1]
    return int((link & (t[1:] != t[:-1]) & (step >= min_step_px)).sum())


def _gaussian_tracks(n_tracks, sd_px, n_steps, seed, *, heavy=False):
    rng = np.random.default_rng(seed)
    parts = []
    for p in range(n_tracks):
        if heavy:  # Student t with 2 degrees of freedom: heavy tails through the whole distribution
            st = rng.standard_t(2, (n_steps, 2)) * sd_px
        else:
            st = rng.normal(0, sd_px, (n_steps, 2))
        xy = np.vstack([[0.0, 0.0], st.cumsum(axis=0)])
        parts.append(pd.DataFrame({"particle": p, "frame": np.arange(n_steps + 1), "x": xy[:, 0], "y": xy[:, 1]}))
    return pd.concat(parts, ignore_index=True)


def test_radius_of_gaussian_tracks_is_the_rayleigh_quantile_of_the_upper_bound():
    sd = 2.0
    t = _gaussian_tracks(200, sd, 40, seed=1)
    r, info = data_search_radius_px(t, max_radius_px=50.0)
    # s_hi is an upper bound on the 95 % quantile of noisy per-track scales of equal true sd:
    # above sd, but not by more than the median's noise allows (relative SD 1.44/sqrt(40) = 23 %)
    assert sd < info["step_sd_px"] < sd * (1 + 3 * 1.44 / math.sqrt(40))
    assert r == pytest.approx(info["step_sd_px"] * math.sqrt(-2 * math.log(1e-3)) + 1.0)
    assert info["n_tracks"] == 200
    assert 0.07 < info["body_tail"] < 0.13
    assert info["reason"].startswith("data:")


def test_radius_is_clipped_to_floor_and_cap_and_needs_enough_tracks():
    slow = _gaussian_tracks(100, 0.2, 30, seed=2)
    r, info = data_search_radius_px(slow, max_radius_px=30.0)
    assert r == DEFAULT_RADIUS_FLOOR_PX and "floor" in info["reason"]
    fast = _gaussian_tracks(100, 10.0, 30, seed=3)
    r, info = data_search_radius_px(fast, max_radius_px=30.0)
    assert r == 30.0 and "capped" in info["reason"]
    few = _gaussian_tracks(20, 2.0, 30, seed=4)
    r, info = data_search_radius_px(few, max_radius_px=30.0)
    assert r == 30.0 and info["reason"].startswith("physics radius kept")
    short = _gaussian_tracks(100, 2.0, 10, seed=5)  # fewer than 13 steps: not trusted
    r, info = data_search_radius_px(short, max_radius_px=30.0)
    assert r == 30.0 and info["n_tracks"] == 0


def test_heavy_tailed_steps_keep_the_physics_radius():
    t = _gaussian_tracks(200, 1.0, 40, seed=6, heavy=True)
    r, info = data_search_radius_px(t, max_radius_px=11.0)
    assert info["body_tail"] > 0.15
    assert r == 11.0 and "not Gaussian" in info["reason"]


def test_bad_arguments_raise():
    t = _gaussian_tracks(40, 1.0, 20, seed=7)
    with pytest.raises(ValueError):
        data_search_radius_px(t, max_radius_px=10.0, quantile=1.0)
    with pytest.raises(ValueError):
        data_search_radius_px(t, max_radius_px=-1.0)
    with pytest.raises(ValueError):
        data_search_radius_px(t, max_radius_px=10.0, miss_probability=0.0)


def test_two_pass_radius_shrinks_for_300nm_and_mislinks_fall():
    f = _features(300.0, 60, 150, seed=3)
    one = link_features(f.drop(columns="true"), search_range_px=R_PHYS)
    two = link_features(f.drop(columns="true"), search_range_px=R_PHYS, adaptive_radius=True)
    # 300 nm at 25 fps, 0.166 µm/px: D ≈ 1.45 µm²/s, per-axis step SD sqrt(2 D Δt) ≈ 0.34 µm ≈ 2.0 px;
    # 3.72 SD + 1 px ≈ 8.5 px; the upper bound on the 95 % quantile of noisy track scales lands at 9–13 px
    assert one.search_range_px == pytest.approx(R_PHYS)
    assert 8.0 < two.search_range_px < 0.6 * R_PHYS
    assert two.radius_info["first_pass_px"] == pytest.approx(R_PHYS)
    c1, c2 = _identity_changes(one.tracks, f), _identity_changes(two.tracks, f)
    # the single pass joins different particles across long jumps; the second pass cannot (1 px
    # margin for the residual drift subtracted after linking)
    long1 = _identity_changes(one.tracks, f, min_step_px=two.search_range_px + 1.0)
    assert long1 >= 30
    assert _identity_changes(two.tracks, f, min_step_px=two.search_range_px + 1.0) == 0
    assert c2 < 0.8 * c1


def test_two_pass_radius_stays_at_physics_for_40nm():
    f = _features(40.0, 40, 150, seed=3)
    two = link_features(f.drop(columns="true"), search_range_px=R_PHYS, adaptive_radius=True)
    assert two.search_range_px == R_PHYS
    assert two.radius_info["n_tracks"] >= 30
    assert "capped at the physics radius" in two.radius_info["reason"]
    one = link_features(f.drop(columns="true"), search_range_px=R_PHYS)
    assert _identity_changes(two.tracks, f) == _identity_changes(one.tracks, f)


def test_pipeline_records_the_chosen_radius_and_a_given_radius_wins(tmp_path):
    import json

    import h5py

    from nta.pipeline import process
    from nta.simulate import simulate_video

    video = tmp_path / "v300.avi"
    simulate_video(video, sizes_nm=(300.0,), n_frames=120, width=320, height=240, particles_per_frame=30, seed=4)
    s = process(video, tmp_path / "auto.h5", pixel_size_um=0.166, temperature_c=22.0, n_boot=0)
    with h5py.File(tmp_path / "auto.h5") as h:
        p = json.loads(h["provenance"].attrs["parameters"])
    assert p["search_range_source"].startswith("data:")
    assert p["search_range_first_pass_px"] == pytest.approx(R_PHYS)
    assert p["search_range_px"] == pytest.approx(s["search_range_px"])
    assert s["search_range_px"] < 0.6 * R_PHYS
    s2 = process(video, tmp_path / "flag.h5", pixel_size_um=0.166, temperature_c=22.0, n_boot=0, search_range_px=17.0)
    with h5py.File(tmp_path / "flag.h5") as h:
        p2 = json.loads(h["provenance"].attrs["parameters"])
    assert s2["search_range_px"] == 17.0 and p2["search_range_px"] == 17.0 and p2["search_range_source"] == "flag"
    assert "search_range_first_pass_px" not in p2


def test_first_pass_on_a_prefix_of_a_long_video(monkeypatch):
    """Above FIRST_PASS_MAX_FEATURES the measuring pass links a prefix only; the final tracks cover
    every feature, with the radius measured on the prefix (300 nm: shrunk) or, when not reduced
    (40 nm), exactly the single-pass tracks."""
    import nta.link as L

    f = _features(300.0, 60, 150, seed=3).drop(columns="true")
    monkeypatch.setattr(L, "FIRST_PASS_MAX_FEATURES", len(f) // 3)
    monkeypatch.setattr(L, "FIRST_PASS_MIN_FRAMES", 20)
    two = link_features(f, search_range_px=R_PHYS, adaptive_radius=True)
    n_frames = f["frame"].nunique()
    assert 20 <= two.radius_info["first_pass_frames"] < n_frames
    assert len(two.tracks) == len(f)
    assert 8.0 < two.search_range_px < 0.6 * R_PHYS
    g = _features(40.0, 40, 150, seed=3).drop(columns="true")
    monkeypatch.setattr(L, "FIRST_PASS_MAX_FEATURES", len(g) // 3)
    two = link_features(g, search_range_px=R_PHYS, adaptive_radius=True)
    one = link_features(g, search_range_px=R_PHYS)
    assert two.radius_info["first_pass_frames"] < g["frame"].nunique()
    assert two.search_range_px == R_PHYS
    key = ["frame", "x_raw", "y_raw"]
    a = two.tracks.sort_values(key).reset_index(drop=True)
    b = one.tracks.sort_values(key).reset_index(drop=True)
    assert len(a) == len(g)
    # same partition of features into tracks (particle labels may differ)
    assert a.groupby("particle").ngroups == b.groupby("particle").ngroups
    pa = pd.factorize(a["particle"])[0]
    pb = pd.factorize(b["particle"])[0]
    assert np.array_equal(pa, pb)


def test_track_labels_are_reproducible_first_appearance_order():
    """Labels number the tracks by first appearance (frame, then row), whatever order trackpy used."""
    f = _features(100.0, 40, 60, seed=5).drop(columns="true")
    t = link_features(f, search_range_px=R_PHYS).tracks
    p = t.sort_values("frame", kind="stable")["particle"].to_numpy()
    first = pd.unique(p)
    assert np.array_equal(first, np.arange(first.size))
    t2 = link_features(f, search_range_px=R_PHYS).tracks
    assert np.array_equal(t["particle"].to_numpy(), t2["particle"].to_numpy())


def test_kdtree_neighbours_give_trackpys_default_links():
    """nta links with trackpy's KDTree neighbour search: the same partition as its default BTree."""
    import trackpy as tp

    from nta.link import _trackpy_link

    f = _features(100.0, 60, 80, seed=7).drop(columns="true")
    f["x"] -= 3.0 * f["frame"]  # the simulator's drift removed, as link_features does before linking
    a, radius, _ = _trackpy_link(f, R_PHYS, 3)
    b = tp.link(f, R_PHYS, memory=3, adaptive_stop=max(0.5, 0.2 * R_PHYS), adaptive_step=0.9)
    assert radius == R_PHYS
    assert len(a) == len(b) == len(f)
    ka = a.sort_values(["frame", "x", "y"])["particle"].to_numpy()
    kb = b.sort_values(["frame", "x", "y"])["particle"].to_numpy()
    assert np.array_equal(pd.factorize(ka)[0], pd.factorize(kb)[0])
    assert pd.Series(ka).nunique() > 50
