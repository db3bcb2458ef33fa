"""The io_uring engine on its own, over socketpair descriptors.

Skipped (with the reason) where io_uring cannot run, except under CI=true,
where an unavailable engine fails these tests: CI is there to test it.
"""

from __future__ import annotations

import errno
import os
import platform
import resource
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import resident, sleeps_whole

from gaio import _native

uring = _native.load("gaio.backends.uring")  # the compiled twin when built, as gaio uses it

REASON = uring.probe()
ECANCELED = -errno.ECANCELED


@pytest.fixture
def engine_factory():
    if REASON is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the io_uring engine is unavailable: {REASON}")
        pytest.skip(f"io_uring unavailable: {REASON}")
    made = []

    def make(bufsize=65536, **kw):
        e = uring.Engine(bufsize, **kw)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


@pytest.fixture
def engine(engine_factory):
    return engine_factory()


@pytest.fixture
def pairs():
    made = []

    def make(n=1):
        for _ in range(n):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            made.append((a, b))
        return made[-n:]

    yield make
    for a, b in made:
        a.close()
        b.close()


def triples(flat):
    """An engine's completions (a flat list: token, res, mem, ...) as tuples."""
    assert len(flat) % 3 == 0
    return [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)]


def collect(engine, want, timeout=10.0, recycle=False):
    """Wait until ``want`` completions arrived; returns {tag: (res, bytes or None)}."""
    got = {}
    end = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < end, f"only {len(got)} of {want} completions"
        if recycle:
            engine.recycle()
        for tag, res, mem in triples(engine.wait(0.5)):
            assert tag not in got, f"tag {tag} completed twice"
            got[tag] = (res, None if mem is None else bytes(mem))
    return got


def first_record(engine, n):
    """The words of the first of ``n`` words of records in gaio_enter's array
    (for stand-ins of gaio_enter that take one record only)."""
    return min(n, uring._words(int(engine._recs[0]) & uring._TAG_KIND)) if n else 0


def arm_recvs(engine, ps, size):
    """A recv into a fresh ``size``-byte buffer on each pair's first socket,
    tags 1..n; returns the buffers."""
    bufs = [bytearray(size) for _ in ps]
    for i, ((a, _), buf) in enumerate(zip(ps, bufs)):
        engine.recv(i + 1, a.fileno(), memoryview(buf))
    return bufs


def test_recv_send_user_buffers(engine, pairs):
    (a, b), = pairs()
    buf = bytearray(16)
    engine.attach(a.fileno())
    engine.attach(b.fileno())
    engine.recv(1, a.fileno(), memoryview(buf))
    engine.send(2, b.fileno(), memoryview(b"hello uring"))
    got = collect(engine, 2)
    assert got == {1: (11, None), 2: (11, None)}
    assert bytes(buf[:11]) == b"hello uring"
    engine.detach(a.fileno())


def test_ops_left_after_a_partial_take_keep_their_memory(engine, pairs):
    """gaio_enter may take fewer queued ops than offered (the kernel refused a
    submit: EBUSY, EAGAIN); the rest stay queued, their records indexing the
    memory list of the first call. They must go out with their own memory on
    the next enters, also when one op is left: gaio_enter1 (one op, memory as
    an argument) must not take one whose memory is not the list's only entry."""
    real = engine._enter
    offered = []

    def one_at_a_time(lp, n, nb, mem, wait_ns):
        offered.append(n)
        return real(lp, first_record(engine, n), nb, mem, wait_ns)

    engine._enter = one_at_a_time
    ps = pairs(3)
    for i, (a, _) in enumerate(ps):
        engine.send(i + 1, a.fileno(), memoryview(b"payload-%d" % i))
    assert collect(engine, 3) == {i + 1: (9, None) for i in range(3)}
    assert 3 in offered  # the last op went the general way, memory list and all
    for i, (_, b) in enumerate(ps):
        assert b.recv(64) == b"payload-%d" % i


def test_send_to_closed_peer_is_epipe_not_sigpipe(engine, pairs):
    (a, b), = pairs()
    b.close()
    engine.send(1, a.fileno(), memoryview(b"x" * 10))
    res, _ = collect(engine, 1)[1]
    assert res == -errno.EPIPE


def test_eof(engine, pairs):
    (a, b), = pairs()
    engine.recv(1, a.fileno(), None)
    b.shutdown(socket.SHUT_WR)
    assert collect(engine, 1) == {1: (0, b"")}


def test_swap_recv_is_exact_view_until_recycle(engine, pairs):
    (a, b), = pairs()
    engine.recv(1, a.fileno(), None)
    b.send(b"swap!")
    out = triples(engine.wait(5))
    assert len(out) == 1
    tag, res, mem = out[0]
    assert (tag, res) == (1, 5) and isinstance(mem, memoryview)
    assert mem.nbytes == 5 and bytes(mem) == b"swap!"
    assert len(engine._lent) == 1
    engine.recycle()
    assert len(engine._lent) == 0
    engine.recv(2, a.fileno(), None)
    b.send(b"again")
    assert collect(engine, 1) == {2: (5, b"again")}


def test_swap_memory_is_bounded():
    for bufsize in (16, 4096, 65536, 1 << 20, 64 << 20):
        entry, count = uring._swap_geometry(bufsize, None)
        assert entry == min(bufsize, uring.SWAP_ENTRY_MAX)
        assert count & (count - 1) == 0 and 16 <= count <= 4096
        assert entry * count <= max(uring.SWAP_POOL_BYTES, 16 * entry)


def test_swap_recv_fills_a_bufsize_over_64k(engine_factory, pairs):
    # Entries follow bufsize up to SWAP_ENTRY_MAX: a bulk read is not cut at 64 KiB.
    e = engine_factory(bufsize=256 << 10)
    (a, b), = pairs()
    payload = bytes(range(256)) * 400  # 100 KiB, fits the socketpair's buffer
    b.sendall(payload)
    e.recv(1, a.fileno(), None)
    res, data = collect(e, 1)[1]
    assert 64 << 10 < res <= len(payload)
    assert data == payload[:res]


def test_idle_swap_reads_hold_no_buffer_and_enobufs_requeues(engine_factory, pairs):
    e = engine_factory(bufsize=64, swap_buffers=2)
    ps = pairs(12)
    for i, (a, _) in enumerate(ps):
        e.recv(i + 1, a.fileno(), None)
    assert e.wait(0.05) == []  # 12 idle swap reads on a ring of 2 buffers
    for i, (_, b) in enumerate(ps):
        b.send(b"%02d-payload" % i)
    got = {}
    waits = 0
    end = time.monotonic() + 10
    while len(got) < len(ps):
        assert time.monotonic() < end
        e.recycle()
        out = triples(e.wait(0.5))
        waits += 1
        assert len(out) <= 2  # never more buffers out than the ring has
        for tag, res, mem in out:
            got[tag] = bytes(mem)
    assert got == {i + 1: b"%02d-payload" % i for i in range(len(ps))}
    assert waits < 100  # parked, not spinning


def test_swap_read_let_out_of_the_queue_without_data_holds_no_buffer(engine_factory, pairs):
    """A parked swap read is let out trying the receive at once (no
    POLL_FIRST). If its socket has nothing yet, it must wait without the
    buffer it picked: the only buffer then serves another read, and the
    released one still completes when its data comes, in its own bytes."""
    e = engine_factory(bufsize=64, swap_buffers=1)
    (a1, b1), (a2, b2), (a3, b3) = pairs(3)
    b1.send(b"first")
    e.recv(1, a1.fileno(), None)
    assert collect(e, 1) == {1: (5, b"first")}  # the only buffer is lent now
    e.recv(2, a2.fileno(), None)  # parked: every buffer is lent
    assert e.wait(0.01) == []
    e.recycle()
    assert e.wait(0.05) == []  # let out, finds nothing, arms its poll
    b3.send(b"third")
    e.recv(3, a3.fileno(), None)
    assert collect(e, 1, recycle=True) == {3: (5, b"third")}  # the buffer was free
    b2.send(b"second")
    assert collect(e, 1, recycle=True) == {2: (6, b"second")}


def test_enobufs_after_recycle_is_not_starved(engine_factory, pairs):
    """An -ENOBUFS posted before buffers came back must still be retried."""
    e = engine_factory(bufsize=64, swap_buffers=1)
    (a1, b1), (a2, b2) = pairs(2)
    e.recv(1, a1.fileno(), None)
    e.recv(2, a2.fileno(), None)
    e.wait(0)
    b1.send(b"one")
    b2.send(b"two")
    time.sleep(0.05)
    got = collect(e, 2, recycle=True)
    assert got == {1: (3, b"one"), 2: (3, b"two")}


def in_another_thread(fn):
    """Call ``fn`` in a new thread (an engine used there moves to a new ring)
    and wait for it; what it returned, or raise what it raised."""
    box = []

    def target():
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001
            box.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def buffers_accounted(e):
    """Every swap buffer is in exactly one place: in the ring (or about to go
    there), lent to the user, or kept out of the ring in _spare."""
    lent, spare, returned = list(e._lent), list(e._spare), list(e._returned)
    assert e._in_ring + len(lent) + len(spare) == e._nbufs
    assert len(set(lent + spare + returned)) == len(lent) + len(spare) + len(returned)
    assert len(returned) <= e._in_ring  # (counted in the ring already)
    return True


def test_window_keeps_a_round_trip_on_few_buffers(engine, pairs):
    """The ring holds a window of WINDOW_MIN of the 128 buffers: a steady
    round trip cycles those (warm in the caches) and never touches the rest,
    which stay out of the kernel's reach."""
    assert engine._nbufs == 128 and engine._window == uring.WINDOW_MIN
    (a, b), = pairs()
    used = set()
    for i in range(200):
        msg = b"ping %d" % i
        b.send(msg)
        engine.recv(i, a.fileno(), None)
        assert collect(engine, 1) == {i: (len(msg), msg)}
        used.update(engine._lent)
        engine.recycle()
        assert buffers_accounted(engine)
    assert len(used) <= uring.WINDOW_MIN
    assert engine._window == uring.WINDOW_MIN


def test_window_widens_for_a_burst_and_narrows_after_it(engine, pairs):
    """A burst of more reads with data than the window holds parks the
    overflow, which widens the window; every read completes with its own
    bytes. Rounds that take little then narrow it again, a halving per
    WINDOW_ROUNDS rounds, and a second burst widens it once more."""
    ps = pairs(100)

    def burst(tag0):
        for i, (a, b) in enumerate(ps):
            b.send(b"%d-%03d" % (tag0, i))
        for i, (a, _) in enumerate(ps):
            engine.recv(tag0 + i, a.fileno(), None)
        got = {}
        for _ in range(100):
            engine.recycle()
            assert buffers_accounted(engine)
            for tag, res, mem in triples(engine.wait(0.5)):
                assert tag not in got
                got[tag] = bytes(mem)
            if len(got) == len(ps):
                break
        assert got == {tag0 + i: b"%d-%03d" % (tag0, i) for i in range(len(ps))}

    burst(1000)
    assert engine._window > uring.WINDOW_MIN
    (a, b) = ps[0]
    rounds = 0
    while engine._window > uring.WINDOW_MIN:  # quiet rounds: one small read each
        assert rounds < 8 * uring.WINDOW_ROUNDS
        b.send(b"q")
        engine.recv(rounds, a.fileno(), None)
        assert collect(engine, 1) == {rounds: (1, b"q")}
        engine.recycle()
        rounds += 1
    assert buffers_accounted(engine)
    assert len(engine._spare) > 0
    burst(2000)
    assert engine._window > uring.WINDOW_MIN


def test_window_survives_a_move_to_a_new_ring(engine, pairs):
    """A move to a new ring (another thread waits) stocks the new ring up to
    the window, counting the buffers still lent; every buffer stays accounted
    for, the window stays as wide, and reads go on."""
    ps = pairs(40)
    for i, (a, b) in enumerate(ps):
        b.send(b"%02d" % i)
    for i, (a, _) in enumerate(ps):
        engine.recv(i, a.fileno(), None)
    assert collect(engine, 40, recycle=True) == {i: (2, b"%02d" % i) for i in range(40)}
    assert engine._window > uring.WINDOW_MIN and engine._lent  # the last round's are still lent
    window = engine._window

    def other():
        a, b = ps[0]
        b.send(b"moved")
        engine.recv(100, a.fileno(), None)
        return [collect(engine, 1), buffers_accounted(engine)]

    assert in_another_thread(other) == [{100: (5, b"moved")}, True]
    assert engine._window == window
    assert engine._migrations == 1 or not engine._bound  # (a shared ring has nothing to move)


def test_cancel_without_data(engine, pairs):
    (a, _), = pairs()
    buf = bytearray(8)
    engine.recv(7, a.fileno(), memoryview(buf))
    assert engine.wait(0.01) == []
    engine.cancel(a.fileno(), False)
    engine.cancel(a.fileno(), False)  # twice is harmless
    engine.cancel(a.fileno(), True)  # no send there: ignored
    assert collect(engine, 1) == {7: (ECANCELED, None)}


def test_cancel_in_same_batch_and_swap(engine, pairs):
    (a, _), = pairs()
    engine.recv(1, a.fileno(), None)
    engine.cancel(a.fileno(), False)
    assert collect(engine, 1) == {1: (ECANCELED, None)}


def test_cancel_raced_by_data_reports_data(engine, pairs):
    (a, b), = pairs()
    buf = bytearray(8)
    b.send(b"raced")
    engine.recv(3, a.fileno(), memoryview(buf))
    engine.cancel(a.fileno(), False)  # same batch: the recv finds data at once, cancel finds nothing
    assert collect(engine, 1) == {3: (5, None)}
    assert bytes(buf[:5]) == b"raced"


def test_cancelled_starved_swap_read_completes(engine_factory, pairs):
    e = engine_factory(bufsize=64, swap_buffers=1)
    (a1, b1), (a2, b2) = pairs(2)
    b1.send(b"x")
    e.recv(1, a1.fileno(), None)
    assert collect(e, 1) == {1: (1, b"x")}  # the only buffer is lent now
    e.recv(2, a2.fileno(), None)
    b2.send(b"y")
    assert e.wait(0.1) == []  # -ENOBUFS: parked
    e.cancel(a2.fileno(), False)
    assert collect(e, 1) == {2: (ECANCELED, None)}


def test_parked_swap_reads_resume_in_order_skipping_cancelled(engine_factory, pairs):
    """Parked reads are released first come, first served; one cancelled while
    parked ends at once and never reaches the kernel."""
    e = engine_factory(bufsize=64, swap_buffers=1)
    ps = pairs(4)
    ps[0][1].send(b"x")
    e.recv(1, ps[0][0].fileno(), None)
    assert collect(e, 1) == {1: (1, b"x")}  # the only buffer is lent now
    for tag, (a, b) in zip((2, 3, 4), ps[1:]):
        b.send(b"%d" % tag)
        e.recv(tag, a.fileno(), None)
    assert e.wait(0.05) == []  # all three parked
    e.cancel(ps[2][0].fileno(), False)
    order = []
    end = time.monotonic() + 10
    while len(order) < 3:
        assert time.monotonic() < end
        e.recycle()
        for tag, res, mem in triples(e.wait(0.5)):
            order.append((tag, res, None if mem is None else bytes(mem)))
    assert order == [(3, ECANCELED, None), (2, 1, b"2"), (4, 1, b"4")]


def test_parked_idle_reads_do_not_hide_a_read_with_data(engine_factory, pairs):
    """Found by make bench (idle, c5k: a hello never echoed, 1 run in about 100).
    Swap reads parked while every buffer was lent were released at most one
    per free buffer, oldest first. Released reads of idle connections take no
    buffer while they wait, so the read behind them, with its data already
    there, stayed parked, and a wait with no time limit slept forever (here:
    the whole 2 s, every time). Now a wait sleeps at most 1 ms while reads are
    parked, and the next releases more."""
    e = engine_factory(bufsize=64, swap_buffers=2)
    ps = pairs(5)
    for tag, (a, b) in enumerate(ps[:2]):  # lend both buffers
        b.send(b"x")
        e.recv(tag, a.fileno(), None)
    assert len(collect(e, 2)) == 2
    e.recv("idle-1", ps[2][0].fileno(), None)  # no data will come
    e.recv("idle-2", ps[3][0].fileno(), None)
    ps[4][1].send(b"hello")
    e.recv("hello", ps[4][0].fileno(), None)
    e.recycle()  # both buffers free again
    got = []
    end = time.monotonic() + 1.0
    while not got:  # the front end calls wait again after an empty return
        assert time.monotonic() < end, "the read with data stayed parked"
        got = triples(e.wait(2.0))
    assert [(tag, res, bytes(mem)) for tag, res, mem in got] == [("hello", 5, b"hello")]


def test_wake_from_another_thread(engine):
    assert engine.wait(0) == []
    for _ in range(3):
        t = threading.Timer(0.1, engine.wake)
        t0 = time.monotonic()
        t.start()
        assert engine.wait(None) == []
        assert time.monotonic() - t0 < 2.0
        t.join()


def test_wake_before_wait_and_after_close(engine):
    engine.wake()
    t0 = time.monotonic()
    engine.wait(5)
    assert time.monotonic() - t0 < 1.0
    engine.close()
    engine.wake()  # no-op
    assert engine.wait(0) == []


def test_close_with_ops_in_flight(engine_factory, pairs):
    e = engine_factory()
    ps = pairs(50)
    bufs = arm_recvs(e, ps, 4)
    for i, (_, b) in enumerate(ps):
        e.recv(1000 + i, b.fileno(), None)
    e.send(999, ps[0][1].fileno(), memoryview(b"zz"))
    e.wait(0)
    e.close()
    e.close()  # twice is fine
    for _, b in ps:
        b.send(b"late")
    time.sleep(0.05)
    assert all(buf == bytearray(4) for buf in bufs[1:])  # nobody wrote after close


def test_close_from_another_thread_with_ops_in_flight(engine_factory, pairs):
    e = engine_factory()
    ps = pairs(20)
    bufs = arm_recvs(e, ps, 4)
    for i, (_, b) in enumerate(ps):
        e.recv(100 + i, b.fileno(), None)
    e.wait(0)  # this thread is the ring's issuer now
    t = threading.Thread(target=e.close)
    t.start()
    t.join(15)
    assert not t.is_alive()
    for _, b in ps:
        b.send(b"late")
    time.sleep(0.05)
    assert all(buf == bytearray(4) for buf in bufs)


@pytest.mark.skipif(_native.compiled(uring), reason="the compiled twin calls _barrier directly, so a "
                    "monkeypatched one never runs there; the pure-Python run of the suite covers this")
def test_close_that_cannot_see_the_kernel_done_keeps_the_memory_mapped(engine_factory, pairs, monkeypatch):
    """When the barrier times out, the kernel may still write into the pool or
    read the buffer ring: close() must leave both mapped (the graveyard), not
    unmap them under it."""
    e = engine_factory()
    ps = pairs(2)
    arm_recvs(e, ps[:1], 4)
    e.recv(2, ps[1][0].fileno(), None)
    e.wait(0)  # this thread is the ring's issuer: a close from another is not the polite one
    monkeypatch.setattr(uring, "_barrier", lambda fd, timeout: False)
    t = threading.Thread(target=e.close)
    t.start()
    t.join(15)
    assert not t.is_alive()
    assert not e._pool.closed and not e._br.closed
    assert any(entry[1] is e._pool for entry in uring._GRAVEYARD)


def test_thread_change_between_calls(engine, pairs):
    (a, b), = pairs()
    buf = bytearray(16)
    engine.recv(1, a.fileno(), memoryview(buf))
    engine.recv(2, b.fileno(), None)
    engine.wait(0)  # submitted by this thread

    results = []

    def other(payload):
        try:
            a.send(payload)
            b.send(b"to-a")
            results.append(collect(engine, 2))
        except BaseException as exc:  # noqa: BLE001
            results.append(exc)

    t = threading.Thread(target=other, args=(b"to-b",))
    t.start()
    t.join()
    assert results == [{1: (4, None), 2: (4, b"to-b")}]
    assert bytes(buf[:4]) == b"to-a"
    # and on: more ops from yet other threads, some in flight across the change
    for n in range(3):
        engine.recycle()
        engine.recv(10 + n, a.fileno(), memoryview(buf))
        assert engine.wait(0) == []
        results.clear()
        t = threading.Thread(target=lambda: results.append(collect(engine, 1)))
        t.start()
        b.send(b"n%d" % n)
        t.join()
        assert results == [{10 + n: (2, None)}]
    engine.cancel(b.fileno(), False)  # nothing there: ignored


def test_thread_with_a_reused_id_moves_to_a_new_ring(engine, pairs):
    # The ring binds to the first thread that waits. Once that thread exited,
    # the next one usually gets its pthread id (glibc reuses them), so the id
    # says "same thread" while the kernel refuses it (-EEXIST): the engine
    # must move to a new ring then, not spin on a ring that is not its own.
    (a, b), = pairs()
    buf = bytearray(8)
    engine.recv(1, a.fileno(), memoryview(buf))
    idents, out = [], []

    def drive(want):
        idents.append(threading.get_ident())
        try:
            out.append(collect(engine, want, timeout=5.0) if want else engine.wait(0))
        except BaseException as exc:  # noqa: BLE001
            out.append(exc)

    for want in (0, 1):
        if want:
            b.send(b"data")
        t = threading.Thread(target=drive, args=(want,))
        t.start()
        t.join(10.0)
    assert out == [[], {1: (4, None)}]
    assert bytes(buf[:4]) == b"data"
    # (when glibc gave the second thread another id, the ordinary move was tested)


def test_a_cancel_that_never_lands_is_asked_again_without_spinning(engine):
    # A filed, cancel-requested op the kernel never heard of: its cancel fails
    # with -ENOENT forever. It is asked again, at once for a while, then at
    # most about once a millisecond: never a busy loop (a failed cancel's own
    # CQE ended every wait at once, and a blocked wait spun at 100% CPU).
    ud = uring._SEND << 32 | 1000
    engine.wait(0)
    engine._put(ud, object())
    try:
        engine.cancel(1000, True)
        start = time.monotonic()
        while time.monotonic() - start < 0.5:
            assert engine.wait(0.5) == []
        tries = engine._cancel_tries[ud]
        assert uring.CANCEL_TRIES_AT_ONCE < tries < uring.CANCEL_TRIES_AT_ONCE + 2000, tries
    finally:
        engine._take(ud)
        engine._cancelled.discard(ud)
        engine._cancel_tries.clear()
        engine._cancel_later.clear()


def test_thread_change_keeps_cancel(engine, pairs):
    (a, _), = pairs()
    engine.recv(1, a.fileno(), memoryview(bytearray(4)))
    engine.wait(0)
    engine.cancel(a.fileno(), False)  # queued, not yet submitted, then another thread drives
    out = []
    t = threading.Thread(target=lambda: out.append(collect(engine, 1)))
    t.start()
    t.join()
    assert out == [{1: (ECANCELED, None)}]


def test_ten_thousand_ops_in_flight_small_cq(engine_factory, pairs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    npairs = 5200
    if soft < 2 * npairs + 200:
        want = min(hard, 2 * npairs + 400)
        if want < 2 * npairs + 200:
            pytest.skip(f"needs ulimit -n >= {2 * npairs + 200}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    e = engine_factory(bufsize=16, cq_entries=1024)  # CQ far smaller than in flight: NODROP
    ps = pairs(npairs)
    bufs = {}
    tag = 0
    for a, b in ps:
        for s in (a, b):
            tag += 1
            if tag % 2:
                bufs[tag] = bytearray(8)
                e.recv(tag, s.fileno(), memoryview(bufs[tag]))
            else:
                e.recv(tag, s.fileno(), None)
    assert e.wait(0) == []
    assert e._live == tag >= 10_000
    for a, b in ps:
        a.send(b"ab")
        b.send(b"ba")
    got = collect(e, tag, timeout=60, recycle=True)
    assert len(got) == tag
    assert all(res == 2 for res, _ in got.values())
    assert all(bytes(buf[:2]) in (b"ab", b"ba") for buf in bufs.values())
    assert not e._live


def test_poller_affinity(engine):
    engine.set_poller_affinity(0)
    assert engine.wait(0) == []
    engine.set_poller_affinity(os.cpu_count() - 1)


def _run_py(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("GAIO_BACKEND", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)


_FALLBACK_CHECK = """
import gaio
from gaio.backends import why_unavailable
print(why_unavailable('uring'))
assert 'uring' not in gaio.available_backends()
w = gaio.Watcher()
print(w.backend)
w.close()
"""


def _fallback_reason(prelude: str) -> str:
    """Run ``prelude`` (which makes io_uring unusable) in a fresh interpreter,
    check that gaio then picks epoll by itself, and return uring's reason."""
    p = _run_py(textwrap.dedent(prelude) + _FALLBACK_CHECK)
    assert p.returncode == 0, p.stderr
    reason, backend = p.stdout.strip().splitlines()
    assert backend == "epoll"
    return reason


def test_fallback_when_extension_is_missing():
    reason = _fallback_reason("""
        import sys
        sys.modules['gaio._uring'] = None  # as if built without liburing
    """)
    assert "not built" in reason


@pytest.mark.skipif(platform.machine() != "x86_64" or not sys.platform.startswith("linux"),
                    reason="seccomp filter below is written for x86_64 Linux")
def test_fallback_under_seccomp():
    reason = _fallback_reason("""
        import ctypes, errno
        libc = ctypes.CDLL(None, use_errno=True)
        class Filter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                        ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]
        BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
        prog = (Filter * 4)(
            Filter(BPF_LD_W_ABS, 0, 0, 0),        # seccomp_data.nr
            Filter(BPF_JEQ_K, 0, 1, 425),         # io_uring_setup?
            Filter(BPF_RET_K, 0, 0, 0x00050000 | errno.EPERM),
            Filter(BPF_RET_K, 0, 0, 0x7fff0000),  # allow
        )
        assert libc.prctl(38, 1, 0, 0, 0) == 0    # PR_SET_NO_NEW_PRIVS
        assert libc.prctl(22, 2, ctypes.byref(Prog(4, prog)), 0, 0) == 0, ctypes.get_errno()
    """)
    assert "io_uring_queue_init failed: Operation not permitted" in reason


def test_signal_handler_that_raises_loses_no_completion(engine_factory, monkeypatch):
    """After a wait that may have blocked, the engine runs Python's signal
    handlers itself (compiled code has no bytecode loop to do it). A handler
    that raises must not take the completions of that wait with it."""
    import gaio
    from gaio.backends import base

    class Boom(Exception):
        pass

    engine_factory()  # skips when io_uring is unavailable
    calls = []

    def check_once():
        calls.append(1)
        if len(calls) == 1:
            raise Boom()
        return 0

    monkeypatch.setattr(base, "_check_signals", check_once)
    a, b = socket.socketpair()
    with a, b, gaio.Watcher(backend="uring") as w:
        w.read("r", a, bytearray(8))
        b.sendall(b"data")
        with pytest.raises(Boom):
            w.wait_io(5)  # the read completes in this very wait, then the handler raises
        (r,) = w.wait_io(5)
        assert r.context == "r" and r.error is None and bytes(r.buffer[: r.size]) == b"data"


def test_one_wait_returns_every_receive_that_got_data(engine_factory, pairs):
    """Receives that waited for data complete through the kernel's task work,
    of which one io_uring_enter runs only about 20 items under DEFER_TASKRUN
    (Linux 6.13+). The rest must not wait for later rounds: under load that
    left some connections unserved for seconds (gaio_drain asks again while
    the kernel flags pending work)."""
    e = engine_factory()
    ps = pairs(300)
    bufs = arm_recvs(e, ps, 16)
    assert e.wait(0) == []  # all armed: no data yet
    for i, (_, b) in enumerate(ps):
        b.send(b"%03d" % i)
    time.sleep(0.2)  # every wake-up has queued its task work by now
    out = e.wait(1)
    assert sorted(tag for tag, _, _ in triples(out)) == list(range(1, len(ps) + 1))
    assert all(bytes(buf[:3]) == b"%03d" % i for i, buf in enumerate(bufs))


def test_swap_result_parked_by_a_raising_handler_keeps_its_buffer(engine_factory, pairs, monkeypatch):
    """A completion parked because a signal handler raised is delivered by the
    next wait; until then its buffer must not go back to the kernel, or
    another read could land on the bytes the user has yet to see."""
    from gaio.backends import base

    class Boom(Exception):
        pass

    e = engine_factory(bufsize=64, swap_buffers=1)  # one buffer: reuse would hit it
    (a1, b1), (a2, b2) = pairs(2)
    raised = []

    def check_once():
        if not raised:
            raised.append(1)
            raise Boom()
        return 0

    monkeypatch.setattr(base, "_check_signals", check_once)
    e.recv(1, a1.fileno(), None)
    b1.send(b"first")
    time.sleep(0.05)
    with pytest.raises(Boom):
        e.wait(1)
    e.recycle()  # the front end does this at the start of every wait_io
    e.recv(2, a2.fileno(), None)
    b2.send(b"SECOND")
    time.sleep(0.05)
    out = e.wait(1)
    assert [(tag, res, bytes(mem)) for tag, res, mem in triples(out)] == [(1, 5, b"first")]
    e.recycle()
    assert collect(e, 1) == {2: (6, b"SECOND")}


def test_wake_between_two_waits_is_not_lost(engine):
    """The front end decides to sleep, then calls wait(); another thread's
    wake() may land in between. It must end that wait even though an
    earlier wake's write was already seen (bench c5k once stalled 60 s on
    this: the last connections' first reads sat in the pending list)."""
    assert engine.wait(0) == []
    waker = threading.Timer(0.1, engine.wake)  # a wake during the wait...
    waker.start()
    t0 = time.monotonic()
    assert engine.wait(5) == []  # ... ends it
    waker.join()
    assert time.monotonic() - t0 < 2.0
    engine.wake()  # and another lands between two waits
    t0 = time.monotonic()
    assert engine.wait(5) == []
    assert time.monotonic() - t0 < 2.0, "the second wake was skipped"


def wide_accounted(e):
    """Every wide buffer is in exactly one place: in its ring, lent (until
    the next recycle), holding bytes read ahead, or about to be lent with a
    read served from them."""
    ra = e._ra
    assert sum(x is not None for x in ra.ahead) == ra.held
    out = ra.in_use()  # ahead, lent, and to be lent
    assert len(set(out)) == len(out)
    assert e._wfree + len(out) == uring.WIDE_BUFFERS
    return True


def fill(sock, size):
    """Send ``size`` random bytes into ``sock`` (its buffer made big enough); them."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    data = os.urandom(size)
    sock.setblocking(True)
    sock.sendall(data)
    sock.setblocking(False)
    return data


def test_a_filled_swap_read_makes_the_next_one_wide_and_reads_ahead(engine, pairs):
    """A swap read that fills its buffer marks the connection; its next swap
    recv takes a wide buffer (AHEAD_FACTOR times bufsize) and completes with
    bufsize bytes, keeping the rest for the reads after it, which complete
    at the next wait without the kernel. Every byte arrives, in order."""
    (a, b), = pairs()
    entry = engine._entry
    assert engine._ra.wentry == uring.AHEAD_FACTOR * entry
    data = fill(b, 2 * uring.AHEAD_FACTOR * entry)
    got = bytearray()
    served_ahead = 0
    tag = 0
    while len(got) < len(data):
        ahead_before = engine._ra.held
        engine.recv(tag, a.fileno(), None)
        if ahead_before:
            served_ahead += 1
            assert engine._ra.done  # served at once, from the wide buffer
        ((t, res, mem),) = triples(engine.wait(1.0))
        assert t == tag and 0 < res <= entry
        got += mem
        engine.recycle()
        assert wide_accounted(engine) and buffers_accounted(engine)
        tag += 1
    assert got == data
    assert served_ahead >= uring.AHEAD_FACTOR  # at least one wide buffer's worth
    assert engine._ra.held == 0


def test_small_reads_never_go_wide(engine, pairs):
    """Reads that do not fill their buffer (small messages, idle
    connections) stay on the swap buffers: no wide buffer is touched."""
    ps = pairs(20)
    for rnd in range(5):
        for i, (a, b) in enumerate(ps):
            b.send(b"m%d-%d" % (rnd, i))
            engine.recv(i, a.fileno(), None)
        got = collect(engine, len(ps))
        assert got == {i: (len(b"m%d-%d" % (rnd, i)), b"m%d-%d" % (rnd, i)) for i in range(len(ps))}
        engine.recycle()
    assert not any(engine._ra.wide) and engine._wfree == uring.WIDE_BUFFERS


def test_bytes_read_ahead_fill_a_user_buffer_first(engine, pairs):
    """A recv into the caller's memory on a connection with bytes read ahead
    takes them first (a copy), as many as fit, and then the kernel's."""
    (a, b), = pairs()
    entry = engine._entry
    data = fill(b, 3 * uring.AHEAD_FACTOR * entry)
    engine.recv(0, a.fileno(), None)  # fills its buffer: marks the connection
    ((_, res, mem),) = triples(engine.wait(1.0))
    got = bytearray(mem)
    engine.recycle()
    engine.recv(1, a.fileno(), None)  # wide: keeps the rest
    ((_, res, mem),) = triples(engine.wait(1.0))
    got += mem
    assert engine._ra.held == 1
    engine.recycle()
    for size in (10, entry, 3 * entry, 7 * entry):
        buf = bytearray(size)
        engine.recv(2, a.fileno(), memoryview(buf))
        ((_, res, _),) = triples(engine.wait(1.0))
        assert 0 < res <= size
        got += buf[:res]
        engine.recycle()
        assert wide_accounted(engine)
    while len(got) < len(data):
        engine.recv(3, a.fileno(), None)
        ((_, res, mem),) = triples(engine.wait(1.0))
        got += mem
        engine.recycle()
    assert got == data and wide_accounted(engine)


def test_detach_drops_bytes_read_ahead_after_their_views(engine, pairs):
    """detach() (the front end closing the descriptor) drops bytes read
    ahead; the wide buffer goes back at the next recycle, not before: the
    last read's view of it stays valid until then."""
    (a, b), = pairs()
    data = fill(b, 3 * uring.AHEAD_FACTOR * engine._entry)
    for tag in range(2):
        engine.recv(tag, a.fileno(), None)
        ((_, res, mem),) = triples(engine.wait(1.0))
        if tag == 0:
            engine.recycle()
    assert engine._ra.held == 1
    first = bytes(mem)
    engine.detach(a.fileno())
    assert engine._ra.held == 0 and engine._ra.ahead[a.fileno()] is None
    free_before = engine._wfree
    assert bytes(mem) == first  # not yet handed back
    assert first == data[engine._entry:2 * engine._entry]
    engine.recycle()
    assert engine._wfree == free_before + 1 and wide_accounted(engine)


def test_bytes_read_ahead_survive_a_move_to_a_new_ring(engine, pairs):
    """A move to a new ring keeps the wide buffers holding bytes read ahead
    out of the new ring, and the reads after it get those bytes."""
    (a, b), = pairs()
    data = fill(b, 3 * uring.AHEAD_FACTOR * engine._entry)
    got = bytearray()
    for tag in range(2):
        engine.recv(tag, a.fileno(), None)
        ((_, res, mem),) = triples(engine.wait(1.0))
        got += mem
        engine.recycle()
    assert engine._ra.held == 1

    def other():
        while len(got) < len(data):
            engine.recv(9, a.fileno(), None)
            ((_, res, mem),) = triples(engine.wait(1.0))
            got.extend(mem)
            engine.recycle()
            assert wide_accounted(engine)

    in_another_thread(other)
    assert got == data
    assert engine._migrations == 1 or not engine._bound


def test_bytes_data_offset_is_where_cffi_finds_the_data():
    """A send from a bytes passes id() + _BYTES_AT as its address: that must be
    the very address cffi's from_buffer gives, for any size (or -1: the
    general path, where id() is no address)."""
    if REASON is not None:
        pytest.skip(f"io_uring unavailable: {REASON}")
    at = uring._BYTES_AT
    if platform.python_implementation() != "CPython":
        assert at == -1
        return
    assert at == bytes.__basicsize__ - 1
    for size in (1, 7, 4096, 1 << 20):
        data = os.urandom(size)
        assert int(uring.ffi.cast("uintptr_t", uring.ffi.from_buffer(data))) == id(data) + at


def test_send_from_bytes_goes_by_address_and_keeps_the_bytes(engine, pairs):
    """A bytes is sent from its own address (record kind _SEND_AT, nothing in
    the per-call memory list), held in _pins until its CQE, and let go then;
    other buffers in the same batch still go by their cdata."""
    if uring._BYTES_AT < 0:
        pytest.skip("no bytes address on this interpreter: every send takes the cdata path")
    ps = pairs(3)
    payloads = [os.urandom(100), os.urandom(3000), bytearray(os.urandom(500))]
    for i, ((a, _), data) in enumerate(zip(ps, payloads)):
        engine.send(i + 1, a.fileno(), data if type(data) is bytes else memoryview(data))
    kinds = [rec[0] & uring._TAG_KIND for rec in uring._records(engine._q)]
    assert kinds == [7, 7, 2]  # _SEND_AT twice, then _SEND by cdata
    assert len(engine._mem) == 1  # only the bytearray's cdata
    a0 = ps[0][0].fileno()
    assert engine._pins[2][a0] is payloads[0]  # held by the engine until the CQE
    got = collect(engine, 3)
    assert got == {1: (100, None), 2: (3000, None), 3: (500, None)}
    assert engine._pins[2][a0] is None
    for (_, b), data in zip(ps, payloads):
        assert b.recv(8192) == bytes(data)


def test_bytes_sends_left_after_a_partial_take_go_out_whole(engine, pairs):
    """Records the kernel did not take are put back as they were: a bytes
    send's address with them, mixed with sends by cdata."""
    real = engine._enter
    real1 = engine._enter1

    def one_at_a_time(lp, n, nb, mem, wait_ns):
        return real(lp, first_record(engine, n), nb, mem, wait_ns)

    engine._enter = one_at_a_time
    engine._enter1 = real1
    ps = pairs(4)
    payloads = [b"bytes-0", bytearray(b"array-1"), b"bytes-2", memoryview(b"mview-3")]
    for i, ((a, _), data) in enumerate(zip(ps, payloads)):
        engine.send(i + 1, a.fileno(), data if type(data) is bytes else memoryview(data))
    assert collect(engine, 4) == {i + 1: (7, None) for i in range(4)}
    for (_, b), data in zip(ps, payloads):
        assert b.recv(64) == bytes(data)


def test_a_big_bytes_send_completes_partly_from_its_start(engine, pairs):
    """A send bigger than the socket buffer moves what fits, from the start of
    the bytes: the address must be the data's first byte."""
    (a, b), = pairs()
    data = os.urandom(4 << 20)
    engine.send(1, a.fileno(), data)
    got = {}
    received = bytearray()
    end = time.monotonic() + 10
    while not got:
        assert time.monotonic() < end
        try:
            received += b.recv(1 << 20)
        except BlockingIOError:
            pass
        for tag, res, _ in triples(engine.wait(0.05)):
            got[tag] = res
    assert 0 < got[1] <= len(data)
    while len(received) < got[1]:
        received += b.recv(1 << 20)
    assert bytes(received) == data[: got[1]]


def test_queued_records_split_and_name_their_ops(engine, pairs):
    """The queue holds records of one to three words (gaio_enter): a swap
    read one, a cancel three... _records() must split any mix of them back,
    and _user_data() name the op each one is (what migration and close look
    up), or a queued op would be taken for one in flight."""
    (a, b), (c, d), (e, f) = pairs(3)
    engine.wait(0)  # the wake-up's poll goes out first
    assert engine._q == []
    engine.recv(1, a.fileno(), None)  # swap read: 1 word
    engine.send(2, b.fileno(), b"bytes")  # by address: 3 words
    engine.send(3, c.fileno(), memoryview(bytearray(b"cdata")))  # by cdata: 3 words
    engine.recv(4, d.fileno(), memoryview(bytearray(8)))  # into memory: 3 words
    engine.recv(5, e.fileno(), None)
    engine.cancel(e.fileno(), False)  # 3 words
    recs = uring._records(engine._q)
    assert [len(r) for r in recs] == [1, 3, 3, 3, 1, 3]
    uds = [uring._user_data(r) for r in recs]
    assert uds[:5] == [
        1 << 32 | a.fileno(),
        2 << 32 | b.fileno(),
        2 << 32 | c.fileno(),
        0 << 32 | d.fileno(),
        1 << 32 | e.fileno(),
    ]
    assert uds[5] == uring._CANCEL_ONE | (1 << 32 | e.fileno())
    assert sum(len(r) for r in recs) == len(engine._q)
    got = collect(engine, 5)  # each send fills the read across its pair
    assert got[1] == (5, b"bytes") and got[2] == (5, None)
    assert got[3] == (5, None) and got[4] == (5, None)
    assert got[5][0] == ECANCELED


def test_a_completion_copied_out_whole_reaches_its_op(engine, pairs):
    """gaio_reap copies an op's user_data out as kind << 28 | fd, or whole
    (plus _RAW) when its descriptor is 2**28 or more, too high to open here:
    completions rewritten into that second form on their way to _process
    must reach their ops all the same, swap reads with their bytes."""
    real = engine._unpack

    def whole(cdata, n):
        words = real(cdata, n)
        if cdata == engine._cq:
            for i in range(0, n, 2):
                who = words[i]
                if who < uring._COMPACT:
                    words[i] = (who >> uring._KIND_SHIFT) << 32 | (who & uring._FD_MASK) | uring._RAW
        return words

    engine._unpack = whole
    (a, b), (c, d) = pairs(2)
    engine.recv(1, a.fileno(), None)
    buf = bytearray(8)
    engine.recv(2, c.fileno(), memoryview(buf))
    engine.send(3, b.fileno(), b"swapped")
    engine.send(4, d.fileno(), memoryview(b"user"))
    got = collect(engine, 4)
    assert got == {1: (7, b"swapped"), 2: (4, None), 3: (7, None), 4: (4, None)}
    assert bytes(buf[:4]) == b"user"


# -- an idle engine gives its pools' pages back (Engine._trim) ----------------------------

def burst(engine, ps, size=5000):
    """One swap read of ``size`` bytes on each pair, collected and recycled."""
    for i, (a, b) in enumerate(ps):
        b.send(b"%d" % i + b"." * (size - len(b"%d" % i)))
        engine.recv(i, a.fileno(), None)
    got = collect(engine, len(ps))
    assert all(res == size and mem.startswith(b"%d." % i) for i, (res, mem) in got.items())
    engine.recycle()


def test_an_idle_engine_gives_its_swap_pages_back(engine, pairs):
    """After IDLE_TRIM_NS with nothing to do, a wait gives the swap pool's
    pages back (MADV_DONTNEED) and returns; the pool is used as before, and
    a wait that finds nothing left to give back sleeps its whole timeout."""
    ps = pairs(20)
    burst(engine, ps)
    assert resident(engine._pool) >= 20 * 4096 and engine.trims == 0
    t0 = time.monotonic()
    assert engine.wait(5.0) == []  # (the front end waits again: wait may return [])
    took = time.monotonic() - t0
    assert uring.IDLE_TRIM_NS / 1e9 * 0.9 <= took < 2.5
    assert engine.trims == 1 and resident(engine._pool) == 0
    assert buffers_accounted(engine)
    burst(engine, ps)  # zeroed pages, faulted in again: the bytes are right
    assert resident(engine._pool) > 0
    engine.wait(0.3)
    assert engine.trims == 2 and resident(engine._pool) == 0
    assert sleeps_whole(engine, 0.3) == 2  # nothing touched since: no early wake-up, no trim


def test_a_lent_swap_buffer_is_not_given_back(engine, pairs):
    """A swap buffer lent to a result (no recycle yet) keeps its pages, also
    when traffic before it left pages to give back."""
    (a, b), (c, d) = pairs(2)
    burst(engine, [(a, b)])
    b.send(b"kept")
    engine.recv(1, a.fileno(), None)
    ((tag, res, mem),) = triples(engine.wait(1.0))
    assert engine._lent and bytes(mem) == b"kept"
    engine.recv(2, c.fileno(), None)  # nothing comes: an idle wait, with a buffer lent
    assert engine.wait(0.3) == []
    assert engine.trims == 0 and bytes(mem) == b"kept"
    engine.recycle()
    engine.wait(0.3)
    assert engine.trims == 1
    d.send(b"later")
    assert collect(engine, 1) == {2: (5, b"later")}


def test_bytes_read_ahead_survive_an_idle_trim(engine, pairs):
    """Wide buffers holding bytes read ahead keep their pages through an idle
    wait (the swap pool's go back), and the reads after it get every byte."""
    (a, b), = pairs()
    data = fill(b, 3 * uring.AHEAD_FACTOR * engine._entry)
    got = bytearray()
    tag = 0
    while not (engine._ra.held and engine._wdirty):  # (a wide buffer used before)
        engine.recv(tag, a.fileno(), None)
        ((_, res, mem),) = triples(engine.wait(1.0))
        got += mem
        engine.recycle()
        tag += 1
    held = resident(engine._wpool)
    assert held > 0 and engine.wait(0.3) == []
    assert engine.trims == 1 and resident(engine._pool) == 0
    assert resident(engine._wpool) == held  # the wide pool kept
    while len(got) < len(data):
        engine.recv(tag, a.fileno(), None)
        ((_, res, mem),) = triples(engine.wait(1.0))
        got += mem
        engine.recycle()
        tag += 1
    assert got == data and wide_accounted(engine)
    engine.wait(0.3)
    assert engine.trims == 2 and resident(engine._wpool) == 0


def test_no_pages_go_back_while_an_io_uring_worker_may_write(engine, pairs):
    """A receive the kernel could not arm a poll for runs in an io_uring
    worker thread (iou-wrk-*), which copies into a buffer whenever it
    likes: while such a thread exists, nothing is given back. (Stood in for
    by a thread of that name.)"""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    named, done = threading.Event(), threading.Event()

    def worker():
        assert libc.prctl(15, b"iou-wrk-test", 0, 0, 0) == 0  # PR_SET_NAME
        named.set()
        done.wait(10)

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert named.wait(5) and uring._io_workers()
        burst(engine, pairs(4))
        engine.wait(0.3)
        assert engine.trims == 0 and resident(engine._pool) > 0
    finally:
        done.set()
        t.join()
    end = time.monotonic() + 5  # (join returns before the OS thread is gone)
    while uring._io_workers() and time.monotonic() < end:
        time.sleep(0.01)
    assert not uring._io_workers()
    assert sleeps_whole(engine, 0.3) == 0  # (given up until traffic comes again)
    burst(engine, pairs(4))
    engine.wait(0.3)
    assert engine.trims == 1 and resident(engine._pool) == 0


def test_a_shared_ring_gives_no_pages_back(engine_factory, pairs):
    """On a ring not bound to one thread a receive may complete at any return
    from a syscall of ours, so its bytes could land just before the pages go:
    no trim there."""
    e = engine_factory(shared=True)
    assert not e._bound
    burst(e, pairs(4))
    assert sleeps_whole(e, 0.3) == 0 and resident(e._pool) > 0  # not woken for it either


def test_a_buffer_held_for_good_wakes_no_idle_wait(engine, pairs):
    """Bytes read ahead that nobody reads keep their wide buffer; once the
    swap pool's pages have gone, idle waits sleep as long as asked."""
    (a, b), = pairs()
    fill(b, 3 * uring.AHEAD_FACTOR * engine._entry)
    tag = 0
    while not (engine._ra.held and engine._wdirty):  # (a wide buffer used before)
        engine.recv(tag, a.fileno(), None)
        triples(engine.wait(1.0))
        engine.recycle()
        tag += 1
    engine.wait(0.3)
    assert engine.trims == 1 and sleeps_whole(engine, 0.5) == 1
