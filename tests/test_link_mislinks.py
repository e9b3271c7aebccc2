"""benchmarks/mislinks.py: identity changes of tracks against a hand-made truth."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.mislinks import label_rows, mislink_stats  # noqa: E402


def _truth():
    # two particles (ids 7 and 9) 20 px apart, still, visible in frames 0-3; shutter open the whole frame
    fr = np.repeat(np.arange(4), 2)
    pid = np.tile([7, 9], 4)
    x = np.where(pid == 7, 10.0, 30.0)
    P = {"frame": fr, "particle": pid, "x_px": x, "y_px": np.full(8, 5.0), "visible": np.ones(8, bool),
         "diameter_nm": np.where(pid == 7, 80.0, 120.0), "D_um2_s": np.where(pid == 7, 5.0, 3.0),
         "params": {"fps": 25.0, "exposure_ms": 40.0}}
    truth = {"sizes_nm": [80.0, 120.0], "particle_diameters_nm": [80.0, 120.0], "particle_frames_visible": [4, 4],
             "truth_min_frames": 1}
    return P, truth


def test_a_swap_is_one_identity_change_and_far_features_are_unlabelled():
    P, truth = _truth()
    # track 1 follows particle 7 for three frames, then jumps to particle 9; track 2 is particle 9, then 7
    tracks = pd.DataFrame({"particle": [1, 1, 1, 1, 2, 2, 2, 2, 3],
                           "frame": [0, 1, 2, 3, 0, 1, 2, 3, 0],
                           "x_raw": [10.2, 9.9, 10.1, 29.8, 30.0, 30.2, 29.9, 10.0, 60.0],
                           "y_raw": [5.0] * 8 + [5.0]})
    lab = label_rows(tracks, P)
    assert lab.tolist() == [7, 7, 7, 9, 9, 9, 9, 7, -1]
    per = pd.DataFrame({"particle": [1, 2, 3], "included": [True, True, False], "D_um2_s": [5.0, 3.0, 1.0]})
    m = mislink_stats(tracks, per, P, truth)
    assert m["identity_changes"] == 2 and m["labelled_links"] == 6 and m["links"] == 6
    assert m["contaminated_included"] == 1.0
    assert [p["truth_particles"] for p in m["populations"]] == [1, 1]
    assert [p["included"] for p in m["populations"]] == [1, 1]
