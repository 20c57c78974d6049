"""Process-level tuning of a streaming process (the service and the benchmark)."""

from __future__ import annotations

import gc

# gen-0 threshold of the streaming process (CPython's default is 700): the hot path frees
# nearly everything by reference counting, so young collections are mostly wasted work
GC_GEN0_THRESHOLD = 50_000
_gc_tuned = False


def tune_gc(gen0: int = GC_GEN0_THRESHOLD) -> None:
    """Once per process, after start-up: move every object alive now (modules, instrument
    index, ...) to the permanent generation (``gc.freeze``), so later full collections do
    not traverse them (one was seen taking ~30 ms on the collection thread), and raise the
    gen-0 threshold. Cyclic garbage is still collected."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
