"""A stateful model of gaio, run against every engine.

Hypothesis drives a watcher and a few connections (two socketpairs and one
loopback TCP pair) with random operations: every kind of read and write, with
random sizes and deadlines (past ones included), the peer sending, reading and
half-closing at random, ``wait_io`` with small timeouts, ``free``, and dropping
a connection for the garbage collector. A model of each byte stream checks,
after every step:

* every op completes exactly once, and per connection and direction in the
  order submitted (an op whose deadline passes while it is still queued behind
  another may fail early, with ``DeadlineError`` and nothing moved, as in Go);
* every byte the peer sent is delivered once, in order, across all reads,
  failed ones included (``size`` bytes of a ``DeadlineError``'d ``read_full``
  are real data; bytes that arrive after a deadline go to the next read);
* every byte a write reports (its ``size``, partial ones included) is exactly
  what the peer receives, in order;
* swap-buffer results keep their contents until the next ``wait_io``;
* errors are the ones the contract names, never early (``DeadlineError`` only
  after the deadline) and never late (an op whose deadline is long gone is no
  longer pending), and an op with a past deadline that can complete at once
  does complete;
* at the end, every op completes, the peer got exactly the reported bytes,
  dropped connections were closed by the GC, and no descriptor leaked.

Profiles: ``gaio-model-ci`` by default (bounded), ``gaio-model-stress`` with
``GAIO_STRESS=1``.
"""

from __future__ import annotations

import collections
import errno
import gc
import os
import random
import socket
import time
from typing import Any, Deque, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

import gaio
from conftest import fd_count, tcp_pair

settings.register_profile(
    "gaio-model-ci",
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "gaio-model-stress",
    max_examples=400,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

STRESS = os.environ.get("GAIO_STRESS") == "1"
PROFILE = settings.get_profile("gaio-model-stress" if STRESS else "gaio-model-ci")

N_CONNS = 3  # 0, 1: socketpairs; 2: loopback TCP
SWAP_SIZE = 8192  # small, so that the swap region fills up within an example
# An op whose deadline passed before LATE_WAITS wait_io calls began, and at
# least LATE_SLACK seconds ago, must not be pending any more.
LATE_WAITS = 3
LATE_SLACK = 0.5
DRAIN_LIMIT = 5.0  # seconds the final drain may take

READ, WRITE = 0, 1

sizes = st.one_of(
    st.integers(1, 16),
    st.integers(1, 4096),
    st.integers(4096, 70_000),
)
write_sizes = st.one_of(
    st.integers(1, 16),
    st.integers(1, 4096),
    st.integers(4096, 300_000),
)
# Relative deadlines: None, in the past, or soon.
deadlines = st.one_of(
    st.none(),
    st.floats(-1.0, -0.0001),
    st.floats(0.0, 0.05),
)
conn_ids = st.integers(0, N_CONNS - 1)


def stream_bytes(salt: int, offset: int, n: int) -> bytes:
    """Reproducible pseudo-random content for a stream position."""
    return random.Random(salt * (1 << 40) + offset).randbytes(n)


class Op:
    __slots__ = (
        "id", "direction", "kind", "conn_id", "conn", "buf", "want", "data", "deadline", "immediate", "full",
        "submitted", "waits_after_deadline",
    )

    def __repr__(self) -> str:
        return f"Op#{self.id}({self.kind}, conn={self.conn_id}, want={self.want}, deadline={self.deadline})"


class ConnModel:
    """What we know of one connection's two byte streams."""

    def __init__(self, idx: int, conn: socket.socket, peer: socket.socket, unix: bool) -> None:
        self.idx = idx
        self.conn: Optional[socket.socket] = conn
        self.peer = peer
        self.unix = unix
        # peer -> conn
        self.sent = bytearray()  # everything the peer sent
        self.delivered = 0  # bytes of it that reads reported
        self.peer_shut = False  # peer did shutdown(SHUT_WR)
        self.eof_seen = False
        # conn -> peer
        self.reported = bytearray()  # concatenated buffer[:size] of completed writes
        self.received = bytearray()  # what the peer read
        self.peer_closed = False  # peer saw EOF (or a reset after free)
        self.writes_since_drain = 0
        self.pending: List[Deque[Op]] = [collections.deque(), collections.deque()]
        self.delegated = False
        self.freed = False
        self.dropped = False

    @property
    def gone(self) -> bool:
        return self.freed or self.dropped


def make_machine(engine: str):
    class GaioModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.fds_before = fd_count()
            self.w = gaio.Watcher(bufsize=SWAP_SIZE, backend=engine)
            assert self.w.backend == engine
            self.conns: List[ConnModel] = []
            for i in range(N_CONNS):
                if i < 2:
                    a, b = socket.socketpair()
                    unix = True
                else:
                    a, b = tcp_pair()
                    unix = False
                b.setblocking(False)
                self.conns.append(ConnModel(i, a, b, unix))
            self.ops: Dict[int, Op] = {}
            self.next_id = 1
            self.swap_results: List[Any] = []  # (result, expected bytes), valid until next wait_io
            self.gc_expected = 0

        # -- submission ------------------------------------------------------------------
        def _new_op(self, direction: int, kind: str, c: ConnModel) -> Op:
            op = Op()
            op.id = self.next_id
            self.next_id += 1
            op.direction = direction
            op.kind = kind
            op.conn_id = c.idx
            op.conn = c.conn
            op.buf = None
            op.want = 0
            op.data = b""
            op.deadline = None
            op.immediate = False
            op.full = False
            op.submitted = time.monotonic()
            op.waits_after_deadline = 0
            return op

        def _register(self, c: ConnModel, op: Op) -> None:
            self.ops[op.id] = op
            c.pending[op.direction].append(op)
            c.delegated = True
            assert c.conn.fileno() == -1, "a delegated socket must report fileno() == -1"

        def _make_read_buf(self, n: int, view: bool):
            if view:
                return memoryview(bytearray(n + 3))[3:]
            return bytearray(n)

        def _read_can_complete_at_once(self, c: ConnModel, full: bool, n: int) -> bool:
            if not c.unix or c.freed or c.pending[READ]:
                return False
            if c.eof_seen:
                return True
            avail = len(c.sent) - c.delivered
            if avail >= (n if full else 1):
                return True
            return c.peer_shut  # all there is, then EOF: completes at once

        @rule(i=conn_ids, n=sizes, view=st.booleans(), dl=deadlines, kind=st.sampled_from(["read", "read_timeout", "read_full"]))
        def submit_read(self, i, n, view, dl, kind):
            c = self.conns[i]
            if c.dropped:
                return
            op = self._new_op(READ, kind, c)
            op.buf = self._make_read_buf(n, view)
            op.want = n
            op.full = kind == "read_full"
            if kind != "read":
                op.deadline = None if dl is None else time.monotonic() + dl
            if op.deadline is not None and op.deadline < time.monotonic():
                op.immediate = self._read_can_complete_at_once(c, op.full, n)
            if kind == "read":
                self.w.read(op.id, c.conn, op.buf)
            elif kind == "read_timeout":
                self.w.read_timeout(op.id, c.conn, op.buf, op.deadline)
            else:
                self.w.read_full(op.id, c.conn, op.buf, op.deadline)
            self._register(c, op)

        @rule(i=conn_ids, dl=deadlines, timed=st.booleans())
        def submit_swap_read(self, i, dl, timed):
            c = self.conns[i]
            if c.dropped:
                return
            op = self._new_op(READ, "read_timeout(None)" if timed else "read(None)", c)
            op.want = SWAP_SIZE
            if timed:
                op.deadline = None if dl is None else time.monotonic() + dl
                self.w.read_timeout(op.id, c.conn, None, op.deadline)
            else:
                self.w.read(op.id, c.conn)
            self._register(c, op)

        @rule(i=conn_ids, n=write_sizes, btype=st.sampled_from(["bytes", "bytearray", "memoryview"]), dl=deadlines, timed=st.booleans())
        def submit_write(self, i, n, btype, dl, timed):
            c = self.conns[i]
            if c.dropped:
                return
            op = self._new_op(WRITE, "write_timeout" if timed else "write", c)
            data = stream_bytes(1000 + i, self.next_id, n)
            op.data = data
            op.want = n
            op.buf = data if btype == "bytes" else bytearray(data) if btype == "bytearray" else memoryview(bytearray(data))
            if timed:
                op.deadline = None if dl is None else time.monotonic() + dl
            if op.deadline is not None and op.deadline < time.monotonic():
                unread = len(c.reported) - len(c.received)
                op.immediate = (
                    c.unix
                    and not c.freed
                    and not c.pending[WRITE]
                    and n <= 4096
                    and unread + n <= 16384
                    and c.writes_since_drain <= 32
                )
            if timed:
                self.w.write_timeout(op.id, c.conn, op.buf, op.deadline)
            else:
                self.w.write(op.id, c.conn, op.buf)
            self._register(c, op)

        # -- the peer --------------------------------------------------------------------
        @rule(i=conn_ids, n=write_sizes)
        def peer_send(self, i, n):
            c = self.conns[i]
            if c.gone or c.peer_shut:
                return
            data = stream_bytes(i, len(c.sent), n)
            try:
                sent = c.peer.send(data)
            except BlockingIOError:
                return
            c.sent += data[:sent]

        @rule(i=conn_ids, n=write_sizes)
        def peer_recv(self, i, n):
            self._peer_recv(self.conns[i], n)

        def _peer_recv(self, c: ConnModel, n: int) -> int:
            if c.peer_closed:
                return 0
            try:
                data = c.peer.recv(n)
            except BlockingIOError:
                c.writes_since_drain = 0
                return 0
            except ConnectionResetError:
                # Only after free/close/GC, when the watcher closed a socket with
                # unread bytes: AF_UNIX and TCP both report that as a reset.
                assert c.gone, f"conn {c.idx}: peer got a reset on a live connection"
                c.peer_closed = True
                return 0
            if not data:
                assert c.gone, f"conn {c.idx}: peer saw EOF on a live connection"
                c.peer_closed = True
                return 0
            c.received += data
            self._check_received(c)
            return len(data)

        @rule(i=conn_ids)
        def peer_shutdown(self, i):
            c = self.conns[i]
            if c.gone or c.peer_shut:
                return
            c.peer.shutdown(socket.SHUT_WR)
            c.peer_shut = True

        # -- watcher calls ---------------------------------------------------------------
        @rule(timeout=st.sampled_from([0, 0, 0.001, 0.005, 0.02]))
        def wait(self, timeout):
            self._wait(timeout)

        def _wait(self, timeout: float) -> int:
            self.swap_results = []  # invalid from here on
            t0 = time.monotonic()
            results = self.w.wait_io(timeout)
            t1 = time.monotonic()
            if not results:
                # [] only when the timeout expired (1 ms of clock rounding allowed)
                assert t1 - t0 >= timeout - 0.0015, f"wait_io({timeout}) returned [] after {t1 - t0:.4f}s"
            for r in results:
                self._check_result(r, t1)
            # Never late: an op whose deadline had passed before this wait_io began
            # may survive a call or two (a cancel is a request), not more.
            for c in self.conns:
                for q in c.pending:
                    for op in q:
                        if op.deadline is not None and max(op.deadline, op.submitted) < t0:
                            op.waits_after_deadline += 1
                            assert op.waits_after_deadline <= LATE_WAITS or t0 - op.deadline < LATE_SLACK, (
                                f"{op} still pending {t0 - op.deadline:.2f}s and "
                                f"{op.waits_after_deadline} wait_io calls after its deadline"
                            )
            return len(results)

        @rule(i=conn_ids)
        def free(self, i):
            c = self.conns[i]
            if c.dropped:
                return
            self.w.free(c.conn)
            for q in c.pending:
                for op in q:
                    op.immediate = False  # the free wins: ConnClosedError
            if c.delegated:
                c.freed = True
            else:
                # never handed to the watcher: free closes it, like a socket close
                c.freed = True
                assert c.conn.fileno() == -1

        @rule(i=conn_ids)
        def drop(self, i):
            c = self.conns[i]
            if c.dropped or c.pending[READ] or c.pending[WRITE]:
                return
            if c.delegated and not c.freed:
                self.gc_expected += 1
            if not c.delegated:
                c.conn.close()  # never the watcher's: dropping it is the caller's leak (ResourceWarning)
            c.dropped = True
            c.conn = None  # the watcher must notice and close it

        # -- checks ----------------------------------------------------------------------
        def _check_result(self, r, now: float) -> None:
            op = self.ops.pop(r.context, None)
            assert op is not None, f"unknown or repeated completion: {r!r}"
            c = self.conns[op.conn_id]
            assert r.conn is op.conn, f"{op}: result.conn is not the submitted object"
            assert r.operation == (gaio.OpRead if op.direction == READ else gaio.OpWrite), (op, r)
            queue = c.pending[op.direction]
            err = r.error
            early_deadline = isinstance(err, gaio.DeadlineError) and r.size == 0
            if queue and queue[0] is op:
                queue.popleft()
            else:
                assert op in queue, f"{op} completed but is not pending"
                assert early_deadline, f"{op} completed out of order ({r!r}); pending: {list(queue)}"
                queue.remove(op)
            assert isinstance(r.size, int) and 0 <= r.size, r
            if err is not None:
                assert isinstance(err, BaseException), r
            if isinstance(err, gaio.DeadlineError):
                assert op.deadline is not None, f"{op}: DeadlineError without a deadline"
                assert now >= op.deadline, f"{op}: DeadlineError before the deadline"
            if c.freed:
                assert isinstance(err, gaio.ConnClosedError), f"{op} on a freed conn: {r!r}"
            if op.immediate:
                assert err is None or isinstance(err, EOFError), f"{op} could complete at once but got {r!r}"
            if op.direction == READ:
                self._check_read(c, op, r)
            else:
                self._check_write(c, op, r)

        def _check_read(self, c: ConnModel, op: Op, r) -> None:
            err = r.error
            if op.buf is None:
                assert r.is_swap_buffer is True, r
                assert isinstance(r.buffer, memoryview), r
                assert r.size <= SWAP_SIZE
                got = bytes(r.buffer[: r.size])
            else:
                assert r.is_swap_buffer is False, r
                assert r.buffer is op.buf, f"{op}: result.buffer is not the caller's buffer"
                assert r.size <= op.want
                got = bytes(memoryview(op.buf)[: r.size])
            expect = bytes(c.sent[c.delivered : c.delivered + r.size])
            assert got == expect, (
                f"{op}: delivered bytes differ from the stream at offset {c.delivered} "
                f"(size {r.size}, {len(c.sent) - c.delivered} undelivered): {r!r}"
            )
            c.delivered += r.size
            if op.buf is None and r.size:
                self.swap_results.append((r, got))
            if err is None:
                assert r.size >= 1, f"{op}: success with nothing read"
                if op.full:
                    assert r.size == op.want, f"{op}: read_full succeeded with {r.size} of {op.want}"
                assert not c.eof_seen or r.size == 0, f"{op}: data after EOF"
            elif isinstance(err, EOFError):
                assert c.peer_shut, f"{op}: EOF but the peer did not shut down"
                assert c.delivered == len(c.sent), f"{op}: EOF with {len(c.sent) - c.delivered} bytes undelivered"
                if not op.full:
                    assert r.size == 0, f"{op}: EOF read with size {r.size}"
                else:
                    assert r.size < op.want
                c.eof_seen = True
            elif isinstance(err, gaio.DeadlineError):
                if op.full:
                    assert r.size < op.want, r
                else:
                    assert r.size == 0, f"{op}: a read that got bytes must not fail: {r!r}"
            elif isinstance(err, gaio.ConnClosedError):
                assert c.freed, f"{op}: ConnClosedError on a live conn"
            else:
                raise AssertionError(f"{op}: unexpected error {err!r}")

        def _check_write(self, c: ConnModel, op: Op, r) -> None:
            err = r.error
            assert r.is_swap_buffer is False, r
            assert r.buffer is op.buf, f"{op}: result.buffer is not the caller's buffer"
            assert r.size <= op.want
            if err is None:
                assert r.size == op.want, f"{op}: success with {r.size} of {op.want}"
            elif isinstance(err, gaio.DeadlineError):
                assert r.size < op.want, r
            elif isinstance(err, gaio.ConnClosedError):
                assert c.freed, f"{op}: ConnClosedError on a live conn"
            else:
                raise AssertionError(f"{op}: unexpected error {err!r}")
            c.reported += op.data[: r.size]
            c.writes_since_drain += 1
            self._check_received(c)

        def _check_received(self, c: ConnModel) -> None:
            """The peer's bytes: the reported ones, then a prefix of the write in flight."""
            n = len(c.reported)
            if len(c.received) <= n:
                assert c.received == c.reported[: len(c.received)], f"conn {c.idx}: peer got bytes no write reported"
                return
            assert c.received[:n] == c.reported, f"conn {c.idx}: peer got bytes no write reported"
            extra = bytes(c.received[n:])
            queue = c.pending[WRITE]
            assert queue, f"conn {c.idx}: peer got {len(extra)} bytes beyond every reported write"
            head = queue[0]
            assert head.data[: len(extra)] == extra, f"conn {c.idx}: peer got bytes that are not {queue[0]}'s"

        @invariant()
        def swap_buffers_intact(self):
            for r, expect in getattr(self, "swap_results", ()):
                assert bytes(r.buffer[: r.size]) == expect, "swap buffer changed before the next wait_io"

        # -- the end ---------------------------------------------------------------------
        def teardown(self):
            try:
                self._final_drain()
            finally:
                self.swap_results = []
                self.ops.clear()
                self.w.close()
                for c in self.conns:
                    c.peer.close()
                    if c.conn is not None:
                        c.conn.close()
                    c.pending = [collections.deque(), collections.deque()]
                self.conns = []
            assert fd_count() == self.fds_before, "descriptors leaked"

        def _final_drain(self) -> None:
            for c in self.conns:
                if not c.gone and not c.peer_shut:
                    c.peer.shutdown(socket.SHUT_WR)
                    c.peer_shut = True
            end = time.monotonic() + DRAIN_LIMIT
            while True:
                moved = 0
                for c in self.conns:
                    moved += self._peer_recv(c, 1 << 20)
                if not self.ops:
                    break
                assert time.monotonic() < end, f"ops never completed: {list(self.ops.values())}"
                self._wait(0.0 if moved else 0.01)
            # Every op is done: the peer must get exactly the reported bytes (then
            # EOF, for conns the watcher let go of).
            self.swap_results = []
            gc.collect()
            while True:
                for c in self.conns:
                    while self._peer_recv(c, 1 << 20):
                        pass
                done = all(
                    (c.peer_closed if c.gone and c.delegated else len(c.received) >= len(c.reported))
                    for c in self.conns
                )
                if done:
                    break
                assert time.monotonic() < end, (
                    "peer never got every reported byte, or never saw the watcher close the conn: "
                    + ", ".join(f"conn {c.idx}: {len(c.received)}/{len(c.reported)} closed={c.peer_closed} gone={c.gone}" for c in self.conns)
                )
                self._wait(0.005)
            for c in self.conns:
                if c.unix or not c.gone:
                    assert c.received == c.reported, f"conn {c.idx}: peer got other bytes than the writes reported"
                else:  # TCP closed with unread bytes: a reset may cut the tail
                    assert c.reported.startswith(c.received), f"conn {c.idx}: peer got unreported bytes"
            assert self.w.get_gc() == (self.gc_expected, self.gc_expected), (
                f"get_gc() = {self.w.get_gc()}, expected {self.gc_expected} dropped conns found and closed"
            )

    GaioModel.__name__ = f"GaioModel_{engine}"
    return GaioModel


def test_model(backend):
    run_state_machine_as_test(make_machine(backend), settings=PROFILE)
