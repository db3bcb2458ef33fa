"""The readiness engines' read-ahead on streams (epoll here; kqueue shares the
code in ``gaio/backends/_readiness.py`` and runs it through the contract tests
in test_semantics.py, on the emulation or the real kernel)."""

from __future__ import annotations

import os
import socket
import time

import pytest
from conftest import resident, sleeps_whole

from gaio.backends import base, epoll

REASON = epoll.probe()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"epoll unavailable: {REASON}")


@pytest.fixture
def engine():
    e = epoll.Engine(65536)
    yield e
    e.close()


@pytest.fixture
def pair(engine):
    a, b = socket.socketpair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    engine.attach(a.fileno())
    yield a, b
    engine.detach(a.fileno())
    a.close()
    b.close()


def wide_accounted(e):
    """Every wide buffer is in exactly one place: free, lent until the next
    recycle, holding bytes read ahead, or lent with a completion not yet
    returned."""
    ra = e._ra
    assert sum(x is not None for x in ra.ahead) == ra.held
    places = list(e._wfree) + ra.in_use()  # in_use: ahead, lent, and to be lent
    assert sorted(places) == list(range(base.WIDE_BUFFERS))
    return True


def one(engine, tag, fd, buf=None):
    """Submit a receive and wait for its completion: (res, bytes)."""
    engine.recv(tag, fd, buf)
    for _ in range(100):
        got = engine.wait(1.0)
        if got:
            assert len(got) == 3 and got[0] == tag
            res, mem = got[1], got[2]
            return res, (bytes(mem) if mem is not None else None)
    raise AssertionError("no completion")


def fill(sock, size):
    data = os.urandom(size)
    sock.sendall(data)
    return data


def test_a_filled_swap_read_makes_the_next_one_wide(engine, pair):
    """A swap receive that fills the region's room marks the descriptor; the
    next reads into a wide buffer and completes with bufsize bytes, and the
    ones after it are served from the rest. The wide buffers take no room in
    the region, and every byte arrives in order."""
    a, b = pair
    entry = engine._ra.entry
    data = fill(b, 2 * base.AHEAD_FACTOR * entry)
    got = bytearray()
    tag = 0
    served = 0
    while len(got) < len(data):
        if engine._ra.held:
            served += 1
        res, mem = one(engine, tag, a.fileno())
        assert 0 < res <= entry
        got += mem
        if tag:
            assert engine._swap_used == 0  # (only the first read took the region)
        engine.recycle()
        assert wide_accounted(engine)
        tag += 1
    assert got == data
    assert served >= base.AHEAD_FACTOR


def test_small_reads_never_go_wide(engine, pair):
    a, b = pair
    for i in range(50):
        b.send(b"m%d" % i)
        assert one(engine, i, a.fileno()) == (len(b"m%d" % i), b"m%d" % i)
        engine.recycle()
    assert not any(engine._ra.wide) and len(engine._wfree) == base.WIDE_BUFFERS


def test_bytes_read_ahead_fill_a_user_buffer_first(engine, pair):
    a, b = pair
    entry = engine._ra.entry
    data = fill(b, 3 * base.AHEAD_FACTOR * entry)
    got = bytearray()
    for tag in range(2):
        res, mem = one(engine, tag, a.fileno())
        got += mem
        engine.recycle()
    assert engine._ra.held == 1
    for size in (10, entry, 3 * entry):
        buf = bytearray(size)
        res, _ = one(engine, 5, a.fileno(), memoryview(buf))
        got += buf[:res]
        engine.recycle()
        assert wide_accounted(engine)
    while len(got) < len(data):
        res, mem = one(engine, 6, a.fileno())
        got += mem
        engine.recycle()
    assert got == data and wide_accounted(engine)


def test_detach_drops_bytes_read_ahead_after_their_views(engine, pair):
    a, b = pair
    fill(b, 3 * base.AHEAD_FACTOR * engine._ra.entry)
    one(engine, 0, a.fileno())
    engine.recycle()
    engine.recv(1, a.fileno(), None)
    got = engine.wait(1.0)
    mem = got[2]
    first = bytes(mem)
    assert engine._ra.held == 1
    engine.detach(a.fileno())
    assert engine._ra.held == 0
    free = len(engine._wfree)
    assert bytes(mem) == first  # lent until the next recycle
    engine.recycle()
    assert len(engine._wfree) == free + 1 and wide_accounted(engine)
    engine.attach(a.fileno())  # (for the fixture's detach)


# -- an idle engine gives its pages back (ReadinessEngine._trim) -------------------------

def test_an_idle_engine_gives_its_region_pages_back(engine, pair):
    """After IDLE_TRIM_NS with nothing to do, a wait gives the swap region's
    pages back and returns; reads after it get their bytes, and a wait with
    nothing left to give back sleeps its whole timeout."""
    a, b = pair
    for rnd in range(2):
        b.sendall(b"%d" % rnd + b"." * 9999)
        res, mem = one(engine, rnd, a.fileno())
        assert res == 10000 and mem == b"%d" % rnd + b"." * 9999
        assert resident(engine._swap_map) >= 8192
        engine.recycle()
        t0 = time.monotonic()
        assert engine.wait(5.0) == []  # (the front end waits again: wait may return [])
        assert base.IDLE_TRIM_NS / 1e9 * 0.9 <= time.monotonic() - t0 < 2.5
        assert engine.trims == rnd + 1 and resident(engine._swap_map) == 0
    assert sleeps_whole(engine, 0.3) == 2


def test_a_region_not_recycled_keeps_its_pages(engine, pair):
    """The bytes of a result not yet recycled stay, through an idle wait,
    also when traffic before it left pages to give back."""
    a, b = pair
    b.sendall(b"first")
    assert one(engine, 0, a.fileno()) == (5, b"first")
    engine.recycle()
    b.sendall(b"kept")
    engine.recv(1, a.fileno(), None)
    ((tag, res, mem),) = [tuple(engine.wait(1.0))]
    assert engine.wait(0.3) == []
    assert engine.trims == 0 and bytes(mem) == b"kept"


def test_bytes_read_ahead_survive_an_idle_trim(engine, pair):
    """A wide buffer holding bytes read ahead keeps its pages through an idle
    wait (the region's go back); the reads after it get every byte, and the
    wide buffers' pages go at the next idle wait."""
    a, b = pair
    data = fill(b, 3 * base.AHEAD_FACTOR * engine._ra.entry)
    got = bytearray()
    tag = 0
    while not (engine._ra.held and engine._wdirty):  # (a wide buffer used before)
        got += one(engine, tag, a.fileno())[1]
        engine.recycle()
        tag += 1
    held = resident(engine._wpool)
    assert held > 0 and engine.wait(0.3) == []
    assert engine.trims == 1 and resident(engine._wpool) == held
    while len(got) < len(data):
        got += one(engine, tag, a.fileno())[1]
        engine.recycle()
        tag += 1
    assert got == data and wide_accounted(engine)
    engine.wait(0.3)
    assert engine.trims == 2 and resident(engine._wpool) == 0 == resident(engine._swap_map)


def test_a_wide_buffer_held_for_good_wakes_no_idle_wait(engine, pair):
    """Bytes read ahead that nobody reads keep their buffer; once the region's
    pages have gone, idle waits sleep as long as asked."""
    a, b = pair
    fill(b, 3 * base.AHEAD_FACTOR * engine._ra.entry)
    tag = 0
    while not (engine._ra.held and engine._wdirty):  # (a wide buffer used before)
        one(engine, tag, a.fileno())
        engine.recycle()
        tag += 1
    engine.wait(0.3)
    assert engine.trims == 1 and sleeps_whole(engine, 0.5) == 1


def test_a_swap_region_too_big_to_map_is_a_memory_error():
    with pytest.raises(MemoryError):
        epoll.Engine(1 << 62)


def test_a_pending_signal_handler_runs_before_a_poll_that_may_block(engine, pair, monkeypatch):
    """A signal that came while the compiled engine ran between two polls
    only set a flag: the next poll that may block runs the handlers first
    (here one that raises, as Ctrl-C's does) instead of sleeping through it.
    Nothing is lost: the read submitted before completes at the next wait."""
    a, b = pair

    class Interrupt(Exception):
        pass

    pending = []

    def check():
        if pending:
            pending.clear()
            raise Interrupt()
        return 0

    monkeypatch.setattr(base, "_check_signals", check)
    engine.recv(1, a.fileno(), None)
    assert engine.wait(0) == []  # a poll that does not block: no check
    pending.append(1)
    assert engine.wait(0) == [] and pending
    t0 = time.monotonic()
    with pytest.raises(Interrupt):
        engine.wait(5.0)
    assert time.monotonic() - t0 < 1.0
    b.sendall(b"after")
    got = engine.wait(1.0)
    assert got[0] == 1 and bytes(got[2]) == b"after"
