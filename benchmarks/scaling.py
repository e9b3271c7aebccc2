"""Benchmark 3: scaling of ``nta process`` with video length, particles per frame and cores.

* Length: 375, 750, 1500, 3000 frames (``--max-frames`` on one 3000-frame 640×480 video,
  50 particles/frame): wall time and peak RSS; memory should be flat in length.
* Particles per frame: 25, 50, 100 on 750-frame 640×480 videos.
* Cores: the 1500-frame run pinned to 1 CPU (``taskset -c 0``) vs 2 CPUs.

Every run is ``nta process`` in its own subprocess (fast locator, warm kernel cache).
Run: ``python -m benchmarks.scaling``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import machine_info, write_results
from benchmarks.pipeline import VIDEO_DIR, run_nta


def ensure(path, n_frames, particles, seed):
    if not Path(path).exists():
        from nta.simulate import simulate_video

        simulate_video(path, n_frames=n_frames, width=640, height=480, particles_per_frame=particles, seed=seed)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    long = ensure(VIDEO_DIR / "small3000.avi", 3000, 50, 13)
    out = Path("/tmp/nta_bench_scaling.h5")
    res = {"benchmark": "scaling", "machine": machine_info(), "length": {}, "particles": {}, "cores": {}}
    run_nta(long, out, extra=("--max-frames", "375"))  # warm the kernel cache
    lines = ["# Scaling of `nta process` (640×480, fast locator, warm cache)", "", res["machine"]["summary"], "",
             "## Video length (50 particles/frame)", "",
             "| frames | wall (s) | s per 1000 frames | peak RSS (MB) | load avg before → after |", "|---:|---:|---:|---:|---|"]
    for n in (375, 750, 1500, 3000):
        d = run_nta(long, out, extra=("--max-frames", str(n)))
        res["length"][n] = d
        lines.append(f"| {n} | {d['wall_s']:.1f} | {1000 * d['wall_s'] / n:.2f} | {d['peak_rss_MB']:.0f} "
                     f"| {d['load_before']:.1f} → {d['load_after']:.1f} |")
    r = res["length"]
    res["rss_3000_over_750"] = r[3000]["peak_rss_MB"] / r[750]["peak_rss_MB"]
    lines += ["", f"Peak RSS 3000 / 750 frames: {res['rss_3000_over_750']:.3f}", "",
              "## Particles per frame (750 frames)", "",
              "| particles/frame | features/frame | wall (s) | locate (s) |", "|---:|---:|---:|---:|"]
    for k, ppf in enumerate((25, 50, 100)):
        p = ensure(VIDEO_DIR / f"scal_p{ppf}.avi", 750, ppf, 20 + k)
        d = run_nta(p, out)
        res["particles"][ppf] = d
        lines.append(f"| {ppf} | {d['features'] / d['n_frames']:.1f} | {d['wall_s']:.1f} | {d['time_locate_s']:.1f} |")
    lines += ["", "## Cores (1500 frames, 50 particles/frame)", "",
              "| CPUs | wall (s) | locate (s) | peak RSS (MB) |", "|---:|---:|---:|---:|"]
    for cpus in ("0", "0,1"):
        d = run_nta(long, out, extra=("--max-frames", "1500"), cpus=cpus)
        res["cores"][len(cpus.split(","))] = d
        lines.append(f"| {len(cpus.split(','))} | {d['wall_s']:.1f} | {d['time_locate_s']:.1f} | {d['peak_rss_MB']:.0f} |")
    c = res["cores"]
    res["speedup_2_over_1_cores"] = c[1]["wall_s"] / c[2]["wall_s"]
    lines += ["", f"Speed-up 2 CPUs over 1: {res['speedup_2_over_1_cores']:.2f}× (whole run); "
              f"locate stage {c[1]['time_locate_s'] / c[2]['time_locate_s']:.2f}×"]
    write_results("scaling", res, "\n".join(lines))


if __name__ == "__main__":
    main()
