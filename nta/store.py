"""The HDF5 result file: one schema, written here and read by everything else through here.

Layout (every dataset carries a ``units`` attribute)::

    /                 attrs: format="nta-result", schema_version, nta_version, complete (bool),
                      status ("running" | "complete" | "interrupted: ..." | "failed: ..."),
                      created, finished (ISO 8601, UTC)
    /provenance       attrs: inputs (JSON list of {path, size_bytes, sha256}), parameters (JSON),
                      calibration (JSON, with the source of each value), versions (JSON),
                      warnings (JSON list), command (str)
    /features/<col>   located features, appended chunk by chunk (px, frames)
    /tracks/<col>     linked, drift-corrected positions (px, frames)
    /drift/<col>      frame, dx_px, dy_px: cumulative drift subtracted from positions
    /per_track/<col>  one row per track (particle, D_um2_s, diameter_nm, included, ...)
    /distribution/    bin_edges_nm, counts (raw per-track histogram) and any estimated densities
    /summary          attrs: the summary numbers; also ``json`` (the whole summary as JSON)

Writes are crash-safe: the result is written to ``<out>.partial`` beside the output, which is
renamed to the output only when it is complete (or, when interrupted, when no output existed
before, so the user finds a readable file marked incomplete). An existing output is never
replaced unless ``overwrite=True``; a lock file keeps two processes from writing one output.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .errors import OutputError, OutputExistsError

__all__ = [
    "SCHEMA_VERSION",
    "ResultWriter",
    "file_fingerprint",
    "read_summary",
    "read_table",
    "read_attrs",
    "read_distribution",
    "is_complete",
    "COLUMN_UNITS",
    "check_new_output",
    "write_text_atomic",
]

SCHEMA_VERSION = 1

#: Units of the standard columns, stored as each dataset's ``units`` attribute.
COLUMN_UNITS = {
    "frame": "frame",
    "x": "px",
    "y": "px",
    "x_raw": "px",
    "y_raw": "px",
    "dx_px": "px",
    "dy_px": "px",
    "mass": "counts (integrated brightness, background subtracted)",
    "raw_mass": "counts",
    "signal": "counts",
    "size": "px",
    "ecc": "1",
    "ep": "px",
    "particle": "1",
    "parent": "1 (track id before cutting at implausible steps)",
    "parent_particle": "1 (track id before cutting at implausible steps)",
    "n_points": "1",
    "n_steps": "1",
    "frame_start": "frame",
    "frame_end": "frame",
    "D_um2_s": "µm²/s",
    "D_var_um4_s2": "µm⁴/s²",
    "D_sd_um2_s": "µm²/s",
    "sigma_loc_um": "µm",
    "diameter_nm": "nm",
    "mass_mean": "counts",
    "included": "bool",
    "bin_edges_nm": "nm",
    "bin_centers_nm": "nm",
    "counts": "tracks per bin",
    "density": "number fraction per nm",
    "counts_ftla": "tracks per bin (the deconvolved number distribution, scaled to the number of tracks)",
    "grid_nm": "nm",
    "density_number": "number fraction per grid point",
    "density_area": "surface-area fraction per grid point",
    "density_volume": "volume fraction per grid point",
}


def check_new_output(path, *, overwrite: bool = False, what: str = "output", inputs=(), inside_input_folders: bool = True) -> Path:
    """Refuse an output path that would lose something.

    Parameters
    ----------
    path : str or os.PathLike
        The file about to be written.
    overwrite : bool
        Allow replacing an existing *file* (never a folder, never an input).
    what : str
        What is written, for the message (e.g. ``"report"``).
    inputs : iterable of str or os.PathLike
        The files or folders being read: the output may be none of them and, with
        ``inside_input_folders``, may not lie inside an input folder (an image sequence),
        with or without ``overwrite``.
    inside_input_folders : bool
        Also refuse paths inside an input folder (True for image sequences; False where the
        input folder holds results and a new file beside them is expected, e.g. a report).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputError
        The path is a folder, is (or lies inside) one of ``inputs``, or its folder does
        not exist.
    OutputExistsError
        The file exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{what} path is a folder", fix="give a file name, e.g. -o results/out.h5", path=p)
    rp = p.resolve()
    for q in inputs:
        try:
            rq = Path(q).resolve()
        except (TypeError, OSError):
            continue
        if rp == rq or (inside_input_folders and rq.is_dir() and rq in rp.parents):
            where = "is the input" if rp == rq else f"lies inside the input folder {rq}"
            raise OutputError(f"{what} path {where}; writing it would destroy the recording",
                              fix="choose an -o outside the input, e.g. results/out.h5", path=p)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{what} exists already and was left untouched", fix="choose another -o or pass --overwrite", path=p)
    if not p.parent.exists():
        raise OutputError(f"folder {p.parent} does not exist", fix="create it or choose another -o", path=p)
    return p


def write_text_atomic(path, text: str, *, overwrite: bool = False, what: str = "output", newline=None) -> Path:
    """Write a text file through a temporary name, so a crash never leaves half a file.

    Raises
    ------
    OutputError, OutputExistsError
        As :func:`check_new_output`, or when the folder is not writable.
    """
    p = check_new_output(path, overwrite=overwrite, what=what)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)
        os.replace(tmp, p)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot write the {what} ({e.strerror or e})", fix="choose a writable -o", path=p) from None
    return p


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def file_fingerprint(path, *, chunk_bytes: int = 1 << 20, cancel=None) -> dict | None:
    """Path, size and SHA-256 of an input file (or of every file in a folder, in order).

    Parameters
    ----------
    path : str or os.PathLike
        A file, or a folder whose files are hashed in natural order, name and content.
    cancel : threading.Event, optional
        When set, hashing stops at the next chunk and None is returned (used when the
        fingerprint runs in a background thread beside :func:`nta.pipeline.process`).

    Returns
    -------
    dict or None
        ``{"path": str, "size_bytes": int, "sha256": str}`` (hex digest); None if cancelled.
    """
    p = Path(path)
    h = hashlib.sha256()
    size = 0
    if p.is_dir():
        from .io import natural_sort_key  # local: keeps store free of reader imports at load

        files = sorted((f for f in p.iterdir() if f.is_file()), key=lambda f: natural_sort_key(f.name))
    else:
        files = [p]
    for f in files:
        if p.is_dir():
            h.update(f.name.encode())
        with open(f, "rb") as fh:
            while True:
                if cancel is not None and cancel.is_set():
                    return None
                b = fh.read(chunk_bytes)
                if not b:
                    break
                size += len(b)
                h.update(b)
    return {"path": str(p.resolve()), "size_bytes": size, "sha256": h.hexdigest()}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj) -> str:
    """JSON text of ``obj`` with numpy scalars/arrays converted and NaN written as null."""
    return json.dumps(_jsonable(obj), ensure_ascii=False)


class ResultWriter:
    """Streaming, crash-safe writer of one nta result file.

    Parameters
    ----------
    path : str or os.PathLike
        The output ``.h5`` file.
    overwrite : bool, default False
        Replace an existing complete or incomplete output. Without it an existing output
        raises :class:`~nta.errors.OutputExistsError` and is left untouched.

    Raises
    ------
    OutputExistsError
        The output exists and ``overwrite`` is False.
    OutputError
        Another process is writing the same output, or the folder is not writable.

    Notes
    -----
    Use as a context manager. On a normal exit call :meth:`finish` first; leaving the block
    by an exception (including ``KeyboardInterrupt``) marks the file incomplete with the
    reason, closes it, and moves it to ``path`` only if no output existed there before.
    """

    def __init__(self, path, *, overwrite: bool = False):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.lockpath = self.path.with_name(self.path.name + ".lock")
        self.overwrite = overwrite
        self._finished = False
        if self.path.is_dir():
            raise OutputError("output path is a folder", fix="give a file name, e.g. -o results/out.h5", path=self.path)
        self._existed = self.path.exists()
        if self._existed and not overwrite:
            raise OutputExistsError(
                "output exists already and was left untouched", fix="choose another -o or pass --overwrite", path=self.path
            )
        if not self.path.parent.exists():
            raise OutputError(f"folder {self.path.parent} does not exist", fix="create it or choose another -o", path=self.path)
        self._lock()
        try:
            self.h5 = h5py.File(self.partial, "w")
        except OSError as e:
            self._unlock()
            raise OutputError(f"cannot create {self.partial.name}: {e}", fix="check the folder is writable and has space", path=self.path)
        from . import __version__

        a = self.h5.attrs
        a["format"] = "nta-result"
        a["schema_version"] = SCHEMA_VERSION
        a["nta_version"] = __version__
        a["complete"] = False
        a["status"] = "running"
        a["created"] = _now()
        self.h5.flush()

    def _lock(self) -> None:
        """Take the exclusive lock on ``<out>.lock``.

        The lock file is removed when a writer finishes, so a process may lock a file that
        has just been unlinked; it then checks that the path still names the file it locked
        and tries again otherwise (else two writers could each hold "the" lock). A lock
        left by a killed process is released by the kernel, so it never blocks a new run.
        """
        for _ in range(100):
            try:
                fd = os.open(self.lockpath, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as e:
                raise OutputError(f"cannot write beside the output: {e.strerror}", fix="choose a writable folder", path=self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise OutputError("another nta process is writing this output now", fix="wait for it or choose another -o", path=self.path)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lockpath))
            except OSError:
                same = False
            if same:
                self._lockfd = fd
                return
            os.close(fd)  # locked a lock file another writer had just removed: retry
        raise OutputError("cannot take the lock beside the output", fix="remove a stale .lock file and retry", path=self.path)

    # -- context manager -------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self._finished:
            return False
        if exc_type is None:
            msg = "interrupted: not finished"
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            text = str(exc or "").strip()
            if text.startswith("signal "):
                try:
                    import signal as _signal

                    text = f"{text} ({_signal.Signals(int(text.split()[1])).name})"
                except (ValueError, IndexError):
                    pass
                msg = f"interrupted by {text}"
            else:
                msg = "interrupted by the user (Ctrl-C)" if not text else f"interrupted: {text}"
        else:
            msg = f"failed: {exc_type.__name__}: {exc}"
        where = self.abort(msg)
        if exc_type is not None and issubclass(exc_type, OSError):
            # h5py/OS write failures (disk full, quota, file-size limit, I/O error): one clear line
            raise OutputError(
                f"writing the result failed ({getattr(exc, 'strerror', None) or exc}); the incomplete result "
                f"is {where.name if where.exists() else 'gone'}, any earlier output is unchanged",
                fix="free disk space or choose another -o, then run again", path=self.path,
            ) from exc
        return False

    # -- writing ---------------------------------------------------------------------------
    def set_provenance(self, **items) -> None:
        """Store provenance items (inputs, parameters, calibration, versions, ...) as JSON attributes."""
        g = self.h5.require_group("provenance")
        for k, v in items.items():
            g.attrs[k] = v if isinstance(v, str) else dumps(v)
        self.h5.flush()

    def append_table(self, group: str, table: pd.DataFrame, *, chunk_rows: int = 65536) -> None:
        """Append rows to a table group, one resizable compressed dataset per column.

        Parameters
        ----------
        group : str
            Group name, e.g. ``"features"``.
        table : pandas.DataFrame
            Numeric or boolean columns; the first append fixes the columns and dtypes.
        """
        g = self.h5.require_group(group)
        n = len(table)
        for col in table.columns:
            values = np.asarray(table[col].to_numpy())
            if values.dtype == object:
                values = values.astype(str).astype("S")
            if col in g:
                ds = g[col]
                old = ds.shape[0]
                ds.resize(old + n, axis=0)
                if n:
                    ds[old:] = values
            else:
                ds = g.create_dataset(
                    col,
                    data=values,
                    maxshape=(None,) + values.shape[1:],
                    chunks=(max(1, min(chunk_rows, max(n, 1024))),) + values.shape[1:],
                    compression="gzip",
                    compression_opts=4,
                    shuffle=True,
                )
                ds.attrs["units"] = COLUMN_UNITS.get(col, "")
        g.attrs["n_rows"] = int(g[table.columns[0]].shape[0]) if len(table.columns) else 0
        self.h5.flush()

    def write_table(self, group: str, table: pd.DataFrame, *, attrs: dict | None = None) -> None:
        """Write a whole table group at once (replacing one of the same name)."""
        if group in self.h5:
            del self.h5[group]
        self.append_table(group, table)
        if attrs:
            for k, v in attrs.items():
                self.h5[group].attrs[k] = v if isinstance(v, (str, int, float, bool)) else dumps(v)

    def write_arrays(self, group: str, arrays: dict, *, units: dict | None = None, attrs: dict | None = None) -> None:
        """Write named arrays into a group, each with its units attribute."""
        g = self.h5.require_group(group)
        for k, v in arrays.items():
            if k in g:
                del g[k]
            ds = g.create_dataset(k, data=np.asarray(v), compression="gzip" if np.asarray(v).size > 64 else None)
            ds.attrs["units"] = (units or {}).get(k, COLUMN_UNITS.get(k, ""))
        for k, v in (attrs or {}).items():
            g.attrs[k] = v if isinstance(v, (str, int, float, bool)) else dumps(v)
        self.h5.flush()

    def write_summary(self, summary: dict) -> None:
        """Write the summary: scalar numbers and strings as attributes, everything as JSON."""
        g = self.h5.require_group("summary")
        for k, v in summary.items():
            if isinstance(v, (bool, np.bool_)):
                g.attrs[k] = bool(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                g.attrs[k] = float(v) if isinstance(v, (float, np.floating)) else int(v)
            elif isinstance(v, str):
                g.attrs[k] = v
        g.attrs["json"] = dumps(summary)
        self.h5.flush()

    def set_status(self, status: str) -> None:
        """Record a progress status string in the root attributes."""
        self.h5.attrs["status"] = status
        self.h5.flush()

    # -- finishing -------------------------------------------------------------------------
    def finish(self) -> Path:
        """Mark the file complete, close it and move it into place atomically.

        Returns
        -------
        pathlib.Path
            The output path.
        """
        self.h5.attrs["complete"] = True
        self.h5.attrs["status"] = "complete"
        self.h5.attrs["finished"] = _now()
        self.h5.flush()
        self.h5.close()
        with open(self.partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)
        _fsync_dir(self.path.parent)
        self._finished = True
        self._unlock()
        return self.path

    def abort(self, status: str) -> Path:
        """Mark the file incomplete with a reason and close it.

        The incomplete file replaces nothing: it is moved to the output path only if no
        output existed before this writer started; otherwise it stays as ``<out>.partial``.

        Returns
        -------
        pathlib.Path
            Where the incomplete file now is.
        """
        where = self.partial
        try:
            if self.h5.id.valid:
                try:  # may fail itself when the disk is full: the file stays unmarked "complete"
                    self.h5.attrs["complete"] = False
                    self.h5.attrs["status"] = status
                    self.h5.attrs["finished"] = _now()
                except Exception:
                    pass
                try:
                    self.h5.close()
                except Exception:
                    pass
            if not self._existed and not self.path.exists() and self.partial.exists():
                os.replace(self.partial, self.path)
                where = self.path
        finally:
            self._unlock()
        return where

    def _unlock(self):
        # unlink while still holding the lock, so no other writer can lock this inode
        # after we let go and believe it owns the (new) lock file path
        try:
            os.unlink(self.lockpath)
        except OSError:
            pass
        try:
            fcntl.flock(self._lockfd, fcntl.LOCK_UN)
            os.close(self._lockfd)
        except OSError:
            pass


def _fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (best effort; not all file systems allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- reading --------------------------------------------------------------------------------
def _open(path):
    p = Path(path)
    if not p.exists():
        raise OutputError("no such result file", fix="check the path", path=p)
    if p.is_dir():
        raise OutputError("is a folder, not a result file", fix="give one .h5 result file", path=p)
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise OutputError(f"not a readable HDF5 file ({e})", fix="the file may be damaged; process the input again", path=p)
    if f.attrs.get("format") != "nta-result":
        f.close()
        raise OutputError("not an nta result file", fix="give a file written by `nta process`", path=p)
    return f


def read_attrs(path) -> dict:
    """Root attributes of a result file (complete, status, versions, times)."""
    with _open(path) as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}


def is_complete(path) -> bool:
    """Whether a result file was finished (False for interrupted or damaged files)."""
    try:
        return bool(read_attrs(path).get("complete", False))
    except OutputError:
        return False


def read_table(path, group: str) -> pd.DataFrame:
    """Read a table group (``features``, ``tracks``, ``drift``, ``per_track``) as a DataFrame."""
    with _open(path) as f:
        if group not in f:
            return pd.DataFrame()
        g = f[group]
        cols = {k: g[k][()] for k in g.keys() if isinstance(g[k], h5py.Dataset)}
        return pd.DataFrame(cols)


def read_distribution(path) -> dict:
    """Arrays of the ``/distribution`` group (bin edges, counts, densities)."""
    with _open(path) as f:
        if "distribution" not in f:
            return {}
        g = f["distribution"]
        return {k: g[k][()] for k in g.keys()}


def read_summary(path) -> dict:
    """The summary of a result file, with ``complete``, ``status`` and provenance added.

    Returns
    -------
    dict
        The stored summary (JSON) plus ``complete`` (bool), ``status`` (str), ``file``,
        ``calibration`` and ``warnings``. Numbers are in the units their key names say.
    """
    with _open(path) as f:
        out = {}
        if "summary" in f and "json" in f["summary"].attrs:
            out.update(json.loads(f["summary"].attrs["json"]))
            # JSON has no NaN (written as null): scalar numbers come back from the attributes
            for k, v in f["summary"].attrs.items():
                if out.get(k, 0) is None and isinstance(v, (float, np.floating)):
                    out[k] = float(v)
            for k, v in list(out.items()):
                if isinstance(v, list) and v and all(x is None for x in v) and k.endswith("_ci95"):
                    out[k] = [float("nan")] * len(v)
        out["complete"] = bool(f.attrs.get("complete", False))
        out["status"] = str(f.attrs.get("status", ""))
        out["file"] = str(Path(path))
        if "provenance" in f:
            pa = f["provenance"].attrs
            for key in ("calibration", "warnings", "inputs"):
                if key in pa:
                    try:
                        out.setdefault(key, json.loads(pa[key]))
                    except (TypeError, ValueError):
                        out.setdefault(key, str(pa[key]))
        return out
