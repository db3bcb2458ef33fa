"""The engine interface: the one seam between the front end and the kernel.

An engine moves bytes and nothing else. It knows no deadlines, no contexts, no
``OpResult``, no connection objects: only descriptors, memory and tokens (an
object the front end passes with each operation and gets back, untouched, with
its completion).
The front end (``gaio.watcher``) owns every semantic of the public contract and
drives an engine through the small completion-based protocol below, so that a
readiness facility (epoll, kqueue) and a completion facility (io_uring) look the
same from above.

Rules every engine relies on, and the front end guarantees:

* All methods but :meth:`Engine.wake` are called by one thread at a time (the
  thread running ``wait_io``, or the thread tearing the watcher down). That thread
  may change between calls; engines that bind to a thread must cope.
* At most one receive and at most one send are outstanding per descriptor, so
  ``(fd, direction)`` names an operation: that is what :meth:`Engine.cancel`
  takes, and only for an operation whose completion it has not yet returned.
* The memory passed to ``recv``/``send`` stays referenced (by the token) until
  that operation's completion has been returned by :meth:`Engine.wait` (or
  until :meth:`Engine.close` has returned); the engine holds the token until
  then.
* ``detach(fd)`` is called only when no operation on ``fd`` is outstanding, and
  the front end closes ``fd`` right after it.

What engines promise in return:

* Every ``recv``/``send`` produces exactly one completion ``token, res, mem``,
  where ``res`` is a byte count (``>= 0``; 0 on a receive means end of stream) or
  ``-errno``. ``mem`` is ``None`` unless the receive asked for engine memory, in
  which case it is a ``memoryview`` of exactly ``res`` bytes, valid until the next
  :meth:`Engine.recycle`. :meth:`Engine.wait` returns completions as one flat
  list, three entries each (no tuple per completion).
* A completion may report fewer bytes than asked for; continuing is the front
  end's job.
* :meth:`Engine.cancel` is a request. The operation still completes exactly once,
  with ``-ECANCELED`` or with whatever it managed to move first.
* ``EINTR``/``EAGAIN`` never surface as results: the engine retries or parks.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, ClassVar, List, Optional, Protocol

from ..errors import GaioError

#: What :meth:`Engine.wait` returns: token, bytes moved or -errno, engine
#: memory or None; then the next completion's three, and so on.
Completions = List[Any]


#: A probe raises OSError with one of these (instead of returning a reason)
#: when it failed for lack of a resource: that says nothing about the machine,
#: so the registry never caches it.
TRANSIENT_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN))


class EngineUnavailable(GaioError, ValueError, OSError):
    """The engine asked for cannot run in this process; the message says why
    and lists the engines that can. A bad choice of ``backend`` (ValueError)
    caused by the system (OSError), reported by gaio (GaioError)."""


class Engine(Protocol):
    """What the front end needs from an engine (see the module docstring)."""

    #: The name users pass as ``backend=`` / ``GAIO_BACKEND``.
    name: ClassVar[str]

    def __init__(self, bufsize: int) -> None:
        """Set up the facility. ``bufsize`` bounds engine memory for swap reads.

        Raises :class:`EngineUnavailable` (with the reason) when it cannot.
        """

    def attach(self, fd: int) -> None:
        """Start watching ``fd`` (a socket owned by the front end; its blocking
        mode is the engine's to set, the front end does no I/O on it)."""

    def detach(self, fd: int) -> None:
        """Stop watching ``fd``; nothing is outstanding on it."""

    def recv(self, token: Any, fd: int, buf: Any) -> None:
        """Receive into ``buf`` (a bytearray or a writable 1-D memoryview of
        unsigned bytes; ``len(buf)`` is its size), or into engine memory
        when ``buf`` is None. Completes once at least one byte, EOF or an error."""

    def send(self, token: Any, fd: int, buf: Any) -> None:
        """Send from ``buf`` (bytes, a bytearray or a 1-D memoryview of unsigned
        bytes); completes once some bytes moved, or on error."""

    def cancel(self, fd: int, send: bool) -> None:
        """Ask for the send (``send``) or the receive outstanding on ``fd`` to
        end soon. Ignored when there is none."""

    def wait(self, timeout: Optional[float]) -> Completions:
        """Start what was queued, then wait up to ``timeout`` seconds (None: no
        limit, 0: poll) for completions or a :meth:`wake`. May return []."""

    def recycle(self) -> None:
        """Engine memory handed out by earlier :meth:`wait` calls may be reused."""

    def wake(self) -> None:
        """Make a blocked or the next :meth:`wait` return soon. Any thread."""

    def set_poller_affinity(self, cpuid: int) -> None:
        """Pin the engine's own kernel-side workers (if any) to ``cpuid``."""

    def close(self) -> None:
        """Cancel everything outstanding and release the facility. Returns only
        once the kernel no longer touches any memory it was given; completions
        still outstanding are discarded."""

    def abandon(self) -> None:
        """In a child process after fork(), instead of close(): the kernel
        objects are the parent's too. Release this process's copies of the
        facility's descriptors and memory only: no cancel, no unregister, no
        wait, no lock (a thread of the parent may have held one)."""


def probe_by_creating(create: Callable[[], object], what: str) -> Optional[str]:
    """Probe helper: set the facility up once and close it again. None if that
    worked, else the reason; a resource shortage raises (see TRANSIENT_ERRNOS)."""
    try:
        create().close()  # type: ignore[attr-defined]
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise  # out of descriptors or memory now, not unable for good
        return f"{what} failed: {exc}"
    return None


#: A probe returns None when the engine can run here, else the reason it cannot
#: (or raises OSError with an errno in TRANSIENT_ERRNOS).
Probe = Callable[[], Optional[str]]


#: Read-ahead on streams (see the io_uring engine's module docstring; the
#: readiness engines do the same): a swap read that fills its buffer makes the
#: connection's next one receive into a wide buffer of AHEAD_FACTOR times
#: ``bufsize``, WIDE_BUFFERS of them per engine, none when a wide buffer would
#: be over WIDE_ENTRY_MAX.
AHEAD_FACTOR = 4
WIDE_ENTRY_MAX = 256 << 10
WIDE_BUFFERS = 16

#: An engine idle this long (nanoseconds) after traffic gives the pages of
#: its buffers back to the system (each engine's ``_trim``).
IDLE_TRIM_NS = 100_000_000


#: Microseconds a wait polls before it sleeps when waits have been short (see
#: spin_ns); ``GAIO_SPIN_US`` overrides, 0 turns spinning off.
DEFAULT_SPIN_US = 50


def spin_ns() -> int:
    """The spin budget of a new engine, in nanoseconds.

    Spinning: a ``wait`` that may sleep first polls the kernel without blocking,
    for up to this long, if the previous sleeping wait ended within as long.
    Under a steady stream of round trips the next event then usually comes
    while the thread still runs, which skips the scheduler's sleep and wake-up
    (measured here, pingpong on io_uring: p50 63.5 -> 28.5-29.5 us, and less
    CPU per message, 36.5 -> 29-30 us; on this VM a sleep and its wake-up cost
    more than the round trip's own work). When events come further apart, a
    spin ends without one, the wait takes longer than the budget, and the next
    one sleeps at once: spinning costs at most one budget per such change.
    """
    raw = os.environ.get("GAIO_SPIN_US", "").strip()
    if not raw:
        return DEFAULT_SPIN_US * 1000
    try:
        us = int(raw)
    except ValueError:
        us = -1
    if us < 0 or us > 1_000_000:
        raise ValueError(f"GAIO_SPIN_US must be a whole number of microseconds from 0 to 1000000, not {raw!r}")
    return us * 1000


def run_signal_handlers() -> None:
    """Run Python's pending signal handlers now, raising what they raise.

    CPython runs them from its bytecode loop, and C that waits in the kernel
    (``select.epoll.poll``) runs them itself when the wait ends in EINTR. An
    engine whose wait is its own C (cffi releases the GIL and knows nothing of
    signals) calls this after a wait that may have blocked, or a Ctrl-C would
    wait for the next event: compiled code (gaio/_native.py) has no bytecode
    loop to do it later. It costs about 60 ns.
    """
    _check_signals()


def _load_check_signals() -> Callable[[], int]:
    try:
        import ctypes

        check = ctypes.pythonapi.PyErr_CheckSignals  # PyDLL: raises what the handler raised
        check.argtypes = []
        check.restype = ctypes.c_int
        return check  # type: ignore[no-any-return]
    except (ImportError, AttributeError):  # no ctypes: a Python-level call runs them too
        return lambda: 0


_check_signals = _load_check_signals()
