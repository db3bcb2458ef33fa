"""Front-end cost of gaio: nanoseconds per submitted-and-completed op, per engine.

    python bench/micro.py                    # 200k ops per mode and engine
    python bench/micro.py --ops 1000000 --batch 256 --size 64
    python bench/micro.py --profile          # cProfile the echo server's hot path under load
    python bench/micro.py --profile --backend epoll --scenario stream --seconds 3

cProfile sees Python functions only: under the compiled build (gaio.implementation
== "mypyc") the front end is one opaque call. Profile with GAIO_PURE_PYTHON=1 to see
its functions, or use ``perf record -p PID`` on bench/echo_server.py for the
compiled code as it runs.

Each mode uses `--batch` socketpairs.  One round submits one op per pair, then
calls wait_io() until all of them completed; the data is always ready before the
round starts (readable bytes queued by the plain peer socket, or room in the
send buffer), so what is timed is the watcher and engine, not waiting.  Refilling
and draining the peer sockets happens between rounds and is not timed.

Modes:
  read-user   w.read(ctx, conn, bytearray)   into the caller's buffer
  read-swap   w.read(ctx, conn, None)        into the watcher's swap buffer
  write       w.write(ctx, conn, bytes)
  echo        the echo server's hot path (echo_batch of bench/echo_server.py):
              each pair's swap read completes, its bytes are copied and
              written back, and the write's completion submits the next read;
              ns per echoed message (two ops), the peers' sends and drains
              untimed
  raw         sock.recv_into() on the same kind of pairs: the syscall floor,
              without gaio, for scale

Under ``valgrind --tool=callgrind``, two runs of ``--modes echo --repeat 1``
with different ``--ops`` give the instructions per message of the whole path,
deterministically: the difference of their totals over the difference of
their messages (``--ops`` / 2 each).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
try:
    import gaio
except ImportError:  # not installed: use the work tree
    sys.path.insert(0, ROOT)
    import gaio

sys.path.insert(0, HERE)
import echo_server  # noqa: E402  (the server whose hot path the echo mode and --profile measure)


def _pairs(n: int):
    pairs = [socket.socketpair() for _ in range(n)]
    for a, b in pairs:
        b.setblocking(False)
    return pairs


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass


def _echo_rounds(w, conns, peers, payload: bytes, rounds: int) -> float:
    """ns per echoed message: echo_server.echo_batch on each batch, timed from
    the peers' sends having landed to every read and write of the round done."""
    echo_batch = echo_server.echo_batch
    read, write, wait_io, free = w.read, w.write, w.wait_io, w.free
    for c in conns:  # a swap read pending on each, as in a server
        read(None, c, None)
    n = len(conns)
    total = 0
    for _ in range(rounds):
        for p in peers:
            p.send(payload)
        t0 = time.perf_counter_ns()
        left = 2 * n
        while left:
            # (a failed op frees its conn: the round would never end)
            results = wait_io(10.0)
            if not results:
                raise RuntimeError(f"echo: {left} completions missing after 10 s (an op failed?)")
            left -= len(results)
            echo_batch(results, read, write, free)
        total += time.perf_counter_ns() - t0
        for p in peers:
            _drain(p)
    return total / (rounds * n)


def run_mode(mode: str, backend: str | None, ops: int, batch: int, size: int) -> float:
    """ns per op for one mode."""
    payload = b"x" * (size * 1)
    rounds = max(1, ops // batch)
    pairs = _pairs(batch)
    gc_was = gc.isenabled()
    gc.disable()  # collections in the timed part would be noise, not front-end cost
    try:
        if mode == "raw":
            conns = [a for a, _ in pairs]
            for a in conns:
                a.setblocking(False)
            bufs = [bytearray(size) for _ in conns]
            peers = [b for _, b in pairs]
            total = 0
            for _ in range(rounds):
                for p in peers:
                    p.send(payload)
                t0 = time.perf_counter_ns()
                for a, buf in zip(conns, bufs):
                    a.recv_into(buf)
                total += time.perf_counter_ns() - t0
            return total / (rounds * batch)

        w = gaio.Watcher(backend=backend) if backend else gaio.Watcher()
        try:
            conns = [a for a, _ in pairs]  # delegated to the watcher
            peers = [b for _, b in pairs]  # plain sockets, feed / drain
            bufs = [bytearray(size) for _ in conns]
            read, write, wait_io = w.read, w.write, w.wait_io
            # one untimed round delegates every conn (dup + engine attach)
            for p in peers:
                p.send(payload)
            for c in conns:
                read(None, c, None)
            got = 0
            while got < batch:
                got += len(wait_io())
            if mode == "echo":
                return _echo_rounds(w, conns, peers, payload, rounds)
            total = 0
            for _ in range(rounds):
                if mode == "write":
                    for p in peers:
                        _drain(p)
                    t0 = time.perf_counter_ns()
                    for c in conns:
                        write(None, c, payload)
                else:
                    for p in peers:
                        p.send(payload)
                    if mode == "read-user":
                        t0 = time.perf_counter_ns()
                        for c, buf in zip(conns, bufs):
                            read(None, c, buf)
                    else:
                        t0 = time.perf_counter_ns()
                        for c in conns:
                            read(None, c, None)
                got = 0
                while got < batch:
                    for r in wait_io():
                        if r.error is not None:
                            raise RuntimeError(f"{mode}: op failed: {r.error!r}")
                        got += 1
                total += time.perf_counter_ns() - t0
            return total / (rounds * batch)
        finally:
            w.close()
    finally:
        if gc_was:
            gc.enable()
        for a, b in pairs:
            a.close()
            b.close()


MODES = ["read-user", "read-swap", "write", "echo", "raw"]


def micro(args) -> int:
    engines = [args.backend] if args.backend else gaio.available_backends()
    chosen = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        raise SystemExit(f"--modes: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODES)}")
    modes = [m for m in MODES if m in chosen and m != "raw"]
    if "echo" in modes and not 0 < args.size <= 65536:
        raise SystemExit(f"--size {args.size}: the echo mode needs 1 to 65536 bytes (one swap read a message)")
    print(f"{args.ops} ops per mode, batch {args.batch}, {args.size} B per op; ns per op, echo: per message "
          f"(two ops); best of {args.repeat}; gaio {gaio.implementation}")
    names = modes + (["raw recv"] if "raw" in chosen else [])
    print(f"{'engine':8} " + " ".join(f"{m:>10}" for m in names))
    out = {}
    raw = None
    if "raw" in chosen:
        raw = min(run_mode("raw", None, args.ops, args.batch, args.size) for _ in range(args.repeat))
    for engine in engines:
        row = {}
        for m in modes:
            ops = args.ops // 2 if m == "echo" else args.ops  # two ops a message
            row[m] = min(run_mode(m, engine, ops, args.batch, args.size) for _ in range(args.repeat))
        out[engine] = row
        print(f"{engine:8} " + " ".join(f"{row[m]:10.0f}" for m in modes)
              + (f" {raw:10.0f}" if raw is not None else ""))
    if args.json:
        print(json.dumps({"ops": args.ops, "batch": args.batch, "size": args.size, "ns_per_op": out, "raw_recv": raw,
                          "echo": "ns per echoed message (two ops)"}))
    return 0


SCENARIOS = {  # a subset of run.py's, for profiling
    "pingpong": ["--conns", "1", "--size", "128", "--depth", "1"],
    "conc100": ["--conns", "100", "--size", "1024", "--depth", "1"],
    "c5k": ["--conns", "5000", "--size", "128", "--depth", "1"],
    "stream": ["--conns", "8", "--size", "65536", "--depth", "4"],
}


def profile(args) -> int:
    """cProfile echo_server.echo_loop in this process while loadgen drives it."""
    loadgen = os.path.join(HERE, "loadgen")
    src = os.path.join(HERE, "loadgen.c")
    if not os.path.exists(loadgen) or os.path.getmtime(loadgen) < os.path.getmtime(src):
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", loadgen, src], check=True, timeout=120)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[1]})
    lsock = echo_server.make_listener(0)
    port = lsock.getsockname()[1]
    w = gaio.Watcher(backend=args.backend) if args.backend else gaio.Watcher()
    threading.Thread(target=echo_server.accept_loop, args=(lsock, w), daemon=True).start()
    result = {}

    def drive() -> None:
        def pin() -> None:
            if len(cpus) >= 2:
                os.sched_setaffinity(0, {cpus[0]})

        try:
            p = subprocess.run(
                [loadgen, "--port", str(port), "--warmup", "0.2", "--duration", str(args.seconds)]
                + SCENARIOS[args.scenario],
                stdout=subprocess.PIPE,
                timeout=args.seconds + 60,
                preexec_fn=pin,
            )
            result.update(json.loads(p.stdout.decode().strip().splitlines()[-1]))
        finally:
            w.close()
            try:
                lsock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    t = threading.Thread(target=drive)
    t.start()
    prof = cProfile.Profile()
    prof.runcall(echo_server.echo_loop, w)
    t.join()
    lsock.close()
    print(f"engine {w.backend}, scenario {args.scenario}: {result.get('msgs_per_s', 0):.0f} msgs/s under cProfile "
          f"(errors {result.get('errors')}, mismatches {result.get('mismatches')})")
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats(args.sort).print_stats(args.top)
    print(s.getvalue())
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--ops", type=int, default=200_000, help="ops per mode and engine (default 200000)")
    ap.add_argument("--batch", type=int, default=64, help="socketpairs, i.e. ops per wait_io round (default 64)")
    ap.add_argument("--size", type=int, default=64, help="bytes per op (default 64)")
    ap.add_argument("--repeat", type=int, default=3, help="take the best of this many runs (default 3)")
    ap.add_argument("--backend", help="only this engine")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    ap.add_argument("--profile", action="store_true", help="cProfile the echo server hot path instead")
    ap.add_argument("--scenario", default="conc100", choices=list(SCENARIOS), help="load for --profile")
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds for --profile")
    ap.add_argument("--sort", default="tottime", help="pstats sort key for --profile (default tottime)")
    ap.add_argument("--top", type=int, default=25, help="entries to print for --profile")
    args = ap.parse_args(argv)
    return profile(args) if args.profile else micro(args)


if __name__ == "__main__":
    sys.exit(main())
