"""The process's memory through a long send: what the collector scans and what the allocator keeps.

Two costs grow with a send rather than with the work in it, and both are settings:

* The cyclic collector rescans everything alive at every few thousand allocations: the modules,
  the ORM metadata, the rendered issue. Frozen, it scans only what the send itself creates
  (a fifth of a big send's time before).
* glibc serves an allocation over 128 KB with a fresh ``mmap`` and gives it back on free, and
  gives freed memory at the top of the heap back to the kernel once 128 KB pile up there. A
  per-message provider builds, sends and frees a 4 MB request body again and again, so each body
  was faulted in afresh, page by page, zeroed by the kernel. Bodies now come from the heap, and a
  pad of freed heap is kept for the next one. The pad alone took a Postmark-shape send of 100,000
  readers from 7,349 to 7,917 readers/s (medians of 3, interleaved, ``benchmarks.scale``). But
  setting it switches off glibc's own raising of the ``mmap`` threshold, so bodies still came
  from ``mmap``: 661,000 page faults in that send. With the threshold set too: 92,000, and 1.6 s
  less system time (``perf stat`` on the CLI, one run each), for about 22 MB more peak RSS
  (medians of 5 runs: 224 → 246 MB). That was while httpx still held each sent body until the
  collector ran; since the provider lets go of it at once, the same send peaks at 141 MB.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: ``mallopt`` parameter numbers in glibc's malloc.h.
M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3
#: Four 4 MB request bodies: what the provider threads free and build again between batches.
TOP_PAD_BYTES = 16 * 1024 * 1024
#: glibc's largest allowed threshold on 64-bit: any request body up to 32 MB comes from the heap.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024


def keep_freed_heap(pad_bytes: int = TOP_PAD_BYTES) -> bool:
    """Ask the C library to serve request bodies from the heap and keep ``pad_bytes`` of it
    when freed; False where it is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the symbols already loaded: libc itself on Linux
    except (OSError, AttributeError):
        return False
    # Both, even if one is refused: either alone still saves page faults.
    threshold, pad = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), mallopt(M_TOP_PAD, pad_bytes)
    return bool(threshold and pad)


@contextmanager
def steady_for_a_send() -> Iterator[None]:
    """Freeze what is alive now for the collector, and keep freed heap, until the send ends."""
    gc.freeze()
    keep_freed_heap()
    try:
        yield
    finally:
        gc.unfreeze()
