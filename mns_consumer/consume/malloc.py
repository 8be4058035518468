"""Cap glibc's malloc arenas, the daemon's largest avoidable memory cost after its imports.

glibc gives threads their own malloc arenas, up to eight per core, so a daemon with four threads per
queue ends up holding many partly used arenas. Two arenas cost the daemon no measurable speed (its
threads mostly wait on sockets or the GIL) and saved about 5 MiB of RSS with 8 queues
(``bench/daemon_bench.py``). This is what ``MALLOC_ARENA_MAX=2`` does, applied from inside the
process so that every way of starting the daemon gets it; an operator's own ``MALLOC_ARENA_MAX`` wins.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["limit_malloc_arenas"]

_M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the arena cap (malloc.h)."""


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap the number of malloc arenas; call before starting threads.

    Returns:
        True if the cap was set; False where it does not apply (not Linux, not glibc, or
        ``MALLOC_ARENA_MAX`` already set in the environment, which glibc read at start-up).
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
