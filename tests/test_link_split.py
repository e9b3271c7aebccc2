"""Two-process linking (nta.link._link_ids): the same tracks as one sequential pass."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
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


def _raise(exc):
    def f(*a, **k):
        raise exc
    return f


# (what is patched, replacement, message logged): each way the split can fail must end in
# one process's result, the sequential one
_FALLBACKS = {
    # the child fails in its work (only the child calls _link_sequential when split)
    "child fails": ("_link_sequential", _raise(RuntimeError("child broke")), "second process failed"),
    # an exception raised in the child outside its own try (as a signal landing right after
    # the fork could) must end the child, never run the parent's clean-up in it (which once
    # meant os.kill(0, SIGKILL): the whole process group, this test runner included)
    "child escapes": ("_split_child", _raise(KeyboardInterrupt("signal in the child")), "second process failed"),
    # no warm-up: the child starts its tracks fresh inside the checked frames, the runs
    # disagree there and this process links on by itself
    "runs disagree": ("_split_warmup_frames", lambda memory: int(memory) + 2, "disagree"),
    # no process to spare (process limits, memory)
    "fork refused": ("fork", _raise(BlockingIOError(11, "Resource temporarily unavailable")), "not possible"),
}


@pytest.mark.parametrize("case", list(_FALLBACKS))
def test_failures_fall_back_to_one_process(feats, monkeypatch, caplog, case):
    name, replacement, message = _FALLBACKS[case]
    coords = _coords(feats)
    seq = L._link_sequential(coords, R_PHYS, 3)
    monkeypatch.setattr(L, "SPLIT_MIN_FEATURES", 0)
    monkeypatch.setattr(os if name == "fork" else L, name, replacement)
    with caplog.at_level(logging.INFO, logger="nta.link"):
        par = L._link_ids(coords, R_PHYS, 3)
    assert any(message in r.getMessage() for r in caplog.records)
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


_ORPHAN_SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
import nta.link as L
from test_link_stream import R_PHYS, _features
f = _features(size_nm=150.0, ppf=60, n_frames=400, seed=5)
coords = list(L._frame_coords(f.sort_values("frame", kind="stable").reset_index(drop=True)))
L.SPLIT_MIN_FEATURES = 0
orig = L._link_sequential
def slow(*a, **k):  # only the child calls it: report its pid, then take a long time
    with open({pidfile!r}, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(60)
    return orig(*a, **k)
L._link_sequential = slow
L._link_ids(coords, R_PHYS, 3)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


def test_child_dies_with_killed_parent(tmp_path):
    """kill -9 of the parent must not leave the child linking on (it would hold the
    output's lock): the child is set to die with its parent."""
    import signal
    import subprocess
    import sys
    import time

    pidfile = tmp_path / "child.pid"
    script = _ORPHAN_SCRIPT.format(tests=str(Path(__file__).parent), pidfile=str(pidfile))
    p = subprocess.Popen([sys.executable, "-c", script])
    try:
        t0 = time.monotonic()
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() - t0 < 60:
            assert p.poll() is None, "the parent ended before the child started"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _alive(child)
        p.send_signal(signal.SIGKILL)
        p.wait()
        t0 = time.monotonic()
        while _alive(child) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert not _alive(child), "the child outlived its killed parent"
    finally:
        if p.poll() is None:
            p.kill()
