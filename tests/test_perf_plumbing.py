"""Plumbing of the speed-ups that is not about numbers: trackpy's numba cache switch and the
features write-behind thread of the pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_trackpy_jit_functions_get_a_disk_cache():
    """In a fresh interpreter (a function compiled before the switch keeps its in-memory code)."""
    import subprocess
    import sys

    pytest.importorskip("trackpy")
    code = """
import pandas as pd, trackpy
from numba.core.caching import NullCache
from nta._jitcache import cache_trackpy_jit
assert cache_trackpy_jit() > 0
assert cache_trackpy_jit() == 0  # idempotent
from trackpy.linking import subnetlinker
assert not isinstance(subnetlinker._numba_subnet_norecur._cache, NullCache)
df = pd.DataFrame({"x": [0.0, 1.0, 0.5, 1.4], "y": [0.0, 0.0, 0.2, 0.1], "frame": [0, 0, 1, 1]})
assert trackpy.link(df, 5, link_strategy="numba")["particle"].nunique() == 2
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


class _FakeWriter:
    def __init__(self, fail_at=None):
        self.rows = []
        self.fail_at = fail_at

    def append_table(self, group, table):
        if self.fail_at is not None and len(self.rows) == self.fail_at:
            raise OSError("disk full")
        self.rows.append((group, len(table)))


def test_write_behind_keeps_order_and_surfaces_errors():
    from nta.pipeline import _WriteBehind

    w = _FakeWriter()
    wb = _WriteBehind(w)
    for n in range(1, 6):
        wb.append("features", pd.DataFrame({"x": np.zeros(n)}))
    wb.wait()
    wb.close()
    assert w.rows == [("features", n) for n in range(1, 6)]

    w = _FakeWriter(fail_at=2)
    wb = _WriteBehind(w)
    with pytest.raises(OSError, match="disk full"):
        for n in range(1, 6):
            wb.append("features", pd.DataFrame({"x": np.zeros(n)}))
        wb.wait()
    wb.close()
    assert len(w.rows) == 2
