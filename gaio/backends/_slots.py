"""Per-descriptor slot lists: the one growth rule the engines share.

A module of its own so that it is compiled with the engines (see
``setup.py``'s NATIVE_SOURCES): a call from compiled code into an interpreted
function is a point where Python runs its signal handlers, and a handler that
raises there (a Ctrl-C) would leave an engine's tables half updated in the
middle of a ``wait``.
"""

from __future__ import annotations


def grown(length: int, index: int) -> int:
    """The new length of a per-descriptor slot list of ``length`` that must
    cover ``index``: an eighth more than needed, at least 64. Geometric, so
    amortised O(1); an eighth, not double, because every idle connection pays
    for the slack (doubling left up to 8 bytes of slack per list and
    descriptor: 5000 connections filled lists of 8192 slots)."""
    return max(index + 1 + (index >> 3), length + (length >> 3), 64)
