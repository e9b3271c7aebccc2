"""nta batch: tables, per-sample statistics, restart rules, three engines, kill and restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nta.batch import read_batch, run_batch, sample_statistics
from nta.simulate import simulate_video
from nta.store import is_complete, read_summary

VIDEO_KW = dict(n_frames=120, width=240, height=200, particles_per_frame=15)
NUMERIC = ["tracks_valid", "tracks_total", "mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm", "window_fraction"]


def _make_folder(root: Path, names, *, broken=False) -> Path:
    for i, (sub, name, size) in enumerate(names):
        (root / sub).mkdir(parents=True, exist_ok=True)
        simulate_video(root / sub / f"{name}.avi", sizes_nm=(size,), seed=10 + i, **VIDEO_KW)
        (root / sub / f"{name}.truth.json").unlink()
    if broken:
        (root / names[0][0] / "broken_001.avi").write_bytes(b"RIFF not really a video")
    (root / "nta.toml").write_text("pixel_size_um = 0.166\ntemperature_c = 22\n")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _make_folder(tmp_path_factory.mktemp("inputs"), [("day1", "beads_001", 100.0), ("day1", "beads_002", 100.0),
                                                            ("day2", "beads_001", 100.0), ("day2", "exo_001", 150.0)], broken=True)


def _nta(*args, **kw):
    return subprocess.run([sys.executable, "-m", "nta.cli", *map(str, args)], capture_output=True, text=True, **kw)


def test_batch_tables_and_restart_rules(folder, tmp_path):
    res = tmp_path / "res"
    r = run_batch([str(folder)], res, jobs=1, flags={"n_boot": 100})
    v = r["videos"]
    assert r["counts"] == {"done": 4, "skipped": 0, "failed": 1}
    assert list(v.columns)[:6] == ["file", "result", "kind", "sample", "replicate", "status"]
    # mirrored layout: two videos named beads_001 in two folders do not collide
    assert (res / "day1" / "beads_001.h5").is_file() and (res / "day2" / "beads_001.h5").is_file()
    bad = v[v["file"].str.endswith("broken_001.avi")].iloc[0]
    assert bad["status"] == "failed" and "broken_001.avi" in bad["error"] and "not a readable video" in bad["error"]
    good = v[v["status"] == "done"]
    assert (good["tracks_valid"] > 10).all() and (good["pixel_size_um"] == 0.166).all()
    srcs = json.loads(good.iloc[0]["calibration_sources"])
    assert srcs["pixel_size_um"].startswith("nta.toml") and srcs["fps"] == "container"
    # sample statistics: beads has three replicate videos
    s = r["samples"].set_index("sample")
    b = good[good["sample"] == "beads"]["d50_nm"].to_numpy()
    assert s.loc["beads", "n_videos"] == 3 and s.loc["beads", "d50_nm_mean"] == pytest.approx(b.mean())
    assert s.loc["beads", "d50_nm_sd"] == pytest.approx(b.std(ddof=1))
    assert s.loc["beads", "d50_nm_se"] == pytest.approx(b.std(ddof=1) / np.sqrt(3))
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * b.std(ddof=1) / np.sqrt(3)
    assert s.loc["beads", "d50_nm_ci95_high"] == pytest.approx(b.mean() + half)
    assert s.loc["exo", "n_videos"] == 1 and np.isnan(s.loc["exo", "d50_nm_sd"])
    assert s.loc["exo", "d50_nm_mean"] > s.loc["beads", "d50_nm_mean"]
    assert s.loc["broken", "n_failed"] == 1
    # the batch file and the CSVs hold the same tables
    hv, hs = read_batch(res / "batch.h5")
    cv = pd.read_csv(res / "batch_videos.csv")
    assert len(hv) == len(cv) == 5 and list(hs["sample"]) == list(r["samples"]["sample"])
    assert np.allclose(hv["d50_nm"].astype(float), cv["d50_nm"], equal_nan=True)

    # second run: everything complete is skipped, nothing rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in res.rglob("*.h5") if p.name != "batch.h5"}
    r2 = run_batch([str(folder)], res, jobs=1, flags={"n_boot": 100})
    assert r2["counts"] == {"done": 0, "skipped": 4, "failed": 1}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    pd.testing.assert_frame_equal(r2["videos"][NUMERIC], r["videos"][NUMERIC])

    # other parameters: left untouched and reported, unless --overwrite
    r3 = run_batch([str(folder)], res, jobs=1, flags={"n_boot": 100, "temperature_c": 25.0})
    assert r3["counts"]["failed"] == 5
    row = r3["videos"][r3["videos"]["status"] == "exists with other parameters"].iloc[0]
    assert "temperature_c 22.0 → 25.0" in row["error"] and "--overwrite" in row["error"]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # the refused rows keep the existing results' numbers in the batch tables
    kept = r3["videos"]["status"] == "exists with other parameters"
    before = r["videos"].set_index("file").loc[r3["videos"].loc[kept, "file"], "d50_nm"].to_numpy()
    np.testing.assert_allclose(r3["videos"].loc[kept, "d50_nm"].to_numpy(float), before.astype(float))
    # ... and in the sample table (which a refused re-run once rewrote with every sample empty)
    pd.testing.assert_frame_equal(r3["samples"].reset_index(drop=True), r["samples"].reset_index(drop=True))

    # an incomplete result (killed run) is redone
    victim = res / "day2" / "exo_001.h5"
    import h5py

    with h5py.File(victim, "a") as f:
        f.attrs["complete"] = False
        f.attrs["status"] = "interrupted: test"
    r4 = run_batch([str(folder)], res, jobs=1, flags={"n_boot": 100})
    assert r4["counts"] == {"done": 1, "skipped": 3, "failed": 1}
    assert is_complete(victim)


def test_batch_cli_samples_csv_and_missing_calibration(tmp_path):
    src = _make_folder(tmp_path / "in", [("", "a_001", 100.0), ("", "b_001", 100.0)])
    (src / "nta.toml").unlink()
    (src / "samples.csv").write_text("file,sample\na_001.avi,control\nb_001.avi,control\n")
    r = _nta("batch", src, "-o", tmp_path / "res", "--jobs", "1", "--temperature", "22")
    assert r.returncode == 1
    assert "pixel_size_um not given" in r.stderr and "--pixel-size" in r.stderr
    r = _nta("batch", src, "-o", tmp_path / "res", "--jobs", "1", "--temperature", "22", "--pixel-size", "0.166", "--max-frames", "80")
    assert r.returncode == 0, r.stderr
    assert "2 done" in r.stdout and "control" in r.stdout
    v, s = read_batch(tmp_path / "res")
    assert set(v["sample"]) == {"control"} and int(s["n_videos"].iloc[0]) == 2
    assert json.loads(v["calibration_sources"].iloc[0])["pixel_size_um"] == "flag"
    r = _nta("batch", tmp_path / "nothing*", "-o", tmp_path / "res2")
    assert r.returncode == 2 and "matches no file" in r.stderr


def test_sample_statistics_excludes_failed_and_average():
    v = pd.DataFrame({"sample": ["s"] * 4, "kind": ["nta"] * 4, "status": ["done", "skipped", "failed", "done"],
                      "replicate": [True, True, True, False], "d50_nm": [100.0, 110.0, np.nan, 500.0]})
    s = sample_statistics(v, metrics=("d50_nm",)).iloc[0]
    assert s["n_videos"] == 2 and s["n_failed"] == 1 and s["d50_nm_mean"] == 105.0


def _tables_equal(a: Path, b: Path):
    va, sa = read_batch(a)
    vb, sb = read_batch(b)
    key = ["file", "sample", "status"]
    pd.testing.assert_frame_equal(va[key + NUMERIC].reset_index(drop=True), vb[key + NUMERIC].reset_index(drop=True))
    num = [c for c in sa.columns if c.endswith(("_mean", "_sd", "_se", "_low", "_high"))]
    pd.testing.assert_frame_equal(sa[num], sb[num])


@pytest.mark.slow
def test_batch_three_engines_same_results(tmp_path):
    src = _make_folder(tmp_path / "in", [("", "s_001", 100.0), ("", "s_002", 100.0), ("", "t_001", 130.0)])
    common = ["--max-frames", "100"]
    r = _nta("batch", src, "-o", tmp_path / "local", "--jobs", "2", *common)
    assert r.returncode == 0, r.stderr
    r = _nta("batch", src, "-o", tmp_path / "dlocal", "--dask-local", "2", *common)
    assert r.returncode == 0, r.stderr
    # a scheduler and two workers on loopback, started here and stopped at the end
    sf = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--no-dashboard", "--scheduler-file", str(sf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t0 = time.time()
        while not sf.exists() and time.time() - t0 < 60:
            time.sleep(0.2)
        assert sf.exists(), "the scheduler did not start"
        addr = json.loads(sf.read_text())["address"]
        assert addr.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                           "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        r = _nta("batch", src, "-o", tmp_path / "sched", "--scheduler", addr, *common)
        assert r.returncode == 0, r.stderr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    for other in ("dlocal", "sched"):
        _tables_equal(tmp_path / "local", tmp_path / other)
    assert json.loads(__import__("h5py").File(tmp_path / "sched" / "batch.h5", "r").attrs["info"])["engine"].startswith("dask scheduler tcp://127.0.0.1")


@pytest.mark.slow
def test_batch_killed_midway_then_restarted(tmp_path):
    names = [("", f"k_{i:03d}", 100.0) for i in range(1, 7)]
    src = _make_folder(tmp_path / "in", names)
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "nta.cli", "batch", str(src), "-o", str(res), "--jobs", "2"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 120:  # kill as soon as the first result is complete, the others mid-way
            done = [q for q in res.glob("k_*.h5") if is_complete(q)] if res.exists() else []
            if done:
                break
            time.sleep(0.05)
        assert done, "no result appeared"
        os.killpg(p.pid, signal.SIGKILL)  # the whole batch, workers included: no clean-up at all
        p.wait(30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    finished_before = {q.name: q.stat().st_mtime_ns for q in res.glob("k_*.h5") if is_complete(q)}
    assert 1 <= len(finished_before) < len(names)
    assert not (res / "batch.h5").exists()
    r = _nta("batch", src, "-o", res, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    v, _ = read_batch(res)
    assert len(v) == len(names) and v["file"].is_unique
    assert set(v["status"]) <= {"done", "skipped"}
    assert (v["status"] == "skipped").sum() == len(finished_before)
    results = sorted(res.glob("k_*.h5"))
    assert [q.stem for q in results] == [n for _, n, _ in names]  # every result once
    assert all(is_complete(q) and read_summary(q)["tracks_valid"] > 0 for q in results)
    assert {q.name: q.stat().st_mtime_ns for q in res.glob("k_*.h5") if q.name in finished_before} == finished_before
    assert not list(res.glob("*.partial"))


def test_result_made_without_the_track_length_model_is_not_skipped(tmp_path):
    # a complete result whose distribution predates the FTLA's track-length model is a
    # different request, reported as such (and redone with --overwrite), not "skipped"
    import h5py

    src = _make_folder(tmp_path / "in", [("d1", "beads_001", 100.0), ("d2", "beads_002", 100.0)])
    res = tmp_path / "res"
    r1 = run_batch([str(src)], res, jobs=1, flags={"n_boot": 50})
    assert r1["counts"]["done"] == 2, r1["videos"]["error"].tolist()
    out = sorted(p for p in res.rglob("*.h5") if p.name != "batch.h5")[0]
    with h5py.File(out, "r+") as f:  # what an earlier nta wrote: no ftla.length_model
        s = json.loads(f["summary"].attrs["json"])
        assert "length_model" in s["ftla"]
        del s["ftla"]["length_model"]
        f["summary"].attrs["json"] = json.dumps(s)
        pa = json.loads(f["provenance"].attrs["parameters"])
        del pa["ftla_length_model"]
        f["provenance"].attrs["parameters"] = json.dumps(pa)
    r2 = run_batch([str(src)], res, jobs=1, flags={"n_boot": 50})
    st = dict(zip(r2["videos"]["status"], r2["videos"]["error"]))
    assert r2["counts"]["skipped"] == 1 and "track-length model" in st["exists with other parameters"]
    assert "made by an earlier nta" in st["exists with other parameters"]
    r3 = run_batch([str(src)], res, jobs=1, flags={"n_boot": 50}, overwrite=True)
    assert r3["counts"] == {"done": 1, "skipped": 1, "failed": 0} and "length_model" in read_summary(out)["ftla"]
    # --no-length-model is another request, and gives Walker's FTLA
    r4 = run_batch([str(src)], res, jobs=1, flags={"n_boot": 50, "length_model": False})
    assert set(r4["videos"]["status"]) == {"exists with other parameters"}
    assert "track-length model on → off" in r4["videos"]["error"].iloc[0]
    r5 = run_batch([str(src)], res, jobs=1, flags={"n_boot": 50, "length_model": False}, overwrite=True)
    assert r5["counts"]["done"] == 2
    s5 = read_summary(out)
    assert s5["ftla"]["length_model"] == {"bins": 0} and "track-length model" not in s5["distribution"]
    assert run_batch([str(src)], res, jobs=1, flags={"n_boot": 50, "length_model": False})["counts"]["skipped"] == 2
