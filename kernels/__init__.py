"""numba kernels of nta, importable as ``nta.kernels``.

Kernels take plain arrays in pixels and frames, do no validation and no unit conversion;
their wrappers in :mod:`nta.diffusion` (and other stage modules) do both, once.
"""
