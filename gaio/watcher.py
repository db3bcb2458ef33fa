"""The Watcher: every semantic of gaio's contract, on top of any engine.

How a request travels:

1. ``read``/``write``/... (any thread) validate their arguments, hand the
   connection's descriptor to the watcher on first use, and append one
   ``OpResult`` object to ``_pending`` (under ``_lock`` only for a conn new to
   the watcher). If ``wait_io`` is asleep in the engine, they poke it awake
   (once per sleep).
2. ``wait_io`` (one thread at a time) drives everything: it takes the pending
   list, files each op in its connection's per-direction FIFO, starts the head
   of each idle direction on the engine, waits for completions or the earliest
   deadline, and turns completions into results. The same ``OpResult`` object
   that was created at submission is what the user gets back: no second object
   is built per operation.
3. At most one read and one write per connection are at the engine at a time.
   That keeps order trivially (io_uring would otherwise run two receives on one
   stream socket in any order) and lets ``read_full`` and partial writes go on
   where they stopped.

Memory safety: an op in flight is the engine's token for it, held by the
engine until its completion is returned, and the op holds the user's buffer
and the byte view of it given to the engine (a ``bytes`` itself). An op is at
the engine exactly while it is its connection's ``read_head``/``write_head``.
A deadline or ``free`` asks the engine to cancel; the op still completes only
when the engine says so, with whatever it moved (bytes that raced a deadline
are delivered, never dropped).

A conn leads to its state through the weak reference the watcher keeps to it
(``getweakrefs(conn)`` lists it; its callback is the state), so a dropped conn
is noticed (the callback queues it for closing, counted by ``get_gc``) without
the watcher keeping it alive, and no table keyed by ``id(conn)`` is needed; an
op holds its conn strongly, so a conn with pending ops is never collected.
"""

from __future__ import annotations

import collections
import enum
import errno
import heapq
import math
import numbers
import operator
import os
import socket
import stat
import threading
import time
import weakref
from typing import Any, Callable, Deque, Dict, Final, List, Optional, Set, Tuple

from . import backends
from .errors import (
    CPUIDError,
    ConnClosedError,
    DeadlineError,
    EmptyBufferError,
    NoRawConnError,
    PollerClosedError,
    UnsupportedError,
    WatcherClosedError,
)

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # only mypyc reads it, at build time

    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc, no-redef]
        return lambda cls: cls


__all__ = ["Watcher", "OpResult", "OpType", "OpRead", "OpWrite", "EV_READ", "EV_WRITE"]

EV_READ: Final = 0x1
EV_WRITE: Final = 0x2

DEFAULT_BUFSIZE: Final = 64 * 1024

# Final: the compiled twin (gaio/_native.py) binds these once instead of
# looking them up in the module's dict at every use.
_monotonic: Final = time.monotonic
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
_EMPTY: Final = memoryview(b"")
_getweakrefs: Final = weakref.getweakrefs  # (once per op: _state_of)
# The longest one engine wait may be asked for (seconds); a longer timeout or a
# far deadline (a year, inf) is waited for in such steps. Every engine can
# express it: epoll counts milliseconds in an int (24.8 days at most), io_uring
# nanoseconds in 64 bits.
_MAX_WAIT: Final = 3600.0
_SO_ACCEPTCONN: Final[int] = getattr(socket, "SO_ACCEPTCONN", -1)  # -1: not on this platform
# Bumped in a child process right after fork(): a watcher made before the
# fork (generation below this) belongs to the parent (see _abandon).
_FORKS: Final[List[int]] = [0]


_thread_ids: Final = threading.local()  # .tid: the native id of the thread, once asked


def _forked() -> None:
    _FORKS[0] += 1
    _thread_ids.__dict__.clear()  # the thread that forked has a new native id


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class OpType(enum.IntEnum):
    """Kind of operation, as in Go's ``OpRead`` / ``OpWrite``."""

    READ = 0
    WRITE = 1


OpRead: Final = OpType.READ
OpWrite: Final = OpType.WRITE
_READ: Final = OpType.READ
_WRITE: Final = OpType.WRITE


class OpResult:
    """One submitted operation; returned by ``wait_io`` once it completed.

    Public fields: ``operation``, ``context``, ``conn``, ``buffer``,
    ``is_swap_buffer``, ``size``, ``error``. ``buffer[:size]`` is what was read
    or written. The other slots are the watcher's bookkeeping.
    """

    # Every pending op has one (so every idle connection does), and in the
    # compiled twin each field costs 8 bytes, a flag 1 if it sits beside the
    # other flags (declared last, in one group). Six fields and the flags make
    # a 96-byte block; every further field would cost a 16-byte step. So
    # ``operation`` is a property over a flag, the bytes still to move follow
    # from the buffer and the ``_full`` flag, and two public fields serve the
    # watcher while the op is pending (no user sees an op before it is done):
    # ``buffer`` holds the memory the engine works on (see _pinned), and
    # ``error`` the deadline and any cancel requested (notes below).
    __slots__ = (
        "context",
        "conn",
        # the user's buffer once done (a memoryview of the swap buffer for a
        # swap read); while pending, its pinned form (see _pinned), or None
        "buffer",
        "size",
        # None once done well. While pending: None, the deadline (a float,
        # until the op is filed), its entry in the deadline heap (a list), or
        # the error class of a requested cancel (the entry then unlinked).
        "error",
        "_conn_state",  # the _Conn, or None when the op failed at submission
        "is_swap_buffer",
        "_write",  # a write (OpType.WRITE), else a read
        "_full",  # completes only once all of the buffer has moved: writes and read_full
        "_done",
    )

    context: Any
    conn: Any
    buffer: Any
    size: int
    error: Any  # Optional[BaseException] for the user (see watcher.pyi)
    _conn_state: Optional["_Conn"]
    is_swap_buffer: bool
    _write: bool
    _full: bool
    _done: bool

    @property
    def operation(self) -> OpType:
        """``OpType.READ`` or ``OpType.WRITE``."""
        return _WRITE if self._write else _READ

    def __repr__(self) -> str:
        return (
            f"OpResult(operation={self.operation!r}, context={self.context!r}, "
            f"size={self.size}, error={self.error!r}, is_swap_buffer={self.is_swap_buffer})"
        )


# The weak reference each _Conn holds to the user's conn, which is also how a
# conn leads to its state: ``getweakrefs(conn)`` lists it, and its callback
# *is* the _Conn (callable: it tells the watcher that the conn is gone). So an
# idle connection costs no dict entry and no boxed id (about 60 bytes less
# than a dict keyed by ``id(conn)``), nor a slot in the reference (a bare
# weakref is an 80-byte block, one with a slot 96), and a new conn that reuses
# a dead one's address can never meet the dead one's state. Each watcher makes
# its own subclass (``_new_ref_type``), so that one type check tells its
# references from another watcher's or the user's, and the subclass carries
# the watcher's handler. Built with type() so that mypyc (see gaio/_native.py)
# leaves it an ordinary weakref subclass: a compiled class cannot derive from
# weakref.ref.
_ConnRef: Final[Any] = type("_ConnRef", (weakref.ref,), {"__slots__": ()})


def _new_ref_type(on_drop: Callable[["_Conn"], None]) -> Any:
    """A _ConnRef subclass of one watcher's own; ``on_drop(state)`` is called
    when a conn it references is gone."""
    return type("_ConnRef", (_ConnRef,), {"__slots__": (), "on_drop": on_drop})


class _Queues:
    """The ops queued behind a connection's ops at the engine (few have any)."""

    __slots__ = ("reads", "writes")

    reads: Optional[Deque[OpResult]]
    writes: Optional[Deque[OpResult]]

    def __init__(self) -> None:
        self.reads = self.writes = None


class _Conn:
    """Per-connection state."""

    # Compiled, each field costs 8 bytes and the callback (``__call__``) a
    # vectorcall pointer: with these five fields and the flags the object is a
    # 96-byte block, with six a 112-byte one, so the two rarely used queues
    # share one field.
    __slots__ = (
        "fd",
        # a _ConnRef to the conn (whose callback is this); the conn itself if
        # it cannot be weakly referenced (Watcher._held), until released; or
        # None. (One slot, not two: 16 bytes less per conn compiled.)
        "ref",
        "read_head",  # the read op at the engine, or None
        "write_head",
        "queued",  # a _Queues once an op had to queue, else None
        "attached",  # the engine watches fd
        "eof",  # a read saw end of stream: later reads see it too
        "freed",
    )

    # Typed int, so that the compiled twin keeps it in the object (a tagged
    # machine int): a descriptor above 256 would otherwise be an int object of
    # its own, 32 bytes a connection. Each engine call boxes it instead, about
    # 80 instructions an op (callgrind, bench/micro.py).
    fd: int
    ref: Any
    read_head: Optional[OpResult]
    write_head: Optional[OpResult]
    queued: Optional[_Queues]
    attached: bool
    eof: bool
    freed: bool

    def __init__(self, fd: int, ref: Any) -> None:
        self.fd = fd
        self.ref = ref
        self.read_head = self.write_head = self.queued = None
        self.attached = self.eof = self.freed = False

    def __call__(self, ref: Any) -> None:
        """The callback of ``ref``, this state's _ConnRef: its conn is gone."""
        type(ref).on_drop(self)

    @property
    def reads(self) -> Optional[Deque[OpResult]]:
        """Reads queued behind ``read_head``, in order, or None."""
        queued = self.queued
        return None if queued is None else queued.reads

    @reads.setter
    def reads(self, queue: Optional[Deque[OpResult]]) -> None:
        self._set_queue(False, queue)

    @property
    def writes(self) -> Optional[Deque[OpResult]]:
        """Writes queued behind ``write_head``, in order, or None."""
        queued = self.queued
        return None if queued is None else queued.writes

    @writes.setter
    def writes(self, queue: Optional[Deque[OpResult]]) -> None:
        self._set_queue(True, queue)

    def _set_queue(self, write: bool, queue: Optional[Deque[OpResult]]) -> None:
        """Set the reads' or writes' queue; ``queued`` exists while either does."""
        queued = self.queued
        if queued is None:
            if queue is None:
                return
            queued = self.queued = _Queues()
        if write:
            queued.writes = queue
        else:
            queued.reads = queue
        if queued.reads is None and queued.writes is None:
            self.queued = None


def _check_conn(conn: Any) -> None:
    if conn is None:
        raise UnsupportedError("conn is None: gaio watches sockets")
    if not callable(getattr(conn, "fileno", None)):
        raise NoRawConnError(
            f"conn ({type(conn).__name__}) has no fileno(): gaio needs a socket or an "
            "object whose fileno() names one"
        )


_MEMORYVIEW: Final = memoryview  # (compiled: a C static, not a lookup in builtins per use)

# The states of conns whose ops completed lately, in _RECENT slots (a power
# of two): the next op on a conn usually follows its last result (an echo
# writes what a read got, then reads again), and finding the state there
# costs about a third of _state_of's weakref walk (see there). A conn's slot
# is ``(key >> 4 ^ key >> 16) & (_RECENT - 1)``, key = id(conn): its address,
# the low bits that every object shares dropped, and the bits above folded
# in, since objects at one offset of different pools would share the slot
# otherwise. (Spelled out where used: a call costs a fifth of the saving.)
# A slot keeps its state until another conn's result takes it, so up to
# _RECENT states (about 100 bytes each, none holding its conn) may outlive
# their conns, a bounded 100 KiB per watcher at most.
_RECENT: Final = 1024


def _pinned(buf: Any, writable: bool) -> Any:
    """What a pending op keeps in its ``buffer`` field for the user's ``buf``:
    memory the engine can work on, held so that the user cannot free or
    resize it while the op is pending, and from which ``buf`` itself comes
    back when the op is done (see _unpin).

    A ``bytes`` is itself (immutable); a bytearray a memoryview of it, whose
    export keeps it from being resized and whose ``obj`` is the bytearray;
    any other buffer the pair ``(buf, view)``, where ``view`` is a 1-D
    memoryview of unsigned bytes with an export of its own (which holds even
    if the user releases a memoryview they passed, and whose ``obj`` names
    what it views, not ``buf``). _engine_view() gives the engine's memory."""
    cls = type(buf)
    if cls is bytearray or (cls is bytes and not writable):  # the common cases, checked cheaply
        if not buf:
            raise EmptyBufferError("buf is empty: it must hold at least one byte")
        return buf if cls is bytes else _MEMORYVIEW(buf)
    try:
        view = memoryview(buf)
    except TypeError:
        kind = "writable bytes-like object (bytearray, memoryview, array)" if writable else "bytes-like object"
        raise TypeError(f"buf must be a {kind}, not {type(buf).__name__}") from None
    if not view.nbytes:  # (before the read-only check: b"" is empty first)
        raise EmptyBufferError("buf is empty: it must hold at least one byte")
    if writable and view.readonly:
        raise TypeError(
            f"buf is read-only ({type(buf).__name__}); a read needs a writable buffer such as bytearray"
        )
    if not view.c_contiguous:
        raise TypeError("buf must be a C-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return (buf, view)


def _engine_view(op: "OpResult") -> Any:
    """The memory a pending op moves bytes from or to, as the engine takes it
    (``len()`` is its size in bytes); None for a swap read."""
    pinned = op.buffer
    return pinned[1] if type(pinned) is tuple else pinned


def _unpin(op: "OpResult") -> None:
    """Give a pending op's buffer back: ``buffer`` becomes the object the user
    passed, and the view that kept it from being resized is let go. Never
    twice: a done op's ``buffer`` may be the user's own memoryview."""
    pinned = op.buffer
    if type(pinned) is _MEMORYVIEW:
        op.buffer = pinned.obj  # a bytearray's
    elif type(pinned) is tuple:
        op.buffer = pinned[0]


def _requested_cancel(op: "OpResult") -> Any:
    """The error class of the cancel requested for a pending op, or None (its
    ``error`` then holds nothing, or its deadline's entry)."""
    pending = op.error
    return None if pending is None or type(pending) is list else pending


def _unlink_timer(op: "OpResult") -> None:
    """Take a pending op out of the deadline heap, if it is filed there: the
    entry stays, naming no op (the heap must not keep the op and its conn
    alive, and the expiry skips it)."""
    timer = op.error
    if type(timer) is list:
        timer[2] = None


def _names_descriptor(conn: Any) -> bool:
    """Does ``conn.fileno()`` give a descriptor number (after the watcher
    released its copy)?"""
    try:
        fd = conn.fileno()
    except Exception:  # closed io objects raise ValueError, sockets OSError
        return False
    return isinstance(fd, int) and fd >= 0


def _listening(conn: Any, fd: int) -> bool:
    """Is ``conn`` (a socket, descriptor ``fd``) a listening socket? Engines
    differ there (a read fails at once on epoll, waits for a client on
    io_uring), so the watcher refuses one itself, as a read would."""
    if _SO_ACCEPTCONN < 0:
        return False
    try:
        if isinstance(conn, socket.socket):
            return bool(conn.getsockopt(socket.SOL_SOCKET, _SO_ACCEPTCONN))
        probe = socket.socket(fileno=fd)
        try:
            return bool(probe.getsockopt(socket.SOL_SOCKET, _SO_ACCEPTCONN))
        finally:
            probe.detach()  # the descriptor stays the conn's
    except OSError:  # no such option here (some BSDs): let the engine tell
        return False


def _seconds(value: Any, name: str, what: str) -> float:
    """``value`` as float seconds: an int or a float, or any real number
    (numpy's scalars, Fraction); not a bool, not NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, numbers.Real)):
        raise TypeError(f"{name} must be {what}, not {type(value).__name__}")
    number: Any = value
    try:
        seconds = float(number)
    except OverflowError:  # an int past what a float holds: as far as it gets
        seconds = math.inf if number > 0 else -math.inf
    if math.isnan(seconds):
        raise ValueError(f"{name} must not be NaN")
    return seconds


def _check_deadline(deadline: Any) -> Optional[float]:
    if deadline is None:
        return None
    return _seconds(deadline, "deadline", "a time.monotonic() value in seconds or None")


def _check_cpuid(cpuid: Any) -> int:
    if isinstance(cpuid, bool):
        raise TypeError("cpuid must be an int, not bool")
    try:
        cpuid = operator.index(cpuid)  # an int, or an integer such as numpy's
    except TypeError:
        raise TypeError(f"cpuid must be an int, not {type(cpuid).__name__}") from None
    ncpu = os.cpu_count() or 1
    if cpuid < 0 or cpuid >= ncpu:
        raise CPUIDError(f"cpuid {cpuid} is out of range: this machine has CPUs 0..{ncpu - 1}")
    return cpuid


def _os_error(neg_errno: int) -> OSError:
    code = -neg_errno
    return OSError(code, os.strerror(code))  # picks the subclass: ConnectionResetError, ...


# Users may subclass Watcher in the compiled build too (mypyc refuses that
# unless told). A plain Watcher costs nothing more (micro: within noise); a
# subclass's instances take weak references and attributes of their own, and
# pay about 150-200 ns per op, as mypyc then dispatches through Python.
# (A plain Watcher cannot take them in the compiled build. Deriving it from a
# Python base would make mypyc give it __dict__ and __weakref__ slots, but
# mypyc 2.4 on Python 3.11 then visits and clears the weak-reference list slot
# in tp_traverse and tp_clear as if it owned a reference there: tried, a weak
# reference's callback never ran, and clearing drops a reference it never took.
# So no.)
@mypyc_attr(allow_interpreted_subclasses=True)
class Watcher:
    """A proactor for sockets: submit reads and writes, collect completions.

    ``Watcher(bufsize=65536, backend=None)``: ``bufsize`` is the size of the swap
    buffer that reads with ``buf=None`` share; ``backend`` forces an engine
    ("uring", "epoll", "kqueue"); by default ``$GAIO_BACKEND`` or the best one
    this process can run. Use as a context manager, or call :meth:`close`.
    """

    # Arguments the watcher validates itself are annotated ``Any`` here, so that
    # a bad one is met by an error naming it, not by the compiled twin's generic
    # type check (gaio/_native.py). watcher.pyi gives users their precise types.

    def __init__(self, bufsize: Any = DEFAULT_BUFSIZE, backend: Any = None) -> None:
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"bufsize must be an int, not {type(bufsize).__name__}")
        if bufsize <= 0:
            raise ValueError(f"bufsize must be positive, not {bufsize}")
        engine_class = backends.resolve(backend)
        try:
            self._engine = engine_class(bufsize)
        except OverflowError as exc:  # past what a size can be here
            raise ValueError(f"bufsize {bufsize} is too large: {exc}") from None
        except MemoryError:
            raise MemoryError(f"bufsize {bufsize}: no memory for the swap buffer") from None
        # bound once: the two calls every op makes
        self._engine_recv: Callable[..., None] = self._engine.recv
        self._engine_send: Callable[..., None] = self._engine.send
        self._bufsize = bufsize
        # Reentrant: the cyclic GC may run a user's finalizer at any allocation,
        # also inside one of our critical sections, and a finalizer that calls
        # free() (a common idiom) must not deadlock its own thread. (An RLock
        # round costs about 14 ns more than a Lock's.)
        self._lock = threading.RLock()
        # The hot paths take the lock through these bound methods: a ``with``
        # in the compiled twin looks __enter__ and __exit__ up on every use.
        self._acquire: Callable[[], Any] = self._lock.acquire
        self._release: Callable[[], Any] = self._lock.release
        # Guarded by _lock: what other threads hand to the loop.
        self._pending: List[OpResult] = []
        self._frees: List[_Conn] = []
        # Every connection's state, found from its conn through the conn's
        # _ConnRef (see there); listed here by descriptor until released, for
        # close() (a list slot: 8 bytes a connection).
        self._by_fd: List[Optional[_Conn]] = []
        # conns that cannot be weakly referenced, by id(conn) (rare: the
        # state's ``ref`` holds the conn, so the id stays its own)
        self._held: Dict[int, _Conn] = {}
        # Released states of conns still alive (freed, descriptor closed):
        # kept until the conn goes, so a later op on it still fails as freed.
        self._retired: Set[_Conn] = set()
        self._closed = False
        self._generation = _FORKS[0]  # differs in a child process after fork
        self._in_wait = False  # a wait_io is running
        self._sleeping = False  # ... and is (about to be) blocked in the engine
        self._torn_down = threading.Event()
        # Appended to by weakref callbacks, which must never take _lock.
        self._dropped: Deque[_Conn] = collections.deque()
        # Owned by the thread running wait_io.
        self._at_engine = 0  # ops the engine holds (keeps the deadline heap compact)
        # [deadline, seq, op or None]: a done op leaves its entry (lazy deletion)
        # but not itself, so the heap never keeps a conn alive.
        self._deadlines: List[list] = []
        self._deadline_seq = 0
        self._results: List[OpResult] = []
        # freed conns whose descriptor waits for in-flight ops, by id(state)
        self._closing: Dict[int, _Conn] = {}
        self._gc_found = 0
        self._gc_closed = 0
        self._loop_cpu: Optional[int] = None
        self._loop_cpu_tid = 0  # native id of the thread last pinned
        self._poller_cpu: Optional[int] = None
        self._ref_type: Any = _new_ref_type(self._on_conn_dropped)
        # written by the loop thread only, read by any submitter (see _state_of)
        self._recent: List[Optional[_Conn]] = [None] * _RECENT

    # -- properties ---------------------------------------------------------------
    @property
    def backend(self) -> str:
        """Name of the engine in use: "uring", "epoll" or "kqueue"."""
        return self._engine.name

    @property
    def bufsize(self) -> int:
        """Size of the swap buffer shared by reads submitted with ``buf=None``."""
        return self._bufsize

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (and in a child process after
        fork: the watcher is the parent's)."""
        return self._closed or self._generation != _FORKS[0]

    def _refusal(self) -> WatcherClosedError:
        if self._generation != _FORKS[0]:
            return WatcherClosedError(
                "this watcher belongs to the process that made it, not to this child of a fork(): "
                "make a new one here (close() lets go of this one without touching the parent's)"
            )
        return WatcherClosedError("watcher is closed")

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{sum(st is not None for st in self._by_fd)} conns"
        return f"<gaio.Watcher backend={self.backend!r} bufsize={self._bufsize} {state}>"

    # -- submission (any thread) ---------------------------------------------------
    def read(self, ctx: Any, conn: Any, buf: Any = None) -> None:
        """Read at least one byte from ``conn`` into ``buf``.

        ``buf=None`` reads into the watcher's swap buffer: the result's
        ``buffer`` is then a memoryview valid until the next ``wait_io``.
        """
        self._submit(_READ, ctx, conn, None if buf is None else _pinned(buf, True), None, False)

    def read_timeout(self, ctx: Any, conn: Any, buf: Any, deadline: Any) -> None:
        """Like :meth:`read`, failing with ``DeadlineError`` if nothing came by
        ``deadline`` (absolute, on the ``time.monotonic()`` clock)."""
        pinned = None if buf is None else _pinned(buf, True)
        self._submit(_READ, ctx, conn, pinned, _check_deadline(deadline), False)

    def read_full(self, ctx: Any, conn: Any, buf: Any, deadline: Any = None) -> None:
        """Fill ``buf`` completely; on EOF, error or deadline the result's
        ``size`` says how much arrived."""
        if buf is None:
            raise EmptyBufferError("buf is None: read_full needs a buffer to fill")
        self._submit(_READ, ctx, conn, _pinned(buf, True), _check_deadline(deadline), True)

    def write(self, ctx: Any, conn: Any, buf: Any) -> None:
        """Write all of ``buf`` to ``conn``. Keep ``buf`` unchanged until done."""
        if buf is None:
            raise EmptyBufferError("buf is None: there is nothing to write")
        self._submit(_WRITE, ctx, conn, _pinned(buf, False), None, True)

    def write_timeout(self, ctx: Any, conn: Any, buf: Any, deadline: Any) -> None:
        """Like :meth:`write`, failing with ``DeadlineError`` (``size`` = bytes
        written) if not done by ``deadline``."""
        if buf is None:
            raise EmptyBufferError("buf is None: there is nothing to write")
        self._submit(_WRITE, ctx, conn, _pinned(buf, False), _check_deadline(deadline), True)

    def _submit(
        self,
        kind: OpType,
        ctx: Any,
        conn: Any,
        pinned: Any,
        deadline: Optional[float],
        full: bool,
    ) -> None:
        """Queue an op for the loop; ``pinned`` is _pinned(buf), or None for a
        swap read."""
        if self._closed or self._generation != _FORKS[0]:
            raise self._refusal()
        op = OpResult()
        op._write = kind is _WRITE
        op.context = ctx
        op.conn = conn
        op.buffer = pinned
        op.is_swap_buffer = pinned is None
        op.size = 0
        op.error = deadline  # (filed by _enqueue)
        op._full = full
        op._done = False
        st = self._state_of(conn)
        if st is None:  # new to us (or refused before): adopted under _lock
            self._submit_new(conn, op)
            return
        # A known conn takes no lock (one round costs about 70 ns, a tenth of
        # an op's cost). _pending is one list for the watcher's life, only
        # ever appended to, and cut from the front under _lock (_take_work,
        # _withdraw), so an append is never lost. The sleep flag is read after
        # the append: a loop that took the list before it had raised the flag
        # first, and is woken here (see _run).
        op._conn_state = st
        self._queue(op)
        if self._closed:
            self._withdraw(op)

    def _submit_new(self, conn: Any, op: OpResult) -> None:
        """_submit for a conn without a state yet: adopt it, under _lock."""
        self._acquire()
        try:
            if self._closed:
                raise WatcherClosedError("watcher is closed")
            st = self._state_of(conn)  # (another thread may have adopted it meanwhile)
            if st is None:
                _check_conn(conn)  # only new conns need it: known ones passed it
                st = self._adopt(conn, op)
            op._conn_state = st
            self._queue(op)
        finally:
            self._release()

    def _queue(self, op: OpResult) -> None:
        """Hand ``op`` to the loop: append it to _pending, then wake a loop
        that is (about to be) asleep (the flag is read after the append)."""
        self._pending.append(op)
        if self._sleeping:
            self._sleeping = False
            self._engine.wake()

    def _cut_pending(self) -> List[OpResult]:
        """Under _lock: take every op in _pending now, cut from its front
        (see _submit); an append racing the cut lands behind it, for later."""
        pending = self._pending
        n = len(pending)
        taken = pending[:n]
        del pending[:n]
        return taken

    def _withdraw(self, op: OpResult) -> None:
        """close() raced a submission made without _lock: take ``op`` back
        and refuse the call, unless a loop has taken it already (then it is
        like any op submitted before close(), which never completes)."""
        with self._lock:
            try:
                self._pending.remove(op)
            except ValueError:
                return
        _unpin(op)  # it never reached the engine
        raise self._refusal()

    def _state_of(self, conn: Any) -> Optional[_Conn]:
        """The state of ``conn``, or None if it is new to us. Needs no lock: a
        state once found stays the conn's (released, it fails later ops as
        freed), and one being adopted is looked for again under _lock."""
        ref_type = self._ref_type
        # A state whose op on this conn completed lately, if its reference
        # still names this very conn: one that names nothing (its conn died,
        # and another object may have its id now) or another conn is passed
        # over. (The slot may change under us: what we read is one state.)
        key = id(conn)
        st = self._recent[(key >> 4 ^ key >> 16) & (_RECENT - 1)]
        if st is not None:
            ref = st.ref
            if type(ref) is ref_type and ref() is conn:
                return st
        # ([] for an object that takes no weak references, or None)
        for ref in _getweakrefs(conn):
            if type(ref) is ref_type:
                found: Optional[_Conn] = ref.__callback__
                return found
        if self._held:
            held = self._held.get(id(conn))
            if held is not None and held.ref is conn:
                return held
        return None

    def _adopt(self, conn: Any, op: OpResult) -> Optional[_Conn]:
        """Take over ``conn``'s descriptor (under _lock). On failure, set
        ``op.error`` and return None: the op is then delivered as failed."""
        try:
            fd = conn.fileno()
        except OSError as exc:
            op.error = exc
            return None
        except ValueError:  # what closed io objects raise ("I/O operation on closed file")
            fd = -1
        if not isinstance(fd, int) or fd < 0:
            op.error = ConnClosedError("conn is closed (its fileno() is -1)")
            return None
        try:
            is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
        except OSError as exc:
            op.error = exc
            return None
        if not is_socket:
            op.error = UnsupportedError(f"conn's descriptor {fd} is not a socket")
            return None
        if _listening(conn, fd):  # not a connection: refused, and left to its owner
            op.error = _os_error(-errno.ENOTCONN)
            return None
        try:
            if isinstance(conn, socket.socket):
                fd = conn.detach()  # the socket object lets go: fileno() is now -1
            else:
                fd = os.dup(fd)  # our own descriptor, as Go does with dup + close
                close = getattr(conn, "close", None)
                if callable(close):
                    try:
                        close()
                    except BaseException:
                        os.close(fd)  # not adopted after all: keep no copy of it
                        raise
        except OSError as exc:
            op.error = exc
            return None
        st = _Conn(fd, conn)
        try:
            st.ref = self._ref_type(conn, st)
        except TypeError:  # cannot be weakly referenced: hold it, no GC for it
            self._held[id(conn)] = st
        by_fd = self._by_fd
        if fd >= len(by_fd):
            by_fd.extend([None] * (fd + 1 - len(by_fd)))
        by_fd[fd] = st
        return st

    def free(self, conn: Any) -> None:
        """Close ``conn`` now (the peer sees EOF); ops pending on it complete
        with ``ConnClosedError``, and so do later ones."""
        if self._closed or self._generation != _FORKS[0]:
            raise self._refusal()
        _check_conn(conn)
        with self._lock:
            if self._closed:
                raise WatcherClosedError("watcher is closed")
            st = self._state_of(conn)
            if st is None:
                # Never handed to us: free means "release it", so close it.
                close = getattr(conn, "close", None)
                if callable(close):
                    close()
                return
            if st.freed:
                return
            st.freed = True
            _shutdown(st.fd)
            if not self._in_wait:
                # No loop is running, and holding _lock keeps one from starting:
                # release it here, so its descriptor is closed when free()
                # returns (unless an op is still at the engine).
                self._free_conn(st, locked=True)
            else:
                self._frees.append(st)
                if self._sleeping:
                    self._sleeping = False
                    self._engine.wake()

    def _on_conn_dropped(self, st: _Conn) -> None:
        # weakref callback: may run on any thread, even inside wait_io or while
        # _lock is held by this very thread, so it only queues and pokes.
        if self._generation != _FORKS[0]:
            return  # in a child of fork(): the conn is the parent's (see _abandon)
        if st.ref is None:
            return  # torn down already
        self._dropped.append(st)
        if self._sleeping and not self._closed:
            self._engine.wake()

    # -- the loop (one thread) ---------------------------------------------------------
    def wait_io(self, timeout: Any = None) -> List[OpResult]:
        """Wait for completed operations and return them.

        ``timeout`` is in seconds; None waits until at least one result exists.
        Returns [] only when the timeout expired. Swap-buffer results stay valid
        until the next call.
        """
        if timeout is not None:
            timeout = max(0.0, _seconds(timeout, "timeout", "a number of seconds or None"))
        if self._generation != _FORKS[0]:
            raise self._refusal()
        self._acquire()
        try:
            if self._closed:
                raise WatcherClosedError("watcher is closed")
            if self._in_wait:
                raise RuntimeError("wait_io is already running in another thread")
            self._pin_loop_thread()  # (with _in_wait, under _lock: close() reads both)
        except BaseException:
            self._release()
            raise
        # Once _in_wait is set, the finally below resets it, whatever happens:
        # in the Python build a signal handler runs after any call and may
        # raise (a Ctrl-C), and a wait_io left "running" refused every later one.
        self._in_wait = True
        results: Optional[List[OpResult]] = None
        try:
            try:
                # the first round's work (see _run), in this critical section:
                # one lock round less per call
                pending, frees = self._take_work(timeout != 0.0 and not self._results)
            finally:
                self._release()
            results = self._run(timeout, pending, frees)
        finally:
            self._acquire()
            try:
                self._in_wait = False
                self._sleeping = False
                closed = self._closed
                if closed:  # torn down here, below: a close() on this thread must not wait for it
                    self._teardown_tid = self._loop_tid
            finally:
                self._release()
            if closed:
                self._teardown()
        if closed or results is None:
            # In the Python build the exception's traceback keeps this frame
            # and its locals: let go of the ops they name, whose contexts are
            # the user's (a finalizer among them runs now, not whenever the
            # caller drops the exception).
            results, pending, frees = None, [], []
            raise WatcherClosedError("watcher closed")
        return results

    def _run(
        self, timeout: Optional[float], pending: List[OpResult], frees: List[_Conn]
    ) -> Optional[List[OpResult]]:
        """The loop of wait_io: hand the engine the work taken from other
        threads (``pending``, ``frees``: the first round's, taken by wait_io),
        wait, turn completions into results; again until there are results or
        the timeout expired. None when the watcher was closed meanwhile.

        The sleep flag is raised where the work is taken, under _lock, whenever
        this round may block (no results yet, not polling): a submitter that
        comes later sees it and wakes the engine, and such a wake-up sticks
        until the engine's next wait, so none is lost between taking the work
        and blocking. One that comes while this round does not block after all
        (the work it took made results) only ends the next wait early.
        """
        engine = self._engine
        engine.recycle()  # last call's swap buffers are the user's no more
        end = None if timeout is None else _monotonic() + timeout
        results = self._results  # refilled below; handed over (and replaced) on return
        acquire, release = self._acquire, self._release
        while True:
            for new_op in pending:
                self._enqueue(new_op)
            for st in frees:
                self._free_conn(st)
            if self._dropped:
                self._collect_dropped()
            if self._poller_cpu is not None:
                cpu, self._poller_cpu = self._poller_cpu, None
                engine.set_poller_affinity(cpu)

            if results or self._dropped:
                wait_for: Optional[float] = 0.0
            elif end is None and not self._deadlines:
                wait_for = None
            else:
                now = _monotonic()
                wait_for = _MAX_WAIT if end is None else min(_MAX_WAIT, max(0.0, end - now))
                if self._deadlines:
                    until_deadline = max(0.0, self._deadlines[0][0] - now)
                    if until_deadline < wait_for:
                        wait_for = until_deadline
            try:
                completions = engine.wait(wait_for)
            except (OSError, ValueError) as exc:
                # The facility itself failed (its descriptor closed behind our
                # back, the ring torn down): nothing more can complete.
                with self._lock:
                    self._closed = True
                raise PollerClosedError(f"the {engine.name} engine failed under wait_io: {exc}") from exc
            finally:
                self._sleeping = False
            self._at_engine -= len(completions) // 3
            for i in range(0, len(completions), 3):  # token (the op), res, mem
                self._complete(completions[i], completions[i + 1], completions[i + 2])
            if self._deadlines and self._deadlines[0][0] <= _monotonic():
                self._expire_deadlines()
            if results or (end is not None and _monotonic() >= end):
                self._results = []  # the batch is the caller's: hold no reference
                return results
            acquire()
            try:
                if self._closed:
                    return None
                pending, frees = self._take_work(timeout != 0.0)  # (no results here)
            finally:
                release()

    def _take_work(self, may_block: bool) -> Tuple[List[OpResult], List[_Conn]]:
        """Under _lock: take what other threads queued for the loop, and raise
        the sleep flag if the round may block (see _run)."""
        if may_block:  # first: a finalizer may submit as the lists below are made
            self._sleeping = True
        pending = self._cut_pending()
        frees, self._frees = self._frees, []
        return pending, frees

    def _enqueue(self, op: OpResult) -> None:
        st = op._conn_state
        if st is None:  # refused at submission; op.error says why
            self._finish(op, op.error)
            return
        if not st.attached and not st.freed:
            try:
                self._engine.attach(st.fd)
            except OSError as exc:
                self._finish(op, exc)
                return
            st.attached = True
        deadline = op.error  # (a float or None: see OpResult.error)
        if deadline is not None:
            self._deadline_seq += 1
            op.error = timer = [deadline, self._deadline_seq, op]
            _heappush(self._deadlines, timer)
        # An op behind another still at the engine waits for it, even on a
        # freed conn: completions stay in submission order.
        if not op._write:
            if st.read_head is None:
                if st.freed:
                    self._finish(op, ConnClosedError("connection was freed"))
                elif st.eof:
                    self._finish(op, EOFError("end of stream"))
                else:
                    self._start_read(st, op)
            elif st.reads is None:
                st.reads = collections.deque((op,))
            else:
                st.reads.append(op)
        elif st.write_head is None:
            if st.freed:
                self._finish(op, ConnClosedError("connection was freed"))
            else:
                self._start_write(st, op)
        elif st.writes is None:
            st.writes = collections.deque((op,))
        else:
            st.writes.append(op)

    def _start_read(self, st: _Conn, op: OpResult) -> None:
        st.read_head = op
        self._at_engine += 1
        view = _engine_view(op)
        if op.size and view is not None:
            view = memoryview(view)[op.size :]  # read_full: the rest of the buffer
        self._engine_recv(op, st.fd, view)

    def _start_write(self, st: _Conn, op: OpResult) -> None:
        st.write_head = op
        self._at_engine += 1
        view = _engine_view(op)
        assert view is not None  # writes always have one
        self._engine_send(op, st.fd, memoryview(view)[op.size :] if op.size else view)

    def _next_read(self, st: _Conn) -> None:
        queue = st.reads
        while queue:
            op = queue.popleft()
            if op._done:
                continue  # expired while queued
            if st.eof:  # end of stream is final: every queued read sees it
                self._finish(op, EOFError("end of stream"))
                continue
            self._start_read(st, op)
            return
        st.reads = None

    def _next_write(self, st: _Conn) -> None:
        queue = st.writes
        while queue:
            op = queue.popleft()
            if not op._done:
                self._start_write(st, op)
                return
        st.writes = None

    def _complete(self, op: OpResult, res: int, mem: Optional[memoryview]) -> None:
        """Turn the engine's completion of ``op`` into a result, or go on."""
        st = op._conn_state
        assert st is not None  # only ops refused at submission lack one, and they never reach the engine
        if res > 0 and _requested_cancel(op) is None and not st.freed:
            # the common case, kept short: bytes moved, nothing cancelled
            key = id(op.conn)
            self._recent[(key >> 4 ^ key >> 16) & (_RECENT - 1)] = st  # (see _state_of)
            size = op.size = op.size + res
            if not op._write:
                if mem is not None:
                    op.buffer = mem
                elif op._full and size < len(_engine_view(op)):
                    self._start_read(st, op)  # read_full: go on where it stopped
                    return
                st.read_head = None
                self._finish(op, None)
                if st.queued is not None:
                    self._next_read(st)
            elif size < len(_engine_view(op)):
                self._start_write(st, op)  # partial write: send the rest
            else:
                st.write_head = None
                self._finish(op, None)
                if st.queued is not None:
                    self._next_write(st)
            return
        self._complete_other(st, op, res, mem)

    def _complete_other(self, st: _Conn, op: OpResult, res: int, mem: Optional[memoryview]) -> None:
        """End of stream, errors, cancelled ops and freed conns."""
        cancel_error = _requested_cancel(op)
        if res > 0:  # moved bytes, but was cancelled or freed meanwhile
            if mem is not None:
                op.buffer = mem
            op.size += res
            error = None
            if cancel_error is not None and op._full and op.size < len(_engine_view(op)):
                error = cancel_error(_cancel_message(cancel_error))
        elif res == 0 and not op._write:
            st.eof = True
            error = EOFError("end of stream")
        elif res == 0:  # a send that moved nothing: try again, or give up if cancelled
            if cancel_error is None and not st.freed:
                self._start_write(st, op)
                return
            error = cancel_error(_cancel_message(cancel_error)) if cancel_error else None
        elif cancel_error is not None:
            error = cancel_error(_cancel_message(cancel_error))
        else:
            error = _os_error(res)
        if st.freed:
            error = ConnClosedError("connection was freed")
        if not op._write:
            st.read_head = None
            self._finish(op, error)
            if st.freed:
                self._fail_queued(st.reads)
                st.reads = None
                self._release_if_idle(st)
            elif st.queued is not None:
                self._next_read(st)
        else:
            st.write_head = None
            self._finish(op, error)
            if st.freed:
                self._fail_queued(st.writes)
                st.writes = None
                self._release_if_idle(st)
            elif st.queued is not None:
                self._next_write(st)

    def _finish(self, op: OpResult, error: Optional[BaseException]) -> None:
        _unlink_timer(op)
        op.error = error
        op._done = True
        if not op.is_swap_buffer:
            _unpin(op)  # the user's buffer is theirs again (resizable)
        elif op.size == 0:
            op.buffer = _EMPTY
        self._results.append(op)

    def _expire_deadlines(self) -> None:
        heap = self._deadlines
        now = _monotonic()
        while heap and heap[0][0] <= now:
            op = _heappop(heap)[2]
            if op is None:
                continue  # done already, or cancelled (either unlinks its entry)
            st = op._conn_state
            assert st is not None  # (ops refused at submission never get a timer)
            if st.read_head is op or st.write_head is op:  # at the engine: ask it to stop
                self._cancel(st, op, DeadlineError)
            else:  # still queued behind another op: fails now, moved nothing
                self._finish(op, DeadlineError("operation exceeded deadline"))
                # Let go of expired ops at the queue's front now, not when the
                # op ahead completes (a poller queueing read_timeouts behind a
                # long read would pile them up); others go when reached.
                queue = st.writes if op._write else st.reads
                while queue and queue[0]._done:
                    queue.popleft()
        # Completed ops leave their entries behind; keep the heap from growing
        # without bound when deadlines are far and ops are fast.
        if len(heap) > 1024 and len(heap) > 4 * self._at_engine:
            self._deadlines = [e for e in heap if e[2] is not None]
            heapq.heapify(self._deadlines)

    def _free_conn(self, st: _Conn, locked: bool = False) -> None:
        """Ask the engine to stop a freed conn's ops in flight. Ops queued behind
        them fail, in order, when they complete (``_complete_other``); the
        descriptor is closed once nothing is in flight."""
        for op in (st.read_head, st.write_head):
            if op is not None and _requested_cancel(op) is None:
                self._cancel(st, op, ConnClosedError)
        self._release_if_idle(st, locked)

    def _cancel(self, st: _Conn, op: OpResult, error_class: type) -> None:
        """Ask the engine to stop ``op`` (at the engine, on ``st``); it still
        completes once, and then fails with ``error_class`` unless it is done."""
        _unlink_timer(op)
        op.error = error_class  # (see OpResult.error)
        self._engine.cancel(st.fd, op._write)

    def _fail_queued(self, queue: Optional[Deque[OpResult]]) -> None:
        while queue:
            op = queue.popleft()
            if not op._done:
                self._finish(op, ConnClosedError("connection was freed"))

    def _release_if_idle(self, st: _Conn, locked: bool = False) -> None:
        if st.read_head is None and st.write_head is None:
            self._closing.pop(id(st), None)
            self._close_fd(st, locked)
        else:
            self._closing[id(st)] = st

    def _close_fd(self, st: _Conn, locked: bool = False) -> None:
        """Close a released conn's descriptor (``locked``: the caller holds _lock)."""
        if st.attached:
            st.attached = False
            self._engine.detach(st.fd)
        if locked:
            fd = self._forget(st)
        else:
            with self._lock:
                fd = self._forget(st)
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _forget(self, st: _Conn) -> int:
        """Under _lock: take the descriptor out of ``st`` (free() may otherwise
        shut down a number reused by then) and return it."""
        fd, st.fd = st.fd, -1
        by_fd = self._by_fd
        if 0 <= fd < len(by_fd) and by_fd[fd] is st:
            by_fd[fd] = None
        ref = st.ref
        if isinstance(ref, _ConnRef):
            if ref() is not None:  # freed, still the user's: a later op fails as freed
                self._retired.add(st)
            else:  # gone (GC): nothing can ask for it again
                self._drop_ref(st)
        elif ref is not None and not _names_descriptor(ref):
            # Held strongly: nothing would ever collect this conn. Forget it
            # now that it is released (a later op on it is refused as closed).
            # One whose fileno() still gives a number (cached, or its own
            # descriptor, which it had no close() for) stays held, until
            # close(): adopted anew, a later op would run on whatever that
            # number names now; kept, it fails as freed.
            key = id(ref)
            if self._held.get(key) is st:
                del self._held[key]
            st.ref = None
        return fd

    @staticmethod
    def _drop_ref(st: _Conn) -> None:
        """Let go of ``st``'s _ConnRef, whose callback is ``st``: a cycle the
        refcount alone would keep."""
        if isinstance(st.ref, _ConnRef):
            st.ref = None

    def _collect_dropped(self) -> None:
        dropped = self._dropped
        while dropped:
            st = dropped.popleft()
            with self._lock:
                self._retired.discard(st)
            if st.freed or st.fd < 0:
                self._drop_ref(st)
                continue  # free() already released it
            self._gc_found += 1
            st.freed = True
            # A pending op holds its conn, so nothing can be in flight here.
            self._close_fd(st)
            self._gc_closed += 1

    # -- close ----------------------------------------------------------------------------
    def close(self) -> None:
        """Free every connection (peers see EOF) and release the engine.

        Wakes a ``wait_io`` blocked in another thread, which then raises
        ``WatcherClosedError``. Safe to call more than once, from any thread:
        each call returns once everything is released.
        """
        if self._generation != _FORKS[0]:
            self._abandon()
            return
        me = threading.get_native_id()
        with self._lock:
            first = not self._closed
            busy = self._in_wait
            if first:
                self._closed = True
                if not busy:  # (before anything allocates: a finalizer may close() too)
                    self._teardown_tid = me
                for st in list(self._by_fd):  # (a finalizer may free() meanwhile)
                    if st is not None and not st.freed:
                        _shutdown(st.fd)
                if busy:
                    self._engine.wake()
        if first and not busy:
            self._teardown()
        elif (busy and self._loop_tid == me) or self._teardown_tid == me:
            pass  # from wait_io's own thread (a signal handler), or from the
            # teardown itself (a finalizer): that thread finishes it on its way out
        elif not self._torn_down.wait(30.0) and first:
            # The thread in wait_io tears down when it wakes (or the first
            # close() is at it): waited for, so that all is released on return.
            raise RuntimeError("wait_io did not return within 30 s of close()")

    def _abandon(self) -> None:
        """close() in a child process after fork(). The connections, their
        sockets and the engine's kernel objects are the parent's too: let go of
        this process's copies of their descriptors and memory, and touch
        nothing the parent uses (no shutdown, no cancel, no epoll_ctl). No
        lock either: a thread of the parent may have held one at the fork."""
        if self._closed:
            return
        self._closed = True
        states = self._all_states()
        for st in states:
            fd, st.fd = st.fd, -1
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._forget_all(states)
        self._engine.abandon()
        self._torn_down.set()

    def _all_states(self) -> List[_Conn]:
        """Every connection's state: known, closing, or waiting to be freed."""
        known = [st for st in self._by_fd if st is not None]
        return known + list(self._closing.values()) + self._frees + list(self._retired)

    def _forget_all(self, states: List[_Conn]) -> None:
        """Drop every connection (``states``: _all_states() as teardown
        began) and every op queued."""
        for entry in self._deadlines:
            entry[2] = None  # an op with a deadline and its entry hold each other
        for st in states:
            self._drop_ref(st)  # (a conn's later op then meets a closed watcher)
        self._closing.clear()
        self._by_fd.clear()
        self._held.clear()
        self._retired.clear()
        self._at_engine = 0
        self._pending.clear()
        self._frees.clear()
        self._dropped.clear()
        self._deadlines.clear()

    def _teardown(self) -> None:
        if self._torn_down.is_set():
            return
        try:
            # The engine returns only once the kernel is done with every buffer;
            # until then it holds their ops (its tokens), which hold them.
            self._engine.close()
        finally:
            states = self._all_states()
            for st in states:
                st.attached = False  # the engine is gone, and its watch with it
                self._close_fd(st)
                # Its ops will never complete: let go of their buffers now (a
                # bytearray can be resized again), not when the cyclic GC
                # finds the op <-> conn state cycle.
                for op in (st.read_head, st.write_head):
                    if op is not None:
                        _unpin(op)
                for queue in (st.reads, st.writes):
                    for op in queue or ():
                        if not op._done:  # (one that expired there is the user's now)
                            _unpin(op)
                st.read_head = st.write_head = st.queued = None
            with self._lock:  # (a racing _withdraw takes its op out under it)
                left = self._cut_pending()
            for op in left:
                _unpin(op)
            self._forget_all(states)
            self._torn_down.set()

    def __del__(self) -> None:
        try:
            if not self._closed and not self._in_wait:
                self.close()
        except Exception:
            pass

    # -- introspection and tuning -------------------------------------------------------------
    def get_gc(self) -> Tuple[int, int]:
        """``(found, closed)``: dropped connections noticed, and closed, so far."""
        return self._gc_found, self._gc_closed

    def set_loop_affinity(self, cpuid: Any) -> None:
        """Pin the thread that runs ``wait_io`` to CPU ``cpuid`` (now if known,
        else when ``wait_io`` next runs)."""
        cpuid = _check_cpuid(cpuid)
        if self._closed or self._generation != _FORKS[0]:
            raise self._refusal()
        self._loop_cpu = cpuid
        self._loop_cpu_tid = 0
        if self._loop_tid and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(self._loop_tid, {cpuid})
                self._loop_cpu_tid = self._loop_tid
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # not a CPU this process may use
                    raise CPUIDError(f"cpuid {cpuid} is not available to this process") from exc
                # else the loop thread is gone: the next wait_io pins its own

    def set_poller_affinity(self, cpuid: Any) -> None:
        """Pin the engine's own kernel-side workers (io_uring's io-wq) to CPU
        ``cpuid``; engines without such workers poll on the ``wait_io`` thread."""
        cpuid = _check_cpuid(cpuid)
        if self._closed or self._generation != _FORKS[0]:
            raise self._refusal()
        with self._lock:
            self._poller_cpu = cpuid
            if self._sleeping:
                self._sleeping = False
                self._engine.wake()

    _loop_tid = 0  # native id of the thread running wait_io (0: none yet)
    _teardown_tid = 0  # native id of the thread close() tears down in (0: none)

    def _pin_loop_thread(self) -> None:
        # get_native_id() is a system call (gettid, ~200 ns): ask once per thread
        tid: int = getattr(_thread_ids, "tid", 0)
        if not tid:
            tid = _thread_ids.tid = threading.get_native_id()
        self._loop_tid = tid
        cpu = self._loop_cpu
        if cpu is not None and self._loop_cpu_tid != tid and hasattr(os, "sched_setaffinity"):
            self._loop_cpu_tid = tid
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                # Not a CPU this thread may use (a cpuset; set_loop_affinity
                # could only check it for a loop thread it knew): the loop
                # runs unpinned rather than fail, with the work it took.
                pass


def _cancel_message(error_class: type) -> str:
    return "operation exceeded deadline" if error_class is DeadlineError else "connection was freed"


def _shutdown(fd: int) -> None:
    """Make the peer see EOF now, without giving up the descriptor number
    (in-flight ops still name it; it is closed once they completed)."""
    if fd < 0:
        return
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected any more: the peer has its EOF already
    finally:
        sock.detach()
