"""The kqueue engine (macOS, FreeBSD and the other BSDs): readiness as completions.

What the kernel really does, and why the engine is shaped the way it is:

* A kqueue holds *knotes*, each named by the pair ``(ident, filter)``: for
  ``EVFILT_READ`` and ``EVFILT_WRITE`` the ident is a descriptor, so one socket
  has two independent knotes, and each reports its own event. ``kevent(2)``
  takes a *changelist* (knotes to add, delete, enable, disable, trigger) and an
  *eventlist* (room for what fired); the changes are all applied before any
  event is collected, so registering and waiting can share one system call.
  A change that fails is reported in the eventlist as ``EV_ERROR`` with the
  errno in ``data`` when there is room for it; with no room (``max_events`` of
  0) the call itself fails, which is how the engine registers: a failed attach
  raises ``OSError`` and never costs an event that fired meanwhile.
* Every socket is added once, at attach, as two changes in one call:
  ``EVFILT_READ`` and ``EVFILT_WRITE``, both ``EV_ADD | EV_CLEAR``. Without
  ``EV_CLEAR`` a knote is level-triggered: it fires on every ``kevent`` call while
  its condition holds, so an idle writable socket would spin the loop (the Go
  original once did, on epoll). With ``EV_CLEAR`` the knote's state is reset once
  the event is retrieved, and it fires again only on a new transition (more
  bytes arrived, buffer space was freed). The kernel re-checks the condition
  before delivering, so a stale event is dropped, not delivered. A missed edge
  is never repeated; none is missed, because every operation tries its system
  call first and parks only after ``EAGAIN`` (see ``_readiness.py``).
* End of stream and errors are not separate events. When the read side of a
  socket shuts down (peer's FIN, a reset) the read knote fires with ``EV_EOF`` in
  ``flags`` and the pending socket error, if any, in ``fflags`` (``ECONNRESET``);
  bytes may still be buffered, so EOF does not mean "nothing to read". As in the
  Go original (``aio_bsd.go``, after the Go runtime's netpoller), ``EV_EOF`` on a
  read knote wakes the writer too: some systems never report the write side of
  a dead connection, and the retried send then reports ``EPIPE`` or
  ``ECONNRESET`` itself. ``EV_ERROR`` wakes both directions.
* Sends may fail with ``ENOBUFS`` when the kernel is out of mbufs; that is
  "try again later", treated as ``EAGAIN`` by the shared readiness code.
* A knote on a descriptor disappears when the descriptor is closed, so
  detach-then-close leaves nothing stale, and a reused number starts clean.
* Wake-ups from other threads use ``EVFILT_USER``: a knote that belongs to no
  kernel object, added once with ``EV_CLEAR`` and fired by a change carrying
  ``NOTE_TRIGGER``; several triggers before the next wait coalesce into one
  event. CPython's ``select`` does not export ``KQ_FILTER_USER`` (the value
  differs between macOS and FreeBSD), so where it is missing the engine falls
  back to a non-blocking self-pipe watched with ``EVFILT_READ``.

All kqueue access goes through the module attribute ``_select`` so that tests
on Linux can run this engine over an emulation (``tests/kqueue_emulation.py``).
"""

from __future__ import annotations

import errno
import os
import select
import sys
import threading
from typing import Iterable, List, Optional, Tuple

from ._readiness import ReadinessEngine
from .base import probe_by_creating

_select = select  # tests substitute an object shaped like the select module

_NOTE_TRIGGER = 0x01000000  # same value on macOS and FreeBSD
_MAX_EVENTS = 1024
_WAKE_IDENT = 0  # EVFILT_USER idents are not descriptors: 0 is free
_FORK_ORPHANS: list = []  # kqueue objects abandoned in a child of fork() (never closed)


def probe() -> Optional[str]:
    """None if kqueue works in this process, else why not."""
    if not hasattr(_select, "kqueue"):
        return f"kqueue is for macOS and the BSDs (this is {sys.platform})"
    return probe_by_creating(_select.kqueue, "kqueue()")


class Engine(ReadinessEngine):
    """``EV_CLEAR`` (edge-triggered) kqueue, woken by ``EVFILT_USER`` or a pipe."""

    name = "kqueue"

    def __init__(self, bufsize: int) -> None:
        super().__init__(bufsize)
        sel = _select
        kevent = sel.kevent
        self._kevent = kevent
        self._read_filter = sel.KQ_FILTER_READ
        self._write_filter = sel.KQ_FILTER_WRITE
        self._eof = sel.KQ_EV_EOF
        self._error = sel.KQ_EV_ERROR
        self._add = sel.KQ_EV_ADD | sel.KQ_EV_CLEAR
        self._delete = sel.KQ_EV_DELETE
        self._kq = sel.kqueue()
        self._user_filter = getattr(sel, "KQ_FILTER_USER", None)
        self._pipe_r = self._pipe_w = -1
        try:
            if self._user_filter is not None:
                self._kq.control([kevent(_WAKE_IDENT, self._user_filter, self._add)], 0)
                trigger = getattr(sel, "KQ_NOTE_TRIGGER", _NOTE_TRIGGER)
                self._trigger = [kevent(_WAKE_IDENT, self._user_filter, 0, trigger)]
            else:
                self._pipe_r, self._pipe_w = os.pipe()  # close-on-exec by default
                os.set_blocking(self._pipe_r, False)
                os.set_blocking(self._pipe_w, False)
                self._kq.control([kevent(self._pipe_r, self._read_filter, self._add)], 0)
        except BaseException:
            self._release()
            raise
        # wake() may run on any thread, close() on another: the lock keeps a
        # wake-up from reaching a kqueue or pipe that close() released. It is
        # re-entrant because wake() can run from a weakref callback on a thread
        # that is inside close().
        self._wake_lock = threading.RLock()

    def _register(self, fd: int) -> None:
        kevent, add = self._kevent, self._add
        self._kq.control([kevent(fd, self._read_filter, add), kevent(fd, self._write_filter, add)], 0)

    def _unregister(self, fd: int) -> None:
        # max_events 0: a failure raises instead of taking an event's place,
        # and no event can be collected (and lost) by this call.
        kevent, delete = self._kevent, self._delete
        self._kq.control([kevent(fd, self._read_filter, delete), kevent(fd, self._write_filter, delete)], 0)

    def _poll_once(self, timeout: float) -> List[Any]:
        return self._kq.control(None, _MAX_EVENTS, None if timeout < 0 else timeout)

    def _poll(self, timeout: Optional[float]) -> Iterable[Tuple[int, bool, bool, bool]]:
        events = self._events(timeout)
        ready: List[Tuple[int, bool, bool, bool]] = []
        read_filter, eof, error = self._read_filter, self._eof, self._error
        for ev in events:
            fd, filt, flags = ev.ident, ev.filter, ev.flags
            if filt == self._user_filter or (fd == self._pipe_r and filt == read_filter):
                self._drain_pipe()
                continue
            if flags & error:
                ready.append((fd, True, True, True))
            elif filt == read_filter:
                # EOF on the read side: the peer is gone, so a parked send
                # must retry and see EPIPE/ECONNRESET (aio_bsd.go does the same).
                hung_up = bool(flags & eof)
                ready.append((fd, True, hung_up, hung_up))
            else:
                ready.append((fd, False, True, bool(flags & eof)))
        return ready

    def _drain_pipe(self) -> None:
        if self._pipe_r < 0:
            return  # EVFILT_USER with EV_CLEAR resets itself
        try:
            while os.read(self._pipe_r, 4096):
                pass
        except BlockingIOError:
            pass

    def wake(self) -> None:
        with self._wake_lock:
            if self._closed:
                return
            if self._pipe_w < 0:
                self._kq.control(self._trigger, 0)
                return
            try:
                os.write(self._pipe_w, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: a wake-up is pending already
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise

    def _close_poller(self) -> None:
        with self._wake_lock:
            self._release()

    def _abandon_poller(self) -> None:
        # A child of fork() inherits no kqueue (its number may name another
        # descriptor here later): keep the object, which would close that
        # number when collected, and close only the pipe, which is ours.
        _FORK_ORPHANS.append(self._kq)
        for fd in (self._pipe_r, self._pipe_w):
            if fd >= 0:
                os.close(fd)
        self._pipe_r = self._pipe_w = -1

    def _release(self) -> None:
        self._kq.close()
        for fd in (self._pipe_r, self._pipe_w):
            if fd >= 0:
                os.close(fd)
        self._pipe_r = self._pipe_w = -1
