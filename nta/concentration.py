"""Particle concentration (particles/mL) from a result file, and detection-depth calibration.

Model
-----
The camera sees the particles inside a detection volume: the field of view (area, µm²)
times the effective depth of the light sheet (µm), the depth over which a particle is
bright enough to be found. With ``N`` the mean number of particles present per frame,

    c_measured = N / (A_eff × depth)        [particles/µm³; × 1e12 → particles/mL]
    c_sample   = c_measured × dilution_factor

(Filipe, Hawe & Jiskoot, Pharm. Res. 27, 796 (2010), "Critical evaluation of nanoparticle
tracking analysis (NTA)"; the same definition of concentration as NanoSight's and
ZetaView's software, which also only differ in how the volume is calibrated).

Choices, measured on the simulator (``nta simulate``, truth ``number_density_per_ml``,
``detection_depth_um``; see ``tests/test_concentration.py``):

* ``N`` counts *tracked particles present per frame*: for every track of two or more
  detections, the frames from its first to its last detection (frames bridged by the
  linking memory count: the particle was there, momentarily below threshold), summed and
  divided by the number of frames. Single-frame features (noise, flicker) are left out.
  Raw features per frame undercount by 15–20 % at the sheet edges, tracks long enough for
  the size distribution by 25 % or more.
* ``A_eff`` is the frame minus the locator's blind border: trackpy finds no maximum
  within ``diameter_px // 2`` px of the frame edge (``trackpy.feature.locate``, "zone of
  exclusion at edges"), so A_eff = (W − 2m)(H − 2m) px² × pixel_size². Without this the
  concentration is low by 4 % (640 × 480 px) to 9 % (320 × 240 px).

The detection depth is an instrument calibration. nta has **no** default per instrument
type: the vendors do not publish the effective depth of their light sheets (it depends on
the laser, camera level and detection threshold, and on particle brightness), so a
number quoted here could not be sourced. Give it with ``--detection-depth`` (µm), or
measure it with ``nta calibrate`` on beads of known concentration; without either the
concentration is NaN and the QC says why.

The window concentration (particles/mL in the size window) is the concentration times
the number fraction of sized tracks in the window. Larger particles are seen over a
deeper range than small ones, so this inherits the size bias of every NTA
concentration.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np

from .errors import CalibrationError, InputError

__all__ = [
    "INSTRUMENT_DEFAULT_DEPTH_UM",
    "tracked_particles_per_frame",
    "effective_area_um2",
    "concentration",
    "calibrate_depth",
    "read_calibration_file",
    "write_calibration_file",
]

#: Default effective light-sheet depth per instrument type, µm: none is documented by the
#: vendors (see the module notes), so this is empty on purpose.
INSTRUMENT_DEFAULT_DEPTH_UM: dict = {}

_UM3_PER_ML = 1e12  # 1 mL = 1 cm³ = 1e12 µm³


def tracked_particles_per_frame(tracks, n_frames: int, *, min_points: int = 2) -> float:
    """Mean number of tracked particles present per frame.

    Parameters
    ----------
    tracks : pandas.DataFrame
        The ``/tracks`` table: ``frame`` and ``particle`` columns.
    n_frames : int
        Frames analysed.
    min_points : int
        Tracks with fewer detections are not counted (single-frame noise features).

    Returns
    -------
    float
        Σ over tracks of (last frame − first frame + 1) / ``n_frames``, particles per frame;
        NaN when ``n_frames`` is 0, 0.0 when there are no tracks.
    """
    if not n_frames:
        return float("nan")
    if tracks is None or len(tracks) == 0 or "particle" not in tracks or "frame" not in tracks:
        return 0.0
    g = tracks.groupby("particle")["frame"].agg(["min", "max", "size"])
    g = g[g["size"] >= min_points]
    return float((g["max"] - g["min"] + 1).sum() / n_frames)


def effective_area_um2(frame_shape_px, pixel_size_um: float, margin_px: float) -> float:
    """Area of the field of view in which particles can be found, µm².

    Parameters
    ----------
    frame_shape_px : (int, int)
        Frame height and width, px.
    pixel_size_um : float
        Pixel size, µm/px.
    margin_px : float
        Blind border of the locator on each side, px.

    Returns
    -------
    float
        (W − 2 m)(H − 2 m) × pixel_size², µm².
    """
    h, w = frame_shape_px
    return float(max(w - 2 * margin_px, 0) * max(h - 2 * margin_px, 0) * pixel_size_um**2)


def concentration(summary: dict, tracks, *, detection_depth_um=None, depth_source: str | None = None,
                  calibration: dict | None = None, protein_ug_ml=None, dilution_factor=None,
                  particles_per_frame_tracked=None) -> dict:
    """Concentration of one run, particles/mL of the original sample.

    Parameters
    ----------
    summary : dict
        The result's summary (:func:`nta.store.read_summary`): ``n_frames``,
        ``frame_shape_px``, ``pixel_size_um``, ``diameter_px``, ``dilution_factor``,
        ``detection_depth_um``, ``protein_ug_ml``, ``window_fraction``, ``window_nm``.
    tracks : pandas.DataFrame or None
        The ``/tracks`` table (None when ``particles_per_frame_tracked`` is given).
    detection_depth_um : float, optional
        Effective light-sheet depth, µm; overrides the calibration file and the value
        recorded in the result.
    depth_source : str, optional
        Where ``detection_depth_um`` came from (for the report).
    calibration : dict, optional
        A calibration from :func:`read_calibration_file` (used when no depth is given
        and the result holds none).
    protein_ug_ml : float, optional
        Protein concentration of the sample, µg/mL; overrides the recorded value.
    dilution_factor : float, optional
        Overrides the recorded dilution factor (≥ 1).
    particles_per_frame_tracked : float, optional
        :func:`tracked_particles_per_frame` of the tracks, already computed (1/frame);
        ``tracks`` is then not read.

    Returns
    -------
    dict
        ``particles_per_frame_tracked`` (1/frame), ``effective_area_um2``,
        ``detection_depth_um``, ``detection_depth_source``, ``detection_volume_ml``,
        ``dilution_factor``, ``concentration_per_ml`` (particles/mL, sample),
        ``window_concentration_per_ml`` (particles/mL in the window),
        ``protein_ug_ml``, ``particles_per_ug`` (particles/µg), ``concentration_note``.
        Concentrations are NaN (with the note saying why) without a detection depth.
    """
    n_frames = int(summary.get("n_frames") or 0)
    shape = summary.get("frame_shape_px") or [0, 0]
    px = float(summary.get("pixel_size_um") or float("nan"))
    margin = int(summary.get("diameter_px") or 0) // 2
    area = effective_area_um2(shape, px, margin)
    ppf = (float(particles_per_frame_tracked) if particles_per_frame_tracked is not None
           else tracked_particles_per_frame(tracks, n_frames))
    depth, source = None, None
    if detection_depth_um is not None:
        depth, source = float(detection_depth_um), depth_source or "given on the command line"
    elif summary.get("detection_depth_um"):
        depth, source = float(summary["detection_depth_um"]), "given to nta process (--detection-depth)"
    elif calibration:
        depth = float(calibration["detection_depth_um"])
        source = f"bead calibration {calibration.get('file', '')} ({calibration.get('date', '')})".strip()
    dil = float(dilution_factor if dilution_factor is not None else (summary.get("dilution_factor") or 1.0))
    prot = protein_ug_ml if protein_ug_ml is not None else summary.get("protein_ug_ml")
    prot = float(prot) if prot else None
    nan = float("nan")
    out = {
        "particles_per_frame_tracked": ppf,
        "effective_area_um2": area,
        "locator_margin_px": margin,
        "detection_depth_um": depth if depth is not None else nan,
        "detection_depth_source": source or "none",
        "detection_volume_ml": nan,
        "dilution_factor": dil,
        "concentration_per_ml": nan,
        "window_concentration_per_ml": nan,
        "protein_ug_ml": prot if prot is not None else nan,
        "particles_per_ug": nan,
        "concentration_note": "",
    }
    if depth is None:
        out["concentration_note"] = ("no detection depth: give --detection-depth (µm) or a bead calibration from "
                                     "`nta calibrate` (nta has no documented default depth for any instrument)")
        return out
    if not (math.isfinite(depth) and depth > 0):
        raise CalibrationError(f"detection depth {depth!r} µm must be positive", fix="give --detection-depth in µm")
    vol_ml = area * depth / _UM3_PER_ML
    out["detection_volume_ml"] = vol_ml
    if vol_ml > 0 and math.isfinite(ppf):
        c = ppf / vol_ml * dil
        out["concentration_per_ml"] = c
        wf = summary.get("window_fraction")
        out["window_concentration_per_ml"] = c * wf if wf is not None and math.isfinite(wf) else nan
        if prot:
            out["particles_per_ug"] = c / prot
    return out


def calibrate_depth(bead_results, known_per_ml: float, *, dilution_factor=None) -> dict:
    """Effective detection depth from runs on beads of known concentration.

    depth = N / (A_eff × c_measured), with c_measured = known / dilution in particles/µm³
    and N the tracked particles per frame (as :func:`concentration` counts them), averaged
    over the bead videos.

    Parameters
    ----------
    bead_results : list of path
        Result files of bead videos (``nta process``).
    known_per_ml : float
        Bead concentration of the stock, particles/mL (certificate value).
    dilution_factor : float, optional
        Dilution of the measured suspension; default the value recorded in each result.

    Returns
    -------
    dict
        ``detection_depth_um`` (mean), ``detection_depth_sd_um``, ``per_video_um``,
        ``known_per_ml``, ``files``, ``date``, ``method``.

    Raises
    ------
    CalibrationError
        The known concentration is not positive, or no bead particle was tracked.
    """
    from .store import read_summary, read_table

    if not (known_per_ml and math.isfinite(known_per_ml) and known_per_ml > 0):
        raise CalibrationError(f"known bead concentration {known_per_ml!r} must be a positive number of particles/mL",
                               fix="give --known, e.g. 1e9 (from the bead certificate)")
    depths, names = [], []
    for p in bead_results:
        s = read_summary(p)
        if not s.get("complete"):
            raise InputError("result file is incomplete", fix="process the bead video again", path=p)
        dil = float(dilution_factor if dilution_factor is not None else (s.get("dilution_factor") or 1.0))
        c_um3 = known_per_ml / dil / _UM3_PER_ML
        ppf = tracked_particles_per_frame(read_table(p, "tracks"), int(s.get("n_frames") or 0))
        area = effective_area_um2(s.get("frame_shape_px") or [0, 0], float(s.get("pixel_size_um") or 0), int(s.get("diameter_px") or 0) // 2)
        if not (ppf > 0 and area > 0):
            raise CalibrationError("no bead was tracked: the depth cannot be measured", fix="check the bead video and its processing", path=p)
        depths.append(ppf / (area * c_um3))
        names.append(str(p))
    d = np.asarray(depths)
    return {
        "detection_depth_um": float(d.mean()),
        "detection_depth_sd_um": float(d.std(ddof=1)) if d.size > 1 else float("nan"),
        "per_video_um": [float(x) for x in d],
        "known_per_ml": float(known_per_ml),
        "files": names,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": "depth = tracked particles per frame / (effective field of view × known bead concentration / dilution)",
    }


def write_calibration_file(cal: dict, path) -> Path:
    """Write a calibration (from :func:`calibrate_depth`) as JSON; returns the path."""
    from .store import dumps, write_text_atomic

    return write_text_atomic(path, dumps(cal) + "\n", overwrite=True, what="calibration file")


def read_calibration_file(path) -> dict:
    """Read a calibration JSON written by ``nta calibrate``.

    Raises
    ------
    InputError
        The file is missing, not JSON, or has no positive ``detection_depth_um``.
    """
    p = Path(path)
    try:
        cal = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("calibration file not found", fix="give the file written by `nta calibrate`", path=p) from None
    except (OSError, ValueError) as e:
        raise InputError(f"calibration file is not readable JSON ({e})", fix="give the file written by `nta calibrate`", path=p) from None
    d = cal.get("detection_depth_um") if isinstance(cal, dict) else None
    if not isinstance(d, (int, float)) or not d > 0:
        raise InputError("calibration file has no positive detection_depth_um", fix="run `nta calibrate` again", path=p)
    cal["file"] = str(p)
    return cal
