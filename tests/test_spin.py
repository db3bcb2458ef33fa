"""Spinning before a sleep (``gaio.backends.base.spin_ns``): a wait that may
sleep first polls without blocking, when waits have been short. It changes
when a thread sleeps, never what a wait returns, how long a timeout lasts, or
whether a submission from another thread is seen.

Every engine spins: io_uring with enters that do not wait, epoll and kqueue
with polls that do not wait (kqueue through the emulation on Linux).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

import gaio
from gaio.backends import base

from conftest import ENGINES, collect, fd_count, use_engine



def test_spin_budget_from_the_environment(monkeypatch):
    monkeypatch.delenv("GAIO_SPIN_US", raising=False)
    assert base.spin_ns() == base.DEFAULT_SPIN_US * 1000
    for raw, ns in (("0", 0), ("75", 75_000), (" 1000000 ", 1_000_000_000), ("", base.DEFAULT_SPIN_US * 1000)):
        monkeypatch.setenv("GAIO_SPIN_US", raw)
        assert base.spin_ns() == ns
    for raw in ("-1", "1.5", "fast", "1000001"):
        monkeypatch.setenv("GAIO_SPIN_US", raw)
        with pytest.raises(ValueError, match="GAIO_SPIN_US"):
            base.spin_ns()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_bad_budget_fails_the_watcher(engine, monkeypatch):
    use_engine(engine, monkeypatch)
    monkeypatch.setenv("GAIO_SPIN_US", "soon")
    before = fd_count()
    with pytest.raises(ValueError, match="GAIO_SPIN_US"):
        gaio.Watcher(backend=engine)
    assert fd_count() == before  # nothing left open


def _spinning_watcher(engine: str, monkeypatch, budget_us: int) -> gaio.Watcher:
    use_engine(engine, monkeypatch)
    monkeypatch.setenv("GAIO_SPIN_US", str(budget_us))
    return gaio.Watcher(backend=engine)


def _round_trips(w: gaio.Watcher, conn: socket.socket, peer: socket.socket, n: int) -> None:
    """n reads through w, each at the engine before its data comes: short
    waits that may sleep, so the next such wait spins."""
    for i in range(n):
        msg = b"m%d" % i
        w.read(None, conn, None)
        assert w.wait_io(0) == []  # the read waits at the engine
        peer.sendall(msg)
        (res,) = collect(w, 1)
        assert res.error is None and bytes(res.buffer[: res.size]) == msg


@pytest.mark.parametrize("engine", ENGINES)
def test_a_wake_up_ends_the_spin(engine, monkeypatch, pair):
    """With a 1 s budget, a submission from another thread during the spin
    must be seen at once, not after the budget (or never: the spin would
    swallow the wake-up and the wait then sleep with no timeout)."""
    conn, peer = pair
    w = _spinning_watcher(engine, monkeypatch, 1_000_000)
    try:
        _round_trips(w, conn, peer, 3)
        peer.sendall(b"late")

        def submit() -> None:
            time.sleep(0.05)
            w.read(None, conn, None)

        t = threading.Thread(target=submit)
        t.start()
        start = time.monotonic()
        got = collect(w, 1, timeout=5.0)
        took = time.monotonic() - start
        t.join()
        assert bytes(got[0].buffer[: got[0].size]) == b"late"
        assert took < 0.9, f"the wait ran its whole spin ({took:.3f} s) before it saw the submission"
    finally:
        w.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("budget_us", [50_000, 1_000_000])
def test_a_timeout_lasts_as_asked(engine, budget_us, monkeypatch, pair):
    """A budget shorter than the timeout spins, then sleeps what is left; a
    longer one does not spin at all. Either way the timeout is kept."""
    conn, peer = pair
    w = _spinning_watcher(engine, monkeypatch, budget_us)
    try:
        _round_trips(w, conn, peer, 3)
        w.read(None, conn, None)  # nothing comes
        start = time.monotonic()
        assert w.wait_io(0.2) == []
        took = time.monotonic() - start
        assert 0.19 <= took < 0.9, took
        peer.sendall(b"x")
        (res,) = collect(w, 1)
        assert bytes(res.buffer[: res.size]) == b"x"
    finally:
        w.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_spinning_follows_how_long_waits_take(engine, monkeypatch, pair):
    """White box: a short wait turns spinning on for the next, a wait longer
    than the budget turns it off; a budget of 0 never spins."""
    conn, peer = pair
    w = _spinning_watcher(engine, monkeypatch, 20_000)
    try:
        engine_obj = w._engine  # the engine under this watcher
        _round_trips(w, conn, peer, 3)
        assert engine_obj._spin is True
        w.read(None, conn, None)
        assert w.wait_io(0.1) == []  # 20 ms of spin, then a sleep: longer than the budget
        assert engine_obj._spin is False
        peer.sendall(b"y")
        assert len(collect(w, 1)) == 1
    finally:
        w.close()
    conn, peer = socket.socketpair()  # (the watcher closed took the first conn with it)
    w = _spinning_watcher(engine, monkeypatch, 0)
    try:
        _round_trips(w, conn, peer, 3)
        assert w._engine._spin is False
    finally:
        w.close()
        conn.close()
        peer.close()
