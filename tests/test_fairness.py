"""Swap-buffer reads are served fairly: busy connections cannot starve a quiet one."""

from __future__ import annotations

import socket

import gaio


def test_swap_reads_not_starved_by_busy_conns(backend):
    w = gaio.Watcher(backend=backend, bufsize=8192)
    hot = [socket.socketpair() for _ in range(2)]
    cold = socket.socketpair()
    try:
        for a, b in hot:
            b.send(b"h" * 4096)
            w.read("hot", a, None)
        cold[1].send(b"c" * 10)
        w.read("cold", cold[0], None)
        for _ in range(50):
            for r in w.wait_io(timeout=1.0):
                assert r.error is None, r.error
                if r.context == "cold":
                    assert bytes(r.buffer[: r.size]) == b"c" * 10
                    return
                for a, b in hot:
                    if a is r.conn:
                        b.send(b"h" * r.size)  # keep the hot ones hot
                w.read("hot", r.conn, None)
        raise AssertionError("the quiet connection's read was starved for 50 cycles")
    finally:
        w.close()
        for a, b in hot + [cold]:
            a.close()
            b.close()
