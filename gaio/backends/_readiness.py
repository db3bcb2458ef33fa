"""Completions emulated on a readiness facility (shared by epoll and kqueue).

Readiness facilities say "this descriptor may now be readable"; gaio's engine
interface speaks in completions ("this receive moved 37 bytes"). The bridge is
the one the Go original uses:

* Try the system call at once. Most of the time on a busy connection the bytes
  are already there (or the socket buffer has room), and the operation completes
  without ever touching the poller.
* On ``EAGAIN`` park the operation on its descriptor, one slot per direction
  (the front end never has more than one receive and one send outstanding per
  descriptor, so a slot, not a queue, is enough). The slots are lists indexed
  by the descriptor (the kernel hands out the lowest free one, so they stay
  dense): an idle connection's parked receive costs two list slots and a flag
  byte, not dict and set entries and a tuple.
* Descriptors are registered once, edge-triggered, for both directions. An edge
  arrives only on a change, so a parked operation is retried on every edge of
  its direction and re-parked on ``EAGAIN``; nothing is ever "remembered" as
  ready, because every new operation tries the call first anyway. Errors and
  hang-ups wake both directions: the retried call itself then reports the error
  (``ECONNRESET``, ``EPIPE``) or end of stream.
* The engine remembers, per direction, that a descriptor is drained: a receive
  that came back short or with ``EAGAIN`` emptied the socket buffer, so the next
  receive parks at once instead of paying for a system call and a
  ``BlockingIOError`` that are sure to fail; the next edge clears the mark.
  Sends likewise after a partial write. (The Go original keeps the same bits.)
  Data or a FIN that arrives after the short read is a new edge. The one trap:
  data and the FIN may arrive together, as *one* edge that the poll already
  consumed; a short read then leaves the EOF behind with no edge to come
  (tests/test_regressions.py). The poll says so, though (``EPOLLRDHUP``,
  ``EV_EOF``): such a descriptor is marked hung up for good, and a hung-up
  descriptor is never treated as drained.
* Swap-buffer receives (``buf=None``) read into one region of ``bufsize`` bytes
  that is carved up front to back during a cycle and handed back whole by
  ``recycle()`` at the start of the next ``wait_io``. When the region is too
  full for another useful read, swap receives wait for the next cycle (they are
  "starved", not failed); there is always a next cycle because the results that
  filled the region are on their way to the user.

* Read-ahead on streams, as the io_uring engine does it (see its module
  docstring): a swap receive that fills the room it had marks the descriptor
  (``_ahead.ReadAhead``), and its next swap receive reads into a wide buffer of
  ``AHEAD_FACTOR`` times ``bufsize`` (``WIDE_BUFFERS`` of them, from an
  anonymous mapping: touched only when used; the most recently freed is
  taken first, while the caches still hold it). The receive completes with
  ``bufsize`` bytes at most, and the rest (``_ahead``) serves the next
  receives on that descriptor without a system call, ahead of any receive
  into the caller's memory. A wide buffer is lent, like the region, from the
  wait that returns its last bytes to the next ``recycle()``; completions on
  it wait until a wait returns them. ``detach`` drops what is read ahead.
  Wide receives do not take room in the region, so a few fat streams no
  longer take turns for it with each other and everyone else. Stream on
  epoll (8 connections, 64 KiB messages, depth 4), alternating pairs against
  the build before: server CPU per message 0.80x at the median of 20 pairs
  (19 lower), about 1900-2050 to 2300-2400 MB/s; conc100 0.98, c5k 0.96,
  pingpong 0.95 (5 pairs each); idle RSS per connection level (the lists
  grow only for descriptors that go wide).
* A wait that may sleep spins first when waits have been short (``_events``,
  see ``base.spin_ns``): polls that do not wait, until an event comes (the
  wake-up's too) or the budget is spent.
* The region and the wide buffers are anonymous mappings, so untouched pages
  cost nothing (the region used to be a ``bytearray``, all of it resident),
  and an engine idle for ``base.IDLE_TRIM_NS`` (100 ms) after traffic gives
  the touched ones back (``_trim``, ``MADV_DONTNEED``), as the io_uring
  engine does: a wait that could sleep longer sleeps that long, and if
  nothing came, the region goes when no result points into it, the wide
  buffers when none is lent or holds bytes read ahead. Every receive here is
  a system call of the waiting thread, so nothing writes into them
  meanwhile. Bench idle: 368 -> 364 bytes per connection, level (quick runs);
  callgrind micro echo level (14,570 instructions per op before, 14,514
  after, with the signal check below).

Subclasses supply the facility: ``_register``/``_unregister`` a descriptor,
``_poll_once`` (one raw poll), ``_poll`` for ``(fd, readable, writable,
hung_up)`` events from ``_events`` with the wake-up filtered out, ``wake``,
``_close_poller`` and ``_abandon_poller``.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from abc import ABC, abstractmethod
from typing import Any, Dict, Final, Iterable, List, Optional, Tuple

from ._ahead import ReadAhead
from ._slots import grown
from .base import (AHEAD_FACTOR, IDLE_TRIM_NS, WIDE_BUFFERS, WIDE_ENTRY_MAX, Completions, run_signal_handlers,
                   spin_ns)

# Final: the compiled twin binds these once instead of looking them up in the
# module's dict on every receive and send.
_ECANCELED: Final = -errno.ECANCELED
_ECONNRESET: Final = -errno.ECONNRESET
_readv: Final = os.readv
_write: Final = os.write

# A swap receive needs at least this much room in the region (or the whole
# region, if it is smaller); below it, it waits for the next cycle.
MIN_SWAP_ROOM = 2048
_MADV_DONTNEED: Final = hasattr(mmap, "MADV_DONTNEED")

# per-descriptor flag bits (ReadinessEngine._flags)
_DRAINED_RECV: Final = 1  # a receive emptied the socket buffer (see the module docstring)
_DRAINED_SEND: Final = 2  # a send filled it
_HUNG_UP: Final = 4  # the peer hung up or the socket has an error: never "drained"
_RESET_MET: Final = 8  # a send met the peer's reset while a read waited here (see _reset_met)


class ReadinessEngine(ABC):
    """Base of the epoll and kqueue engines: try at once, park on EAGAIN."""

    name = "readiness"

    def __init__(self, bufsize: int) -> None:
        self._spin_ns = spin_ns()  # (first: a bad GAIO_SPIN_US leaves nothing open)
        self._spin = False  # the last wait that could sleep was short: spin before the next
        # an anonymous mapping: untouched pages cost nothing, and an idle
        # engine can give the touched ones back (see _trim)
        try:
            self._swap_map = mmap.mmap(-1, bufsize)
        except OSError as exc:  # (ENOMEM: more than this machine maps)
            raise MemoryError(str(exc)) from None
        self._swap = memoryview(self._swap_map)
        self._swap_used = 0
        self._min_room = min(bufsize, MIN_SWAP_ROOM)
        # Parked ops, indexed by fd: the token, and the buffer (None for a
        # swap receive); one slot per direction, which is also how cancel()
        # finds an op. The receive lists cover every fd below len(self._flags);
        # the send lists grow only when a send parks (most never do).
        self._recv_tok: List[Any] = []
        self._recv_buf: List[Any] = []
        self._send_tok: List[Any] = []
        self._send_buf: List[Any] = []
        # fd -> _DRAINED_RECV | _DRAINED_SEND | _HUNG_UP: a list of small ints
        # (shared objects), which the compiled twin indexes natively
        self._flags: List[int] = []
        # fds whose swap receive awaits room in the region, oldest first
        self._starved: Dict[int, None] = {}
        self._done: Completions = []  # token, res, mem, token, ...
        self._closed = False
        # Read-ahead (see the module docstring): _wfree holds the wide
        # buffers not in use, the most recently freed last.
        wide = bufsize * AHEAD_FACTOR
        wentry = wide if wide <= WIDE_ENTRY_MAX else 0
        self._wpool = mmap.mmap(-1, max(1, wentry) * WIDE_BUFFERS)
        self._ra = ReadAhead(bufsize, wentry, memoryview(self._wpool))
        self._wfree: List[int] = list(range(WIDE_BUFFERS)) if wentry else []
        # the region (a wide buffer) was used since its pages last went back;
        # trims: how many times they did (see _trim)
        self._dirty = self._wdirty = False
        self.trims = 0

    # -- to be supplied by subclasses ----------------------------------------
    @abstractmethod
    def _register(self, fd: int) -> None:
        ...

    @abstractmethod
    def _unregister(self, fd: int) -> None:
        ...

    @abstractmethod
    def _poll(self, timeout: Optional[float]) -> Iterable[Tuple[int, bool, bool, bool]]:
        """Events as (fd, readable, writable, hung_up); the wake-up is filtered
        out. ``hung_up``: the peer closed its side or the socket has an error.
        (Subclasses get the raw events from ``_events``.)"""

    @abstractmethod
    def _poll_once(self, timeout: float) -> List[Any]:
        """One call of the facility: its raw events, the wake-up's included,
        waiting up to ``timeout`` seconds (< 0: no limit; 0: not at all)."""

    def _events(self, timeout: Optional[float]) -> List[Any]:
        """``_poll_once(timeout)`` (None: no limit), spinning first when waits
        have been short (see base.spin_ns): polls that do not wait, until an
        event, the wake-up's included, or the budget is spent; then a wait
        for what is left of ``timeout``.

        Before a poll that may block, Python's pending signal handlers run
        (and may raise; nothing has been taken yet): a signal that came while
        the compiled twin ran between two polls sets only a flag, which no
        bytecode loop looks at, and the poll would not end for it. (It showed
        once idle waits woke to give pages back: a Ctrl-C that came as one
        woke went unheard.)"""
        if timeout == 0:
            return self._poll_once(0.0)
        if not self._spin_ns:
            run_signal_handlers()
            return self._poll_once(-1.0 if timeout is None else timeout)
        budget = self._spin_ns
        t0 = time.monotonic_ns()
        events: List[Any] = []
        if self._spin and (timeout is None or timeout * 1e9 > budget):
            end = t0 + budget
            while not events and time.monotonic_ns() < end:
                events = self._poll_once(0.0)
        if not events:
            left = -1.0 if timeout is None else max(0.0, timeout - (time.monotonic_ns() - t0) / 1e9)
            run_signal_handlers()
            events = self._poll_once(left)
        self._spin = time.monotonic_ns() - t0 < budget
        return events

    @abstractmethod
    def _close_poller(self) -> None:
        ...

    @abstractmethod
    def _abandon_poller(self) -> None:
        """Close this process's copies of the facility's descriptors, touching
        no shared kernel state, taking no lock (see Engine.abandon)."""

    # -- the engine interface -------------------------------------------------
    def attach(self, fd: int) -> None:
        os.set_blocking(fd, False)  # try-at-once must never block
        self._register(fd)
        if fd >= len(self._flags):
            self._grow(fd)
        self._flags[fd] = 0
        self._ra.drop(fd)  # (a descriptor number is reused: nothing of the last one's)

    def detach(self, fd: int) -> None:
        if fd < len(self._flags):
            self._flags[fd] = 0
        self._ra.drop(fd)
        self._starved.pop(fd, None)
        try:
            self._unregister(fd)
        except OSError:
            pass  # already gone (closed behind our back): nothing to undo

    # fd is Any-typed here and in the helpers: the compiled twin then passes
    # the caller's int object to os.readv/os.write instead of boxing a new one
    # for each call.
    def recv(self, token: Any, fd: Any, buf: Any) -> None:
        i: int = fd  # (an int-typed index: native list access)
        if i >= len(self._flags):
            self._grow(fd)
        ra = self._ra
        if ra.held and ra.serve(token, i, buf):
            return
        if self._flags[i] & _DRAINED_RECV:
            done = False  # nothing there: wait for the edge
        elif buf is None and ra.wide and self._wfree and ra.state(i):  # (wide: empty until a stream)
            done = self._recv_wide(token, fd)
        elif buf is None:
            # Swap receives take turns: while any is starved, a new one queues
            # behind it, or busy connections would fill the region every cycle
            # and the starved ones would never get a turn.
            if self._starved or len(self._swap) - self._swap_used < self._min_room:
                self._starved[fd] = None
                done = False
            else:
                done = self._recv_swap(token, fd)
        else:
            done = self._recv_into(token, fd, buf)
        if not done:
            self._recv_tok[i] = token
            self._recv_buf[i] = buf

    def send(self, token: Any, fd: Any, buf: Any) -> None:
        i: int = fd
        if i >= len(self._flags):
            self._grow(fd)
        if self._flags[i] & _DRAINED_SEND or not self._send(token, fd, buf):
            if i >= len(self._send_tok):
                add = len(self._flags) - len(self._send_tok)
                self._send_tok.extend([None] * add)
                self._send_buf.extend([None] * add)
            self._send_tok[i] = token
            self._send_buf[i] = buf

    def cancel(self, fd: Any, send: bool) -> None:
        toks = self._send_tok if send else self._recv_tok
        if fd >= len(toks):
            return
        token = toks[fd]
        if token is None:
            return  # completed already (its completion is queued), or none
        toks[fd] = None
        (self._send_buf if send else self._recv_buf)[fd] = None
        self._done.extend((token, _ECANCELED, None))

    def wait(self, timeout: Optional[float]) -> Completions:
        if self._starved and len(self._swap) - self._swap_used >= self._min_room:
            self._retry_starved()
        if self._done or self._ra.done:
            timeout = 0
        idle_from = 0
        if (self._dirty or self._wdirty) and (timeout is None or timeout * 1e9 > IDLE_TRIM_NS) \
                and self._trimmable():
            # wake up once idle long enough to give pages back (see _trim)
            timeout, idle_from = IDLE_TRIM_NS / 1e9, time.monotonic_ns()
        flags = self._flags
        recv_tok, send_tok = self._recv_tok, self._send_tok
        for fd, readable, writable, hung_up in self._poll(timeout):
            if fd >= len(flags):
                continue  # not attached (only a stale event can say so)
            if hung_up:
                flags[fd] |= _HUNG_UP
            if readable:
                flags[fd] &= ~_DRAINED_RECV
                token = recv_tok[fd]
                if token is not None:
                    buf = self._recv_buf[fd]
                    if buf is not None:
                        done = self._recv_into(token, fd, buf)
                    elif self._ra.wide and self._wfree and self._ra.state(fd):
                        done = self._recv_wide(token, fd)
                    elif len(self._swap) - self._swap_used < self._min_room:
                        self._starved[fd] = None  # next cycle; the event's writable half still counts
                        done = False
                    else:
                        done = self._recv_swap(token, fd)
                    if done:
                        recv_tok[fd] = self._recv_buf[fd] = None
            if writable:
                flags[fd] &= ~_DRAINED_SEND
                token = send_tok[fd] if fd < len(send_tok) else None
                if token is not None and self._send(token, fd, self._send_buf[fd]):
                    send_tok[fd] = self._send_buf[fd] = None
        out, self._done = self._done, []
        if self._ra.done:
            self._ra.deliver(out)
        if idle_from and not out and time.monotonic_ns() - idle_from >= IDLE_TRIM_NS:
            self._trim()
        return out

    def _idle_pools(self) -> Tuple[bool, bool]:
        """Whether the region's, and the wide buffers', pages could go back
        now (see _trim)."""
        if self._closed or not _MADV_DONTNEED:
            return False, False
        return self._dirty and not self._swap_used and not self._done, self._wdirty and self._ra.idle()

    def _trimmable(self) -> bool:
        """Whether an idle wait could give pages back: so that an engine
        that cannot (a wide buffer held for good) is not woken for nothing."""
        region, wide = self._idle_pools()
        return region or wide

    def _trim(self) -> None:
        """The engine has been idle for IDLE_TRIM_NS: give the pages of the
        swap region and of the wide buffers back to the system
        (``MADV_DONTNEED``; the mappings stay, and memory used again is
        faulted in as zeroes), so that a burst of traffic does not leave an
        idle server holding them. Only what nothing refers to: the region
        when no result points into it, the wide buffers when none is lent or
        holds bytes read ahead. (Every receive here is a system call of the
        thread that waits, so nothing writes into them meanwhile.)"""
        region, wide = self._idle_pools()
        if not (region or wide):
            return
        if region:
            self._swap_map.madvise(mmap.MADV_DONTNEED)
            self._dirty = False
        if wide:
            self._wpool.madvise(mmap.MADV_DONTNEED)
            self._wdirty = False
        self.trims += 1

    def recycle(self) -> None:
        # A swap receive that completed at once (started while the front end
        # processed the last batch) sits in _done, pointing into the region, and
        # is not the user's yet: reusing the region now would overwrite it. Keep
        # the region one more cycle; starved receives wait for the next one.
        done = self._done
        for i in range(2, len(done), 3):
            if done[i] is not None:
                return
        if self._swap_used:
            self._dirty = True
            self._swap_used = 0
        lent = self._ra.lent
        if lent:
            self._wdirty = True
            self._wfree += lent
            lent.clear()

    def set_poller_affinity(self, cpuid: int) -> None:
        # There is no poller thread of our own: the poller is the thread that
        # runs wait_io, which set_loop_affinity already pins.
        pass

    def close(self) -> None:
        if self._drop_ops():
            self._close_poller()

    def abandon(self) -> None:
        if self._drop_ops():
            self._abandon_poller()

    def _drop_ops(self) -> bool:
        """Mark the engine closed and drop what it holds; False if it was
        already. Nothing is in the kernel's hands: parked operations are just
        Python references."""
        if self._closed:
            return False
        self._closed = True
        self._recv_tok, self._recv_buf, self._send_tok, self._send_buf = [], [], [], []
        self._flags = []
        self._starved.clear()
        self._done.clear()
        self._ra = ReadAhead(self._ra.entry, 0, memoryview(b""))  # (views lent keep the mapping alive)
        self._wfree = []
        return True

    # -- helpers ----------------------------------------------------------------
    def _grow(self, fd: int) -> None:
        """Make the per-fd lists cover ``fd`` (geometric growth: see grown)."""
        add = grown(len(self._flags), fd) - len(self._flags)
        self._flags.extend([0] * add)
        self._recv_tok.extend([None] * add)
        self._recv_buf.extend([None] * add)

    def _recv_wide(self, token: Any, fd: Any) -> bool:
        """A swap receive into a wide buffer (see the module docstring)."""
        i: int = fd
        ra = self._ra
        bid = self._wfree.pop()
        start = bid * ra.wentry
        try:
            n = _readv(fd, (ra.view[start:start + ra.wentry],))
        except BlockingIOError:
            self._wfree.append(bid)
            self._flags[i] |= _DRAINED_RECV
            return False
        except OSError as exc:
            n = -(exc.errno or errno.EIO)
        if self._flags[i] & _RESET_MET:
            n = self._reset_met(i, n)
        if n <= 0:  # end of stream or an error: final
            self._wfree.append(bid)
            ra.wide[i] = 0
            self._complete(token, n, None)
            return True
        if n < ra.wentry and not self._flags[i] & _HUNG_UP:
            self._flags[i] |= _DRAINED_RECV
        res, mem, lend = ra.received(i, bid, n)
        ra.done += (token, res, mem, lend)  # (lent once returned: see recycle)
        return True

    def _recv_into(self, token: Any, fd: Any, buf: Any) -> bool:
        i: int = fd
        try:
            n = _readv(fd, (buf,))
        except BlockingIOError:
            self._flags[i] |= _DRAINED_RECV
            return False
        except OSError as exc:
            n = -(exc.errno or errno.EIO)
        if self._flags[i] & _RESET_MET:
            n = self._reset_met(i, n)
        if 0 < n < len(buf) and not self._flags[i] & _HUNG_UP:
            self._flags[i] |= _DRAINED_RECV  # emptied (EOF and errors are final instead)
        self._complete(token, n, None)
        return True

    def _reset_met(self, i: int, n: int) -> int:
        """The result of a receive on descriptor ``i`` that was waiting when
        a send there met the peer's reset (``n``: what the receive got). A
        reset is reported once, to the first call that meets it, and then the
        socket reads as ended: a send tried at once met it, though this read
        was there before. If the read found the stream ended, it reports the
        reset too, as a read tried first would have: the peer did not end the
        stream. Whatever it found, the mark goes: a receive submitted later
        reads end of stream, as recv() would. (io_uring does the same.)"""
        self._flags[i] &= ~_RESET_MET
        return _ECONNRESET if n == 0 else n

    def _complete(self, token: Any, res: int, mem: Optional[memoryview]) -> None:
        done = self._done
        done.append(token)  # three appends: no tuple per completion
        done.append(res)
        done.append(mem)

    def _recv_swap(self, token: Any, fd: Any) -> bool:
        i: int = fd
        used = self._swap_used
        try:
            n = _readv(fd, (self._swap[used:],))
        except BlockingIOError:
            self._flags[i] |= _DRAINED_RECV
            return False
        except OSError as exc:
            n = -(exc.errno or errno.EIO)
        if self._flags[i] & _RESET_MET:
            n = self._reset_met(i, n)
        if n > 0:
            if n < len(self._swap) - used and not self._flags[i] & _HUNG_UP:
                self._flags[i] |= _DRAINED_RECV
            elif n == len(self._swap) - used and self._ra.wentry:
                self._ra.mark(i, 1)  # filled its room: more is likely waiting
            self._swap_used = used + n
            self._complete(token, n, self._swap[used : used + n])
        else:
            self._complete(token, n, None)
        return True

    def _send(self, token: Any, fd: Any, buf: Any) -> bool:
        i: int = fd
        try:
            n = _write(fd, buf)
        except BlockingIOError:
            self._flags[i] |= _DRAINED_SEND
            return False
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:  # BSDs: out of mbufs, same as EAGAIN
                self._flags[i] |= _DRAINED_SEND
                return False
            n = -(exc.errno or errno.EIO)
        if 0 <= n < len(buf):  # short write: the buffer is full; an error is final
            self._flags[i] |= _DRAINED_SEND
        self._complete(token, n, None)
        if n == _ECONNRESET and i < len(self._recv_tok) and self._recv_tok[i] is not None:
            self._flags[i] |= _RESET_MET  # (see _reset_met)
        return True

    def _retry_starved(self) -> None:
        starved = list(self._starved)
        for fd in starved:
            if len(self._swap) - self._swap_used < self._min_room:
                return
            del self._starved[fd]
            token = self._recv_tok[fd] if fd < len(self._recv_tok) else None
            if token is None or self._recv_buf[fd] is not None:
                continue  # cancelled meanwhile
            if self._recv_swap(token, fd):
                self._recv_tok[fd] = None
