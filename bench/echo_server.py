"""The canonical gaio echo server, used by bench/run.py and bench/micro.py.

    python bench/echo_server.py --port PORT [--backend NAME] [--bufsize N] [--workers N]
                                [--own-buffers N]

Shape (one process):

* one ``gaio.Watcher`` driven by the main thread (``echo_loop``): all socket I/O;
* an acceptor thread: ``accept()`` and hand the new socket to the watcher with
  ``w.read(None, conn, None)`` (submission is thread-safe);
* a signal thread: ``sigwait`` for SIGTERM/SIGINT, then ``w.close()``, which
  makes the main thread's ``wait_io`` raise ``WatcherClosedError``.  Signals are
  blocked in every other thread, so their delivery never depends on the engine
  returning from a blocking syscall with EINTR.

The echo loop keeps exactly one op in flight per connection: a swap-buffer read,
then a write of what it got, then the next read.  That is the natural
back-pressure of an echo server: a client that stops reading stops being read.

A connection that streams (a swap read filled the swap buffer) is lent a
256 KiB buffer (``Streams``) and reads into it and echoes from it, until a read
comes back short: fewer, bigger sends, and no copy.  Measured in the stream
scenario (8 connections, 64 KiB messages, depth 4; 5 alternating pairs on
io_uring): server CPU per message 24.0 -> 13.4 us, 2716 -> 4830 MB/s.

The one copy: a swap-buffer result is only valid until the next ``wait_io``,
and the write that echoes it completes later, so the bytes must be copied.
``memoryview.tobytes()`` is the cheapest copy Python offers (one C call, one
allocation; ~150 ns for 128 B, ~1.4 us for 64 KiB, cheaper than refilling a
pooled bytearray).  Reads over 64 KiB (a ``--bufsize`` above the default) are
copied into pooled bytearrays instead, which keeps glibc from growing and
trimming its heap for every read (see ``COPY_BYTES_MAX``).  The swap buffer
keeps idle connections cheap: a pending read owns no memory until data arrives.

With ``--workers N > 1`` the parent forks N children (fork only: nothing is
exec'd), each with its own SO_REUSEPORT listener and its own watcher; the parent
prints READY once all are listening, forwards SIGTERM and reaps them.

With ``--own-buffers N`` each connection reads into a bytearray of N bytes of
its own and echoes from it: no copy, N bytes per
connection. That is the pattern for a few fat streams.

Prints ``READY <port>`` (flushed) once listening.  Exit status 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import threading
import time

try:
    import gaio
except ImportError:  # not installed: use the work tree this file lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import gaio

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def make_listener(port: int, reuseport: bool = False, host: str = "127.0.0.1") -> socket.socket:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    lsock.bind((host, port))
    lsock.listen(4096)
    return lsock


def accept_loop(lsock: socket.socket, w: "gaio.Watcher", own_buffers: int = 0) -> None:
    """Accept forever, handing each connection to the watcher with a first read
    (into the swap buffer, or into a buffer of its own of ``own_buffers`` bytes,
    which is then also the read's context)."""
    nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError as exc:
            if lsock.fileno() == -1 or exc.errno in (22, 9):  # EINVAL after shutdown, EBADF
                return
            time.sleep(0.01)  # EMFILE and friends: back off, keep serving
            continue
        try:
            conn.setsockopt(*nodelay)
        except OSError:  # reset before we got to it: nothing to serve, keep accepting
            conn.close()
            continue
        try:
            if own_buffers:
                buf = bytearray(own_buffers)
                w.read(buf, conn, buf)
            else:
                w.read(None, conn, None)
        except gaio.WatcherClosedError:
            conn.close()
            return


# Reads of more than this many bytes are copied into a pooled bytearray instead
# of a new bytes object. A fresh 256 KiB block per read makes glibc's malloc
# grow and trim the heap (brk) and fault the pages in again: a fifth of the
# server's CPU in stream with bufsize=256 KiB (perf); the pool took that server
# from 22.9 to 17.1 us per message (median of 5 alternating pairs). Smaller
# reads, the default 64 KiB swap buffer's included, take tobytes(): the
# cheapest copy for them (at 64 KiB the pool measured worse, 1.14x the CPU
# per message at the median of 5 pairs, in a scenario this noisy).
COPY_BYTES_MAX = 65536
POOL_MAX = 64  # spare copy buffers kept; the rest go back to the allocator
STREAM_BUFSIZE = 256 << 10  # what a streaming connection reads into (see Streams)
STREAM_BUFFERS_MAX = 64
_copy_pool: list = []


class Streams:
    """Big read buffers lent to the connections that stream.

    A swap read that fills the swap buffer says the peer sends faster than the
    server reads. Its connection then reads into a buffer of ``size`` bytes
    (256 KiB) from here and echoes from it: one receive and one send per up to
    256 KiB, instead of one of each per 64 KiB (on loopback a 64 KiB send is
    two segments, each paying the stack's fixed cost), and no copy out of the
    swap buffer. Once a read comes back with fewer than ``at`` bytes, the connection
    gives its buffer back and returns to swap reads, so idle and chatty
    connections never hold one. At most ``most`` buffers exist (16 MiB); when
    all are lent, a streaming connection stays on swap reads.
    """

    __slots__ = ("at", "size", "free", "left")

    def __init__(self, at: int, size: int = STREAM_BUFSIZE, most: int = STREAM_BUFFERS_MAX) -> None:
        self.at = at  # a read of at least this many bytes keeps a connection streaming
        self.size = size
        self.free: list = []  # buffers given back, ready to lend
        self.left = most  # buffers that may still be made

    def take(self):
        """A buffer to lend, or None when all ``most`` are lent."""
        if self.free:
            return self.free.pop()
        if self.left:
            self.left -= 1
            return bytearray(self.size)
        return None


def echo_batch(results, read, write, free, streams=None, op_read=gaio.OpRead, conn_closed=gaio.ConnClosedError,
               pool=_copy_pool, copy_bytes_max=COPY_BYTES_MAX) -> None:
    """Echo one batch of completions: the hot path (bench/micro.py's echo
    mode times this very function).

    A read's context is None (swap buffer), ``streams`` (a buffer lent by
    :class:`Streams`, None to never lend) or, with ``--own-buffers``, the
    connection's own buffer. A lent or own buffer is echoed from directly, no
    copy, and the next read waits for that write, so the buffer is never
    refilled while sent. A swap read that fills the swap buffer is copied into
    a lent buffer when one is free (the connection streams from then on).
    Other big swap reads are copied into a bytearray from ``pool``; its
    write's context is ``pool`` itself, and its completion gives the bytearray
    back (``r.buffer`` is a memoryview of it) before the next read.
    (The keyword defaults make the loop read them as locals.)
    """
    stream_at = streams.at if streams is not None else -1
    for r in results:
        if r.error is not None:
            # EOF, reset, ...: drop the connection.  Ops failing *because*
            # of free() report ConnClosedError: nothing more to do then.
            if not isinstance(r.error, conn_closed):
                free(r.conn)
            if r.context is streams and streams is not None:  # the op's buffer is free again
                b = r.buffer
                streams.free.append(b if type(b) is bytearray else b.obj)
        elif r.operation is op_read:
            own = r.context
            n = r.size
            if own is None:
                # copy out of the swap buffer (valid until the next wait_io)
                buf = r.buffer
                if n == stream_at:
                    big = streams.take()  # type: ignore[union-attr]
                    if big is not None:
                        view = memoryview(big)[:n]
                        view[:] = buf
                        write(streams, r.conn, view)
                        continue
                if n <= copy_bytes_max:
                    write(None, r.conn, buf.tobytes() if len(buf) == n else buf[:n].tobytes())
                else:
                    copy = pool.pop() if pool else None
                    if copy is None or len(copy) < n:
                        copy = bytearray(1 << (n - 1).bit_length())
                    view = memoryview(copy)[:n]
                    view[:] = buf if len(buf) == n else buf[:n]
                    write(pool, r.conn, view)
            else:  # a lent or own buffer: r.buffer is it
                write(own, r.conn, r.buffer if n == len(r.buffer) else memoryview(r.buffer)[:n])
        else:
            own = r.context
            if own is None:
                read(None, r.conn, None)
            elif own is pool:
                if len(pool) < POOL_MAX:
                    pool.append(r.buffer.obj)
                read(None, r.conn, None)
            elif own is streams:
                b = r.buffer
                big = b if type(b) is bytearray else b.obj
                if r.size >= stream_at:
                    read(streams, r.conn, big)
                else:  # the stream paused: back to the swap buffer
                    streams.free.append(big)  # type: ignore[union-attr]
                    read(None, r.conn, None)
            else:
                read(own, r.conn, own)


def echo_loop(w: "gaio.Watcher") -> int:
    """Run until the watcher is closed; returns completions handled."""
    wait_io, read, write, free = w.wait_io, w.read, w.write, w.free
    # lend big buffers to streaming connections, unless the swap buffer is as big
    streams = Streams(w.bufsize) if w.bufsize < STREAM_BUFSIZE else None
    handled = 0
    try:
        while True:
            results = wait_io()
            handled += len(results)
            echo_batch(results, read, write, free, streams)
    except gaio.WatcherClosedError:
        pass
    return handled


def serve(lsock: socket.socket, backend: str | None, bufsize: int, on_ready=None, own_buffers: int = 0) -> None:
    """Serve on ``lsock`` until SIGTERM/SIGINT.  Call with STOP_SIGNALS blocked."""
    kwargs = {"bufsize": bufsize} if bufsize else {}
    if backend:
        kwargs["backend"] = backend
    w = gaio.Watcher(**kwargs)

    def on_signal() -> None:
        signal.sigwait(STOP_SIGNALS)
        w.close()
        try:
            lsock.shutdown(socket.SHUT_RDWR)  # wakes accept() with EINVAL
        except OSError:
            pass

    threading.Thread(target=on_signal, name="signals", daemon=True).start()
    acceptor = threading.Thread(target=accept_loop, args=(lsock, w, own_buffers), name="acceptor", daemon=True)
    acceptor.start()
    if on_ready:
        on_ready(w)
    try:
        echo_loop(w)
    finally:
        w.close()
        acceptor.join(timeout=2.0)
        lsock.close()


def _print_ready(port: int):
    def ready(_w=None) -> None:
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()

    return ready


def run_workers(args) -> int:
    """Fork ``args.workers`` servers sharing the port; supervise them."""
    ready_r, ready_w = os.pipe()
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # child: its own listener and watcher; signals stay blocked
            code = 0
            try:
                os.close(ready_r)
                lsock = make_listener(args.port, reuseport=True)
                serve(lsock, args.backend, args.bufsize, on_ready=lambda _w: os.write(ready_w, b"."),
                      own_buffers=args.own_buffers)
            except BaseException as exc:  # never fall back into the parent's code
                print(f"worker {os.getpid()}: {exc!r}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    os.close(ready_w)

    deadline = time.monotonic() + 30.0
    got = 0
    while got < args.workers:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([ready_r], [], [], left)[0]:
            break
        chunk = os.read(ready_r, 64)
        if not chunk:  # every child died
            break
        got += len(chunk)
    os.close(ready_r)
    status = 0
    if got == args.workers:
        _print_ready(args.port)()
        signal.sigwait(STOP_SIGNALS)
    else:
        print(f"only {got} of {args.workers} workers started", file=sys.stderr, flush=True)
        status = 1
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5.0
    pending = set(children)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                pending.discard(pid)
                if os.waitstatus_to_exitcode(st) != 0:
                    status = 1
        time.sleep(0.02)
    for pid in pending:  # bounded shutdown: no worker outlives us
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = 1
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="gaio echo server (benchmark)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend", default=None, help=f"engine, one of {gaio.available_backends()}")
    ap.add_argument("--bufsize", type=int, default=0, help="swap buffer size (default: gaio's)")
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    ap.add_argument("--own-buffers", type=int, default=0, metavar="N",
                    help="read into a buffer of N bytes per connection instead of the swap buffer")
    args = ap.parse_args(argv)

    # Block the stop signals before any thread exists, so every thread inherits
    # the mask and only the dedicated sigwait thread ever sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if args.workers > 1:
        return run_workers(args)
    lsock = make_listener(args.port)
    serve(lsock, args.backend, args.bufsize, on_ready=_print_ready(args.port), own_buffers=args.own_buffers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
