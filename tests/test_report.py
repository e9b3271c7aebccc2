"""HTML report (self-contained, opened in headless Chromium), PNGs, CSV export."""

from __future__ import annotations

import base64
import csv
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from nta.cli import main
from nta.report import build_report, export_csv
from test_qc import make_result

PLOTS = ("distribution", "replicates", "cumulative", "size_intensity", "track_length", "drift")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("rep")
    for i in range(6):
        make_result(d / f"v{i}.h5", seed=i, sample=f"v{i}", diam_nm=100.0 + 15 * (i >= 3) + 2 * i)
    (d / "samples.csv").write_text("file,sample,group\n" + "".join(
        f"v{i},{'S' + str(i // 2)},{'UC' if i < 3 else 'SEC'}\n" for i in range(6)))
    return d


def test_html_self_contained_with_all_plots(results, tmp_path):
    out = tmp_path / "report.html"
    r = build_report(results, out, png_dir=tmp_path / "png")
    text = out.read_text()
    imgs = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    names = [a for a, _ in imgs]
    n_samples = 3
    for p in PLOTS:
        assert names.count(p) == n_samples, (p, names)
    assert "forest plot" in names
    for _, b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing fetched from outside: no http(s) links, scripts or stylesheets
    assert not re.search(r"(src|href)=['\"]https?:", text)
    for word in ("QC", "Group statistics", "Hedges", "detection depth", "calibration and provenance", "particles/mL"):
        assert word in text, word
    assert len(r["png"]) == r["figures"] == len(imgs)
    assert all(os.path.getsize(f) > 1000 for f in r["png"])


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def test_report_screenshot_in_headless_chromium(results, tmp_path):
    exe = _chromium()
    if exe is None:  # .ci/run installs Debian's chromium; skip only where it could not be installed
        pytest.skip("chromium not installed (apt-get install chromium)")
    out = tmp_path / "report.html"
    assert main(["report", str(results), "-o", str(out)]) == 0
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           out.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    from PIL import Image

    im = np.asarray(Image.open(shot).convert("L"), float)
    assert im.shape[0] >= 1000 and im.shape[1] >= 1000
    assert im.std() > 10, "screenshot is blank"
    # plots rendered: many distinct grey levels, not only text on white
    assert len(np.unique(im.astype(np.uint8))) > 50


def test_export_csv_vendor_layout(results, tmp_path, capsys):
    f = tmp_path / "v0.csv"
    assert main(["export-csv", str(results / "v0.h5"), "-o", str(f)]) == 0
    rows = list(csv.reader(f.open(encoding="utf-8")))
    flat = [r[0] for r in rows if r]
    for sec in ("[Experiment Details]", "[Conditions]", "[Results]", "[Percentiles]", "[Size Data]"):
        assert sec in flat
    res = {r[0]: r[1] for r in rows if len(r) == 2}
    for k in ("Mean/nm", "Mode/nm", "SD/nm", "D10/nm", "D50/nm", "D90/nm", "Concentration/particles/ml"):
        assert float(res[k]) > 0, k
    i = flat.index("[Size Data]")
    data = np.array([[float(x) for x in r] for r in rows[i + 2:]])
    assert np.allclose(np.diff(data[:, 0]), 1.0)  # 1-nm bins
    # the per-nm concentrations integrate to the concentration
    assert data[:, 1].sum() == pytest.approx(float(res["Concentration/particles/ml"]), rel=1e-3)


def test_report_of_a_video_without_valid_tracks(tmp_path):
    """A noise-only video gives a result with no valid track; its report is still written
    (the log-scaled size-vs-intensity and track-length plots had nothing to scale)."""
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "blank.tif", rng.normal(20, 2, (40, 64, 80)).clip(0, 255).astype(np.uint8))
    res = tmp_path / "blank.h5"
    main(["process", str(tmp_path / "blank.tif"), "-o", str(res), "--pixel-size", "0.166", "--temperature", "22",
          "--fps", "25", "--no-progress"])
    out = tmp_path / "blank.html"
    r = build_report(res, out)
    assert out.exists() and r["figures"] == len(PLOTS)
    assert "FAIL" in out.read_text()


def test_report_pngs_not_replaced_without_overwrite(results, tmp_path, capsys):
    png = tmp_path / "png"
    assert main(["report", str(results / "v0.h5"), "-o", str(tmp_path / "a.html"), "--png", str(png)]) == 0
    files = sorted(png.iterdir())
    before = {f.name: f.read_bytes() for f in files}
    # another report of the same sample into the same folder: refused before anything is written
    assert main(["report", str(results / "v0.h5"), "-o", str(tmp_path / "b.html"), "--png", str(png)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not (tmp_path / "b.html").exists()
    assert {f.name: f.read_bytes() for f in sorted(png.iterdir())} == before
    assert main(["report", str(results / "v0.h5"), "-o", str(tmp_path / "b.html"), "--png", str(png), "--overwrite"]) == 0


def test_report_errors(tmp_path):
    assert main(["report", str(tmp_path / "none"), "-o", str(tmp_path / "r.html")]) == 2


def test_export_csv_is_not_taken_for_an_instrument_export(tmp_path):
    """`nta batch` imports instrument exports found beside videos; nta's own CSV export is not one."""
    from nta.io.vendor import detect_export

    p = tmp_path / "x.csv"
    p.write_text("NTA Single Analysis Summary File (nta export)\n[Experiment Details]\nSample Name,s\n", encoding="utf-8")
    assert detect_export(p) is None
