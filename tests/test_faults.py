"""Faults from outside: resets, half-closes, killed peers, races, closed
descriptors, descriptor exhaustion, signals. Every test runs on every engine.

What each test insists on, beyond "no crash": every op completes exactly once
with the error the contract names, the watcher keeps serving its other
connections afterwards, and no descriptor leaks.
"""

from __future__ import annotations

import errno
import os
import random
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import gaio
from conftest import collect, fd_count, recv_exactly, tcp_pair

STRESS = os.environ.get("GAIO_STRESS") == "1"
RACE_ROUNDS = 2000 if STRESS else 150
CLOSE_ROUNDS = 300 if STRESS else 30


def pattern(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def echo_works(w: gaio.Watcher) -> None:
    """The watcher still serves a fresh connection, both ways."""
    a, b = socket.socketpair()
    try:
        w.write("echo-w", a, b"ping")
        (r,) = collect(w, 1)
        assert r.context == "echo-w" and r.error is None and r.size == 4, r
        assert recv_exactly(b, 4) == b"ping"
        w.read("echo-r", a, bytearray(4))
        b.sendall(b"pong")
        (r,) = collect(w, 1)
        assert r.context == "echo-r" and r.error is None and bytes(r.buffer) == b"pong", r
        w.free(a)
    finally:
        b.close()


def by_ctx(results):
    out = {}
    for r in results:
        assert r.context not in out, f"{r.context} completed twice"
        out[r.context] = r
    return out


def no_more_results(w: gaio.Watcher, wait: float = 0.1) -> None:
    late = w.wait_io(wait)
    assert late == [], f"results after every op completed: {late}"


def linger_reset(sock: socket.socket) -> None:
    """Close with SO_LINGER on, 0 s: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- peer reset ------------------------------------------------------------------------------
def test_peer_reset_fails_pending_ops_once(watcher):
    conn, peer = tcp_pair()
    other_a, other_b = socket.socketpair()
    try:
        before = fd_count()
        big = pattern(32 << 20)  # more than both socket buffers: stays in flight
        watcher.read("read", conn, bytearray(100))
        watcher.read_full("read_full", conn, bytearray(100))
        watcher.write("write", conn, big)
        watcher.read("other", other_a, bytearray(10))  # a bystander
        assert watcher.wait_io(0.05) == []
        linger_reset(peer)
        results = by_ctx(collect(watcher, 3))
        assert set(results) == {"read", "read_full", "write"}
        errors = [type(r.error) for r in results.values()]
        # The kernel reports the reset once (sk_err is cleared by whoever sees it
        # first); the other direction then sees EPIPE, and a later read EOF.
        assert ConnectionResetError in errors, results
        for name in ("read", "read_full"):
            r = results[name]
            assert isinstance(r.error, (ConnectionResetError, EOFError)), r
            assert r.size == 0, r
        w = results["write"]
        assert isinstance(w.error, (ConnectionResetError, BrokenPipeError)), w
        assert w.size < len(big)
        for r in results.values():
            if isinstance(r.error, OSError):
                assert r.error.errno in (errno.ECONNRESET, errno.EPIPE), r
        no_more_results(watcher)
        # The bystander and fresh connections are served as before.
        other_b.sendall(b"alive")
        (r,) = collect(watcher, 1)
        assert r.context == "other" and bytes(r.buffer[: r.size]) == b"alive"
        echo_works(watcher)
        # A later op on the reset conn fails at once, once; free releases it.
        watcher.read("after", conn, bytearray(10))
        (r,) = collect(watcher, 1)
        assert isinstance(r.error, (ConnectionResetError, EOFError)), r
        watcher.free(conn)
        no_more_results(watcher, 0.02)
        assert fd_count() == before - 2  # the peer reset, the watcher let go of conn
    finally:
        for s in (conn, peer, other_a, other_b):
            s.close()


# -- peer half-close -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_peer_half_close_reads_eof_writes_work(watcher, kind):
    conn, peer = socket.socketpair() if kind == "unix" else tcp_pair()
    try:
        watcher.read_full("full", conn, bytearray(10))
        watcher.read("plain", conn, bytearray(10))
        peer.sendall(b"abc")
        peer.shutdown(socket.SHUT_WR)
        res = by_ctx(collect(watcher, 2))
        assert isinstance(res["full"].error, EOFError) and res["full"].size == 3
        assert bytes(res["full"].buffer[:3]) == b"abc"
        assert isinstance(res["plain"].error, EOFError) and res["plain"].size == 0
        # EOF is final: every later read sees it, the swap one included.
        watcher.read("again", conn)
        watcher.read_timeout("timed", conn, bytearray(1), time.monotonic() + 5)
        res = by_ctx(collect(watcher, 2))
        for r in res.values():
            assert isinstance(r.error, EOFError) and r.size == 0, r
        # The other direction is untouched.
        data = pattern(3 << 20, 7)
        watcher.write("w", conn, data)
        got = bytearray()
        peer.setblocking(False)
        done = []
        end = time.monotonic() + 20
        while not done or len(got) < len(data):
            assert time.monotonic() < end
            done += watcher.wait_io(0.001)
            try:
                got += peer.recv(1 << 20)
            except BlockingIOError:
                pass
        assert done[0].error is None and done[0].size == len(data)
        assert got == data
        watcher.free(conn)
        peer.setblocking(True)
        peer.settimeout(5)
        assert peer.recv(10) == b""  # free: the peer sees EOF
    finally:
        conn.close()
        peer.close()


# -- peer killed -----------------------------------------------------------------------------
PEER_CHILD = r"""
import socket, sys, time, random
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(random.Random(11).randbytes(int(sys.argv[2])))
s.recv(1 << 16)  # take a little of what the parent sends, then stall
print("ready", flush=True)
time.sleep(60)
"""


def test_peer_killed_mid_transfer(watcher):
    sent_by_child = 1 << 20
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        child = subprocess.Popen(
            [sys.executable, "-c", PEER_CHILD, str(lsock.getsockname()[1]), str(sent_by_child)],
            stdout=subprocess.PIPE,
        )
        try:
            lsock.settimeout(10)
            conn, _ = lsock.accept()
        except BaseException:
            child.kill()
            child.wait()
            raise
    try:
        before = fd_count()
        buf = bytearray(4 << 20)  # more than the child sends: waits for more, then fails
        watcher.read_full("read_full", conn, buf)
        watcher.write("write", conn, pattern(64 << 20, 3))  # never fully taken
        # drive the watcher until the child took its first bytes and stalls
        early = []
        end = time.monotonic() + 20
        while not select.select([child.stdout], [], [], 0)[0]:
            assert time.monotonic() < end, "child never got ready"
            early += watcher.wait_io(0.01)
        assert child.stdout.readline() == b"ready\n"
        early += watcher.wait_io(0.2)
        assert early == [], early
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        res = by_ctx(collect(watcher, 2))
        r = res["read_full"]
        # What the child sent is real data, delivered before the end of stream
        # (or reset: the child died with our bytes unread).
        assert isinstance(r.error, (EOFError, ConnectionResetError)), r
        assert 0 < r.size <= sent_by_child
        assert bytes(buf[: r.size]) == random.Random(11).randbytes(sent_by_child)[: r.size]
        w = res["write"]
        assert isinstance(w.error, (ConnectionResetError, BrokenPipeError)), w
        no_more_results(watcher)
        echo_works(watcher)
        watcher.free(conn)
        no_more_results(watcher, 0.02)
        assert fd_count() == before - 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        conn.close()


# -- free / close racing with completions ------------------------------------------------------
def test_free_races_completions(watcher):
    """Another thread frees a busy conn at a random moment: every op completes
    exactly once, with its real result or ConnClosedError, and bytes reported
    read are the peer's bytes, in order."""
    before = fd_count()
    rng = random.Random(5)
    for round_ in range(RACE_ROUNDS):
        a, b = socket.socketpair()
        b.setblocking(False)
        payload = pattern(rng.choice([1, 100, 5000, 300_000]), round_)
        reads = [bytearray(rng.choice([1, 64, 4096])) for _ in range(3)]
        for i, buf in enumerate(reads):
            watcher.read(("r", i), a, buf)
        watcher.read_full(("r", 3), a, bytearray(50))
        watcher.write(("w", 0), a, payload)
        watcher.write(("w", 1), a, b"tail")
        ops = 6
        incoming = pattern(rng.choice([10, 1000, 100_000]), -round_ - 1)
        delay = rng.random() * 0.002
        freer = threading.Thread(target=lambda: (time.sleep(delay), watcher.free(a)))
        freer.start()
        try:
            b.send(incoming[: 1 << 16])
        except (BrokenPipeError, ConnectionResetError):
            incoming = b""  # freed already: nothing was sent
        got = by_ctx(collect(watcher, ops))
        freer.join()
        no_more_results(watcher, 0)
        # reads: in order, each a continuation of the stream; once one failed,
        # every later one fails too
        offset, failed = 0, False
        for i in range(4):
            r = got[("r", i)]
            if r.error is None:
                assert not failed, f"round {round_}: read {i} succeeded after a failed one"
                assert r.size >= 1
            else:
                assert isinstance(r.error, gaio.ConnClosedError), r
                failed = True
            assert bytes(r.buffer[: r.size]) == incoming[offset : offset + r.size], f"round {round_}: read {i}"
            offset += r.size
        # writes: what they report is what the peer gets, then EOF
        wrote = bytearray()
        for i, data in ((0, payload), (1, b"tail")):
            r = got[("w", i)]
            assert r.error is None or isinstance(r.error, gaio.ConnClosedError), r
            assert r.size == len(data) if r.error is None else r.size <= len(data)
            wrote += data[: r.size]
            if r.error is not None:
                break
        if got[("w", 0)].error is not None:
            assert got[("w", 1)].size == 0 and isinstance(got[("w", 1)].error, gaio.ConnClosedError)
        seen = bytearray()
        b.setblocking(True)
        b.settimeout(5)
        while True:
            try:
                chunk = b.recv(1 << 20)
            except ConnectionResetError:  # closed with our bytes unread: AF_UNIX says so
                break
            if not chunk:
                break
            seen += chunk
        assert seen == wrote, f"round {round_}: peer got {len(seen)} bytes, writes reported {len(wrote)}"
        b.close()
    assert fd_count() == before


def wait_until_closed(w: gaio.Watcher) -> None:
    """Run wait_io until it raises WatcherClosedError (another thread closes
    ``w``), checking that no op completes twice."""
    seen = set()
    try:
        while True:
            for r in w.wait_io(0.01):
                assert r.context not in seen, f"{r.context} completed twice"
                seen.add(r.context)
    except gaio.WatcherClosedError:
        pass


def test_close_races_completions(backend):
    """close() from another thread while wait_io runs with completions flowing:
    wait_io raises WatcherClosedError (maybe after returning some results), no
    op completes twice, close() returns, nothing leaks."""
    round_seed = 0
    before = fd_count()
    rng = random.Random(round_seed)
    for round_ in range(CLOSE_ROUNDS):
        w = gaio.Watcher(backend=backend)
        pairs = [socket.socketpair() for _ in range(4)]
        for i, (a, b) in enumerate(pairs):
            w.read(("r", i), a, bytearray(64))
            w.write(("w", i), a, pattern(rng.choice([10, 500_000]), i))
            b.setblocking(False)
            b.send(b"x" * 64)
        delay = rng.random() * 0.003
        errors = []

        def closer():
            time.sleep(delay)
            try:
                w.close()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=closer)
        t.start()
        wait_until_closed(w)
        t.join(10)
        assert not t.is_alive() and not errors, errors
        w.close()  # twice is fine
        with pytest.raises(gaio.WatcherClosedError):
            w.read("late", pairs[0][0], bytearray(1))
        for a, b in pairs:
            b.setblocking(True)
            b.settimeout(5)
            # close() freed every conn: the peer sees EOF (or a reset: unread bytes)
            try:
                while b.recv(1 << 20):
                    pass
            except ConnectionResetError:
                pass
            a.close()
            b.close()
    assert fd_count() == before


def test_close_races_submissions(backend):
    """Submissions from a thread racing close(): each call either raises
    WatcherClosedError or is accepted; close() leaves nothing behind."""
    before = fd_count()
    for _ in range(CLOSE_ROUNDS):
        w = gaio.Watcher(backend=backend)
        a, b = socket.socketpair()
        stop = threading.Event()
        outcome = {"accepted": 0, "refused": 0, "other": []}

        def submitter():
            while not stop.is_set():
                try:
                    w.read(None, a, bytearray(8))
                    outcome["accepted"] += 1
                except gaio.WatcherClosedError:
                    outcome["refused"] += 1
                    return
                except BaseException as exc:
                    outcome["other"].append(exc)
                    return

        t = threading.Thread(target=submitter)
        t.start()
        time.sleep(0.001)
        w.close()
        t.join(10)
        stop.set()
        assert not outcome["other"], outcome["other"]
        assert outcome["refused"] == 1
        a.close()
        b.close()
    assert fd_count() == before


def test_close_racing_submissions_on_known_conns_pins_nothing(backend):
    """Submissions on known conns take no lock: from threads racing a close()
    made by a third thread while the main one runs wait_io, each call is
    refused or accepted, no op completes twice, and once close() returns no
    submitted bytearray stays pinned (each can be resized again)."""
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: more interleavings
    try:
        for round_ in range(CLOSE_ROUNDS):
            w = gaio.Watcher(backend=backend)
            pairs = [socket.socketpair() for _ in range(3)]
            for i, (a, b) in enumerate(pairs):
                w.read(("first", i), a, bytearray(1))  # known from now on
            buffers: list = []
            bad: list = []

            def submitter(i, a):
                n = 0
                while True:
                    buf = bytearray(8)
                    buffers.append(buf)
                    try:
                        if n % 2:
                            w.write(("w", i, n), a, b"y")
                        w.read(("r", i, n), a, buf)
                    except gaio.WatcherClosedError:
                        return
                    except BaseException as exc:  # pragma: no cover - reported below
                        bad.append(exc)
                        return
                    n += 1
                    if n > 20_000:  # (close() comes long before)
                        return

            def closer():
                time.sleep(0.001 + (round_ % 7) * 0.0005)
                w.close()

            threads = [threading.Thread(target=submitter, args=(i, a)) for i, (a, _) in enumerate(pairs)]
            threads.append(threading.Thread(target=closer))
            for t in threads:
                t.start()
            wait_until_closed(w)
            for t in threads:
                t.join(10)
            assert not any(t.is_alive() for t in threads) and not bad, bad
            for buf in buffers:
                buf.append(0)  # BufferError if an op still held a view of it
            for a, b in pairs:
                a.close()
                b.close()
    finally:
        sys.setswitchinterval(old_interval)


def test_withdraw_takes_back_only_an_op_no_loop_took(backend):
    """White box: _withdraw (close() seen right after a lock-free submission)
    takes the op out of the pending list, lets go of its buffer and refuses
    the call; an op a loop already took is left alone, the call accepted."""
    w = gaio.Watcher(backend=backend)
    a, b = socket.socketpair()
    try:
        w.read("first", a, bytearray(1))  # adopts the conn
        buf = bytearray(4)
        w.read("second", a, buf)  # pending: no wait_io has run
        op = w._pending[-1]
        assert op.context == "second"
        with pytest.raises(gaio.WatcherClosedError):
            w._withdraw(op)
        assert op not in w._pending and op.buffer is buf
        buf.append(0)  # not pinned any more
        w._withdraw(op)  # gone from the list: taken, as by a loop: no error
    finally:
        w.close()
        a.close()
        b.close()


# -- descriptors closed behind the watcher's back ---------------------------------------------
class FilenoOnly:
    """A conn that is nothing but a descriptor number (no close())."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_socket_closed_before_submit(watcher):
    a, b = socket.socketpair()
    a.close()
    b.close()
    assert a.fileno() == -1
    before = fd_count()
    watcher.read("r", a, bytearray(4))
    watcher.write("w", a, b"data")
    watcher.read("swap", a)
    res = by_ctx(collect(watcher, 3))
    for r in res.values():
        assert r.error is not None and r.size == 0, r
        assert isinstance(r.error, (gaio.ConnClosedError, OSError)), r
    no_more_results(watcher)
    watcher.free(a)  # accepted, nothing to do
    echo_works(watcher)
    no_more_results(watcher, 0)  # the freed echo conn is closed in wait_io
    assert fd_count() == before


def test_fileno_closed_after_delegation_keeps_working(watcher):
    """The watcher holds its own descriptor: the caller closing (and the process
    reusing) the number it handed over changes nothing for the connection."""
    a, b = socket.socketpair()
    try:
        conn = FilenoOnly(a.fileno())
        watcher.read("r1", conn, bytearray(5))
        b.sendall(b"first")
        (r,) = collect(watcher, 1)
        assert r.error is None and bytes(r.buffer) == b"first"
        number = a.fileno()
        a.close()  # behind the watcher's back
        c, d = socket.socketpair()  # likely takes the number back
        try:
            watcher.write("w", conn, b"still here")
            watcher.read("r2", conn, bytearray(6))
            b.sendall(b"second")
            res = by_ctx(collect(watcher, 2))
            assert res["w"].error is None and recv_exactly(b, 10) == b"still here"
            assert res["r2"].error is None and bytes(res["r2"].buffer) == b"second"
            if c.fileno() == number or d.fileno() == number:
                d.setblocking(False)
                c.setblocking(False)
                for s in (c, d):
                    with pytest.raises(BlockingIOError):
                        s.recv(1)  # nothing of ours went to the new socket
            watcher.free(conn)
            b.settimeout(5)
            assert b.recv(10) == b""  # the watcher's descriptor was the last one
        finally:
            c.close()
            d.close()
    finally:
        a.close()
        b.close()


def test_fileno_closed_before_submit(watcher):
    """A conn whose fileno() names a descriptor that is already closed: the op
    completes with an error (EBADF), it is not raised, and nothing else breaks."""
    s = socket.socket()
    number = s.fileno()
    s.close()
    conn = FilenoOnly(number)
    # Make sure nobody holds the number (another thread could have reused it).
    try:
        os.fstat(number)
        pytest.skip("descriptor number was reused")
    except OSError:
        pass
    watcher.read("r", conn, bytearray(4))
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, OSError) and r.error.errno == errno.EBADF, r
    no_more_results(watcher)
    echo_works(watcher)


def test_fileno_not_a_socket(watcher):
    rfd, wfd = os.pipe()
    try:
        watcher.read("r", FilenoOnly(rfd), bytearray(4))
        (r,) = collect(watcher, 1)
        assert isinstance(r.error, gaio.UnsupportedError), r
        echo_works(watcher)
    finally:
        os.close(rfd)
        os.close(wfd)


# -- descriptor exhaustion -------------------------------------------------------------------
class _Exhausted:
    """Lower RLIMIT_NOFILE to what is open plus ``spare``, and fill the gap."""

    def __init__(self, spare: int = 0) -> None:
        self.spare = spare
        self.filler = []
        self.old = resource.getrlimit(resource.RLIMIT_NOFILE)

    def __enter__(self):
        highest = max(int(x) for x in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, self.old[1]))
        try:
            while True:
                self.filler.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
        for _ in range(self.spare):
            os.close(self.filler.pop())
        return self

    def release(self) -> None:
        while self.filler:
            os.close(self.filler.pop())

    def __exit__(self, *exc):
        self.release()
        resource.setrlimit(resource.RLIMIT_NOFILE, self.old)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_emfile_watcher_creation(backend):
    before = fd_count()
    with _Exhausted() as ex:
        for _ in range(3):
            with pytest.raises(OSError) as info:
                gaio.Watcher(backend=backend)
            # a clear error: EMFILE (or an EngineUnavailable naming it)
            assert info.value.errno == errno.EMFILE or "EMFILE" in str(info.value) or "Too many open files" in str(info.value), info.value
        ex.release()
        with gaio.Watcher(backend=backend) as w:  # recovers once descriptors are free
            echo_works(w)
    assert fd_count() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_emfile_on_delegation(watcher):
    """A fileno() object is adopted with dup(): with no descriptor left the op
    fails with EMFILE (delivered), the watcher goes on, and once descriptors
    are free the same conn works."""
    a, b = socket.socketpair()
    conn = FilenoOnly(a.fileno())
    try:
        echo_works(watcher)  # engine set up, swap buffer in use
        before = fd_count()
        with _Exhausted() as ex:
            watcher.read("r", conn, bytearray(4))
            watcher.write("w", conn, b"x")
            res = by_ctx(collect(watcher, 2))
            for r in res.values():
                assert isinstance(r.error, OSError) and r.error.errno == errno.EMFILE, r
            no_more_results(watcher, 0.02)
            # conns that need no new descriptor still work under the limit
            c, d = ex.filler.pop(), ex.filler.pop()  # room for one socketpair
            os.close(c)
            os.close(d)
            echo_works(watcher)
            ex.release()
            watcher.read("r2", conn, bytearray(4))
            b.sendall(b"back")
            (r,) = collect(watcher, 1)
            assert r.error is None and bytes(r.buffer) == b"back"
            watcher.free(conn)
        a.close()
        assert fd_count() == before - 1
    finally:
        a.close()
        b.close()


# -- signals ---------------------------------------------------------------------------------
@pytest.fixture
def noop_signals():
    calls = {"n": 0}

    def handler(signum, frame):
        calls["n"] += 1

    old_alrm = signal.signal(signal.SIGALRM, handler)
    old_usr1 = signal.signal(signal.SIGUSR1, handler)
    try:
        yield calls
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alrm)
        signal.signal(signal.SIGUSR1, old_usr1)


def test_signal_during_wait_io(watcher, noop_signals):
    a, b = socket.socketpair()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
        # idle: no spurious error, no early return
        t0 = time.monotonic()
        assert watcher.wait_io(0.3) == []
        assert time.monotonic() - t0 >= 0.299
        assert noop_signals["n"] >= 5, "the timer did not interrupt wait_io"
        # blocked with no timeout: still returns the real result
        watcher.read("r", a, bytearray(5))
        sender = threading.Timer(0.2, b.sendall, (b"hello",))
        sender.start()
        n0 = noop_signals["n"]
        (r,) = watcher.wait_io(None)
        sender.join()
        assert r.context == "r" and r.error is None and bytes(r.buffer) == b"hello"
        assert noop_signals["n"] > n0
        # a deadline still fires on time while signals rain
        watcher.read_timeout("t", a, bytearray(5), time.monotonic() + 0.1)
        (r,) = collect(watcher, 1)
        assert isinstance(r.error, gaio.DeadlineError), r
        signal.setitimer(signal.ITIMER_REAL, 0)
        # pthread_kill from another thread, at the thread blocked in wait_io
        main = threading.get_ident()
        watcher.read("r2", a, bytearray(5))

        def poke():
            for _ in range(5):
                time.sleep(0.02)
                signal.pthread_kill(main, signal.SIGUSR1)
            b.sendall(b"world")

        t = threading.Thread(target=poke)
        n0 = noop_signals["n"]
        t.start()
        (r,) = watcher.wait_io(None)
        t.join()
        assert r.context == "r2" and bytes(r.buffer) == b"world"
        assert noop_signals["n"] >= n0 + 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        a.close()
        b.close()
