"""Keep the garbage collector's pauses off the request path (issue 12: p99).

After loading, the runtimes and libraries leave a hundred thousand and more
objects the cyclic collector tracks; a full collection walks all of them and
stops every in-flight request meanwhile (about 0.1-0.4 s measured here, see
``bench/serve_tail.py``). Steady traffic frees what it allocates by
reference counting, so such collections are rare, but each one is a stall
of every connection. :func:`settle` freezes what is alive once loading is
done (``gc.freeze``): those objects are never walked again, and what
requests allocate is collected as usual.

A frozen object is not immortal: reference counting still frees it. Only
garbage in reference cycles among frozen objects would stay, so after a hot
swap drops a version, :func:`resettle` unfreezes, collects once (on the
follower's thread: one pause of the requests per swap, the walk the frozen
heap spared them until then) and freezes again.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Freeze every object the collector tracks now. No collection first: a
    full one here costs what it would cost under traffic, and on the start
    to ready time; what loading left in cycles is small and stays."""
    gc.freeze()


def resettle() -> None:
    """After a swap: collect what the old version left in cycles, freeze again.
    Nothing to do when the heap was never frozen (a server embedded in tests)."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()
