"""A container whose header announces fewer frames than it holds: every frame is analysed, with a warning."""

from __future__ import annotations

import struct
from pathlib import Path

from nta.pipeline import process

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "mono_100nm.avi"


def _announce(src: Path, dst: Path, n: int) -> None:
    """Copy an AVI with its main header's total frames and its stream header's length set to n."""
    b = bytearray(src.read_bytes())
    i = b.find(b"avih")
    struct.pack_into("<I", b, i + 8 + 16, n)
    j = b.find(b"strh")
    struct.pack_into("<I", b, j + 8 + 32, n)
    dst.write_bytes(bytes(b))


def test_header_announcing_too_few_frames_does_not_cut_the_analysis(tmp_path):
    v = tmp_path / "lie.avi"
    _announce(SAMPLE, v, 100)
    s = process(v, tmp_path / "lie.h5", pixel_size_um=0.166, temperature_c=22.0, progress=False, n_boot=20)
    assert s["n_frames"] == 200
    assert any("announces 100 frames but 200 were read" in n for n in s["notes"])


def test_header_announcing_too_many_frames_is_reported_once_in_nta_words(tmp_path):
    import subprocess
    import sys

    v = tmp_path / "short.avi"
    _announce(SAMPLE, v, 300)
    p = subprocess.run([sys.executable, "-m", "nta.cli", "process", str(v), "-o", str(tmp_path / "s.h5"), "--pixel-size",
                        "0.166", "--temperature", "22", "--no-progress"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "TruncatedVideoWarning" not in p.stderr and "warnings.warn" not in p.stderr
    assert p.stderr.count("may be truncated") == 1
