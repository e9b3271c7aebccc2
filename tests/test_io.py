"""Tests of nta.io.frames: streaming readers for videos, TIFF stacks and image folders."""

from __future__ import annotations

import pickle
from fractions import Fraction
import warnings
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
tifffile = pytest.importorskip("tifffile")
iio = pytest.importorskip("imageio.v3")

from nta.errors import InputError  # noqa: E402
from nta.io import (  # noqa: E402
    FrameSource,
    TruncatedVideoWarning,
    natural_sort_key,
    open_frames,
    to_grey,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
H, W = 24, 32


# --------------------------------------------------------------------------- makers


def ramp_stack(n=10, dtype=np.uint8, h=H, w=W, seed=0):
    """Distinct, deterministic frames (frame k differs from frame j)."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(100, 30, size=(n, h, w)).astype(dtype)
    hi = np.iinfo(dtype).max
    a = rng.integers(0, hi, size=(n, h, w), endpoint=True, dtype=np.int64)
    return a.astype(dtype)


def write_video(path, frames, codec="rawvideo", pix_fmt="gray", rate=25, in_fmt=None,
                options=None):
    """Write (n, H, W) grey or (n, H, W, 3) rgb frames with PyAV."""
    frames = np.asarray(frames)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=rate, options=options or {})
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = pix_fmt
        if in_fmt is None:
            in_fmt = "rgb24" if frames.ndim == 4 else ("gray16le" if frames.dtype == np.uint16 else "gray")
        for a in frames:
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format=in_fmt)
            if f.format.name != pix_fmt:
                f = f.reformat(format=pix_fmt)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def collect(src: FrameSource, **kw):
    idx, blocks = [], []
    for i0, block in src.chunks(**kw):
        assert block.ndim == 3 and block.shape[1:] == src.shape
        assert block.dtype == src.dtype
        step = kw.get("step", 1)
        idx.extend(range(i0, i0 + step * len(block), step))
        blocks.append(block)
    return idx, (np.concatenate(blocks) if blocks else np.empty((0,) + src.shape, src.dtype))


def has_codec(name):
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- helpers


def test_natural_sort_key():
    names = ["frame 10.png", "frame 2.png", "frame 1.png", "Frame 3.png", "frame 11.png"]
    assert sorted(names, key=natural_sort_key) == [
        "frame 1.png", "frame 2.png", "Frame 3.png", "frame 10.png", "frame 11.png"]
    assert sorted(["a_010", "a_9", "a_0100"], key=natural_sort_key) == ["a_9", "a_010", "a_0100"]


def test_grey_rule():
    g = ramp_stack(1)[0]
    assert to_grey(g) is g  # 2-D kept
    # equal channels → first channel exactly, alpha ignored
    rgba = np.dstack([g, g, g, np.full_like(g, 7)])
    out = to_grey(rgba)
    assert out.dtype == np.uint8 and np.array_equal(out, g)
    # colour → BT.601 luma, rounded, same dtype
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (10, 20, 30)
    out = to_grey(rgb)
    assert out.dtype == np.uint8
    assert out.tolist() == [[76, 150, round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)]]
    # 16-bit colour stays 16-bit
    rgb16 = np.array([[[60000, 1000, 50]]], np.uint16)
    assert to_grey(rgb16).dtype == np.uint16
    assert int(to_grey(rgb16)[0, 0]) == round(0.299 * 60000 + 0.587 * 1000 + 0.114 * 50)
    # float stays float, unrounded
    rgbf = np.array([[[1.0, 2.0, 4.0]]], np.float32)
    assert to_grey(rgbf).dtype == np.float32
    assert to_grey(rgbf)[0, 0] == pytest.approx(0.299 + 1.174 + 0.456, rel=1e-6)
    with pytest.raises(InputError):
        to_grey(np.zeros((2, 3, 5)))


# --------------------------------------------------------------------------- video


def test_avi_rawvideo_gray_round_trip(tmp_path):
    frames = ramp_stack(13)
    p = write_video(tmp_path / "nanosight.avi", frames, rate=30)
    with open_frames(p) as src:
        assert src.kind == "video"
        assert src.fps == pytest.approx(30.0)
        assert src.n_frames == 13
        assert src.shape == (H, W) and src.dtype == np.uint8
        info = src.info()
        assert info["codec"] == "rawvideo" and info["pix_fmt"] == "gray"
        idx, got = collect(src, chunk_size=4)
        assert idx == list(range(13))
        assert np.array_equal(got, frames)
        assert np.array_equal(src.read(7), frames[7])
        assert np.array_equal(src.read(2), frames[2])  # backwards: reopens
        assert np.array_equal(src.read(-1), frames[-1])
        with pytest.raises(IndexError):
            src.read(13)


def test_video_chunks_start_stop_step(tmp_path):
    frames = ramp_stack(20)
    p = write_video(tmp_path / "v.avi", frames)
    src = open_frames(p)
    idx, got = collect(src, chunk_size=3, start=2, stop=17, step=4)
    assert idx == [2, 6, 10, 14]
    assert np.array_equal(got, frames[2:17:4])
    idx, got = collect(src, chunk_size=64, start=5, stop=9)
    assert idx == [5, 6, 7, 8] and np.array_equal(got, frames[5:9])
    idx, got = collect(src, start=25)
    assert idx == []
    # frames() alias with the ARCHITECTURE.md argument order
    first, block = next(src.frames(3, 6, 2))
    assert first == 3 and np.array_equal(block, frames[3:5])


def test_video_fps_override(tmp_path):
    p = write_video(tmp_path / "v.avi", ramp_stack(3), rate=25)
    src = open_frames(p, fps=30)
    assert src.fps == 30 and src.fps_recorded == pytest.approx(25)
    assert src.info()["fps_overridden"] is True
    with pytest.raises(InputError):
        open_frames(p, fps=0)


def test_mjpeg_avi_is_close(tmp_path):
    base = np.tile(np.linspace(20, 230, W).astype(np.uint8), (H, 1))
    frames = np.stack([np.roll(base, k, axis=1) for k in range(6)])
    p = write_video(tmp_path / "m.avi", frames, codec="mjpeg", pix_fmt="yuvj420p",
                    options={"qscale": "2"})
    src = open_frames(p)
    assert src.info()["pix_fmt"].startswith("yuvj")
    idx, got = collect(src)
    assert idx == list(range(6)) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - frames).mean() < 3  # lossy, but the luma is the grey


@pytest.mark.skipif(not has_codec("libx264"), reason="PyAV built without libx264")
def test_h264_mp4_luma_is_recorded_y(tmp_path):
    frames = ramp_stack(8, seed=3)
    p = write_video(tmp_path / "x.mp4", frames, codec="libx264", pix_fmt="yuv420p",
                    rate=24, options={"qp": "0", "preset": "ultrafast"})
    src = open_frames(p)
    assert src.fps == pytest.approx(24) and src.n_frames == 8
    _, got = collect(src, chunk_size=5)
    # gray → yuv420p with limited range squeezes 0..255 into 16..235; the reader must
    # return the Y plane exactly as decoded, which we get independently here:
    with av.open(str(p)) as c:
        ys = [f.to_ndarray()[:H] for f in c.decode(video=0)]
    assert np.array_equal(got, np.stack(ys))


def test_ffv1_16bit_video_keeps_values(tmp_path):
    frames = ramp_stack(5, dtype=np.uint16)
    assert frames.max() > 255
    p = write_video(tmp_path / "v16.mkv", frames, codec="ffv1", pix_fmt="gray16le")
    src = open_frames(p)
    assert src.dtype == np.uint16
    _, got = collect(src, chunk_size=2)
    assert np.array_equal(got, frames)
    assert src.n_frames == 5  # counted after the pass (mkv records no count)


def test_rgb_video_follows_grey_rule(tmp_path):
    rgb = np.zeros((3, H, W, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[1] = 77  # equal channels
    p = write_video(tmp_path / "rgb.avi", rgb, pix_fmt="bgr24")
    _, got = collect(open_frames(p))
    assert np.all(got[0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50))
    assert np.all(got[1] == 77)


def test_video_timing_report_regular_and_irregular(tmp_path):
    p = write_video(tmp_path / "v.avi", ramp_stack(10), rate=25)
    src = open_frames(p)
    rep = src.timing_report()  # from packets, before any pass
    assert rep["available"] and rep["irregular"] is False and rep["n_timestamps"] == 10
    collect(src)
    assert src.timestamps_s is not None and len(src.timestamps_s) == 10
    assert np.allclose(np.diff(src.timestamps_s), 0.04)

    # a variable-frame-rate mkv: frames 0..5 then a jump (3 frames dropped) and a duplicate
    path = tmp_path / "vfr.mkv"
    pts_ms = [0, 40, 80, 120, 160, 200, 360, 400, 405, 440]
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "gray"
        s.codec_context.time_base = Fraction(1, 1000)
        for k, t in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(ramp_stack(1, seed=k)[0], format="gray")
            f.pts = t
            f.time_base = s.codec_context.time_base
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    src = open_frames(path)
    collect(src)
    rep = src.timing_report()
    assert rep["irregular"] is True
    assert rep["n_gaps"] == 1 and rep["n_dropped_estimate"] == 3
    assert rep["n_duplicate"] == 1
    assert rep["irregular_at_frames"] == [6, 8]


def test_video_pickles_without_handles(tmp_path):
    frames = ramp_stack(4)
    src = open_frames(write_video(tmp_path / "v.avi", frames))
    src.read(2)  # opens a decoder
    clone = pickle.loads(pickle.dumps(src))
    assert np.array_equal(clone.read(3), frames[3])


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_stack_round_trip(tmp_path, dtype):
    frames = ramp_stack(9, dtype=dtype)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, frames)
    src = open_frames(p)
    assert src.kind == "tiff" and src.n_frames == 9 and src.dtype == dtype
    assert src.shape == (H, W) and src.fps is None
    idx, got = collect(src, chunk_size=4)
    assert idx == list(range(9))
    assert np.array_equal(got, frames)
    if dtype == np.uint16:
        assert got.max() > 255
    idx, got = collect(src, chunk_size=2, start=1, step=3)
    assert idx == [1, 4, 7] and np.array_equal(got, frames[1::3])
    assert np.array_equal(src.read(5), frames[5])
    assert np.array_equal(np.stack(list(src)), frames)  # frame-by-frame iteration
    info = src.info()
    assert info["memmap"] is True and info["dtype"] == np.dtype(dtype).name
    assert info["n_frames"] == 9 and info["shape"] == (H, W)
    clone = pickle.loads(pickle.dumps(src))
    assert np.array_equal(clone.read(8), frames[8])
    clone.close()
    src.close()


def test_tiff_compressed_pages_and_imagej_fps(tmp_path):
    frames = ramp_stack(6, dtype=np.uint16)
    p = tmp_path / "ij.tif"
    tifffile.imwrite(p, frames, imagej=True, metadata={"axes": "TYX", "finterval": 0.05},
                     compression="zlib")
    src = open_frames(p)
    assert src.fps == pytest.approx(20.0)
    assert src.info()["memmap"] is False
    _, got = collect(src, chunk_size=4)
    assert np.array_equal(got, frames)
    assert open_frames(p, fps=10).fps == 10


def test_tiff_separate_pages_and_single_page(tmp_path):
    frames = ramp_stack(4, dtype=np.uint16)
    p = tmp_path / "pages.tif"
    with tifffile.TiffWriter(p) as tw:
        for a in frames:
            tw.write(a, contiguous=False)
    src = open_frames(p)
    assert src.n_frames == 4
    assert np.array_equal(collect(src, chunk_size=3)[1], frames)
    one = tmp_path / "one.tiff"
    tifffile.imwrite(one, frames[0])
    src = open_frames(one)
    assert src.n_frames == 1 and np.array_equal(src.read(0), frames[0])


def test_tiff_rgb_pages_grey_rule(tmp_path):
    g = ramp_stack(3)
    rgb = np.stack([g, g, g], axis=-1)
    rgb[2, ..., 0] = 255  # colour frame
    p = tmp_path / "rgb.tif"
    tifffile.imwrite(p, rgb, photometric="rgb")
    src = open_frames(p)
    assert src.n_frames == 3 and src.shape == (H, W)
    _, got = collect(src)
    assert np.array_equal(got[:2], g[:2])
    assert np.array_equal(got[2], to_grey(rgb[2]))


# --------------------------------------------------------------------------- folders


def test_png_folder_natural_order(tmp_path):
    frames = ramp_stack(12)
    d = tmp_path / "frames"
    d.mkdir()
    for k, a in enumerate(frames, start=1):
        iio.imwrite(d / f"frame {k}.png", a)
    (d / "notes.txt").write_text("not an image")
    src = open_frames(d)
    assert src.kind == "folder" and src.n_frames == 12 and src.fps is None
    assert [f.name for f in src.files][:3] == ["frame 1.png", "frame 2.png", "frame 3.png"]
    idx, got = collect(src, chunk_size=5)
    assert idx == list(range(12)) and np.array_equal(got, frames)
    idx, got = collect(src, step=5)
    assert idx == [0, 5, 10] and np.array_equal(got, frames[::5])
    # glob pattern
    src = open_frames(str(d / "frame 1*.png"))
    assert [f.name for f in src.files] == ["frame 1.png", "frame 10.png", "frame 11.png", "frame 12.png"]
    assert open_frames(d, fps=24).fps == 24


def test_folder_rgba_and_16bit(tmp_path):
    g = ramp_stack(2)
    d = tmp_path / "rgba"
    d.mkdir()
    for k in range(2):
        iio.imwrite(d / f"f{k}.png", np.dstack([g[k]] * 3 + [np.full_like(g[k], 255)]))
    _, got = collect(open_frames(d))
    assert np.array_equal(got, g)

    d16 = tmp_path / "t16"
    d16.mkdir()
    f16 = ramp_stack(3, dtype=np.uint16)
    for k in range(3):
        tifffile.imwrite(d16 / f"img_{k}.tif", f16[k])
    src = open_frames(d16)
    assert src.dtype == np.uint16
    assert np.array_equal(collect(src)[1], f16)


def test_folder_shape_mismatch_names_file(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    iio.imwrite(d / "a1.png", np.zeros((H, W), np.uint8))
    iio.imwrite(d / "a2.png", np.zeros((H, W), np.uint8))
    iio.imwrite(d / "a3.png", np.zeros((H + 1, W), np.uint8))
    iio.imwrite(d / "a10.png", np.zeros((H, W + 2), np.uint8))
    with pytest.raises(InputError, match=r"a3\.png.*25x32"):
        open_frames(d)


# --------------------------------------------------------------------------- errors


def test_error_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_frames(tmp_path / "nope.avi")


def test_error_zero_byte(tmp_path):
    p = tmp_path / "empty.avi"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_frames(p)


def test_error_not_a_video(tmp_path):
    p = tmp_path / "text.avi"
    p.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="text.avi.*not a readable video"):
        open_frames(p)
    t = tmp_path / "text.tif"
    t.write_text("this is not a tiff\n" * 20)
    with pytest.raises(InputError, match="not a readable TIFF"):
        open_frames(t)


def test_error_zero_frames(tmp_path):
    p = tmp_path / "zero.avi"
    with av.open(str(p), "w") as c:
        s = c.add_stream("rawvideo", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "gray"
        c.start_encoding()  # write the header although no frame follows
    assert p.stat().st_size > 0
    with pytest.raises(InputError, match="zero.avi: contains no video frames"):
        open_frames(p)


def test_error_empty_folder_and_glob(tmp_path):
    d = tmp_path / "none"
    d.mkdir()
    (d / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images"):
        open_frames(d)
    with pytest.raises(InputError, match="matches no image"):
        open_frames(str(d / "*.png"))


def test_error_unsupported_extension(tmp_path):
    p = tmp_path / "data.xyz"
    p.write_text("1 2 3")
    with pytest.raises(InputError, match="unsupported extension '.xyz'"):
        open_frames(p)


def test_error_truncated_video(tmp_path):
    frames = ramp_stack(30, h=48, w=64)
    p = write_video(tmp_path / "full.avi", frames)
    data = p.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    src = open_frames(cut)
    # rawvideo: the last, partial packet fails to decode → InputError naming the frame;
    # or the demuxer stops early → a TruncatedVideoWarning. Never a raw av exception.
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedVideoWarning)
        with pytest.raises((InputError, TruncatedVideoWarning)) as ei:
            collect(src)
    if ei.type is InputError:
        msg = str(ei.value)
        assert "cut.avi" in msg and "the file may be truncated" in msg
        k = int(msg.split("at frame ")[1].split()[0])
        assert 0 < k < 30
        # the frames before the damage stay readable, as the message suggests
        idx, got = collect(open_frames(cut), stop=k)
        assert idx == list(range(k)) and np.array_equal(got, frames[:k])


def test_error_truncated_mjpeg_warns(tmp_path):
    base = ramp_stack(20)
    p = write_video(tmp_path / "m.avi", base, codec="mjpeg", pix_fmt="yuvj420p")
    cut = tmp_path / "mcut.avi"
    cut.write_bytes(p.read_bytes()[: int(p.stat().st_size * 0.6)])
    src = open_frames(cut)
    try:
        with pytest.warns(TruncatedVideoWarning):
            _, got = collect(src)
    except InputError as e:  # a damaged last JPEG may also fail to decode
        assert "truncated" in str(e)
        return
    assert src.truncated and src.n_frames == len(got) < 20


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_bulk_water_png_vs_mov():
    folder, mov = DATA / "bulk_water", DATA / "bulk-water.mov"
    if not folder.is_dir() or not mov.is_file():
        pytest.skip(f"real data not found under {DATA}")
    pngs = open_frames(folder)
    video = open_frames(mov)
    assert pngs.n_frames == 300 and pngs.fps is None
    assert video.n_frames == 480
    assert video.fps == pytest.approx(23.98, abs=0.005)
    assert pngs.shape == video.shape == (424, 640)
    assert pngs.dtype == video.dtype == np.uint8
    # The PNGs are RGB(A) renderings of the decoded H.264 frames (equal to PyAV's
    # rgb24 conversion); they are slightly tinted (R != G != B), so the folder reader
    # gives their BT.601 luma while the video reader gives the recorded Y plane.
    # The two agree to rounding: max |difference| measured = 1 grey level.
    p0, v0 = pngs.read(0).astype(int), video.read(0).astype(int)
    assert np.abs(p0 - v0).max() <= 1
    raw = iio.imread(folder / "bulk_water_000.png")
    with av.open(str(mov)) as c:
        rgb0 = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(raw[..., :3], rgb0)  # pixel-identical as RGB
    # every chunk of the video, and a sample of PNG frames
    idx, vid = collect(video, chunk_size=128)
    assert idx == list(range(480)) and video.timing_report()["irregular"] is False
    for k in (0, 150, 299):
        assert np.abs(pngs.read(k).astype(int) - vid[k]).max() <= 1


def test_simulated_tiff_frame_rate_is_read(tmp_path):
    """`nta simulate` TIFFs record their rate in tifffile's JSON description; the reader uses it."""
    from nta.simulate import simulate_video

    p = tmp_path / "s.tif"
    simulate_video(p, n_frames=5, width=48, height=40, fps=30.0, particles_per_frame=3, seed=1)
    with open_frames(p) as src:
        assert src.fps == pytest.approx(30.0)


def _demuxed_timestamps(src):
    """_scan_timestamps with the AVI-index shortcut disabled (every packet demuxed)."""
    src._index_timestamps = lambda container, stream: None
    try:
        return src._scan_timestamps()
    finally:
        del src._index_timestamps


@pytest.mark.parametrize("codec, pix_fmt, ext", [("rawvideo", "gray", "avi"), ("mjpeg", "yuvj420p", "avi"),
                                                 ("ffv1", "gray", "avi"), ("mpeg4", "yuv420p", "avi"),
                                                 ("ffv1", "gray", "mkv"), ("mjpeg", "yuvj420p", "mov")])
def test_scan_timestamps_from_avi_index_equal_demuxed(tmp_path, codec, pix_fmt, ext):
    """Frame times from an AVI's index are the demuxed packets' times, exactly; other
    containers and inter-coded streams are demuxed."""
    if not has_codec(codec):
        pytest.skip(f"no {codec} encoder")
    p = write_video(tmp_path / f"v.{ext}", ramp_stack(17, h=48, w=64), codec=codec, pix_fmt=pix_fmt, rate=25)
    src = open_frames(p)
    ts = src._scan_timestamps()
    assert np.array_equal(ts, _demuxed_timestamps(src)) and ts.size == 17
    with av.open(str(p)) as c:
        fast = src._index_timestamps(c, c.streams.video[0])
    if fast is not None:
        assert np.array_equal(fast, ts)
    if ext == "avi" and codec in ("rawvideo", "mjpeg"):  # intra-only: the shortcut is taken
        assert fast is not None
    if ext != "avi":
        assert fast is None
    assert src.timing_report()["irregular"] is False


def test_scan_timestamps_truncated_avi_not_from_index(tmp_path):
    """A cut AVI (its index lost, or listing data beyond the end) is demuxed: the times of the
    packets actually in the file."""
    p = write_video(tmp_path / "full.avi", ramp_stack(30, h=48, w=64))
    for frac in (0.6, 0.97, 0.999):
        cut = tmp_path / f"cut{frac}.avi"
        cut.write_bytes(p.read_bytes()[: int(p.stat().st_size * frac)])
        src = open_frames(cut)
        with av.open(str(cut)) as c:
            fast = src._index_timestamps(c, c.streams.video[0])
        try:
            demuxed = _demuxed_timestamps(src)
        except InputError:
            assert fast is None
            continue
        if fast is not None:
            assert np.array_equal(fast, demuxed)
        assert np.array_equal(src._scan_timestamps(), demuxed)
