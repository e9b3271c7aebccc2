"""nta: nanoparticle tracking analysis.

NTA videos in; hydrodynamic diameters, size distributions, QC and HDF5 results out.

The stages are importable functions on arrays and tables (see ``docs/ARCHITECTURE.md``)::

    from nta import open_frames, process, read_summary
    summary = process("sample_videos/mono_100nm.avi", "out.h5",
                      pixel_size_um=0.166, fps=25, temperature_c=22)
"""

__version__ = "0.1.0"

from .calibration import (  # noqa: E402
    Calibration,
    make_calibration,
    stokes_einstein_diameter,
    stokes_einstein_diffusion,
    water_viscosity,
)
from .errors import (  # noqa: E402
    AnalysisError,
    CalibrationError,
    InputError,
    NTAError,
    OutputError,
    OutputExistsError,
    ParseError,
)


def __getattr__(name):
    # Heavier stages load lazily so `import nta` stays quick for the CLI and notebooks.
    lazy = {
        "open_frames": ("nta.io", "open_frames"),
        "process": ("nta.pipeline", "process"),
        "read_summary": ("nta.store", "read_summary"),
        "read_table": ("nta.store", "read_table"),
        "simulate_video": ("nta.simulate", "simulate_video"),
        "summarize_sizes": ("nta.distribution", "summarize_sizes"),
        "per_track_table": ("nta.diffusion", "per_track_table"),
    }
    if name in lazy:
        import importlib

        mod, attr = lazy[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'nta' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Calibration",
    "make_calibration",
    "stokes_einstein_diameter",
    "stokes_einstein_diffusion",
    "water_viscosity",
    "NTAError",
    "InputError",
    "CalibrationError",
    "OutputError",
    "OutputExistsError",
    "ParseError",
    "AnalysisError",
    "open_frames",
    "process",
    "read_summary",
    "read_table",
    "simulate_video",
    "summarize_sizes",
    "per_track_table",
]
