"""On-disk caching for trackpy's numba functions.

trackpy jits its kernels (``trackpy.try_numba.try_numba_jit``, e.g. the subnetwork solver
``trackpy.linking.subnetlinker._numba_subnet_norecur`` that :func:`trackpy.link` calls)
without ``cache=True``, so every process compiled them again: ~0.4–0.9 s per ``nta process``
run, spent before linking could start. :func:`cache_trackpy_jit` switches numba's on-disk
cache on for them (the same cache nta's own kernels use, ``cache=True``): the first run
compiles and writes the cache (next to trackpy's sources, or in numba's user-wide cache
directory when that is not writable), later runs load it.
"""

from __future__ import annotations

__all__ = ["cache_trackpy_jit"]

_done = False


def cache_trackpy_jit() -> int:
    """Enable numba's on-disk cache for every numba function trackpy registers.

    Must run before the functions are first called in the process (a function already
    compiled in memory keeps its compiled code; caching then starts with the next process).
    Idempotent and cheap after the first call. Never raises: if trackpy or numba changes
    its internals, nothing is enabled and trackpy compiles as before.

    Returns
    -------
    int
        Number of functions whose cache was switched on by this call.
    """
    global _done
    if _done:
        return 0
    _done = True
    n = 0
    try:
        from numba.core.caching import NullCache
        from trackpy import try_numba

        for f in list(getattr(try_numba, "_registered_functions", ())):
            d = getattr(f, "_compiled", None)
            if d is None or not hasattr(d, "enable_caching"):
                continue
            if isinstance(getattr(d, "_cache", None), NullCache) and not d.overloads:
                d.enable_caching()
                n += 1
    except Exception:  # noqa: BLE001 - an optimisation only
        return n
    return n
