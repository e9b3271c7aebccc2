"""The output may never be the input or lie inside an input folder, even with --overwrite."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nta.errors import OutputError
from nta.store import check_new_output

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_videos" / "mono_100nm.avi"


def _sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_check_new_output_refuses_the_input_and_files_in_an_input_folder(tmp_path):
    f = tmp_path / "video.avi"
    f.write_bytes(b"x")
    d = tmp_path / "frames"
    d.mkdir()
    (d / "frame_0.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="is the input"):
        check_new_output(f, overwrite=True, inputs=[f])
    with pytest.raises(OutputError, match="is the input"):
        check_new_output(tmp_path / "." / "video.avi", overwrite=True, inputs=[str(f)])
    with pytest.raises(OutputError, match="inside the input folder"):
        check_new_output(d / "frame_0.png", overwrite=True, inputs=[d])
    with pytest.raises(OutputError, match="inside the input folder"):
        check_new_output(d / "new.h5", overwrite=True, inputs=[d])
    assert check_new_output(tmp_path / "out.h5", overwrite=True, inputs=[f, d]) == tmp_path / "out.h5"


def test_process_with_overwrite_onto_its_own_input_is_refused_and_the_input_kept(tmp_path):
    v = tmp_path / "victim.avi"
    shutil.copy(SAMPLE, v)
    before = _sha(v)
    p = subprocess.run([sys.executable, "-m", "nta.cli", "process", str(v), "-o", str(tmp_path / "." / "victim.avi"),
                        "--pixel-size", "0.166", "--temperature", "22", "--overwrite", "--no-progress"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0
    assert "input" in p.stderr and "victim.avi" in p.stderr
    assert "Traceback" not in p.stderr
    assert _sha(v) == before


@pytest.mark.parametrize("extra", [["--search-range", "nan"], ["--search-range", "inf"], ["--search-range", "-5"],
                                   ["--search-range", "0.5"], ["--memory", "-1"], ["--min-track-length", "0"],
                                   ["--min-track-length", "1"]])
def test_impossible_linking_options_are_refused_before_any_work(tmp_path, extra):
    out = tmp_path / "out.h5"
    p = subprocess.run([sys.executable, "-m", "nta.cli", "process", str(SAMPLE), "-o", str(out), "--pixel-size", "0.166",
                        "--temperature", "22", "--no-progress", *extra], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert extra[0] in p.stderr  # the message names the flag to fix
    assert not out.exists() and not any(tmp_path.iterdir())


def test_summary_text_shows_the_linking_radius_and_its_source():
    from nta.cli import format_summary

    t = format_summary({"tracks_valid": 3, "search_range_px": 12.5, "search_range_source": "flag"})
    assert "link radius   12.5 px  (flag)" in t


def test_report_beside_results_is_fine_but_never_onto_a_result(tmp_path):
    f = tmp_path / "a.h5"
    f.write_bytes(b"x")
    assert check_new_output(tmp_path / "report.html", inputs=[f, tmp_path], inside_input_folders=False)
    with pytest.raises(OutputError, match="is the input"):
        check_new_output(f, overwrite=True, inputs=[f, tmp_path], inside_input_folders=False)
