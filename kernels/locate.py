"""Fast particle locator: trackpy's Crocker–Grier locator re-implemented as one numba kernel per frame.

Plain arrays in and out, pixels inside: no I/O, no pandas, no validation. The wrapper is
:func:`nta.locate.locate_frames` (``locator="fast"``); the reference the tests compare
against is :func:`trackpy.locate` (v0.7, ``preprocess=True``, ``engine="numba"``).

What one call of :func:`locate_frame` does, step for step as trackpy 0.7 does it
(``trackpy.feature.locate`` with ``noise_size=1``, ``smoothing_size=diameter``,
``threshold=1/255``, ``percentile=64``, ``max_iterations=10``, ``characterize=True``):

1. Raw image: ``float32(frame) − background`` (negated for ``invert``), the array
   :func:`nta.locate.subtract_background` gives; without a background the frame itself.
2. Band-pass (``trackpy.preprocessing.bandpass``): Gaussian blur, σ = 1 px, kernel
   truncated at 4σ (9 taps, zero outside the image) minus a ``diameter``-wide boxcar mean
   (edge pixels repeated outside the image); values below 1/255 set to 0.
3. Rescale to 8 bits (``trackpy.preprocessing.convert_to_int``): ``q = trunc(b · 255 / max b)``.
   Centroids, ``mass``, ``size``, ``ecc`` and ``signal`` are computed on ``q`` exactly as
   trackpy does (then ``mass`` and ``signal`` are divided by the scale factor again), so
   ``minmass`` means the same thing for both locators.
4. Local maxima (``trackpy.find.grey_dilation``, ``precise=False``): ``q`` equal to its grey
   dilation by a square of side ``int(2·separation/√2)`` (scipy's origin convention for even
   sides), above the 64th percentile of the nonzero ``q`` (numpy's linear percentile), and
   not within ``margin`` of the edge.
5. Centroid refinement (``trackpy.refine.center_of_mass._numba_refine_2D_c``) in the
   circular mask of radius ``diameter // 2``: up to 10 iterations, the mask moves by one
   pixel along an axis whose offset exceeds 0.6 px.
6. Duplicates (``trackpy.find.where_close``): of every pair of refined features closer
   than ``separation`` the one of lower mass is dropped (equal mass: the one with the
   smaller ``y/sep + x/sep``); then ``mass > minmass`` and ``size < maxsize``. Here the
   mass filter comes first (candidates at or below ``minmass`` are neither characterized
   nor searched for pairs), which gives the same features: see the proof at step 6 in
   :func:`locate_frame` and ``tests/test_locate.py``.

The float arithmetic of the band-pass is float32 here (trackpy: float64 Gaussian, float32
boxcar), so an 8-bit level of ``q`` can differ where ``b·scale`` lies within ~1e-5 of an
integer; everything after step 3 is exact integer arithmetic in both, so positions agree
to far better than 0.01 px (see ``tests/test_locate.py``).

Frames are independent: :func:`locate_frame` is ``nogil``, so the wrapper runs frames of
a chunk in parallel threads, each with its own :class:`Scratch`-like set of buffers
(:func:`make_scratch`).

Speed (same results, bit for bit; ``tests/test_locate_equal.py`` checks against the
previous kernel, ``tests/_locate_ref.py``): the band-pass streams rows, its horizontal
pass (4 rows at a time, their running sums interleaved) feeding ring buffers of a few rows
that the vertical pass reads while they are in cache (:func:`_bandpass`); the 8-bit
histogram counts in 8 sub-histograms (:func:`_quantize`); the horizontal max filter of
the dilation works by doubling (:func:`_hmax`), the vertical one is van Herk / Gil-Werman,
and the candidate flags are counted 8 at a time and collected without branches
(:func:`_maxima`); the centroid iteration sums masks of up to 15 px 16 columns at a time in
64-bit words (:func:`_mask_sums16`). :func:`median_u8_rows` is the background model's
per-pixel median of 8-bit frames.

Measured per 1280×1024 frame (200 particles, ~10 000 candidates, one thread, interleaved
in one process against the previous kernel): 8.3 → 6.7 ms for the last two changes
(max filter and candidate scan 2.5 → 1.3 ms, centroid iterations 2.1 → 1.4 ms); band-pass
about 2.6 ms, quantize 0.7 ms. A direct (vector) boxcar sum instead of the running sums,
exact for integer frames, measured slower (1.22 vs 0.96 ns/px for the horizontal pass) and
was not kept.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["locate_frame", "make_scratch", "gaussian_kernel", "mask_tables", "dilation_size", "N_COLUMNS",
           "median_u8_rows", "median_f32"]

#: Columns of the per-frame result array: y, x (px), mass, size (px), ecc, signal, raw_mass.
N_COLUMNS = 7


def gaussian_kernel(sigma: float = 1.0, truncate: float = 4.0) -> np.ndarray:
    """trackpy's 1-D Gaussian kernel (``trackpy.masks.gaussian_kernel``), float32, sums to 1."""
    lw = int(truncate * sigma + 0.5)
    x = np.arange(-lw, lw + 1)
    g = np.exp(x**2 / (-2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def mask_tables(radius: int):
    """Circular mask of ``radius`` as trackpy builds it (``binary_mask``, ``r_squared_mask``, ``cosmask``, ``sinmask``).

    Returns
    -------
    my, mx : ndarray, (m,) int64
        Row and column of each mask pixel inside the ``(2r+1, 2r+1)`` square, row-major.
    r2 : ndarray, (m,) float64
        Squared distance from the centre, px².
    cm, sm : ndarray, (m,) float64
        cos 2θ and sin 2θ, θ = atan2(row − r, col − r).
    """
    r = int(radius)
    pts = np.arange(-r, r + 1)
    yy, xx = np.meshgrid(pts, pts, indexing="ij")
    inside = (yy / r) ** 2 + (xx / r) ** 2 <= 1 if r > 0 else np.ones_like(yy, bool)
    theta = np.arctan2(yy.astype(float), xx.astype(float))
    my, mx = np.nonzero(inside)
    r2 = (yy**2 + xx**2).astype(np.float64)[inside]
    return (my.astype(np.int64), mx.astype(np.int64), r2, np.cos(2 * theta)[inside], np.sin(2 * theta)[inside])


def dilation_size(separation: float) -> int:
    """Side of the square of trackpy's grey dilation for a given separation, px."""
    return int(2 * separation / np.sqrt(2))


def make_scratch(shape):
    """Work buffers for :func:`locate_frame` on frames of ``shape`` (H, W); one set per thread."""
    H, W = int(shape[0]), int(shape[1])
    # q lives in a zero-padded buffer whose 64-bit words the mask sums read 16 bytes at a
    # time (:func:`_mask_sums16`): room for reads up to 16 bytes past the last mask row
    qbuf = np.zeros(((H * W + 32) + 7) // 8, np.uint64)
    return (
        np.empty((_RING, W), np.float32),  # th: horizontal Gaussian pass (ring of rows)
        np.empty((_RING, W), np.float32),  # tb: horizontal boxcar sums (ring of rows)
        np.empty((H, W), np.float32),  # bp: band-passed image
        qbuf.view(np.uint8)[: H * W].reshape(H, W),  # q: 8-bit image
        np.empty((H, W), np.uint8),  # hm: horizontal max filter of q
        np.empty((_ROWS, W + 2 * _PAD), np.float32),  # pe: padded rows of the raw image
        np.empty((_MAXDIL, W), np.uint8),  # vh: van Herk suffix maxima of a block of rows
        np.empty(W, np.float64),  # ga: boxcar column sums
        np.empty((_MAXDIL, W), np.uint8),  # ba: candidate flags of a block of rows
        np.empty((2, W + 2 * _MAXDIL), np.uint8),  # rowu: padded rows of the horizontal max filter
        np.empty((_MAXDIL, W), np.uint8),  # vg: van Herk prefix maxima of the next block
        qbuf,  # qw: q's buffer as 64-bit words
    )


#: Rows of the horizontal band-pass pass done together (independent running sums interleave).
_ROWS = 4
#: Padding of a row buffer, px: ≥ the boxcar's half-width + 1 and the Gaussian's 4 taps.
_PAD = 64
#: Largest dilation square side the scratch holds.
_MAXDIL = 128
#: Rows of the band-pass ring buffers the scratch holds (:func:`ring_rows` of diameter ≤ 121).
_RING = 128


@numba.njit(cache=True, nogil=True)
def _percentile_threshold(hist, percentile):
    """np.percentile(q[q > 0], percentile) (method 'linear') from the histogram of q; NaN if none."""
    n = 0
    for v in range(1, 256):
        n += hist[v]
    if n == 0:
        return np.nan
    quant = percentile / 100.0
    vi = (n - 1) * quant
    prev = math.floor(vi)
    if prev < 0:
        prev = 0.0
    if prev > n - 1:
        prev = float(n - 1)
    nxt = prev + 1.0
    if nxt > n - 1:
        nxt = float(n - 1)
    gamma = vi - math.floor(vi)
    ip = int(prev)
    inx = int(nxt)
    # values at sorted positions ip and inx
    a = -1
    b = -1
    c = 0
    for v in range(1, 256):
        c += hist[v]
        if a < 0 and c > ip:
            a = v
        if b < 0 and c > inx:
            b = v
            break
    diff = float(b - a)
    if gamma >= 0.5:
        return b - diff * (1.0 - gamma)
    return a + diff * gamma


@numba.njit(cache=True, nogil=True)
def _hrows(frame, bg, has_bg, invert, gk, r, y0, nr, th, tb, pe, s, mask):
    """Horizontal band-pass pass of rows ``y0 .. y0+nr-1`` (nr ≤ ``_ROWS``) into ring rows
    ``y & mask`` of ``th`` (9-tap Gaussian, zeros outside) and ``tb`` (boxcar running sums,
    edge pixels repeated). The rows' running sums (a serial chain of float64 additions each)
    are interleaved; each is formed with the same operations in the same order as one
    row alone, so the result is bit-identical."""
    H, W = frame.shape
    P = _PAD
    g0 = gk[0]
    g1 = gk[1]
    g2 = gk[2]
    g3 = gk[3]
    g4 = gk[4]
    for k in range(nr):
        y = y0 + k
        fy = frame[y]
        pz = pe[k]
        pzc = pz[P:P + W]
        if has_bg:
            bgy = bg[y]
            if invert:
                for x in range(W):
                    pzc[x] = -(np.float32(fy[x]) - bgy[x])
            else:
                for x in range(W):
                    pzc[x] = np.float32(fy[x]) - bgy[x]
        else:
            if invert:
                for x in range(W):
                    pzc[x] = -np.float32(fy[x])
            else:
                for x in range(W):
                    pzc[x] = np.float32(fy[x])
        for j in range(8):
            pz[P - 8 + j] = 0.0
            pz[P + W + j] = 0.0
        p0 = pz[P - 4:P - 4 + W]
        p1 = pz[P - 3:P - 3 + W]
        p2 = pz[P - 2:P - 2 + W]
        p3 = pz[P - 1:P - 1 + W]
        p5 = pz[P + 1:P + 1 + W]
        p6 = pz[P + 2:P + 2 + W]
        p7 = pz[P + 3:P + 3 + W]
        p8 = pz[P + 4:P + 4 + W]
        thy = th[y & mask]
        for x in range(W):
            thy[x] = g4 * pzc[x] + g3 * (p3[x] + p5[x]) + g2 * (p2[x] + p6[x]) + g1 * (p1[x] + p7[x]) + g0 * (p0[x] + p8[x])
        # boxcar start: running sum in float64, edge pixels repeated
        e0 = pzc[0]
        e1 = pzc[W - 1]
        sk = 0.0
        for j in range(-r, r + 1):
            jj = j if j > 0 else 0
            sk += pzc[jj] if jj < W else e1
        s[k] = sk
        tb[y & mask, 0] = sk
        # edge pixels repeated into the padding: pz[P + x] for x in [-r-1, W-1+r]
        for j in range(1, r + 2):
            pz[P - j] = e0
            pz[P + W - 1 + j] = e1
    # boxcar running sums, rows interleaved: s += vin - vout (float32 difference, as one row alone)
    if nr == 4:
        a0 = pe[0]
        a1 = pe[1]
        a2 = pe[2]
        a3 = pe[3]
        t0 = tb[y0 & mask]
        t1 = tb[(y0 + 1) & mask]
        t2 = tb[(y0 + 2) & mask]
        t3 = tb[(y0 + 3) & mask]
        s0 = s[0]
        s1 = s[1]
        s2 = s[2]
        s3 = s[3]
        for x in range(1, W):
            xin = P + x + r
            xout = P + x - r - 1
            s0 += a0[xin] - a0[xout]
            s1 += a1[xin] - a1[xout]
            s2 += a2[xin] - a2[xout]
            s3 += a3[xin] - a3[xout]
            t0[x] = s0
            t1[x] = s1
            t2[x] = s2
            t3[x] = s3
    else:
        for k in range(nr):
            a0 = pe[k]
            t0 = tb[(y0 + k) & mask]
            s0 = s[k]
            for x in range(1, W):
                s0 += a0[P + x + r] - a0[P + x - r - 1]
                t0[x] = s0


@numba.njit(cache=True, nogil=True)
def _bandpass(frame, bg, has_bg, invert, gk, diameter, th, tb, bp, pe, acc):
    """Steps 1-2: raw image, band-pass into ``bp`` (float32, ≥ 1/255 or 0); returns max(bp).

    Row-streaming: the horizontal pass (:func:`_hrows`, ``_ROWS`` rows at a time) runs just
    ahead of the vertical one, into ring buffers ``th``, ``tb`` of :func:`ring_rows` rows
    (ring row = image row ``& (rows − 1)``), so the intermediates stay in cache instead
    of making two frame-sized float32 round trips through memory. Same operations in the
    same order as a whole-frame pass: bit-identical."""
    H, W = frame.shape
    r = diameter // 2
    g0 = gk[0]
    g1 = gk[1]
    g2 = gk[2]
    g3 = gk[3]
    g4 = gk[4]
    ext = max(r, 4)
    need = 2 * ext + _ROWS + 1
    nring = 1
    while nring < need:
        nring *= 2
    if nring > th.shape[0]:
        raise ValueError("diameter too large for the band-pass ring buffers")
    mask = nring - 1
    s = np.zeros(_ROWS, np.float64)
    hdone = 0  # horizontal rows done
    while hdone <= min(ext, H - 1):
        nr = min(_ROWS, H - hdone)
        _hrows(frame, bg, has_bg, invert, gk, r, hdone, nr, th, tb, pe, s, mask)
        hdone += nr
    # vertical: 9-tap Gaussian (zero rows outside), boxcar running column sums (edges repeated)
    inv_box = 1.0 / (diameter * diameter)
    thr = np.float32(1.0 / 255.0)
    zero = np.zeros(W, np.float32)
    for x in range(W):
        acc[x] = 0.0
    for k in range(-r, r + 1):
        kk = k if k > 0 else 0
        if kk > H - 1:
            kk = H - 1
        row = tb[kk & mask]
        for x in range(W):
            acc[x] += row[x]
    bmax = np.int32(0)
    for y in range(H):
        while hdone < H and hdone <= y + ext:
            nr = min(_ROWS, H - hdone)
            _hrows(frame, bg, has_bg, invert, gk, r, hdone, nr, th, tb, pe, s, mask)
            hdone += nr
        if y > 0:
            yin = y + r
            if yin > H - 1:
                yin = H - 1
            yout = y - r - 1
            if yout < 0:
                yout = 0
            rin = tb[yin & mask]
            rout = tb[yout & mask]
            for x in range(W):
                acc[x] += rin[x] - rout[x]
        r0 = th[(y - 4) & mask] if y - 4 >= 0 else zero
        r1 = th[(y - 3) & mask] if y - 3 >= 0 else zero
        r2 = th[(y - 2) & mask] if y - 2 >= 0 else zero
        r3 = th[(y - 1) & mask] if y - 1 >= 0 else zero
        r4 = th[y & mask]
        r5 = th[(y + 1) & mask] if y + 1 < H else zero
        r6 = th[(y + 2) & mask] if y + 2 < H else zero
        r7 = th[(y + 3) & mask] if y + 3 < H else zero
        r8 = th[(y + 4) & mask] if y + 4 < H else zero
        bpy = bp[y]
        for x in range(W):
            b = g4 * r4[x] + g3 * (r3[x] + r5[x]) + g2 * (r2[x] + r6[x]) + g1 * (r1[x] + r7[x]) + g0 * (r0[x] + r8[x])
            b = b - np.float32(acc[x] * inv_box)
            bpy[x] = b if b >= thr else np.float32(0.0)
        bi = bpy.view(np.int32)  # non-negative floats order as their bit patterns
        for x in range(W):
            bmax = max(bmax, bi[x])
    out = np.empty(1, np.int32)
    out[0] = bmax
    return out.view(np.float32)[0]


@numba.njit(cache=True, nogil=True)
def _quantize(bp, scale, q):
    """Step 3: q = trunc(scale · bp) as uint8; returns the histogram of q (256,) int64.

    The histogram is counted in 8 sub-histograms (pixel x mod 8): most pixels share a few
    values (half of them 0), and increments of one counter form a serial chain through
    memory; 8 independent chains run in parallel. Counts are exact either way."""
    H, W = bp.shape
    hs = np.zeros((8, 256), np.int64)
    h0 = hs[0]
    h1 = hs[1]
    h2 = hs[2]
    h3 = hs[3]
    h4 = hs[4]
    h5 = hs[5]
    h6 = hs[6]
    h7 = hs[7]
    W8 = W - W % 8
    for y in range(H):
        bpy = bp[y]
        qy = q[y]
        for x in range(W):
            qy[x] = np.uint8(np.int32(scale * np.float64(bpy[x])))
        for x in range(0, W8, 8):
            h0[qy[x]] += 1
            h1[qy[x + 1]] += 1
            h2[qy[x + 2]] += 1
            h3[qy[x + 3]] += 1
            h4[qy[x + 4]] += 1
            h5[qy[x + 5]] += 1
            h6[qy[x + 6]] += 1
            h7[qy[x + 7]] += 1
        for x in range(W8, W):
            h0[qy[x]] += 1
    out = np.zeros(256, np.int64)
    for k in range(8):
        for v in range(256):
            out[v] += hs[k, v]
    return out


@numba.njit(cache=True, nogil=True)
def _max2(u, v, out):
    """out = maximum(u, v) elementwise (uint8, same lengths)."""
    for x in range(out.shape[0]):
        a = u[x]
        b = v[x]
        out[x] = a if a > b else b


@numba.njit(cache=True, nogil=True)
def _hmax(q, dil, hm, rowu):
    """Horizontal max filter of q over offsets -lo .. dil-1-lo (zero outside) into hm.

    By doubling: the row, zero-padded to columns ``-lo .. W-1+hi`` (``n = W + dil − 1``
    entries, zeros after them), goes through passes ``a[x] ← max(a[x], a[x + s])`` for
    s = 1, 2, 4, … < p (ping-ponging between ``rowu[0]`` and ``rowu[1]``), which leave at x
    the maximum of the p = 2^k ≤ dil columns from x; the window of ``dil`` columns at x is
    then ``max(a[x], a[x + dil − p])`` (two windows of p that cover it exactly). So
    log2 p + 1 vector passes per row instead of dil. Max is exact: the same result.

    ``rowu`` is (2, ≥ W + 2·dil) uint8 scratch.
    """
    H, W = q.shape
    lo = dil // 2 - (0 if dil % 2 else 1)  # scipy's origin for even sides
    n = W + dil - 1  # padded row: image column c at lo + c
    p = 1
    while 2 * p <= dil:
        p *= 2
    r0 = rowu[0]
    r1 = rowu[1]
    for x in range(n, n + p):  # windows running past the padded row read zeros
        r0[x] = 0
        r1[x] = 0
    for y in range(H):
        qy = q[y]
        for x in range(lo):
            r0[x] = 0
        for x in range(lo + W, n):
            r0[x] = 0
        dst = r0[lo:lo + W]
        for x in range(W):
            dst[x] = qy[x]
        s = 1
        odd = False  # the current maxima are in rowu[1]
        while s < p:
            if odd:
                _max2(r1[0:n], r1[s:s + n], r0[0:n])
            else:
                _max2(r0[0:n], r0[s:s + n], r1[0:n])
            odd = not odd
            s *= 2
        a = r1 if odd else r0
        _max2(a[0:W], a[dil - p:dil - p + W], hm[y])


@numba.njit(cache=True, nogil=True)
def _vh_row(hm, e, lo, H, dst):
    """dst = max(dst, hm row ``e - lo``) (rows outside the image count as zero: no change)."""
    y = e - lo
    if y < 0 or y >= H:
        return
    src = hm[y]
    for x in range(dst.shape[0]):
        a = dst[x]
        b = src[x]
        dst[x] = a if a > b else b


@numba.njit(cache=True, nogil=True)
def _count_flags(fl, nw, W):
    """Number of set bytes (0/1 flags) of row ``fl`` (W,), summed 8 bytes at a time as
    64-bit words (SWAR: byte lanes hold at most 255 words' worth, then fold)."""
    fw = fl[: nw * 8].view(np.uint64)
    lo8 = np.uint64(0x00FF00FF00FF00FF)
    ones16 = np.uint64(0x0001000100010001)
    total = 0
    w = 0
    while w < nw:
        w1 = min(nw, w + 255)
        acc = np.uint64(0)
        for k in range(w, w1):
            acc += fw[k]
        pairs = (acc & lo8) + ((acc >> np.uint64(8)) & lo8)  # 4 lanes of 16 bits, ≤ 2040 each
        total += np.int64((pairs * ones16) >> np.uint64(48))
        w = w1
    for x in range(nw * 8, W):
        total += np.int64(fl[x])
    return total


@numba.njit(cache=True, nogil=True)
def _collect(flags, b0, dil, ylo, yhi, nw, W, cy, cx, nc):
    """Append (y, x) of the flagged pixels of a block's rows to cy, cx; new count.

    Branch-free within a word: every position is written and the count advances by its
    flag, so cy, cx need room for the flagged pixels plus 8."""
    for j in range(dil):
        y = b0 + j
        if y < ylo or y > yhi:
            continue
        fl = flags[j]
        fw = fl[: nw * 8].view(np.uint64)
        for w in range(nw + 1):
            if w < nw and fw[w] == 0:
                continue
            x0 = w * 8
            x1 = x0 + 8 if w < nw else W
            for x in range(x0, x1):
                cy[nc] = y
                cx[nc] = x
                nc += np.int64(fl[x])
    return nc


@numba.njit(cache=True, nogil=True)
def _maxima(q, thr_p, dil, margin, hm, rowu, flags, vh, vg):
    """Step 4: local maxima of q (grey dilation, zero outside) above thr_p, away from the edge.

    The dilation is separable: a horizontal max filter (:func:`_hmax`), then a vertical one
    by van Herk / Gil-Werman: rows (zero-padded to rows ``-lo .. H-1+hi``) are cut into
    blocks of ``dil``; the window of output row ``y`` spans extended rows ``y .. y+dil-1``,
    i.e. the tail of block ``k = y // dil`` and the head of block ``k + 1``, so its maximum
    is max(suffix max of block ``k`` at ``y``, prefix max of block ``k + 1`` at
    ``y + dil - 1``): three row operations per row instead of ``dil``, in two ``dil``-row
    buffers (``vh``, ``vg``) that stay in cache. Max is exact, so the maxima are the same.

    Returns (ys, xs) int64 in raster order."""
    H, W = q.shape
    _hmax(q, dil, hm, rowu)
    lo = dil // 2 - (0 if dil % 2 else 1)
    # q > thr_p  <=>  q > floor(thr_p) for integer q
    ti = int(math.floor(thr_p)) if thr_p >= 0 else -1
    if ti >= 255:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    tu = np.uint8(ti + 1)  # q >= tu
    cap = 1024
    cy = np.empty(cap, np.int64)
    cx = np.empty(cap, np.int64)
    nc = 0
    xlo = 0
    while xlo < margin:
        xlo += 1
    xhi = W - 1
    while xhi > W - margin - 1:
        xhi -= 1
    ylo = 0
    while ylo < margin:
        ylo += 1
    yhi = H - 1
    while yhi > H - margin - 1:
        yhi -= 1
    if yhi < ylo or xhi < xlo:  # the margins leave no pixel (a frame narrower than 2·margin + 1)
        return cy[:0], cx[:0]
    nw = W // 8
    for kb in range(ylo // dil, yhi // dil + 1):
        b0 = kb * dil  # first extended row of block kb
        # suffix maxima of block kb: vh[j] = max of extended rows b0+j .. b0+dil-1
        for j in range(dil - 1, -1, -1):
            d = vh[j]
            if j == dil - 1:
                for x in range(W):
                    d[x] = 0
            else:
                nx_ = vh[j + 1]
                for x in range(W):
                    d[x] = nx_[x]
            _vh_row(hm, b0 + j, lo, H, d)
        # prefix maxima of block kb+1: vg[j] = max of extended rows b0+dil .. b0+dil+j
        for j in range(dil):
            d = vg[j]
            if j == 0:
                for x in range(W):
                    d[x] = 0
            else:
                pv = vg[j - 1]
                for x in range(W):
                    d[x] = pv[x]
            _vh_row(hm, b0 + dil + j, lo, H, d)
        # flags of the block's rows first, then the scan: reading a row's flags as 64-bit
        # words right after writing them byte by byte stalls on store-to-load forwarding.
        # Flags in the side margins are cleared, so the count and the scan need no bounds.
        for j in range(dil):
            y = b0 + j
            if y < ylo or y > yhi:
                continue
            qy = q[y]
            hv = vh[j]
            fl = flags[j]
            if j == 0:
                for x in range(W):
                    v = qy[x]
                    fl[x] = np.uint8(1) if (v >= tu) & (v == hv[x]) else np.uint8(0)
            else:
                gv = vg[j - 1]
                for x in range(W):
                    v = qy[x]
                    a = hv[x]
                    b = gv[x]
                    m = a if a > b else b
                    fl[x] = np.uint8(1) if (v >= tu) & (v == m) else np.uint8(0)
            for x in range(xlo):  # 0 ≤ xlo ≤ xhi < W here
                fl[x] = 0
            for x in range(xhi + 1, W):
                fl[x] = 0
        # grow the candidate arrays once per block (not inside the scan)
        nb = 0
        for j in range(dil):
            y = b0 + j
            if y < ylo or y > yhi:
                continue
            nb += _count_flags(flags[j], nw, W)
        if nb == 0:
            continue
        if nc + nb + 8 > cap:
            while nc + nb + 8 > cap:
                cap *= 2
            ny = np.empty(cap, np.int64)
            nx = np.empty(cap, np.int64)
            ny[:nc] = cy[:nc]
            nx[:nc] = cx[:nc]
            cy = ny
            cx = nx
        nc = _collect(flags, b0, dil, ylo, yhi, nw, W, cy, cx, nc)
    return cy[:nc], cx[:nc]


#: Position refinement modes of :func:`locate_frame` (``refine``).
REFINE_TRACKPY = 0  # trackpy's centroid on the 8-bit image q (integer mask moves)
REFINE_FLOAT = 1  # the same centroid iteration on the float band-passed image bp
REFINE_GAUSS = 2  # Gaussian-weighted centroid on bp, the weight re-centred sub-pixel until converged


#: Largest mask side (2·radius + 1) that :func:`_mask_sums16` handles (16 bytes per row,
#: and its 16-bit lanes cannot overflow: column sums ≤ 255·15, row-weighted ≤ 255·7·15).
_SWAR_SIDE = 15


@numba.njit(cache=True, nogil=True, inline="always")
def _mask_sums16(qw, base, W, n, mlo, mhi):
    """Mass, row- and column-weighted sums of q over the circular mask at flat offset ``base``.

    SWAR (SIMD within a register): each mask row is read as 16 bytes (three aligned 64-bit
    words of ``qw``, the buffer behind q, funnel-shifted; byte order little-endian), ANDed
    with the row's column mask (``mlo``, ``mhi``: byte j set to 0xFF for mask columns), split into even and
    odd bytes as four 16-bit lanes per word, and accumulated lane-wise: column sums and
    row-index-weighted sums for 16 columns at once, no branches. The totals are the same
    integers as the pixel-by-pixel sums (``n ≤ _SWAR_SIDE``, so no lane overflows).

    Returns
    -------
    imass, sY, sX : int64
        Σ q, Σ q·i and Σ q·j over the mask (i, j: row and column within the square).
    """
    lo8 = np.uint64(0x00FF00FF00FF00FF)
    s8 = np.uint64(8)
    one = np.uint64(1)
    c0 = np.uint64(0)
    c1 = np.uint64(0)
    c2 = np.uint64(0)
    c3 = np.uint64(0)
    y0 = np.uint64(0)
    y1 = np.uint64(0)
    y2 = np.uint64(0)
    y3 = np.uint64(0)
    for i in range(n):
        b = base + i * W
        k = b >> 3
        o = np.uint64((b & 7) * 8)
        sh = np.uint64(63) - o
        u0 = qw[k]
        u1 = qw[k + 1]
        u2 = qw[k + 2]
        a0 = ((u0 >> o) | ((u1 << sh) << one)) & mlo[i]  # columns 0-7 (byte j = column j)
        a1 = ((u1 >> o) | ((u2 << sh) << one)) & mhi[i]  # columns 8-15
        e0 = a0 & lo8
        o0 = (a0 >> s8) & lo8
        e1 = a1 & lo8
        o1 = (a1 >> s8) & lo8
        ii = np.uint64(i)
        c0 += e0
        c1 += o0
        c2 += e1
        c3 += o1
        y0 += e0 * ii
        y1 += o0 * ii
        y2 += e1 * ii
        y3 += o1 * ii
    # 16-bit lane k of c0 holds column 2k, of c1 column 2k+1, of c2 column 8+2k, of c3 9+2k
    m16 = np.uint64(0xFFFF)
    imass = 0
    sY = 0
    sX = 0
    for k in range(4):
        sk = np.uint64(16 * k)
        v0 = np.int64((c0 >> sk) & m16)
        v1 = np.int64((c1 >> sk) & m16)
        v2 = np.int64((c2 >> sk) & m16)
        v3 = np.int64((c3 >> sk) & m16)
        imass += v0 + v1 + v2 + v3
        sX += v0 * (2 * k) + v1 * (2 * k + 1) + v2 * (8 + 2 * k) + v3 * (9 + 2 * k)
        sY += (np.int64((y0 >> sk) & m16) + np.int64((y1 >> sk) & m16)
               + np.int64((y2 >> sk) & m16) + np.int64((y3 >> sk) & m16))
    return imass, sY, sX


@numba.njit(cache=True, nogil=True, inline="always")
def _mask_sums(q, sqY, sqX, n, row_lo, row_hi):
    """:func:`_mask_sums16` for any mask size, pixel by pixel (the mask's square at ``sqY, sqX``)."""
    sY = 0
    sX = 0
    imass = 0
    for i in range(n):
        if row_hi[i] < row_lo[i]:
            continue
        qrow = q[sqY + i][sqX + row_lo[i]:sqX + row_hi[i] + 1]
        rs = 0
        rx = 0
        for j in range(qrow.shape[0]):
            pv = np.int64(qrow[j])
            rs += pv
            rx += pv * j
        imass += rs
        sY += rs * i
        sX += rx + rs * row_lo[i]
    return imass, sY, sX


@numba.njit(cache=True, nogil=True, inline="always")
def _centroid_move(cnY, cnX, r, coordY, coordX, ub_y, ub_x, shift):
    """One step of trackpy's centroid iteration, shared by both refinements.

    ``cnY, cnX`` is the centroid in mask coordinates (centre at ``r``) of the mask at
    integer position ``coordY, coordX``. Returns the centroid in image coordinates, whether
    it lies within ``shift`` (0.6 px) of the mask centre on both axes (converged), and the
    mask position moved by one pixel along each axis whose offset exceeds ``shift``,
    clamped to ``[r, ub_y]`` × ``[r, ub_x]`` (px).
    """
    cm_iY = cnY - r + coordY
    cm_iX = cnX - r + coordX
    ocY = cnY - r
    ocX = cnX - r
    if abs(ocY) < shift and abs(ocX) < shift:
        return cm_iY, cm_iX, True, coordY, coordX
    if ocY > shift:
        coordY += 1
    elif ocY < -shift:
        coordY -= 1
    if ocX > shift:
        coordX += 1
    elif ocX < -shift:
        coordX -= 1
    coordY = min(max(coordY, r), ub_y)
    coordX = min(max(coordX, r), ub_x)
    return cm_iY, cm_iX, False, coordY, coordX


@numba.njit(cache=True, nogil=True)
def _refine_float(bp, coordY, coordX, r, row_lo, row_hi, max_iterations):
    """trackpy's centroid iteration (circular mask, moves by whole pixels), on float ``bp``."""
    H, W = bp.shape
    shift = 0.6
    cm_iY = float(coordY)
    cm_iX = float(coordX)
    for it in range(max_iterations):
        sqY = coordY - r
        sqX = coordX - r
        sY = 0.0
        sX = 0.0
        m = 0.0
        for i in range(2 * r + 1):
            if row_hi[i] < row_lo[i]:
                continue
            brow = bp[sqY + i]
            for j in range(row_lo[i], row_hi[i] + 1):
                pv = float(brow[sqX + j])
                m += pv
                sY += pv * i
                sX += pv * j
        if m > 0:
            cnY = sY / m
            cnX = sX / m
        else:
            cnY = float(r)
            cnX = float(r)
        cm_iY, cm_iX, done, coordY, coordX = _centroid_move(cnY, cnX, r, coordY, coordX, H - r - 1, W - r - 1, shift)
        if done:
            break
    return cm_iY, cm_iX


@numba.njit(cache=True, nogil=True)
def _refine_gauss(bp, y, x, r, s, max_iterations):
    """Gaussian-mask centroid on float ``bp`` (Thompson, Larson & Webb 2002, Biophys. J. 82, 2775).

    Iterates ``p ← Σ p_i b_i g(p_i − p) / Σ b_i g(p_i − p)``, ``g`` a Gaussian of σ = ``s``,
    over the (2r+1)² square around the rounded estimate, until the step is < 1e-4 px. The
    weight is centred on the estimate itself (not on a pixel), so no pixel is favoured; for
    a symmetric spot the fixed point is its centre. Returns the start point if the weights
    vanish or the estimate leaves the image."""
    H, W = bp.shape
    inv2s2 = 1.0 / (2.0 * s * s)
    y0 = y
    x0 = x
    for it in range(max_iterations):
        iy = int(math.floor(y + 0.5))
        ix = int(math.floor(x + 0.5))
        if iy - r < 0 or ix - r < 0 or iy + r > H - 1 or ix + r > W - 1:
            return y0, x0
        m = 0.0
        sY = 0.0
        sX = 0.0
        for yy in range(iy - r, iy + r + 1):
            dy = yy - y
            brow = bp[yy]
            for xx in range(ix - r, ix + r + 1):
                pv = float(brow[xx])
                if pv <= 0.0:
                    continue
                dx = xx - x
                w = pv * math.exp(-(dx * dx + dy * dy) * inv2s2)
                m += w
                sY += w * yy
                sX += w * xx
        if not (m > 0.0):
            return y0, x0
        ny = sY / m
        nx = sX / m
        step = abs(ny - y) + abs(nx - x)
        y = ny
        x = nx
        if step < 1e-4:
            break
    if abs(y - y0) > r or abs(x - x0) > r:
        return y0, x0
    return y, x


@numba.njit(cache=True, nogil=True)
def locate_frame(frame, bg, has_bg, invert, gk, diameter, separation, dil, margin,
                 my, mx, r2m, cm, sm, minmass, maxsize, percentile, max_iterations, scratch,
                 refine=0, gauss_sigma=1.6):
    """Locate the particles of one frame (trackpy's algorithm; see the module docstring).

    Parameters
    ----------
    frame : ndarray, (H, W), uint8 / uint16 / float32 / float64, C-contiguous
        Frame as recorded (or already background-subtracted, with ``has_bg`` False).
    bg : ndarray, (H, W) float32
        Background, counts (ignored unless ``has_bg``; pass any 2-D float32 array then).
    has_bg, invert : bool
        Subtract ``bg``; negate (dark particles on a bright field).
    gk : ndarray, (9,) float32
        Gaussian kernel, σ = 1 px, truncated at 4σ (:func:`gaussian_kernel`).
    diameter : int
        Odd feature diameter = boxcar width, px.
    separation : float
        Minimum separation between features, px (trackpy default ``diameter + 1``).
    dil : int
        Side of the dilation square (:func:`dilation_size`).
    margin : float
        Edge exclusion, px: ``max(radius, separation // 2 − 1, diameter // 2)``.
    my, mx, r2m, cm, sm : ndarray
        Mask tables (:func:`mask_tables`).
    minmass : float
        Keep features with mass > minmass (counts, the band-passed image's units).
    maxsize : float
        Keep features with size < maxsize, px (``inf`` for no limit).
    percentile : float
        Peak threshold percentile (64).
    max_iterations : int
        Centroid iterations (10).
    scratch : tuple
        From :func:`make_scratch` for this frame shape (not shared between threads).
    refine : int
        Position refinement: ``REFINE_TRACKPY`` (0, trackpy's centroid on the 8-bit image),
        ``REFINE_FLOAT`` (1, the same iteration on the float band-passed image) or
        ``REFINE_GAUSS`` (2, Gaussian-mask centroid on the float band-passed image,
        re-centred sub-pixel). Mass, size, ecc and signal are trackpy's in every mode
        (so ``minmass`` keeps its meaning); only y, x change.
    gauss_sigma : float
        σ of the Gaussian weight for ``REFINE_GAUSS``, px.

    Returns
    -------
    ndarray, (n, 7) float64
        Per feature: y, x (px, origin at the centre of pixel (0, 0)), mass (counts),
        size (radius of gyration, px), ecc, signal (counts), raw_mass (counts in the
        raw image); in trackpy's row order.
    """
    th, tb, bp, q, hm, pe, vh, ga, ba, rowu, vg, qw = scratch
    H, W = frame.shape
    r = diameter // 2
    out = np.empty((0, 7), np.float64)
    bmax = _bandpass(frame, bg, has_bg, invert, gk, diameter, th, tb, bp, pe, ga)
    scale = 255.0 / float(bmax) if bmax > 0 else 1.0
    hist = _quantize(bp, scale, q)
    thr_p = _percentile_threshold(hist, percentile)
    if not (thr_p == thr_p):  # NaN: the band-passed image is black
        return out
    cy, cx = _maxima(q, thr_p, dil, margin, hm, rowu, ba, vh, vg)
    nc = cy.shape[0]
    if nc == 0:
        return out
    # ---- 5. centroid refinement and characterization ----------------------------------
    # mask rows: row i of the (2r+1)² square spans columns row_lo[i] .. row_hi[i]
    row_lo = np.full(2 * r + 1, 2 * r + 1, np.int64)
    row_hi = np.full(2 * r + 1, -1, np.int64)
    nm = my.shape[0]
    for i in range(nm):
        if mx[i] < row_lo[my[i]]:
            row_lo[my[i]] = mx[i]
        if mx[i] > row_hi[my[i]]:
            row_hi[my[i]] = mx[i]
    swar = 2 * r + 1 <= _SWAR_SIDE
    mlo = np.zeros(2 * r + 1, np.uint64)
    mhi = np.zeros(2 * r + 1, np.uint64)
    if swar:
        for i in range(2 * r + 1):
            for j in range(max(0, row_lo[i]), min(16, row_hi[i] + 1)):
                if j < 8:
                    mlo[i] |= np.uint64(0xFF) << np.uint64(8 * j)
                else:
                    mhi[i] |= np.uint64(0xFF) << np.uint64(8 * (j - 8))
    res = np.empty((nc, 7), np.float64)
    passing = np.ones(nc, np.bool_)
    shift = 0.6
    ub_y = H - r - 1
    ub_x = W - r - 1
    for f in range(nc):
        coordY = cy[f]
        coordX = cx[f]
        cm_iY = 0.0
        cm_iX = 0.0
        imass = 0
        sqY = coordY - r
        sqX = coordX - r
        for it in range(max_iterations):
            sqY = coordY - r
            sqX = coordX - r
            # integer sums: exact, hence bit-identical to trackpy's float sums of uint8 values
            if swar:
                imass, sY, sX = _mask_sums16(qw, sqY * W + sqX, W, 2 * r + 1, mlo, mhi)
            else:
                imass, sY, sX = _mask_sums(q, sqY, sqX, 2 * r + 1, row_lo, row_hi)
            mass_ = float(imass)
            if imass > 0:
                cnY = float(sY) / mass_
                cnX = float(sX) / mass_
            else:
                cnY = float(r)
                cnX = float(r)
            cm_iY, cm_iX, done, coordY, coordX = _centroid_move(cnY, cnX, r, coordY, coordX, ub_y, ub_x, shift)
            if done:
                break
        mass_ = float(imass)
        res[f, 0] = cm_iY
        res[f, 1] = cm_iX
        res[f, 2] = mass_
        # mass filter before characterization and duplicates: exact (see step 6)
        if not (mass_ / scale > minmass):
            passing[f] = False
            continue
        # position refinement other than trackpy's (mass etc. stay trackpy's, on q)
        if refine == REFINE_FLOAT:
            res[f, 0], res[f, 1] = _refine_float(bp, cy[f], cx[f], r, row_lo, row_hi, max_iterations)
        elif refine == REFINE_GAUSS:
            res[f, 0], res[f, 1] = _refine_gauss(bp, cm_iY, cm_iX, r, gauss_sigma, 100)
        rg = 0.0
        e1 = 0.0
        e2 = 0.0
        sig = 0.0
        raw = 0.0
        for i in range(nm):
            yy = sqY + my[i]
            xx = sqX + mx[i]
            px = float(q[yy, xx])
            rg += r2m[i] * px
            e1 += cm[i] * px
            e2 += sm[i] * px
            if has_bg:
                rv = np.float32(frame[yy, xx]) - bg[yy, xx]
            else:
                rv = np.float32(frame[yy, xx])
            if invert:
                rv = -rv
            raw += rv
            if px > sig:
                sig = px
        res[f, 3] = math.sqrt(rg / mass_) if mass_ > 0 else np.nan
        centre = float(q[sqY + r, sqX + r])
        res[f, 4] = math.sqrt(e1 * e1 + e2 * e2) / (mass_ - centre + 1e-6)
        res[f, 5] = sig
        res[f, 6] = raw
    # ---- 6. duplicates (where_close), then mass and size filters ----------------------
    # trackpy drops duplicates among all refined candidates, then applies mass > minmass.
    # A candidate with mass <= minmass never changes the outcome: of a close pair the one of
    # lower mass is dropped, so a sub-threshold candidate can only drop one of still lower
    # mass (itself filtered anyway), and of an equal-mass pair both pass or both fail. Pairs
    # are judged independently (a dropped feature still drops its weaker neighbours). So
    # candidates failing the mass filter are left out of the pair search and were not
    # characterized (step 5): same output, while in a noisy frame they are ~99 % of the
    # candidates and the pair search over them was the locator's largest cost.
    idx = np.nonzero(passing)[0]
    npass = idx.shape[0]
    keep = passing.copy()
    if separation > 0 and npass > 1:
        order = idx[np.argsort(res[idx, 0])]
        lim = 1.0 - 1e-7
        for a in range(npass):
            i = order[a]
            yi = res[i, 0] / separation
            xi = res[i, 1] / separation
            for bb in range(a + 1, npass):
                j = order[bb]
                yj = res[j, 0] / separation
                if yj - yi > lim:
                    break
                xj = res[j, 1] / separation
                dy = yj - yi
                dx = xj - xi
                if math.sqrt(dy * dy + dx * dx) <= lim:
                    # trackpy orders the pair (lower index first)
                    i0 = i if i < j else j
                    i1 = j if i < j else i
                    m0 = res[i0, 2]
                    m1 = res[i1, 2]
                    if m0 > m1:
                        keep[i1] = False
                    elif m0 < m1:
                        keep[i0] = False
                    else:
                        s0 = res[i0, 0] / separation + res[i0, 1] / separation
                        s1 = res[i1, 0] / separation + res[i1, 1] / separation
                        if s0 > s1:
                            keep[i1] = False
                        else:
                            keep[i0] = False
    n_out = 0
    for f in range(nc):
        if keep[f]:
            res[f, 2] /= scale
            res[f, 5] /= scale
            if not (res[f, 2] > minmass and res[f, 3] < maxsize):
                keep[f] = False
            else:
                n_out += 1
    out = np.empty((n_out, 7), np.float64)
    k = 0
    for f in range(nc):
        if keep[f]:
            for c in range(7):
                out[k, c] = res[f, c]
            k += 1
    return out


@numba.njit(cache=True, nogil=True)
def locate_block(frames, i0, i1, bg, has_bg, invert, gk, diameter, separation, dil, margin,
                 my, mx, r2m, cm, sm, minmass, maxsize, percentile, max_iterations, scratch,
                 refine=0, gauss_sigma=1.6):
    """:func:`locate_frame` on frames ``i0 .. i1 - 1`` of ``frames`` in one call.

    One call per block instead of per frame: the calling thread takes the GIL twice per
    block, not per frame, so the locator's threads wait less for a Python thread running
    beside them (the streaming linker of :class:`nta.link.StreamLinker`).

    Parameters
    ----------
    frames : ndarray, (n, H, W), C-contiguous
        Frames as :func:`locate_frame` takes them one by one.
    i0, i1 : int
        The block, ``0 ≤ i0 ≤ i1 ≤ n``.
    bg .. gauss_sigma
        As :func:`locate_frame`.

    Returns
    -------
    features : ndarray, (m, 7) float64
        The features of every frame of the block, frame after frame (columns as
        :func:`locate_frame`).
    counts : ndarray, (i1 - i0,) int64
        Features per frame.
    """
    nb = i1 - i0
    counts = np.zeros(nb, np.int64)
    parts = []
    total = 0
    for k in range(nb):
        o = locate_frame(frames[i0 + k], bg, has_bg, invert, gk, diameter, separation, dil, margin,
                         my, mx, r2m, cm, sm, minmass, maxsize, percentile, max_iterations, scratch,
                         refine, gauss_sigma)
        parts.append(o)
        counts[k] = o.shape[0]
        total += o.shape[0]
    out = np.empty((total, 7), np.float64)
    j = 0
    for k in range(nb):
        o = parts[k]
        for a in range(o.shape[0]):
            for c in range(7):
                out[j, c] = o[a, c]
            j += 1
    return out, counts


@numba.njit(cache=True, nogil=True)
def median_u8_rows(frames, r0, r1, out):
    """Per-pixel median over frames of rows ``r0 .. r1-1`` of 8-bit frames, into ``out`` (float32).

    Exactly :func:`numpy.median` along axis 0 for integer input: the mean, in float64, of
    the order statistics ``(n-1)//2`` and ``n//2`` (equal for odd ``n``), found from a
    256-bin count per pixel instead of a sort (O(n) per pixel, and the counts of a row
    stay in cache).

    Parameters
    ----------
    frames : ndarray, (n, H, W) uint8
    r0, r1 : int
        Row range.
    out : ndarray, (H, W) float32
        Receives the medians (counts) of rows ``r0 .. r1-1``.
    """
    n, H, W = frames.shape
    lo = (n - 1) // 2
    hi = n // 2
    T = 64  # pixels per tile: their counts (64 KB) stay in cache
    cnt = np.zeros((T, 256), np.int32)
    for y in range(r0, r1):
        oy = out[y]
        for x0 in range(0, W, T):
            x1 = min(W, x0 + T)
            for k in range(n):
                fk = frames[k, y]
                for x in range(x0, x1):
                    cnt[x - x0, fk[x]] += 1
            for x in range(x0, x1):
                c = cnt[x - x0]
                acc = 0
                a = -1
                b = -1
                for v in range(256):
                    acc += c[v]
                    if a < 0 and acc > lo:
                        a = v
                    if acc > hi:
                        b = v
                        break
                oy[x] = (np.float64(a) + np.float64(b)) / 2.0
                for v in range(256):
                    c[v] = 0
    return out


@numba.njit(cache=True, nogil=True)
def _select_key(keys, cnt, k):
    """k-th smallest (0-based) of uint32 ``keys``: radix select on 11 + 11 + 10 bits.

    ``cnt`` (2048,) holds the counts of the top 11 bits of ``keys`` on entry (scratch after)."""
    cur = keys
    prefix = np.uint32(0)
    for shift, bits in ((21, 11), (10, 11), (0, 10)):
        mask = np.uint32((1 << bits) - 1)
        if shift != 21:
            cnt[:] = 0
            for i in range(cur.size):
                cnt[(cur[i] >> np.uint32(shift)) & mask] += 1
        b = 0
        while k >= cnt[b]:
            k -= cnt[b]
            b += 1
        prefix |= np.uint32(b) << np.uint32(shift)
        if shift == 0:
            break
        nxt = np.empty(cnt[b], np.uint32)
        j = 0
        for i in range(cur.size):
            if (cur[i] >> np.uint32(shift)) & mask == b:
                nxt[j] = cur[i]
                j += 1
        cur = nxt
    return prefix


@numba.njit(cache=True, nogil=True)
def median_f32(bits):
    """:func:`numpy.median` of float32 values given as their bits (``a.view(np.uint32)``, 1-D).

    The order statistic ``(n-1)//2`` is found by radix selection (counting passes on 11, 11
    and 10 bits of an order-preserving key: O(n), no sort), ``n//2`` from one more pass
    (the same key, or the smallest key above it), and the two are combined as numpy does
    for float32: ``float32(a + b) / 2`` in float32. NaN if any value is NaN (as numpy),
    NaN for an empty array; −0.0 and +0.0 count as equal.

    Parameters
    ----------
    bits : ndarray, (n,) uint32
        The float32 values' bit patterns.

    Returns
    -------
    numpy.float32
        The median.
    """
    n = bits.size
    if n == 0:
        return np.float32(np.nan)
    keys = np.empty(n, np.uint32)
    cnt = np.zeros(2048, np.int64)
    sign = np.uint32(0x80000000)
    for i in range(n):
        u = bits[i]
        if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):  # NaN
            return np.float32(np.nan)
        if u == sign:  # -0.0 sorts with +0.0
            u = np.uint32(0)
        key = ~u if u & sign else u | sign  # order-preserving: negatives reversed, below positives
        keys[i] = key
        cnt[key >> np.uint32(21)] += 1
    ka = _select_key(keys, cnt, (n - 1) // 2)
    kb = ka
    if n % 2 == 0:
        le = 0  # keys ≤ ka, and the smallest key above ka
        above = np.uint32(0xFFFFFFFF)
        for i in range(n):  # branch-free (the comparisons are random on half the keys)
            key = keys[i]
            le += np.int64(key <= ka)
            above = min(above, key if key > ka else np.uint32(0xFFFFFFFF))
        if le <= n // 2:
            kb = above
    out = np.empty(2, np.uint32)
    out[0] = ka ^ sign if ka & sign else ~ka
    out[1] = kb ^ sign if kb & sign else ~kb
    f = out.view(np.float32)
    if n % 2:
        return f[0]
    s = np.float32(f[0] + f[1])
    return np.float32(s * np.float32(0.5))
