"""Soak: does one long-lived watcher leak descriptors or memory?

    python bench/soak.py [--cycles 100000] [--ops 10000000] [--backend NAME]
                         [--unix] [--no-tracemalloc] [--seconds N]

Two phases on one ``gaio.Watcher``:

1. **Connection churn** (``--cycles``): connect over loopback TCP (``--unix``:
   a socketpair), hand the accepted socket to the watcher, echo one message
   through it (watcher reads, watcher writes back, the client checks), then
   ``free`` it and close the client. Every cycle adopts one descriptor and must
   give it back.
2. **Small echo ops** (``--ops``): 8 socketpairs with *both* ends on the
   watcher, 32 messages of 16..64 bytes in flight per pair; every read
   (swap buffer, or a user buffer every other time) is echoed back and the
   bytes are checked. ``--ops`` counts completed operations.

Measured after a warm-up (2% of each phase, at most 1000 cycles / 50k ops, so
that free lists, dict sizes and caches have settled; tracing starts there and
the first measurement is taken after as much again, so that steady-state
working memory counts at both ends) and at the end: open descriptors
(``/proc/self/fd``), RSS (``VmRSS`` of ``/proc/self/status``) and, unless
``--no-tracemalloc``, traced Python memory (current and peak). ``--seconds``
counts from the start of each phase, warm-up included. Prints one JSON
line, then the same in words. ``--seconds`` stops each phase early once that
much time passed (used by tests/test_soak.py); counts then say what was done.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import socket
import sys
import time
import tracemalloc
from typing import Any, Dict, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gaio  # noqa: E402


def fd_count() -> int:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return len(os.listdir(path))
    return -1


def rss_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def snapshot() -> Dict[str, Any]:
    gc.collect()
    snap: Dict[str, Any] = {"fds": fd_count(), "rss_kib": rss_kib()}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        snap["traced_kib"] = current // 1024
        snap["traced_peak_kib"] = peak // 1024
    return snap


def _collect(w: gaio.Watcher, n: int, timeout: float = 10.0):
    out = []
    end = time.monotonic() + timeout
    while len(out) < n:
        left = end - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"soak: got {len(out)} of {n} results in {timeout}s")
        out.extend(w.wait_io(left))
    return out


# -- phase 1: connect / echo / free -------------------------------------------------------------
def churn(w: gaio.Watcher, cycles: int, unix: bool, seconds: Optional[float], mark, warm_at: Optional[int] = None) -> int:
    lsock = None
    if not unix:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        addr = lsock.getsockname()
    if warm_at is None:
        warm_at = max(1, min(cycles // 50, 1000))
    end = None if seconds is None else time.monotonic() + seconds
    buf = bytearray(64)
    done = 0
    try:
        for i in range(cycles):
            if i == warm_at:
                mark("trace")
            if i == 2 * warm_at:
                w.wait_io(0)  # the last cycle's free releases its descriptor here
                mark("start")
            if end is not None and i > 2 * warm_at and time.monotonic() >= end:
                break
            if unix:
                client, server = socket.socketpair()
            else:
                client = socket.create_connection(addr)
                server, _ = lsock.accept()
            try:
                msg = b"hello %d" % i
                client.sendall(msg)
                w.read("r", server, buf)
                (r,) = _collect(w, 1)
                if r.error is not None or bytes(buf[: r.size]) != msg:
                    raise RuntimeError(f"soak churn: bad read {r!r}")
                w.write("w", server, bytes(buf[: r.size]))
                (r,) = _collect(w, 1)
                if r.error is not None or r.size != len(msg):
                    raise RuntimeError(f"soak churn: bad write {r!r}")
                w.free(server)
                client.settimeout(10)
                got = b""
                while len(got) < len(msg):
                    chunk = client.recv(64)
                    if not chunk:
                        break
                    got += chunk
                if got != msg or client.recv(64) != b"":  # echo, then EOF from free
                    raise RuntimeError("soak churn: echo mismatch or no EOF after free")
            finally:
                client.close()
                server.close()
            done += 1
        w.wait_io(0)
        mark("end")  # same point as "start": listener open, no cycle in progress
    finally:
        if lsock is not None:
            lsock.close()
    return done


# -- phase 2: many small echo ops ---------------------------------------------------------------
def echo_ops(w: gaio.Watcher, ops: int, seconds: Optional[float], mark, warm_at: Optional[int] = None,
             pairs: int = 8, depth: int = 32) -> int:
    rng = random.Random(1)
    socks = [socket.socketpair() for _ in range(pairs)]
    # per pair: what the client side wrote and has not seen back yet
    expected = [bytearray() for _ in range(pairs)]
    messages = [bytes(rng.randrange(256) for _ in range(rng.randrange(16, 65))) for _ in range(97)]
    msg_i = 0
    done = 0
    if warm_at is None:
        warm_at = max(1, min(ops // 50, 50_000))
    traced = warmed = False
    end = None if seconds is None else time.monotonic() + seconds
    # ctx: (pair, role) with role 0 = client write, 1 = server read, 2 = server write, 3 = client read
    for p, (a, b) in enumerate(socks):
        for _ in range(depth):
            m = messages[msg_i % 97]
            msg_i += 1
            expected[p] += m
            w.write((p, 0), a, m)
        w.read((p, 1), b)
        w.read((p, 3), a, bytearray(256))
    user_bufs = [bytearray(256) for _ in range(pairs)]
    try:
        while done < ops:
            if not traced and done >= warm_at:
                traced = True
                mark("trace")
            if not warmed and done >= 2 * warm_at:
                warmed = True
                mark("start")
            if end is not None and warmed and time.monotonic() >= end:
                break
            for r in w.wait_io(1.0):
                done += 1
                p, role = r.context
                a, b = socks[p]
                if r.error is not None:
                    raise RuntimeError(f"soak echo: {r!r}")
                if role == 1:  # server got bytes: echo them (copy: the swap buffer is recycled)
                    w.write((p, 2), b, memoryview(r.buffer)[: r.size].tobytes())
                    if done & 1:
                        w.read((p, 1), b)
                    else:
                        w.read((p, 1), b, user_bufs[p])
                elif role == 3:  # client got its echo back: check, send another
                    got = bytes(r.buffer[: r.size])
                    exp = expected[p]
                    if exp[: r.size] != got:
                        raise RuntimeError(f"soak echo: pair {p} got bytes out of order")
                    del exp[: r.size]
                    w.read((p, 3), a, r.buffer)
                    if len(exp) < depth * 64:
                        m = messages[msg_i % 97]
                        msg_i += 1
                        exp += m
                        w.write((p, 0), a, m)
        mark("end")  # steady state, like "start"
    finally:
        for a, b in socks:
            w.free(a)
            w.free(b)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and w.wait_io(0.05):
            pass  # the frees complete the pending ops with ConnClosedError
        for a, b in socks:
            a.close()
            b.close()
    return done


def run(cycles: int, ops: int, backend: Optional[str], unix: bool = False, trace: bool = True,
        seconds: Optional[float] = None, warmup: Tuple[Optional[int], Optional[int]] = (None, None)) -> Dict[str, Any]:
    report: Dict[str, Any] = {}
    with gaio.Watcher(backend=backend) as w:
        report["backend"] = w.backend
        for phase, fn, count in (("churn", churn, cycles), ("echo", echo_ops, ops)):
            if not count:
                continue
            marks: Dict[str, Any] = {}

            def mark(which: str) -> None:
                if which == "trace":  # end of warm-up: trace from here, measure a bit later
                    if trace:
                        tracemalloc.stop()
                        tracemalloc.start()
                    return
                marks[which] = snapshot()
                marks["t_" + which] = time.monotonic()

            if phase == "churn":
                n = fn(w, count, unix, seconds, mark, warmup[0])
            else:
                n = fn(w, count, seconds, mark, warmup[1])
            report[phase] = {
                "done": n,
                "seconds": round(marks["t_end"] - marks["t_start"], 2),
                "start": marks["start"],
                "end": marks["end"],
            }
        report["after_close"] = None
        report["gc"] = list(w.get_gc())
    report["after_close"] = snapshot()
    if trace:
        tracemalloc.stop()
    return report


def describe(report: Dict[str, Any]) -> str:
    lines = [f"soak on {report['backend']}:"]
    for phase, what in (("churn", "connect/echo/free cycles"), ("echo", "small echo ops")):
        if phase not in report:
            continue
        ph = report[phase]
        s, e = ph["start"], ph["end"]
        line = (
            f"  {ph['done']} {what} in {ph['seconds']} s after warm-up: "
            f"descriptors {s['fds']} -> {e['fds']}, RSS {s['rss_kib']} -> {e['rss_kib']} KiB"
        )
        if "traced_kib" in s:
            line += (
                f", traced {s['traced_kib']} -> {e['traced_kib']} KiB "
                f"(peak {s['traced_peak_kib']} -> {e['traced_peak_kib']} KiB)"
            )
        lines.append(line)
    a = report["after_close"]
    lines.append(f"  after close: descriptors {a['fds']}, RSS {a['rss_kib']} KiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=100_000, help="connect/echo/free cycles (default 100000)")
    ap.add_argument("--ops", type=int, default=10_000_000, help="small echo operations (default 10M)")
    ap.add_argument("--backend", default=None, help="engine: uring, epoll, kqueue (default: best)")
    ap.add_argument("--unix", action="store_true", help="churn socketpairs instead of TCP connections")
    ap.add_argument("--no-tracemalloc", dest="trace", action="store_false", help="do not trace Python memory")
    ap.add_argument("--seconds", type=float, default=None, help="stop each phase after this long")
    args = ap.parse_args(argv)
    report = run(args.cycles, args.ops, args.backend, args.unix, args.trace, args.seconds)
    print(json.dumps(report, sort_keys=True), flush=True)
    print(describe(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
