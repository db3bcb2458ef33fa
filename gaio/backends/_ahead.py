"""Read-ahead on streams: the state and the rules the engines share.

A swap read moves at most ``bufsize`` bytes. When one fills its buffer, the
connection is *marked*, and the engine makes its next swap receive into a
wide buffer of several entries. The read gets the first ``bufsize`` bytes; the
rest wait here, per descriptor, and serve the next reads on it without a trip
to the kernel (see the io_uring engine's module docstring for the why and the
figures). Where the wide buffers live, and how one is picked, is the engine's
business (io_uring: a provided-buffer ring of their own, the kernel picks;
epoll and kqueue: a free list); this class keeps the rest: which descriptors
are marked, the bytes each holds, and the buffers to lend or free.

A module of its own, compiled with the engines (see ``setup.py``'s
NATIVE_SOURCES), like ``_slots.py``.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from ._slots import grown


class ReadAhead:
    """Bytes received beyond a swap read's ``entry`` (``bufsize``) bytes, in
    wide buffers of ``wentry`` bytes each, numbered from 0, in ``view``."""

    def __init__(self, entry: int, wentry: int, view: memoryview) -> None:
        self.entry = entry
        self.wentry = wentry
        self.view = view
        # wide[fd]: 0; 1 when the descriptor's next swap receive should be a
        # wide one; an engine may use 2 for "a wide receive is in flight".
        # Grown only by mark(): an idle connection has no slot here.
        self.wide: List[int] = []
        # ahead[fd]: None, or [wide buffer, offset, end] of bytes received
        # and not yet read; held: how many wide buffers such entries hold
        self.ahead: List[Any] = []
        self.held = 0
        self.lent: List[int] = []  # wide buffers to free at the engine's next recycle()
        # completions not yet returned by a wait: token, res, mem, then the
        # wide buffer to lend when it is returned (or -1)
        self.done: List[Any] = []

    def mark(self, fd: int, state: int) -> None:
        """Set ``wide[fd]`` (growing the lists to cover ``fd``)."""
        wide = self.wide
        if fd >= len(wide):
            add = grown(len(wide), fd) - len(wide)
            wide.extend([0] * add)
            self.ahead.extend([None] * add)
        wide[fd] = state

    def state(self, fd: int) -> int:
        """``wide[fd]``: 0 unless ``fd`` is marked (see ``wide``)."""
        return self.wide[fd] if fd < len(self.wide) else 0

    def received(self, fd: int, bid: int, n: int) -> Tuple[int, memoryview, int]:
        """A wide receive on ``fd`` got ``n`` > 0 bytes into buffer ``bid``:
        its completion's result and memory (at most ``entry`` bytes; the rest
        is kept for the next reads), and the buffer to lend with it, or -1
        while bytes are kept in it. Marks ``fd`` again while its reads fill
        their buffers."""
        start = bid * self.wentry
        entry = self.entry
        if n > entry:
            self.ahead[fd] = [bid, entry, n]
            self.held += 1
            self.wide[fd] = 1
            return entry, self.view[start:start + entry], -1
        self.wide[fd] = 1 if n == entry else 0
        return n, self.view[start:start + n], bid

    def serve(self, token: Any, fd: int, buf: Any) -> bool:
        """Serve a receive on ``fd`` from the bytes it holds read ahead, if
        any (False: none, the engine receives): a view of at most ``entry`` of
        them for a swap receive (``buf`` None), a copy of as many as fit into
        the caller's memory. Its completion waits in ``done``; the receive
        that takes a buffer's last byte lends it. (Callers test ``held``
        first, which is 0 on every descriptor but streams'.)"""
        if fd >= len(self.ahead):
            return False
        ahead = self.ahead[fd]
        if ahead is None:
            return False
        bid: int = ahead[0]
        off: int = ahead[1]
        end: int = ahead[2]
        start = bid * self.wentry + off
        mem: Optional[memoryview] = None
        if buf is None:
            n = min(end - off, self.entry)
            mem = self.view[start:start + n]
        else:
            n = min(end - off, len(buf))
            buf[:n] = self.view[start:start + n]
        if off + n < end:
            ahead[1] = off + n
            bid = -1
        else:
            self.ahead[fd] = None
            self.held -= 1
        self.done += (token, n, mem, bid)
        return True

    def deliver(self, out: List[Any]) -> None:
        """Move the completions in ``done`` to ``out`` (token, res, mem each),
        lending the buffers that go with them until the next recycle."""
        done = self.done
        self.done = []
        for i in range(0, len(done), 4):
            out += (done[i], done[i + 1], done[i + 2])
            bid: int = done[i + 3]
            if bid >= 0:
                self.lent.append(bid)

    def drop(self, fd: int) -> None:
        """``fd`` is being closed (its number may be reused): forget what it
        read ahead, and free the buffer at the next recycle, after any view
        of it already handed out."""
        if fd < len(self.wide):
            ahead = self.ahead[fd]
            if ahead is not None:
                self.ahead[fd] = None
                self.held -= 1
                self.lent.append(ahead[0])
            self.wide[fd] = 0

    def idle(self) -> bool:
        """Whether no wide buffer is lent, holds bytes read ahead, or goes
        with a completion not yet returned: none may be written into or read
        from until the next receive (an engine may then give their pages
        back)."""
        return not (self.lent or self.held or self.done)

    def in_use(self) -> List[int]:
        """The wide buffers holding bytes read ahead, lent, or to be lent (a
        scan: for moving to a new ring, and for tests)."""
        taken = [a[0] for a in self.ahead if a is not None] + self.lent
        taken += [b for b in self.done[3::4] if b >= 0]
        return taken
