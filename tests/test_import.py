"""nta import / nta compare / AllTracks re-sizing / sidecar calibration discovery."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nta.calibration import stokes_einstein_diffusion
from nta.cli import main
from nta.errors import OutputExistsError, ParseError
from nta.importer import histogram_stats, import_export
from nta.io.vendor import read_export
from nta.sidecar import find_calibration, sample_for
from nta.store import is_complete, read_distribution, read_summary

sys.path.insert(0, str(Path(__file__).parent))
from test_vendor import NANO, ZV_POINT  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NS = ROOT.parent / "shared" / "data" / "nanosight"
needs_ns = pytest.mark.skipif(not (NS / "beads2.csv").is_file(), reason="../shared/data/nanosight not present")


def _write(p: Path, text: str, encoding="cp1252") -> Path:
    p.write_bytes(text.replace("\n", "\r\n").encode(encoding))
    return p


@needs_ns
def test_import_experiment_summary(tmp_path):
    outs = import_export(NS / "beads2.csv", tmp_path)
    names = sorted(p.name for p in outs)
    assert names == sorted([f"beads2.stdv34_0{i}.instrument.h5" for i in range(5)] + ["beads2.Average.instrument.h5"])
    s = read_summary(tmp_path / "beads2.stdv34_00.instrument.h5")
    ref = read_export(NS / "beads2.csv")
    row = ref.size_data["number"].loc["stdv34_00"]
    assert s["complete"] and s["source"].startswith("NanoSight NTA 3.4")
    for k in ("mean_nm", "mode_nm", "sd_nm", "d10_nm", "d50_nm", "d90_nm"):
        assert s[k] == pytest.approx(row[k])
    assert s["tracks_valid"] == int(row["valid_tracks"])
    assert s["concentration_per_ml"] == pytest.approx(ref.results.loc["stdv34_00", "concentration_per_ml"])
    assert 0.95 < s["window_fraction"] <= 1.0  # 100 nm beads: nearly all inside 40–150 nm
    assert s["calibration"]["temperature_c"] == 22.0 and "summary CSV" in s["calibration"]["sources"]["fps"]
    d = read_distribution(tmp_path / "beads2.stdv34_00.instrument.h5")
    assert d["bin_edges_nm"].size == d["counts"].size + 1 and np.all(np.diff(d["bin_edges_nm"]) == pytest.approx(1.0))
    avg = read_summary(tmp_path / "beads2.Average.instrument.h5")
    assert avg["replicate"] is False and avg["mean_nm"] == pytest.approx(101.5)
    # the histogram statistics agree with what the instrument reports (its own histogram)
    hs = histogram_stats(ref.histograms["number"]["bin_centre_nm"], ref.histograms["number"]["stdv34_00"])
    assert hs["mean_nm"] == pytest.approx(row["mean_nm"], abs=1.5)
    # a second import refuses to overwrite, or keeps the identical result when asked
    with pytest.raises(OutputExistsError):
        import_export(NS / "beads2.csv", tmp_path)
    assert len(import_export(NS / "beads2.csv", tmp_path, existing="skip")) == 6


@needs_ns
def test_import_cli_single_file_names(tmp_path, capsys):
    assert main(["import", str(NS / "beads2.csv"), "-o", str(tmp_path / "b.h5")]) == 0
    assert (tmp_path / "b.stdv34_03.h5").is_file() and (tmp_path / "b.Average.h5").is_file()
    assert "D50" in capsys.readouterr().out


def test_import_errors(tmp_path, capsys):
    nano = _write(tmp_path / "x.nano", NANO)
    with pytest.raises(ParseError, match="settings file"):
        import_export(nano, tmp_path)
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["import", str(other), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "notes.csv" in err and "not a recognised instrument export" in err


def test_import_zetaview(tmp_path):
    p = _write(tmp_path / "sample_11.txt", ZV_POINT, encoding="latin-1")
    (out,) = import_export(p, tmp_path)
    s = read_summary(out)
    assert s["source"].startswith("ZetaView") and s["d50_nm"] == pytest.approx(121.4)
    assert s["tracks_valid"] == 1520 and s["temperature_c"] == pytest.approx(23.27)
    assert 0 <= s["window_fraction"] <= 1 and math.isfinite(s["mean_nm"])


def _brownian_all_tracks(path: Path, *, d_nm=100.0, n_tracks=150, n_frames=40, fps=25.0, px=0.166, t_c=22.0, drift=(2.5, 0.0), seed=3):
    """A NanoSight-style AllTracks.csv of Brownian tracks with a common drift (and the vendor's sizes, varied)."""
    rng = np.random.default_rng(seed)
    D = stokes_einstein_diffusion(d_nm, t_c, 0.952941 if t_c == 22.0 else None)
    sig = math.sqrt(2 * D / fps) / px  # px per frame per axis
    rows = []
    for pid in range(1, n_tracks + 1):
        start = int(rng.integers(0, 200))
        f = np.arange(start, start + n_frames)
        xy = np.cumsum(rng.normal(0, sig, (n_frames, 2)), axis=0) + rng.uniform(50, 500, 2)
        xy += np.outer(f, drift) + rng.normal(0, 0.05, (n_frames, 2))  # drift and localisation noise
        size = float(rng.normal(d_nm, 10))
        for k in range(n_frames):
            rows.append((pid, size, 4.3e6, int(f[k]), xy[k, 0], xy[k, 1], 7.0, "True"))
    df = pd.DataFrame(rows, columns=["Particle ID", "Size/nm", "Diffusion coefficient/nm^2 s^-1", "Frame", "X/pixels",
                                     "Y/pixels", "Ln(Adjusted intensity)/AU", "Included in distribution?"])
    df.to_csv(path, index=False)
    return path


def test_all_tracks_resized_by_nta_and_compared(tmp_path, capsys):
    at = _brownian_all_tracks(tmp_path / "v1_AllTracks.csv")
    out = tmp_path / "nta.h5"
    # calibration from nta.toml beside the file, frame rate and temperature from the flags
    (tmp_path / "nta.toml").write_text("pixel_size_um = 0.166\n")
    rc = main(["process", str(at), "-o", str(out), "--fps", "25", "--temperature", "22"])
    assert rc == 0, capsys.readouterr().err
    s = read_summary(out)
    assert s["complete"] and s["tracks_valid"] >= 100
    assert s["d50_nm"] == pytest.approx(100.0, rel=0.10)  # drift subtracted, else far too small
    assert s["drift_px_per_frame"][0] == pytest.approx(2.5, abs=0.2)
    assert "nta.toml" in s["calibration"]["sources"]["pixel_size_um"]
    # the instrument's own per-track sizes, imported, then compared with nta's
    (inst,) = import_export(at, tmp_path / "inst.h5")
    assert read_summary(inst)["tracks_valid"] == 150
    png = tmp_path / "cmp.png"
    assert main(["compare", str(inst), str(out), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "d50_nm" in text and "B − A" in text
    row = [ln.split() for ln in text.splitlines() if ln.startswith("tracks_valid")][0]
    assert all(v == "n/a" or v.lstrip("-").isdigit() for v in row[1:4]), row  # a count, printed as one
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", str(inst), str(out), "--png", str(png)]) == 2  # never overwrites the image


def test_all_tracks_without_frame_rate(tmp_path, capsys):
    at = _brownian_all_tracks(tmp_path / "v_AllTracks.csv", n_tracks=5)
    assert main(["process", str(at), "-o", str(tmp_path / "o.h5"), "--pixel-size", "0.166", "--temperature", "22"]) == 2
    assert "--fps" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


def test_sidecar_precedence(tmp_path):
    d = tmp_path / "day"
    d.mkdir()
    v = d / "stdv34_00.avi"
    v.write_bytes(b"")
    _write(d / "exp.nano", NANO.replace("Temperature=22.000", "Temperature=23.5"))
    (tmp_path / "nta.toml").write_text('pixel_size_um = 0.166\nfps = 30\n[samples]\n"stdv34_00.avi" = "beads A"\n')
    values, sources, extra = find_calibration(v, {"temperature_c": 21.0}, root=tmp_path)
    assert values["temperature_c"] == 21.0 and sources["temperature_c"] == "flag"
    assert values["fps"] == 30 and sources["fps"].startswith("nta.toml")  # the user's file beats the instrument's
    assert values["viscosity_mpas"] == pytest.approx(0.952941) and sources["viscosity_mpas"].startswith(".nano")
    assert values["pixel_size_um"] == 0.166
    assert sample_for(v, extra["samples"]) == "beads A"
    # a .nano listing other videos does not apply
    w = d / "other_01.avi"
    w.write_bytes(b"")
    values, sources, _ = find_calibration(w, {}, root=tmp_path)
    assert "viscosity_mpas" not in values
    (tmp_path / "nta.toml").write_text("pixel_size = 0.166\n")
    with pytest.raises(ParseError, match="unknown key 'pixel_size'"):
        find_calibration(v, {}, root=tmp_path)


@needs_ns
def test_sidecar_from_summary_csv(tmp_path):
    (tmp_path / "beads2.csv").write_bytes((NS / "beads2.csv").read_bytes())
    v = tmp_path / "stdv34_02.avi"
    v.write_bytes(b"")
    values, sources, _ = find_calibration(v, {})
    assert values["fps"] == pytest.approx(24.9825) and values["temperature_c"] == 22.0
    assert values["exposure_ms"] == pytest.approx(22.25) and sources["fps"].startswith("summary CSV")


@pytest.mark.parametrize("name,sample", [("beads_001.avi", "beads"), ("stdv34_00", "stdv34"), ("beads2.csv", "beads2"),
                                         ("EV prep video3.avi", "EV prep"), ("sampleA_rep2.tif", "sampleA")])
def test_sample_names(name, sample):
    assert sample_for(name) == sample
