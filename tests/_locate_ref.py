"""Frozen copy of nta.kernels.locate as of commit 4d92326 (before the van Herk max filter and the
row-interleaved band-pass): the reference tests/test_locate_equal.py checks the current kernel
against, feature for feature. Not part of the package; do not edit."""


from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["locate_frame", "make_scratch", "gaussian_kernel", "mask_tables", "dilation_size", "N_COLUMNS"]

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
    return (
        np.empty((H, W), np.float32),  # th: horizontal Gaussian pass
        np.empty((H, W), np.float32),  # tb: horizontal boxcar sums
        np.empty((H, W), np.float32),  # bp: band-passed image
        np.empty((H, W), np.uint8),  # q: 8-bit image
        np.empty((H, W), np.uint8),  # hm: horizontal max filter of q
        np.empty(W + 128, np.float32),  # pz: padded row
        np.empty(W + 128, np.float32),  # pn: zero row
        np.empty(W, np.float64),  # ga: boxcar column sums
        np.empty(W, np.uint8),  # ba: candidate flags of a row
        np.empty(W, np.uint8),  # rowu: max-filter row
    )


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
def _bandpass(frame, bg, has_bg, invert, gk, diameter, th, tb, bp, pz, pn, acc):
    """Steps 1-2: raw image, band-pass into ``bp`` (float32, ≥ 1/255 or 0); returns max(bp)."""
    H, W = frame.shape
    r = diameter // 2
    P = 64
    g0 = gk[0]
    g1 = gk[1]
    g2 = gk[2]
    g3 = gk[3]
    g4 = gk[4]
    # horizontal: 9-tap Gaussian (zeros outside) and boxcar running sum (edges repeated)
    for y in range(H):
        fy = frame[y]
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
        for k in range(8):
            pz[P - 8 + k] = 0.0
            pz[P + W + k] = 0.0
        p0 = pz[P - 4:P - 4 + W]
        p1 = pz[P - 3:P - 3 + W]
        p2 = pz[P - 2:P - 2 + W]
        p3 = pz[P - 1:P - 1 + W]
        p5 = pz[P + 1:P + 1 + W]
        p6 = pz[P + 2:P + 2 + W]
        p7 = pz[P + 3:P + 3 + W]
        p8 = pz[P + 4:P + 4 + W]
        thy = th[y]
        for x in range(W):
            thy[x] = g4 * pzc[x] + g3 * (p3[x] + p5[x]) + g2 * (p2[x] + p6[x]) + g1 * (p1[x] + p7[x]) + g0 * (p0[x] + p8[x])
        # boxcar: running sum in float64, edge pixels repeated
        e0 = pzc[0]
        e1 = pzc[W - 1]
        s = 0.0
        for k in range(-r, r + 1):
            kk = k if k > 0 else 0
            s += pzc[kk] if kk < W else e1
        tby = tb[y]
        tby[0] = s
        for x in range(1, W):
            xin = x + r
            xout = x - r - 1
            vin = pzc[xin] if xin < W else e1
            vout = pzc[xout] if xout >= 0 else e0
            s += vin - vout
            tby[x] = s
    # vertical: 9-tap Gaussian (zero rows outside), boxcar running column sums (edges repeated)
    inv_box = 1.0 / (diameter * diameter)
    thr = np.float32(1.0 / 255.0)
    zero = pn[P:P + W]
    for x in range(W):
        zero[x] = 0.0
    for x in range(W):
        acc[x] = 0.0
    for k in range(-r, r + 1):
        kk = k if k > 0 else 0
        if kk > H - 1:
            kk = H - 1
        row = tb[kk]
        for x in range(W):
            acc[x] += row[x]
    bmax = np.int32(0)
    for y in range(H):
        if y > 0:
            yin = y + r
            if yin > H - 1:
                yin = H - 1
            yout = y - r - 1
            if yout < 0:
                yout = 0
            rin = tb[yin]
            rout = tb[yout]
            for x in range(W):
                acc[x] += rin[x] - rout[x]
        r0 = th[y - 4] if y - 4 >= 0 else zero
        r1 = th[y - 3] if y - 3 >= 0 else zero
        r2 = th[y - 2] if y - 2 >= 0 else zero
        r3 = th[y - 1] if y - 1 >= 0 else zero
        r4 = th[y]
        r5 = th[y + 1] if y + 1 < H else zero
        r6 = th[y + 2] if y + 2 < H else zero
        r7 = th[y + 3] if y + 3 < H else zero
        r8 = th[y + 4] if y + 4 < H else zero
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
    """Step 3: q = trunc(scale · bp) as uint8; returns the histogram of q (256,) int64."""
    H, W = bp.shape
    h0 = np.zeros(256, np.int64)
    h1 = np.zeros(256, np.int64)
    for y in range(H):
        bpy = bp[y]
        qy = q[y]
        for x in range(W):
            qy[x] = np.uint8(np.int32(scale * np.float64(bpy[x])))
        for x in range(0, W - 1, 2):
            h0[qy[x]] += 1
            h1[qy[x + 1]] += 1
        if W % 2:
            h0[qy[W - 1]] += 1
    return h0 + h1


@numba.njit(cache=True, nogil=True)
def _hmax(q, dil, hm, rowu):
    """Horizontal max filter of q over offsets -lo .. dil-1-lo (zero outside) into hm."""
    H, W = q.shape
    lo = dil // 2 - (0 if dil % 2 else 1)  # scipy's origin for even sides
    hi = dil - 1 - lo
    for y in range(H):
        qy = q[y]
        for x in range(W):
            rowu[x] = 0
        for k in range(-lo, hi + 1):
            if k >= 0:
                if k >= W:
                    continue
                src = qy[k:W]
                dst = rowu[0:W - k]
            else:
                if -k >= W:
                    continue
                src = qy[0:W + k]
                dst = rowu[-k:W]
            n = src.shape[0]
            for x in range(n):
                a = dst[x]
                b = src[x]
                dst[x] = a if a > b else b
        hmy = hm[y]
        for x in range(W):
            hmy[x] = rowu[x]


@numba.njit(cache=True, nogil=True)
def _maxima(q, thr_p, dil, margin, hm, rowu, flags):
    """Step 4: local maxima of q (grey dilation, zero outside) above thr_p, away from the edge.

    Returns (ys, xs) int64 in raster order."""
    H, W = q.shape
    _hmax(q, dil, hm, rowu)
    lo = dil // 2 - (0 if dil % 2 else 1)
    hi = dil - 1 - lo
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
    nw = W // 8
    fw = flags[: nw * 8].view(np.uint64)
    for y in range(H):
        if y < margin or y > H - margin - 1:
            continue
        for x in range(W):
            rowu[x] = 0
        for k in range(-lo, hi + 1):
            yy = y + k
            if yy < 0 or yy >= H:
                continue
            src = hm[yy]
            for x in range(W):
                a = rowu[x]
                b = src[x]
                rowu[x] = a if a > b else b
        qy = q[y]
        for x in range(W):
            v = qy[x]
            flags[x] = np.uint8(1) if (v >= tu) & (v == rowu[x]) else np.uint8(0)
        for w in range(nw + 1):
            if w < nw and fw[w] == 0:
                continue
            x0 = w * 8
            x1 = x0 + 8 if w < nw else W
            for x in range(x0, x1):
                if flags[x] and x >= xlo and x <= xhi:
                    if nc == cap:
                        cap *= 2
                        ny = np.empty(cap, np.int64)
                        nx = np.empty(cap, np.int64)
                        ny[:nc] = cy[:nc]
                        nx[:nc] = cx[:nc]
                        cy = ny
                        cx = nx
                    cy[nc] = y
                    cx[nc] = x
                    nc += 1
    return cy[:nc], cx[:nc]


#: Position refinement modes of :func:`locate_frame` (``refine``).
REFINE_TRACKPY = 0  # trackpy's centroid on the 8-bit image q (integer mask moves)
REFINE_FLOAT = 1  # the same centroid iteration on the float band-passed image bp
REFINE_GAUSS = 2  # Gaussian-weighted centroid on bp, the weight re-centred sub-pixel until converged


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
        cm_iY = cnY - r + coordY
        cm_iX = cnX - r + coordX
        ocY = cnY - r
        ocX = cnX - r
        if abs(ocY) < shift and abs(ocX) < shift:
            break
        if ocY > shift:
            coordY += 1
        elif ocY < -shift:
            coordY -= 1
        if ocX > shift:
            coordX += 1
        elif ocX < -shift:
            coordX -= 1
        coordY = min(max(coordY, r), H - r - 1)
        coordX = min(max(coordX, r), W - r - 1)
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
    th, tb, bp, q, hm, pz, pn, ga, ba, rowu = scratch
    H, W = frame.shape
    r = diameter // 2
    out = np.empty((0, 7), np.float64)
    bmax = _bandpass(frame, bg, has_bg, invert, gk, diameter, th, tb, bp, pz, pn, ga)
    scale = 255.0 / float(bmax) if bmax > 0 else 1.0
    hist = _quantize(bp, scale, q)
    thr_p = _percentile_threshold(hist, percentile)
    if not (thr_p == thr_p):  # NaN: the band-passed image is black
        return out
    cy, cx = _maxima(q, thr_p, dil, margin, hm, rowu, ba)
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
            sY = 0
            sX = 0
            imass = 0
            for i in range(2 * r + 1):
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
            mass_ = float(imass)
            if imass > 0:
                cnY = float(sY) / mass_
                cnX = float(sX) / mass_
            else:
                cnY = float(r)
                cnX = float(r)
            cm_iY = cnY - r + coordY
            cm_iX = cnX - r + coordX
            ocY = cnY - r
            ocX = cnX - r
            if abs(ocY) < shift and abs(ocX) < shift:
                break
            if ocY > shift:
                coordY += 1
            elif ocY < -shift:
                coordY -= 1
            if ocX > shift:
                coordX += 1
            elif ocX < -shift:
                coordX -= 1
            if coordY < r:
                coordY = r
            if coordX < r:
                coordX = r
            if coordY > ub_y:
                coordY = ub_y
            if coordX > ub_x:
                coordX = ub_x
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
