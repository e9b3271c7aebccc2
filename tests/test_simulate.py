"""Tests of nta.simulate: ground truth, file formats, physics, safe writing, determinism."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from nta.calibration import stokes_einstein_diffusion, water_viscosity
from nta.errors import InputError, OutputExistsError
from nta.simulate import simulate_positions, simulate_video, truth_path_for

av = pytest.importorskip("av")
tifffile = pytest.importorskip("tifffile")

SMALL = dict(width=96, height=80, n_frames=30, particles_per_frame=8.0, seed=3)


def read_av(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate
        frames = [f.to_ndarray(format="gray") for f in c.decode(s)]
    return rate, np.stack(frames)


def test_truth_json_written_and_consistent(tmp_path):
    out = tmp_path / "mono.avi"
    truth = simulate_video(out, sizes_nm=(100.0,), drift_px_per_frame=(2.5, -0.5), **SMALL)
    tpath = tmp_path / "mono.truth.json"
    assert truth_path_for(out) == tpath and tpath.exists()
    on_disk = json.loads(tpath.read_text(encoding="utf-8"))
    assert on_disk["true_median_nm"] == truth["true_median_nm"] == 100.0
    assert on_disk["true_mean_nm"] == 100.0 and on_disk["true_sd_nm"] == 0.0
    assert on_disk["true_d10_nm"] == on_disk["true_d90_nm"] == 100.0
    assert on_disk["true_window_fraction"] == 1.0
    assert on_disk["drift_px_per_frame"] == [2.5, -0.5]
    assert on_disk["fractions"] == [1.0] and on_disk["sizes_nm"] == [100.0]
    for key in ("pixel_size_um", "fps", "exposure_ms", "temperature_c", "viscosity_mpas", "seed", "nta_version",
                "particle_diameters_nm", "mean_visible_per_frame", "number_density_per_ml", "detection_depth_um"):
        assert key in on_disk, key
    assert on_disk["viscosity_mpas"] == pytest.approx(water_viscosity(22.0))
    assert on_disk["exposure_ms"] == pytest.approx(20.0)  # default: half the frame interval at 25 frames/s
    assert len(on_disk["particle_diameters_nm"]) == on_disk["n_particles_visible"] > 0
    assert on_disk["number_density_per_ml"] > 0 and 0 < on_disk["detection_depth_um"] < 30


def test_mixture_fractions_and_spread(tmp_path):
    truth = simulate_video(tmp_path / "mix.tif", sizes_nm=(70.0, 130.0), fractions=(2.0, 2.0), size_cv=0.1,
                           width=128, height=96, n_frames=40, particles_per_frame=30.0, seed=1)
    assert truth["fractions"] == [0.5, 0.5]
    d = np.asarray(truth["particle_diameters_nm"])
    assert np.all((d > 40) & (d < 200))
    vol = truth["volume_population"]
    # log-normal spread around each mode: the volume population is a 1:1 mixture
    assert 85 < vol["median_nm"] < 115
    assert truth["true_d10_nm"] < 80 and truth["true_d90_nm"] > 120


def test_avi_reads_back_with_pyav(tmp_path):
    out = tmp_path / "v.avi"
    simulate_video(out, fps=30.0, **SMALL)
    rate, frames = read_av(out)
    assert frames.shape == (30, 80, 96) and frames.dtype == np.uint8
    assert rate == Fraction(30, 1)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "rawvideo" and s.codec_context.pix_fmt == "gray"


def test_avi_tiff_identical_frames_and_noninteger_rate(tmp_path):
    kw = dict(SMALL, fps=29.97)
    simulate_video(tmp_path / "a.avi", **kw)
    simulate_video(tmp_path / "b.tif", **kw)
    rate, fa = read_av(tmp_path / "a.avi")
    ft = tifffile.imread(tmp_path / "b.tif")
    assert ft.dtype == np.uint8 and ft.shape == fa.shape
    assert np.array_equal(fa, ft)  # bit-identical through the AVI container
    assert rate == Fraction(2997, 100)
    assert 0 < fa.mean() < 60 and fa.max() > 100  # dark background, bright spots


def test_tiff_zlib_lossless(tmp_path):
    simulate_video(tmp_path / "a.tif", **SMALL)
    simulate_video(tmp_path / "b.tif", tiff_compression="zlib", **SMALL)
    assert np.array_equal(tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif"))


def test_msd_matches_stokes_einstein_and_drift():
    drift = (3.0, -1.0)
    px = 0.166
    r = simulate_positions(sizes_nm=(100.0,), n_frames=300, width=320, height=240, particles_per_frame=40.0,
                           drift_px_per_frame=drift, pixel_size_um=px, fps=25.0, seed=11)
    order = np.lexsort((r["frame"], r["particle"]))
    pid, fr = r["particle"][order], r["frame"][order]
    x, y, z = r["x_px"][order], r["y_px"][order], r["z_um"][order]
    ok = (pid[1:] == pid[:-1]) & (fr[1:] == fr[:-1] + 1)
    dx, dy, dz = np.diff(x)[ok], np.diff(y)[ok], np.diff(z)[ok]
    assert dx.size > 10000
    D = stokes_einstein_diffusion(100.0, 22.0, water_viscosity(22.0))
    expect = 2.0 * D / 25.0  # µm² per axis per frame
    assert np.mean(dx) == pytest.approx(drift[0], abs=0.05)
    assert np.mean(dy) == pytest.approx(drift[1], abs=0.05)
    assert np.mean(dz) == pytest.approx(0.0, abs=0.01)
    for d, scale in ((dx, px), (dy, px), (dz, 1.0)):
        msd = np.mean((d - d.mean()) ** 2) * scale**2
        assert msd == pytest.approx(expect, rel=0.04)
    assert np.allclose(r["D_um2_s"], D)


def test_visible_per_frame_near_target():
    r = simulate_positions(sizes_nm=(100.0,), n_frames=400, width=200, height=160, particles_per_frame=25.0,
                           drift_px_per_frame=(4.0, 0.0), seed=5)
    per_frame = np.bincount(r["frame"][r["visible"]], minlength=400)
    assert per_frame.mean() == pytest.approx(25.0, rel=0.2)


def test_refuses_overwrite_and_leaves_no_temp(tmp_path):
    out = tmp_path / "v.avi"
    simulate_video(out, **SMALL)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError) as e:
        simulate_video(out, **SMALL)
    assert "v.avi" in str(e.value) and "overwrite" in str(e.value)
    # the truth file alone also blocks
    out2 = tmp_path / "w.avi"
    truth_path_for(out2).write_text("{}")
    with pytest.raises(OutputExistsError) as e:
        simulate_video(out2, **SMALL)
    assert "w.truth.json" in str(e.value)
    assert out.read_bytes() == before
    simulate_video(out, overwrite=True, **dict(SMALL, seed=4))
    assert out.read_bytes() != before
    # a failure while writing (odd size for H.264) leaves nothing behind
    with pytest.raises(Exception):
        simulate_video(tmp_path / "odd.mp4", **dict(SMALL, width=95))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["v.avi", "v.truth.json", "w.truth.json"]
    with pytest.raises(InputError):
        simulate_video(tmp_path / "x.mkv", **SMALL)


def test_deterministic_with_seed(tmp_path):
    t1 = simulate_video(tmp_path / "a.avi", **SMALL)
    t2 = simulate_video(tmp_path / "b.avi", **SMALL)
    t3 = simulate_video(tmp_path / "c.avi", **dict(SMALL, seed=99))
    _, f1 = read_av(tmp_path / "a.avi")
    _, f2 = read_av(tmp_path / "b.avi")
    _, f3 = read_av(tmp_path / "c.avi")
    assert np.array_equal(f1, f2) and not np.array_equal(f1, f3)
    for k in ("particle_diameters_nm", "particle_frames_visible", "visible_per_frame", "n_particles_in_volume"):
        assert t1[k] == t2[k]
    p1 = simulate_positions(**SMALL)
    p2 = simulate_positions(**SMALL)
    assert np.array_equal(p1["x_px"], p2["x_px"]) and np.array_equal(p1["particle"], p2["particle"])
    # the video's visibility record comes from the same trajectories
    assert np.bincount(p1["frame"][p1["visible"]], minlength=30).tolist() == t1["visible_per_frame"]


def test_mp4_written(tmp_path):
    simulate_video(tmp_path / "a.mp4", **SMALL)
    rate, frames = read_av(tmp_path / "a.mp4")
    assert frames.shape == (30, 80, 96) and rate == 25


def test_signature_defaults_match_simulate_positions():
    import inspect

    from nta import simulate

    sig = inspect.signature(simulate.simulate_video)
    given = {k: v.default for k, v in sig.parameters.items() if k not in ("path", "overwrite", "tiff_compression")}
    assert given == simulate._DEFAULTS
