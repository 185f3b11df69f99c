"""Giving freed memory back to the system, where the C library allows it.

glibc's malloc serves a large block (128 KiB or more) from its own mapping, handed back when
it is freed, until the first such block is freed: it then raises that threshold to the
block's size, and later blocks of that size come from the heap, which it seldom gives back.
A gateway's large blocks are transient (an answer's bytes, a body being read, a rendered
call): after a burst of large answers, the process kept their high-water mark for good
(issue 24: 1.2 GiB after eight clients that never read had been cut). Fixing the threshold
(`mallopt(M_MMAP_THRESHOLD)`, glibc's documented knob, the same as its
MALLOC_MMAP_THRESHOLD_ environment variable) keeps every large block in its own mapping.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["give_back_large_blocks"]

log = logging.getLogger("gqlbatch.memory")

_M_MMAP_THRESHOLD = -3
"""mallopt's parameter number, from glibc's malloc.h."""
_THRESHOLD = 128 * 1024
"""glibc's own starting value, kept fixed."""


def give_back_large_blocks() -> bool:
    """Have every large block that is freed go back to the system at once (glibc only); True
    when it was set. Elsewhere (musl, macOS, Windows) nothing changes."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused: freed memory is given back as glibc sees fit")
    return done
