"""Two-process linking (nta.link._link_ids): the same tracks as one sequential pass."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import pytest

import nta.link as L
from nta.link import StreamLinker, link_features

from test_link_stream import R_PHYS, _features, _same

pytestmark = pytest.mark.skipif(not L._can_fork(), reason="two-process linking needs Linux, fork and 2 CPUs")


@pytest.fixture(scope="module")
def feats():
    # 400 frames of ~60 particles: long enough for the split (4 x the warm-up) and the check
    return _features(size_nm=150.0, ppf=60, n_frames=400, seed=5)


def _coords(f):
    return list(L._frame_coords(f.sort_values("frame", kind="stable").reset_index(drop=True)))


def _partition(ids):
    return L._predecessors(np.asarray(ids))


def _children() -> set:
    """Processes (running or zombie) whose parent is this one, from /proc."""
    me = os.getpid()
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.add(int(d))
    return out


@pytest.fixture(autouse=True)
def no_child_left():
    """Every test here must leave no child of its own behind (reaped, not a zombie)."""
    before = _children()
    yield
    assert _children() <= before


@pytest.mark.parametrize("radius", [R_PHYS, 6.0])
def test_split_equals_sequential(feats, radius, monkeypatch, caplog):
    coords = _coords(feats)
    seq = L._link_sequential(coords, radius, 3)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)
    with caplog.at_level(logging.DEBUG, logger="nta.link"):
        par = L._link_ids(coords, radius, 3)
    assert any("spliced at frame" in r.getMessage() for r in caplog.records)  # the split did happen
    assert par.shape == seq.shape
    np.testing.assert_array_equal(_partition(par), _partition(seq))
    assert np.unique(par).size == np.unique(seq).size > 100


def test_predecessors():
    lab = np.array([5, 7, 5, 9, 7, 5])
    np.testing.assert_array_equal(L._predecessors(lab), [-1, -1, 0, -1, 1, 2])
    assert L._predecessors(np.zeros(0, np.int64)).size == 0


def test_child_failure_falls_back(feats, monkeypatch, caplog):
    coords = _coords(feats)
    seq = L._link_sequential(coords, R_PHYS, 3)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)

    def broken(*a, **k):  # only the child calls it: the parent links through link_iter itself
        raise RuntimeError("child broke")

    monkeypatch.setattr(L, "_link_sequential", broken)
    with caplog.at_level(logging.INFO, logger="nta.link"):
        par = L._link_ids(coords, R_PHYS, 3)
    assert any("second process failed" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(_partition(par), _partition(seq))


def test_disagreement_falls_back(feats, monkeypatch, caplog):
    """A child with no warm-up starts its tracks fresh inside the checked frames: the runs
    disagree there and this process links on by itself."""
    coords = _coords(feats)
    seq = L._link_sequential(coords, R_PHYS, 3)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)
    monkeypatch.setattr(L, "_split_warmup_frames", lambda memory: int(memory) + 2)
    with caplog.at_level(logging.INFO, logger="nta.link"):
        par = L._link_ids(coords, R_PHYS, 3)
    assert any("disagree" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(_partition(par), _partition(seq))


def test_stop_in_parent_kills_child(feats, monkeypatch):
    coords = _coords(feats)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        L._link_ids(coords, R_PHYS, 3, check=check)


def test_small_pass_stays_in_one_process(feats, monkeypatch):
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked for a short pass"))
    coords = _coords(feats)[:100]
    L._link_ids(coords, R_PHYS, 3)


@pytest.mark.parametrize("follow", [False, True])
def test_link_features_and_stream_with_split(feats, monkeypatch, follow):
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 10**12)  # the reference: one process
    ref = link_features(feats, search_range_px=R_PHYS, adaptive_radius=True)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)
    a = link_features(feats, search_range_px=R_PHYS, adaptive_radius=True)
    _same(ref, a)
    sl = StreamLinker(search_range_px=R_PHYS, adaptive_radius=True, follow=follow)
    fr = feats["frame"].to_numpy()
    for first in range(0, 400, 64):
        m = (fr >= first) & (fr < first + 64)
        sl.add(feats[m], first, min(64, 400 - first))
    _same(ref, sl.finish(feats))
    assert ref.search_range_px < R_PHYS and ref.tracks["particle"].nunique() > 100


def test_fork_failure_falls_back(feats, monkeypatch, caplog):
    coords = _coords(feats)
    seq = L._link_sequential(coords, R_PHYS, 3)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with caplog.at_level(logging.INFO, logger="nta.link"):
        par = L._link_ids(coords, R_PHYS, 3)
    assert any("not possible" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(_partition(par), _partition(seq))
