"""Concentration against the simulator's truth; bead calibration; no depth → NaN with a note."""

from __future__ import annotations

import json
import math

import pytest

from nta.cli import main
from nta.concentration import calibrate_depth, concentration, read_calibration_file
from nta.pipeline import process
from nta.simulate import simulate_video
from nta.store import read_summary, read_table


@pytest.fixture(scope="module")
def sim100(tmp_path_factory):
    """100 nm particles, 480 × 360 px, 250 frames, 30 visible per frame (≈ 5800 px² per particle)."""
    d = tmp_path_factory.mktemp("conc")
    v = d / "beads100.avi"
    t = simulate_video(v, sizes_nm=(100.0,), size_cv=0.05, n_frames=250, width=480, height=360, exposure_ms=30,
                       particles_per_frame=30, seed=21)
    out = d / "beads100.h5"
    process(v, out, pixel_size_um=t["pixel_size_um"], temperature_c=t["temperature_c"],
            detection_depth_um=t["detection_depth_um"], n_boot=20)
    return out, t


def test_concentration_within_15_percent_of_truth(sim100):
    out, t = sim100
    c = concentration(read_summary(out), read_table(out, "tracks"))
    err = c["concentration_per_ml"] / t["number_density_per_ml"] - 1
    print(f"concentration {c['concentration_per_ml']:.4g} vs truth {t['number_density_per_ml']:.4g} /mL ({err:+.1%})")
    assert abs(err) < 0.15
    assert c["detection_depth_source"].startswith("given to nta process")
    # window concentration and dilution scale as they should
    assert c["window_concentration_per_ml"] <= c["concentration_per_ml"]
    c10 = concentration(read_summary(out), read_table(out, "tracks"), dilution_factor=10, protein_ug_ml=50.0)
    assert c10["concentration_per_ml"] == pytest.approx(10 * c["concentration_per_ml"])
    assert c10["particles_per_ug"] == pytest.approx(c10["concentration_per_ml"] / 50.0)


def test_process_records_and_prints_the_concentration(sim100, capsys):
    """Given --detection-depth, the run's summary holds the concentration that nta qc /
    report / export-csv compute from the stored tracks, and `nta summary` prints it."""
    out, t = sim100
    s = read_summary(out)
    c = concentration(s, read_table(out, "tracks"))
    assert s["concentration_per_ml"] == pytest.approx(c["concentration_per_ml"], rel=1e-12)
    assert s["window_concentration_per_ml"] == pytest.approx(c["window_concentration_per_ml"], rel=1e-12)
    assert s["particles_per_frame_tracked"] == pytest.approx(c["particles_per_frame_tracked"], rel=1e-12)
    assert main(["summary", str(out)]) == 0
    text = capsys.readouterr().out
    line = [ln for ln in text.splitlines() if ln.startswith("concentration")]
    assert len(line) == 1 and f"{c['concentration_per_ml']:.3g} particles/mL" in line[0], line
    # the two per-frame counts are told apart, and the robust SD stands beside the SD
    assert f"detections/frame {s['particles_per_frame']:.1f}" in text
    assert f"tracked particles/frame {c['particles_per_frame_tracked']:.1f}" in text
    assert f"(robust {s['sd_robust_nm']:.1f} nm" in text


def test_calibration_recovers_depth(sim100, tmp_path, capsys):
    out, t = sim100
    cal = calibrate_depth([out], t["number_density_per_ml"])
    assert cal["detection_depth_um"] == pytest.approx(t["detection_depth_um"], rel=0.15)
    f = tmp_path / "cal.json"
    assert main(["calibrate", str(out), "--known", str(t["number_density_per_ml"]), "-o", str(f)]) == 0
    back = read_calibration_file(f)
    assert back["detection_depth_um"] == pytest.approx(cal["detection_depth_um"])
    # a calibration reproduces the known concentration on the same video
    s = dict(read_summary(out), detection_depth_um=None)
    c = concentration(s, read_table(out, "tracks"), calibration=back)
    assert c["concentration_per_ml"] == pytest.approx(t["number_density_per_ml"], rel=1e-6)
    assert "bead calibration" in c["detection_depth_source"]


def test_no_depth_gives_nan_with_note(sim100):
    out, _ = sim100
    s = dict(read_summary(out), detection_depth_um=None)
    c = concentration(s, read_table(out, "tracks"))
    assert math.isnan(c["concentration_per_ml"]) and "--detection-depth" in c["concentration_note"]


def test_bad_calibration_inputs(tmp_path, sim100):
    from nta.errors import CalibrationError, InputError

    with pytest.raises(CalibrationError, match="known bead concentration"):
        calibrate_depth([sim100[0]], -1.0)
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"detection_depth_um": 0}))
    with pytest.raises(InputError, match="detection_depth_um"):
        read_calibration_file(f)
    with pytest.raises(InputError, match="not found"):
        read_calibration_file(tmp_path / "none.json")
