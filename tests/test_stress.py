"""Deadlines racing data: 2000 read_timeout ops with 0-2 ms deadlines on user
buffers across 50 conns while the peers send, gc.collect() interleaved. Every op
completes exactly once and every byte sent is received once, in order."""

from __future__ import annotations

import gc
import random
import socket
import threading
import time

import gaio

CONNS = 50
OPS = 2000
PER_CONN_BYTES = 3000


def stream(i: int, n: int) -> bytes:
    return bytes((i * 7 + k * 13) & 0xFF for k in range(n))


def test_read_timeouts_racing_data_lose_nothing(watcher):
    rng = random.Random(1234)
    pairs = [socket.socketpair() for _ in range(CONNS)]
    conns = [a for a, _ in pairs]
    expected = [stream(i, PER_CONN_BYTES) for i in range(CONNS)]
    stop = threading.Event()

    def sender():
        pos = [0] * CONNS
        srng = random.Random(99)
        while not stop.is_set() and any(p < PER_CONN_BYTES for p in pos):
            i = srng.randrange(CONNS)
            if pos[i] < PER_CONN_BYTES:
                n = min(srng.randint(1, 40), PER_CONN_BYTES - pos[i])
                pairs[i][1].sendall(expected[i][pos[i] : pos[i] + n])
                pos[i] += n
            if srng.random() < 0.05:
                time.sleep(0.0005)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    received = [bytearray() for _ in range(CONNS)]
    seen = set()
    outcomes = {"data": 0, "deadline": 0}
    outstanding = 0

    def take(results):
        nonlocal outstanding
        for r in results:
            key = r.context
            assert key not in seen, f"op {key} completed twice"
            seen.add(key)
            outstanding -= 1
            i = key[0]
            if r.error is None:
                assert r.size > 0
                outcomes["data"] += 1
            else:
                assert isinstance(r.error, gaio.DeadlineError), r.error
                outcomes["deadline"] += 1
            received[i] += r.buffer[: r.size]

    try:
        for n in range(OPS):
            i = rng.randrange(CONNS)
            deadline = time.monotonic() + rng.uniform(0, 0.002)
            watcher.read_timeout((i, n), conns[i], bytearray(rng.randint(1, 64)), deadline)
            outstanding += 1
            if n % 100 == 0:
                gc.collect()
            if n % 10 == 0:
                take(watcher.wait_io(0))
        end = time.monotonic() + 30
        while outstanding and time.monotonic() < end:
            take(watcher.wait_io(1))
            gc.collect()
        assert outstanding == 0 and len(seen) == OPS
        assert outcomes["data"] > 0 and outcomes["deadline"] > 0, outcomes  # both sides of the race
        t.join(30)
        # drain what the timed-out reads left behind: nothing may be lost
        for i in range(CONNS):
            while len(received[i]) < PER_CONN_BYTES:
                watcher.read(("drain", i), conns[i], None)
                (r,) = watcher.wait_io(5)
                assert r.error is None, r.error
                received[i] += r.buffer[: r.size]
        assert [bytes(b) for b in received] == expected
    finally:
        stop.set()
        t.join(5)
        for a, b in pairs:
            a.close()
            b.close()
