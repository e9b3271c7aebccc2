"""Calibration discovery: values found beside a video, merged with the user's flags.

An instrument writes its settings next to its videos; a user may write an ``nta.toml``.
:func:`find_calibration` looks in the video's folder and fills, for each calibration value
not given as a flag, the first value found in this order of precedence:

1. command-line flag (``--pixel-size``, ``--fps``, ...)              source ``"flag"``
2. ``nta.toml`` in the video's folder or a parent folder up to ``root``  ``"nta.toml (<path>)"``
3. a NanoSight ``.nano`` experiment file in the folder               ``".nano (<path>)"``
4. a NanoSight summary CSV in the folder naming the video           ``"summary CSV (<path>)"``
5. a ZetaView ``.txt`` export with the same stem as the video       ``"ZetaView header (<path>)"``
6. the video container (frame rate only; read by :func:`nta.process`)  ``"container"``

``nta.toml`` (read with :mod:`tomllib`)::

    pixel_size_um = 0.166      # µm/px
    fps = 25                   # frames/s
    temperature_c = 22         # °C
    viscosity_mpas = 0.953     # mPa·s (default: water at temperature_c)
    exposure_ms = 20           # ms
    dilution_factor = 1000
    invert = false
    window_nm = [40, 150]
    [samples]                  # optional: video file name or stem → sample name
    "day1_001.avi" = "exosomes A"

Instrument files never hold the pixel size; it comes from a flag or ``nta.toml``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .errors import CalibrationError, ParseError

__all__ = ["CALIBRATION_KEYS", "TOML_KEYS", "read_nta_toml", "find_calibration", "find_toml_files"]

#: Calibration values a sidecar may supply (units in the names).
CALIBRATION_KEYS = ("pixel_size_um", "fps", "temperature_c", "viscosity_mpas", "exposure_ms")
#: Every key ``nta.toml`` may set, with its type (besides the ``[samples]`` table).
TOML_KEYS = {
    "pixel_size_um": float,
    "fps": float,
    "temperature_c": float,
    "viscosity_mpas": float,
    "exposure_ms": float,
    "dilution_factor": float,
    "detection_depth_um": float,
    "protein_ug_ml": float,
    "invert": bool,
    "window_nm": list,
    "sample": str,
}

_toml_cache: dict = {}


def read_nta_toml(path) -> dict:
    """Read and check an ``nta.toml`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    dict
        Known keys (see :data:`TOML_KEYS`) with their values in the units their names say,
        and ``samples`` (dict file name or stem → sample name) if the file has a
        ``[samples]`` table.

    Raises
    ------
    ParseError
        Not valid TOML, an unknown key, or a value of the wrong type.
    """
    import tomllib

    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key in _toml_cache:
        return dict(_toml_cache[key])
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ParseError(f"is not valid TOML: {e}", path=p, fix="fix the syntax, e.g. pixel_size_um = 0.166")
    except OSError as e:
        raise ParseError(f"cannot be read: {e.strerror}", path=p, fix="check its permissions")
    out = {}
    for k, v in data.items():
        if k == "samples":
            if not isinstance(v, dict) or not all(isinstance(s, str) for s in v.values()):
                raise ParseError("[samples] must map file names to sample names (strings)", path=p,
                                 fix='write e.g. [samples] then "day1_001.avi" = "exosomes A"')
            out["samples"] = {str(a): str(b) for a, b in v.items()}
            continue
        if k not in TOML_KEYS:
            raise ParseError(f"unknown key {k!r}", path=p, fix=f"use only {', '.join(TOML_KEYS)} and a [samples] table")
        typ = TOML_KEYS[k]
        if typ is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParseError(f"{k} = {v!r} is not a number", path=p, fix=f"write e.g. {k} = 0.166 (units as the name says)")
            v = float(v)
        elif typ is bool and not isinstance(v, bool):
            raise ParseError(f"{k} = {v!r} is not true/false", path=p, fix=f"write {k} = true or {k} = false")
        elif typ is list and not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)):
            raise ParseError(f"{k} = {v!r} is not a pair of numbers", path=p, fix=f"write e.g. {k} = [40, 150]")
        elif typ is str and not isinstance(v, str):
            raise ParseError(f"{k} = {v!r} is not a string", path=p, fix=f'write e.g. {k} = "name"')
        out[k] = v
    _toml_cache[key] = dict(out)
    return out


def find_toml_files(folder, root=None) -> list:
    """``nta.toml`` files that apply to a folder: its own first, then its parents' up to ``root``.

    Parameters
    ----------
    folder : str or os.PathLike
    root : str or os.PathLike, optional
        Highest folder searched (default: only ``folder`` itself).

    Returns
    -------
    list of pathlib.Path
        Nearest first.
    """
    folder = Path(folder).resolve()
    stop = Path(root).resolve() if root is not None else folder
    out = []
    cur = folder
    while True:
        f = cur / "nta.toml"
        if f.is_file():
            out.append(f)
        if cur == stop or cur.parent == cur or stop not in cur.parents:
            break
        cur = cur.parent
    return out


def _norm_name(s) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(s).lower())


def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _from_nano(folder: Path, video: Path, found: dict, notes: list) -> None:
    from .io.vendor import read_nano_file

    for f in sorted(folder.glob("*.nano")):
        try:
            d = read_nano_file(f)
        except ParseError as e:
            notes.append(f"ignored {f.name}: {e.problem}")
            continue
        names = {_norm_name(Path(v.replace("\\", "/")).stem) for v in d.get("videos") or []}
        if names and _norm_name(video.stem) not in names:
            continue
        for src_key, key in (("frame_rate_fps", "fps"), ("temperature_c", "temperature_c"), ("viscosity_mpas", "viscosity_mpas")):
            v = _num(d.get(src_key))
            if v is not None:
                found.setdefault(key, (v, f".nano ({f})"))


def _from_summary(folder: Path, video: Path, found: dict, notes: list) -> None:
    from .io.vendor import detect_export, read_export

    for f in sorted(folder.glob("*.csv")):
        try:
            if detect_export(f) != "nanosight_summary":
                continue
            s = read_export(f)
        except ParseError as e:
            notes.append(f"ignored {f.name}: {e.problem}")
            continue
        if s.conditions is None:
            continue
        col = next((v for v in s.videos if _norm_name(v) == _norm_name(video.stem)), None)
        if col is None:
            continue
        for src_key, key in (("frame_rate_fps", "fps"), ("temperature_c", "temperature_c"),
                             ("viscosity_mpas", "viscosity_mpas"), ("shutter_ms", "exposure_ms")):
            if src_key in s.conditions.columns:
                v = _num(s.conditions.loc[col, src_key])
                if v is not None:
                    found.setdefault(key, (v, f"summary CSV ({f})"))


def _from_zetaview(folder: Path, video: Path, found: dict, notes: list) -> None:
    from .io.vendor import detect_export, read_zetaview_txt

    for f in sorted(folder.glob(video.stem + "*.txt")):
        try:
            if detect_export(f) != "zetaview":
                continue
            z = read_zetaview_txt(f)
        except ParseError as e:
            notes.append(f"ignored {f.name}: {e.problem}")
            continue
        for key, v in (("fps", z.frame_rate_fps), ("temperature_c", z.temperature_c), ("viscosity_mpas", z.viscosity_mpas)):
            if _num(v) is not None:
                found.setdefault(key, (float(v), f"ZetaView header ({f})"))


def find_calibration(video, flags: dict | None = None, *, root=None) -> tuple[dict, dict, dict]:
    """Calibration and options for one video: flags first, then sidecar files.

    Parameters
    ----------
    video : str or os.PathLike
        The video (or image folder) to be processed.
    flags : dict, optional
        Values the user gave (keys of :data:`TOML_KEYS`); None values count as not given.
    root : str or os.PathLike, optional
        Highest folder searched for ``nta.toml`` (default: the video's folder only).

    Returns
    -------
    values : dict
        Every key of :data:`TOML_KEYS` that was found (units as the names say).
    sources : dict
        For each key of ``values``, where it came from (``"flag"``, ``"nta.toml (<path>)"``,
        ``".nano (<path>)"``, ``"summary CSV (<path>)"``, ``"ZetaView header (<path>)"``).
        Keys not found are absent (the frame rate may still come from the container).
    extra : dict
        ``samples`` (merged ``[samples]`` tables, nearest file wins) and ``notes`` (files
        ignored and why).

    Raises
    ------
    ParseError
        An ``nta.toml`` that applies is malformed (the others are skipped with a note).
    """
    video = Path(video)
    folder = video if video.is_dir() else video.parent
    found: dict = {}
    notes: list = []
    for k, v in (flags or {}).items():
        if v is not None:
            found[k] = (v, "flag")
    samples: dict = {}
    for f in find_toml_files(folder, root):
        d = read_nta_toml(f)
        for k, v in d.items():
            if k == "samples":
                for a, b in v.items():
                    samples.setdefault(a, b)
            else:
                found.setdefault(k, (v, f"nta.toml ({f})"))
    if not video.is_dir():
        _from_nano(folder, video, found, notes)
        _from_summary(folder, video, found, notes)
        _from_zetaview(folder, video, found, notes)
    values = {k: v for k, (v, _) in found.items()}
    sources = {k: s for k, (_, s) in found.items()}
    if "window_nm" in values:
        values["window_nm"] = tuple(float(x) for x in values["window_nm"])
    return values, sources, {"samples": samples, "notes": notes}


def sample_for(video, mapping: dict | None = None) -> str:
    """Sample name of a video: from a mapping, else its stem without a replicate number.

    Parameters
    ----------
    video : str or os.PathLike
    mapping : dict, optional
        File name, relative path or stem → sample name (``samples.csv``, ``[samples]``).

    Returns
    -------
    str
        E.g. ``"beads_100nm_003.avi"`` → ``"beads_100nm"``; ``"stdv34_00"`` → ``"stdv34"``.
    """
    p = Path(str(video))
    for key in (str(video), p.name, p.stem):
        if mapping and key in mapping:
            return mapping[key]
    stem = p.stem
    base = re.sub(r"([ _.-](video|vid|rep|pos(ition)?)?[ _.-]?\d{1,3}|[ _.-]?(video|vid|rep|pos(ition)?)[ _.-]?\d{1,3})$", "", stem, flags=re.I)
    return base or stem


def check_calibration_complete(values: dict, sources: dict, video) -> None:
    """Raise when a value nta cannot guess is missing (pixel size, temperature).

    Raises
    ------
    CalibrationError
        Naming the video, the missing value, and the ways to supply it.
    """
    for key, flag, eg in (("pixel_size_um", "--pixel-size", "pixel_size_um = 0.166"), ("temperature_c", "--temperature", "temperature_c = 22")):
        if values.get(key) is None:
            raise CalibrationError(
                f"{video}: {key} not given and not found beside the video (.nano, summary CSV, ZetaView header, nta.toml)",
                fix=f"give {flag}, or write `{eg}` into an nta.toml in the video's folder")
