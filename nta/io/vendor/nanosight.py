"""Readers of Malvern NanoSight NTA exports.

Formats read
------------
``*ExperimentSummary.csv``
    "NTA Experiment Summary File": the summary of several videos of one sample, in
    ``[Section]`` blocks (``[Experiment Details]``, ``[Conditions]``, ``[Settings]``,
    ``[Results]``, ``[Concentration Warnings]``, ``[Information]``, ``[Size Data]``,
    optionally ``[Diffusion Coefficient Data]``), one column per video then
    ``Average`` and ``Standard Error``.  See :func:`read_nanosight_summary`.
``*_Summary.csv``
    The per-video summary ("NTA Single Analysis Summary File"), same section grammar with
    one video column.  See :func:`read_nanosight_video_summary`.
``*_ParticleData.csv``, ``*_AllTracks.csv``
    Per-particle and per-position tables.  See :func:`read_nanosight_particle_data` and
    :func:`read_nanosight_all_tracks`.
``*.nano``
    The INI-like experiment file.  See :func:`read_nano_file`.

Text is Windows-1252 (UTF-8 with a byte-order mark is accepted too).  Unit strings in
row labels and column headers are matched loosely (lower case, punctuation, units and
stray bytes ignored) because the vendor mangles them between versions.  Empty cells are
NaN, never 0.  Anything this module does not recognise is kept (``sections``, ``extra``,
``raw``); malformed input raises :class:`nta.errors.ParseError` naming the file, the
problem and the fix.
"""

from __future__ import annotations

import csv
import io
import math
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import ParseError

__all__ = [
    "NanoSightSummary",
    "read_nanosight_summary",
    "read_nanosight_video_summary",
    "read_nanosight_particle_data",
    "read_nanosight_all_tracks",
    "read_nano_file",
]

#: Sections an experiment summary is expected to have (in the vendor's spelling).
EXPECTED_SECTIONS = (
    "Experiment Details",
    "Conditions",
    "Settings",
    "Results",
    "Concentration Warnings",
    "Information",
    "Size Data",
)

_AVERAGE = "Average"
_STDERR = "Standard Error"

# ---------------------------------------------------------------------------------------
# text helpers (shared in spirit with zetaview.py; kept private to each module)
# ---------------------------------------------------------------------------------------


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ParseError("file not found", path=path, fix="check the path") from None
    except IsADirectoryError:
        raise ParseError("is a directory, not an export file", path=path,
                         fix="pass the export file itself") from None
    except OSError as exc:
        raise ParseError(f"cannot be read ({exc.strerror or exc})", path=path,
                         fix="check the file's permissions") from None


def _decode(data: bytes, path, default: str = "cp1252") -> str:
    """Decode export bytes: BOM-marked UTF-8/16 first, then strict UTF-8 if the file has
    non-ASCII bytes that form valid UTF-8, else ``default`` (undefined bytes replaced)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:4096]:
        raise ParseError("is binary, not a text export (NUL bytes found)", path=path,
                         fix="export the data as CSV/TXT from the instrument software")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(default, errors="replace")


def _norm(text) -> str:
    """Normalise a label for loose matching: ASCII, lower case, words only.

    ``"Temperature/°C"``, ``"Temperature/Â°C"`` and ``"temperature / C"`` all become
    ``"temperature c"``.
    """
    s = unicodedata.normalize("NFKD", str(text))
    s = s.replace("µ", "u").replace("μ", "u")
    s = s.encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return s.strip()


def _snake(text) -> str:
    return _norm(text).replace(" ", "_") or "unnamed"


_NUM_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _num(cell) -> float:
    """A cell as float: empty or non-numeric text → NaN (never 0)."""
    if cell is None:
        return math.nan
    if isinstance(cell, (int, float, np.integer, np.floating)):
        return float(cell)
    s = str(cell).strip()
    if not s:
        return math.nan
    if _NUM_RE.match(s):
        return float(s)
    low = s.lower()
    if low in ("nan", "inf", "-inf", "+inf"):
        return float(low)
    return math.nan


def _value(cell):
    """A cell as float if numeric, NaN if empty, else the stripped text."""
    s = "" if cell is None else str(cell).strip()
    if not s:
        return math.nan
    v = _num(s)
    return s if math.isnan(v) and s.lower() != "nan" else v


# ---------------------------------------------------------------------------------------
# experiment / video summary
# ---------------------------------------------------------------------------------------


@dataclass
class NanoSightSummary:
    """A parsed NanoSight summary export (experiment or single video).

    Tables are indexed by video name (``videos``) and, where the file has them, the rows
    ``"Average"`` and ``"Standard Error"``.  Fields of sections absent from the file are
    None and the section is listed in ``missing_sections``.

    Attributes
    ----------
    path : str
        The file read.
    kind : str
        ``"experiment"`` (ExperimentSummary.csv) or ``"video"`` (per-video Summary.csv).
    title : str
        First line of the file (e.g. ``"NTA Experiment Summary File"``).
    software_version : str or None
        E.g. ``"NTA 3.4 Build 3.4.003"`` (from the ``Created with`` line, else the
        ``Software Version`` key).
    details : dict of str to str
        ``[Experiment Details]`` key → value (first value cell), original keys.
    videos : list of str
        Video (column) names, in file order.
    processed : dict of str to bool or None
        Per video, the ``Processed`` row of ``[Experiment Details]`` if present.
    conditions : DataFrame or None
        ``[Conditions]``: ``temperature_c`` (°C), ``viscosity_mpas`` (mPa·s = cP),
        ``frame_rate_fps`` (1/s), ``shutter_ms`` (ms), ``camera_level``, ``slider_shutter``,
        ``slider_gain``, ``camera_type``, ``laser_type``, ``histogram_upper_limit``,
        ``histogram_lower_limit``, ``syringe_pump_speed_au``; unknown keys snake-cased.
    settings : DataFrame or None
        ``[Settings]``: ``detection_threshold``, ``max_jump_mode``,
        ``max_jump_distance_px`` (px), ``blur``, ``min_track_length``, ``first_frame``,
        ``n_frames_analysed``; unknown keys snake-cased.
    results : DataFrame or None
        ``[Results]``: ``dilution_factor`` (NaN where "Not recorded"),
        ``concentration_per_ml`` (particles/mL), ``concentration_upgrade``,
        ``particles_per_frame``, ``centres_per_frame``, ``completed_tracks``,
        ``drift_x_px_per_frame``, ``drift_y_px_per_frame`` (px/frame).
    concentration_warnings, information : DataFrame or None
        The instrument's QC flags (text), snake-cased keys.
    size_data : dict of str to DataFrame, or None
        Per weighting (``"number"``, ``"surface_area"``, ``"volume"``): ``mean_nm``,
        ``mode_nm``, ``sd_nm``, ``d10_nm``, ``d50_nm``, ``d90_nm`` (nm) and
        ``valid_tracks``.  For videos with 0 valid tracks the instrument writes 0 nm as a
        placeholder; those size statistics are NaN here (the raw 0 stays in ``sections``),
        and the videos are listed in ``empty_videos``.
    histograms : dict of str to DataFrame, or None
        Per weighting: ``bin_centre_nm`` (1-nm bins) then one column per video and
        ``Average`` / ``Standard Error`` if present; values are concentration per bin
        (particles/mL) as the vendor writes them.
    percentiles : dict of str to DataFrame, or None
        Per weighting: index ``percentile`` (0–100), one column per video, size in nm;
        NaN for ``empty_videos``.
    diffusion_data, diffusion_histograms, diffusion_percentiles : dict or None
        The same for ``[Diffusion Coefficient Data]`` when present, in the file's units
        (stat columns without unit suffix; ``bin_centre`` column).
    data_included : list of str
        Lines of ``[Data Included]``.
    exclusion_regions : list of str
        Lines of ``[Exclusion Regions]``.
    sections : dict of str to DataFrame or dict
        Every section as read (original keys, values as float where numeric, else text),
        including unknown ones.
    missing_sections : list of str
        Expected sections not found in the file.
    empty_videos : list of str
        Videos with no valid tracks (size statistics NaN).
    notes : list of str
        What the reader had to interpret (placeholders replaced, defaults assumed).
    """

    path: str
    kind: str
    title: str
    software_version: str | None
    details: dict
    videos: list
    processed: dict
    conditions: pd.DataFrame | None
    settings: pd.DataFrame | None
    results: pd.DataFrame | None
    concentration_warnings: pd.DataFrame | None
    information: pd.DataFrame | None
    size_data: dict | None
    histograms: dict | None
    percentiles: dict | None
    diffusion_data: dict | None = None
    diffusion_histograms: dict | None = None
    diffusion_percentiles: dict | None = None
    data_included: list = field(default_factory=list)
    exclusion_regions: list = field(default_factory=list)
    sections: dict = field(default_factory=dict)
    missing_sections: list = field(default_factory=list)
    empty_videos: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def n_videos(self) -> int:
        """Number of videos (columns)."""
        return len(self.videos)

    def _cond(self, name):
        if self.conditions is None or name not in self.conditions:
            return None
        return self.conditions.loc[self.videos, name].astype(float)

    @property
    def temperature_c(self) -> pd.Series | None:
        """Temperature per video, °C (None if the file has no ``[Conditions]``)."""
        return self._cond("temperature_c")

    @property
    def viscosity_mpas(self) -> pd.Series | None:
        """Viscosity per video, mPa·s (= cP)."""
        return self._cond("viscosity_mpas")

    @property
    def frame_rate_fps(self) -> pd.Series | None:
        """Frame rate per video, frames/s."""
        return self._cond("frame_rate_fps")


# label (normalised) regex → canonical name, per section; first match wins
_CONDITION_KEYS = [
    (r"^temperature", "temperature_c"),
    (r"^viscosity", "viscosity_mpas"),
    (r"^frame ?rate", "frame_rate_fps"),
    (r"^shutter", "shutter_ms"),
    (r"^camera type", "camera_type"),
    (r"^laser type", "laser_type"),
    (r"^camera level", "camera_level"),
    (r"^slider shutter", "slider_shutter"),
    (r"^slider gain", "slider_gain"),
    (r"^camera histogram upper", "histogram_upper_limit"),
    (r"^camera histogram lower", "histogram_lower_limit"),
    (r"^syringe pump speed", "syringe_pump_speed_au"),
]
_SETTING_KEYS = [
    (r"^detection threshold", "detection_threshold"),
    (r"^max jump mode", "max_jump_mode"),
    (r"^max jump dist", "max_jump_distance_px"),
    (r"^blur", "blur"),
    (r"^min(imum)? track length", "min_track_length"),
    (r"^first frame", "first_frame"),
    (r"^total frames", "n_frames_analysed"),
]
_RESULT_KEYS = [
    (r"^dilution", "dilution_factor"),
    (r"^concentration upgrade", "concentration_upgrade"),
    (r"^concentration", "concentration_per_ml"),
    (r"^particles per frame", "particles_per_frame"),
    (r"^centres per frame|^centers per frame", "centres_per_frame"),
    (r"^completed tracks", "completed_tracks"),
    (r"^x ?drift", "drift_x_px_per_frame"),
    (r"^y ?drift", "drift_y_px_per_frame"),
]
_SIZE_STAT_KEYS = [
    (r"^mean", "mean"),
    (r"^mode", "mode"),
    (r"^(sd|std|standard deviation)\b", "sd"),
    (r"^d ?10\b", "d10"),
    (r"^d ?50\b", "d50"),
    (r"^d ?90\b", "d90"),
    (r"^valid tracks", "valid_tracks"),
]
_TEXT_COLUMNS = {"camera_type", "laser_type", "max_jump_mode", "blur", "min_track_length",
                 "concentration_upgrade"}


def _canon(label, table) -> str:
    n = _norm(label)
    for pattern, name in table:
        if re.match(pattern, n):
            return name
    return _snake(label)


def _section_name(cell: str) -> str | None:
    m = re.match(r"^\s*\[(.*)\]\s*$", cell or "")
    return m.group(1).strip() if m else None


def _trim(row):
    row = [c.strip() for c in row]
    while row and not row[-1]:
        row.pop()
    return row


def _csv_rows(text: str, path) -> list:
    """CSV rows of a text (bare CR, LF or CRLF line ends), csv errors → ParseError."""
    try:
        return list(csv.reader(io.StringIO(text, newline=None)))
    except csv.Error as exc:
        raise ParseError(f"is not valid CSV ({exc})", path=path,
                         fix="re-export the file from the NanoSight software") from None


def _split_line(line: str) -> list:
    """One CSV line as cells (plain comma split if the csv module refuses it)."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return line.split(",")


def _split_sections(rows):
    """Rows → (preamble rows, [(name, header row, body rows), ...]) in file order."""
    preamble, sections, current = [], [], None
    for row in rows:
        name = _section_name(row[0]) if row else None
        if name is not None:
            current = (name, row, [])
            sections.append(current)
        elif current is None:
            preamble.append(row)
        else:
            current[2].append(row)
    return preamble, sections


def _kv_section(body):
    """Key/value rows → dict key → list of value cells (trailing empties trimmed)."""
    out = {}
    for row in body:
        row = _trim(row)
        if not row or not row[0]:
            continue
        out[row[0]] = row[1:]
    return out


def _column_labels(header_row, n):
    """Column labels for cells 1.. of a per-video table: videos then Average / SE.

    The vendor puts the ``Average`` / ``Standard Error`` labels on the section's own
    header line (``[Results],,,,,,Average,Standard Error``); default positions n+1, n+2.
    """
    labels = {}
    for i, c in enumerate(header_row[1:], start=1):
        nc = _norm(c)
        if nc.startswith("average") or nc.endswith("average"):
            labels[i] = _AVERAGE
        elif nc.startswith("standard error") or nc in ("se", "sem"):
            labels[i] = _STDERR
    if not labels:
        labels = {n + 1: _AVERAGE, n + 2: _STDERR}
    return labels


def _video_table(body, videos, header_row, table, text_ok=True):
    """A per-video section as (tidy DataFrame index=video(+Average/SE), raw DataFrame)."""
    n = len(videos)
    extra_labels = _column_labels(header_row, n)
    keys, cells = [], []
    for row in body:
        row = [c.strip() for c in row]
        if not row or not row[0]:
            continue
        keys.append(row[0])
        cells.append(row[1:])
    if not keys:
        return None, None
    labels = list(videos)
    positions = list(range(1, n + 1))
    for pos in sorted(extra_labels):
        # keep Average / SE columns only if some row has a value there
        if any(len(v) >= pos and v[pos - 1] for v in cells):
            labels.append(extra_labels[pos])
            positions.append(pos)
    values = [[_value(v[p - 1]) if len(v) >= p else math.nan for p in positions]
              for v in cells]
    raw = pd.DataFrame(values, index=pd.Index(keys, name="key"), columns=labels, dtype=object)
    tidy = {}
    for k, vals in zip(keys, values):
        name = _canon(k, table)
        if name in tidy:  # duplicate label: keep the first, suffix the others
            i = 2
            while f"{name}_{i}" in tidy:
                i += 1
            name = f"{name}_{i}"
        nums = [_num(v) for v in vals]
        texts = [v for v in vals if isinstance(v, str)]
        if texts and (name in _TEXT_COLUMNS or all(math.isnan(x) for x in nums)) and text_ok:
            if name == "dilution_factor":
                tidy[name] = nums  # "Not recorded" → NaN; raw text stays in sections
            else:
                tidy[name] = [v if isinstance(v, str) else math.nan for v in vals]
        else:
            tidy[name] = nums
    df = pd.DataFrame(tidy, index=pd.Index(labels, name="video"))
    return df, raw


def _numeric_block(rows, start):
    """Numeric rows from ``start`` until a blank / non-numeric first cell."""
    out, i = [], start
    while i < len(rows):
        row = rows[i]
        if not row or not row[0].strip() or math.isnan(_num(row[0])):
            break
        out.append(row)
        i += 1
    return out, i


def _parse_distribution_section(body, videos, domain, path, notes):
    """``[Size Data]`` / ``[Diffusion Coefficient Data]`` → (stats, histograms, percentiles).

    Grammar: optional ``Analysis Method``, then one or more blocks each opened by
    ``Weighting,<Number|Surface Area|Volume>`` (missing → Number) holding a ``Filename``
    row, statistic rows (Mean, Mode, SD, D10, D50, D90, Valid Tracks), ``Graph Data``,
    a ``Bin centre`` header + numeric rows, then a ``Percentile`` header + numeric rows.
    """
    stats, hists, pcts = {}, {}, {}
    weight = "number"
    n = len(videos)
    unit_suffix = "_nm" if domain == "size" else ""
    bin_col = "bin_centre_nm" if domain == "size" else "bin_centre"
    stat_rows: dict = {}
    i = 0
    cur_videos = list(videos)
    avg_pos = {}

    def flush():
        if stat_rows:
            labels = list(cur_videos)
            positions = list(range(1, len(cur_videos) + 1))
            for pos, lab in sorted(avg_pos.items()):
                if any(len(v) >= pos and v[pos - 1].strip() for v in stat_rows.values()):
                    labels.append(lab)
                    positions.append(pos)
            cols = {}
            for key, vals in stat_rows.items():
                name = _canon(key, _SIZE_STAT_KEYS)
                if name != "valid_tracks" and name in ("mean", "mode", "sd", "d10", "d50", "d90"):
                    name += unit_suffix
                cols[name] = [_num(vals[p - 1]) if len(vals) >= p else math.nan for p in positions]
            stats[weight] = pd.DataFrame(cols, index=pd.Index(labels, name="video"))

    while i < len(body):
        row = body[i]
        cells = [c.strip() for c in row]
        first = _norm(cells[0]) if cells else ""
        if not first:
            i += 1
            continue
        if first == "weighting":
            flush()
            stat_rows = {}
            weight = _snake(cells[1]) if len(cells) > 1 and cells[1] else "number"
            i += 1
            continue
        if first.startswith("filename"):
            names = _trim(cells)[1:]
            cur = [c for c in names if _norm(c) not in ("average", "standard error")]
            avg_pos = {}
            for j, c in enumerate(cells[1:], start=1):
                if _norm(c) == "average":
                    avg_pos[j] = _AVERAGE
                elif _norm(c) == "standard error":
                    avg_pos[j] = _STDERR
            if not avg_pos:
                avg_pos = {n + 1: _AVERAGE, n + 2: _STDERR}
            if cur and cur != list(videos):
                notes.append(f"[{domain}] Filename row {cur} differs from the video list "
                             f"{list(videos)}; the video list is used")
            i += 1
            continue
        if first.startswith("analysis method") or first.startswith("graph data"):
            i += 1
            continue
        if first.startswith("bin centre") or first.startswith("bin center"):
            header = cells
            data, i = _numeric_block(body, i + 1)
            cols = {bin_col: [_num(r[0]) for r in data]}
            for j, v in enumerate(videos, start=1):
                cols[v] = [_num(r[j]) if len(r) > j else math.nan for r in data]
            for j in range(n + 1, len(header)):
                h = _norm(header[j])
                if not h:
                    continue
                lab = _AVERAGE if "average" in h else (_STDERR if "standard error" in h else header[j])
                cols[lab] = [_num(r[j]) if len(r) > j else math.nan for r in data]
            hists[weight] = pd.DataFrame(cols)
            continue
        if first.startswith("percentile"):
            data, i = _numeric_block(body, i + 1)
            cols = {v: [_num(r[j]) if len(r) > j else math.nan for r in data]
                    for j, v in enumerate(videos, start=1)}
            pcts[weight] = pd.DataFrame(
                cols, index=pd.Index([_num(r[0]) for r in data], name="percentile"))
            continue
        # a statistic row (Mean, Mode, ...) or an unknown key
        stat_rows[cells[0]] = cells[1:]
        i += 1
    flush()
    label = "Size Data" if domain == "size" else "Diffusion Coefficient Data"
    for w in stats:
        if w not in hists:
            notes.append(f"[{label}] {w}: no 'Bin centre' histogram table")
        if w not in pcts:
            notes.append(f"[{label}] {w}: no 'Percentile' table")
    return stats or None, hists or None, pcts or None


def _parse_summary(path, kind: str) -> NanoSightSummary:
    text = _decode(_read_bytes(path), path)
    if not text.strip():
        raise ParseError("is empty", path=path,
                         fix="re-export the summary from the NanoSight NTA software")
    rows = _csv_rows(text, path)
    preamble, raw_sections = _split_sections(rows)
    if not raw_sections:
        raise ParseError(
            "is not a NanoSight summary export: no [Section] lines found "
            "(expected e.g. [Experiment Details], [Conditions], [Size Data])",
            path=path,
            fix="pass an NTA *ExperimentSummary.csv or per-video *_Summary.csv as exported "
                "by the NanoSight software",
        )
    notes: list[str] = []
    pre = [_trim(r) for r in preamble]
    pre = [r for r in pre if r]
    title = pre[0][0] if pre else ""
    software = None
    for r in pre:
        m = re.match(r"^\s*created with\s+(.*)$", r[0], re.IGNORECASE)
        if m:
            software = m.group(1).strip()

    by_name: dict = {}
    for name, header, body in raw_sections:
        key = name
        if key in by_name:  # duplicate section: merge bodies
            by_name[key][1].extend(body)
        else:
            by_name[key] = (header, list(body))
    norm_names = {_norm(k): k for k in by_name}
    if not set(norm_names) & {_norm(s) for s in EXPECTED_SECTIONS}:
        raise ParseError(
            "is not a NanoSight summary export: none of the sections "
            + ", ".join(f"[{s}]" for s in EXPECTED_SECTIONS) + f" found (sections: "
            + ", ".join(f"[{k}]" for k in by_name) + ")",
            path=path,
            fix="pass an NTA *ExperimentSummary.csv or per-video *_Summary.csv as exported "
                "by the NanoSight software")

    def get(section):
        k = norm_names.get(_norm(section))
        return (k, *by_name[k]) if k is not None else (None, None, None)

    sections: dict = {}
    # --- experiment details & video names
    k, header, body = get("Experiment Details")
    details, processed, videos = {}, {}, []
    if k is not None:
        kv = _kv_section(body)
        sections[k] = kv
        for key, vals in kv.items():
            nk = _norm(key)
            if nk == "filename":
                videos = [v for v in vals]
            elif nk == "processed":
                continue
            else:
                details[key] = vals[0] if vals else ""
        for key, vals in kv.items():
            if _norm(key) == "processed":
                processed = {v: (None if j >= len(vals) or not vals[j]
                                 else vals[j].strip().lower() in ("yes", "true", "1"))
                             for j, v in enumerate(videos)}
    if software is None:
        sv = next((v for kk, v in details.items() if _norm(kk) == "software version"), None)
        if sv and _norm(sv) != "unknown":
            software = sv
    # fall back to the Size Data Filename row
    if not videos:
        k2, _, body2 = get("Size Data")
        if k2 is not None:
            for row in body2:
                if row and _norm(row[0]).startswith("filename"):
                    videos = [c.strip() for c in _trim(row)[1:]
                              if _norm(c) not in ("average", "standard error")]
                    notes.append("video names taken from the [Size Data] Filename row")
                    break
    if not videos:
        # last resort: count the value columns of [Conditions]
        k3, _, body3 = get("Conditions")
        n = max((len(_trim(r)) - 1 for r in (body3 or [])), default=0)
        if n <= 0:
            raise ParseError(
                "has no video names (no 'Filename:' row in [Experiment Details] or "
                "[Size Data]) and no per-video values",
                path=path, fix="re-export the summary from the NanoSight NTA software")
        videos = [f"video_{j}" for j in range(1, n + 1)]
        notes.append("no Filename row: videos named video_1..video_n")
    if any(not v for v in videos):
        videos = [v or f"video_{j}" for j, v in enumerate(videos, start=1)]
        notes.append("empty video name(s) replaced by video_<column>")
    if len(set(videos)) != len(videos):
        seen: dict = {}
        fixed = []
        for v in videos:
            seen[v] = seen.get(v, 0) + 1
            fixed.append(v if seen[v] == 1 else f"{v}_{seen[v]}")
        videos = fixed
        notes.append("duplicate video names suffixed _2, _3, ...")

    def table(section, keys):
        k, header, body = get(section)
        if k is None:
            return None
        tidy, raw = _video_table(body, videos, header, keys)
        sections[k] = raw
        return tidy

    conditions = table("Conditions", _CONDITION_KEYS)
    settings = table("Settings", _SETTING_KEYS)
    results = table("Results", _RESULT_KEYS)
    warnings = table("Concentration Warnings", [])
    information = table("Information", [])

    def lines(section):
        k, _, body = get(section)
        if k is None:
            return []
        out = [", ".join(_trim(r)) for r in body if _trim(r)]
        sections[k] = out
        return out

    data_included = lines("Data Included")
    exclusion = lines("Exclusion Regions")

    size_data = histograms = percentiles = None
    k, _, body = get("Size Data")
    if k is not None:
        size_data, histograms, percentiles = _parse_distribution_section(
            body, videos, "size", path, notes)
        sections[k] = {"stats": size_data, "histograms": histograms, "percentiles": percentiles}
        size_data = None if size_data is None else {w: d.copy() for w, d in size_data.items()}
        percentiles = None if percentiles is None else {w: d.copy() for w, d in percentiles.items()}
    diff_data = diff_hist = diff_pct = None
    k, _, body = get("Diffusion Coefficient Data")
    if k is not None:
        diff_data, diff_hist, diff_pct = _parse_distribution_section(
            body, videos, "diffusion", path, notes)
        sections[k] = {"stats": diff_data, "histograms": diff_hist, "percentiles": diff_pct}

    # unknown sections: kept as key → values
    known = {_norm(s) for s in EXPECTED_SECTIONS} | {
        "data included", "exclusion regions", "diffusion coefficient data"}
    for name, (header, body) in by_name.items():
        if _norm(name) not in known:
            sections[name] = _kv_section(body)

    # empty videos: 0 valid tracks → the instrument's 0-nm statistics are placeholders
    empty: list[str] = []
    if size_data is not None:
        for w, df in size_data.items():
            if "valid_tracks" not in df:
                continue
            vt = df.loc[[v for v in videos if v in df.index], "valid_tracks"]
            for v, cnt in vt.items():
                if cnt == 0 or (math.isnan(cnt) and df.loc[v].drop("valid_tracks").fillna(0).eq(0).all()):
                    if v not in empty:
                        empty.append(v)
                    stat_cols = [c for c in df.columns if c != "valid_tracks"]
                    df.loc[v, stat_cols] = math.nan
                    if percentiles is not None and w in percentiles and v in percentiles[w]:
                        percentiles[w][v] = math.nan
        if empty:
            notes.append("videos with 0 valid tracks: size statistics and percentiles set to "
                         "NaN (the file writes 0 as placeholder): " + ", ".join(empty))

    present = {_norm(n) for n in by_name}
    expected = EXPECTED_SECTIONS if kind == "experiment" else (
        "Conditions", "Settings", "Results", "Size Data")
    missing = [s for s in expected if _norm(s) not in present]
    if missing:
        notes.append("missing sections: " + ", ".join(f"[{s}]" for s in missing))

    return NanoSightSummary(
        path=str(path), kind=kind, title=title, software_version=software, details=details,
        videos=videos, processed=processed, conditions=conditions, settings=settings,
        results=results, concentration_warnings=warnings, information=information,
        size_data=size_data, histograms=histograms, percentiles=percentiles,
        diffusion_data=diff_data, diffusion_histograms=diff_hist,
        diffusion_percentiles=diff_pct, data_included=data_included,
        exclusion_regions=exclusion, sections=sections, missing_sections=missing,
        empty_videos=empty, notes=notes,
    )


def read_nanosight_summary(path) -> NanoSightSummary:
    """Read a NanoSight ``*ExperimentSummary.csv`` ("NTA Experiment Summary File").

    Parameters
    ----------
    path : str or os.PathLike
        The export (cp1252 text; UTF-8 with BOM accepted).

    Returns
    -------
    NanoSightSummary
        Per-video tables (conditions in °C / mPa·s / frames/s, results in particles/mL
        and px/frame, size statistics in nm), histograms on the vendor's 1-nm bins,
        percentiles, every raw section, and the list of missing sections.

    Raises
    ------
    nta.errors.ParseError
        The file is missing, binary, empty, or has no NanoSight ``[Section]`` structure.

    Examples
    --------
    >>> s = read_nanosight_summary("beads2.csv")  # doctest: +SKIP
    >>> s.size_data["number"].loc["Average", "d50_nm"]  # doctest: +SKIP
    99.8
    """
    return _parse_summary(path, "experiment")


def read_nanosight_video_summary(path) -> NanoSightSummary:
    """Read a NanoSight per-video ``*_Summary.csv`` ("NTA Single Analysis Summary File").

    Same section grammar and result as :func:`read_nanosight_summary`, usually with one
    video column; ``kind`` is ``"video"`` and only ``[Conditions]``, ``[Settings]``,
    ``[Results]`` and ``[Size Data]`` are expected (others are read when present).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    NanoSightSummary

    Raises
    ------
    nta.errors.ParseError
        As :func:`read_nanosight_summary`.
    """
    return _parse_summary(path, "video")


# ---------------------------------------------------------------------------------------
# ParticleData / AllTracks
# ---------------------------------------------------------------------------------------

_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}

_PARTICLE_COLUMNS = [
    (r"^particle( id)?$|^particle id", "particle"),
    (r"^size", "diameter_nm"),
    (r"^diffusion", "D_um2_s"),
    (r"^ln ?adjusted intensity|^ln intensity|^adjusted intensity|intensity", "ln_intensity"),
    (r"^start frame", "frame_start"),
    (r"^track ?length", "track_length"),
    (r"^included", "included"),
    (r"^frame( number)?$", "frame"),
    (r"^x( pixels| px| position)?$", "x"),
    (r"^y( pixels| px| position)?$", "y"),
]
_INT_COLUMNS = ("particle", "frame_start", "track_length", "frame")


def _diffusion_scale(header: str) -> float:
    """Factor to µm²/s from the unit in a diffusion-coefficient header (default nm²/s)."""
    h = str(header)
    hn = h.lower().replace("µ", "u").replace("μ", "u")
    if re.search(r"\bum\s*\^?\s*2|um2|um\*\*2|micron", hn):
        return 1.0
    if re.search(r"e-?\s*12\s*m|m\^?2\s*/\s*s(?!.*nm)", hn) and "nm" not in hn:
        return 1e12  # m²/s
    return 1e-6  # nm²/s (the vendor's unit)


def _read_particle_table(path, required, what):
    text = _decode(_read_bytes(path), path)
    lines = text.splitlines()
    hdr_i = None
    for i, line in enumerate(lines[:50]):
        cells = _split_line(line)
        names = [_canon(c, _PARTICLE_COLUMNS) for c in cells]
        if "particle" in names and ("diameter_nm" in names or "D_um2_s" in names):
            hdr_i = i
            break
    if hdr_i is None:
        raise ParseError(
            f"is not a NanoSight {what} export: no header line with 'Particle ID' and "
            "'Size/nm' in the first 50 lines",
            path=path,
            fix=f"pass the *_{what}.csv written by the NanoSight software, header line "
                "included")
    header = [c.strip() for c in _split_line(lines[hdr_i])]
    while header and not header[-1]:
        header.pop()
    names = []
    for c in header:
        nm = _canon(c, _PARTICLE_COLUMNS)
        names.append(nm if nm not in names else _snake(c) + f"_{len(names)}")
    missing = [r for r in required if r not in names]
    if missing:
        raise ParseError(
            f"{what} header lacks column(s) {missing} (header: {header})",
            path=path, fix=f"export the full {what} table from the NanoSight software")
    notes = []
    ncol = len(header)
    body_lines = lines[hdr_i + 1:]
    while body_lines and not body_lines[-1].strip(",; \t"):
        body_lines.pop()
    # a truncated last line (file cut mid-write) is dropped and noted
    if body_lines and not text.endswith(("\n", "\r")):
        last = _trim(_split_line(body_lines[-1]))
        if len(last) < ncol:
            notes.append(f"last line ({hdr_i + 1 + len(body_lines)}) truncated "
                         f"({len(last)} of {ncol} fields); dropped")
            body_lines.pop()
    spare = 8  # tolerate trailing empty fields; non-empty surplus fields are an error
    flag_cols = [k for k, nm in enumerate(names) if nm == "included"]
    try:
        table = pd.read_csv(
            io.StringIO("\n".join(body_lines)), header=None, names=list(range(ncol + spare)),
            dtype={k: str for k in flag_cols}, keep_default_na=False, na_values=[""],
            skipinitialspace=True, skip_blank_lines=True, index_col=False, engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ParseError(
            f"{what} rows cannot be split into the header's {ncol} columns "
            f"({str(exc).strip().splitlines()[-1]})",
            path=path, fix="check that the file was not edited or concatenated") from None

    def _blank(c):
        if c.dtype.kind in "biuf":
            return c.isna()
        return c.isna() | c.astype(str).str.strip().eq("")

    surplus = ~pd.concat([_blank(table[k]) for k in range(ncol, ncol + spare)], axis=1).all(axis=1)
    if surplus.any():
        j = int(np.flatnonzero(surplus.to_numpy())[0])
        nf = max(k for k in range(ncol + spare) if not _blank(table[k].iloc[[j]]).iloc[0]) + 1
        raise ParseError(
            f"data row {j + 1} has {nf} fields, the header has {ncol}",
            path=path, fix="check that the file was not edited or concatenated")
    table = table.iloc[:, :ncol]
    empty_row = pd.concat([_blank(table[k]) for k in range(ncol)], axis=1).all(axis=1)
    table = table[~empty_row].reset_index(drop=True)
    known_names = {n for _, n in _PARTICLE_COLUMNS}
    out = {}
    for k, (nm, h) in enumerate(zip(names, header)):
        col = table[k]
        if nm == "included":
            low = col.str.strip().str.lower()
            flag = low.map({**{t: True for t in _TRUE}, **{f: False for f in _FALSE}})
            bad = flag.isna() & low.notna() & low.ne("")
            if bad.any():
                j = int(np.flatnonzero(bad.to_numpy())[0])
                raise ParseError(
                    f"'{h}' value {col[j]!r} (data row {j + 1}) is not True/False, 1/0 or "
                    "Yes/No", path=path, fix="check the file was exported unedited")
            if flag.isna().any():
                out[nm] = pd.array([None if pd.isna(v) else bool(v) for v in flag],
                                   dtype="boolean")
            else:
                out[nm] = flag.to_numpy(dtype=bool)
            continue
        if col.dtype.kind in "biuf":
            nums = col.to_numpy(dtype=float)
            bad = np.zeros(len(nums), dtype=bool)
        else:  # some cell is not a number: find it (slow path, odd files only)
            sc = col.astype(object).where(col.notna(), "").astype(str).str.strip()
            nums = pd.to_numeric(sc.where(sc.ne(""), None), errors="coerce").to_numpy(
                dtype=float, na_value=np.nan)
            bad = np.isnan(nums) & sc.ne("").to_numpy() & sc.str.lower().ne("nan").to_numpy()
        if nm not in known_names:
            out[h] = col.map(_value).tolist() if bad.any() else nums
            continue
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ParseError(
                f"column '{h}' has a non-numeric value {col[j]!r} on data row {j + 1}",
                path=path, fix="check the file for damage or re-export it")
        if nm == "D_um2_s":
            nums = nums * _diffusion_scale(h)
        if nm in _INT_COLUMNS:
            if np.isnan(nums).any():
                out[nm] = pd.array([None if math.isnan(v) else int(v) for v in nums],
                                   dtype="Int64")
            else:
                out[nm] = nums.astype(np.int64)
        else:
            out[nm] = nums
    df = pd.DataFrame(out)
    df.attrs["source"] = str(path)
    df.attrs["columns_raw"] = dict(zip(names, header))
    df.attrs["extra_columns"] = [h for nm, h in zip(names, header)
                                 if nm not in {n for _, n in _PARTICLE_COLUMNS}]
    df.attrs["notes"] = notes
    df.attrs["truncated"] = bool(notes)
    return df


def read_nanosight_particle_data(path) -> pd.DataFrame:
    """Read a NanoSight ``*_ParticleData.csv`` (one row per tracked particle).

    Parameters
    ----------
    path : str or os.PathLike
        Columns ``Particle ID, Size/nm, Diffusion coefficient/nm^2 s^-1,
        Ln(Adjusted intensity)/AU, Start frame, Tracklength, Included in distribution?``
        (matched loosely; extra columns kept under their original names).

    Returns
    -------
    DataFrame
        ``particle`` (int), ``diameter_nm`` (nm), ``D_um2_s`` (µm²/s, = nm²/s ÷ 1e6),
        ``ln_intensity`` (ln AU), ``frame_start`` (frame), ``track_length`` (frames),
        ``included`` (bool; True/False, 1/0 and Yes/No accepted). Empty cells are NaN
        (nullable ``Int64`` / ``boolean`` dtypes where needed). ``attrs`` holds
        ``source``, ``columns_raw``, ``extra_columns``, ``notes`` and ``truncated`` (a cut
        last line is dropped and reported there).

    Raises
    ------
    nta.errors.ParseError
        No header line, required columns missing, non-numeric values, bad flags.
    """
    return _read_particle_table(path, ("particle", "diameter_nm", "D_um2_s"), "ParticleData")


def read_nanosight_all_tracks(path) -> pd.DataFrame:
    """Read a NanoSight ``*_AllTracks.csv`` (one row per particle position).

    Parameters
    ----------
    path : str or os.PathLike
        Columns ``Particle ID, Size/nm, Diffusion coefficient/nm^2 s^-1, Frame,
        X/pixels, Y/pixels, Ln(Adjusted intensity)/AU, Included in distribution?``.

    Returns
    -------
    DataFrame
        trackpy-like: ``particle`` (int), ``frame`` (int), ``x``, ``y`` (px),
        ``diameter_nm`` (nm), ``D_um2_s`` (µm²/s), ``ln_intensity``, ``included`` (bool);
        ``attrs`` as in :func:`read_nanosight_particle_data`.

    Raises
    ------
    nta.errors.ParseError
        As :func:`read_nanosight_particle_data`, or no Frame / X / Y column.
    """
    return _read_particle_table(path, ("particle", "frame", "x", "y"), "AllTracks")


# ---------------------------------------------------------------------------------------
# .nano experiment file
# ---------------------------------------------------------------------------------------

_NANO_CAPTURE_KEYS = [
    (r"^(camera )?frame ?rate|^fps$", "frame_rate_fps"),
    (r"^(number of |num |n )?frames?( count| number)?$|^frame ?count|^total frames|^nframes",
     "n_frames"),
    (r"^temp", "temperature_c"),
    (r"^visc", "viscosity_mpas"),
]


def read_nano_file(path) -> dict:
    """Read a NanoSight ``.nano`` experiment file (INI-like).

    Parameters
    ----------
    path : str or os.PathLike
        ``[Section]`` lines and ``key=value`` lines (``key: value`` accepted);
        ``[Filenames]`` lists the videos (as values or bare lines), ``[CaptureSettings]``
        holds frame rate, frame count, temperature and viscosity.

    Returns
    -------
    dict
        ``videos`` (list of str, file order), ``frame_rate_fps`` (1/s), ``n_frames``
        (int), ``temperature_c`` (°C), ``viscosity_mpas`` (mPa·s) — None where absent —,
        ``missing`` (list of those absent), ``sections`` (dict section → dict key → value,
        original text) and ``path``.

    Raises
    ------
    nta.errors.ParseError
        The file has no ``[Section]`` lines, or neither ``[Filenames]`` nor
        ``[CaptureSettings]``.
    """
    text = _decode(_read_bytes(path), path)
    sections: dict = {}
    order: dict = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        name = _section_name(line)
        if name is not None:
            current = sections.setdefault(name, {})
            order.setdefault(name, [])
            continue
        if current is None:
            continue
        m = re.match(r"^([^=]+?)\s*=\s*(.*)$", line) or re.match(r"^([^:]+?)\s*:\s+(.*)$", line)
        if m:
            key, val = m.group(1).strip(), m.group(2).strip().strip('"')
        else:
            key, val = f"_{len(current)}", line.strip('"')
        sname = next(k for k, v in sections.items() if v is current)
        if key in current:
            i = 2
            while f"{key}_{i}" in current:
                i += 1
            key = f"{key}_{i}"
        current[key] = val
        order[sname].append(key)
    if not sections:
        raise ParseError("is not a .nano experiment file: no [Section] lines found",
                         path=path, fix="pass the .nano file saved by the NanoSight software")
    norm = {_norm(k): k for k in sections}
    fn = norm.get("filenames") or norm.get("files") or norm.get("videos")
    cap = norm.get("capturesettings") or norm.get("capture settings") or norm.get("capture")
    if fn is None and cap is None:
        raise ParseError(
            "is not a .nano experiment file: neither [Filenames] nor [CaptureSettings] "
            f"found (sections: {list(sections)})",
            path=path, fix="pass the .nano file saved by the NanoSight software")
    videos = []
    if fn is not None:
        for k, v in sections[fn].items():
            if _norm(k) in ("count", "number", "n", "numfiles", "num files", "number of files"):
                continue
            if v:
                videos.append(v)
    out = {"path": str(path), "videos": videos, "frame_rate_fps": None, "n_frames": None,
           "temperature_c": None, "viscosity_mpas": None}
    if cap is not None:
        for k, v in sections[cap].items():
            name = _canon(k, _NANO_CAPTURE_KEYS)
            if name in out and out[name] is None:
                x = _num(v.replace(",", ".") if re.fullmatch(r"[+-]?\d+,\d+", v.strip()) else v)
                if not math.isnan(x):
                    out[name] = int(x) if name == "n_frames" else x
    out["missing"] = [k for k in ("frame_rate_fps", "n_frames", "temperature_c",
                                  "viscosity_mpas") if out[k] is None]
    if fn is None:
        out["missing"].insert(0, "videos")
    out["sections"] = sections
    return out
