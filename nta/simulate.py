"""Synthetic NTA videos with known ground truth: Brownian particles in a light sheet.

The simulator is the project's own reference: it writes videos in the formats real
instruments write (uncompressed 8-bit grey AVI as NanoSight writes it, multi-page TIFF
stacks, optionally H.264 MP4) together with a ``<stem>.truth.json`` file that states every
parameter and the true size distribution of the particles the camera saw, so the whole
pipeline (locate → link → diffusion → distribution) can be checked end to end.

Model (each rule is restated in :func:`simulate_video`):

* Spheres diffuse in 3-D with the Stokes–Einstein coefficient D = k_B T / (3 π η d)
  (:func:`nta.calibration.stokes_einstein_diffusion`) in a box: the field of view plus a
  margin in x and y, and a depth in z larger than the range over which any particle is
  visible. A uniform flow (drift) carries all particles.
* A particle leaving the box is replaced by a new particle (new identity, same
  diameter) entering through the opposite face at a random position on that face, so the
  number density and the size composition in the box stay constant while particles
  enter and leave the light sheet and the field of view, as in a real sample.
* The light sheet has a Gaussian (or top-hat) intensity profile in z; scattering is
  Rayleigh-like, ∝ d⁶; spots are Gaussian PSFs integrated over the exposure (motion
  blur), on a static uneven background with hot pixels and dust, with Poisson shot
  noise, Gaussian read noise and an 8-bit camera that saturates at 255.

Intended command line (the CLI is a thin layer over :func:`simulate_video`)::

    nta simulate OUT.avi --sizes 100 --frames 300 --seed 0
    nta simulate mix.tif --sizes 70 130 --fractions 0.5 0.5 --size-cv 0.05 \\
        --frames 200 --width 320 --height 240 --fps 25 --pixel-size 0.166 \\
        --exposure 30 --temperature 22 --drift 3 0 --particles 50 --overwrite

Examples
--------
>>> from nta.simulate import simulate_video
>>> truth = simulate_video("mono.avi", sizes_nm=(100.0,), n_frames=100)   # doctest: +SKIP
>>> truth["true_median_nm"]                                                # doctest: +SKIP
100.0
"""

from __future__ import annotations

import json
import math
import os
import secrets
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.special import erf

from .calibration import stokes_einstein_diffusion, water_viscosity
from .errors import CalibrationError, InputError, OutputError, OutputExistsError

__all__ = ["simulate_video", "simulate_positions", "truth_path_for", "SUPPORTED_SUFFIXES"]

#: Output formats, chosen by the file suffix.
SUPPORTED_SUFFIXES = (".avi", ".tif", ".tiff", ".mp4")

#: Reference diameter for the brightness scale, nm: ``brightness`` is the peak of a
#: particle of this size in focus at the centre of the sheet.
REFERENCE_DIAMETER_NM = 100.0

#: Size window for ``true_window_fraction``, nm (inclusive).
WINDOW_NM = (40.0, 150.0)

#: A particle whose integrated signal falls below this many counts is not drawn at all
#: (it would add less than one count to the whole image).
_RENDER_MASS = 1.0

_DEFAULTS = dict(
    sizes_nm=(100.0,),
    fractions=None,
    size_cv=0.0,
    n_frames=300,
    width=640,
    height=480,
    fps=25.0,
    pixel_size_um=0.166,
    exposure_ms=None,
    temperature_c=22.0,
    viscosity_mpas=None,
    particles_per_frame=40.0,
    sheet_thickness_um=4.0,
    sheet_profile="gaussian",
    drift_px_per_frame=(3.0, 0.0),
    psf_sigma_px=1.6,
    brightness=400.0,
    min_visible_mass=150.0,
    background=15.0,
    read_noise=1.5,
    n_substeps=10,
    truth_min_frames=5,
    seed=0,
)


# --------------------------------------------------------------------------- parameters


def _check_params(p: dict) -> dict:
    """Validate and normalise the simulation parameters (returns a new dict)."""
    p = dict(p)
    sizes = np.atleast_1d(np.asarray(p["sizes_nm"], dtype=float))
    if sizes.ndim != 1 or sizes.size == 0 or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise CalibrationError(f"sizes_nm must be one or more positive diameters in nm, got {p['sizes_nm']!r}", fix="e.g. --sizes 70 130")
    if p["fractions"] is None:
        fr = np.full(sizes.size, 1.0 / sizes.size)
    else:
        fr = np.atleast_1d(np.asarray(p["fractions"], dtype=float))
        if fr.shape != sizes.shape or not np.all(np.isfinite(fr)) or np.any(fr < 0) or fr.sum() <= 0:
            raise CalibrationError(
                f"fractions {p['fractions']!r} must be one non-negative number per size ({sizes.size}) with a positive sum",
                fix="give one --fractions value per --sizes value",
            )
        fr = fr / fr.sum()
    p["sizes_nm"] = [float(s) for s in sizes]
    p["fractions"] = [float(f) for f in fr]

    def pos(name, lo=0.0, integer=False, allow_zero=False):
        v = p[name]
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise CalibrationError(f"{name} {p[name]!r} is not a number")
        if not math.isfinite(v) or v < lo or (v == lo and not allow_zero):
            raise CalibrationError(f"{name} must be {'≥' if allow_zero else '>'} {lo:g}, got {p[name]!r}")
        if integer:
            if v != int(v):
                raise CalibrationError(f"{name} must be a whole number, got {p[name]!r}")
            v = int(v)
        p[name] = v

    pos("size_cv", allow_zero=True)
    pos("n_frames", integer=True)
    pos("width", lo=8, integer=True, allow_zero=True)
    pos("height", lo=8, integer=True, allow_zero=True)
    pos("fps")
    pos("pixel_size_um")
    pos("particles_per_frame", allow_zero=True)
    pos("sheet_thickness_um")
    pos("psf_sigma_px")
    pos("brightness")
    pos("min_visible_mass")
    pos("background", allow_zero=True)
    pos("read_noise", allow_zero=True)
    pos("n_substeps", lo=1, integer=True, allow_zero=True)
    pos("truth_min_frames", lo=1, integer=True, allow_zero=True)
    t = float(p["temperature_c"])
    if not math.isfinite(t) or t <= -273.15:
        raise CalibrationError(f"temperature_c {p['temperature_c']!r} °C is impossible")
    p["temperature_c"] = t
    if p["viscosity_mpas"] is None:
        if not 0.0 <= t <= 100.0:
            raise CalibrationError(
                f"temperature {t:g} °C is outside liquid water, so the water viscosity formula does not apply",
                fix="give viscosity_mpas",
            )
        p["viscosity_mpas"] = float(water_viscosity(t))
        p["viscosity_source"] = "water formula (nta.calibration.water_viscosity)"
    else:
        pos("viscosity_mpas")
        p["viscosity_source"] = "given"
    frame_ms = 1000.0 / p["fps"]
    if p["exposure_ms"] is None:
        p["exposure_ms"] = 0.5 * frame_ms
    else:
        pos("exposure_ms")
        if p["exposure_ms"] > frame_ms * 1.0001:
            raise CalibrationError(
                f"exposure {p['exposure_ms']:g} ms is longer than the frame interval {frame_ms:.4g} ms",
                fix="shorten exposure_ms or lower fps",
            )
    drift = np.asarray(p["drift_px_per_frame"], dtype=float)
    if drift.shape != (2,) or not np.all(np.isfinite(drift)):
        raise CalibrationError(f"drift_px_per_frame must be two numbers (x, y) in px/frame, got {p['drift_px_per_frame']!r}")
    p["drift_px_per_frame"] = [float(drift[0]), float(drift[1])]
    if p["sheet_profile"] not in ("gaussian", "tophat"):
        raise CalibrationError(f"sheet_profile must be 'gaussian' or 'tophat', got {p['sheet_profile']!r}")
    p["seed"] = int(p["seed"])
    return p


class _Model:
    """Derived quantities of one simulation (box size, particle number, visibility)."""

    def __init__(self, p: dict):
        self.p = p
        self.px = p["pixel_size_um"]
        self.dt = 1.0 / p["fps"]  # s
        self.t_exp = p["exposure_ms"] * 1e-3  # s
        sizes = np.asarray(p["sizes_nm"])
        self.sigma_z = p["sheet_thickness_um"] / (2.0 * math.sqrt(2.0 * math.log(2.0)))  # µm (FWHM → σ)
        # integrated signal (counts) of a particle in focus at the sheet centre
        self.mass_ref = p["brightness"] * 2.0 * math.pi * p["psf_sigma_px"] ** 2
        d_max = float(sizes.max() * (1.0 + 4.0 * p["size_cv"]))
        d_min = float(sizes.min() / (1.0 + 4.0 * p["size_cv"]))
        D_max = stokes_einstein_diffusion(d_min, p["temperature_c"], p["viscosity_mpas"])  # µm²/s
        step_um = math.sqrt(2.0 * D_max * self.dt)  # RMS step per axis per frame
        # z half-depth of the box: beyond the range where the brightest particle is drawn at all
        z_draw = self.z_half_range(self.mass(d_max), _RENDER_MASS)
        self.z_half = max(z_draw, p["sheet_thickness_um"]) + max(2.0, 4.0 * step_um)
        # x, y margin around the field of view (px): PSF + blur + drift + a few steps
        drift = np.abs(p["drift_px_per_frame"])
        self.margin_px = math.ceil(4.0 * p["psf_sigma_px"] + 4.0 * step_um / self.px + 2.0 * drift.max()) + 4
        self.x_lo = -self.margin_px - 0.5
        self.x_hi = p["width"] - 0.5 + self.margin_px
        self.y_lo = -self.margin_px - 0.5
        self.y_hi = p["height"] - 0.5 + self.margin_px

    # -- optics -----------------------------------------------------------------------
    def mass(self, d_nm):
        """Integrated signal (counts) of a particle at the sheet centre: ∝ d⁶ (Rayleigh)."""
        return self.mass_ref * (np.asarray(d_nm, dtype=float) / REFERENCE_DIAMETER_NM) ** 6

    def sheet(self, z_um):
        """Relative light-sheet intensity at height z (µm), 1 at the centre."""
        z = np.asarray(z_um, dtype=float)
        if self.p["sheet_profile"] == "tophat":
            return (np.abs(z) <= 0.5 * self.p["sheet_thickness_um"]).astype(float)
        return np.exp(-0.5 * (z / self.sigma_z) ** 2)

    def z_half_range(self, mass, threshold):
        """Half-width in z (µm) over which ``mass × sheet(z) ≥ threshold``."""
        mass = np.asarray(mass, dtype=float)
        if self.p["sheet_profile"] == "tophat":
            out = np.where(mass >= threshold, 0.5 * self.p["sheet_thickness_um"], 0.0)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.where(mass > threshold, self.sigma_z * np.sqrt(2.0 * np.log(np.maximum(mass, threshold) / threshold)), 0.0)
        return float(out) if out.ndim == 0 else out

    # -- volume -----------------------------------------------------------------------
    @property
    def box_volume_um3(self):
        return (self.x_hi - self.x_lo) * (self.y_hi - self.y_lo) * self.px**2 * 2.0 * self.z_half

    @property
    def fov_area_um2(self):
        return self.p["width"] * self.p["height"] * self.px**2

    def detection_depth_um(self, diam):
        """Number-weighted mean over ``diam`` of the z-range (µm) in which each is visible."""
        return float(np.mean(np.minimum(2.0 * self.z_half_range(self.mass(diam), self.p["min_visible_mass"]), 2.0 * self.z_half)))


def _draw_diameters(p, n, rng):
    """n diameters (nm): exact number split by ``fractions``, log-normal spread ``size_cv``."""
    fr = np.asarray(p["fractions"])
    counts = np.floor(fr * n).astype(int)
    rest = n - counts.sum()
    if rest > 0:  # largest remainder
        order = np.argsort(-(fr * n - counts), kind="stable")
        counts[order[:rest]] += 1
    parts = []
    for size, c in zip(p["sizes_nm"], counts):
        if p["size_cv"] > 0:
            s2 = math.log1p(p["size_cv"] ** 2)
            parts.append(rng.lognormal(math.log(size) - 0.5 * s2, math.sqrt(s2), c))
        else:
            parts.append(np.full(c, size))
    d = np.concatenate(parts) if parts else np.zeros(0)
    return d[rng.permutation(d.size)]


class _Trajectories:
    """Iterates frame by frame over the 3-D positions of every particle in the box.

    Internally x, y are in px and z in µm (the drift is in px/frame). ``step()`` returns
    the state at the start of the frame's exposure and the positions at the exposure
    sub-steps, then advances to the start of the next frame.
    """

    def __init__(self, model: _Model, rng: np.random.Generator):
        p = model.p
        self.m = model
        self.rng = rng
        # particle number so that the mean number visible per frame is particles_per_frame:
        # visible = N × (fov area / box area) × (mean detection depth / box depth)
        probe = _draw_diameters(p, 4096, np.random.default_rng(p["seed"] + 7919))
        depth = model.detection_depth_um(probe)
        if p["particles_per_frame"] > 0 and depth <= 0:
            raise CalibrationError(
                "no particle of the given sizes is bright enough to be seen "
                f"(brightness {p['brightness']:g}, min_visible_mass {p['min_visible_mass']:g})",
                fix="raise brightness or the sizes",
            )
        n = 0 if depth <= 0 else int(round(p["particles_per_frame"] * model.box_volume_um3 / (model.fov_area_um2 * depth)))
        self.n = n
        self.diam = _draw_diameters(p, n, rng)
        D = stokes_einstein_diffusion(self.diam, p["temperature_c"], p["viscosity_mpas"]) if n else np.zeros(0)
        self.D_um2_s = np.asarray(D, dtype=float)
        # per-axis RMS step per second^½ in px (x, y) and µm (z)
        s = np.sqrt(2.0 * self.D_um2_s)
        self.scale = np.stack([s / model.px, s / model.px, s], axis=1)  # (n, 3)
        self.lo = np.array([model.x_lo, model.y_lo, -model.z_half])
        self.hi = np.array([model.x_hi, model.y_hi, model.z_half])
        self.pos = self.lo + rng.random((n, 3)) * (self.hi - self.lo)
        self.ids = np.arange(n, dtype=np.int64)
        self.next_id = n
        self.v = np.array([p["drift_px_per_frame"][0] * p["fps"], p["drift_px_per_frame"][1] * p["fps"], 0.0])  # px/s
        ns = p["n_substeps"]
        # sub-step times within the exposure: midpoints of ns equal slices of [0, t_exp]
        self.t_sub = model.t_exp * (np.arange(ns) + 0.5) / ns
        self.frame = 0

    def _replace_leavers(self):
        """Particles outside the box are replaced: new id, same diameter, entering through
        the opposite face at a random position on that face."""
        span = self.hi - self.lo
        for ax in range(3):
            below = self.pos[:, ax] < self.lo[ax]
            above = self.pos[:, ax] > self.hi[ax]
            out = below | above
            if not out.any():
                continue
            k = int(out.sum())
            # wrap the coordinate across the box (enters by the opposite face, keeping how far it went)
            self.pos[out, ax] = self.lo[ax] + np.mod(self.pos[out, ax] - self.lo[ax], span[ax])
            for other in range(3):
                if other != ax:
                    self.pos[out, other] = self.lo[other] + self.rng.random(k) * span[other]
            self.ids[out] = np.arange(self.next_id, self.next_id + k)
            self.next_id += k

    def step(self):
        """Return (ids, diam, pos_start (n,3), pos_sub (ns,n,3)) for the current frame and advance."""
        self._replace_leavers()
        start = self.pos.copy()
        ids = self.ids.copy()
        times = np.concatenate([[0.0], self.t_sub, [self.m.dt]])
        dts = np.diff(times)  # ns + 1 intervals
        noise = self.rng.standard_normal((dts.size, self.n, 3))
        incr = noise * self.scale[None, :, :] * np.sqrt(dts)[:, None, None] + self.v[None, None, :] * dts[:, None, None]
        path = start[None] + np.cumsum(incr, axis=0)  # positions at t_sub..., then at dt
        self.pos = path[-1].copy()
        self.frame += 1
        return ids, self.diam, start, path[:-1]


def _visible(model, start, diam):
    """Mask: particle in the field of view at the frame start and bright enough there."""
    p = model.p
    x, y, z = start[:, 0], start[:, 1], start[:, 2]
    in_fov = (x >= -0.5) & (x < p["width"] - 0.5) & (y >= -0.5) & (y < p["height"] - 0.5)
    return in_fov & (model.mass(diam) * model.sheet(z) >= p["min_visible_mass"])


def simulate_positions(**kwargs) -> dict:
    """True 3-D positions of every particle in the simulated box, frame by frame.

    Uses the same random stream as :func:`simulate_video` with the same ``seed`` and
    parameters, so the positions are those behind the video's spots.

    Parameters
    ----------
    **kwargs
        Any keyword of :func:`simulate_video` except ``path`` and ``overwrite`` (the image
        parameters are accepted and ignored where they play no part).

    Returns
    -------
    dict
        ``frame`` (int64), ``particle`` (int64 identity; a particle that leaves the box is
        replaced by one with a new identity), ``x_px``, ``y_px`` (px; pixel centres at
        integer coordinates), ``z_um`` (µm from the sheet centre), ``diameter_nm`` (nm),
        ``D_um2_s`` (Stokes–Einstein diffusion coefficient, µm²/s) and ``visible``
        (bool), each an array with one entry per particle per frame, at the start of
        each frame's exposure; plus ``params`` (the validated parameters, with units in
        the key names) and ``n_particles_in_volume``.

    Notes
    -----
    Over one frame interval Δt = 1/fps each coordinate of a particle moves by a Gaussian
    step of variance 2DΔt (µm²; px² after dividing by pixel_size_um²) plus, in x and y,
    the drift ``drift_px_per_frame``.
    """
    p = _params(kwargs)
    model = _Model(p)
    rng_traj, _, _ = _rngs(p["seed"])
    traj = _Trajectories(model, rng_traj)
    out = {k: [] for k in ("frame", "particle", "x_px", "y_px", "z_um", "diameter_nm", "D_um2_s", "visible")}
    for f in range(p["n_frames"]):
        ids, diam, start, _ = traj.step()
        out["frame"].append(np.full(ids.size, f, dtype=np.int64))
        out["particle"].append(ids)
        out["x_px"].append(start[:, 0])
        out["y_px"].append(start[:, 1])
        out["z_um"].append(start[:, 2])
        out["diameter_nm"].append(diam.copy())
        out["D_um2_s"].append(traj.D_um2_s.copy())
        out["visible"].append(_visible(model, start, diam))
    res = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in out.items()}
    res["params"] = _public_params(p)
    res["n_particles_in_volume"] = traj.n
    return res


def _params(kwargs) -> dict:
    unknown = set(kwargs) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown simulation parameter(s): {', '.join(sorted(unknown))}")
    p = dict(_DEFAULTS)
    p.update(kwargs)
    return _check_params(p)


def _rngs(seed):
    """Independent generators for trajectories, the static background and camera noise."""
    ss = np.random.SeedSequence(seed)
    return [np.random.default_rng(s) for s in ss.spawn(3)]


def _public_params(p):
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in p.items()}


# --------------------------------------------------------------------------- rendering


def _static_background(p, rng):
    """Expected background (counts) per pixel: smooth stray-light gradient + glow, dust, hot pixels."""
    h, w, b = p["height"], p["width"], p["background"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xx / max(w - 1, 1), yy / max(h - 1, 1)
    # linear gradient 0.6×..1.4× across the frame plus a broad glow (laser stray light)
    ang = rng.uniform(0, 2 * math.pi)
    grad = 1.0 + 0.4 * ((u - 0.5) * math.cos(ang) + (v - 0.5) * math.sin(ang)) * 2.0 / math.sqrt(2.0)
    cx, cy = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)
    glow = 0.6 * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * 0.25**2))
    bg = b * (grad + glow)
    # dust: a few static soft blobs
    n_dust = max(1, int(round(w * h / 60000)))
    for _ in range(n_dust):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(2.0, 5.0)
        a = rng.uniform(15.0, 50.0)
        bg += a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))
    # hot pixels: single fixed bright pixels
    n_hot = max(2, int(round(w * h / 30000)))
    hx = rng.integers(0, w, n_hot)
    hy = rng.integers(0, h, n_hot)
    bg[hy, hx] += rng.uniform(40.0, 200.0, n_hot)
    return bg


class _Renderer:
    """Adds pixel-integrated Gaussian spots, each in a small window (±4σ), with bincount."""

    def __init__(self, p):
        self.h, self.w = p["height"], p["width"]
        self.sigma = p["psf_sigma_px"]
        self.half = int(math.ceil(4.0 * self.sigma))
        self.k = np.arange(-self.half, self.half + 1)
        self.s2 = math.sqrt(2.0) * self.sigma

    def render(self, x, y, mass):
        """Image (H, W) float64 of spots with integrated signal ``mass`` at (x, y) px."""
        img = np.zeros(self.h * self.w)
        keep = (mass > 0) & (x > -self.half - 1) & (x < self.w + self.half) & (y > -self.half - 1) & (y < self.h + self.half)
        if not keep.any():
            return img.reshape(self.h, self.w)
        x, y, mass = x[keep], y[keep], mass[keep]
        cx = np.rint(x).astype(np.int64)
        cy = np.rint(y).astype(np.int64)
        px = cx[:, None] + self.k[None, :]  # (m, K)
        py = cy[:, None] + self.k[None, :]
        gx = 0.5 * (erf((px + 0.5 - x[:, None]) / self.s2) - erf((px - 0.5 - x[:, None]) / self.s2))
        gy = 0.5 * (erf((py + 0.5 - y[:, None]) / self.s2) - erf((py - 0.5 - y[:, None]) / self.s2))
        gx *= (px >= 0) & (px < self.w)
        gy *= (py >= 0) & (py < self.h)
        np.clip(px, 0, self.w - 1, out=px)
        np.clip(py, 0, self.h - 1, out=py)
        wts = (mass[:, None, None] * gy[:, :, None] * gx[:, None, :]).ravel()
        idx = (py[:, :, None] * self.w + px[:, None, :]).ravel()
        img += np.bincount(idx, weights=wts, minlength=self.h * self.w)
        return img.reshape(self.h, self.w)


#: Pixels with fewer expected counts than this get exact Poisson samples; the others the
#: Cornish–Fisher approximation (see :func:`_camera_noise`).
_EXACT_POISSON_BELOW = 5.0


def _camera_noise(lam, read_noise, rng):
    """8-bit camera image from expected counts: Poisson shot noise + Gaussian read noise.

    For λ ≥ 5 counts the sum Poisson(λ) + N(0, r²) is sampled with one standard normal z
    through the Cornish–Fisher expansion k = λ + σ z + λ (z² − 1) / (6 σ²), σ² = λ + r² − 1/12,
    which has the exact mean, variance (including the 1/12 of the final rounding) and
    skewness; its distribution differs from the exact one by a total-variation distance
    below 0.01 (checked at λ = 8–30). Pixels below 5 counts get exact ``Generator.poisson`` samples. This is
    about 5× faster than exact Poisson sampling of every pixel. Then rounding, clipping to
    0–255 (saturation) and uint8.
    """
    lam32 = lam.astype(np.float32)
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    var = np.maximum(lam32 + np.float32(read_noise**2 - 1.0 / 12.0), np.float32(1e-6))
    out = lam32 + np.sqrt(var) * z + lam32 / (6.0 * var) * (z * z - 1.0)
    small = lam < _EXACT_POISSON_BELOW
    n_small = int(small.sum())
    if n_small:
        exact = rng.poisson(lam[small]).astype(np.float32)
        if read_noise > 0:
            exact += np.float32(read_noise) * rng.standard_normal(n_small, dtype=np.float32)
        out[small] = exact
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _frames(p, model, traj, visits, counts_visible):
    """Yield uint8 frames one at a time, recording per-particle visibility in ``visits``."""
    _, rng_bg, rng_noise = _rngs(p["seed"])
    bg = _static_background(p, rng_bg)
    ren = _Renderer(p)
    ns = p["n_substeps"]
    rn = p["read_noise"]
    for _ in range(p["n_frames"]):
        ids, diam, start, sub = traj.step()
        vis = _visible(model, start, diam)
        counts_visible.append(int(vis.sum()))
        for i, d in zip(ids[vis], diam[vis]):
            rec = visits.get(int(i))
            if rec is None:
                visits[int(i)] = [float(d), 1]
            else:
                rec[1] += 1
        # spots: PSF at each exposure sub-step, averaged (motion blur)
        m0 = model.mass(diam)
        xs = sub[:, :, 0].ravel()
        ys = sub[:, :, 1].ravel()
        ms = (m0[None, :] * model.sheet(sub[:, :, 2])).ravel() / ns
        draw = ms * ns >= _RENDER_MASS
        signal = ren.render(xs[draw], ys[draw], ms[draw])
        img = _camera_noise(bg + signal, rn, rng_noise)
        yield img


# --------------------------------------------------------------------------- writing


def truth_path_for(path) -> Path:
    """The ground-truth file written beside a video: ``<folder>/<stem>.truth.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".truth.json")


def _rate_fraction(fps):
    return Fraction(repr(float(fps))).limit_denominator(1_000_000)


def _write_av(tmp, frames, p, fmt, codec):
    import av

    h, w = p["height"], p["width"]
    container = av.open(str(tmp), mode="w", format=fmt)
    try:
        stream = container.add_stream(codec, rate=_rate_fraction(p["fps"]))
        stream.width, stream.height = w, h
        if codec == "rawvideo":
            stream.pix_fmt = "gray"
        else:
            if w % 2 or h % 2:
                raise CalibrationError(f"H.264 (yuv420p) needs an even width and height, got {w}×{h}", fix="use .avi or .tif, or even sizes")
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "12", "preset": "medium"}
        for f in frames:
            vf = av.VideoFrame.from_ndarray(f, format="gray")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def _write_tiff(tmp, frames, p):
    import tifffile

    h, w, n = p["height"], p["width"], p["n_frames"]
    meta = {"axes": "TYX", "fps": p["fps"], "pixel_size_um": p["pixel_size_um"], "exposure_ms": p["exposure_ms"], "software": "nta.simulate"}
    with tifffile.TiffWriter(tmp, bigtiff=n * h * w > 2**31) as tw:
        tw.write(frames, shape=(n, h, w), dtype=np.uint8, photometric="minisblack", metadata=meta, compression=p.get("_tiff_compression"))


def _summary(diams):
    d = np.asarray(diams, dtype=float)
    if d.size == 0:
        return dict(true_mean_nm=None, true_median_nm=None, true_sd_nm=None, true_d10_nm=None, true_d90_nm=None, true_window_fraction=None)
    return dict(
        true_mean_nm=float(d.mean()),
        true_median_nm=float(np.median(d)),
        true_sd_nm=float(d.std(ddof=1)) if d.size > 1 else 0.0,
        true_d10_nm=float(np.percentile(d, 10)),
        true_d90_nm=float(np.percentile(d, 90)),
        true_window_fraction=float(np.mean((d >= WINDOW_NM[0]) & (d <= WINDOW_NM[1]))),
    )


def _version():
    try:
        from importlib.metadata import version

        return version("nta")
    except Exception:  # pragma: no cover
        return "unknown"


def simulate_video(
    path,
    *,
    sizes_nm=(100.0,),
    fractions=None,
    size_cv=0.0,
    n_frames=300,
    width=640,
    height=480,
    fps=25.0,
    pixel_size_um=0.166,
    exposure_ms=None,
    temperature_c=22.0,
    viscosity_mpas=None,
    particles_per_frame=40.0,
    sheet_thickness_um=4.0,
    sheet_profile="gaussian",
    drift_px_per_frame=(3.0, 0.0),
    psf_sigma_px=1.6,
    brightness=400.0,
    min_visible_mass=150.0,
    background=15.0,
    read_noise=1.5,
    n_substeps=10,
    truth_min_frames=5,
    seed=0,
    overwrite=False,
    tiff_compression=None,
) -> dict:
    """Write a synthetic NTA video of Brownian particles and return its ground truth.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the suffix picks the format: ``.avi`` uncompressed 8-bit grey AVI
        (rawvideo, ``gray``) as NanoSight writes it; ``.tif``/``.tiff`` multi-page TIFF
        stack (one uint8 page per frame); ``.mp4`` H.264 (libx264, yuv420p, CRF 12: lossy,
        even width and height only). The ground truth goes to ``<stem>.truth.json``
        beside it (:func:`truth_path_for`).
    sizes_nm : sequence of float, default (100.0,)
        Hydrodynamic diameters of the populations, nm.
    fractions : sequence of float, optional
        Number fraction of each population (normalised to sum 1); default equal.
    size_cv : float, default 0.0
        Relative SD of each population: diameters are log-normal with mean ``size`` and
        SD ``size_cv × size`` (0: monodisperse).
    n_frames : int, default 300
        Number of frames.
    width, height : int, default 640, 480
        Frame size, px.
    fps : float, default 25.0
        Frame rate, frames/s; stored in the container as an exact fraction.
    pixel_size_um : float, default 0.166
        Pixel size in the sample plane, µm/px (NanoSight NS300 with 20× objective).
    exposure_ms : float, optional
        Exposure per frame, ms, starting at each frame's start; default half the frame
        interval (20 ms at 25 frames/s), a typical camera shutter setting.
    temperature_c : float, default 22.0
        Temperature, °C.
    viscosity_mpas : float, optional
        Viscosity, mPa·s; default water at ``temperature_c``
        (:func:`nta.calibration.water_viscosity`).
    particles_per_frame : float, default 40.0
        Mean number of *visible* particles per frame (sets the number density).
    sheet_thickness_um : float, default 4.0
        Effective thickness of the observed slab, µm: the FWHM of the Gaussian intensity
        profile in z (or the full width of the top-hat). It stands for the light sheet
        (NanoSight: about 10 µm) times the objective's depth of field (20×, NA 0.4: about
        4 µm), which together limit the z-range in which a particle is seen in focus;
        defocus itself is not modelled. At the defaults a 100 nm particle is visible over
        about 9 µm in z, giving tracks of a few tens of frames as in real recordings.
    sheet_profile : {"gaussian", "tophat"}, default "gaussian"
        Shape of the light-sheet intensity profile in z.
    drift_px_per_frame : (float, float), default (3.0, 0.0)
        Uniform flow (x, y), px/frame, added to every particle continuously in time
        (NanoSight recordings typically show 2–4 px/frame).
    psf_sigma_px : float, default 1.6
        Standard deviation of the Gaussian PSF, px (≈ 0.21 λ/NA for λ = 488 nm, NA 0.4,
        at 0.166 µm/px).
    brightness : float, default 400.0
        Peak signal, counts above background, of a 100 nm particle in focus at the centre
        of the sheet, before motion blur (the camera saturates at 255; motion blur
        lowers the peak of a 100 nm particle to about 150–200 counts at the defaults).
    min_visible_mass : float, default 150.0
        A particle counts as *visible* in a frame when it lies in the field of view and
        its integrated signal ``2π σ² × brightness × (d/100 nm)⁶ × sheet(z)`` (counts
        above background, independent of blur) is at least this. About 5 times the noise
        of the integrated signal of a spot at the default background.
    background : float, default 15.0
        Mean stray-light background, counts.
    read_noise : float, default 1.5
        Gaussian camera read noise, counts (RMS).
    n_substeps : int, default 10
        Brownian sub-steps per exposure for the motion blur.
    truth_min_frames : int, default 5
        A particle enters the summary truth when visible in at least this many frames.
    seed : int, default 0
        Seed of the numpy Generator; the output is a deterministic function of the seed
        and the parameters.
    overwrite : bool, default False
        Replace an existing output (video or truth file).
    tiff_compression : str, optional
        Lossless TIFF compression (e.g. ``"zlib"``); default none. TIFF only.

    Returns
    -------
    dict
        The ground truth, also written to ``<stem>.truth.json``: every parameter (units
        in the key names), ``sizes_nm``, ``fractions``, ``particle_diameters_nm`` (every
        particle ever visible, nm) and ``particle_frames_visible``, summary truth
        ``true_mean_nm``, ``true_median_nm`` (D50), ``true_sd_nm``, ``true_d10_nm``,
        ``true_d90_nm``, ``true_window_fraction`` (40–150 nm) over the particles visible in
        at least ``truth_min_frames`` frames (number-weighted), ``mean_visible_per_frame``,
        ``number_density_per_ml``, ``detection_depth_um``, ``seed``, ``nta_version``.

    Raises
    ------
    OutputExistsError
        The video or its truth file exists and ``overwrite`` is False.
    CalibrationError
        A parameter is impossible (negative size, exposure longer than the frame, ...).
    InputError
        The suffix names no supported format.

    Notes
    -----
    Physics and camera model, applied in this order:

    1. **Diffusion.** Each sphere of diameter d diffuses in 3-D with the Stokes–Einstein
       coefficient D = k_B T / (3 π η d) [1]_ (:func:`nta.calibration.stokes_einstein_diffusion`):
       over a time τ each coordinate takes a Gaussian step of variance 2Dτ.
    2. **Volume.** Particles fill a box: the field of view plus a margin in x and y
       (PSF + drift + a few steps) and a depth 2 × ``z_half`` in z larger than the range in
       which the brightest particle leaves any signal. A particle leaving the box is
       replaced by a new particle (new identity, same diameter, so inflow balances
       outflow for every size) entering through the opposite face at a random position on
       that face: the number density and composition are constant, and particles enter
       and leave the light sheet and the field of view as in a real sample. The number
       in the box is chosen so that the mean number visible per frame is
       ``particles_per_frame``: N = particles_per_frame × V_box / (A_fov × depth), with
       depth the detection depth below.
    3. **Drift.** A uniform flow ``drift_px_per_frame`` moves every particle, also during
       the exposure.
    4. **Scattering.** Integrated signal ∝ d⁶ (Rayleigh scattering of a sphere small
       against the wavelength [2]_): ``2π σ² × brightness × (d / 100 nm)⁶``, times the sheet
       profile at the particle's z (Gaussian exp(−z²/2σ_z²), σ_z = FWHM / 2.3548, or
       top-hat). The scale is set so that, at the defaults, a 60 nm particle peaks near
       19 counts above a 15-count background at the sheet centre before blur (its
       integrated signal, 300 counts, is above ``min_visible_mass``: detectable, over a
       thin z-range), 100 nm near 400 counts (about 150–200 after motion blur) and 130 nm
       saturates the 8-bit camera, as with a real camera level set for 100 nm beads.
    5. **Motion blur.** The exposure is split into ``n_substeps`` equal slices; the
       particle's Brownian path (with drift) is sampled at each slice's middle and a
       pixel-integrated Gaussian PSF is drawn there with 1/n_substeps of the signal; each
       spot is drawn only in a window of ±4σ around it.
    6. **Background.** Static: a smooth stray-light gradient with a broad glow around
       ``background`` counts, a few soft dust spots and hot pixels that never move (the
       pipeline removes them with a temporal median).
    7. **Camera.** Poisson shot noise on signal + background (1 count per photoelectron),
       Gaussian read noise ``read_noise``, rounding, clipping to 0–255 (saturation),
       uint8. Pixels below 5 expected counts are sampled exactly; brighter ones with a
       Cornish–Fisher normal expansion that has the exact mean, variance and skewness
       (see ``_camera_noise``), for speed.

    Visibility and summary truth: a particle is *visible* in a frame when its position
    at the start of the exposure is in the field of view and its integrated signal is at
    least ``min_visible_mass``. ``detection_depth_um`` is the number-weighted mean, over
    the particles in the box, of the z-range in which each is visible (2 σ_z √(2 ln(M/M_min))
    for the Gaussian sheet), so that mean visible per frame ≈ number density × field-of-view
    area × detection depth; ``number_density_per_ml`` is the true number in the box
    divided by its volume. The summary truth (``true_*``) is over the particles visible in
    at least ``truth_min_frames`` frames, number-weighted: this includes the
    size-dependent visibility that real NTA has (larger particles are seen over a deeper
    range), so it is what a perfect tracker should report.

    The video is streamed frame by frame to a temporary file in the same folder and
    renamed (:func:`os.replace`) only when complete, so a half-written file never has
    the final name.

    References
    ----------
    .. [1] Einstein, A. Ann. Phys. 17, 549 (1905).
    .. [2] Bohren, C. F. & Huffman, D. R. Absorption and Scattering of Light by Small
       Particles (Wiley, 1983), ch. 5: Rayleigh scattering, cross-section ∝ d⁶/λ⁴.
    """
    params = {k: v for k, v in locals().items() if k in _DEFAULTS}  # first: only the arguments
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(f"cannot write '{suffix}' videos", fix=f"use one of {', '.join(SUPPORTED_SUFFIXES)}", path=path)
    truth_file = truth_path_for(path)
    if not overwrite:
        for f in (path, truth_file):
            if f.exists():
                raise OutputExistsError("exists already", fix="use overwrite=True / --overwrite to replace it", path=f)
    if tiff_compression is not None and suffix not in (".tif", ".tiff"):
        raise CalibrationError("tiff_compression applies to .tif/.tiff output only")
    p = _params(params)
    if tiff_compression is not None:
        p["_tiff_compression"] = tiff_compression
    model = _Model(p)
    rng_traj, _, _ = _rngs(p["seed"])
    traj = _Trajectories(model, rng_traj)
    visits: dict = {}
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError("the output folder does not exist", path=folder)

    # hidden temporary names in the same folder (same file system, so os.replace is atomic)
    token = secrets.token_hex(4)
    tmp = folder / f".{path.stem}.{token}.partial{suffix}"
    tmp_truth = folder / f".{path.stem}.{token}.partial.json"
    counts: list = []
    try:
        frames = _frames(p, model, traj, visits, counts)
        if suffix == ".avi":
            _write_av(tmp, frames, p, "avi", "rawvideo")
        elif suffix == ".mp4":
            _write_av(tmp, frames, p, "mp4", "libx264")
        else:
            _write_tiff(tmp, frames, p)

        ids = sorted(visits)
        diam_all = [visits[i][0] for i in ids]
        nvis = [visits[i][1] for i in ids]
        tracked = [visits[i][0] for i in ids if visits[i][1] >= p["truth_min_frames"]]
        pub = {k: v for k, v in _public_params(p).items() if not k.startswith("_")}
        truth = {
            "format": suffix.lstrip("."),
            "file": path.name,
            **pub,
            "frame_interval_s": 1.0 / p["fps"],
            "tiff_compression": tiff_compression,
            "n_particles_in_volume": traj.n,
            "volume_um3": model.box_volume_um3,
            "volume_size_um": [
                (model.x_hi - model.x_lo) * model.px,
                (model.y_hi - model.y_lo) * model.px,
                2.0 * model.z_half,
            ],
            "field_of_view_um": [p["width"] * model.px, p["height"] * model.px],
            "number_density_per_ml": traj.n / (model.box_volume_um3 * 1e-12),  # 1 mL = 1e12 µm³
            "detection_depth_um": model.detection_depth_um(traj.diam) if traj.n else 0.0,
            "mean_visible_per_frame": float(np.mean(counts)) if counts else 0.0,
            "expected_visible_per_frame": (
                traj.n / model.box_volume_um3 * model.fov_area_um2 * model.detection_depth_um(traj.diam) if traj.n else 0.0
            ),
            "visible_per_frame": counts,
            "diffusion_um2_s": [float(stokes_einstein_diffusion(s, p["temperature_c"], p["viscosity_mpas"])) for s in p["sizes_nm"]],
            "window_nm": list(WINDOW_NM),
            "n_particles_visible": len(ids),
            "n_particles_truth": len(tracked),
            **_summary(tracked),
            "volume_population": {k.replace("true_", ""): v for k, v in _summary(traj.diam).items()},
            "particle_diameters_nm": diam_all,
            "particle_frames_visible": nvis,
            "nta_version": _version(),
        }
        with open(tmp_truth, "w", encoding="utf-8") as fh:
            json.dump(truth, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
        os.replace(tmp_truth, truth_file)
    except BaseException:
        for f in (tmp, tmp_truth):
            try:
                f.unlink()
            except FileNotFoundError:
                pass
        raise
    return truth
