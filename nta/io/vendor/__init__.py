"""Readers of instrument exports (NanoSight, ZetaView).

Every reader returns plain dataclasses / dicts / pandas DataFrames with units in the
names (``_nm``, ``_um2_s``, ``_c``, ``_mpas``, ``_fps``) and raises
:class:`nta.errors.ParseError` (file, problem, fix) on malformed input.
:func:`detect_export` tells which reader a file needs by sniffing its content.
"""

from __future__ import annotations

import re

from ...errors import ParseError
from .nanosight import (
    NanoSightSummary,
    read_nano_file,
    read_nanosight_all_tracks,
    read_nanosight_particle_data,
    read_nanosight_summary,
    read_nanosight_video_summary,
)
from .nanosight import _decode, _norm, _read_bytes, _split_line
from .zetaview import ZetaViewExport, read_zetaview_txt

__all__ = [
    "NanoSightSummary",
    "ZetaViewExport",
    "detect_export",
    "read_export",
    "read_nano_file",
    "read_nanosight_all_tracks",
    "read_nanosight_particle_data",
    "read_nanosight_summary",
    "read_nanosight_video_summary",
    "read_zetaview_txt",
]

_SNIFF_BYTES = 65536
_NS_SECTIONS = {"experiment details", "conditions", "settings", "results", "size data",
                "concentration warnings", "information", "data included"}


def detect_export(path) -> str | None:
    """Which instrument export a file is, by its content (the name is only a tie-break).

    Parameters
    ----------
    path : str or os.PathLike
        Any file.

    Returns
    -------
    str or None
        ``"nanosight_summary"`` (experiment or per-video summary CSV),
        ``"nanosight_particle_data"``, ``"nanosight_all_tracks"``, ``"nano"`` (.nano
        experiment file), ``"zetaview"`` (.txt export), or None if none of these.

    Raises
    ------
    nta.errors.ParseError
        The file does not exist or cannot be read.
    """
    data = _read_bytes(path)[:_SNIFF_BYTES]
    try:
        text = _decode(data, path)
    except ParseError:
        return None  # binary
    lines = [ln for ln in text.splitlines() if ln.strip()][:400]
    if not lines:
        return None
    head = "\n".join(lines[:5]).lower()
    name = str(path).lower()
    if "(nta export)" in head:
        return None  # nta's own `nta export-csv` file (vendor layout for spreadsheets), not an instrument's
    if "nta experiment summary file" in head or "nta single analysis summary file" in head:
        return "nanosight_summary"
    # ParticleData / AllTracks: a CSV header line with Particle ID
    for ln in lines[:20]:
        if "," not in ln:
            continue
        cells = [_norm(c) for c in _split_line(ln)]
        if any(c.startswith("particle id") for c in cells) and any(c.startswith("size") for c in cells):
            if "frame" in cells and ("x pixels" in cells or "x" in cells):
                return "nanosight_all_tracks"
            if any(c.startswith(("start frame", "tracklength", "track length")) for c in cells):
                return "nanosight_particle_data"
            if name.endswith("_alltracks.csv"):
                return "nanosight_all_tracks"
            return "nanosight_particle_data"
    sections = []
    for ln in lines:
        m = re.match(r"^\s*\[([^\]]+)\]\s*[,;]*\s*", ln)
        if m:
            sections.append(_norm(m.group(1)))
    if len(set(sections) & _NS_SECTIONS) >= 2:
        return "nanosight_summary"
    if {"filenames", "capturesettings"} & set(sections) or (
            sections and name.endswith(".nano")):
        return "nano"
    zv_keys = 0
    for ln in lines:
        n = _norm(ln.split(":", 1)[0]) if ":" in ln else ""
        if n.startswith(("zetaview", "number of traces", "laser wavelength", "dilution",
                         "median number", "average number of particles", "electrolyte")):
            zv_keys += 1
        cells = ln.split("\t")
        if len(cells) >= 2 and _norm(cells[0]).startswith("size") and _norm(
                cells[1]).startswith("number"):
            zv_keys += 2
    if ("zetaview" in text.lower() and zv_keys >= 1) or zv_keys >= 3:
        return "zetaview"
    return None


_READERS = {
    "nanosight_summary": read_nanosight_summary,
    "nanosight_particle_data": read_nanosight_particle_data,
    "nanosight_all_tracks": read_nanosight_all_tracks,
    "nano": read_nano_file,
    "zetaview": read_zetaview_txt,
}


def read_export(path):
    """Read any supported instrument export, choosing the reader by :func:`detect_export`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    NanoSightSummary, DataFrame, dict or ZetaViewExport
        Whatever the matching ``read_*`` function returns.

    Raises
    ------
    nta.errors.ParseError
        The file is not a recognised export, or is malformed.
    """
    kind = detect_export(path)
    if kind is None:
        raise ParseError(
            "is not a recognised instrument export (NanoSight summary / ParticleData / "
            "AllTracks CSV, .nano, ZetaView .txt)",
            path=path, fix="pass an export written by the instrument software")
    if kind == "nanosight_summary":
        text = _decode(_read_bytes(path)[:4096], path).lower()
        if "single analysis summary" in text:
            return read_nanosight_video_summary(path)
    return _READERS[kind](path)
