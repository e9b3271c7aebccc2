"""Reader of Particle Metrix ZetaView ``.txt`` exports.

The export is a header of ``Key: value`` lines (``Operator:``, ``Experiment:``,
``ZetaView S/N:``, ``Software:``, ``Sample:``, ``Electrolyte:``, ``Temperature:``,
``Viscosity:``, ``Dilution::`` (sic, two colons), ``Laser Wavelength nm:``,
``Number of Traces:``, ``Average Number of Particles:``, ``Median Number (D50):``,
camera lines with the frame rate, ``Sensitivity:``, ``Shutter:``, ...; spellings vary
between software versions) followed by a tab-separated ``Size Distribution`` table
(``Size / nm``, ``Number``, ``Concentration / cm-3``, ``Volume / nm^3``,
``Area / nm^2``): a linear section, then a logarithmic one.

Files are ISO-8859-1 with CRLF line ends; German-locale installs write decimal commas
(``23,27``), detected per file.  Keys are matched loosely (lower case, units, brackets
and odd bytes ignored); unknown keys and columns are kept.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import ParseError

__all__ = ["ZetaViewExport", "read_zetaview_txt"]


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ParseError("file not found", path=path, fix="check the path") from None
    except IsADirectoryError:
        raise ParseError("is a directory, not an export file", path=path,
                         fix="pass the ZetaView .txt export itself") from None
    except OSError as exc:
        raise ParseError(f"cannot be read ({exc.strerror or exc})", path=path,
                         fix="check the file's permissions") from None


def _decode(data: bytes, path) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:4096]:
        raise ParseError("is binary, not a text export (NUL bytes found)", path=path,
                         fix="pass the ZetaView .txt export")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")


def _norm(text) -> str:
    s = unicodedata.normalize("NFKD", str(text))
    s = s.replace("µ", "u").replace("μ", "u")
    s = s.encode("ascii", "ignore").decode("ascii").lower()
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return s.strip()


def _snake(text) -> str:
    return _norm(text).replace(" ", "_") or "unnamed"


_NUMBER = r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?"
_NUM_FULL = re.compile(rf"^{_NUMBER}$")
_NUM_ANY = re.compile(_NUMBER)


def _to_float(token: str, decimal_comma: bool) -> float:
    s = token.strip()
    if not s:
        return math.nan
    if decimal_comma:
        if re.fullmatch(r"[+-]?\d{1,3}(\.\d{3})+(,\d*)?([eE][+-]?\d+)?", s):
            s = s.replace(".", "")
        s = s.replace(",", ".")
    try:
        return float(s)
    except ValueError:
        return math.nan


def _first_number(value: str, decimal_comma: bool) -> float:
    """First number in a header value (``"23,27 °C"`` → 23.27); NaN if none."""
    m = _NUM_ANY.search(value or "")
    if not m:
        return math.nan
    tok = m.group(0)
    if not decimal_comma and "," in tok:
        # "1,000" in a point-decimal file: thousands separator
        tok = tok.replace(",", "") if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", tok) else tok.split(",")[0]
    return _to_float(tok, decimal_comma)


# normalised key regex → canonical name (first match wins)
_HEADER_KEYS = [
    (r"^operator", "operator"),
    (r"^experiment", "experiment"),
    (r"^zetaview s ?n|^serial", "serial_number"),
    (r"^cell s ?n", "cell_serial_number"),
    (r"^software", "software"),
    (r"^sop", "sop"),
    (r"^sample", "sample"),
    (r"^electrolyte", "electrolyte"),
    (r"^ph\b", "ph"),
    (r"^conductivity", "conductivity"),
    (r"^temp(erature)? ?sensed", "temperature_sensed_c"),
    (r"^temp", "temperature_c"),
    (r"^viscosity", "viscosity_mpas"),
    (r"^dilution", "dilution"),
    (r"^laser wave ?length", "laser_wavelength_nm"),
    (r"^(number|no|num) of traces|^traces", "n_traces"),
    (r"^average number of particles|^avg number of particles", "avg_particles_per_frame"),
    (r"^median number|^median d50|^number median|^d50", "d50_nm"),
    (r"^median volume", "d50_volume_nm"),
    (r"^median area", "d50_area_nm"),
    (r"^(camera )?frame ?rate|^fps", "frame_rate_fps"),
    (r"^sensitivity", "sensitivity"),
    (r"^shutter", "shutter"),
    (r"^date", "date"),
    (r"^time", "time"),
    (r"^original file", "original_file"),
    (r"^section", "section"),
]
_NUMERIC_KEYS = {"temperature_c", "temperature_sensed_c", "viscosity_mpas", "dilution",
                 "laser_wavelength_nm", "n_traces", "avg_particles_per_frame", "d50_nm",
                 "d50_volume_nm", "d50_area_nm", "frame_rate_fps", "sensitivity", "shutter",
                 "ph"}

_TABLE_COLUMNS = [
    (r"^size", "size_nm"),
    (r"^number", "number"),
    (r"^concentration", "concentration_per_cm3"),
    (r"^volume", "volume_nm3"),
    (r"^area", "area_nm2"),
]


def _canon(label, table):
    n = _norm(label)
    for pattern, name in table:
        if re.match(pattern, n):
            return name
    return _snake(label)


@dataclass
class ZetaViewExport:
    """A parsed ZetaView ``.txt`` export.

    Attributes
    ----------
    path : str
        The file read.
    header : dict
        Normalised key → value: numbers (float) for the known numeric keys, else text.
        Known keys: ``operator``, ``experiment``, ``serial_number``, ``software``,
        ``sample``, ``electrolyte``, ``temperature_c``, ``viscosity_mpas``, ``dilution``,
        ``laser_wavelength_nm``, ``n_traces``, ``avg_particles_per_frame``, ``d50_nm``,
        ``frame_rate_fps``, ``sensitivity``, ``shutter``, ...; unknown keys snake-cased.
    raw : dict
        Original key → original value text, every header line.
    temperature_c : float or None
        Sample temperature, °C.
    viscosity_mpas : float or None
        Viscosity, mPa·s (= cP).
    dilution : float or None
        Dilution factor.
    frame_rate_fps : float or None
        Camera frame rate, frames/s (from a ``Frame rate`` key or a camera line).
    n_traces : int or None
        Number of traces (tracks) used.
    d50_nm : float or None
        Number-weighted median diameter, nm.
    laser_wavelength_nm : float or None
    sensitivity, shutter : float or None
        Camera settings (instrument units).
    avg_particles_per_frame : float or None
    linear, log : DataFrame or None
        The size-distribution tables: ``size_nm`` (nm), ``number``,
        ``concentration_per_cm3`` (particles/cm³), ``volume_nm3`` (nm³), ``area_nm2``
        (nm²), plus any unknown column (snake-cased); None when absent.
    decimal_comma : bool
        Whether the file writes decimal commas.
    missing : list of str
        Expected items not found (``temperature_c``, ..., ``linear``, ``log``).
    notes : list of str
        What the reader had to interpret.
    """

    path: str
    header: dict
    raw: dict
    temperature_c: float | None = None
    viscosity_mpas: float | None = None
    dilution: float | None = None
    frame_rate_fps: float | None = None
    n_traces: int | None = None
    d50_nm: float | None = None
    laser_wavelength_nm: float | None = None
    sensitivity: float | None = None
    shutter: float | None = None
    avg_particles_per_frame: float | None = None
    linear: pd.DataFrame | None = None
    log: pd.DataFrame | None = None
    decimal_comma: bool = False
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _is_table_header(cells) -> bool:
    if len(cells) < 2:
        return False
    first = _norm(cells[0])
    return first.startswith("size") and any(_norm(c).startswith(("number", "concentration"))
                                            for c in cells[1:])


def _detect_decimal_comma(lines) -> bool:
    """Decimal comma if numeric cells/values use ``d,d`` and none use ``d.d``."""
    comma = point = 0
    for line in lines:
        if "\t" in line:
            cells = line.split("\t")
        else:
            _, _, v = line.partition(":")
            cells = v.strip().split()
        for c in cells:
            c = c.strip().lstrip(":").strip()
            if re.fullmatch(r"[+-]?\d+,\d+([eE][+-]?\d+)?", c):
                comma += 1
            elif re.fullmatch(r"[+-]?\d*\.\d+([eE][+-]?\d+)?", c):
                point += 1
    return comma > 0 and comma >= point


def read_zetaview_txt(path) -> ZetaViewExport:
    """Read a ZetaView ``.txt`` export (header + size-distribution tables).

    Parameters
    ----------
    path : str or os.PathLike
        ISO-8859-1 text, CRLF or LF; UTF-8 (with or without BOM) accepted; decimal
        point or decimal comma (detected per file).

    Returns
    -------
    ZetaViewExport
        Header values in °C, mPa·s, frames/s, nm; the linear and logarithmic tables;
        ``missing`` lists what the file lacks.

    Raises
    ------
    nta.errors.ParseError
        Not a ZetaView export (no ``Key: value`` header and no size table), a table with
        no column header line, or rows that are not numeric.

    Examples
    --------
    >>> z = read_zetaview_txt("sample.txt")  # doctest: +SKIP
    >>> z.temperature_c, z.linear.columns.tolist()  # doctest: +SKIP
    (23.27, ['size_nm', 'number', 'concentration_per_cm3', 'volume_nm3', 'area_nm2'])
    """
    text = _decode(_read_bytes(path), path)
    lines = text.splitlines()
    if not any(ln.strip() for ln in lines):
        raise ParseError("is empty", path=path, fix="re-export the measurement from ZetaView")
    decimal_comma = _detect_decimal_comma(lines)
    notes: list[str] = []
    raw: dict = {}
    header: dict = {}
    tables: list = []  # (label, DataFrame)
    i = 0
    pending_label = None
    seen_size_distribution = False
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            i += 1
            continue
        cells = [c.strip() for c in line.split("\t")]
        while cells and not cells[-1]:
            cells.pop()
        if _is_table_header(cells):
            names = []
            for c in cells:
                nm = _canon(c, _TABLE_COLUMNS)
                names.append(nm if nm not in names else f"{nm}_{len(names)}")
            rows = []
            j = i + 1
            while j < len(lines):
                rc = [c.strip() for c in lines[j].split("\t")]
                while rc and not rc[-1]:
                    rc.pop()
                if not rc or not _NUM_FULL.match(rc[0]):
                    break
                if len(rc) > len(names):
                    raise ParseError(
                        f"line {j + 1} has {len(rc)} fields, the table header has {len(names)}",
                        path=path, fix="check the file was not edited or concatenated")
                vals = [_to_float(c, decimal_comma) for c in rc]
                bad = [c for c, v in zip(rc, vals) if c and math.isnan(v)]
                if bad:
                    raise ParseError(f"line {j + 1}: non-numeric value {bad[0]!r} in the "
                                     "size table", path=path,
                                     fix="check the file for damage or re-export it")
                rows.append(vals + [math.nan] * (len(names) - len(vals)))
                j += 1
            df = pd.DataFrame(np.array(rows, dtype=float).reshape(-1, len(names)), columns=names)
            tables.append((pending_label, df))
            pending_label = None
            i = j
            continue
        # a numeric tab-separated row right after "Size Distribution" with no header
        if seen_size_distribution and len(cells) >= 3 and all(_NUM_FULL.match(c) for c in cells):
            raise ParseError(
                f"line {i + 1}: size-distribution rows without their column header line "
                "('Size / nm<TAB>Number<TAB>Concentration / cm-3 ...')",
                path=path, fix="re-export the measurement from ZetaView; the file looks cut")
        n = _norm(s)
        if n.startswith("size distribution") or n in ("linear", "logarithmic", "log", "lin"):
            seen_size_distribution = True
            if "log" in n:
                pending_label = "log"
            elif "lin" in n:
                pending_label = "linear"
            i += 1
            continue
        if ":" in s:
            key, _, val = s.partition(":")
            val = val.lstrip(":").strip()  # "Dilution:: 1000"
            key = key.strip()
            if key:
                rk = key
                k2 = 2
                while rk in raw:
                    rk = f"{key} ({k2})"
                    k2 += 1
                raw[rk] = val
                name = _canon(key, _HEADER_KEYS)
                if name in header and name != _snake(key):
                    name = name + "_" + str(len([k for k in header if k.startswith(name)]) + 1)
                if name in _NUMERIC_KEYS or name.split("_")[0] in ("temperature",):
                    x = _first_number(val, decimal_comma)
                    header[name] = x if not math.isnan(x) else (val or None)
                else:
                    header[name] = val
                # frame rate hidden in a camera line: "Camera: ... Frame rate: 30 fps"
                if "frame_rate_fps" not in header:
                    m = re.search(r"(frame ?rate|fps)\s*[:=]?\s*(" + _NUMBER + ")", val, re.I)
                    if m:
                        header["frame_rate_fps"] = _to_float(m.group(2), decimal_comma)
                    else:
                        m = re.search(r"(" + _NUMBER + r")\s*fps\b", val, re.I)
                        if m:
                            header["frame_rate_fps"] = _to_float(m.group(1), decimal_comma)
            i += 1
            continue
        raw.setdefault("_lines", []).append(s)
        i += 1

    if not raw and not tables:
        raise ParseError(
            "is not a ZetaView export: no 'Key: value' header lines and no "
            "'Size / nm' table found",
            path=path, fix="pass the .txt exported by ZetaView (Export → Text)")
    if not tables and not any(_canon(k, _HEADER_KEYS) in
                              ("serial_number", "n_traces", "laser_wavelength_nm", "d50_nm",
                               "dilution", "viscosity_mpas") for k in raw):
        raise ParseError(
            "is not a ZetaView export: no size table and none of the ZetaView header keys "
            "(ZetaView S/N, Number of Traces, Laser Wavelength, Dilution, Viscosity)",
            path=path, fix="pass the .txt exported by ZetaView")

    linear = log = None
    labelled = {lab: df for lab, df in tables if lab}
    unl = [df for lab, df in tables if not lab]
    linear = labelled.get("linear")
    log = labelled.get("log")
    for df in unl:
        if linear is None:
            linear = df
        elif log is None:
            log = df
    if len(tables) > 2:
        notes.append(f"{len(tables)} size tables found; the first two are linear / log")

    def num(name, integer=False):
        v = header.get(name)
        if isinstance(v, float) and not math.isnan(v):
            return int(round(v)) if integer else v
        return None

    t = num("temperature_c")
    if t is None:
        t = num("temperature_sensed_c")
        if t is not None:
            notes.append("temperature from the 'Temp. sensed' line")
    if t is not None and t > 200:
        notes.append(f"temperature {t} read as kelvin, converted to °C")
        t = t - 273.15
    eta = num("viscosity_mpas")
    if eta is not None and 0 < eta < 0.05:
        notes.append(f"viscosity {eta} read as Pa·s, converted to mPa·s")
        eta = eta * 1000.0
    out = ZetaViewExport(
        path=str(path), header=header, raw=raw, temperature_c=t, viscosity_mpas=eta,
        dilution=num("dilution"), frame_rate_fps=num("frame_rate_fps"),
        n_traces=num("n_traces", integer=True), d50_nm=num("d50_nm"),
        laser_wavelength_nm=num("laser_wavelength_nm"), sensitivity=num("sensitivity"),
        shutter=num("shutter"), avg_particles_per_frame=num("avg_particles_per_frame"),
        linear=linear, log=log, decimal_comma=decimal_comma, notes=notes,
    )
    out.missing = [k for k in ("temperature_c", "viscosity_mpas", "dilution", "frame_rate_fps",
                               "n_traces", "d50_nm", "linear", "log")
                   if getattr(out, k) is None]
    if out.missing:
        notes.append("missing: " + ", ".join(out.missing))
    return out
