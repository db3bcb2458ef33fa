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
    cover ``index``: doubling (amortised O(1) growth), at least 64."""
    return max(index + 1, 2 * length, 64)
