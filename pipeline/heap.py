"""The process's memory through a long send: what the cyclic collector scans.

The collector rescans everything alive at every few thousand allocations: the modules, the ORM
metadata, the rendered issue. Frozen for the send, it scans only what the send itself creates
(a fifth of a big send's time before). The freeze ends with the send: a scheduler that sends every
week must not pile each send's objects into the permanent generation.

The C allocator is left as glibc sets it. The send once switched it through ``mallopt`` for good
(request bodies from the heap, 16 MB of freed heap kept), when httpx held each sent body until the
collector ran and bodies were faulted in afresh: 661,000 page faults in a Postmark-shape send of
100,000 readers. Since the provider lets go of each body at once, glibc's own sliding ``mmap``
threshold serves a 4 MB body built again from the heap from the third one on. Measured on that send
(``benchmarks.scale``'s postmark:100000 run, 3 interleaved runs each, 2026-12-05): with the switch
33,100 page faults, without it 41,800, with the same settings as GLIBC_TUNABLES 32,800; peak RSS
144-146 MB, system time 2.4-2.8 s and readers/s (within the machine's noise) alike in all three.
8,700 page faults are not worth a process-wide setting that nobody undoes, nor an environment that
every way of starting a send would have to carry.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def steady_for_a_send() -> Iterator[None]:
    """Freeze what is alive now for the collector until the send ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
