"""Background sampling reads the same frames, pixel for pixel, whether it seeks or decodes all.

The pipeline's background pass samples every ``step``-th frame
(``src.chunks(chunk_size, stop=n_known, step=step)``). Videos now seek to the sampled frames
(:meth:`nta.io.frames.VideoSource._seek_plan`) instead of decoding every frame; TIFF stacks
and image folders index pages / files directly. Each source here is compared with every
frame read in order and sliced ``[::step]`` (what the sequential decoder gives).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
tifffile = pytest.importorskip("tifffile")
iio = pytest.importorskip("imageio.v3")

import nta.io.frames as F  # noqa: E402
from nta.io import open_frames  # noqa: E402
from nta.pipeline import DEFAULT_BACKGROUND_FRAMES  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_videos" / "mono_100nm.avi"


def pipeline_sample(src, n_background=DEFAULT_BACKGROUND_FRAMES, chunk_size=64):
    """The background pass's sampling, as nta.pipeline.process does it: (indices, frames)."""
    n_known = src.n_frames
    if n_known is None:
        n_known = sum(c.shape[0] for _, c in src.chunks(chunk_size))
    step = max(1, n_known // max(1, n_background))
    idx, blocks = [], []
    for first, c in src.chunks(chunk_size, stop=n_known, step=step):
        idx.extend(range(first, first + step * len(c), step))
        blocks.append(c)
    return step, idx, np.concatenate(blocks)


def all_frames_decoded(path):
    """Every frame of a video, decoded in order by PyAV directly (the luma / grey plane)."""
    with av.open(str(path)) as c:
        return np.stack([F._video_frame_to_grey(f) for f in c.decode(video=0)])


def check_video(path, monkeypatch, *, n_background=DEFAULT_BACKGROUND_FRAMES, expect_seeks=True):
    ref = all_frames_decoded(path)
    src = open_frames(path)
    step, idx, got = pipeline_sample(src, n_background)
    assert step > 1
    n = len(ref)
    assert idx == list(range(0, n, step))
    assert got.dtype == ref.dtype and np.array_equal(got, ref[::step])
    assert src.seek_fallbacks == 0
    if expect_seeks:
        assert src.seeks > 0
    # the sequential path (seeking switched off) gives the same, as before this change
    monkeypatch.setattr(F, "_SEEK_ENABLED", False)
    seq = open_frames(path)
    step2, idx2, got2 = pipeline_sample(seq, n_background)
    monkeypatch.setattr(F, "_SEEK_ENABLED", True)
    assert seq.seeks == 0
    assert (step2, idx2) == (step, idx) and np.array_equal(got2, got)
    return src


def test_sample_video_seeks_to_identical_frames(monkeypatch):
    src = check_video(SAMPLE, monkeypatch)
    assert src.codec == "rawvideo"
    # intra-only raw video: one seek per sampled frame after the first, plan from the index
    pts, keys = src._seek_plan(0, src.n_frames, 2)
    assert keys is pts


def test_sample_video_other_steps_and_starts(monkeypatch):
    ref = all_frames_decoded(SAMPLE)
    src = open_frames(SAMPLE)
    for start, stop, step, chunk in [(0, 200, 7, 5), (3, 150, 11, 64), (1, None, 50, 1), (190, 250, 3, 2)]:
        got = [(i, c) for i, c in src.chunks(chunk, start=start, stop=stop, step=step)]
        frames = np.concatenate([c for _, c in got])
        assert np.array_equal(frames, ref[start:stop:step])
        assert [i for i, _ in got] == list(range(start, min(stop or 200, 200), step))[::chunk]
    assert src.seek_fallbacks == 0 and src.seeks > 0


@pytest.mark.slow
def test_simulated_h264_mp4_sampling_identical(tmp_path, monkeypatch):
    from nta.simulate import simulate_video

    p = tmp_path / "sim.mp4"
    simulate_video(p, n_frames=250, width=160, height=128, particles_per_frame=10, seed=3)
    check_video(p, monkeypatch, expect_seeks=False)  # x264's keyframes are sparse: decodes forward


@pytest.mark.parametrize("codec,pix_fmt,suffix,options", [
    ("libx264", "yuv420p", ".mp4", {"g": "10", "bf": "2", "preset": "ultrafast"}),
    ("libx264", "yuv420p", ".mp4", {"x264-params": "open-gop=1:keyint=12:min-keyint=12:scenecut=0:bframes=3"}),
    ("libx264", "yuv420p", ".mkv", {"g": "10", "bf": "2", "preset": "ultrafast"}),
    ("mjpeg", "yuvj420p", ".avi", {"qscale": "3"}),
    ("ffv1", "gray", ".mkv", {}),
    ("mpeg4", "yuv420p", ".avi", {"g": "15", "bf": "2"}),  # packed B-frames in AVI: falls back
])
def test_keyframe_codecs_sampling_identical(tmp_path, monkeypatch, codec, pix_fmt, suffix, options):
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"PyAV built without {codec}")
    rng = np.random.default_rng(7)
    h, w = 48, 64
    base = rng.integers(0, 255, (h, w + 400)).astype(np.uint8)  # panning texture: real inter coding
    p = tmp_path / f"v{suffix}"
    with av.open(str(p), "w") as c:
        s = c.add_stream(codec, rate=25, options=options)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for k in range(300):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, k:k + w]), format="gray")
            if pix_fmt != "gray":
                f = f.reformat(format=pix_fmt)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    ref = all_frames_decoded(p)
    for n_background in (100, 7):  # step 3 (mostly decoding forward) and step 42 (seeks)
        src = open_frames(p)
        step, idx, got = pipeline_sample(src, n_background)
        assert idx == list(range(0, len(ref), step))
        assert np.array_equal(got, ref[::step]), (codec, suffix, step)
        if codec != "mpeg4" and n_background == 7:
            assert src.seeks > 0 and src.seek_fallbacks == 0


def test_seek_mismatch_falls_back_to_sequential(monkeypatch):
    """A plan that names the wrong frames is caught by the pts check; the frames still come out right."""
    ref = all_frames_decoded(SAMPLE)
    src = open_frames(SAMPLE)
    pts, keys = src._seek_plan(0, 200, 2)
    bad = pts.copy()
    bad[100:] += 1000  # frames 100.. "missing" from the stream
    src._seek_pts = (bad, bad)
    got = np.concatenate([c for _, c in src.chunks(64, stop=200, step=2)])
    assert src.seek_fallbacks == 1
    assert np.array_equal(got, ref[::2])


def test_full_pass_records_frame_times_without_a_packet_scan(monkeypatch):
    """A pass to the last frame (stop = the frame count) keeps the frame times for the
    timing report, so it does not demux the whole file again."""
    src = open_frames(SAMPLE)
    n = src.n_frames
    for _ in src.chunks(64, stop=n):
        pass
    assert src.timestamps_s is not None and len(src.timestamps_s) == n

    def no_scan():
        raise AssertionError("scanned the packets again")

    monkeypatch.setattr(src, "_scan_timestamps", no_scan)
    rep = src.timing_report()
    assert rep["available"] and rep["n_timestamps"] == n and rep["irregular"] is False
    part = open_frames(SAMPLE)
    for _ in part.chunks(64, stop=n - 1):
        pass
    assert part.timestamps_s is None  # not a full pass


def test_tiff_stack_sampling_identical(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 65535, size=(230, 20, 24)).astype(np.uint16)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, frames)
    src = open_frames(p)
    step, idx, got = pipeline_sample(src)
    assert step == 2 and idx == list(range(0, 230, 2))
    assert got.dtype == np.uint16 and np.array_equal(got, tifffile.imread(p)[::step])
    # pages written one by one (no contiguous memory map)
    q = tmp_path / "pages.tif"
    with tifffile.TiffWriter(q) as tw:
        for fr in frames:
            tw.write(fr, contiguous=False, compression="zlib")
    step, idx, got = pipeline_sample(open_frames(q))
    assert np.array_equal(got, frames[::step])


def test_image_folder_sampling_identical(tmp_path):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 255, size=(205, 16, 20)).astype(np.uint8)
    d = tmp_path / "imgs"
    d.mkdir()
    for k, fr in enumerate(frames):
        iio.imwrite(d / f"frame_{k}.png", fr)
    src = open_frames(d)
    step, idx, got = pipeline_sample(src)
    assert step == 2 and idx == list(range(0, 205, 2))
    ref = np.stack([iio.imread(d / f"frame_{k}.png") for k in range(205)])
    assert np.array_equal(ref, frames) and np.array_equal(got, ref[::step])
