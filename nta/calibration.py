"""Calibration: the physical constants that turn pixels and frames into µm, s and nm.

Physical units live here and at the other edges of the pipeline; inside, positions are
in pixels and times in frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import CalibrationError

__all__ = [
    "BOLTZMANN",
    "Calibration",
    "make_calibration",
    "water_viscosity",
    "stokes_einstein_diameter",
    "stokes_einstein_diffusion",
]

#: Boltzmann constant k_B, J/K (exact, SI 2019).
BOLTZMANN = 1.380649e-23


def water_viscosity(temperature_c):
    """Dynamic viscosity of water at a temperature.

    η(T) = 1.000 mPa·s × 10^{[1.3272 (20 − T) − 0.001053 (T − 20)²] / (T + 105)}

    Parameters
    ----------
    temperature_c : float or array_like of float
        Temperature, °C. Valid for liquid water, 0–100 °C.

    Returns
    -------
    float or ndarray of float64
        Viscosity, mPa·s (= cP).

    Notes
    -----
    The formula is the one NanoSight NTA software uses; it reproduces the viscosities in
    the exports under ``shared/data/nanosight`` to 6 digits (e.g. 22.0 °C → 0.952941 cP).

    References
    ----------
    .. [1] Kestin, J., Sokolov, M. & Wakeham, W. A. Viscosity of liquid water in the range
       −8 °C to 150 °C. J. Phys. Chem. Ref. Data 7, 941 (1978): the 20 °C-referenced
       correlation form.

    Examples
    --------
    >>> round(water_viscosity(22.0), 6)
    0.952941
    """
    t = np.asarray(temperature_c, dtype=float)
    eta = 1.000 * 10.0 ** ((1.3272 * (20.0 - t) - 0.001053 * (t - 20.0) ** 2) / (t + 105.0))
    return float(eta) if eta.ndim == 0 else eta


def stokes_einstein_diameter(diffusion_um2_s, temperature_c, viscosity_mpas):
    """Hydrodynamic diameter from a diffusion coefficient (Stokes–Einstein).

    d = k_B T / (3 π η D)

    Parameters
    ----------
    diffusion_um2_s : float or array_like
        Diffusion coefficient D, µm²/s. Non-positive or NaN values give NaN.
    temperature_c : float
        Temperature, °C.
    viscosity_mpas : float
        Dynamic viscosity η, mPa·s.

    Returns
    -------
    float or ndarray of float64
        Hydrodynamic diameter, nm.

    References
    ----------
    .. [1] Einstein, A. Ann. Phys. 17, 549 (1905).
    """
    d = np.asarray(diffusion_um2_s, dtype=float)
    kt = BOLTZMANN * (temperature_c + 273.15)
    with np.errstate(divide="ignore", invalid="ignore"):
        # D in µm²/s → m²/s (1e-12); η in mPa·s → Pa·s (1e-3); metres → nm (1e9)
        out = kt / (3.0 * math.pi * viscosity_mpas * 1e-3 * d * 1e-12) * 1e9
        out = np.where(d > 0, out, np.nan)
    return float(out) if out.ndim == 0 else out


def stokes_einstein_diffusion(diameter_nm, temperature_c, viscosity_mpas):
    """Diffusion coefficient of a sphere from its hydrodynamic diameter (Stokes–Einstein).

    D = k_B T / (3 π η d)

    Parameters
    ----------
    diameter_nm : float or array_like
        Hydrodynamic diameter, nm (> 0).
    temperature_c : float
        Temperature, °C.
    viscosity_mpas : float
        Dynamic viscosity η, mPa·s.

    Returns
    -------
    float or ndarray of float64
        Diffusion coefficient D, µm²/s.

    References
    ----------
    .. [1] Einstein, A. Ann. Phys. 17, 549 (1905).
    """
    d = np.asarray(diameter_nm, dtype=float)
    kt = BOLTZMANN * (temperature_c + 273.15)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = kt / (3.0 * math.pi * viscosity_mpas * 1e-3 * d * 1e-9) * 1e12
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Calibration:
    """Physical calibration of one NTA recording.

    Parameters
    ----------
    pixel_size_um : float
        Size of one camera pixel in the sample plane, µm/px.
    fps : float
        Frame rate, frames/s.
    temperature_c : float
        Sample temperature, °C.
    viscosity_mpas : float
        Dynamic viscosity of the diluent, mPa·s.
    exposure_ms : float or None
        Exposure (shutter) time per frame, ms; None when unknown (then taken as the whole
        frame interval for the motion-blur correction of the localization precision).
    sources : dict of str to str
        Where each value came from (``"flag"``, ``"container"``, ``"water formula"``, ...).
    warnings : tuple of str
        Legal but unusual values, stated to the user and stored in the result file.
    """

    pixel_size_um: float
    fps: float
    temperature_c: float
    viscosity_mpas: float
    exposure_ms: float | None = None
    sources: dict = field(default_factory=dict)
    warnings: tuple = ()

    @property
    def frame_interval_s(self) -> float:
        """Time between frames, s."""
        return 1.0 / self.fps

    @property
    def blur_fraction(self) -> float:
        """Exposure as a fraction of the frame interval (1.0 when the exposure is unknown)."""
        if self.exposure_ms is None:
            return 1.0
        return min(1.0, self.exposure_ms * 1e-3 * self.fps)

    @property
    def motion_blur_r(self) -> float:
        """Motion-blur coefficient R of Vestergaard et al. (2014) for a uniform shutter.

        R = (t_exposure / Δt) / 6, between 0 (instantaneous) and 1/6 (open all the time).
        """
        return self.blur_fraction / 6.0

    def to_dict(self) -> dict:
        """All values, with units in the key names, as plain Python types."""
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        return d


def _finite_positive(name, value, flag, input_name):
    where = f"{input_name}: " if input_name else ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}{name} {value!r} is not a number", fix=f"give it with {flag}")
    if not math.isfinite(v) or v <= 0:
        raise CalibrationError(f"{where}{name} must be a positive finite number, got {value!r}", fix=f"give it with {flag}")
    return v


def make_calibration(
    *,
    pixel_size_um=None,
    fps=None,
    temperature_c=None,
    viscosity_mpas=None,
    exposure_ms=None,
    sources=None,
    input_name=None,
) -> Calibration:
    """Validate calibration values and fill in the viscosity of water.

    Parameters
    ----------
    pixel_size_um : float
        Pixel size, µm/px. Required: there is no safe default.
    fps : float
        Frame rate, frames/s. Required (a reader may supply it from the container).
    temperature_c : float
        Temperature, °C. Required.
    viscosity_mpas : float, optional
        Viscosity, mPa·s. Default: water at ``temperature_c`` (:func:`water_viscosity`).
    exposure_ms : float, optional
        Exposure time, ms; must not exceed the frame interval.
    sources : dict, optional
        Where each given value came from; ``"flag"`` is assumed for those not listed.
    input_name : str, optional
        Name of the input the calibration belongs to, used in error messages.

    Returns
    -------
    Calibration

    Raises
    ------
    CalibrationError
        A required value is missing (the message names the flag that supplies it), or a
        value is impossible: pixel size, frame rate or viscosity ≤ 0 or not finite; a pixel
        size above 20 µm/px (e.g. 166 typed for 0.166); a temperature outside liquid water
        (0–100 °C) with no viscosity given; an exposure longer than the frame interval.
    """
    sources = dict(sources or {})
    where = f"{input_name}: " if input_name else ""
    if pixel_size_um is None:
        raise CalibrationError(f"{where}pixel size is missing", fix="give it in µm/px with --pixel-size, e.g. --pixel-size 0.166")
    if fps is None:
        raise CalibrationError(f"{where}frame rate is missing (the input does not record one)", fix="give it in frames/s with --fps, e.g. --fps 25")
    if temperature_c is None:
        raise CalibrationError(f"{where}temperature is missing", fix="give it in °C with --temperature, e.g. --temperature 22")
    px = _finite_positive("pixel size (µm/px)", pixel_size_um, "--pixel-size", input_name)
    fr = _finite_positive("frame rate (frames/s)", fps, "--fps", input_name)
    warnings = []
    if px > 20.0:
        raise CalibrationError(
            f"{where}pixel size {px:g} µm/px is not plausible for an NTA camera (expected about 0.05–2 µm/px)",
            fix="give the pixel size in µm per pixel, e.g. 0.166 rather than 166",
        )
    if px < 0.01:
        raise CalibrationError(
            f"{where}pixel size {px:g} µm/px is below the optical resolution of any NTA microscope",
            fix="give the pixel size in µm per pixel, e.g. 0.166 rather than 0.000166",
        )
    if not (0.02 <= px <= 2.0):
        warnings.append(f"pixel size {px:g} µm/px is unusual for NTA (typically 0.05–2 µm/px)")
    if fr > 10000:
        raise CalibrationError(f"{where}frame rate {fr:g} frames/s is not plausible", fix="give the frame rate in frames/s with --fps")
    if not (1.0 <= fr <= 1000.0):
        warnings.append(f"frame rate {fr:g} frames/s is unusual for NTA (typically 10–100 frames/s)")
    try:
        t = float(temperature_c)
    except (TypeError, ValueError):
        raise CalibrationError(f"{where}temperature {temperature_c!r} is not a number", fix="give it in °C with --temperature")
    if not math.isfinite(t):
        raise CalibrationError(f"{where}temperature {temperature_c!r} is not finite", fix="give it in °C with --temperature")
    if t <= -273.15:
        raise CalibrationError(f"{where}temperature {t:g} °C is below absolute zero", fix="give it in °C with --temperature")
    if viscosity_mpas is None:
        if not (0.0 <= t <= 100.0):
            raise CalibrationError(
                f"{where}temperature {t:g} °C is outside liquid water (0–100 °C) so the water viscosity formula does not apply",
                fix="check --temperature (°C, not K or °F), or give the diluent's viscosity with --viscosity",
            )
        eta = water_viscosity(t)
        sources.setdefault("viscosity_mpas", "water formula at the given temperature")
    else:
        eta = _finite_positive("viscosity (mPa·s)", viscosity_mpas, "--viscosity", input_name)
        if eta > 1000:
            warnings.append(f"viscosity {eta:g} mPa·s is unusual (water is about 1 mPa·s)")
    if not (4.0 <= t <= 45.0):
        kelvin = " (was it given in kelvin? --temperature takes °C)" if t > 200 else ""
        warnings.append(f"temperature {t:g} °C is unusual for NTA (typically 15–40 °C){kelvin}")
    exp = None
    if exposure_ms is not None:
        exp = _finite_positive("exposure (ms)", exposure_ms, "--exposure", input_name)
        if exp * 1e-3 > 1.0 / fr * 1.0001:
            raise CalibrationError(
                f"{where}exposure {exp:g} ms is longer than the frame interval {1000.0 / fr:.4g} ms",
                fix="check --exposure (ms) and --fps (frames/s)",
            )
    for key in ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms"):
        sources.setdefault(key, "flag" if locals().get(key) is not None else "not given")
    return Calibration(px, fr, t, float(eta), exp, sources, tuple(warnings))
