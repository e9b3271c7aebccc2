"""QC rules: result files built to fail each default rule fail with that rule's reason."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from nta.cli import main
from nta.errors import InputError
from nta.qc import evaluate, load_rules, load_runs, read_qc
from nta.store import ResultWriter


def make_result(path, *, n_frames=300, ppf=40.0, n_valid=400, diam_nm=100.0, spread=0.05, large_frac=0.0,
                drift=(0.5, 0.0), noise_sd=4.0, signal=60.0, short_frac=0.4, frames_analysed=None, complete=True,
                depth=10.0, sample="s1", seed=0, d50_scale=1.0, conc_scale=1.0):
    """A small, fully controlled result file in nta's schema (no video needed)."""
    rng = np.random.default_rng(seed)
    n_an = n_frames if frames_analysed is None else frames_analysed
    # tracks: each spans `length` frames; number of tracks chosen for the wanted particles/frame
    length = 20
    n_tracks = max(1, int(round(ppf * conc_scale * n_an / length)))
    starts = rng.integers(0, max(1, n_an - length), n_tracks)
    fr = (starts[:, None] + np.arange(length)).ravel()
    pid = np.repeat(np.arange(n_tracks), length)
    tracks = pd.DataFrame({"frame": fr, "particle": pid, "x": rng.random(fr.size) * 600, "y": rng.random(fr.size) * 400})
    feats = pd.DataFrame({"frame": fr, "x": tracks.x, "y": tracks.y, "mass": np.full(fr.size, 500.0),
                          "signal": np.full(fr.size, signal)})
    # per-track table: n_valid included tracks + short ones
    n_short = int(round(n_valid * short_frac / (1 - short_frac)))
    n_large = int(round(n_valid * large_frac))
    d = np.exp(rng.normal(np.log(diam_nm * d50_scale), spread, n_valid))
    d[:n_large] = 300.0
    dd = np.concatenate([d, np.full(n_short, 100.0)])
    per = pd.DataFrame({"particle": np.arange(dd.size), "n_points": np.r_[np.full(n_valid, 20), np.full(n_short, 3)],
                        "diameter_nm": dd, "mass_mean": np.full(dd.size, 500.0),
                        "included": np.r_[np.ones(n_valid, bool), np.zeros(n_short, bool)]})
    q = np.quantile(d, [0.1, 0.5, 0.9])
    from nta.distribution import histogram, mode_of, window_fraction

    summary = dict(tracks_valid=n_valid, tracks_total=len(per), mean_nm=float(d.mean()), mode_nm=mode_of(d), sd_nm=float(d.std()),
                   d10_nm=q[0], d50_nm=q[1], d90_nm=q[2], window_nm=[40.0, 150.0], window_fraction=window_fraction(d),
                   n_frames=n_an, features=len(feats), particles_per_frame=len(feats) / n_an, drift_px_per_frame=list(drift),
                   frame_shape_px=[480, 640], field_of_view_um2=480 * 640 * 0.166**2, dilution_factor=1.0,
                   detection_depth_um=depth, protein_ug_ml=None, sample=sample, pixel_size_um=0.166, fps=25.0,
                   temperature_c=22.0, viscosity_mpas=0.95, diameter_px=9, min_track_length_steps=10, notes=[])
    with ResultWriter(path, overwrite=True) as w:
        w.set_provenance(parameters={"noise_sd_counts": noise_sd, "max_frames": None},
                         input_info={"n_frames": n_frames}, calibration={"pixel_size_um": 0.166}, inputs=[{"path": f"{sample}.avi"}])
        w.write_table("features", feats)
        w.write_table("tracks", tracks)
        w.write_table("per_track", per)
        w.write_table("drift", pd.DataFrame({"frame": np.arange(n_an), "dx_px": np.arange(n_an) * drift[0], "dy_px": np.zeros(n_an)}))
        e, c = histogram(d)
        w.write_arrays("distribution", {"bin_edges_nm": e, "counts": c})
        w.write_summary(summary)
        if complete:
            w.finish()
        else:
            w.abort("interrupted: test")
    return path


def _statuses(tmp_path, rules=None, n_videos=3, **kw):
    folder = tmp_path / "res"
    folder.mkdir(exist_ok=True)
    for i in range(n_videos):
        make_result(folder / f"v{i}.h5", seed=i, **{k: (v[i] if isinstance(v, list) and k.endswith("_scale") else v) for k, v in kw.items()})
    runs = load_runs(folder)
    res = evaluate(runs, rules or load_rules())
    out = {}
    for r in runs:
        for x in r.qc:
            out.setdefault(x["rule"], []).append(x)
    for s in res["samples"].values():
        for x in s["qc"]:
            out.setdefault(x["rule"], []).append(x)
    return out, res


def test_good_runs_pass(tmp_path):
    # 3 videos × 400 valid tracks = 1200 ≥ 1000
    st, res = _statuses(tmp_path)
    bad = {k: [x["reason"] for x in v] for k, v in st.items() if any(x["status"] != "PASS" for x in v)}
    assert res["verdict"] == "PASS", bad


CASES = {
    "run.complete": dict(complete=False),
    "run.particles_per_frame": dict(ppf=5.0),
    "run.tracks_valid": dict(n_valid=60),
    "run.drift_um_s": dict(drift=(15.0, 5.0)),  # 15.8 px/frame × 0.166 µm × 25/s = 66 µm/s
    "run.snr": dict(signal=8.0),  # 8 / 4 = 2
    "run.short_track_fraction": dict(short_frac=0.9),
    "run.frames_lost_fraction": dict(frames_analysed=240),
    "sample.tracks_valid": dict(n_valid=200),
    "sample.mode_nm": dict(diam_nm=200.0),
    "sample.d50_nm": dict(diam_nm=30.0),
    "sample.window_fraction": dict(spread=1.2),
    "sample.large_fraction": dict(large_frac=0.2),
    "sample.cv_d50": dict(d50_scale=[1.0, 1.2, 0.85]),
    "sample.cv_concentration": dict(conc_scale=[1.0, 1.6, 0.7]),
}


@pytest.mark.parametrize("rule", list(CASES))
def test_each_default_rule_fails_with_its_reason(tmp_path, rule):
    st, res = _statuses(tmp_path, **CASES[rule])
    hits = st[rule]
    assert any(x["status"] == "FAIL" for x in hits), hits
    reason = next(x["reason"] for x in hits if x["status"] == "FAIL")
    assert ("fail_below" in reason or "fail_above" in reason), reason
    assert res["verdict"] == "FAIL"


def test_every_default_rule_is_covered():
    rules = load_rules()
    fail_rules = {f"{sc}.{n}" for sc in ("run", "sample") for n, s in rules[sc].items() if "fail_below" in s or "fail_above" in s}
    assert fail_rules == set(CASES)
    # the two warn-only rules
    assert {f"{sc}.{n}" for sc in ("run", "sample") for n in rules[sc]} - fail_rules == {"run.detection_depth", "sample.videos"}


def test_warn_only_rules(tmp_path):
    st, _ = _statuses(tmp_path, n_videos=1, depth=None)
    assert st["sample.videos"][0]["status"] == "WARN"
    dd = st["run.detection_depth"][0]
    assert dd["status"] == "WARN" and "--detection-depth" in dd["reason"]
    assert st["sample.cv_d50"][0]["status"] == "N/A"


def test_user_rules_override_and_errors(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("[sample.tracks_valid]\nfail_below = 10\n[run.snr]\nenabled = false\n")
    rules = load_rules(f)
    assert rules["sample"]["tracks_valid"]["fail_below"] == 10 and rules["run"]["snr"]["enabled"] is False
    f.write_text("[run.nonsense]\nfail_below = 1\n")
    with pytest.raises(InputError, match="unknown rule"):
        load_rules(f)
    f.write_text("[run.snr\n")
    with pytest.raises(InputError, match="TOML"):
        load_rules(f)


def test_cli_qc_exit_code_and_hdf5(tmp_path, capsys):
    folder = tmp_path / "res"
    folder.mkdir()
    make_result(folder / "a.h5", sample="x", ppf=5.0)
    make_result(folder / "b.h5", sample="x", seed=1)
    (folder / "batch.csv").write_text("not a result\n")
    (folder / "batch.h5").write_bytes(b"not hdf5 either")
    assert main(["qc", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "sample x: FAIL" in out and "particles/frame" in out and "overall: FAIL" in out
    q = read_qc(folder / "a.h5")
    assert q["verdict"] == "FAIL" and q["sample_verdict"] == "FAIL"
    rules = {x["rule"]: x for x in q["rules"]}
    assert rules["run.particles_per_frame"]["status"] == "FAIL"
    assert math.isfinite(rules["run.particles_per_frame"]["value"])
    import h5py

    with h5py.File(folder / "a.h5", "r") as f:
        assert bool(f.attrs["complete"]) is True  # QC leaves the complete flag alone
    # a passing file: exit 0 with permissive rules
    r = tmp_path / "ok.toml"
    r.write_text("[sample.tracks_valid]\nfail_below = 1\n[sample.videos]\nwarn_below = 1\n")
    assert main(["qc", str(folder / "b.h5"), "--rules", str(r), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["verdict"] in ("PASS", "WARN")


def test_samples_csv_groups(tmp_path):
    folder = tmp_path / "res"
    folder.mkdir()
    for i in range(4):
        make_result(folder / f"v{i}.h5", seed=i, sample=f"v{i}")
    (folder / "samples.csv").write_text("video,sample,group\nv0.avi,A,ctrl\nv1.avi,A,ctrl\nv2,B,treat\nv3.h5,B,treat\n")
    runs = load_runs(folder)
    assert [(r.sample, r.group) for r in runs] == [("A", "ctrl"), ("A", "ctrl"), ("B", "treat"), ("B", "treat")]


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such"):
        load_runs(tmp_path / "nope")
    with pytest.raises(InputError, match="no nta result"):
        load_runs(tmp_path)
    make_result(tmp_path / "a.h5")
    (tmp_path / "s.csv").write_text("name,x\n1,2\n")
    with pytest.raises(InputError, match="columns"):
        load_runs(tmp_path, samples_csv=tmp_path / "s.csv")
