"""Streaming frame readers: videos (PyAV), TIFF stacks (tifffile), image folders.

:func:`open_frames` looks at a path and returns a :class:`FrameSource`, which hands
out frames as grey 2-D arrays, *as recorded* (uint8 stays uint8, uint16 stays
uint16, float32 stays float32; nothing is rescaled), in chunks of shape
``(n, H, W)`` without ever holding the whole recording in memory.

Grey rule (applied to every frame, see :func:`to_grey`)
-------------------------------------------------------
* A 2-D frame is kept as it is.
* Video frames in a grey pixel format (``gray``, ``gray16le``, ... e.g. the
  uncompressed 8-bit ``Y800`` AVIs NanoSight writes) are taken plane-as-is.
* Video frames in a YUV pixel format (H.264, MJPEG, ...) give their luma (Y) plane
  as recorded: no colour conversion, no range conversion.
* Colour frames (RGB/RGBA images, TIFF pages with samples, RGB/paletted video):
  if the colour channels are all equal (a grey image stored as colour) the first
  channel is returned exactly; otherwise the ITU-R BT.601 luma
  ``Y = 0.299 R + 0.587 G + 0.114 B``, rounded to the nearest integer and cast
  back to the input's integer dtype (float input stays float, unrounded).
  Alpha is ignored. A grey+alpha image gives its grey channel.

Non-finite pixels (float recordings)
------------------------------------
NaN and ±Inf pixels (dead or saturated pixels flagged by camera software, failed
conversions) would poison the background median and every filter after it. Frames handed
out by :meth:`FrameSource.chunks` (and so :meth:`FrameSource.frames` and iteration) have
each non-finite pixel replaced by the median of that frame's finite pixels (a stand-in
for the local background, so no feature is made of it). The count per frame is kept in
:attr:`FrameSource.nonfinite_pixels` and summarised by :meth:`FrameSource.nonfinite_note`
(the pipeline stores it as a warning in the result file). A frame with no finite pixel
at all is an :class:`~nta.errors.InputError`. :meth:`FrameSource.read` returns frames
exactly as stored.

Errors are :class:`nta.errors.InputError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import glob as _glob
import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from nta.errors import InputError

__all__ = [
    "FrameSource",
    "VideoSource",
    "TiffSource",
    "ImageFolderSource",
    "TruncatedVideoWarning",
    "open_frames",
    "natural_sort_key",
    "to_grey",
    "VIDEO_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
]

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mov", ".mp4", ".m4v", ".mkv", ".wmv", ".mpg", ".mpeg", ".webm",
     ".ogv", ".flv", ".mts", ".m2ts", ".ts", ".3gp", ".mj2", ".nut"}
)
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
IMAGE_EXTENSIONS = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".gif"}) | TIFF_EXTENSIONS

_SUPPORTED_TEXT = (
    "videos (" + ", ".join(sorted(VIDEO_EXTENSIONS)) + "), TIFF stacks (.tif, .tiff), "
    "or a folder / glob pattern of images (.png, .tif, .bmp, .jpg)"
)


class TruncatedVideoWarning(UserWarning):
    """A video decoded to fewer frames than its container header announces."""


# --------------------------------------------------------------------------- helpers


def natural_sort_key(name) -> tuple:
    """Sort key putting ``'frame 2'`` before ``'frame 10'`` (digit runs compare as numbers).

    Text parts compare case-insensitively; ties are broken by the original string so the
    order is total and stable.
    """
    s = os.fspath(name) if not isinstance(name, str) else name
    parts = re.split(r"(\d+)", s)
    key = []
    for i, p in enumerate(parts):
        if i % 2:  # a digit run
            key.append((1, int(p), len(p)))
        else:
            key.append((0, p.lower(), 0))
    return (tuple(key), s)


def to_grey(frame) -> np.ndarray:
    """Return a 2-D grey frame from a 2-D, ``(H, W, 1|2|3|4)`` array.

    Grey rule: 2-D arrays are returned unchanged; ``(H, W, 1)`` is squeezed;
    ``(H, W, 2)`` (grey + alpha) gives channel 0; for RGB/RGBA, if R == G == B
    everywhere, channel 0 is returned exactly, otherwise the ITU-R BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B``, rounded and cast back to the input's integer
    dtype (clipped to its range); float input stays float (same dtype, no
    rounding). Alpha is ignored.
    """
    a = np.asarray(frame)
    if a.ndim == 2:
        return a
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4):
        raise InputError(
            f"frame has shape {a.shape}; expected a 2-D grey image or (H, W, 3|4) colour",
            fix="give single-channel or RGB/RGBA images",
        )
    if a.shape[-1] <= 2:
        return np.ascontiguousarray(a[..., 0])
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    if np.array_equal(r, g) and np.array_equal(r, b):
        return np.ascontiguousarray(r)
    y = 0.299 * r.astype(np.float64) + 0.587 * g + 0.114 * b
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(a.dtype)
    if a.dtype == np.bool_:
        return y >= 0.5
    return y.astype(a.dtype)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(
            "does not exist", path=path, fix="check the path and the working directory"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(
            "is an empty (zero-byte) file", path=path,
            fix="the copy or recording may have failed; use the original file",
        )


# --------------------------------------------------------------------------- base class


class FrameSource:
    """A recording read frame by frame: video, TIFF stack or image folder.

    Attributes
    ----------
    path : str
    kind : str        ``'video'``, ``'tiff'`` or ``'folder'``
    fps : float or None
        Frame rate: the one given to :func:`open_frames`, else the one the container
        records, else None.
    fps_recorded : float or None
        Frame rate the container records (None if it records none).
    n_frames : int or None
        Number of frames, if known without decoding everything; after a full pass
        over a video it is the number of frames actually decoded.
    shape : (int, int)
        (height, width) of the first frame.
    dtype : numpy.dtype
        As recorded (after the grey rule, which keeps the dtype).

    Frames are grey 2-D arrays (see the module docstring for the grey rule).
    """

    kind: str = ""

    def __init__(self, path, *, fps: float | None = None):
        self.path = str(path)
        self.fps_recorded: float | None = None
        self._fps_override = None if fps is None else float(fps)
        if self._fps_override is not None and not (
            math.isfinite(self._fps_override) and self._fps_override > 0
        ):
            raise InputError(f"frame rate {fps!r} is not a positive number",
                             path=self.path, fix="give --fps in frames/s, e.g. --fps 25")
        self.n_frames: int | None = None
        self.shape: tuple[int, int] = (0, 0)
        self.dtype: np.dtype = np.dtype(np.uint8)
        self.codec: str | None = None
        #: frame index -> number of NaN/Inf pixels replaced in that frame (float sources)
        self.nonfinite_pixels: dict[int, int] = {}

    # ---- attributes
    @property
    def fps(self) -> float | None:
        return self._fps_override if self._fps_override is not None else self.fps_recorded

    # ---- to implement in subclasses
    def _read_indices(self, indices) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, grey frame) for sorted ``indices`` (random-access sources)."""
        for i in indices:
            yield i, self.read(i)

    def read(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    # ---- shared
    def _check_index(self, index) -> int:
        index = int(index)
        n = self.n_frames
        if index < 0:
            if n is None:
                raise IndexError(f"negative frame index {index} with unknown frame count")
            index += n
        if index < 0 or (n is not None and index >= n):
            raise IndexError(f"frame index {index} out of range for {n} frames in {self.path}")
        return index

    def _range(self, start, stop, step) -> range:
        step = int(step)
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        n = self.n_frames
        if stop is None:
            stop = n if n is not None else math.inf
        else:
            stop = int(stop)
            if n is not None:
                stop = min(stop, n)
        if stop is math.inf:
            return None  # unknown: handled by sequential sources
        return range(start, max(start, stop), step)

    def chunks(self, chunk_size: int = 64, start: int = 0, stop: int | None = None,
               step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index of first frame, array (n, H, W))`` in order.

        Covers frames ``start, start+step, ...`` below ``stop`` (default: the end),
        ``chunk_size`` frames per chunk (the last one may be shorter). With ``step > 1``
        only every step-th frame is returned (e.g. to sample a background model); the
        frames of a chunk are then ``first, first+step, ...``. TIFF stacks and image
        folders read the wanted pages / files directly; videos seek to them where that
        is safe (:meth:`VideoSource._seek_plan`), else decode every frame: the frames are
        the same either way.
        """
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        for first, block in self._chunks(chunk_size, start, stop, step):
            if block.dtype.kind in "fc":
                block = self._replace_nonfinite(first, block, step)
            yield first, block

    def _replace_nonfinite(self, first, block, step):
        """Replace NaN/Inf pixels by the median of the frame's finite pixels (see module doc)."""
        bad = ~np.isfinite(block)
        if not bad.any():
            return block
        block = np.array(block, copy=True)
        for k in np.flatnonzero(bad.any(axis=(1, 2))):
            idx = int(first) + int(k) * int(step)
            good = block[k][~bad[k]]
            if good.size == 0:
                raise InputError(
                    f"frame {idx} has no finite pixel (all NaN or Inf)", path=self.path,
                    fix="re-export the stack, or drop the frames that failed (e.g. analyse fewer with --max-frames)",
                )
            block[k][bad[k]] = np.median(good)
            self.nonfinite_pixels[idx] = int(bad[k].sum())
        return block

    def nonfinite_note(self) -> str | None:
        """One-sentence warning about the NaN/Inf pixels replaced so far, or None if none were."""
        if not self.nonfinite_pixels:
            return None
        n_px = sum(self.nonfinite_pixels.values())
        frames = sorted(self.nonfinite_pixels)
        shown = ", ".join(str(i) for i in frames[:10]) + (", ..." if len(frames) > 10 else "")
        return (f"{n_px} NaN/Inf pixels in {len(frames)} frames (frames {shown}) were replaced by "
                "the median of each frame's finite pixels")

    def _chunks(self, chunk_size, start, stop, step):
        rng = self._range(start, stop, step)
        for c0 in range(0, len(rng), chunk_size):
            idx = rng[c0:c0 + chunk_size]
            out = np.empty((len(idx),) + tuple(self.shape), dtype=self.dtype)
            for k, (_, fr) in enumerate(self._read_indices(idx)):
                out[k] = fr
            yield idx[0], out

    def frames(self, start: int = 0, stop: int | None = None, chunk: int = 64,
               step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
        """Alias of :meth:`chunks` with the argument order of docs/ARCHITECTURE.md."""
        return self.chunks(chunk_size=chunk, start=start, stop=stop, step=step)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Iterate over single frames (2-D arrays)."""
        for _, block in self.chunks():
            yield from block

    def timing_report(self) -> dict:
        """Frame-timing check; only videos record per-frame times (see VideoSource)."""
        return {"available": False, "reason": f"a {self.kind} source records no frame times",
                "fps": self.fps, "irregular": None}

    def info(self) -> dict:
        """Description of the source for provenance."""
        return {
            "path": self.path,
            "kind": self.kind,
            "fps": self.fps,
            "fps_recorded": self.fps_recorded,
            "fps_overridden": self._fps_override is not None,
            "n_frames": self.n_frames,
            "shape": tuple(int(v) for v in self.shape),
            "dtype": str(np.dtype(self.dtype)),
            "codec": self.codec,
        }

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.path!r} {self.n_frames} frames "
                f"{self.shape[0]}x{self.shape[1]} {np.dtype(self.dtype)} fps={self.fps}>")


# --------------------------------------------------------------------------- video


_GREY_PIX = {
    # name: (numpy dtype, byte order)
    "gray": np.dtype(np.uint8),
    "gray8": np.dtype(np.uint8),
    "gray16le": np.dtype("<u2"), "gray16be": np.dtype(">u2"),
    "gray9le": np.dtype("<u2"), "gray9be": np.dtype(">u2"),
    "gray10le": np.dtype("<u2"), "gray10be": np.dtype(">u2"),
    "gray12le": np.dtype("<u2"), "gray12be": np.dtype(">u2"),
    "gray14le": np.dtype("<u2"), "gray14be": np.dtype(">u2"),
    "grayf32le": np.dtype("<f4"), "grayf32be": np.dtype(">f4"),
}
_YUV_RE = re.compile(r"^(yuvj?|nv)\d")  # yuv420p, yuvj420p, yuv444p10le, nv12, ...


def _plane_array(plane, dtype: np.dtype) -> np.ndarray | None:
    """Copy a video plane into a (height, width) array, honouring the line stride."""
    ls = plane.line_size
    if ls <= 0 or ls % dtype.itemsize:
        return None
    h, w = plane.height, plane.width
    buf = np.frombuffer(plane, dtype=np.uint8)
    rows = buf[: h * ls].reshape(h, ls)[:, : w * dtype.itemsize]
    arr = np.ascontiguousarray(rows).view(dtype).reshape(h, w)
    return arr.astype(dtype.newbyteorder("="), copy=False) if not dtype.isnative else arr


def _yuv_luma_dtype(fmt) -> np.dtype:
    bits = fmt.components[0].bits
    if bits <= 8:
        return np.dtype(np.uint8)
    return np.dtype(">u2") if fmt.name.endswith("be") else np.dtype("<u2")


def _video_frame_to_grey(frame) -> np.ndarray:
    """Grey rule for a decoded PyAV frame (see module docstring)."""
    fmt = frame.format
    name = fmt.name
    if name in _GREY_PIX:
        a = _plane_array(frame.planes[0], _GREY_PIX[name])
        if a is not None:
            return a
        return frame.to_ndarray()
    if _YUV_RE.match(name) or name.startswith(("yuv", "yuvj")):
        a = _plane_array(frame.planes[0], _yuv_luma_dtype(fmt))
        if a is not None:
            return a
    # RGB, paletted, anything else: convert to RGB, then grey rule
    deep = any(c.bits > 8 for c in fmt.components)
    rgb = frame.to_ndarray(format="rgb48le" if deep else "rgb24")
    return to_grey(rgb)


def _grey_into(frame, dst: np.ndarray) -> bool:
    """Copy a decoded frame's grey / luma plane into ``dst`` (C-contiguous (H, W), native
    dtype) by the grey rule; False (nothing written) when the frame needs the general path
    (:func:`_video_frame_to_grey`: colour, a byte order or layout the plane does not match)."""
    fmt = frame.format
    name = fmt.name
    if name in _GREY_PIX:
        dt = _GREY_PIX[name]
    elif _YUV_RE.match(name) or name.startswith(("yuv", "yuvj")):
        dt = _yuv_luma_dtype(fmt)
    else:
        return False
    if dt != dst.dtype or not dt.isnative or not dst.flags.c_contiguous:
        return False
    plane = frame.planes[0]
    ls = plane.line_size
    h, w = plane.height, plane.width
    if ls <= 0 or ls % dt.itemsize or (h, w) != dst.shape:
        return False
    rows = np.frombuffer(plane, dtype=np.uint8)[: h * ls].reshape(h, ls)[:, : w * dt.itemsize]
    dst.view(np.uint8).reshape(h, w * dt.itemsize)[...] = rows
    return True


def _rate(r) -> float | None:
    try:
        v = float(r) if r is not None else None
    except (TypeError, ZeroDivisionError):
        return None
    return v if v and math.isfinite(v) and v > 0 else None


#: Sample frames of videos by seeking (:meth:`VideoSource._seek_plan`); False decodes every frame.
_SEEK_ENABLED = True
#: Inter-coded streams: seek only past more than this many frames (else decode forward).
_SEEK_MIN_SKIP = 24


class _SeekFailed(Exception):
    """Seeking could not be shown to give the frames sequential decoding gives."""


class VideoSource(FrameSource):
    """A video container decoded with PyAV, streaming.

    Grey pixel formats are taken plane-as-is, YUV formats give their luma plane,
    RGB / paletted formats follow :func:`to_grey`. ``fps`` comes from the stream's
    ``average_rate`` (else ``base_rate`` / ``guessed_rate``); ``n_frames`` from the
    container header when it records one (``stream.frames > 0``).

    After a full pass (:meth:`chunks` to the end) :attr:`timestamps_s` holds each
    frame's presentation time in seconds, and :meth:`timing_report` checks them.

    Sampling (:meth:`chunks` with ``step > 1``, e.g. the background pass) seeks to the
    wanted frames instead of decoding every frame when that is known to give the same
    frames (see :meth:`_seek_plan`); otherwise, and whenever a check fails, it decodes
    sequentially. :attr:`seeks` and :attr:`seek_fallbacks` count what happened.
    """

    kind = "video"

    def __init__(self, path, *, fps=None):
        super().__init__(path, fps=fps)
        import av  # noqa: F401  (import error surfaces here, not at nta import)

        self._seq = None  # (container, frame iterator, next index) for read()
        self.timestamps_s: np.ndarray | None = None
        self.n_frames_header: int | None = None
        self.truncated = False
        self._seek_pts = None  # (pts, keyframe pts) for seeking, False if not possible
        #: times sampling by seeking gave up and decoded sequentially instead
        self.seek_fallbacks = 0
        #: seeks done while sampling frames (see :meth:`_seek_plan`)
        self.seeks = 0
        container, stream = self._open()
        try:
            cc = stream.codec_context
            self.codec = cc.name
            self.pix_fmt = None
            self.container_format = container.format.name
            self.time_base = stream.time_base
            self.fps_recorded = (
                _rate(stream.average_rate) or _rate(getattr(stream, "base_rate", None))
                or _rate(getattr(stream, "guessed_rate", None))
            )
            self.n_frames_header = int(stream.frames) if stream.frames and stream.frames > 0 else None
            self.n_frames = self.n_frames_header
            self.duration_s = (
                float(stream.duration * stream.time_base)
                if stream.duration is not None and stream.time_base is not None
                else (container.duration / 1e6 if container.duration else None)
            )
            first = None
            for _, frame in self._decode(container, stream):
                first = frame
                break
            if first is None:
                raise InputError(
                    "contains no video frames", path=self.path,
                    fix="the recording is empty or truncated; use a complete file",
                )
            self.pix_fmt = first.format.name
            g = _video_frame_to_grey(first)
            self.shape = (int(g.shape[0]), int(g.shape[1]))
            self.dtype = g.dtype
            self._first = g
        finally:
            container.close()

    # -- low level
    def _open(self):
        import av

        try:
            container = av.open(self.path, mode="r")
        except av.FFmpegError as e:
            raise InputError(
                f"is not a readable video ({e.__class__.__name__}: {getattr(e, 'strerror', None) or e})",
                path=self.path,
                fix="check that the file is a complete video (AVI, MOV, MP4, ...) and not renamed",
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot be opened as a video ({e})", path=self.path,
                             fix="check the file and its permissions") from None
        if not container.streams.video:
            container.close()
            raise InputError(
                "contains no video stream", path=self.path,
                fix="the file may be truncated (e.g. an MP4/MOV whose index is missing) or audio-only",
            )
        stream = container.streams.video[0]
        try:
            stream.thread_type = "AUTO"
        except Exception:  # pragma: no cover - older PyAV
            pass
        return container, stream

    def _decode(self, container, stream, stop=math.inf, state=None):
        """Yield (index, av.VideoFrame) for frames below ``stop``; decode errors become InputError.

        No packet is decoded once ``stop`` frames have come out, so a file damaged
        after frame ``stop`` still reads up to it. ``state["eof"]`` (a dict given) is set True when
        the stream is known to hold no frame beyond those yielded (the demuxer ran out, or
        ``stop`` was reached at the final flush packet and flushing gave no more frames).
        """
        import av

        i = 0
        state = {} if state is None else state
        state["eof"] = False
        try:
            for packet in container.demux(stream):
                if i >= stop:
                    if packet.size == 0 and not packet.decode():
                        state["eof"] = True  # flushed: no frame after the last one yielded
                    return
                for frame in packet.decode():
                    yield i, frame
                    i += 1
            state["eof"] = True
        except av.FFmpegError as e:
            raise InputError(
                f"decoding failed at frame {i} ({getattr(e, 'strerror', None) or e}); "
                "the file may be truncated or damaged",
                path=self.path,
                fix=f"use a complete copy of the file, or analyse only the frames before the damage "
                    f"with --max-frames {i}",
            ) from None

    @staticmethod
    def _frame_time(frame, stream) -> float:
        pts = frame.pts if frame.pts is not None else getattr(frame, "dts", None)
        if pts is None or stream.time_base is None:
            return float("nan")
        return float(pts * stream.time_base)

    # -- API
    def _chunks(self, chunk_size, start, stop, step):
        step = int(step)
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        start = int(start)
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        stop = math.inf if stop is None else int(stop)
        out = None
        first_idx = None
        k = 0
        for i, frame in self._iter_frames(start, stop, step):
            if out is None:
                out = np.empty((chunk_size,) + tuple(self.shape), dtype=self.dtype)
                first_idx = i
            # the plane is copied straight into the chunk (no per-frame array, no stacking)
            if not _grey_into(frame, out[k]):
                out[k] = _video_frame_to_grey(frame)
            k += 1
            if k == chunk_size:
                yield first_idx, out
                out, first_idx, k = None, None, 0
        if k:
            yield first_idx, out[:k]

    def _iter_frames(self, start, stop, step):
        """(index, decoded av.VideoFrame) for ``start, start+step, ...`` below ``stop``: by seeking when
        :meth:`_seek_plan` finds it safe and worthwhile, else by decoding every frame."""
        plan = self._seek_plan(start, stop, step)
        if plan is None:
            yield from self._iter_sequential(start, stop, step)
            return
        done = start - step  # last index handed out
        try:
            for i, g in self._iter_seek(plan, range(start, min(stop, len(plan[0])), step)):
                done = i
                yield i, g
            return
        except _SeekFailed:
            self.seek_fallbacks += 1
        # the rest sequentially (decoded from the start: frame indices stay decode order)
        yield from self._iter_sequential(done + step, stop, step)

    def _iter_sequential(self, start, stop, step):
        """Decode every frame from the start; hand out ``start, start+step, ...`` below ``stop``.

        A pass that reaches the end of the stream records the frame times
        (:attr:`timestamps_s`, used by :meth:`timing_report`) and the decoded frame count."""
        container, stream = self._open()
        times = []
        n = 0
        full = False
        state = {}
        try:
            for i, frame in self._decode(container, stream, stop, state):
                if i >= stop:
                    break
                n = i + 1
                times.append(self._frame_time(frame, stream))
                if i < start or (i - start) % step:
                    continue
                if (frame.height, frame.width) != tuple(self.shape):
                    raise InputError(
                        f"frame {i} has shape {(frame.height, frame.width)}, frame 0 has {self.shape}",
                        path=self.path, fix="the video changes resolution mid-stream; re-encode it",
                    )
                yield i, frame
            else:
                full = state["eof"]
        finally:
            container.close()
        if n < stop or full:  # the decoder ran out: a full pass
            self._finish_pass(n, times)

    def _seek_plan(self, start, stop, step):
        """Presentation timestamps for seeking to sampled frames, or None to decode sequentially.

        Seeking is used only for sampling (``step > 1``) when the frame count is known
        and frame ``i`` (the ``i``-th frame the decoder outputs from the start) can be
        named by its presentation timestamp (pts) without decoding:

        * intra-only streams (every frame a keyframe, no reordering; e.g. the raw 8-bit
          AVIs NanoSight writes, MJPEG): from the demuxer's index
          (``stream.index_entries``), when it lists exactly ``n_frames`` entries with
          strictly increasing timestamps, none to be discarded;
        * other streams (H.264, ...): from a demux-only pass over the packets (no
          decoding): frame ``i`` is the ``i``-th smallest packet pts. Required: every
          packet has a pts, all distinct, none flagged to be discarded (e.g. by an MP4
          edit list), and exactly ``n_frames`` of them. Keyframes are the packets flagged
          so; a seek lands on the keyframe at or before the wanted frame and frames are
          decoded forward from there, so seeking is skipped (decoding continues) while
          the wanted frame lies before the next keyframe.

        This assumes each packet decodes to exactly one frame, in pts order (true of
        intact files; the pts of every frame handed out is checked against the plan, and
        any mismatch, missing frame or decoder error falls back to decoding sequentially
        from the start, see :meth:`_iter_frames`). Returns ``(pts, keyframe_pts)``,
        both sorted int arrays, or None.
        """
        n = self.n_frames
        if step <= 1 or n is None or not _SEEK_ENABLED:
            return None
        rng = range(start, min(stop, n), step)
        if len(rng) < 2:
            return None
        try:
            container, stream = self._open()
        except InputError:
            return None
        try:
            if self._seek_pts is None:
                self._seek_pts = self._build_seek_pts(container, stream, n)
            return self._seek_pts or None
        except Exception:  # noqa: BLE001 - seeking is an optimisation: decode instead
            return None
        finally:
            container.close()

    @staticmethod
    def _intra_index(stream):
        """The demuxer's index entries of an intra-only stream (every entry a keyframe, none
        to discard, no B-frames: entry order is frame order), or None."""
        entries = list(stream.index_entries)
        if not entries or getattr(stream.codec_context, "has_b_frames", 1) or \
                any(not e.is_keyframe or e.is_discard for e in entries):
            return None
        return entries

    @staticmethod
    def _build_seek_pts(container, stream, n):
        """See :meth:`_seek_plan`; returns ``(pts, keyframe_pts)`` or False."""
        entries = VideoSource._intra_index(stream)
        if entries is not None and len(entries) == n and all(e.size > 0 for e in entries):
            ts = np.array([e.timestamp for e in entries], dtype=np.int64)
            if ts.size and np.all(np.diff(ts) > 0):
                return ts, ts
        pts, key = [], []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None or packet.is_discard:
                return False
            pts.append(packet.pts)
            if packet.is_keyframe:
                key.append(packet.pts)
            if len(pts) > n:
                return False
        pts = np.sort(np.array(pts, dtype=np.int64))
        if pts.size != n or not key or np.any(np.diff(pts) <= 0):
            return False
        return pts, np.sort(np.array(key, dtype=np.int64))

    def _iter_seek(self, plan, indices):
        """Frames ``indices`` by seeking (see :meth:`_seek_plan`); raises :class:`_SeekFailed`
        at the first frame that cannot be shown to be the one sequential decoding gives."""
        import av

        pts, keys = plan
        min_skip = 0 if keys is pts else _SEEK_MIN_SKIP  # intra-only: every frame is a keyframe
        container, stream = self._open()
        frames = None  # decoded-frame iterator at the current position
        cur = None  # pts of the last frame decoded
        try:
            for i in indices:
                target = int(pts[i])
                k = int(np.searchsorted(keys, target, side="right")) - 1
                if k < 0:
                    raise _SeekFailed(f"no keyframe at or before frame {i}")
                key = int(keys[k])
                # seek when behind the target's keyframe by more than a few frames (decoding
                # forward is cheaper than a seek, which restarts the decoder, for short skips)
                if frames is None or cur is None or cur >= target or (
                        key > cur and np.searchsorted(pts, key) - np.searchsorted(pts, cur) > min_skip):
                    container.seek(key, stream=stream, backward=True, any_frame=False)
                    self.seeks += 1
                    frames = container.decode(stream)
                    cur = None
                for frame in frames:
                    p = frame.pts
                    if p is None or (cur is not None and p <= cur):
                        raise _SeekFailed(f"frame times not increasing after a seek (frame {i})")
                    cur = p
                    if p < target:
                        continue
                    if p > target:
                        raise _SeekFailed(f"seek passed frame {i} (pts {target}) without decoding it")
                    if (frame.height, frame.width) != tuple(self.shape):
                        raise _SeekFailed(f"frame {i} has another shape")
                    yield i, frame
                    break
                else:
                    raise _SeekFailed(f"stream ended before frame {i}")
        except av.FFmpegError as e:
            raise _SeekFailed(str(e)) from None
        finally:
            container.close()

    def _finish_pass(self, n, times):
        self.timestamps_s = np.asarray(times, dtype=np.float64)
        if self.n_frames_header is not None and n < self.n_frames_header:
            self.truncated = True
            warnings.warn(
                f"{self.path}: decoded {n} frames but the container header announces "
                f"{self.n_frames_header}; the file may be truncated",
                TruncatedVideoWarning, stacklevel=3,
            )
        self.n_frames = n

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` (decodes forward from the start or the last read: slow for far jumps)."""
        index = self._check_index(index)
        if index == 0:
            return self._first.copy()
        if self._seq is None or self._seq[2] > index:
            self._close_seq()
            container, stream = self._open()
            self._seq = [container, self._decode(container, stream), 0]
        it = self._seq[1]
        for i, frame in it:
            self._seq[2] = i + 1
            if i == index:
                return _video_frame_to_grey(frame)
        n = self._seq[2]
        self._close_seq()
        raise IndexError(f"frame index {index} out of range: {self.path} decodes to {n} frames")

    def _close_seq(self):
        if self._seq is not None:
            try:
                self._seq[1].close()
                self._seq[0].close()
            except Exception:
                pass
            self._seq = None

    def close(self) -> None:
        self._close_seq()

    def _scan_timestamps(self) -> np.ndarray:
        """Presentation times of all frames from the packets (demux only, no decoding).

        An AVI whose index lists every frame (:meth:`_index_timestamps`) gives them from the
        index, without reading the frames (3 ms instead of 0.2–1.6 s for a 2 GB video); any
        other file is demuxed packet by packet.
        """
        import av

        container, stream = self._open()
        ts = []
        try:
            fast = self._index_timestamps(container, stream)
            if fast is not None:
                return fast
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # flush packet
                t = packet.pts if packet.pts is not None else packet.dts
                ts.append(float(t * stream.time_base) if t is not None else np.nan)
        except av.FFmpegError as e:
            raise InputError(f"reading packet {len(ts)} failed ({e}); the file may be truncated",
                             path=self.path, fix="use a complete copy of the file") from None
        finally:
            container.close()
        return np.sort(np.asarray(ts, dtype=np.float64))

    def _index_timestamps(self, container, stream) -> np.ndarray | None:
        """The sorted packet times :meth:`_scan_timestamps` demuxes, from an AVI's index, or None.

        Used only where the index names exactly the packets demuxing returns, with their
        timestamps: an AVI container (whose demuxer numbers packets by their index entry),
        an intra-only stream (every entry a keyframe: no reordering, pts = dts) with no
        entry to discard, as many non-empty entries as the header announces frames, and
        every entry's data inside the file (a truncated file demuxes fewer packets).
        """
        try:
            if self.container_format != "avi" or self.n_frames_header is None or stream.time_base is None:
                return None
            entries = self._intra_index(stream)
            if entries is None:
                return None
            size = os.path.getsize(self.path)
            if any(e.pos + e.size > size for e in entries):
                return None
            tb = stream.time_base
            ts = [float(e.timestamp * tb) for e in entries if e.size > 0]
            if len(ts) != self.n_frames_header:
                return None
        except Exception:  # noqa: BLE001 - an optimisation: demux instead
            return None
        return np.sort(np.asarray(ts, dtype=np.float64))

    def timing_report(self, tolerance: float = 0.5) -> dict:
        """Check frame timing: steps between presentation times versus 1/fps.

        Uses :attr:`timestamps_s` from a full pass if there was one, else the packet
        timestamps (demux only, no decoding). A step shorter than
        ``(1 - tolerance)/fps`` counts as a duplicate frame, one longer than
        ``(1 + tolerance)/fps`` as a gap (dropped frames: ``round(step*fps) - 1``).
        ``fps`` is the recorded (not overridden) rate, or 1/median step.
        """
        ts = self.timestamps_s if self.timestamps_s is not None else self._scan_timestamps()
        ts = np.sort(ts[np.isfinite(ts)])
        out = {"available": ts.size >= 2, "n_timestamps": int(ts.size),
               "fps_recorded": self.fps_recorded, "fps": self.fps}
        if ts.size < 2:
            out.update(irregular=None, reason="fewer than two frame times")
            return out
        d = np.diff(ts)
        med = float(np.median(d))
        fps_ref = self.fps_recorded or (1.0 / med if med > 0 else None)
        out["fps_measured"] = (1.0 / med) if med > 0 else None
        out["step_s_median"] = med
        out["step_s_min"] = float(d.min())
        out["step_s_max"] = float(d.max())
        if not fps_ref:
            out.update(irregular=None, reason="no frame rate to compare with")
            return out
        dt = 1.0 / fps_ref
        dup = d < (1 - tolerance) * dt
        gap = d > (1 + tolerance) * dt
        out["n_duplicate"] = int(dup.sum())
        out["n_gaps"] = int(gap.sum())
        out["n_dropped_estimate"] = int(np.sum(np.rint(d[gap] / dt) - 1)) if gap.any() else 0
        out["irregular_at_frames"] = (np.flatnonzero(dup | gap) + 1).tolist()[:100]
        out["irregular"] = bool(dup.any() or gap.any())
        out["duration_s"] = float(ts[-1] - ts[0] + dt)
        return out

    def info(self) -> dict:
        d = super().info()
        d.update(
            container=self.container_format,
            pix_fmt=self.pix_fmt,
            n_frames_header=self.n_frames_header,
            duration_s=self.duration_s,
            time_base=str(self.time_base) if self.time_base is not None else None,
            truncated=self.truncated,
        )
        return d

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_seq"] = None
        return d


# --------------------------------------------------------------------------- TIFF


def _tiff_fps(tif) -> float | None:
    """Frame rate recorded in a TIFF: ImageJ ``finterval`` (with ``tunit``) or ``fps``, or
    the ``fps`` key of tifffile's JSON description (as ``nta simulate`` writes it)."""
    md = None
    try:
        md = tif.imagej_metadata
    except Exception:
        md = None
    if not md:
        try:
            shaped = tif.shaped_metadata or ()
            md = shaped[0] if shaped and isinstance(shaped[0], dict) and "fps" in shaped[0] else None
        except Exception:
            md = None
    if not md:
        return None
    scale = {"ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
             "us": 1e-6, "µs": 1e-6, "\u00b5s": 1e-6, "microsecond": 1e-6,
             "min": 60.0, "minute": 60.0, "minutes": 60.0}.get(
        str(md.get("tunit", "s")).strip().lower(), 1.0)
    fi = md.get("finterval")
    try:
        fi = float(fi) * scale if fi is not None else None
    except (TypeError, ValueError):
        fi = None
    if fi and math.isfinite(fi) and fi > 0:
        return 1.0 / fi
    f = md.get("fps")
    try:
        f = float(f) if f is not None else None
    except (TypeError, ValueError):
        f = None
    return f if f and math.isfinite(f) and f > 0 else None


class TiffSource(FrameSource):
    """A TIFF stack read page by page with tifffile (memory-mapped where contiguous).

    Values are kept exactly as recorded (uint16 stays uint16, float32 stays float32).
    Every axis of the first series other than Y, X (and S, samples) counts as the frame
    axis, in file order. Multi-sample pages (RGB/RGBA) follow :func:`to_grey`.
    A single-page TIFF is a one-frame stack. ``fps`` = 1/``finterval`` from ImageJ
    metadata if present (or its ``fps``), else None.
    """

    kind = "tiff"

    def __init__(self, path, *, fps=None):
        super().__init__(path, fps=fps)
        import tifffile

        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as e:
            raise InputError(
                f"is not a readable TIFF ({e.__class__.__name__}: {e})", path=self.path,
                fix="check that the file is a complete TIFF and not renamed",
            ) from None
        try:
            self._setup(tifffile)
        except InputError:
            self._tif.close()
            raise
        except Exception as e:
            self._tif.close()
            raise InputError(f"cannot read TIFF structure ({e.__class__.__name__}: {e})",
                             path=self.path, fix="check that the file is a complete TIFF") from None

    def _setup(self, tifffile):
        tif = self._tif
        if not tif.series:
            raise InputError("contains no images", path=self.path, fix="use a TIFF with image data")
        s0 = tif.series[0]
        if "Y" not in s0.axes or "X" not in s0.axes:
            raise InputError(f"has no Y/X image axes (axes {s0.axes!r})", path=self.path,
                             fix="give a 2-D image stack")
        # Pages written one by one without stack metadata come out as one series per
        # page: take every following series of the same layout as more frames.
        parts = [s0]
        yx0 = tuple(s0.shape[s0.axes.index(a)] for a in "YX")
        for s in tif.series[1:]:
            if s.axes == s0.axes and s.dtype == s0.dtype and \
                    tuple(s.shape)[-3:] == tuple(s0.shape)[-3:] and len(s.shape) == len(s0.shape):
                parts.append(s)
            else:
                if "Y" in s.axes and "X" in s.axes and s.dtype == s0.dtype and \
                        s.axes.replace("S", "") == s0.axes.replace("S", ""):
                    # more frames of the same kind but another size: the recording changes
                    # size mid-stack. Refuse rather than silently analyse the first part.
                    yx = tuple(s.shape[s.axes.index(a)] for a in "YX")
                    n_before = sum(int(np.prod([p.shape[p.axes.index(a)] for a in p.axes
                                                if a not in "YXS"])) for p in parts)
                    raise InputError(
                        f"frames change size: frame {n_before} is {yx[0]}x{yx[1]} px (HxW) but "
                        f"frame 0 is {yx0[0]}x{yx0[1]} px",
                        path=self.path,
                        fix="all frames of a recording must have the same size; split or crop the stack",
                    )
                break
        self.n_series_ignored = len(tif.series) - len(parts)
        self.series_axes = s0.axes
        self._parts = []  # (n frames, memmap view (n, H, W[, S]) or None, series)
        for k, s in enumerate(parts):
            axes, shp = s.axes, tuple(s.shape)
            n = int(np.prod([shp[axes.index(a)] for a in axes if a not in "YXS"]))
            view = None
            try:
                if s.dataoffset is not None:
                    mm = tifffile.memmap(self.path, series=k, mode="r")
                    view = self._normalise(mm, axes)
            except Exception:
                view = None
            self._parts.append((n, view, s))
        self._offsets = np.cumsum([0] + [n for n, _, _ in self._parts])
        self.n_frames = int(self._offsets[-1])
        if self.n_frames == 0:
            raise InputError("contains no image frames", path=self.path, fix="use a non-empty stack")
        self.shape = (int(s0.shape[s0.axes.index("Y")]), int(s0.shape[s0.axes.index("X")]))
        comp = getattr(s0.pages[0], "compression", None) if s0.pages else None
        self.codec = "tiff" if comp is None else f"tiff/{getattr(comp, 'name', comp)}".lower()
        self.fps_recorded = _tiff_fps(tif)
        first = self.read(0)
        self.dtype = first.dtype

    @staticmethod
    def _normalise(arr, axes):
        """Return a view (n, H, W[, S]) with frames first, samples last."""
        order = [i for i, a in enumerate(axes) if a not in "YXS"]
        order += [axes.index("Y"), axes.index("X")]
        if "S" in axes:
            order.append(axes.index("S"))
        arr = np.transpose(arr, order)
        return arr.reshape((-1,) + arr.shape[-(3 if "S" in axes else 2):])

    def read(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        n, view, series = self._parts[k]
        j = index - int(self._offsets[k])
        try:
            if view is not None:
                return to_grey(np.array(view[j]))
            pages = series.pages
            if len(pages) == n and pages[j] is not None:
                page = pages[j]
                arr = page.asarray()
                axes = page.axes if len(page.axes) == arr.ndim else series.axes[-arr.ndim:]
                return to_grey(np.ascontiguousarray(self._normalise(arr, axes)[0]))
            # non-standard layout (several frames per page): read the series (rare)
            arr = series.asarray()
            return to_grey(np.ascontiguousarray(self._normalise(arr, series.axes)[j]))
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"reading frame {index} failed ({e.__class__.__name__}: {e}); "
                             "the file may be truncated or damaged", path=self.path,
                             fix="use a complete copy of the file, or analyse only the frames before the damage "
                                 "with --max-frames N") from None

    def _read_indices(self, indices):
        """Whole slices from a memory map where a chunk lies inside one 2-D-frame part."""
        if len(indices) > 1:
            k = int(np.searchsorted(self._offsets, indices[0], side="right")) - 1
            n, view, _ = self._parts[k]
            off = int(self._offsets[k])
            if view is not None and view.ndim == 3 and indices[-1] < off + n:
                block = np.array(view[indices[0] - off: indices[-1] - off + 1: indices.step])
                for i, fr in zip(indices, block):
                    yield i, fr
                return
        yield from super()._read_indices(indices)

    def info(self) -> dict:
        d = super().info()
        d.update(series_axes=self.series_axes,
                 memmap=all(v is not None for _, v, _ in self._parts),
                 n_series=len(self._parts), n_series_ignored=self.n_series_ignored)
        return d

    def __reduce__(self):
        # open file handles and memory maps do not pickle: reopen on the other side
        return (type(self), (self.path,), {"_fps_override": self._fps_override})

    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        self._parts = []
        if tif is not None:
            tif.close()


# --------------------------------------------------------------------------- image folders


def _image_shape(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    if path.suffix.lower() in TIFF_EXTENSIONS:
        import tifffile

        with tifffile.TiffFile(path) as t:
            s = t.series[0]
            return (int(s.shape[s.axes.index("Y")]), int(s.shape[s.axes.index("X")]))
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    return (int(h), int(w))


def _read_image(path: Path) -> np.ndarray:
    if path.suffix.lower() in TIFF_EXTENSIONS:
        import tifffile

        return tifffile.imread(path, key=0)
    import imageio.v3 as iio

    return iio.imread(path)


class ImageFolderSource(FrameSource):
    """Image files (PNG, TIFF, BMP, JPG) of one folder or glob pattern, in natural order.

    Every file is one frame (grey rule applied). All files must have the same
    (height, width). ``fps`` is None unless given.
    """

    kind = "folder"

    def __init__(self, path, files, *, fps=None):
        super().__init__(path, fps=fps)
        self.files = [Path(f) for f in sorted(files, key=lambda p: natural_sort_key(Path(p).name))]
        if not self.files:
            raise InputError("contains no images (.png, .tif, .bmp, .jpg)", path=self.path,
                             fix="point to a folder or glob pattern of image files")
        self.n_frames = len(self.files)
        shape0 = None
        for f in self.files:
            if f.stat().st_size == 0:
                raise InputError("is an empty (zero-byte) image file", path=f,
                                 fix="remove or replace it")
            try:
                shp = _image_shape(f)
            except Exception as e:
                raise InputError(f"is not a readable image ({e.__class__.__name__}: {e})", path=f,
                                 fix="remove or replace the file") from None
            if shape0 is None:
                shape0 = shp
            elif shp != shape0:
                raise InputError(
                    f"image {f} has shape {shp[0]}x{shp[1]} (HxW) but {self.files[0].name} has "
                    f"{shape0[0]}x{shape0[1]}",
                    path=self.path, fix="all images of a recording must have the same size",
                )
        self.shape = shape0
        first = self.read(0)
        self.dtype = first.dtype
        self.codec = self.files[0].suffix.lower().lstrip(".")

    def read(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        f = self.files[index]
        try:
            a = _read_image(f)
        except Exception as e:
            raise InputError(f"is not a readable image ({e.__class__.__name__}: {e})", path=f,
                             fix="remove or replace the file") from None
        g = to_grey(a)
        if g.shape != tuple(self.shape):
            raise InputError(f"has shape {g.shape}, expected {tuple(self.shape)}", path=f,
                             fix="all images of a recording must have the same size")
        if index and g.dtype != self.dtype:
            raise InputError(f"has dtype {g.dtype}, the first image has {self.dtype}", path=f,
                             fix="all images of a recording must have the same bit depth")
        return g

    def info(self) -> dict:
        d = super().info()
        d.update(first_file=str(self.files[0]), last_file=str(self.files[-1]))
        return d


# --------------------------------------------------------------------------- dispatch


def _is_glob(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def open_frames(path, *, fps: float | None = None) -> FrameSource:
    """Open a recording for streaming; dispatches on what ``path`` is.

    * a folder → its image files (natural sort order): :class:`ImageFolderSource`
    * a glob pattern (``'run1/frame*.png'``) → the matching image files
    * ``.tif`` / ``.tiff`` → :class:`TiffSource`
    * a video extension (``.avi``, ``.mov``, ``.mp4``, ...) → :class:`VideoSource`
    * a single ``.png`` / ``.bmp`` / ``.jpg`` → a one-frame image source

    ``fps`` given overrides the frame rate recorded in the file (``fps_recorded``
    keeps the recorded one). Raises :class:`InputError` for missing, empty,
    unreadable or unsupported inputs.
    """
    if isinstance(path, FrameSource):
        if fps is not None:
            path._fps_override = float(fps)
        return path
    s = os.fspath(path)
    p = Path(s)
    if not p.exists() and _is_glob(s):
        files = [Path(f) for f in _glob.glob(s)
                 if Path(f).is_file() and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise InputError("matches no image files", path=s,
                             fix="check the pattern; images must be .png, .tif, .bmp or .jpg")
        return ImageFolderSource(s, files, fps=fps)
    _check_file(p)
    if p.is_dir():
        files = [f for f in p.iterdir()
                 if f.is_file() and not f.name.startswith(".")
                 and f.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise InputError("is a folder with no images (.png, .tif, .bmp, .jpg)", path=p,
                             fix="point to the folder that holds the frames, or to a video/TIFF file")
        return ImageFolderSource(p, files, fps=fps)
    ext = p.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        return TiffSource(p, fps=fps)
    if ext in VIDEO_EXTENSIONS:
        return VideoSource(p, fps=fps)
    if ext in IMAGE_EXTENSIONS:
        return ImageFolderSource(p, [p], fps=fps)
    raise InputError(f"has an unsupported extension {ext or '(none)'!r}", path=p,
                     fix=f"nta reads {_SUPPORTED_TEXT}")
