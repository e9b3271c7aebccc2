"""Regenerate the sample videos in this folder, exactly, from their seeds.

    python sample_videos/make_samples.py            # refuses to overwrite
    python sample_videos/make_samples.py --overwrite

Each video gets a ``<stem>.truth.json`` beside it (see ``nta.simulate.simulate_video``).
Sizes are kept small so the repository stays light: about 7 MB + 4 MB.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nta.simulate import simulate_video

HERE = Path(__file__).resolve().parent

#: NanoSight-like recording settings shared by the samples.
COMMON = dict(
    fps=25.0,                    # frames/s
    pixel_size_um=0.166,         # µm/px (NS300, 20× objective)
    exposure_ms=30.0,            # ms
    temperature_c=22.0,          # °C; viscosity: water formula
    drift_px_per_frame=(3.0, 0.0),
    size_cv=0.05,                # relative SD of each population
)

SAMPLES = {
    # uncompressed 8-bit grey AVI as NanoSight writes it (the README's example runs on it)
    "mono_100nm.avi": dict(sizes_nm=(100.0,), width=208, height=176, n_frames=200, particles_per_frame=45.0, seed=100),
    # 1:1 by number mixture; zlib-compressed (lossless) multi-page TIFF to save space
    "mix_70_130nm.tif": dict(
        sizes_nm=(70.0, 130.0), fractions=(0.5, 0.5), width=208, height=176, n_frames=160,
        particles_per_frame=45.0, seed=7013, tiff_compression="zlib",
    ),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    overwrite = "--overwrite" in argv
    for name, kw in SAMPLES.items():
        t0 = time.perf_counter()
        truth = simulate_video(HERE / name, overwrite=overwrite, **COMMON, **kw)
        print(
            f"{name}: {time.perf_counter() - t0:.1f} s, {truth['n_particles_truth']} particles seen ≥ "
            f"{truth['truth_min_frames']} frames, mean {truth['true_mean_nm']:.1f} nm, D50 {truth['true_median_nm']:.1f} nm, "
            f"{truth['mean_visible_per_frame']:.1f} visible/frame"
        )


if __name__ == "__main__":
    main()
