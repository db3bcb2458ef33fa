"""The io_uring engine: a completion facility, so it maps onto gaio's engine
protocol almost one to one. What the kernel really does here:

**Ops.** ``recv``/``send`` become ``IORING_OP_RECV``/``IORING_OP_SEND`` SQEs
straight on the caller's memory (``ffi.from_buffer``; the pointer's cdata stays
in ``_ops`` until the CQE arrives, so the buffer export pins the memory). For a
socket the kernel tries the syscall at submit time; on EAGAIN it arms an
internal poll and retries from *task work* when the socket becomes ready. The
data copy therefore happens in task-work context of the submitting task, not
in an interrupt. Sends use ``MSG_NOSIGNAL``. Queued ops live in one list of
ints, a record of one to three words per op (see ``gaio_enter``: a swap read
is its kind and descriptor in one word; a recv's or send's memory is an index
into the list ``_mem`` of their cdata, which cffi turns into one C array per
call, or a bytes' address). They become one array of 64-bit words
(``_REC_TYPECODE``) and cross into C once per ``wait``: ``gaio_enter``
prepares them, submits (in chunks when the SQ fills), waits and copies up to
4096 CQEs out. A lone queued op skips both arrays: ``gaio_enter1`` takes its
words and memory as arguments (about 300 ns less per wait at low load).
The CQEs copied out become the front end's (token, res, memory) in
``_process``; with the compiled twin, runs of plain ones (bytes moved, nothing
to note) go through ``_reap.process``, a small CPython extension
(``gaio/backends/_reap.c``), which stops at any other and leaves it to the
Python loop, so completions keep their order. That loop cost about 700
instructions a completion compiled, most of them boxing the CQE's two words
into ints; micro echo 13,124 -> 12,393 instructions per echoed message
(callgrind), and in conc100 the server's user time per message fell by a
tenth (1.42 -> 1.29 us, medians of 8 alternating pairs).

**Provided buffers (swap reads).** ``recv(buf=None)`` sets
``IOSQE_BUFFER_SELECT``: the kernel takes a buffer from our buffer ring only
when data is there, so 10k idle connections with a pending swap read hold no
buffer at all. The CQE carries the buffer id; the completion's memory is a
zero-copy ``memoryview`` slice of exactly ``res`` bytes of the pool, lent until
the next ``recycle()``, which hands full buffers back (tail bump, no syscall).
Memory is bounded: ``entry = min(bufsize, 1 MiB)``, ``count = clamp(pow2 <=
8 MiB / entry, 16, 4096)``, pool ``= count * entry`` bytes (<= 8 MiB, or 16
entries for buffers over 512 KiB; plus ``16 * count`` for the ring), anonymous
mmap, so only touched pages are resident. (Default bufsize: 128 buffers of
64 KiB; and 16 wide buffers of 256 KiB, see read-ahead below.) Entries follow ``bufsize`` up to 1 MiB because bulk streams pay per
receive: with 8 streams of 64 KiB messages, ``bufsize=256 KiB`` moved 27-59%
more MB/s than 64 KiB entries, alternating runs of one bench session. Each
completed read holds a whole entry until the next ``wait``, though, so bigger
entries mean fewer reads per round for many small messages.

A read may thus return fewer than ``bufsize`` bytes; gaio allows that. Swap
receives are ``IORING_RECVSEND_POLL_FIRST``: the kernel waits for data before
it picks a buffer, so an idle connection's receive holds none. One that finds
data but no buffer completes with ``-ENOBUFS``, which we never surface: it
parks in ``_starved``, FIFO, and so do new swap reads while others are parked
or the ring is empty (fairness: first come, first served). Each ``wait``
releases at most as many as there are buffers in the ring: no round
resubmits thousands of reads to fail again, and no loop spins (a read waits
for a ``recycle`` when every buffer is lent). A released read skips
POLL_FIRST: it has waited a round, so its data is usually there, and the
receive then completes as it is submitted instead of arming a poll that fires
at once (c5k: server CPU per message -2.4% at the median of 12 alternating
pairs, 9 of them lower). One that finds no data arms its poll and leaves the
buffer in the ring (an uncommitted pick), so it waits holding none, as with
POLL_FIRST; one that finds no buffer free parks again, data or not. (At c5k
nearly every swap read passes through this queue: about 450k parks in a 3.5 s
run, against 5k real ``-ENOBUFS``. Letting the queued ones go as soon as no
``-ENOBUFS`` victim waited cost 12-16% more CPU per message in 3 pairs: reads
held back a round find their data when they go.) But a released read may be an
idle connection's, which takes no buffer, while a read behind it has its data
waiting: so while any read is parked a ``wait`` sleeps at most
``STARVED_WAIT_NS`` (1 ms), and the next one releases more. (Without that cap,
such a read stayed parked through a wait with no time limit: a hang that bench
c5k and idle hit about once in a hundred runs.) Results parked in ``_ready``
(see the signal note in ``wait``) keep their buffers from recycling.

**The window.** The ring is not stocked with every buffer, only with a window
of them (``WINDOW_MIN``, 16, to begin with); the others wait in ``_spare``,
where the kernel cannot reach them. The ring is FIFO (the kernel takes from
its head, we add at its tail): stocked with all 128, it cycles through all
8 MiB of them, and each receive lands in memory the caches have long dropped;
with 16, the same few come round again while still warm. Measured in stream
(8 conns, 64 KiB messages), against the build before, in alternating pairs:
server CPU per message -12% at the median of 10 pairs (9 lower), 1634 ->
2012 MB/s; with ``bufsize=256 KiB`` -7% (8 pairs); conc100, c5k and pingpong
unchanged (median ratios 1.005, 0.96, 1.01). The window bounds the buffers in
circulation, in the ring or lent. It doubles, up to all of them, at a wait
that finds swap reads parked while buffers wait in ``_spare``, and halves
when no round of the last ``WINDOW_ROUNDS`` (1024) took more than a quarter
of it: buffers beyond it go to ``_spare`` as they come back. (The idle figure
does not change: the bench's connect storm parks dozens of hellos a round,
which widens the window to all 128 within three waits, as it should, and
their first pages stay resident.)

**Read-ahead.** A swap read moves at most ``bufsize`` bytes, and on a bulk
stream that is costly: each receive and each window update it sends pays the
TCP stack's fixed cost, and uvloop receives 256 KiB at a time. So a second,
small ring holds ``WIDE_BUFFERS`` (16) wide buffers of ``AHEAD_FACTOR`` (4)
entries each, 4 MiB of address space for the default 64 KiB (none when
``bufsize`` is over 64 KiB), touched only when used. A swap read that fills
its buffer marks the descriptor (``_ra``, an ``_ahead.ReadAhead``, which
the readiness engines share); its next swap recv, if a wide buffer is free,
is made on that ring with 4 entries' length. The read gets the first
``bufsize`` bytes; the rest stay in ``_ra`` and the next reads on the
descriptor are served from there, with no trip to the kernel: a swap read
gets a view of at most ``bufsize`` bytes, a read into the caller's memory a
copy. Such a read completes at the next ``wait``, and
the read that takes a wide buffer's last byte lends it until the next
``recycle``. The bytes are the connection's stream, in order, never dropped
while the connection lives: reads of any kind take them before the kernel's,
and a deadline already past still lets them complete. ``detach`` (the front
end closing the descriptor) drops them, so a reused descriptor number never
sees them; their buffer goes back at the next ``recycle``, after any view of
it. A read that ends short of its buffer unmarks the descriptor, so small
messages and idle connections never go wide. A wide recv that meets an empty
ring (two raced for the last buffer) goes again at once on a swap buffer.
Stream (8 connections, 64 KiB messages, depth 4), in alternating pairs
against the build before: server CPU per message 0.88x at the median of 19
pairs (14 lower), pure ACKs per MB 13 -> 3.8; conc100 and c5k unchanged (0.95,
1.01, 5 pairs each), 32 more instructions per echoed message in the micro
echo (14,792 to 14,824, callgrind).

**Giving pages back.** Traffic leaves the pools' pages resident: the first
page of every swap buffer after a storm of small messages (512 KiB), all of
both pools (12 MiB) after bulk streams. A wait that may sleep longer than
``IDLE_TRIM_NS`` (100 ms) while a buffer has been lent since the pages last
went back sleeps only that long; if nothing came, ``_trim`` gives them back
with ``MADV_DONTNEED`` (one call per pool; the mapping stays, and a buffer
used again is faulted in as zeroes) and the front end waits again. Only when
nothing can be writing into them: no buffer lent, parked or holding bytes
read ahead (a pool with one is left as it is), the ring bound to this thread
(``DEFER_TASKRUN``: a receive copies its data only during this thread's own
enter, and every CQE posted has been reaped), and no io_uring worker thread
in the process (a receive the kernel could not arm a poll for, say for want
of memory, runs in an ``iou-wrk`` thread and copies whenever it likes; a
shared ring completes receives on any return from a syscall of ours, so it
trims nothing either). A watcher that could not trim (a buffer held, a
shared ring) is not woken for it: its waits sleep as long as asked. Bench
idle (5000 connections with a pending swap read, quick runs): 473 -> 364
bytes of RSS per connection; over the second half 375 -> 377, which never
counted the pools.

**Spinning.** A wait that may sleep first enters without waiting, again
and again, when waits have been short (``base.spin_ns``, 50 us by default):
with ``DEFER_TASKRUN`` completions only come while the thread is in the
kernel, so each enter also runs the task work that finishes them. Anything
that comes, the eventfd's wake-up included, ends the spin; a timeout counts
the spin against itself.

(Linux 6.12's incremental rings, ``IOU_PBUF_RING_INC``, let one buffer serve
many small reads. Measured here on 6.18 they cost more kernel time than they
saved, 12.3-12.7 vs 11.8-12.0 us per message at c5k, so whole buffers stay.)

**Naming ops.** An op's user_data is ``kind << 32 | fd``: the front end keeps
at most one receive and one send outstanding per descriptor, so that names it,
and ``cancel(fd, send)`` finds it again. The engine's table, ``_ops``, is one
list per kind indexed by the descriptor (descriptors are small and dense: the
kernel hands out the lowest free one), so an op costs one list slot, not a
dict entry and a boxed key. A slot holds the front end's token until its
completion is returned; a recv or send on the caller's memory also has a slot
in ``_pins``, the cdata of that memory, which keeps the buffer exported (so
pinned) until the CQE has arrived. Our internal user_data (cancel, wake) have
bit 61 set, above any ``kind << 32 | fd``.

**Cancel.** ``IORING_OP_ASYNC_CANCEL`` on the user_data (``CQE_SKIP_SUCCESS``;
its own user_data names the target). It is only a request: the target still
posts its own CQE, with ``-ECANCELED`` or with the bytes it moved when the data
won the race; that is what we report. A later op on the same descriptor reuses
the user_data, but never meets a stale cancel: the front end cancels only ops
whose completion it has not seen, so the cancel is queued before any
successor, and the kernel runs SQEs in order (a cancel that finds its target
done fails). A cancel can also fail with ``-ENOENT`` while its target is in
flight: caught between two homes, for instance a send woken by its poll and
on its way to an io-wq worker (a blocked send to a peer that half-closed and
reads nothing goes there), where no cancel sees it. So a failed cancel whose
target has not completed is asked again; it finds the target on a later try
(the worker is signalled and its send ends): measured, within 35-45 enters,
under 1.5 ms. The first 256 tries go at once; later ones at most once a
millisecond (a wait sleeps until then), so a cancel that never lands cannot
make a loop spin.

**Thread binding.** ``SINGLE_ISSUER|DEFER_TASKRUN`` make completions cheap: all
task work (the recv copy, CQE posting) runs only when the issuer thread waits in
``io_uring_enter``, never by IPI in the middle of Python code. The price: any
other thread gets ``-EEXIST`` from submit, wait *and* register. We create rings
``R_DISABLED`` and enable them from the first thread that enters the kernel
(``wait``), so "create on one thread, loop on another" binds to the loop.
Should a later ``wait`` come from another thread, we *migrate*: with
DEFER_TASKRUN the CQ is frozen once the issuer has left the kernel (``wait``
drains it before returning), and an op whose CQE was not posted has moved no
data, because its copy would have run in the issuer's task work. So we reap what
is posted, ``io_uring_queue_exit`` the old ring (ring exit cancels the rest;
task work of a dying ring ends in ``-ECANCELED`` without doing I/O), wait for
the kernel to free it, and resubmit the stranded ops on a fresh ring. After two
migrations the new ring is *shared* (plain flags: no COOP_TASKRUN either, since
task work of a sleeping submitter would then never run); shared rings serve any
thread. Without DEFER_TASKRUN support we start shared. A new thread is told
by its ``threading.get_ident()``, but pthread ids are reused: a thread started
after the issuer exited may get its id. Its enter then fails with ``-EEXIST``
(``gaio_enter`` reports that in its result, having submitted nothing), and we
migrate then.

**Every ready completion, every wait.** Under DEFER_TASKRUN one
``io_uring_enter`` runs only a few task-work items (about 20 since Linux 6.13),
and a receive that waited for data completes through task work. The rest stay
queued for later enters: with 5000 busy connections some were served once a
second while others ran freely (p99 latency ~1 s in bench c5k). Rings are made
with ``TASKRUN_FLAG``, and ``gaio_drain`` (C) keeps asking while the kernel
flags pending work, so each ``wait`` returns every completion that is ready
(bounded by the CQE batch; the rest comes next wait).

**Knowing the kernel is done.** Closing a ring fd returns before the kernel has
cancelled everything. Each ring registers the write end of a pipe as a fixed
file and we close our copy: the ring context drops it only when it is freed,
after every request is gone, so EOF on the read end is a true barrier. ``close``
uses the polite path when it may (cancel ANY, reap until nothing of the user's
is in flight, bounded) and the barrier otherwise (another thread, timeout).

**Overflow.** CQ of 32768 entries; ``IORING_FEAT_NODROP`` (required) parks
overflowing CQEs in the kernel and ``gaio_enter`` flushes them (GETEVENTS)
whenever the overflow flag is up; ``-EBUSY``/``-EAGAIN`` from submit make us reap
and try again, ``-EINTR``/``-ETIME`` just end the wait. Nothing is dropped.

**Wake.** An eventfd with a multishot ``POLL_ADD`` on the ring; ``wake()`` writes
it (not again until a wait has seen that write's CQE; lock-free except for a
reentrant lock shared only with ``close``), so it works from any thread and
from GC callbacks inside ``wait``.
"""

from __future__ import annotations

import array
import collections
import errno
import mmap
import os
import select
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, Final, List, Optional, Set, Tuple

from ._ahead import ReadAhead
from ._slots import grown
from .base import (AHEAD_FACTOR, IDLE_TRIM_NS, TRANSIENT_ERRNOS, WIDE_BUFFERS, WIDE_ENTRY_MAX,
                   EngineUnavailable, run_signal_handlers, spin_ns)

try:
    from .._uring import ffi, lib
except ImportError as exc:  # built without liburing, or blocked
    ffi = lib = None
    _IMPORT_ERROR: Optional[str] = f"gaio._uring extension not built (liburing-dev missing at install time?): {exc}"
else:
    _IMPORT_ERROR = None
    # kernel ABI values, spelled as Final constants below for the compiled twin
    assert (lib.IORING_CQE_F_BUFFER, lib.IORING_CQE_F_MORE) == (1, 2)
    assert (lib.GAIO_RECV_SELECT, lib.GAIO_SEND, lib.GAIO_CANCEL, lib.GAIO_CANCEL_ALL, lib.GAIO_POLL,
            lib.GAIO_RECV_SELECT_NOW, lib.GAIO_SEND_AT, lib.GAIO_RECV_WIDE, lib.GAIO_RECV_WIDE_NOW) == tuple(range(1, 10))

__all__ = ["Engine", "probe"]

# Final: the compiled twin (gaio/_native.py) inlines these instead of looking
# them up in the module's dict at every use.
_RECV: Final = 0  # op kinds, as gaio_prep in build_uring.py knows them
_RECV_SELECT: Final = 1
_SEND: Final = 2
_CANCEL: Final = 3
_CANCEL_ALL: Final = 4
_POLL: Final = 5
_RECV_SELECT_NOW: Final = 6  # the kind of a _RECV_SELECT record that tries at once
_SEND_AT: Final = 7  # the kind of a _SEND record from a bytes object (see _BYTES_AT)
_RECV_WIDE: Final = 8  # the kinds of a _RECV_SELECT record on a wide buffer (read-ahead)
_RECV_WIDE_NOW: Final = 9
# A queued record opens with its tag, fd << _TAG_SHIFT | kind (see gaio_enter)
_TAG_SHIFT: Final = 4
_TAG_KIND: Final = 15
_INTERNAL: Final = 1 << 61
_WAKE_UD: Final = _INTERNAL | 1
_CANCEL_UD: Final = _INTERNAL | 2  # the cancel of everything (close)
_CANCEL_ONE: Final = _INTERNAL | 1 << 60  # | the target's user_data: the cancel of one op
_TARGET_MASK: Final = (1 << 60) - 1
_BGID: Final = 0  # the swap buffers' group (gaio_prep in build_uring.py knows both)
_BGID_WIDE: Final = 1  # the wide buffers' group (read-ahead, see the module docstring)
SQ_ENTRIES: Final = 1024
CQ_ENTRIES: Final = 32768
CQE_BATCH: Final = 4096
STARVED_WAIT_NS: Final = 1_000_000  # longest sleep while swap reads are parked
CANCEL_TRIES_AT_ONCE: Final = 256  # a failed cancel asked again at once (see cancel)
RETRY_WAIT_NS: Final = 1_000_000  # longest sleep while a cancel waits to be asked again
SWAP_POOL_BYTES: Final = 8 << 20
SWAP_ENTRY_MAX: Final = 1 << 20
WINDOW_MIN: Final = 16  # the fewest buffers the ring is kept stocked with (see the module docstring)
WINDOW_ROUNDS: Final = 1024  # recycles between looks at whether the window may shrink
_MADV_DONTNEED: Final = hasattr(mmap, "MADV_DONTNEED")
_EMPTY: Final = memoryview(b"")
_RETRY: Final = frozenset((-errno.EINTR, -errno.EAGAIN, -errno.ENOBUFS, -errno.ECANCELED))
# gaio_enter's result: CQEs copied, ops taken, "enter again at once" (see build_uring.py)
_GOT_MASK: Final = (1 << 24) - 1
_TAKEN_SHIFT: Final = 24
_TAKEN_MASK: Final = (1 << 32) - 1
_AGAIN_SHIFT: Final = 56
_FOREIGN_SHIFT: Final = 57  # EEXIST: the ring is bound to another thread
_get_ident: Final = threading.get_ident
_ONE: Final = (1).to_bytes(8, "little")
_M32: Final = 0xFFFFFFFF
_ECONNRESET: Final = -errno.ECONNRESET
_F_BUFFER: Final = 1  # IORING_CQE_F_BUFFER: the CQE names a provided buffer (id in flags >> 16)
_F_MORE: Final = 2  # IORING_CQE_F_MORE: a multishot request stays armed
# A CQE as gaio_reap copies it out: kind << _KIND_SHIFT | fd, or the user_data
# plus _RAW; then res << _RES_SHIFT | bid << _BID_SHIFT | the low flags.
_KIND_SHIFT: Final = 28
_FD_MASK: Final = (1 << 28) - 1
_RAW: Final = 1 << 62
_COMPACT: Final = 1 << 30  # a first word below this is kind and fd
_RES_SHIFT: Final = 19
_BID_SHIFT: Final = 4
_BID_MASK: Final = 0x7FFF
# What an _ops slot holds: the op's token (so an idle connection's pending
# read costs the engine one list slot); _pins holds the cdata of a recv's or
# send's memory beside it (or a send's bytes object: see _BYTES_AT).
_Op = Any
_MAX_LEN: Final = 0x7FFFF000  # the most one recv or send asks for (Linux's own cap)
_KINDS: Final = 3  # _RECV, _RECV_SELECT, _SEND: the kinds with a slot in _ops


# The records' typecode: 'L' where unsigned long is 64 bits (Linux), since
# array's 'L' converts a two-digit int with a loop over its digits while 'Q'
# goes through _PyLong_AsByteArray: 7 against 11 ns an item (timeit).
_REC_TYPECODE: Final = "L" if array.array("L").itemsize == 8 else "Q"


def _bytes_data_offset() -> int:
    """How far a ``bytes`` object's data lies from its ``id()``, or -1 when
    that is not an address here. CPython documents ``id()`` as the object's
    address, never moves an object, and keeps a bytes' data inside it at a
    fixed offset (``ob_sval``, the last field: ``bytes.__basicsize__ - 1``,
    the 1 being the trailing NUL). The offset is checked against cffi's own
    ``from_buffer`` address, so a build whose layout differs just takes the
    general path."""
    if ffi is None or sys.implementation.name != "cpython":
        return -1
    probe = bytes(range(16))  # (a new object: not an interned constant)
    at = int(ffi.cast("uintptr_t", ffi.from_buffer(probe))) - id(probe)
    return at if at == bytes.__basicsize__ - 1 else -1


# A send from a ``bytes`` (the common write: what ``tobytes()`` and b"..."
# make) passes the data's address, id() plus this, in its record (kind
# _SEND_AT), and _pins holds the bytes object itself: no from_buffer cdata
# per op, and no entry in the per-call array of memory. The bytes is
# immutable and _pins keeps it alive until the CQE, as it keeps a cdata.
_BYTES_AT: Final = _bytes_data_offset()


def _fast_path() -> Any:
    """``_reap.process``, the C fast path of Engine._process, configured with
    the CQE layout above; None in the Python source (the pure build tests the
    Python loop), or where it was not built."""
    if not __name__.rpartition(".")[2].startswith("_native_"):
        return None
    try:
        from . import _reap  # type: ignore[attr-defined]
    except ImportError:
        return None
    _reap.configure(_KIND_SHIFT, _FD_MASK, _COMPACT, _RES_SHIFT, _F_BUFFER, _BID_SHIFT, _BID_MASK,
                    _RECV, _RECV_SELECT, _SEND)
    return _reap.process


_FAST: Final[Any] = _fast_path()


def _words(kind: int) -> int:
    """The words of a queued record of ``kind`` (gaio_words in build_uring.py)."""
    if kind in (_RECV_SELECT, _RECV_SELECT_NOW, _RECV_WIDE, _RECV_WIDE_NOW):
        return 1
    return 2 if kind in (_POLL, _CANCEL_ALL) else 3


def _records(q: List[int]) -> List[List[int]]:
    """The queued records in ``q``, each a list of its words (migration and
    close only: the hot path never walks them)."""
    out: List[List[int]] = []
    i = 0
    while i < len(q):
        n = _words(q[i] & _TAG_KIND)
        out.append(q[i:i + n])
        i += n
    return out


def _user_data(rec: List[int]) -> int:
    """The user_data gaio_enter gives the SQE of record ``rec``."""
    kind, fd = rec[0] & _TAG_KIND, rec[0] >> _TAG_SHIFT
    if kind in (_RECV_SELECT, _RECV_SELECT_NOW, _RECV_WIDE, _RECV_WIDE_NOW):
        return _RECV_SELECT << 32 | fd
    if kind == _SEND_AT:
        return _SEND << 32 | fd
    return kind << 32 | fd if kind in (_RECV, _SEND) else rec[1]


def _io_workers() -> bool:
    """Whether an io_uring worker thread (``iou-wrk-*``) lives in this
    process; True when that cannot be told (see Engine._trim)."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return True
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm", "rb") as f:
                if f.read().startswith(b"iou-wrk"):
                    return True
        except FileNotFoundError:  # the thread is gone
            continue
        except OSError:
            return True
    return False


def _swap_geometry(bufsize: int, count: Optional[int]) -> Tuple[int, int]:
    entry = max(1, min(int(bufsize), SWAP_ENTRY_MAX))
    if count is None:
        count = max(16, min(4096, SWAP_POOL_BYTES // entry))
    # a power of two, at most 32768: buffer ids fit the 15 bits gaio_reap keeps
    count = 1 << (max(1, min(int(count), 32768)).bit_length() - 1)
    return entry, count


def _copy_in(dst: Any, items: List[int], typecode: str, size: int) -> None:
    """Copy ints into the C array ``dst`` (``typecode``/``size``: its item type),
    in one conversion: array() plus memmove, about 270 ns plus 6 an item
    (timeit, best of 5). A slice assignment costs about 240 ns plus 25 an item
    for small ints and 80 for the records' 64-bit user_data, so it never wins
    by much; a single item is cheaper assigned by the caller (50 ns)."""
    ffi.memmove(dst, array.array(typecode, items), len(items) * size)


def _barrier(fd: int, timeout: float) -> bool:
    """Wait until the ring that held the pipe's write end has been freed."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


class Engine:
    name = "uring"

    def __init__(self, bufsize: int, *, swap_buffers: Optional[int] = None,
                 cq_entries: int = CQ_ENTRIES, shared: bool = False) -> None:
        if lib is None:
            raise EngineUnavailable(_IMPORT_ERROR)
        self._closed = self._closing = False
        self._spin_ns = spin_ns()
        self._spin = False  # the last sleeping wait was short: poll before the next sleeps
        self._ring: Any = None
        self._barrier_fd = -1
        self._efd = -1
        self._cq_entries = cq_entries
        self._migrations = 2 if shared else 0
        self._issuer: Optional[int] = None  # thread that enabled the ring
        self._bound = False
        self._affinity: Optional[int] = None
        # _ops[kind][fd]: the op of user_data kind << 32 | fd, or None
        self._ops: List[List[_Op]] = [[] for _ in range(_KINDS)]
        # _pins[kind][fd]: the cdata of a recv's or send's memory (from_buffer:
        # the export pins it), or a send's bytes object, from submission until
        # its CQE; grown on first use
        self._pins: List[List[Any]] = [[] for _ in range(_KINDS)]
        # queued SQEs, 1-3 words each (see build_uring.py; _push adds a record
        # whole); a list, made an array of 64-bit words once per enter
        self._q: List[int] = []
        self._mem: List[Any] = []  # memory of queued recvs and sends; their records index it
        self._from_buffer: Callable[..., Any] = ffi.from_buffer  # bound once: every op calls it
        # and these every wait (no module-dict lookups of lib and ffi)
        self._enter: Callable[..., int] = lib.gaio_enter
        self._enter1: Callable[..., int] = lib.gaio_enter1
        self._unpack: Callable[..., Any] = ffi.unpack
        # the C fast path of _process, with the compiled twin only: the
        # Python source keeps its own loop whole, so the pure build tests it
        self._fast: Any = _FAST
        self._c_null: Any = ffi.NULL
        self._cancelled: set = set()
        # Swap reads parked (-ENOBUFS): the set says which, the deque their order.
        # A cancelled one leaves the set only; _release_starved skips it. (A dict
        # used as a FIFO costs a scan over its deleted front entries per pop:
        # 18% of the server's CPU at c5k.)
        self._starved: Set[Any] = set()
        self._starved_fifo: Deque[Any] = collections.deque()
        self._ready: List[Any] = []  # completions made without the kernel (token, res, mem, ...)
        # Descriptors whose send met ECONNRESET: a receive there that then
        # finds end of stream reports the reset instead (see _process).
        self._reset: Set[int] = set()
        self._lent: List[int] = []  # buffer ids handed out since the last recycle
        self._woken = False
        # cancels that found nothing while their target was in flight, asked
        # again: tries per target, and those held for the next wait (see cancel)
        self._cancel_tries: Dict[int, int] = {}
        self._cancel_later: List[int] = []  # targets
        self._cancel_due = 0  # time.monotonic_ns() when _cancel_later goes
        self._wake_lock = threading.RLock()
        self._returned: List[int] = []  # buffer ids recycled, handed back by the next enter
        self._entry, self._nbufs = _swap_geometry(bufsize, swap_buffers)
        # The window (see the module docstring): how many buffers may be in
        # circulation, in the ring or lent; _spare holds the free ones kept
        # out of the ring, most recently used last. Every buffer is lent, in
        # _spare, or in the ring (or in _returned, on its way there): see
        # _in_ring.
        self._window = min(self._nbufs, WINDOW_MIN)
        self._spare: List[int] = []
        self._round_peak = 0  # the most buffers one round took, since the window last changed
        self._rounds = 0
        # a swap (wide) buffer was lent since the pool's pages last went back
        # to the system; trims: how many times they did (see _trim)
        self._dirty = self._wdirty = False
        self.trims = 0
        self._pool = mmap.mmap(-1, self._entry * self._nbufs)
        self._br = mmap.mmap(-1, max(mmap.PAGESIZE, 16 * self._nbufs))
        self._pool_view = memoryview(self._pool)
        # a view of each swap buffer, made when first used: a completion's
        # memory is a slice of it from 0 (slicing the pool would box the start)
        self._views: List[Optional[memoryview]] = [None] * self._nbufs
        self._pool_ptr = ffi.from_buffer(self._pool)
        self._br_ptr = ffi.from_buffer(self._br)
        # Read-ahead (see the module docstring): WIDE_BUFFERS buffers of
        # AHEAD_FACTOR entries each, in a ring of their own; 0: none.
        wide = self._entry * AHEAD_FACTOR
        wentry = wide if wide <= WIDE_ENTRY_MAX else 0
        self._wide_on = wentry > 0  # (off too if a ring will not take the wide group)
        self._wpool = mmap.mmap(-1, max(1, wentry) * WIDE_BUFFERS)
        self._wbr = mmap.mmap(-1, max(mmap.PAGESIZE, 16 * WIDE_BUFFERS))
        self._wpool_ptr = ffi.from_buffer(self._wpool)
        self._wbr_ptr = ffi.from_buffer(self._wbr)
        # ra.wide[fd] is 2 while the descriptor's swap recv in flight is a
        # wide one; _wfree counts the wide buffers in their ring
        self._ra = ReadAhead(self._entry, wentry, memoryview(self._wpool))
        self._wfree = 0
        # gaio_enter's arrays, owned here; its struct points at them
        self._cq = ffi.new("int64_t[]", 2 * CQE_BATCH)
        self._cq_view = memoryview(ffi.buffer(self._cq))  # (for _reap.process)
        self._bids = ffi.new("uint16_t[]", self._nbufs)
        self._recs = ffi.new("uint64_t[]", 4 * 256)
        self._recs_cap = 4 * 256
        self._loop = ffi.new("struct gaio_loop *")
        lp = self._loop
        lp.recs, lp.bids, lp.br, lp.pool, lp.cq = self._recs, self._bids, self._br_ptr, self._pool_ptr, self._cq
        lp.entries, lp.size, lp.cap, lp.wsize = self._nbufs, self._entry, CQE_BATCH, wentry
        try:
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._new_ring()
        except BaseException:
            self.close()
            raise

    # -- ring life cycle ------------------------------------------------------------
    def _new_ring(self) -> None:
        ring = ffi.new("struct io_uring *")
        bound = lib.IORING_SETUP_R_DISABLED | lib.IORING_SETUP_SINGLE_ISSUER | lib.IORING_SETUP_DEFER_TASKRUN
        flagged = bound | lib.IORING_SETUP_TASKRUN_FLAG  # says when task work waits (gaio_drain)
        tries = [flagged | lib.IORING_SETUP_COOP_TASKRUN | lib.IORING_SETUP_SUBMIT_ALL,
                 flagged | lib.IORING_SETUP_SUBMIT_ALL,
                 bound | lib.IORING_SETUP_SUBMIT_ALL] if self._migrations < 2 else []
        tries += [lib.IORING_SETUP_SUBMIT_ALL, 0]
        cq = self._cq_entries
        for flags in tries:
            rc = lib.gaio_setup(ring, min(SQ_ENTRIES, cq), cq, flags)
            if rc == -errno.ENOMEM and cq > 4096:
                cq = 4096  # old kernels charge rings to RLIMIT_MEMLOCK
                rc = lib.gaio_setup(ring, min(SQ_ENTRIES, cq), cq, flags)
            if rc != -errno.EINVAL:
                break
        if rc < 0:
            raise EngineUnavailable(-rc, f"io_uring_queue_init failed: {os.strerror(-rc)}")
        self._ring, self._issuer = ring, None
        self._loop.ring = ring
        self._bound = bool(flags & lib.IORING_SETUP_DEFER_TASKRUN)
        if not ring.features & lib.IORING_FEAT_NODROP:
            raise EngineUnavailable("kernel lacks IORING_FEAT_NODROP (needs Linux 5.5+)")
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            rc = lib.io_uring_register_files(ring, ffi.new("int[]", [w]), 1)
        finally:
            os.close(w)
        self._barrier_fd = r
        if rc < 0:
            raise EngineUnavailable(f"io_uring_register_files failed: {os.strerror(-rc)}")
        rc = lib.gaio_bufring_register(ring, self._br_ptr, self._nbufs, _BGID)
        if rc < 0:
            raise EngineUnavailable(f"provided buffer ring unsupported (Linux 5.19+): {os.strerror(-rc)}")
        lent = set(self._lent)
        self._returned.clear()  # (the reset below stocks the ring afresh)
        free = [b for b in range(self._nbufs) if b not in lent]
        keep = max(0, min(self._window - len(lent), len(free)))
        self._spare = free[keep:]
        give = array.array("H", free[:keep])
        lib.gaio_bufring_add(self._br_ptr, self._nbufs, 1, self._pool_ptr, self._entry,
                             ffi.from_buffer("uint16_t[]", give), keep)
        self._wfree = 0
        if self._wide_on:
            if lib.gaio_bufring_register(ring, self._wbr_ptr, WIDE_BUFFERS, _BGID_WIDE) < 0:
                self._wide_on = False  # no more wide reads: not worth failing for
                return
            taken = set(self._ra.in_use())
            wfree = array.array("H", [b for b in range(WIDE_BUFFERS) if b not in taken])
            lib.gaio_bufring_add(self._wbr_ptr, WIDE_BUFFERS, 1, self._wpool_ptr, self._ra.wentry,
                                 ffi.from_buffer("uint16_t[]", wfree), len(wfree))
            self._wfree = len(wfree)

    def _adopt(self, tid: int) -> None:
        """The calling thread is about to enter the kernel: make the ring its own."""
        if self._issuer is not None and self._bound:
            self._migrate()
        if self._issuer is None:
            if self._bound:
                rc = lib.io_uring_enable_rings(self._ring)
                if rc < 0:
                    raise OSError(-rc, f"io_uring_enable_rings: {os.strerror(-rc)}")
            self._q[0:0] = [self._efd << _TAG_SHIFT | _POLL, _WAKE_UD]
            if self._affinity is not None:
                lib.gaio_iowq_aff(self._ring, self._affinity)
        self._issuer = tid

    def _migrate(self) -> None:
        """Move to a new ring (see the module docstring: the old CQ is frozen)."""
        old, old_barrier = self._ring, self._barrier_fd
        got = lib.gaio_reap(old, CQE_BATCH, self._cq)
        while got:
            self._process(got, self._ready)
            got = lib.gaio_reap(old, CQE_BATCH, self._cq)
        q = self._q
        records = _records(q)
        queued = {_user_data(rec) for rec in records}
        starved = self._starved
        stranded = [t for t in self._live_uds() if t not in queued and t not in starved]
        lib.io_uring_queue_exit(old)
        self._ring, self._barrier_fd = None, -1
        if stranded:
            _barrier(old_barrier, 10.0)  # stranded ops moved no data (frozen CQ)
        os.close(old_barrier)
        self._migrations += 1
        self._new_ring()
        keep: List[int] = []
        for rec in records:
            if _user_data(rec) != _WAKE_UD:
                keep.extend(rec)
        self._q = []
        for ud in stranded:
            self._requeue(ud)
        self._q.extend(keep)

    # -- submission (front end's thread; nothing enters the kernel here) ---------------
    def attach(self, fd: int) -> None:
        # Blocking mode: io_uring then arms its own poll and retries when the
        # socket is ready. On an O_NONBLOCK socket it may instead complete with
        # -EAGAIN (older kernels; io-wq punts even on new ones), which we would
        # have to resubmit again and again.
        os.set_blocking(fd, True)
        self.detach(fd)  # (a descriptor number is reused: nothing of the last one's)

    def detach(self, fd: int) -> None:
        self._ra.drop(fd)  # bytes read ahead on a closed connection
        self._reset.discard(fd)

    # token is Any: the compiled twin keeps the caller's object. fd is Any
    # too, unboxed into the int ud: shifting and or-ing machine ints costs less
    # than or-ing Python ints (ud is above 2**30, a two-digit int), and _push
    # boxes one record word. With the 'L' records (see _REC_TYPECODE), about
    # 520 instructions less per op (callgrind, an echo over 100 socketpairs in
    # one process).
    def recv(self, token: Any, fd: Any, buf: Any) -> None:
        f: int = fd
        ud: int
        ra = self._ra
        if ra.held and ra.serve(token, f, buf):
            return
        if buf is None:
            ud = _RECV_SELECT << 32 | f
            self._put(ud, token)
            if self._starved or self._in_ring <= 0:
                self._park(ud)  # queue behind the parked ones
            else:
                self._push(ud)
            return
        ud = _RECV << 32 | f
        self._put(ud, token)
        # positional, not require_writable=True: a keyword costs cffi's
        # argument parser about 145 ns more per call
        self._pin(ud, self._from_buffer("char[]", buf, True))
        self._push(ud)

    def send(self, token: Any, fd: Any, buf: Any) -> None:
        f: int = fd
        ud: int = _SEND << 32 | f
        self._put(ud, token)
        # a bytes pins itself (see _BYTES_AT); any other buffer by its cdata
        self._pin(ud, buf if type(buf) is bytes and _BYTES_AT >= 0 else self._from_buffer(buf))
        self._push(ud)

    # ud is int-typed in _put/_get/_take: the compiled twin shifts, masks and
    # indexes machine ints instead of boxing a new int for each step.
    def _put(self, ud: int, op: _Op) -> None:
        """File op ``ud`` in its slot (the front end never has two of a kind
        outstanding on one descriptor)."""
        tab = self._ops[ud >> 32]
        fd = ud & _M32
        if fd >= len(tab):
            tab.extend([None] * (grown(len(tab), fd) - len(tab)))
        tab[fd] = op

    def _get(self, ud: int) -> _Op:
        """The op filed as ``ud``, or None."""
        tab = self._ops[ud >> 32]
        fd = ud & _M32
        return tab[fd] if fd < len(tab) else None

    def _take(self, ud: int) -> _Op:
        """Unfile and return the op filed as ``ud``, or None."""
        tab = self._ops[ud >> 32]
        fd = ud & _M32
        if fd >= len(tab):
            return None
        op = tab[fd]
        if op is not None:
            tab[fd] = None
        return op

    def _pin(self, ud: int, mem: Any) -> None:
        """Keep ``mem`` (None: let go) as op ``ud``'s memory."""
        pins = self._pins[ud >> 32]
        fd = ud & _M32
        if fd >= len(pins):
            if mem is None:
                return
            pins.extend([None] * (grown(len(pins), fd) - len(pins)))
        pins[fd] = mem

    @property
    def _live(self) -> int:
        """How many ops are filed (a scan: teardown and tests only)."""
        return len(self._live_uds())

    def _live_uds(self) -> List[int]:
        """The user_data of every filed op (a scan: teardown and migration only)."""
        return [kind << 32 | fd for kind, tab in enumerate(self._ops)
                for fd, op in enumerate(tab) if op is not None]

    def _push(self, ud: int, now: bool = False) -> None:
        """Queue the SQE record of op ``ud``; its memory's cdata goes to _mem,
        which the record indexes (one array per enter, not an address per op),
        or a bytes' address into the record itself (see _BYTES_AT).
        A record goes in whole, in one call: a partial one would shift every
        record after it (an exception between appends could leave one).
        ``+=``, not ``extend()``: in the compiled twin extend() goes through
        list slice assignment, about 70 instructions more per op. ``now``: a
        swap read let out of the fairness queue tries the receive at once
        (see the module docstring)."""
        q = self._q
        kind = ud >> 32
        fd = ud & _M32
        if kind == _RECV_SELECT:  # one word (gaio_enter knows the group and length)
            ra = self._ra
            if ra.wide and ra.state(fd):  # (wide: empty until a stream)
                if self._wfree > 0:  # (a race for the last ones ends in -ENOBUFS: see _process)
                    ra.wide[fd] = 2
                    q.append(fd << _TAG_SHIFT | (_RECV_WIDE_NOW if now else _RECV_WIDE))
                    return
                ra.wide[fd] = 1
            q.append(fd << _TAG_SHIFT | (_RECV_SELECT_NOW if now else _RECV_SELECT))
            return
        mem = self._pins[kind][fd]
        if type(mem) is bytes:  # a send from a bytes: its address (see _BYTES_AT)
            q += (fd << _TAG_SHIFT | _SEND_AT, id(mem) + _BYTES_AT, min(len(mem), _MAX_LEN))
            return
        q += (fd << _TAG_SHIFT | kind, len(self._mem), min(len(mem), _MAX_LEN))
        self._mem.append(mem)

    def cancel(self, fd: Any, send: bool) -> None:
        ud = (_SEND if send else _RECV_SELECT) << 32 | fd
        op = self._get(ud)
        if op is None and not send:  # not a swap recv: one on the caller's memory?
            ud = _RECV << 32 | fd
            op = self._get(ud)
        if op is None or ud in self._cancelled:
            return
        if ud in self._starved:  # parked in Python: it moved nothing
            self._starved.discard(ud)
            self._take(ud)
            self._ready.extend((op, -errno.ECANCELED, None))  # (a swap recv: op is the token)
            return
        self._cancelled.add(ud)
        self._queue_cancel(ud)

    def _queue_cancel(self, target: int) -> None:
        """Queue the ASYNC_CANCEL record of op ``target`` (its own user_data
        names the target, see _process)."""
        self._q.extend((_CANCEL, _CANCEL_ONE | target, target))

    # -- completion ---------------------------------------------------------------------
    def wait(self, timeout: Optional[float]) -> List[Any]:
        if self._closed:
            return []
        tid = _get_ident()
        if tid != self._issuer:
            self._adopt(tid)
        if self._starved or self._circulating < self._window:
            self._stock()
        retry_in = self._release_cancels() if self._cancel_later else -1
        out, self._ready = self._ready, []
        if self._ra.done:
            self._ra.deliver(out)
        wait_ns = -1 if timeout is None else int(timeout * 1e9)
        if out:
            wait_ns = 0
        blocking = wait_ns != 0
        if blocking and retry_in >= 0:  # sleep no longer than until then
            wait_ns = retry_in if wait_ns < 0 else min(wait_ns, retry_in)
        if blocking and self._starved:
            # Reads are still parked, and those just released may be idle ones
            # that hold no buffer: sleep briefly, so that the next wait
            # releases more (see the module docstring).
            wait_ns = STARVED_WAIT_NS if wait_ns < 0 else min(wait_ns, STARVED_WAIT_NS)
        idle_from = 0
        if blocking and (self._dirty or self._wdirty) and (wait_ns < 0 or wait_ns > IDLE_TRIM_NS) \
                and self._trimmable():
            # pages of the pools are resident: wake up once the watcher has
            # been idle long enough to give them back (see _trim)
            wait_ns, idle_from = IDLE_TRIM_NS, time.monotonic_ns()
        lp = self._loop
        # Spin (see base.spin_ns): the first enter submits without waiting;
        # if it finds nothing, _spin_enter enters again until something comes
        # or the budget is spent, and then the wait sleeps for what is left.
        t0 = sleep_ns = 0
        spin = False
        if blocking and self._spin_ns:
            t0 = time.monotonic_ns()
            if self._spin and (wait_ns < 0 or wait_ns > self._spin_ns):
                spin, sleep_ns, wait_ns = True, wait_ns, 0
        for _ in range(64):  # more than once only to sleep after a spin, on a full SQ/CQ or a long queue
            q = self._q
            nq = len(q)
            returned = self._returned
            nb = len(returned)
            if nb:
                if nb == 1:
                    self._bids[0] = returned[0]  # (see _copy_in)
                else:
                    _copy_in(self._bids, returned, "H", 2)
                returned.clear()
            mem = self._mem
            # The records leave q before the call, not after it: in the Python
            # build a signal handler runs as the call returns, and one that
            # raises (Ctrl-C) must not leave them queued, to be submitted a
            # second time, into memory whose op may be over by then. The
            # records the kernel did not take (a full SQ, EEXIST) go back.
            if 0 < nq <= 3 and len(mem) <= 1:
                # one op (a round trip with one op in flight), or a few swap
                # reads: the words and memory as arguments, no arrays to build
                # (see gaio_enter1)
                one = mem[0] if mem else self._c_null
                w0 = q[0]
                w1 = q[1] if nq > 1 else 0
                w2 = q[2] if nq > 2 else 0
                q.clear()
                mem.clear()
                rv: int = self._enter1(lp, nq, w0, w1, w2, one, nb, wait_ns)
                taken = (rv >> _TAKEN_SHIFT) & _TAKEN_MASK
                if taken < nq:  # (mem left whole, as below)
                    q.extend((w0, w1, w2)[taken:nq])
                    if one is not self._c_null:
                        mem.append(one)
            else:
                if nq:
                    if nq > self._recs_cap:
                        self._grow_records(nq)
                    _copy_in(self._recs, q, _REC_TYPECODE, 8)
                    q.clear()
                rv = self._enter(lp, nq, nb, mem if mem else self._c_null, wait_ns)
                taken = (rv >> _TAKEN_SHIFT) & _TAKEN_MASK
                if taken == nq:
                    mem.clear()
                else:  # (mem left whole: the records put back index it)
                    q.extend(self._unpack(self._recs + taken, nq - taken))
            got = rv & _GOT_MASK
            if spin:
                spin = False
                if not (got or self._q or rv >> _AGAIN_SHIFT):
                    rv = self._spin_enter(t0 + self._spin_ns)
                    got = rv & _GOT_MASK
                    if not (got or rv >> _AGAIN_SHIFT):  # nothing came: sleep for what is left
                        wait_ns = sleep_ns if sleep_ns < 0 else max(1, sleep_ns - (time.monotonic_ns() - t0))
                        continue
            while got:
                self._process(got, out)
                got = lib.gaio_reap(self._ring, CQE_BATCH, self._cq) if got == CQE_BATCH else 0
            if rv >> _FOREIGN_SHIFT & 1:
                # The ring is bound to another thread, though this one has
                # its thread id: the issuer has exited and its id was reused
                # (pthread ids are). Move to a new ring as for any new thread
                # and go again; what the move reaps is ready at once.
                self._adopt(tid)
                if self._ready:
                    out.extend(self._ready)
                    self._ready = []
                if out:
                    wait_ns = 0
                continue
            if not (self._q or rv >> _AGAIN_SHIFT):
                break
            wait_ns = 0
        if t0:
            self._spin = time.monotonic_ns() - t0 < self._spin_ns
        if idle_from and not out and time.monotonic_ns() - idle_from >= IDLE_TRIM_NS:
            self._trim()
        if blocking:
            # A signal may have ended the wait (liburing reports no EINTR when
            # the same call also submitted): run Python's handlers now, as the
            # bytecode loop would. One may raise; what completed is parked
            # first, so that the next wait still delivers it.
            parked, self._ready = self._ready, out
            out.extend(parked)
            run_signal_handlers()
            out, self._ready = self._ready, []
        return out

    def _spin_enter(self, end: int) -> int:
        """Enter without waiting, nothing to submit, until an enter finds
        something (a wake-up's CQE too) or time.monotonic_ns() reaches
        ``end``; the last enter's result (see gaio_enter)."""
        lp, null = self._loop, self._c_null
        while True:
            rv: int = self._enter(lp, 0, 0, null, 0)
            if rv & _GOT_MASK or rv >> _AGAIN_SHIFT or time.monotonic_ns() >= end:
                return rv

    def _process(self, n: int, out: List[Any]) -> None:
        """Turn the ``n`` CQEs in ``_cq`` into completions appended to ``out``
        (token, res, mem each), in order: the C fast path (``_reap``) takes
        runs of plain ones, _process_range each one it stops at."""
        fast = self._fast
        if fast is None:
            self._process_range(0, n, out)
            return
        i = 0
        while i < n:
            if self._cancelled or self._reset:  # it knows neither (see _reap.c): Python for the rest
                self._process_range(i, n, out)
                return
            i = fast(self._cq_view, i, n, self._ops, self._pins, self._views, self._ra.wide,
                     self._entry, self._wide_on, self._lent, out)
            if i >= n:
                return
            self._process_range(i, i + 1, out)
            i += 1

    def _process_range(self, start: int, end: int, out: List[Any]) -> None:
        """_process for CQEs ``start`` to ``end - 1``, in Python."""
        ops, cancelled, views = self._ops, self._cancelled, self._views
        # one list of 2n ints (see gaio_reap); typed, so that the compiled
        # twin compares and shifts machine ints
        cq: List[int] = self._unpack(self._cq + 2 * start, 2 * (end - start))
        for i in range(0, 2 * (end - start), 2):
            who = cq[i]
            word = cq[i + 1]
            res = word >> _RES_SHIFT  # floor shift: negative results come out right
            if who < _COMPACT:  # (not _RAW: 2**62 is past the compiled twin's machine ints)
                kind = who >> _KIND_SHIFT
                fd = who & _FD_MASK
            else:  # a user_data copied out whole
                ud = who ^ _RAW
                if ud >= _INTERNAL:
                    if ud == _WAKE_UD:
                        self._woken = False  # that write is seen: the next wake() must write again
                        if not word & _F_MORE and not self._closing:
                            self._q.extend((self._efd << _TAG_SHIFT | _POLL, _WAKE_UD))  # re-arm
                    elif ud == _CANCEL_UD:
                        if res == -errno.EINVAL:  # no CANCEL_ANY: one by one
                            for target in self._live_uds():
                                self._queue_cancel(target)
                    elif res == -errno.ENOENT:  # a cancel of one op found nothing (see cancel)
                        target = ud & _TARGET_MASK
                        if target in cancelled and self._get(target) is not None:
                            self._cancel_again(target)
                    continue
                kind = ud >> 32
                fd = ud & _M32
            tab = ops[kind]  # (_take, inlined: once per completion)
            if fd >= len(tab):
                continue
            op = tab[fd]
            if op is None:
                continue
            tab[fd] = None
            if res < 0 and res in _RETRY:
                narrow_ok = False
                if kind == _RECV_SELECT and self._ra.state(fd) == 2:
                    self._ra.wide[fd] = 0  # (no wide buffer was free after all: a narrow one then)
                    narrow_ok = res == -errno.ENOBUFS
                again = self._resubmit(kind << 32 | fd, op, res, narrow_ok)
                if again is None:
                    continue
                res = again
            if kind == _SEND:
                if res == _ECONNRESET and (self._get(_RECV_SELECT << 32 | fd) is not None
                                           or self._get(_RECV << 32 | fd) is not None):  # a receive filed
                    self._reset.add(fd)
            elif self._reset and fd in self._reset:
                # A reset is reported once, to the first call that meets it,
                # and then the socket reads as ended. A receive waits for its
                # poll (POLL_FIRST) while a send submitted with it, or after
                # it, runs at once: the send met the reset first, though this
                # receive was there before. If it found the stream ended, it
                # reports the reset too, as the readiness engines do: the
                # peer did not end the stream. (Whatever it found, the mark
                # goes: a receive submitted later reads end of stream, as
                # everywhere.)
                self._reset.discard(fd)
                if res == 0:
                    res = _ECONNRESET
            mem: Optional[memoryview] = None
            boxed: object = res  # (boxed once: the result and the slice's end)
            if kind == _RECV_SELECT:
                if self._ra.wide and self._ra.state(fd) == 2:  # (wide: empty until a stream)
                    res, mem = self._wide_done(fd, res, word)
                    boxed = res
                elif word & _F_BUFFER:
                    bid = word >> _BID_SHIFT & _BID_MASK
                    self._lent.append(bid)  # the whole buffer is ours until recycle()
                    if res > 0:
                        whole: Any = views[bid]
                        if whole is None:
                            start = bid * self._entry
                            whole = views[bid] = self._pool_view[start:start + self._entry]
                        mem = whole[:boxed]
                        if res == self._entry and self._wide_on:  # filled: more is likely waiting
                            self._ra.mark(fd, 1)
                if res == 0:
                    mem = _EMPTY
            else:
                self._pins[kind][fd] = None  # the kernel is done with that memory
            if cancelled:
                ud = kind << 32 | fd
                cancelled.discard(ud)
                if self._cancel_tries:
                    self._cancel_tries.pop(ud, None)
            out.append(op)  # the token; three appends: no tuple per completion
            out.append(boxed)
            out.append(mem)

    def _wide_done(self, fd: int, res: int, word: int) -> Tuple[int, Optional[memoryview]]:
        """The completion of a wide swap recv: its first ``bufsize`` bytes
        are the read's, the rest are kept for the next reads (see ReadAhead)."""
        ra = self._ra
        ra.wide[fd] = 0
        if not word & _F_BUFFER:
            return res, None
        bid = word >> _BID_SHIFT & _BID_MASK
        self._wfree -= 1
        if res <= 0:
            ra.lent.append(bid)
            return res, None
        res, mem, lend = ra.received(fd, bid, res)
        if lend >= 0:
            ra.lent.append(lend)  # (returned by this wait: lent until the next recycle)
        return res, mem

    def _resubmit(self, ud: Any, op: _Op, res: int, narrow_ok: bool = False) -> Optional[int]:
        """An op that moved nothing and must not surface: queue it again, park
        it until buffers come back, or (cancel requested, closing) end it.
        ``narrow_ok``: a wide recv's -ENOBUFS, which goes again at once on a
        narrow buffer if there is one."""
        if ud in self._cancelled or self._closing:
            return -errno.ECANCELED
        self._put(ud, op)
        if res == -errno.ENOBUFS and not (narrow_ok and not self._starved and self._in_ring > 0):
            self._park(ud)  # released by a later wait
        else:
            self._push(ud)
        return None

    def _cancel_again(self, target: int) -> None:
        """Queue the cancel of ``target`` once more: at once for the first
        tries (it is found within a few dozen enters), then no more than once
        per RETRY_WAIT_NS (see _release_cancels), so that no loop spins."""
        tries = self._cancel_tries.get(target, 0) + 1
        self._cancel_tries[target] = tries
        if tries <= CANCEL_TRIES_AT_ONCE:
            self._queue_cancel(target)
        else:
            if not self._cancel_later:
                self._cancel_due = time.monotonic_ns() + RETRY_WAIT_NS
            self._cancel_later.append(target)

    def _release_cancels(self) -> int:
        """Queue the held cancels once their time has come; return the ns
        until then (0: queued now). Only for targets still filed and still to
        cancel: one that completed meanwhile may have a successor with its
        user_data already queued, which such a cancel must not hit."""
        left = self._cancel_due - time.monotonic_ns()
        if left > 0:
            return left
        for target in self._cancel_later:
            if target in self._cancelled and self._get(target) is not None:
                self._queue_cancel(target)
        self._cancel_later.clear()
        return 0

    def recycle(self) -> None:
        lent = self._lent
        if not lent and not self._ra.lent:
            return
        if lent:
            self._dirty = True  # (a wide buffer lent marks _wdirty: _recycle_wide)
        ready = self._ready
        for i in range(2, len(ready), 3):
            if ready[i] is not None:
                return  # a parked swap result still shows its bytes: not yet
        if self._ra.lent:
            self._recycle_wide()
            if not lent:
                return
        n = len(lent)
        if n > self._round_peak:
            self._round_peak = n
        self._rounds += 1
        if self._rounds >= WINDOW_ROUNDS:
            self._narrow()
        # The next enter hands them to the kernel, before it submits anything
        # (so _release_starved may count them as in the ring already); those
        # the window has no room for wait in _spare.
        excess = self._circulating - self._window
        if excess > 0:
            keep = max(0, n - excess)
            self._spare.extend(lent[keep:])
            del lent[keep:]
        if self._returned:
            self._returned.extend(lent)
            lent.clear()
        else:
            self._lent, self._returned = self._returned, lent

    def _recycle_wide(self) -> None:
        """Hand the lent wide buffers back to their ring (a tail bump: no
        syscall; the kernel reads the ring only as it picks a buffer)."""
        wl = self._ra.lent
        n = len(wl)
        self._wdirty = True
        if self._wide_on:
            give = array.array("H", wl)
            lib.gaio_bufring_add(self._wbr_ptr, WIDE_BUFFERS, 0, self._wpool_ptr, self._ra.wentry,
                                 ffi.from_buffer("uint16_t[]", give), n)
            self._wfree += n
        wl.clear()

    def _narrow(self) -> None:
        """Halve the window when no round of the last WINDOW_ROUNDS took more
        than a quarter of it. (Buffers already in the ring stay there until
        taken; they come back to _spare.)"""
        if self._round_peak * 4 <= self._window and self._window > WINDOW_MIN:
            self._window = max(WINDOW_MIN, self._window // 2)
        self._round_peak = self._rounds = 0

    def _trim(self) -> None:
        """The watcher has been idle for IDLE_TRIM_NS: give the pages of the
        swap pool (and of the wide one) back to the system, ``MADV_DONTNEED``,
        so that a burst of traffic does not leave an idle server holding up to
        the pools' 12 MiB. The mapping stays; a buffer used again is faulted
        in as zeroes.

        Only while nothing can be writing into them: no buffer lent (to a
        result, parked or not, or holding read-ahead bytes), the ring bound to
        this thread (``DEFER_TASKRUN``: a receive copies its data only in this
        thread's own enter, and every CQE posted has been reaped), and no
        io_uring worker thread in the process (a receive the kernel could not
        arm a poll for runs in one, and copies as it pleases). When one is
        there, the pages stay until traffic has lent a buffer again; a pool
        that cannot go for now (a buffer held) wakes no wait (_trimmable)."""
        if self._ready:
            return
        pool, wide = self._idle_pools()
        if not (pool or wide):
            return
        if _io_workers():  # not now; traffic will mark them again
            self._dirty = self._wdirty = False
            return
        if pool:
            self._pool.madvise(mmap.MADV_DONTNEED)
            self._dirty = False
        if wide:
            self._wpool.madvise(mmap.MADV_DONTNEED)
            self._wdirty = False
        self.trims += 1

    def _idle_pools(self) -> Tuple[bool, bool]:
        """Whether the swap pool's, and the wide pool's, pages could go back
        now (see _trim), short of looking for io_uring worker threads."""
        if not self._bound or self._closed or not _MADV_DONTNEED:
            return False, False
        return self._dirty and not self._lent, self._wdirty and self._ra.idle()

    def _trimmable(self) -> bool:
        """Whether an idle wait could give pages back: so that a watcher
        that cannot (a ring not bound, a buffer held for good) is not woken
        for nothing."""
        pool, wide = self._idle_pools()
        return pool or wide

    def _stock(self) -> None:
        """Before an enter: widen the window while swap reads are parked and
        buffers wait outside it, stock the ring up to the window from _spare
        (the most recently used first), then release parked reads."""
        spare = self._spare
        if self._starved and spare and self._window < self._nbufs:
            self._window = min(self._nbufs, self._window * 2)
            self._round_peak = self._rounds = 0
        k = min(self._window - self._circulating, len(spare))  # room left in circulation
        if k > 0:
            self._returned.extend(spare[-k:])
            del spare[-k:]
        if self._starved:
            self._release_starved()

    @property
    def _circulating(self) -> int:
        """Buffers in circulation: in the ring (or on their way there) or
        lent; the rest wait in _spare. The window bounds it."""
        return self._nbufs - len(self._spare)

    @property
    def _in_ring(self) -> int:
        """Buffers in the ring, or in _returned on their way there (derived:
        the rest are lent or in _spare)."""
        return self._circulating - len(self._lent)

    def _grow_records(self, words: int) -> None:
        cap = self._recs_cap
        while cap < words:
            cap *= 2
        self._recs = ffi.new("uint64_t[]", cap)
        self._recs_cap = cap
        self._loop.recs = self._recs

    def _park(self, ud: Any) -> None:
        self._starved.add(ud)
        self._starved_fifo.append(ud)

    def _release_starved(self) -> None:
        """Resubmit parked swap reads, no more than there are buffers in the ring."""
        starved, fifo = self._starved, self._starved_fifo
        n = min(len(starved), self._in_ring)
        while n > 0:
            ud = fifo.popleft()
            if ud in starved:  # else cancelled while parked
                starved.discard(ud)
                self._push(ud, True)
                n -= 1
        if not starved:
            fifo.clear()  # only cancelled ones were left

    def _requeue(self, ud: Any) -> None:
        op = self._take(ud)
        res = self._resubmit(ud, op, -errno.ECANCELED)
        if res is not None:  # it ends here: nothing is left to cancel
            self._pin(ud, None)
            self._cancelled.discard(ud)
            self._cancel_tries.pop(ud, None)
            self._ready.extend((op, res, None))

    def wake(self) -> None:
        # _woken: a write whose CQE no wait has seen yet, so that wait will
        # return anyway. It is cleared when that CQE is seen, not when a wait
        # starts: cleared at the start, a wake() landing between two waits
        # (after the front end decided to sleep) was skipped because of an
        # earlier write already seen, and the next wait slept through it.
        if self._woken:
            return
        self._woken = True
        with self._wake_lock:
            if self._efd >= 0:
                try:
                    os.write(self._efd, _ONE)
                except OSError:
                    pass

    def set_poller_affinity(self, cpuid: int) -> None:
        self._affinity = cpuid
        if self._ring is not None and (self._issuer is None or self._issuer == threading.get_ident()
                                       or not self._bound):
            lib.gaio_iowq_aff(self._ring, cpuid)  # else applied when this ring is adopted

    # -- teardown -------------------------------------------------------------------------
    def abandon(self) -> None:
        """See Engine.abandon. The ring's descriptor and mappings, the barrier
        pipe and the eventfd are this process's copies: closed and unmapped
        here, the parent's ring lives on. The pool is a shared mapping the
        kernel fills for the parent: left mapped, never touched."""
        if self._closed:
            return
        self._closing = self._closed = True
        if self._ring is not None:
            lib.io_uring_queue_exit(self._ring)  # munmap and close, in this process only
            self._ring = None
        for fd in (self._barrier_fd, self._efd):
            if fd >= 0:
                os.close(fd)
        self._barrier_fd = self._efd = -1
        _GRAVEYARD.append((self._pins, self._pool, self._br, self._wpool, self._wbr))
        self._ops = [[] for _ in range(_KINDS)]
        self._pins = [[] for _ in range(_KINDS)]
        self._q = []
        self._mem = []

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        entombed = False
        ring = self._ring
        if ring is not None:
            q = self._q
            queued = {_user_data(rec) for rec in _records(q)}
            for ud in self._live_uds():
                if ud in queued or ud in self._starved:
                    self._take(ud)  # never reached the kernel
                    self._pin(ud, None)
            del q[:]
            self._mem.clear()
            self._starved.clear()
            self._starved_fifo.clear()
            done = not self._live
            tid = threading.get_ident()
            if not done and (not self._bound or self._issuer in (None, tid)):
                if self._issuer != tid:
                    self._adopt(tid)
                del self._q[:]
                self._q.extend((_CANCEL_ALL, _CANCEL_UD))
                for _ in range(100):  # bounded: 100 x 50 ms, then the barrier
                    type(self).wait(self, 0.05)  # not an instance override
                    if not self._live:
                        break
                done = not self._live
                ring = self._ring  # (a wait may have moved to a new ring)
            lib.io_uring_queue_exit(ring)
            self._ring = None
            if not done and not _barrier(self._barrier_fd, 10.0):
                # Never free what the kernel may touch: the memory of ops in
                # flight stays exported, the pool and ring stay mapped.
                _GRAVEYARD.append((self._pins, self._pool, self._br, self._wpool, self._wbr))
                entombed = True
        self._ops = [[] for _ in range(_KINDS)]
        self._pins = [[] for _ in range(_KINDS)]
        self._closed = True
        if self._barrier_fd >= 0:
            os.close(self._barrier_fd)
            self._barrier_fd = -1
        with self._wake_lock:
            if self._efd >= 0:
                os.close(self._efd)
                self._efd = -1
        self._pool_ptr = self._br_ptr = self._wpool_ptr = self._wbr_ptr = None
        for view in self._views:
            if view is not None:
                view.release()
        self._pool_view.release()  # slices lent to the user stay valid
        self._ra.view.release()
        if entombed:
            return
        for m in (self._pool, self._br, self._wpool, self._wbr):
            try:
                m.close()
            except BufferError:
                pass  # a lent view is alive: unmapped when it dies


_GRAVEYARD: List[Any] = []




def probe() -> Optional[str]:
    """None when a ring can be set up, entered and torn down in this process.
    A resource shortage (EMFILE, ENFILE, ENOMEM) is raised, not returned: it
    says nothing about this machine, so the registry should not cache it."""
    if lib is None:
        return _IMPORT_ERROR
    try:
        engine = Engine(4096, swap_buffers=16, cq_entries=64)
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise
        return exc.strerror if isinstance(exc, EngineUnavailable) and exc.strerror else str(exc)
    try:
        engine.wait(0)
    except OSError as exc:
        return f"io_uring_enter failed: {exc}"
    finally:
        engine.close()
    return None
