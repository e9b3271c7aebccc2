"""nta benchmarks: ``python -m benchmarks.kernel | pipeline | scaling`` (results in benchmarks/results/)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    """Machine, date and versions for the record."""
    import numba
    import numpy as np

    try:
        import trackpy

        tpv = trackpy.__version__
    except Exception:  # pragma: no cover
        tpv = None
    try:
        import av

        avv = av.__version__
    except Exception:  # pragma: no cover
        avv = None
    import nta

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        ncpu = os.cpu_count()
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):  # pragma: no cover
        mem_gb = None
    d = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": ncpu,
        "memory_GiB": mem_gb,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "numba": numba.__version__,
        "trackpy": tpv,
        "pyav": avv,
        "nta": getattr(nta, "__version__", None),
    }
    d["loadavg_1_5_15"] = list(os.getloadavg())
    d["summary"] = (f"{d['date']} · {cpu}, {ncpu} CPUs, {mem_gb:.0f} GiB · Python {d['python']}, numpy {d['numpy']}, "
                    f"numba {d['numba']}, trackpy {tpv}, PyAV {avv}, nta {d['nta']} · load average at start "
                    f"{d['loadavg_1_5_15'][0]:.2f} / {d['loadavg_1_5_15'][1]:.2f} / {d['loadavg_1_5_15'][2]:.2f} "
                    f"(1/5/15 min; the machine is shared, so timings are upper bounds)")
    return d


def write_results(name: str, data: dict, markdown: str) -> None:
    """Print the table and write ``results/NAME.json`` and ``results/NAME.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(markdown)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown + "\n")
