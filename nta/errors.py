"""Error types raised by nta.

Every error nta raises on purpose derives from :class:`NTAError`; the command line
turns these into one-line messages (file, problem, fix) and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

__all__ = [
    "NTAError",
    "InputError",
    "CalibrationError",
    "OutputError",
    "OutputExistsError",
    "ParseError",
    "AnalysisError",
]


class NTAError(Exception):
    """Base class of every error nta raises on purpose.

    Parameters
    ----------
    message : str
        What went wrong, naming the file or value concerned.
    fix : str, optional
        What the user can do about it; appended to the message.
    path : str or os.PathLike, optional
        The file concerned, if any; prefixed to the message.
    """

    def __init__(self, message: str, *, fix: str | None = None, path=None):
        self.problem = message
        self.fix = fix
        self.path = None if path is None else str(path)
        text = message
        if self.path is not None and self.path not in message:
            text = f"{self.path}: {message}"
        if fix:
            text = f"{text} ({fix})"
        super().__init__(text)


class InputError(NTAError):
    """An input file cannot be read as what it claims to be (video, image stack, export)."""


class CalibrationError(NTAError, ValueError):
    """A calibration value is missing, impossible or absurd (pixel size, frame rate, ...)."""


class OutputError(NTAError):
    """A result file cannot be written or read back."""


class OutputExistsError(OutputError):
    """The output exists already and ``overwrite`` was not asked for."""


class ParseError(InputError):
    """A vendor export (NanoSight CSV, ZetaView TXT, ...) is malformed."""


class AnalysisError(NTAError):
    """The analysis cannot produce a meaningful answer (e.g. no particles found)."""
