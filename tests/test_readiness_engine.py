"""The readiness engines' read-ahead on streams (epoll here; kqueue shares the
code in ``gaio/backends/_readiness.py`` and runs it through the contract tests
in test_semantics.py, on the emulation or the real kernel)."""

from __future__ import annotations

import os
import socket
import time

import pytest

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
