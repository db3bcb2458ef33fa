"""Minimal reproductions of bugs the model and fault tests found, one test each.

Each test names what it found; keep them even after the fix.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

import gaio
from conftest import SlotSockWrapper, collect, recv_exactly


def _order(results, kind):
    return [r.context for r in results if r.operation == kind]


def test_free_completes_pending_ops_in_submission_order(watcher, pair):
    """Found by test_model: free() finished the ops *queued* behind an in-flight
    head at once, and the head only when the engine's cancel landed, so the
    results came back as [B, A]; an op submitted after free() overtook both.
    SPEC: reads (and writes) on one conn complete in the order submitted."""
    conn, peer = pair
    watcher.read("A", conn, bytearray(10))
    watcher.read("B", conn, bytearray(10))
    watcher.write("W1", conn, b"x" * (4 << 20))  # fills the socket buffer: stays in flight
    watcher.write("W2", conn, b"y")
    assert watcher.wait_io(0.01) == []  # A and W1 are at the engine now
    watcher.free(conn)
    watcher.read("C", conn, bytearray(10))
    watcher.write("W3", conn, b"z")
    results = collect(watcher, 6)
    assert all(isinstance(r.error, gaio.ConnClosedError) for r in results), results
    assert _order(results, gaio.OpRead) == ["A", "B", "C"]
    assert _order(results, gaio.OpWrite) == ["W1", "W2", "W3"]


def test_read_after_reset_completes(watcher):
    """Found by test_faults (epoll, kqueue): a receive that failed with
    ECONNRESET marked the descriptor "drained", so the next read parked waiting
    for an edge that never comes (the reset was the last one) and never
    completed. After an error or EOF there is no more edge: try the call."""
    import socket as _socket
    import struct

    from conftest import tcp_pair

    conn, peer = tcp_pair()
    try:
        watcher.read("first", conn, bytearray(10))
        watcher.read_full("second", conn, bytearray(10))
        assert watcher.wait_io(0.01) == []
        peer.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        results = collect(watcher, 2, timeout=3)
        assert [r.context for r in results] == ["first", "second"]
        assert isinstance(results[0].error, ConnectionResetError), results
        assert isinstance(results[1].error, (ConnectionResetError, EOFError)), results
    finally:
        conn.close()
        peer.close()


def test_write_after_epipe_completes(watcher, pair):
    """Same bug on the send side: a send that failed with EPIPE marked the
    descriptor "drained" and the next write on the conn never completed."""
    conn, peer = pair
    watcher.write("first", conn, b"x" * (8 << 20))  # partial: parks, waiting for room
    assert watcher.wait_io(0.02) == []
    peer.close()  # the hang-up edge retries the send: EPIPE
    (r,) = collect(watcher, 1, timeout=3)
    assert isinstance(r.error, (BrokenPipeError, ConnectionResetError)), r
    watcher.write("second", conn, b"y")
    (r,) = collect(watcher, 1, timeout=3)
    assert isinstance(r.error, (BrokenPipeError, ConnectionResetError)), r


def test_engine_usable_after_transient_emfile(backend):
    """Found by test_faults: the registry caches probe results, failures
    included, so a Watcher() first attempted while descriptors ran out (EMFILE)
    marked the engine "cannot run here" for the life of the process; freeing
    descriptors did not help. A resource shortage is not a property of the
    machine: it must not be cached."""
    from gaio import backends
    from test_faults import _Exhausted

    backends.clear_probe_cache()
    try:
        with _Exhausted() as ex:
            with pytest.raises(OSError):
                gaio.Watcher(backend=backend)
            ex.release()
            with gaio.Watcher(backend=backend) as w:
                assert w.backend == backend
    finally:
        backends.clear_probe_cache()


def test_swap_result_not_overwritten_by_next_read(backend):
    """Found by test_model (epoll, kqueue): a swap read that completed at once,
    while wait_io processed the previous batch, waited in the engine's queue
    into the next wait_io; that call's recycle() reset the swap region first,
    so the next swap read landed on the same bytes and the result the user got
    held the *following* read's data."""
    import random

    data = random.Random(3).randbytes(40_000)
    with gaio.Watcher(bufsize=8192, backend=backend) as w:
        a, b = socket.socketpair()
        try:
            w.read("A", a, bytearray(10))
            w.read("B", a)
            w.read("C", a)
            w.read("D", a)
            b.sendall(data)
            offset, done = 0, 0
            while done < 4:
                for r in w.wait_io(5):
                    done += 1
                    assert r.error is None, r
                    got = bytes(memoryview(r.buffer)[: r.size])
                    assert got == data[offset : offset + r.size], f"{r.context}: wrong bytes at offset {offset}"
                    offset += r.size
        finally:
            w.free(a)
            b.close()


def test_read_after_short_read_sees_eof_already_there(watcher, pair):
    """Found by test_model (epoll, kqueue): a short read marks the descriptor
    "drained", so the next read parks and waits for an edge. When the peer's
    FIN was already queued behind the data (its edge consumed by the same poll
    that reported the data), no edge ever comes, and the read that should see
    EOF at once hangs forever."""
    conn, peer = pair
    peer.sendall(b"xy")
    peer.shutdown(socket.SHUT_WR)
    watcher.read("1", conn, bytearray(1))
    watcher.read("2", conn, bytearray(10))  # short: gets b"y" of 10
    watcher.read("3", conn, bytearray(10))
    results = collect(watcher, 3, timeout=3)
    assert [r.context for r in results] == ["1", "2", "3"]
    assert bytes(results[0].buffer[:1]) == b"x"
    assert bytes(results[1].buffer[: results[1].size]) == b"y"
    assert isinstance(results[2].error, EOFError), results[2]


def test_free_order_for_conn_without_weakref_support(watcher, tcp):
    """Found by review of test_model's fix: a conn object that cannot be weakly
    referenced was forgotten at free(), so an op submitted on it afterwards was
    adopted anew and could complete before the op still at the engine."""
    a, b = tcp
    conn = SlotSockWrapper(a)
    watcher.read("first", conn, bytearray(4))
    assert watcher.wait_io(0.05) == []
    watcher.free(conn)
    watcher.read("after-free", conn, bytearray(4))
    results = collect(watcher, 2)
    assert [r.context for r in results] == ["first", "after-free"]
    assert all(isinstance(r.error, gaio.ConnClosedError) for r in results)


def test_writable_edge_not_lost_when_swap_region_is_full(backend):
    """Found by test_model (epoll, GAIO_STRESS): one epoll event said "readable
    and writable"; the descriptor's parked swap read found the swap region too
    full and returned early, skipping the writable half. Edge-triggered, no
    second edge came, and the parked send waited forever although the peer had
    read everything."""
    big = bytes(range(256)) * (16 << 10)  # 4 MiB: more than the socket takes at once
    with gaio.Watcher(bufsize=4096, backend=backend) as w:
        x, px = socket.socketpair()
        y, py = socket.socketpair()
        py.setblocking(False)
        try:
            w.write("big", y, big)
            w.read("idle", y)  # a swap read, parked: nothing to read yet
            assert w.wait_io(0.1) == []  # the write fills the socket and parks
            px.sendall(b"f" * 3000)  # will take 3000 of the 4096 swap bytes
            py.sendall(b"hi")  # y readable ...
            got = bytearray()
            while True:  # ... and, drained by its peer, writable: one event, both
                try:
                    got += py.recv(1 << 20)
                except BlockingIOError:
                    break
            w.read("fill", x)  # completes at once, leaving under 2 KiB of room
            done = {}
            end = time.monotonic() + 10
            while "big" not in done:
                assert time.monotonic() < end, f"the write never completed: {len(got)} of {len(big)} bytes read"
                for r in w.wait_io(0.05):
                    assert r.error is None, r
                    done[r.context] = r.size
                try:
                    got += py.recv(1 << 20)
                except BlockingIOError:
                    pass
            assert done["big"] == len(big)
            while len(got) < len(big):
                got += py.recv(1 << 20)
            assert got == big
        finally:
            for s in (x, px, y, py):
                s.close()


FINALIZER_FREES = r"""
import gc, socket, sys, gaio
w = gaio.Watcher(backend=sys.argv[1])
class Session:
    def __init__(self, sock):
        self.sock = sock
        self.me = self  # a cycle: only the cyclic GC finalizes it, at any allocation
    def __del__(self):
        w.free(self.sock)
gc.set_threshold(1, 1, 1)
peers = []
for i in range(400):
    a, b = socket.socketpair()
    Session(a)
    w.write(i, a, b"x")
    peers.append(b)
    if i % 50 == 0:
        w.wait_io(0)
gc.set_threshold(700, 10, 10)
gc.collect()
while w.wait_io(0):
    pass
w.close()
for b in peers:
    b.close()
print("ok")
"""


@pytest.mark.parametrize("engine", [e for e in gaio.available_backends()])
def test_finalizer_that_frees_does_not_deadlock(engine):
    # A user's __del__ calling w.free() (a common idiom), run by the cyclic GC
    # at an allocation inside the watcher's own critical section, on the same
    # thread: the lock was not reentrant, and the thread hung. (A subprocess:
    # a hung thread would hold the lock the test's cleanup needs.)
    out = subprocess.run([sys.executable, "-c", FINALIZER_FREES, engine], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


SIGNAL_STORM = r"""
import signal, socket, sys, time, gaio

class Alarm(Exception):
    pass

w = gaio.Watcher(backend=sys.argv[1])
pairs = [socket.socketpair() for _ in range(3000)]

def handler(signum, frame):
    if w._in_wait:
        raise Alarm

signal.signal(signal.SIGALRM, handler)
for a, b in pairs:
    b.send(b"x")
for i, (a, _) in enumerate(pairs):
    w.read(i, a, bytearray(8))
signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
got, interrupted, end = [], 0, time.monotonic() + 20
while len(got) < len(pairs) and time.monotonic() < end:
    try:
        got.extend(r.context for r in w.wait_io(0.2))
    except Alarm:
        interrupted += 1
        if interrupted > 200:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
w.close()
print("ok" if sorted(got) == list(range(len(pairs))) else f"lost {len(pairs) - len(set(got))}, {len(got)} results")
"""


def test_signal_handler_raising_inside_wait_io_loses_nothing(backend):
    # A handler that raises (a Ctrl-C; here SIGALRM at 20 kHz) while wait_io
    # files thousands of new ops: after the exception, wait_io again returns
    # every one exactly once. The compiled build runs handlers only where it
    # calls interpreted code: the engines' table growth was such a call, and
    # lost the batch being filed. (A subprocess: no test runner hooks run
    # under the storm.)
    if gaio.implementation != "mypyc" or backend == "kqueue":
        pytest.skip("the Python build (and kqueue, which stays Python) runs signal handlers after "
                    "any call: an exception from one inside wait_io may lose ops (README)")
    out = subprocess.run([sys.executable, "-c", SIGNAL_STORM, backend], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.stdout, out.stderr)


def test_ctrl_c_in_a_blocked_wait_submits_nothing_twice(backend, pair):
    # One KeyboardInterrupt while wait_io blocks, caught, then wait_io again.
    # On io_uring's Python build the handler ran as the enter returned, before
    # its records left the queue: the read was submitted a second time, and
    # that stale receive later wrote the next bytes into the first read's
    # buffer, which the user owned again (with a freed buffer: heap damage).
    import os
    import signal
    import threading

    a, b = pair
    w = gaio.Watcher(backend=backend)
    try:
        buf1 = bytearray(16)
        w.read("r1", a, buf1)
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            assert w.wait_io(3.0) == []
        except KeyboardInterrupt:
            pass
        timer.join()
        b.send(b"first")
        (r,) = collect(w, 1)
        assert r.context == "r1" and bytes(buf1[: r.size]) == b"first"
        b.send(b"second")  # no read pending now
        assert w.wait_io(0.2) == []
        assert b"second" not in buf1
        buf2 = bytearray(16)
        w.read("r2", a, buf2)
        (r,) = collect(w, 1)
        assert r.context == "r2" and bytes(buf2[: r.size]) == b"second"
    finally:
        w.close()


# -- the conn -> state lookup through the conn's own weak reference ----------------------

def _conn_refs() -> int:
    """How many of the watchers' per-connection weak references exist."""
    import gc

    return sum(1 for o in gc.get_objects() if type(o).__name__ == "_ConnRef")


@pytest.mark.parametrize("how", ["dropped", "freed-then-dropped", "closed"])
def test_connection_state_is_reclaimed_without_the_cyclic_gc(backend, how):
    """A released connection's state and its weak reference point at each
    other; the watcher unlinks them, so reference counting alone reclaims them
    (a busy server never waits for the cyclic GC to give that memory back)."""
    import gc

    gc.collect()
    base = _conn_refs()
    gc.disable()
    try:
        w = gaio.Watcher(backend=backend)
        pairs = [socket.socketpair() for _ in range(5)]
        try:
            for i, (a, _) in enumerate(pairs):
                w.write(i, a, b"x")
            assert len(collect(w, 5)) == 5
            assert _conn_refs() == base + 5
            conns = [a for a, _ in pairs]
            if how == "freed-then-dropped":
                for a in conns:
                    w.free(a)
                w.wait_io(0)
                assert _conn_refs() == base + 5  # still the user's: a later op must fail as freed
            if how == "closed":
                w.close()
            del a, conns
            pairs = [(None, b) for _, b in pairs]
            if how != "closed":
                w.wait_io(0.05)
            assert _conn_refs() == base
            if how == "dropped":
                assert w.get_gc() == (5, 5)
            else:
                assert w.get_gc() == (0, 0)
        finally:
            w.close()
            for _, b in pairs:
                b.close()
    finally:
        gc.enable()


def test_conn_found_among_other_weak_references(watcher, pair):
    """The watcher finds a conn's state among the conn's weak references: the
    user's own (plain, with a callback, made before or after the first op), and
    another watcher's."""
    import weakref

    conn, peer = pair
    early = weakref.ref(conn)
    called = []
    early_cb = weakref.ref(conn, called.append)
    registry = weakref.WeakValueDictionary({"c": conn})
    watcher.read("one", conn, bytearray(2))
    late = weakref.ref(conn, called.append)
    proxy = weakref.proxy(conn)
    with gaio.Watcher(backend=watcher.backend) as other:
        other.read("other", conn, bytearray(2))  # conn is watcher's: closed for other
        (r,) = collect(other, 1)
        assert isinstance(r.error, gaio.ConnClosedError), r
        watcher.read("two", conn, bytearray(2))
        peer.sendall(b"abcd")
        results = collect(watcher, 2)
        assert [(r.context, bytes(r.buffer)) for r in results] == [("one", b"ab"), ("two", b"cd")]
        assert all(r.conn is conn for r in results)
    assert early() is conn and early_cb() is conn and late() is conn and registry["c"] is conn
    assert proxy.fileno() == -1 and not called


def test_a_new_conn_at_a_dead_conns_address_is_a_new_conn(watcher):
    """The watcher remembers the states of conns whose ops completed lately,
    by the conn's address. A conn that dies and a new one made at the same
    address (CPython reuses the memory at once) must not meet the dead one's
    state: the new conn is adopted with its own descriptor, and its bytes go
    to its own peer. So must a conn that shares a slot with another."""
    reused = 0
    for i in range(20):
        a, b = socket.socketpair()
        old = id(a)
        watcher.write(i, a, b"old")
        (r,) = collect(watcher, 1)
        assert r.error is None
        del r, a  # the only references: the watcher closes its descriptor
        c, d = socket.socketpair()  # (at once: the dead conn's memory is free)
        reused += id(c) == old
        watcher.write(i, c, b"new")  # before the watcher has seen a go
        (r,) = collect(watcher, 1)
        assert r.error is None and r.conn is c
        assert d.recv(8) == b"new"
        assert b.recv(8) == b"old" and b.recv(8) == b""  # a's descriptor closed: EOF
        watcher.free(c)
        watcher.wait_io(0)
        for s in (b, c, d):
            s.close()
    if sys.implementation.name == "cpython":
        assert reused  # else this test tested nothing

    # many conns at once: some share a slot, each still reaches its own peer
    pairs = [socket.socketpair() for _ in range(300)]
    try:
        for rnd in range(3):
            for i, (a, _) in enumerate(pairs):
                watcher.write(i, a, b"%d.%d;" % (i, rnd))
            assert len(collect(watcher, len(pairs))) == len(pairs)
        for i, (_, b) in enumerate(pairs):
            want = b"".join(b"%d.%d;" % (i, rnd) for rnd in range(3))
            got = b""
            while len(got) < len(want):
                got += b.recv(64)
            assert got == want
    finally:
        for a, b in pairs:
            a.close()
            b.close()


class _StubbornConn:
    """Names a socket by a number it keeps reporting after close(), as a thin
    wrapper caching its descriptor would."""

    def __init__(self, sock: socket.socket):
        self.sock, self.fd = sock, sock.fileno()

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        self.sock.close()


class _SlotStubbornConn(_StubbornConn):
    """The same, and it cannot be weakly referenced (so the watcher holds it)."""

    __slots__ = ("sock", "fd")


class _NoCloseConn:
    """A conn with no close(): the watcher cannot close the descriptor it
    names, which stays open and is the user's."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.mark.parametrize("kind", [_StubbornConn, _SlotStubbornConn, _NoCloseConn])
def test_freed_conn_is_not_adopted_again_while_the_user_holds_it(watcher, kind):
    """After free(), a conn the user still holds stays known as freed, even once
    its descriptor is closed and its number belongs to a new socket (or, with
    no close(), its own descriptor is still open): a later op fails with
    ConnClosedError and never runs on the descriptor that number names.
    (Found by an audit for conns that take no weak reference: their state was
    forgotten at free(), and a later write reached an unrelated socket.)"""
    a, b = socket.socketpair()
    conn = kind(a)
    watcher.write("w", conn, b"x")
    assert collect(watcher, 1)[0].error is None
    watcher.free(conn)
    watcher.wait_io(0)
    c, d = socket.socketpair()  # the lowest free numbers: likely the freed one
    try:
        watcher.write("late", conn, b"STOLEN")
        watcher.read("late-read", conn, bytearray(1))
        results = collect(watcher, 2)
        assert all(isinstance(r.error, gaio.ConnClosedError) for r in results), results
        d.sendall(b"k")
        c.settimeout(5)
        assert c.recv(1) == b"k"  # the new socket is untouched
        for s in (c, d):
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(16)  # nothing reached either
        b.settimeout(5)
        assert b.recv(16) == b"x" and b.recv(16) == b""  # the first write, then free()'s EOF
    finally:
        for s in (a, b, c, d):
            s.close()


@pytest.mark.parametrize("where", ["in-flight", "queued"])
def test_close_lets_go_of_ops_with_deadlines_without_the_cyclic_gc(backend, where):
    """Found by an audit: an op with a deadline and its entry in the deadline
    heap point at each other, and close() left that cycle, so the op, its
    context and its conn lived until the cyclic GC ran."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        w = gaio.Watcher(backend=backend)
        a, b = socket.socketpair()
        try:
            ctx = _Ctx()
            ref = weakref.ref(ctx)
            far = time.monotonic() + 3600
            if where == "queued":
                w.read("head", a, bytearray(1))
            w.read_timeout(ctx, a, bytearray(1), far)
            del ctx
            assert w.wait_io(0.01) == []
            w.close()
            assert ref() is None
        finally:
            w.close()
            a.close()
            b.close()
    finally:
        gc.enable()


class _Ctx:
    """A context to watch with a weak reference."""


# -- a pending op keeps its buffer in its ``buffer`` field (in a pinned form) --
#
# OpResult lost its private view and timer fields (96 bytes compiled, not 112):
# while an op is pending, ``buffer`` holds what the engine works on and
# ``error`` the deadline or a cancel. These check that the user always gets
# back the very object they passed, on every way an op ends.


def _buffers(kind):
    """(name, the buffer to pass, its bytes as read back) for each kind of buffer."""
    import array
    import mmap

    ba = bytearray(8)
    out = [
        ("bytearray", ba, lambda: bytes(ba)),
    ]
    base = bytearray(12)
    mv = memoryview(base)[2:10]
    out.append(("memoryview slice", mv, lambda: bytes(mv)))
    arr = array.array("i", [0, 0])  # cast to bytes: the view is not the user's object
    out.append(("array('i')", arr, lambda: arr.tobytes()))
    mm = mmap.mmap(-1, 8)
    out.append(("mmap", mm, lambda: mm[:]))
    if kind == "write":
        data = b"12345678"
        out.append(("bytes", data, lambda: data))
    return out


@pytest.mark.parametrize("kind", ["read", "read_full", "write"])
def test_result_buffer_is_the_callers_object_when_done(watcher, pair, kind):
    conn, peer = pair
    for name, buf, read_back in _buffers(kind):
        if kind == "write":
            watcher.write(name, conn, buf)
        else:
            peer.sendall(b"abcdefgh")
            getattr(watcher, kind)(name, conn, buf)
        (r,) = collect(watcher, 1)
        assert r.error is None and r.size == 8, (name, r)
        assert r.buffer is buf, name
        if kind == "write":
            assert len(recv_exactly(peer, 8)) == 8
        else:
            assert read_back() == b"abcdefgh", name
        if name == "mmap":
            buf.close()  # BufferError if the watcher still held an export of it


def test_result_buffer_is_the_callers_object_on_deadline_free_and_queue(watcher, pair):
    conn, peer = pair
    soon = time.monotonic() + 0.05
    kinds = _buffers("read")
    # the first at the engine, the others queued behind it, all with a deadline
    for name, buf, _ in kinds:
        watcher.read_timeout(name, conn, buf, soon)
    # (the queued ones fail at once, the one at the engine once its cancel landed)
    results = {r.context: r for r in collect(watcher, len(kinds))}
    for name, buf, _ in kinds:
        assert isinstance(results[name].error, gaio.DeadlineError), results[name]
        assert results[name].buffer is buf, name
    # freed while pending, one at the engine and the rest queued
    kinds = _buffers("read")
    for name, buf, _ in kinds:
        watcher.read(name, conn, buf)
    assert watcher.wait_io(0.01) == []
    watcher.free(conn)
    results = collect(watcher, len(kinds))
    for (name, buf, _), r in zip(kinds, results):
        assert isinstance(r.error, gaio.ConnClosedError), r
        assert r.buffer is buf, name


def test_read_full_in_pieces_fills_a_cast_buffer(watcher, pair):
    """read_full goes on where it stopped, in the engine's view of the buffer,
    and returns the caller's object."""
    import array

    conn, peer = pair
    arr = array.array("i", [0, 0, 0, 0])  # 16 bytes
    watcher.read_full("full", conn, arr)
    for piece in (b"0123", b"45"):
        peer.sendall(piece)
        assert watcher.wait_io(0.02) == []  # took the piece, waits for the rest
    peer.sendall(b"6789abcdef")
    (r,) = collect(watcher, 1)
    assert r.error is None and r.size == 16 and r.buffer is arr
    assert arr.tobytes() == b"0123456789abcdef"


def test_a_user_memoryview_released_while_its_read_is_pending(watcher, pair):
    """The watcher reads through an export of its own: the caller's memoryview
    may be released meanwhile, and the bytearray under it cannot be resized
    until the read is done."""
    conn, peer = pair
    base = bytearray(8)
    mv = memoryview(base)
    watcher.read("r", conn, mv)
    assert watcher.wait_io(0.01) == []
    mv.release()
    with pytest.raises(BufferError):
        base.extend(b"x")  # still pinned by the watcher
    peer.sendall(b"hi")
    (r,) = collect(watcher, 1)
    assert r.error is None and r.size == 2 and r.buffer is mv
    assert base[:2] == b"hi"
    base.extend(b"x")  # the watcher let go


def test_close_after_a_queued_op_expired_keeps_its_result_buffer(backend):
    """A read that expired while queued stays in its queue until reached; the
    teardown must not touch its result, which the user already has."""
    w = gaio.Watcher(backend=backend)
    a, b = socket.socketpair()
    try:
        base = bytearray(8)
        mv = memoryview(base)[1:5]
        w.read("head", a, bytearray(1))
        w.read_timeout("queued", a, mv, time.monotonic() + 0.02)
        (r,) = collect(w, 1)
        assert r.context == "queued" and isinstance(r.error, gaio.DeadlineError)
        w.close()
        assert r.buffer is mv
    finally:
        w.close()
        a.close()
        b.close()


def test_deadline_after_free_is_not_a_second_cancel(watcher, pair):
    """free() cancels a timed op at the engine; its deadline then passing must
    not cancel it again nor finish it twice."""
    conn, peer = pair
    watcher.read_timeout("r", conn, bytearray(4), time.monotonic() + 0.05)
    watcher.write_timeout("w", conn, b"x" * (8 << 20), time.monotonic() + 0.05)
    assert watcher.wait_io(0.01) == []
    watcher.free(conn)
    results = collect(watcher, 2)
    assert sorted(r.context for r in results) == ["r", "w"]
    assert all(isinstance(r.error, gaio.ConnClosedError) for r in results), results
    time.sleep(0.08)
    assert watcher.wait_io(0.05) == []
