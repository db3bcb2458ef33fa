"""SPEC.md "Semantics" 1-11, one group per numbered rule, on every engine."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import weakref

import pytest

import gaio
from conftest import Reader, SockWrapper, collect, collect_until, fd_count, tcp_pair


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


# 1. Delegation ---------------------------------------------------------------------------
def test_delegation_takes_the_descriptor(watcher, pair):
    a, b = pair
    before = fd_count()
    watcher.read("r", a, bytearray(4))
    assert a.fileno() == -1
    assert fd_count() == before  # exactly one descriptor per connection: moved, not copied
    b.sendall(b"1234")
    (r,) = collect(watcher, 1)
    assert r.conn is a and bytes(r.buffer) == b"1234"
    watcher.write("w", a, b"same conn")  # the object stays the key
    (r,) = collect(watcher, 1)
    assert r.error is None and b.recv(100) == b"same conn"
    with pytest.raises(OSError):
        a.send(b"x")  # the caller's socket object no longer reads or writes


def test_delegation_of_fileno_object(watcher, pair):
    a, b = pair
    conn = SockWrapper(a)
    watcher.write("w", conn, b"via wrapper")
    (r,) = collect(watcher, 1)
    assert r.conn is conn and r.error is None
    assert b.recv(100) == b"via wrapper"


# 2. Order --------------------------------------------------------------------------------
def test_order_200_writes_and_200_read_fulls(watcher, tcp):
    a, b = tcp
    chunks = [pattern(1000 + i, i) for i in range(200)]
    for i, c in enumerate(chunks):
        watcher.write(i, a, c)
    bufs = [bytearray(len(c)) for c in chunks]
    for i, buf in enumerate(bufs):
        watcher.read_full(i, a, buf)
    reader = Reader(b, sum(map(len, chunks)))
    reader.start()
    b.sendall(b"".join(chunks))  # echo back what the reads expect
    results = collect(watcher, 400, timeout=30)
    reader.join(30)
    writes = [r.context for r in results if r.operation is gaio.OpWrite]
    reads = [r.context for r in results if r.operation is gaio.OpRead]
    assert writes == list(range(200)) and reads == list(range(200))
    assert all(r.error is None and r.size == len(chunks[r.context]) for r in results)
    assert bytes(reader.data) == b"".join(chunks)
    assert [bytes(b) for b in bufs] == chunks


def test_reads_and_writes_are_independent(watcher, pair):
    a, b = pair
    watcher.read("r", a, bytearray(4))  # never satisfied until the end
    watcher.write("w", a, b"independent")
    (r,) = collect(watcher, 1)
    assert r.context == "w" and r.error is None
    assert b.recv(100) == b"independent"
    b.sendall(b"done")
    (r,) = collect(watcher, 1)
    assert r.context == "r" and bytes(r.buffer) == b"done"


# 3. write: every byte -------------------------------------------------------------------
def test_32mb_transfer_byte_for_byte(watcher, tcp):
    a, b = tcp
    data = os.urandom(1 << 20) * 32
    reader = Reader(b, len(data))
    reader.start()
    watcher.write("big", a, data)
    (r,) = collect(watcher, 1, timeout=60)
    reader.join(60)
    assert r.error is None and r.size == len(data)
    assert reader.data == data


def test_32mb_read_back_through_swap_buffer(watcher, tcp):
    a, b = tcp
    data = os.urandom(1 << 20) * 32
    sender = threading.Thread(target=b.sendall, args=(data,), daemon=True)
    sender.start()
    got = bytearray()
    watcher.read("s", a, None)
    end = time.monotonic() + 60
    while len(got) < len(data) and time.monotonic() < end:
        for r in watcher.wait_io(5):
            assert r.error is None and r.is_swap_buffer
            got += r.buffer[: r.size]
            watcher.read("s", a, None)
    sender.join(10)
    assert got == data


def _fill(sock: socket.socket, data: bytes) -> int:
    """Send what fits into ``sock`` now (its buffers made big first, as far
    as the system lets them grow); the count."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:])
    except BlockingIOError:
        pass
    return sent


def test_stream_over_the_swap_buffer_by_every_kind_of_read(watcher, pair):
    """Reads of every kind, one after another on a connection with more bytes
    waiting than the swap buffer holds (an engine may receive more than one
    read asks for, for the next reads): each gets the bytes that follow the
    last one's, a swap read at most bufsize of them, and nothing is lost."""
    a, b = pair
    data = os.urandom(3 << 20)
    sent = len(data)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sender = threading.Thread(target=b.sendall, args=(data,), daemon=True)
    sender.start()  # (keeps the socket full: more waiting than a read takes)
    got = bytearray()
    kinds = ["swap", "swap", "user", "swap", "full", "swap", "user-small", "swap", "full-big"]
    step = 0
    while len(got) < sent:
        kind = kinds[step % len(kinds)]
        step += 1
        left = sent - len(got)
        if kind.startswith("full"):
            buf = bytearray(min(left, 100_000 if kind == "full-big" else 5000))
            watcher.read_full(kind, a, buf)
        elif kind.startswith("user"):
            buf = bytearray(7 if kind == "user-small" else 70_000)
            watcher.read(kind, a, buf)
        else:
            watcher.read(kind, a, None)
        (r,) = collect(watcher, 1)
        assert r.error is None and r.size > 0, (kind, r)
        if kind == "swap":
            assert r.is_swap_buffer and r.size <= watcher.bufsize
            got += r.buffer[: r.size]
        else:
            assert r.buffer is buf and (r.size == len(buf) or not kind.startswith("full"))
            got += buf[: r.size]
    sender.join(10)
    assert got == data


def test_bytes_received_ahead_go_to_the_next_read_after_a_deadline(watcher, pair):
    """A read with a deadline already past, on a connection whose bytes are
    there, completes with them (SPEC: it can complete at once); one on a
    drained connection fails, and the bytes that come later reach the next
    read."""
    a, b = pair
    data = os.urandom(1 << 20)
    sent = _fill(b, data)
    got = bytearray()
    watcher.read(None, a, None)
    (r,) = collect(watcher, 1)
    got += r.buffer[: r.size]
    while len(got) < sent:
        watcher.read_timeout(None, a, None, time.monotonic() - 1)
        (r,) = collect(watcher, 1)
        if r.error is not None:  # only once every byte sent was read
            assert isinstance(r.error, gaio.DeadlineError) and r.size == 0
            break
        got += r.buffer[: r.size]
    b.sendall(b"late")
    while len(got) < sent + 4:
        watcher.read(None, a, None)
        (r,) = collect(watcher, 1)
        assert r.error is None
        got += r.buffer[: r.size]
    assert got == data[:sent] + b"late"


def test_free_drops_bytes_received_ahead_and_a_reused_descriptor_sees_none(watcher):
    """free() on a connection with unread bytes waiting (perhaps already
    taken from the socket by the engine) drops them: the next connection,
    which gets the same descriptor number, reads only its own bytes, round
    after round."""
    for i in range(200):
        a, b = socket.socketpair()
        try:
            sent = _fill(b, os.urandom(300_000))
            got = 0
            for _ in range(2):  # (the second may leave bytes received ahead)
                if got < sent:
                    watcher.read(None, a, None)
                    (r,) = collect(watcher, 1)
                    assert r.error is None and r.size > 0
                    got += r.size
            watcher.free(a)
        finally:
            b.close()
        c, d = socket.socketpair()
        try:
            d.sendall(b"own %d" % i)
            watcher.read(None, c, None)
            (r,) = collect(watcher, 1)
            assert r.error is None and bytes(r.buffer[: r.size]) == b"own %d" % i
            watcher.free(c)
        finally:
            d.close()


def test_eof_after_bytes_received_ahead(watcher, pair):
    """A peer that sends more than the swap buffer holds and closes: every
    byte comes first, then EOF, for every read after it too."""
    a, b = pair
    data = os.urandom(500_000)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)

    def send_and_close() -> None:
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send_and_close, daemon=True)
    sender.start()
    got = bytearray()
    while True:
        watcher.read(None, a, None)
        (r,) = collect(watcher, 1)
        if r.error is not None:
            assert isinstance(r.error, EOFError) and r.size == 0
            break
        got += r.buffer[: r.size]
    sender.join(10)
    assert got == data
    watcher.read(None, a, bytearray(10))
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, EOFError)


# 4. read: at least one byte ---------------------------------------------------------------
def test_read_completes_with_what_is_there(watcher, pair):
    a, b = pair
    buf = bytearray(1000)
    watcher.read("r", a, buf)
    b.sendall(b"x")
    (r,) = collect(watcher, 1)
    assert r.size == 1 and buf[:1] == b"x"


# 5. read_full -----------------------------------------------------------------------------
def test_read_full_gathers_pieces(watcher, pair):
    a, b = pair
    buf = bytearray(9)
    watcher.read_full("f", a, buf)
    b.sendall(b"abc")
    assert watcher.wait_io(0.05) == []
    b.sendall(b"def")
    assert watcher.wait_io(0.05) == []
    b.sendall(b"ghi")
    (r,) = collect(watcher, 1)
    assert r.size == 9 and bytes(buf) == b"abcdefghi" and r.error is None


# 6. Deadlines -------------------------------------------------------------------------------
def test_read_deadline_fails_only_that_op(watcher, pair):
    a, b = pair
    watcher.read_timeout("late", a, bytearray(4), time.monotonic() + 0.05)
    watcher.read("next", a, bytearray(4))
    (r,) = collect(watcher, 1)
    assert r.context == "late" and isinstance(r.error, gaio.DeadlineError) and r.size == 0
    b.sendall(b"data")
    (r,) = collect(watcher, 1)
    assert r.context == "next" and bytes(r.buffer) == b"data"


def test_bytes_after_timed_out_read_reach_next_read(watcher, pair):
    a, b = pair
    watcher.read_timeout("t", a, None, time.monotonic() + 0.02)
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, gaio.DeadlineError)
    b.sendall(b"after the deadline")
    time.sleep(0.02)
    watcher.read("n", a, None)
    (r,) = collect(watcher, 1)
    assert bytes(r.buffer[: r.size]) == b"after the deadline"


def test_read_full_deadline_reports_partial_and_stream_goes_on(watcher, pair):
    a, b = pair
    buf = bytearray(10)
    watcher.read_full("f", a, buf, time.monotonic() + 0.1)
    b.sendall(b"abc")
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, gaio.DeadlineError) and r.size == 3 and buf[:3] == b"abc"
    b.sendall(b"rest")
    watcher.read("n", a, bytearray(10))
    (r,) = collect(watcher, 1)
    assert bytes(r.buffer[: r.size]) == b"rest"


def test_past_deadline_still_completes_when_possible(watcher, pair):
    a, b = pair
    b.sendall(b"ready")
    time.sleep(0.01)
    watcher.read_timeout("r", a, bytearray(10), time.monotonic() - 1)
    watcher.write_timeout("w", a, b"small", time.monotonic() - 1)
    results = {r.context: r for r in collect(watcher, 2)}
    assert results["r"].error is None and results["r"].size == 5
    assert results["w"].error is None and results["w"].size == 5
    watcher.read_timeout("r2", a, bytearray(10), time.monotonic() - 1)
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, gaio.DeadlineError) and isinstance(r.error, TimeoutError)


def test_write_timeout_against_peer_that_never_reads(watcher, tcp):
    a, b = tcp
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    data = pattern(8 << 20, 7)
    watcher.write_timeout("w", a, data, time.monotonic() + 0.3)
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, gaio.DeadlineError)
    assert 0 < r.size < len(data)
    sent = r.size
    tail = b"and the stream continues"
    reader = Reader(b, sent + len(tail))
    reader.start()
    watcher.write("w2", a, tail)
    (r2,) = collect(watcher, 1)
    reader.join(20)
    assert r2.error is None
    assert bytes(reader.data) == data[:sent] + tail


def test_queued_op_expires_behind_blocked_head(watcher, pair):
    a, b = pair
    watcher.read("head", a, bytearray(4))
    watcher.read_timeout("queued", a, bytearray(4), time.monotonic() + 0.05)
    (r,) = collect(watcher, 1)
    assert r.context == "queued" and isinstance(r.error, gaio.DeadlineError) and r.size == 0
    b.sendall(b"abcd")
    (r,) = collect(watcher, 1)
    assert r.context == "head" and bytes(r.buffer) == b"abcd"


def test_earlier_deadline_submitted_later_fires_first(watcher):
    (a1, b1), (a2, b2) = socket.socketpair(), socket.socketpair()
    try:
        now = time.monotonic()
        watcher.read_timeout("far", a1, bytearray(1), now + 5)
        watcher.wait_io(0)
        watcher.read_timeout("near", a2, bytearray(1), now + 0.05)
        t0 = time.monotonic()
        (r,) = collect(watcher, 1, timeout=3)
        assert r.context == "near" and time.monotonic() - t0 < 3
    finally:
        for s in (a1, b1, a2, b2):
            s.close()


# 7. free ------------------------------------------------------------------------------------
def test_free_with_ops_pending_both_ways(watcher, tcp):
    a, b = tcp
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    watcher.read("r1", a, bytearray(4))
    watcher.read("r2", a, None)
    watcher.write("w1", a, b"x" * (16 << 20))  # stuck: the peer does not read
    watcher.write("w2", a, b"y")
    watcher.wait_io(0.05)
    watcher.free(a)
    b.settimeout(10)
    while b.recv(1 << 20):  # the peer sees EOF at once
        pass
    results = collect(watcher, 4)
    assert sorted(r.context for r in results) == ["r1", "r2", "w1", "w2"]
    for r in results:
        assert isinstance(r.error, gaio.ConnClosedError)
    watcher.read("later", a, bytearray(4))
    watcher.write("later-w", a, b"z")
    for r in collect(watcher, 2):
        assert isinstance(r.error, gaio.ConnClosedError)


def test_free_without_wait_io_gives_peer_eof(watcher, pair):
    a, b = pair
    watcher.read("r", a, bytearray(1))
    watcher.free(a)
    b.settimeout(5)
    assert b.recv(10) == b""


def test_free_releases_descriptor(watcher):
    before = fd_count()
    a, b = socket.socketpair()
    watcher.read("r", a, None)
    watcher.wait_io(0)
    watcher.free(a)
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, gaio.ConnClosedError)
    b.close()
    assert fd_count() == before


# 8. close -------------------------------------------------------------------------------------
def test_close_from_another_thread_wakes_wait_io(backend, pair):
    a, b = pair
    w = gaio.Watcher(backend=backend)
    w.read("r", a, bytearray(4))
    errors = []

    def loop():
        try:
            w.wait_io()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=loop)
    t.start()
    time.sleep(0.1)
    w.close()
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], gaio.WatcherClosedError)
    b.settimeout(5)
    assert b.recv(10) == b""  # the peer sees EOF


def test_close_frees_every_connection(backend):
    before = fd_count()
    w = gaio.Watcher(backend=backend)
    peers = []
    for i in range(20):
        a, b = socket.socketpair()
        w.read(i, a, None)
        peers.append((a, b))
    w.wait_io(0)
    w.close()
    for a, b in peers:
        b.settimeout(5)
        assert b.recv(10) == b""
        b.close()
    del peers, a
    assert fd_count() == before


# 9. GC ------------------------------------------------------------------------------------------
def test_dropped_conn_closed_while_wait_io_blocks(watcher):
    a, b = socket.socketpair()
    watcher.write("w", a, b"hi")
    (r,) = collect(watcher, 1)
    ref = weakref.ref(a)
    del r, a
    gc.collect()
    assert ref() is None
    results = []
    t = threading.Thread(target=lambda: results.append(watcher.wait_io(1.0)))
    t.start()
    b.settimeout(5)
    assert b.recv(10) == b"hi"
    assert b.recv(10) == b""  # closed by the watcher while wait_io was blocked
    t.join(5)
    found, closed = watcher.get_gc()
    assert found >= 1 and closed >= 1
    b.close()


def test_pending_op_keeps_conn_alive(watcher):
    a, b = socket.socketpair()
    watcher.read("r", a, bytearray(4))
    ref = weakref.ref(a)
    del a
    gc.collect()
    watcher.wait_io(0.02)
    assert ref() is not None
    b.sendall(b"live")
    (r,) = collect(watcher, 1)
    assert bytes(r.buffer) == b"live" and r.conn is ref()
    assert watcher.get_gc() == (0, 0)
    del r
    gc.collect()
    watcher.wait_io(0.05)
    assert watcher.get_gc() == (1, 1)
    b.settimeout(5)
    assert b.recv(10) == b""
    b.close()


# 10. Threads ----------------------------------------------------------------------------------------
def test_four_threads_submit_while_main_waits(watcher):
    pairs = [socket.socketpair() for _ in range(4)]
    per_thread = 250

    def submitter(k):
        a, _ = pairs[k]
        for i in range(per_thread):
            watcher.write((k, i), a, pattern(100, i))
            if i % 50 == 0:
                time.sleep(0.001)

    readers = [Reader(b, 100 * per_thread) for _, b in pairs]
    for r in readers:
        r.start()
    threads = [threading.Thread(target=submitter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    results = collect(watcher, 4 * per_thread, timeout=30)
    for t in threads:
        t.join()
    for r in readers:
        r.join(10)
    for k in range(4):
        mine = [r.context[1] for r in results if r.context[0] == k]
        assert mine == list(range(per_thread))
        assert bytes(readers[k].data) == b"".join(pattern(100, i) for i in range(per_thread))
    for a, b in pairs:
        a.close()
        b.close()


def test_wait_io_from_two_threads_at_once_is_refused(watcher, pair):
    a, _ = pair
    watcher.read("r", a, bytearray(1))
    t = threading.Thread(target=lambda: watcher.wait_io(0.5))
    t.start()
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="wait_io"):
        watcher.wait_io(0)
    t.join()


def test_wait_io_timeout_returns_empty(watcher):
    t0 = time.monotonic()
    assert watcher.wait_io(0.05) == []
    assert time.monotonic() - t0 >= 0.04
    assert watcher.wait_io(0) == []


# 11. Memory safety ------------------------------------------------------------------------------------
class Buf(bytearray):
    """A bytearray that can be weakly referenced, to watch its lifetime."""


def test_buffer_kept_alive_until_complete(watcher, pair):
    a, b = pair
    buf = Buf(8)
    ref = weakref.ref(buf)
    watcher.read("r", a, buf)
    del buf
    gc.collect()
    watcher.wait_io(0.01)
    assert ref() is not None
    b.sendall(b"12345678")
    (r,) = collect(watcher, 1)
    assert bytes(r.buffer) == b"12345678"
    del r
    gc.collect()
    assert ref() is None  # and released after completion


def test_buffer_resizable_after_completion(watcher, pair):
    a, b = pair
    buf = bytearray(4)
    watcher.read("r", a, buf)
    with pytest.raises(BufferError):
        buf.extend(b"xx")  # exported to the kernel: Python may not move it
    b.sendall(b"abcd")
    collect(watcher, 1)
    buf.extend(b"ok")  # released
    assert bytes(buf) == b"abcdok"


def test_each_op_completes_exactly_once_under_deadlines_and_free(watcher):
    pairs = [socket.socketpair() for _ in range(20)]
    submitted = 0
    for i, (a, b) in enumerate(pairs):
        for j in range(10):
            watcher.read_timeout((i, j), a, bytearray(3), time.monotonic() + 0.001 * j)
            submitted += 1
        b.sendall(b"x" * (i * 3))
    for a, _ in pairs[::3]:
        watcher.free(a)
    results = collect(watcher, submitted, timeout=20)
    assert len({r.context for r in results}) == submitted
    assert watcher.wait_io(0.05) == []
    for a, b in pairs:
        a.close()
        b.close()


# scale ------------------------------------------------------------------------------------------------
def test_2000_connections_echo(watcher):
    n = 2000
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(n)
        clients, servers = [], []
        for _ in range(n):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(lsock.getsockname())
            clients.append(c)
            servers.append(lsock.accept()[0])
    msgs = {}
    for i, s in enumerate(servers):
        watcher.read(("srv", i), s, None)
    for i, c in enumerate(clients):
        msgs[i] = b"message-%d-" % i + pattern(64, i)
        watcher.write(("cli-w", i), c, msgs[i])
        watcher.read_full(("cli-r", i), c, bytearray(len(msgs[i])))
    echoed = 0
    end = time.monotonic() + 60
    while echoed < n and time.monotonic() < end:
        for r in watcher.wait_io(5):
            kind, i = r.context
            assert r.error is None, r
            if kind == "srv":
                watcher.write(("srv-w", i), r.conn, bytes(r.buffer[: r.size]))
                watcher.read(("srv", i), r.conn, None)
            elif kind == "cli-r":
                assert bytes(r.buffer) == msgs[i]
                echoed += 1
    assert echoed == n
    for s in clients + servers:
        watcher.free(s)
    collect_until(watcher, lambda out: len(out) >= n, timeout=30)  # the pending server reads


def test_descriptors_flat_across_10k_connect_free_cycles(watcher):
    linger0 = b"\x01\x00\x00\x00\x00\x00\x00\x00"
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        addr = lsock.getsockname()
        before = fd_count()
        for i in range(10_000):
            c = socket.create_connection(addr)
            s, _ = lsock.accept()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)  # no TIME_WAIT pile-up
            watcher.read(i, s, None)
            c.sendall(b"p")
            (r,) = collect(watcher, 1)
            assert r.size == 1
            watcher.free(s)
            c.close()
            if i % 1000 == 0:
                watcher.wait_io(0)
        watcher.wait_io(0)
        del c, s, r
        gc.collect()
        watcher.wait_io(0)
        assert fd_count() <= before + 1


def test_free_completes_queued_ops_in_order(watcher, tcp):
    a, b = tcp
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    for i in range(5):
        watcher.read(("r", i), a, bytearray(1))
    for i in range(5):
        watcher.write(("w", i), a, b"x" * (4 << 20))  # the head is stuck: the peer does not read
    assert watcher.wait_io(0.05) == []
    watcher.free(a)
    watcher.read(("r", 5), a, bytearray(1))  # after free: behind the same heads
    watcher.write(("w", 5), a, b"late")
    results = collect(watcher, 12)
    assert [r.context[1] for r in results if r.context[0] == "r"] == list(range(6))
    assert [r.context[1] for r in results if r.context[0] == "w"] == list(range(6))
    assert all(isinstance(r.error, gaio.ConnClosedError) for r in results)


def _echo_once(watcher, a, b):
    watcher.write("w", a, b"ping over " + repr(a.family).encode())
    watcher.read("r", a, None)
    (w_res,) = collect(watcher, 1)
    assert w_res.error is None
    data = b.recv(100)
    b.sendall(data.upper())
    (r,) = collect(watcher, 1)
    assert bytes(r.buffer[: r.size]) == data.upper()


def test_ipv6_loopback(watcher):
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        a, b = tcp_pair(socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"::1 is not configured on this machine: {exc}")
    with a, b:
        _echo_once(watcher, a, b)


def test_unix_stream_socket_by_path(watcher, tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lsock:
        lsock.bind(path)
        lsock.listen(1)
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        a.connect(path)
        b, _ = lsock.accept()
    with a, b:
        _echo_once(watcher, a, b)


def test_free_closes_descriptor_at_once_when_idle(watcher, pair):
    a, b = pair
    watcher.write("w", a, b"x")
    collect(watcher, 1)
    before = fd_count()
    watcher.free(a)  # nothing in flight, no wait_io running: released right here
    assert fd_count() == before - 1
    b.settimeout(5)
    assert b.recv(10) == b"x" and b.recv(10) == b""
    watcher.read("later", a, bytearray(1))
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, gaio.ConnClosedError)


def test_free_from_another_thread_while_wait_io_blocks(watcher, pair):
    a, b = pair
    watcher.write("w", a, b"x")
    collect(watcher, 1)
    before = fd_count()
    t = threading.Thread(target=lambda: watcher.wait_io(0.5))
    t.start()
    time.sleep(0.05)
    watcher.free(a)  # the running loop releases it, promptly
    b.settimeout(5)
    assert b.recv(10) == b"x" and b.recv(10) == b""
    t.join(5)
    assert fd_count() == before - 1


def test_completed_timed_op_does_not_keep_conn_alive(watcher):
    a, b = socket.socketpair()
    watcher.read_timeout("r", a, bytearray(4), time.monotonic() + 3600)  # a far deadline
    watcher.write_timeout("w", a, b"x", time.monotonic() + 3600)
    b.sendall(b"data")
    collect(watcher, 2)
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None  # nothing of the watcher's holds it once its ops completed
    watcher.wait_io(0.05)
    assert watcher.get_gc() == (1, 1)
    b.settimeout(5)
    assert b.recv(10) == b"x" and b.recv(10) == b""
    b.close()


# Engine tables ----------------------------------------------------------------------------
def test_ops_on_a_high_numbered_descriptor_beside_low_ones(watcher):
    """Engines file pending ops in lists indexed by descriptor number. A
    descriptor far above the others grows them; ops on it and on a low one stay
    apart: parked reads, a write that parks on a full buffer, and a timed-out
    read each complete once, with the right bytes."""
    import fcntl

    a, b = socket.socketpair()
    hi = socket.socket(fileno=fcntl.fcntl(a.fileno(), fcntl.F_DUPFD_CLOEXEC, 3000))
    a.close()
    lo, lo_peer = socket.socketpair()
    assert hi.fileno() >= 3000 > lo.fileno()
    try:
        big = pattern(4 << 20)
        watcher.read("hi-r", hi, None)
        watcher.read("lo-r", lo, bytearray(16))
        watcher.write("hi-w", hi, big)  # more than the buffer holds: parks
        watcher.read_timeout("lo-t", lo, bytearray(4), time.monotonic() + 0.05)
        assert watcher.wait_io(0.02) == []
        lo_peer.sendall(b"low")
        (r,) = collect(watcher, 1)
        assert (r.context, bytes(r.buffer[: r.size])) == ("lo-r", b"low")
        (r,) = collect(watcher, 1)  # the queued read behind it times out
        assert r.context == "lo-t" and isinstance(r.error, gaio.DeadlineError)
        reader = Reader(b, len(big))
        reader.start()
        (r,) = collect(watcher, 1)
        assert (r.context, r.size, r.error) == ("hi-w", len(big), None)
        reader.join(20)
        assert bytes(reader.data) == big
        b.sendall(b"high")
        (r,) = collect(watcher, 1)
        assert (r.context, bytes(r.buffer[: r.size])) == ("hi-r", b"high")
        lo_peer.sendall(b"late")  # bytes after the deadline go to the next read
        watcher.read("lo-r2", lo, bytearray(16))
        (r,) = collect(watcher, 1)
        assert (r.context, bytes(r.buffer[: r.size])) == ("lo-r2", b"late")
    finally:
        for conn in (hi, lo):
            watcher.free(conn)
        for s in (hi, lo, b, lo_peer):
            s.close()


def _reset_by_peer(peer: socket.socket) -> None:
    """Close ``peer`` with an RST (SO_LINGER 0) instead of a FIN."""
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()


def _write_fails_then_eof(watcher: gaio.Watcher, conn: socket.socket) -> dict:
    """Collect the read "r" and the write "w" pending on ``conn`` after its
    peer's reset (by context), check that the write failed, and that a read
    submitted after them sees end of stream."""
    got = {r.context: r for r in collect(watcher, 2)}
    assert isinstance(got["w"].error, (BrokenPipeError, ConnectionResetError)), got["w"]
    watcher.read("later", conn, None)
    (later,) = collect(watcher, 1)
    assert isinstance(later.error, EOFError), later
    return got


@pytest.mark.parametrize("read_first", [True, False], ids=["read-pending", "together"])
def test_a_reset_met_first_by_a_write_still_fails_the_pending_read(watcher, read_first):
    """The kernel reports a reset once, to the first call that meets it, and
    then the socket reads as ended. A read pending when the peer resets must
    fail with ConnectionResetError on every engine, also when a write
    submitted with it or after it meets the reset first (io_uring runs the
    send at once, while the receive waits for its poll): it must not report a
    clean end of stream. The write fails with EPIPE or ECONNRESET. A read
    submitted after that reads end of stream, as a blocking recv() would."""
    conn, peer = tcp_pair()
    try:
        if read_first:
            watcher.read("r", conn, None)
            time.sleep(0.05)  # (armed at the engine)
            watcher.wait_io(0)
            _reset_by_peer(peer)
            time.sleep(0.05)
        else:
            _reset_by_peer(peer)
            time.sleep(0.05)
            watcher.read("r", conn, None)
        watcher.write("w", conn, b"x" * 100)
        got = _write_fails_then_eof(watcher, conn)
        assert isinstance(got["r"].error, ConnectionResetError), got["r"]
    finally:
        conn.close()


def test_bytes_sent_before_a_reset_are_read_though_a_write_met_the_reset(watcher):
    """Bytes the peer sent before its reset are still read (Linux keeps them),
    also when a write met the reset first while the read waited: the read
    gets the bytes, not the reset, and the next read end of stream, on every
    engine."""
    conn, peer = tcp_pair()
    try:
        watcher.read("r", conn, bytearray(64))
        watcher.wait_io(0)
        peer.sendall(b"hello")
        _reset_by_peer(peer)
        time.sleep(0.05)
        watcher.write("w", conn, b"x" * 100)
        got = _write_fails_then_eof(watcher, conn)
        assert got["r"].error is None and bytes(got["r"].buffer[: got["r"].size]) == b"hello", got["r"]
    finally:
        conn.close()


# -- an idle watcher gives its buffers' pages back; waits keep their contract --------------

def test_an_idle_watcher_gives_buffer_pages_back_and_waits_as_asked(watcher):
    """Every engine, once idle for a while after traffic, gives its buffers'
    pages back (``trims`` counts it). That happens inside wait_io and is not a
    result: wait_io(None) still returns only with one, wait_io(t) only after
    t, and the swap reads after it get their bytes."""
    w = watcher
    pairs = [socket.socketpair() for _ in range(8)]
    try:
        for rnd in range(2):
            for i, (a, b) in enumerate(pairs):
                w.read((rnd, i), a)
                b.sendall(b"%d-%d:" % (rnd, i) + b"x" * 6000)
            got = collect(w, len(pairs))
            assert sorted(bytes(r.buffer[: r.size])[:8].split(b":")[0] for r in got) == sorted(
                b"%d-%d" % (rnd, i) for i in range(len(pairs)))
            assert all(r.error is None and r.size == 6000 + len(b"%d-%d:" % r.context) for r in got)
            t0 = time.monotonic()
            assert w.wait_io(0.6) == []
            assert time.monotonic() - t0 >= 0.55
            assert w._engine.trims == rnd + 1
        # a wait with no time limit, idle past the trim, returns the result
        (a, b) = pairs[0]
        w.read("late", a)
        threading.Timer(0.4, b.sendall, (b"late",)).start()
        t0 = time.monotonic()
        (r,) = w.wait_io()
        assert r.context == "late" and bytes(r.buffer[: r.size]) == b"late"
        assert time.monotonic() - t0 >= 0.35
    finally:
        for a, b in pairs:
            a.close()
            b.close()
