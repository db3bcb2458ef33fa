"""The epoll engine (Linux): edge-triggered readiness turned into completions.

What the kernel really does, and why the engine is shaped the way it is:

* Every socket is registered once with ``EPOLLIN | EPOLLOUT | EPOLLRDHUP |
  EPOLLET``. Edge-triggered means one event per change of state, not one per
  ``epoll_wait`` while the state lasts, so an idle connection that is writable
  costs nothing (the Go original once spun the CPU on a level-triggered
  ``EPOLLOUT``). The price is that a missed edge is never repeated; the engine
  never misses one because every operation tries its system call first and only
  parks after ``EAGAIN``, at which point the next edge is guaranteed to come.
* ``EPOLLERR`` and ``EPOLLHUP`` are reported whatever was asked for, and wake
  both directions: the parked receive then sees end of stream or the error,
  the parked send sees ``EPIPE``/``ECONNRESET``.
* A descriptor is removed from the epoll set when its last reference is closed;
  the front end owns exactly one descriptor per connection (it detaches or dups
  the user's socket), so detach-then-close leaves no stale registration, and a
  reused descriptor number starts clean.
* Wake-ups come through an ``eventfd`` in the same set; ``wake()`` is a single
  8-byte write, safe from any thread, and is coalesced by the front end.
* A wait that may sleep spins first when waits have been short
  (``ReadinessEngine._events``): ``epoll_wait`` with a zero timeout.
* Sends use ``write(2)``: CPython ignores ``SIGPIPE`` at start-up, so a peer that
  went away shows up as ``EPIPE`` in the completion, not as a dead process.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Any, Iterable, List, Optional, Tuple

from ._readiness import ReadinessEngine
from .base import probe_by_creating

_IN = getattr(select, "EPOLLIN", 0x1)
_OUT = getattr(select, "EPOLLOUT", 0x4)
_ERR = getattr(select, "EPOLLERR", 0x8)
_HUP = getattr(select, "EPOLLHUP", 0x10)
_RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
_ET = getattr(select, "EPOLLET", 1 << 31)
_READ_EVENTS = _IN | _ERR | _HUP | _RDHUP
_WRITE_EVENTS = _OUT | _ERR | _HUP
_HANGUP_EVENTS = _ERR | _HUP | _RDHUP
_MAX_EVENTS = 1024


def probe() -> Optional[str]:
    """None if epoll works in this process, else why not."""
    if not hasattr(select, "epoll") or not hasattr(os, "eventfd"):
        return f"epoll is Linux-only (this is {sys.platform})"
    return probe_by_creating(select.epoll, "epoll_create")


class Engine(ReadinessEngine):
    """Edge-triggered epoll with an eventfd for wake-ups."""

    name = "epoll"

    def __init__(self, bufsize: int) -> None:
        super().__init__(bufsize)  # first: a bad GAIO_SPIN_US leaves nothing open
        self._epoll = select.epoll()
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakefd, _IN)
        # wake() may run on any thread, close() on another: the lock keeps a
        # wake-up from writing into a descriptor number that close() released
        # (and the process may have reused). Re-entrant, because wake() can run
        # from a weakref callback on a thread that is inside close().
        self._wake_lock = threading.RLock()

    def _register(self, fd: int) -> None:
        self._epoll.register(fd, _IN | _OUT | _RDHUP | _ET)

    def _unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def _poll_once(self, timeout: float) -> List[Any]:
        return self._epoll.poll(timeout, _MAX_EVENTS)

    def _poll(self, timeout: Optional[float]) -> Iterable[Tuple[int, bool, bool, bool]]:
        events = self._events(timeout)
        ready: List[Tuple[int, bool, bool, bool]] = []
        wakefd = self._wakefd
        for fd, ev in events:
            if fd == wakefd:
                try:
                    os.eventfd_read(wakefd)
                except BlockingIOError:
                    pass
                continue
            ready.append((fd, bool(ev & _READ_EVENTS), bool(ev & _WRITE_EVENTS), bool(ev & _HANGUP_EVENTS)))
        return ready

    def wake(self) -> None:
        with self._wake_lock:
            if not self._closed:
                os.eventfd_write(self._wakefd, 1)

    def _close_poller(self) -> None:
        with self._wake_lock:
            self._epoll.close()
            os.close(self._wakefd)

    def _abandon_poller(self) -> None:
        # Closing the epoll descriptor changes nothing in the parent's
        # interest list (only epoll_ctl would): the instance lives on there.
        self._epoll.close()
        os.close(self._wakefd)
