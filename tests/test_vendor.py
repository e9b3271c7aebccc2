"""Tests of nta.io.vendor: NanoSight and ZetaView export readers.

Real NanoSight exports are read from ``../shared/data/nanosight`` (relative to the project
root; skipped when absent, never copied into the repository).  Every other input is a
small file written by the test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nta.calibration import water_viscosity
from nta.errors import ParseError
from nta.io.vendor import (
    detect_export,
    read_export,
    read_nano_file,
    read_nanosight_all_tracks,
    read_nanosight_particle_data,
    read_nanosight_summary,
    read_nanosight_video_summary,
    read_zetaview_txt,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nanosight"
REAL = ["beads.csv", "beads2.csv", "nanotest.csv"]


def _real(name):
    p = DATA / name
    if not p.is_file():
        pytest.skip(f"real data {p} not available")
    return p


def _write(path: Path, text: str, encoding="cp1252", newline="\r\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


# ---------------------------------------------------------------------------------------
# real NanoSight experiment summaries
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_real_summary_structure(name):
    s = read_nanosight_summary(_real(name))
    assert s.kind == "experiment"
    assert s.title == "NTA Experiment Summary File"
    assert s.missing_sections == []
    for df in (s.conditions, s.settings, s.results, s.concentration_warnings, s.information):
        assert isinstance(df, pd.DataFrame)
    assert list(s.size_data) == ["number"]
    assert list(s.histograms) == ["number"]
    assert list(s.percentiles) == ["number"]
    h = s.histograms["number"]
    # 1-nm bins, centres 0.5 … 999.5
    assert len(h) == 1000
    assert h["bin_centre_nm"].iloc[0] == 0.5 and h["bin_centre_nm"].iloc[-1] == 999.5
    assert np.allclose(np.diff(h["bin_centre_nm"]), 1.0)
    assert list(h.columns) == ["bin_centre_nm", *s.videos, "Average", "Standard Error"]
    p = s.percentiles["number"]
    assert list(p.index) == list(range(101)) and list(p.columns) == s.videos
    assert s.data_included == ["Size distribution - Number weighting - With Percentiles"]
    assert s.exclusion_regions == ["No Exclusion Regions Used"]
    # raw sections kept with the original keys
    assert "Frame rate/fps" in s.sections["Conditions"].index
    assert (s.frame_rate_fps == 24.9825).all()


@pytest.mark.parametrize("name", REAL)
def test_real_viscosity_is_water_formula(name):
    s = read_nanosight_summary(_real(name))
    t = s.temperature_c.to_numpy()
    eta = s.viscosity_mpas.to_numpy()
    assert np.isfinite(t).all() and np.isfinite(eta).all()
    np.testing.assert_array_equal(np.round(water_viscosity(t), 6), eta)


def test_beads2_values():
    s = read_nanosight_summary(_real("beads2.csv"))
    assert s.software_version == "NTA 3.4 Build 3.4.003"
    assert s.details["Sample Description"] == "100nmbeads"
    assert s.details["Experiment Name"] == "stdv34_.nano"
    assert s.videos == [f"stdv34_0{i}" for i in range(5)]
    assert s.processed == {v: True for v in s.videos}
    # conditions: the file writes 22.000 and 0.952941
    assert (s.temperature_c == 22.0).all()
    assert (s.viscosity_mpas == 0.952941).all()
    assert round(water_viscosity(22.0), 6) == 0.952941
    assert (s.conditions.loc[s.videos, "shutter_ms"] == 22.25).all()
    assert (s.conditions.loc[s.videos, "camera_level"] == 11).all()
    assert (s.settings.loc[s.videos, "n_frames_analysed"] == 499).all()
    assert (s.settings.loc[s.videos, "detection_threshold"] == 5).all()
    assert s.settings.loc["stdv34_00", "max_jump_distance_px"] == 14.7134
    r = s.results
    assert (r.loc[s.videos, "dilution_factor"] == 1e4).all()
    assert math.isnan(r.loc["Average", "dilution_factor"])  # empty cell → NaN, not 0
    assert r.loc["Average", "concentration_per_ml"] == 6.09e12
    assert r.loc["Standard Error", "concentration_per_ml"] == 6.67e10
    assert r.loc["Average", "particles_per_frame"] == 113.3
    assert list(r.loc[s.videos, "drift_x_px_per_frame"]) == [-3.8, -3.9, -4.0, -3.9, -3.9]
    assert r.loc[s.videos, "drift_x_px_per_frame"].mean() == pytest.approx(-3.9)
    assert list(r.loc[s.videos, "completed_tracks"]) == [4677, 4571, 4470, 4512, 4655]
    n = s.size_data["number"]
    avg = n.loc["Average"]
    assert (avg["mean_nm"], avg["mode_nm"], avg["sd_nm"]) == (101.5, 98.4, 12.8)
    assert (avg["d10_nm"], avg["d50_nm"], avg["d90_nm"]) == (88.7, 99.8, 115.3)
    assert list(n.loc[s.videos, "valid_tracks"]) == [1872, 1898, 1879, 1948, 1929]
    assert n.loc[s.videos, "valid_tracks"].mean() == pytest.approx(1900, abs=10)
    assert n.loc["Standard Error", "mean_nm"] == 0.4
    assert s.empty_videos == []
    assert s.histograms["number"].loc[17, "stdv34_00"] == 149  # bin 17.5 nm
    assert s.percentiles["number"].loc[50, "stdv34_00"] == 98.6
    assert s.percentiles["number"].loc[100, "stdv34_01"] == 329.0
    w = s.concentration_warnings
    assert (w.loc[s.videos, "validity_of_concentration_measurement"] == "OK").all()
    assert s.information.loc["stdv34_00", "vibration_detected"] == "Moderate vibration"


def test_beads_values():
    s = read_nanosight_summary(_real("beads.csv"))
    assert s.software_version == "NTA 3.2 Dev Build 3.2.16"  # "Software Version,Unknown"
    assert len(s.videos) == 12
    avg = s.size_data["number"].loc["Average"]
    assert (avg["mean_nm"], avg["mode_nm"], avg["d50_nm"]) == (100.5, 95.3, 96.4)
    assert (s.settings.loc[s.videos, "n_frames_analysed"] == 749).all()
    # "Not recorded" → NaN, raw text kept
    assert s.results["dilution_factor"].isna().all()
    assert s.sections["Results"].iloc[0, 0] == "Not recorded"
    assert s.temperature_c.iloc[0] == 22.348 and s.viscosity_mpas.iloc[0] == 0.945113
    assert s.empty_videos == []


def test_nanotest_values():
    s = read_nanosight_summary(_real("nanotest.csv"))
    assert len(s.videos) == 36
    mean = s.size_data["number"]["mean_nm"]
    for run, expected in (("100", 103.3), ("200", 186.4), ("400", 293.6)):
        sel = [v for v in s.videos if v.startswith(run + "_")]
        assert len(sel) == 6
        assert mean[sel].mean() == pytest.approx(expected, abs=0.05)  # NaN-skipping
    # the "yes" runs of 100/200/400 found nothing: 0 valid tracks, statistics NaN
    empty = [v for v in s.videos if v.startswith(("100_yes", "200_yes", "400_yes"))]
    assert set(empty) <= set(s.empty_videos)
    assert set(s.empty_videos) == set(empty) | {"mG15.5_yes_500_01", "mG15.5_yes_500_02"}
    assert s.size_data["number"].loc[empty, ["mean_nm", "d50_nm", "sd_nm"]].isna().all().all()
    assert (s.size_data["number"].loc[empty, "valid_tracks"] == 0).all()
    assert s.percentiles["number"][empty].isna().all().all()
    # the file itself wrote 0 there (kept raw)
    assert s.sections["Size Data"]["stats"]["number"].loc["400_yes_50_00", "mean_nm"] == 0
    # a yes run that did find particles keeps its numbers
    assert mean["mG15.5_yes_500_00"] == 106.4
    assert s.size_data["number"].loc["mG15.5_yes_500_00", "valid_tracks"] == 2
    assert s.size_data["number"].loc["Average", "mean_nm"] == 102.0
    assert (s.settings.loc[[v for v in s.videos if v.startswith("400_yes")],
                           "n_frames_analysed"] == 0).all()
    assert any("0 valid tracks" in n for n in s.notes)


@pytest.mark.parametrize("name", REAL)
def test_real_detect(name):
    assert detect_export(_real(name)) == "nanosight_summary"
    assert read_export(_real(name)).videos


# ---------------------------------------------------------------------------------------
# synthetic NanoSight summaries (per-video, variants, malformed)
# ---------------------------------------------------------------------------------------

VIDEO_SUMMARY = """NTA Single Analysis Summary File,
Created with NTA 3.4 Build 3.4.003,
,
[Experiment Details],,
Software Version,NTA 3.4 Build 3.4.003,
Sample Description,test,
Filename:,vid_00,
,
[Conditions],,
Temperature/{deg}C,25.000,
Viscosity/cP,0.889,
Frame rate/fps,30.0,
Shutter/ms,15,
,
[Settings],,
Detection Threshold,5,
Max Jump Distance,12.5,
Total frames analysed,1498,
Mystery Setting,42,
,
[Results],,
Dilution factor (concentrations adjusted for this factor),100,
Concentration (Particles / ml),3.2e+09,
Particles per frame,25.5,
Completed tracks,812,
X-Drift (pix/frame),1.5,
Y-Drift (pix/frame),,
,
[Size Data],,
Analysis Method,FTLA,
Weighting,Number,
Filename,vid_00,
Mean,150.2,
Mode,140.0,
SD,30.1,
D10,110.0,
D50,145.0,
D90,190.0,
Valid Tracks,700,
Graph Data,
Bin centre (nm),Concentration (particles / ml),
0.5,0,
1.5,10,
2.5,,
,
Percentile,Size (nm),
0,80,
50,145,
100,400,
,
Weighting,Volume,
Filename,vid_00,
Mean,170.0,
Mode,160.0,
SD,40.0,
D10,120.0,
D50,165.0,
D90,230.0,
Valid Tracks,700,
Graph Data,
Bin centre (nm),Concentration (nm^3 / ml),
0.5,0,
1.5,5,
,
Percentile,Size (nm),
0,90,
100,410,
,
[Diffusion Coefficient Data],,
Weighting,Number,
Filename,vid_00,
Mean,3.1,
Bin centre (1E4 nm2/s),Concentration,
0.5,1,
1.5,2,
"""


def test_video_summary(tmp_path):
    p = _write(tmp_path / "vid_00_Summary.csv", VIDEO_SUMMARY.format(deg="\xb0"))
    s = read_nanosight_video_summary(p)
    assert s.kind == "video"
    assert s.title == "NTA Single Analysis Summary File"
    assert s.videos == ["vid_00"]
    assert s.temperature_c["vid_00"] == 25.0
    assert s.viscosity_mpas["vid_00"] == 0.889
    assert s.frame_rate_fps["vid_00"] == 30.0
    assert s.settings.loc["vid_00", "mystery_setting"] == 42  # unknown key kept
    assert s.results.loc["vid_00", "dilution_factor"] == 100
    assert math.isnan(s.results.loc["vid_00", "drift_y_px_per_frame"])  # empty → NaN
    assert "Average" not in s.results.index  # no Average column in this file
    assert set(s.size_data) == {"number", "volume"}
    assert s.size_data["number"].loc["vid_00", "d50_nm"] == 145.0
    assert s.size_data["volume"].loc["vid_00", "mean_nm"] == 170.0
    h = s.histograms["number"]
    assert list(h["vid_00"][:2]) == [0, 10] and math.isnan(h["vid_00"][2])
    assert list(s.histograms["volume"]["vid_00"]) == [0, 5]
    assert s.percentiles["volume"].loc[100, "vid_00"] == 410
    assert s.diffusion_data["number"].loc["vid_00", "mean"] == 3.1
    assert list(s.diffusion_histograms["number"]["bin_centre"]) == [0.5, 1.5]
    # per-video file: [Concentration Warnings] / [Information] not expected
    assert s.missing_sections == []
    assert detect_export(p) == "nanosight_summary"
    assert read_export(p).kind == "video"


def test_summary_mangled_units_and_utf8_bom(tmp_path):
    # unit strings as UTF-8 read as cp1252 and written back ("Â°C"), file with a UTF-8 BOM
    text = VIDEO_SUMMARY.format(deg="Â\xb0").replace("Viscosity/cP", "Viscosity/mPa\xb7s")
    p = tmp_path / "x.csv"
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    s = read_nanosight_video_summary(p)
    assert s.temperature_c["vid_00"] == 25.0
    assert s.viscosity_mpas["vid_00"] == 0.889
    assert s.title == "NTA Single Analysis Summary File"


def test_summary_missing_sections(tmp_path):
    text = VIDEO_SUMMARY.format(deg="")
    cut = text[: text.index("[Results]")]  # Experiment Details, Conditions, Settings only
    p = _write(tmp_path / "cut.csv", cut.replace("Single Analysis", "Experiment"))
    s = read_nanosight_summary(p)
    assert s.results is None and s.size_data is None and s.histograms is None
    assert s.missing_sections == ["Results", "Concentration Warnings", "Information", "Size Data"]
    assert any("missing sections" in n for n in s.notes)
    assert s.temperature_c["vid_00"] == 25.0


def test_summary_videos_from_size_data_when_no_filename_row(tmp_path):
    text = VIDEO_SUMMARY.format(deg="").replace("Filename:,vid_00,\n", "")
    s = read_nanosight_video_summary(_write(tmp_path / "v.csv", text))
    assert s.videos == ["vid_00"]
    assert any("Size Data" in n for n in s.notes)


@pytest.mark.parametrize("content", [
    "",
    "just some text\nwithout sections\n",
    "a,b,c\n1,2,3\n",
])
def test_summary_malformed(tmp_path, content):
    p = _write(tmp_path / "bad.csv", content)
    with pytest.raises(ParseError) as e:
        read_nanosight_summary(p)
    assert str(p) in str(e.value) and e.value.fix


def test_summary_not_nanosight_sections(tmp_path):
    p = _write(tmp_path / "ini.csv", "[foo]\na=1\n[bar]\nb,2\n")
    with pytest.raises(ParseError, match="none of the sections"):
        read_nanosight_summary(p)


def test_summary_binary_and_missing(tmp_path):
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\x00\x01\x02NTA\x00" * 100)
    with pytest.raises(ParseError, match="binary"):
        read_nanosight_summary(p)
    with pytest.raises(ParseError, match="not found"):
        read_nanosight_summary(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------
# ParticleData / AllTracks
# ---------------------------------------------------------------------------------------

PD_HEADER = ("Particle ID,Size/nm,Diffusion coefficient/nm^2 s^-1,Ln(Adjusted intensity)/AU,"
             "Start frame,Tracklength,Included in distribution?")
AT_HEADER = ("Particle ID,Size/nm,Diffusion coefficient/nm^2 s^-1,Frame,X/pixels,Y/pixels,"
             "Ln(Adjusted intensity)/AU,Included in distribution?")


@pytest.mark.parametrize("yes,no", [("True", "False"), ("1", "0"), ("Yes", "No"),
                                    ("TRUE", "false")])
def test_particle_data_flags(tmp_path, yes, no):
    text = (PD_HEADER + "\n"
            f"1,101.5,4.3e+06,7.25,0,35,{yes}\n"
            f"2,250.0,1.7e+06,9.10,12,8,{no}\n"
            f"3,,,6.5,40,3,{no}\n")
    p = _write(tmp_path / "v_ParticleData.csv", text)
    df = read_nanosight_particle_data(p)
    assert list(df.columns) == ["particle", "diameter_nm", "D_um2_s", "ln_intensity",
                                "frame_start", "track_length", "included"]
    assert df["included"].dtype == bool
    assert list(df["included"]) == [True, False, False]
    assert df["particle"].dtype == np.int64 and list(df["particle"]) == [1, 2, 3]
    assert df["D_um2_s"][0] == pytest.approx(4.3)  # nm²/s ÷ 1e6
    assert df["diameter_nm"][1] == 250.0
    assert math.isnan(df["diameter_nm"][2]) and math.isnan(df["D_um2_s"][2])  # empty → NaN
    assert list(df["track_length"]) == [35, 8, 3]
    assert df.attrs["truncated"] is False
    assert detect_export(p) == "nanosight_particle_data"


def test_all_tracks(tmp_path):
    text = (AT_HEADER + ",Extra col\n"
            "1,101.5,4.3e+06,0,10.5,20.25,7.1,Yes,a\n"
            "1,101.5,4.3e+06,1,11.0,20.75,7.2,Yes,b\n"
            "2,300.0,1.4e+06,5,100.0,50.0,9.0,No,c\n")
    p = _write(tmp_path / "v_AllTracks.csv", text)
    df = read_nanosight_all_tracks(p)
    for c in ("particle", "frame", "x", "y", "diameter_nm", "D_um2_s", "ln_intensity",
              "included"):
        assert c in df
    assert list(df["frame"]) == [0, 1, 5] and df["frame"].dtype == np.int64
    assert list(df["x"]) == [10.5, 11.0, 100.0]
    assert list(df["included"]) == [True, True, False]
    assert list(df["Extra col"]) == ["a", "b", "c"]
    assert df.attrs["extra_columns"] == ["Extra col"]
    assert detect_export(p) == "nanosight_all_tracks"


def test_particle_data_missing_flag_and_truncated(tmp_path):
    text = (PD_HEADER + "\n1,101.5,4.3e+06,7.25,0,35,\n2,250.0,1.7e+06,9.10,12,8,True\n"
            "3,120.0,3.6e+")  # cut mid-line, no final newline
    p = tmp_path / "t_ParticleData.csv"
    p.write_bytes(text.encode("cp1252"))
    df = read_nanosight_particle_data(p)
    assert len(df) == 2
    assert df.attrs["truncated"] is True and "truncated" in df.attrs["notes"][0]
    assert str(df["included"].dtype) == "boolean" and df["included"].isna()[0]


def test_particle_data_bad_flag_and_values(tmp_path):
    p = _write(tmp_path / "b.csv", PD_HEADER + "\n1,101.5,4.3e+06,7.25,0,35,maybe\n")
    with pytest.raises(ParseError, match="True/False"):
        read_nanosight_particle_data(p)
    p = _write(tmp_path / "c.csv", PD_HEADER + "\n1,abc,4.3e+06,7.25,0,35,True\n")
    with pytest.raises(ParseError, match="non-numeric"):
        read_nanosight_particle_data(p)
    p = _write(tmp_path / "d.csv", PD_HEADER + "\n1,1,2,3,4,5,True,6,7\n")
    with pytest.raises(ParseError, match="fields"):
        read_nanosight_particle_data(p)


def test_particle_data_no_header(tmp_path):
    p = _write(tmp_path / "h.csv", "1,101.5,4.3e+06,7.25,0,35,True\n")
    with pytest.raises(ParseError, match="Particle ID") as e:
        read_nanosight_particle_data(p)
    assert str(p) in str(e.value)
    # AllTracks reader on a ParticleData file: Frame / X / Y missing
    p = _write(tmp_path / "pd.csv", PD_HEADER + "\n1,101.5,4.3e+06,7.25,0,35,True\n")
    with pytest.raises(ParseError, match="lacks column"):
        read_nanosight_all_tracks(p)


# ---------------------------------------------------------------------------------------
# .nano
# ---------------------------------------------------------------------------------------

NANO = """[Filenames]
File0=C:\\NanoSight\\Data\\stdv34_00.avi
File1=C:\\NanoSight\\Data\\stdv34_01.avi
[CaptureSettings]
FrameRate=24.9825
FrameCount=499
Temperature=22.000
Viscosity=0.952941
CameraLevel=11
[Other]
Foo=bar
"""


def test_nano_file(tmp_path):
    p = _write(tmp_path / "stdv34_.nano", NANO)
    d = read_nano_file(p)
    assert d["videos"] == ["C:\\NanoSight\\Data\\stdv34_00.avi",
                           "C:\\NanoSight\\Data\\stdv34_01.avi"]
    assert d["frame_rate_fps"] == 24.9825 and d["n_frames"] == 499
    assert d["temperature_c"] == 22.0 and d["viscosity_mpas"] == 0.952941
    assert d["missing"] == []
    assert d["sections"]["Other"]["Foo"] == "bar"
    assert d["sections"]["CaptureSettings"]["CameraLevel"] == "11"
    assert detect_export(p) == "nano"


def test_nano_file_variants(tmp_path):
    text = ("[Filenames]\nvideo_a.avi\nvideo_b.avi\n[CaptureSettings]\n"
            "Frame Rate = 30\nNumber of Frames = 1500\n")
    d = read_nano_file(_write(tmp_path / "b.nano", text))
    assert d["videos"] == ["video_a.avi", "video_b.avi"]
    assert d["frame_rate_fps"] == 30 and d["n_frames"] == 1500
    assert d["missing"] == ["temperature_c", "viscosity_mpas"]
    with pytest.raises(ParseError, match="no \\[Section\\]"):
        read_nano_file(_write(tmp_path / "c.nano", "hello\n"))
    with pytest.raises(ParseError, match="Filenames"):
        read_nano_file(_write(tmp_path / "d.nano", "[Foo]\na=1\n"))


# ---------------------------------------------------------------------------------------
# ZetaView
# ---------------------------------------------------------------------------------------

ZV_POINT = """Original File: C:\\ZetaView\\Data\\2021\\sample_11.avi
Operator: Anna
Experiment: Exosomes batch 4
ZetaView S/N: 252-19
Cell S/N: 2113
Software: ZetaView (version 8.05.12 SP1)
Sample: EV prep 4
Electrolyte: PBS
pH: 7.0 entered
Temperature: 23.27
Viscosity: 0.9227
Dilution:: 2000
Laser Wavelength nm: 488
Number of Traces: 1520
Average Number of Particles: 185.3
Median Number (D50): 121.4
Camera: Frame rate: 30 fps
Sensitivity: 80
Shutter: 100
Custom Key: something

Size Distribution
Size / nm\tNumber\tConcentration / cm-3\tVolume / nm^3\tArea / nm^2
5.0\t0\t0.000E+0\t0.000E+0\t0.000E+0
15.0\t12\t1.200E+6\t2.100E+4\t7.100E+2
25.0\t40\t4.000E+6\t8.200E+3\t1.960E+3

Size Distribution (logarithmic)
Size / nm\tNumber\tConcentration / cm-3\tVolume / nm^3\tArea / nm^2
10.0\t5\t5.000E+5\t5.200E+2\t3.140E+2
100.0\t70\t7.000E+6\t5.200E+5\t3.140E+4
"""

ZV_COMMA = """Operator: Jörg
Experiment: Messung µ-Partikel
ZetaView S/N: 353
Software: ZetaView 8.04.02
Sample: Probe 1
Electrolyte: Wasser
Temperature [°C]: 23,27
Viscosity [mPas]: 0,9227
Dilution:: 1000,0
Laser Wavelength nm: 520
Number of Traces: 987
Median Number (D50): 98,6 nm
Camera Frame Rate [fps]: 30,0
Sensitivity: 75
Shutter: 70
Size Distribution
Size / nm\tNumber\tConcentration / cm-3\tVolume / nm^3\tArea / nm^2
5,0\t0\t0,000E+0\t0,000E+0\t0,000E+0
15,0\t12\t1,200E+6\t2,100E+4\t7,100E+2
Size / nm\tNumber\tConcentration / cm-3\tVolume / nm^3\tArea / nm^2\tExtra / x
10,0\t5\t5,000E+5\t5,200E+2\t3,140E+2\t1,5
"""


def test_zetaview_decimal_point(tmp_path):
    p = _write(tmp_path / "z.txt", ZV_POINT, encoding="iso-8859-1")
    z = read_zetaview_txt(p)
    assert z.decimal_comma is False
    assert z.temperature_c == 23.27 and z.viscosity_mpas == 0.9227
    assert z.dilution == 2000 and z.n_traces == 1520 and z.d50_nm == 121.4
    assert z.frame_rate_fps == 30 and z.laser_wavelength_nm == 488
    assert z.sensitivity == 80 and z.shutter == 100
    assert z.avg_particles_per_frame == 185.3
    assert z.header["serial_number"] == "252-19"
    assert z.header["software"] == "ZetaView (version 8.05.12 SP1)"
    assert z.header["custom_key"] == "something"  # unknown key kept
    assert z.raw["Dilution"] == "2000" and z.raw["Custom Key"] == "something"
    cols = ["size_nm", "number", "concentration_per_cm3", "volume_nm3", "area_nm2"]
    assert list(z.linear.columns) == cols and list(z.log.columns) == cols
    assert list(z.linear["size_nm"]) == [5, 15, 25]
    assert z.linear["concentration_per_cm3"][1] == 1.2e6
    assert list(z.log["size_nm"]) == [10, 100]
    assert z.missing == []
    assert detect_export(p) == "zetaview"


def test_zetaview_decimal_comma_other_spellings(tmp_path):
    p = _write(tmp_path / "z2.txt", ZV_COMMA, encoding="iso-8859-1")
    z = read_zetaview_txt(p)
    assert z.decimal_comma is True
    assert z.temperature_c == pytest.approx(23.27)
    assert z.viscosity_mpas == pytest.approx(0.9227)
    assert z.dilution == 1000 and z.n_traces == 987 and z.d50_nm == pytest.approx(98.6)
    assert z.frame_rate_fps == 30 and z.laser_wavelength_nm == 520
    assert z.header["operator"] == "Jörg" and "µ" in z.header["experiment"]
    assert z.linear["size_nm"].tolist() == [5.0, 15.0]
    assert z.linear["concentration_per_cm3"][1] == pytest.approx(1.2e6)
    assert z.log["extra_x"][0] == 1.5  # unknown column kept
    assert z.missing == []
    assert detect_export(p) == "zetaview"


def test_zetaview_lf_and_utf8(tmp_path):
    p = _write(tmp_path / "z3.txt", ZV_COMMA, encoding="utf-8", newline="\n")
    z = read_zetaview_txt(p)
    assert z.header["operator"] == "Jörg" and z.temperature_c == pytest.approx(23.27)


def test_zetaview_missing_parts(tmp_path):
    head = ZV_POINT[: ZV_POINT.index("Size Distribution")]
    head = head.replace("Temperature: 23.27\n", "")
    z = read_zetaview_txt(_write(tmp_path / "h.txt", head, encoding="iso-8859-1"))
    assert z.linear is None and z.log is None and z.temperature_c is None
    assert z.missing == ["temperature_c", "linear", "log"]
    # one table only
    one = ZV_POINT[: ZV_POINT.index("Size Distribution (logarithmic)")]
    z = read_zetaview_txt(_write(tmp_path / "o.txt", one, encoding="iso-8859-1"))
    assert z.linear is not None and z.log is None and z.missing == ["log"]


def test_zetaview_malformed(tmp_path):
    with pytest.raises(ParseError, match="not a ZetaView export"):
        read_zetaview_txt(_write(tmp_path / "a.txt", "hello world\nno keys here\n"))
    with pytest.raises(ParseError, match="not a ZetaView export"):
        read_zetaview_txt(_write(tmp_path / "b.txt", "Name: x\nColour: blue\n"))
    no_header = ZV_POINT.replace(
        "Size / nm\tNumber\tConcentration / cm-3\tVolume / nm^3\tArea / nm^2\n5.0", "5.0", 1)
    with pytest.raises(ParseError, match="column header"):
        read_zetaview_txt(_write(tmp_path / "c.txt", no_header, encoding="iso-8859-1"))
    bad = ZV_POINT.replace("15.0\t12\t", "15.0\t12\t1.2.3\t", 1)
    with pytest.raises(ParseError, match="fields|non-numeric"):
        read_zetaview_txt(_write(tmp_path / "d.txt", bad, encoding="iso-8859-1"))
    with pytest.raises(ParseError, match="empty"):
        read_zetaview_txt(_write(tmp_path / "e.txt", "\n\n"))


# ---------------------------------------------------------------------------------------
# detect_export
# ---------------------------------------------------------------------------------------


def test_detect_export_by_content_not_name(tmp_path):
    # names lie; content decides
    p = _write(tmp_path / "something_AllTracks.csv", VIDEO_SUMMARY.format(deg=""))
    assert detect_export(p) == "nanosight_summary"
    p = _write(tmp_path / "data.bin", NANO)
    assert detect_export(p) == "nano"
    p = _write(tmp_path / "data.csv", ZV_POINT, encoding="iso-8859-1")
    assert detect_export(p) == "zetaview"
    p = _write(tmp_path / "x.txt", "hello\n")
    assert detect_export(p) is None
    p = tmp_path / "e.txt"
    p.write_bytes(b"")
    assert detect_export(p) is None
    p = tmp_path / "b.txt"
    p.write_bytes(b"\x00\x01" * 100)
    assert detect_export(p) is None
    with pytest.raises(ParseError, match="not a recognised"):
        read_export(tmp_path / "x.txt")
    with pytest.raises(ParseError, match="not found"):
        detect_export(tmp_path / "missing.csv")


# ---------------------------------------------------------------------------------------
# damaged real files: a result or a ParseError, never another exception
# ---------------------------------------------------------------------------------------


def test_damaged_real_summary_never_crashes(tmp_path):
    import random

    data = _real("beads2.csv").read_bytes()
    rng = random.Random(5)
    lines = data.split(b"\r\n")
    cases = [data[:off] for off in range(0, len(data), 2999)]
    for _ in range(30):
        ls = list(lines)
        i = rng.randrange(len(ls))
        op = rng.randrange(4)
        if op == 0:
            del ls[i]
        elif op == 1:
            ls[i] = ls[i][: rng.randrange(len(ls[i]) + 1)]
        elif op == 2:
            ls.insert(i, bytes(rng.randrange(256) for _ in range(20)))
        else:
            ls[i] = ls[i].replace(b",", b",,", 1) + b"\r"
        cases.append(b"\r\n".join(ls))
    p = tmp_path / "damaged.csv"
    for c in cases:
        p.write_bytes(c)
        try:
            s = read_nanosight_summary(p)
        except ParseError as e:
            assert str(p) in str(e)
            continue
        assert isinstance(s.missing_sections, list) and s.videos
    # a summary cut inside [Size Data] keeps what it has and reports the rest
    cut = data[: data.index(b"\r\nPercentile,")]
    p.write_bytes(cut)
    s = read_nanosight_summary(p)
    assert s.size_data["number"].loc["Average", "d50_nm"] == 99.8
    assert s.percentiles is None and s.missing_sections == []
    assert "[Size Data] number: no 'Percentile' table" in s.notes
    assert len(s.histograms["number"]) == 1000


def test_summary_two_videos_duplicate_keys_and_mixed_cells(tmp_path):
    text = """NTA Experiment Summary File,
[Experiment Details],,
Filename:,a,b,
[Conditions],,
Temperature/C,20.000,21.000,
Viscosity/cP,1.000000,0.976033,
[Settings],,,
Max Jump Distance,Auto,12.5,
Max Jump Distance,11.0,12.0,
[Results],,,Average,Standard Error
Particles per frame,10,20,15,5
Completed tracks,,300,,
[Custom Vendor Section]
Foo,1,2
"""
    s = read_nanosight_summary(_write(tmp_path / "two.csv", text))
    assert s.videos == ["a", "b"]
    assert list(s.results.index) == ["a", "b", "Average", "Standard Error"]
    assert s.results.loc["Average", "particles_per_frame"] == 15
    assert math.isnan(s.results.loc["a", "completed_tracks"])  # empty → NaN, never 0
    assert math.isnan(s.settings.loc["a", "max_jump_distance_px"])  # "Auto" → NaN
    assert s.settings.loc["b", "max_jump_distance_px"] == 12.5
    assert list(s.settings["max_jump_distance_px_2"]) == [11.0, 12.0]
    assert s.sections["Settings"].iloc[0, 0] == "Auto"
    assert s.sections["Custom Vendor Section"] == {"Foo": ["1", "2"]}
    assert s.missing_sections == ["Concentration Warnings", "Information", "Size Data"]
    assert s.size_data is None and s.histograms is None and s.percentiles is None
    assert list(s.viscosity_mpas) == [1.0, 0.976033]
