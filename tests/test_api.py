"""SPEC.md "Shape", "OpResult" and "Errors": one test per line, on every engine."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import gaio
from conftest import ENGINES, collect, tcp_pair, use_engine


# -- shape -----------------------------------------------------------------------------
def test_default_bufsize_and_backend(backend):
    with gaio.Watcher(backend=backend) as w:
        assert w.bufsize == 64 * 1024
        assert w.backend == backend
    with gaio.Watcher(bufsize=1 << 20, backend=backend) as w:
        assert w.bufsize == 1 << 20


def test_available_backends_best_first():
    names = gaio.available_backends()
    assert names, "at least one engine runs here"
    assert set(names) <= {"uring", "epoll", "kqueue"}
    order = ["uring", "epoll", "kqueue"]
    assert names == sorted(names, key=order.index)
    if sys.platform.startswith("linux"):
        assert "epoll" in names


def test_auto_selection_picks_best(monkeypatch):
    monkeypatch.delenv("GAIO_BACKEND", raising=False)
    with gaio.Watcher() as w:
        assert w.backend == gaio.available_backends()[0]


def test_env_selects_engine(backend, monkeypatch):
    monkeypatch.setenv("GAIO_BACKEND", backend)
    with gaio.Watcher() as w:
        assert w.backend == backend


@pytest.mark.parametrize("how", ["env", "arg"])
def test_unknown_engine_lists_choices(how, monkeypatch):
    monkeypatch.setenv("GAIO_BACKEND", "nosuch") if how == "env" else None
    with pytest.raises(ValueError) as info:
        gaio.Watcher(backend=None if how == "env" else "nosuch")
    for name in gaio.available_backends():
        assert name in str(info.value)
    assert "nosuch" in str(info.value)


def test_engine_that_cannot_run_is_an_error_not_a_fallback(monkeypatch):
    from gaio import backends

    monkeypatch.setattr(backends, "_probe_cache", {"uring": "refused for the test"})
    with pytest.raises(gaio.EngineUnavailable) as info:
        gaio.Watcher(backend="uring")
    assert isinstance(info.value, (gaio.GaioError, ValueError, OSError))
    assert "refused for the test" in str(info.value)
    for name in gaio.available_backends():
        assert name in str(info.value)


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_bufsize_value(bad):
    with pytest.raises(ValueError, match="bufsize"):
        gaio.Watcher(bufsize=bad)


@pytest.mark.parametrize("bad", ["64", 1.5, None, True])
def test_bad_bufsize_type(bad):
    with pytest.raises(TypeError, match="bufsize"):
        gaio.Watcher(bufsize=bad)


def test_optype_and_constants():
    assert gaio.OpRead is gaio.OpType.READ
    assert gaio.OpWrite is gaio.OpType.WRITE
    assert gaio.OpRead != gaio.OpWrite
    assert gaio.EV_READ == 0x1 and gaio.EV_WRITE == 0x2


def test_context_manager_closes(backend):
    with gaio.Watcher(backend=backend) as w:
        pass
    assert w.closed
    with pytest.raises(gaio.WatcherClosedError):
        w.wait_io(0)


# -- OpResult --------------------------------------------------------------------------
def test_result_fields_user_buffer(watcher, pair):
    a, b = pair
    ctx = object()
    buf = bytearray(16)
    watcher.read(ctx, a, buf)
    b.sendall(b"abc")
    (r,) = collect(watcher, 1)
    assert r.operation is gaio.OpRead
    assert r.context is ctx
    assert r.conn is a
    assert r.buffer is buf
    assert r.is_swap_buffer is False
    assert r.size == 3 and bytes(r.buffer[: r.size]) == b"abc"
    assert r.error is None

    data = b"xyz" * 10
    watcher.write(ctx, a, data)
    (r,) = collect(watcher, 1)
    assert r.operation is gaio.OpWrite and r.buffer is data and r.size == len(data)
    assert r.error is None and r.context is ctx and r.conn is a
    assert b.recv(100) == data


def test_result_fields_swap_buffer(watcher, pair):
    a, b = pair
    watcher.read("ctx", a)
    b.sendall(b"hello swap")
    (r,) = collect(watcher, 1)
    assert isinstance(r.buffer, memoryview)
    assert r.is_swap_buffer is True
    assert bytes(r.buffer[: r.size]) == b"hello swap"
    assert r.context == "ctx" and r.error is None


def test_swap_buffer_valid_until_next_wait_io(watcher):
    pairs = [socket.socketpair() for _ in range(8)]
    try:
        for i, (a, b) in enumerate(pairs):
            watcher.read(i, a, None)
            b.sendall(bytes([65 + i]) * (100 + i))
        got = {}
        while len(got) < len(pairs):
            for r in watcher.wait_io(5):
                got[r.context] = r
            # every result of this batch, and of earlier batches copied out, holds its own bytes
            for i, r in got.items():
                if isinstance(r, gaio.OpResult):
                    assert bytes(r.buffer[: r.size]) == bytes([65 + i]) * (100 + i)
                    got[i] = bytes(r.buffer[: r.size])
        assert all(got[i] == bytes([65 + i]) * (100 + i) for i in got)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# -- errors ------------------------------------------------------------------------------
def test_error_hierarchy_and_go_names():
    table = {
        "UnsupportedError": ("ErrUnsupported", ()),
        "NoRawConnError": ("ErrNoRawConn", (TypeError,)),
        "WatcherClosedError": ("ErrWatcherClosed", ()),
        "PollerClosedError": ("ErrPollerClosed", ()),
        "ConnClosedError": ("ErrConnClosed", ()),
        "DeadlineError": ("ErrDeadline", (TimeoutError,)),
        "EmptyBufferError": ("ErrEmptyBuffer", (ValueError,)),
        "CPUIDError": ("ErrCPUID", (ValueError,)),
    }
    for name, (go_name, extra) in table.items():
        cls = getattr(gaio, name)
        assert getattr(gaio, go_name) is cls
        assert issubclass(cls, gaio.GaioError)
        for base in extra:
            assert issubclass(cls, base)
    assert issubclass(gaio.GaioError, Exception)


class NoFileno:
    pass


def _calls(w, conn):
    dl = time.monotonic() + 1
    return [
        lambda: w.read(None, conn, None),
        lambda: w.read(None, conn, bytearray(4)),
        lambda: w.read_timeout(None, conn, bytearray(4), dl),
        lambda: w.read_full(None, conn, bytearray(4), dl),
        lambda: w.write(None, conn, b"x"),
        lambda: w.write_timeout(None, conn, b"x", dl),
        lambda: w.free(conn),
    ]


def test_conn_none_raises_unsupported(watcher):
    for call in _calls(watcher, None):
        with pytest.raises(gaio.UnsupportedError, match="conn"):
            call()


def test_conn_without_fileno_raises_norawconn(watcher):
    for call in _calls(watcher, NoFileno()):
        with pytest.raises(gaio.NoRawConnError, match="conn"):
            call()
        with pytest.raises(TypeError):
            call()


def test_non_socket_descriptor_delivered_unsupported(watcher):
    r_fd, w_fd = os.pipe()
    try:
        with open(r_fd, "rb", buffering=0, closefd=False) as f:
            watcher.read("p", f, bytearray(4))
            watcher.write("p", f, b"x")
            results = collect(watcher, 2)
        for r in results:
            assert isinstance(r.error, gaio.UnsupportedError)
            assert r.conn is f
        os.fstat(r_fd)  # the watcher did not take a descriptor that is not a socket
    finally:
        os.close(r_fd)
        os.close(w_fd)


def test_watcher_keeps_working_after_bad_input(watcher, pair):
    a, b = pair
    for call in _calls(watcher, None) + _calls(watcher, NoFileno()):
        with pytest.raises(gaio.GaioError):
            call()
    with pytest.raises(TypeError):
        watcher.read(None, a, b"readonly")
    with pytest.raises(gaio.EmptyBufferError):
        watcher.write(None, a, b"")
    watcher.write("w", a, b"ping")
    (r,) = collect(watcher, 1)
    assert r.error is None and b.recv(10) == b"ping"


@pytest.mark.parametrize("method", ["write", "write_timeout"])
@pytest.mark.parametrize("buf", [None, b"", bytearray(), memoryview(b"")])
def test_empty_write_buffer(watcher, pair, method, buf):
    a, _ = pair
    args = (None, a, buf) if method == "write" else (None, a, buf, time.monotonic() + 1)
    with pytest.raises(gaio.EmptyBufferError, match="buf"):
        getattr(watcher, method)(*args)
    assert a.fileno() != -1  # refused before the conn was taken


@pytest.mark.parametrize("buf", [None, bytearray()])
def test_empty_read_full_buffer(watcher, pair, buf):
    a, _ = pair
    with pytest.raises(gaio.EmptyBufferError, match="buf"):
        watcher.read_full(None, a, buf)
    with pytest.raises(ValueError):
        watcher.read_full(None, a, buf, time.monotonic() + 1)


@pytest.mark.parametrize("buf", [b"bytes", memoryview(b"ro"), "text", 12])
def test_read_buffer_must_be_writable(watcher, pair, buf):
    a, _ = pair
    for call in (
        lambda: watcher.read(None, a, buf),
        lambda: watcher.read_timeout(None, a, buf, time.monotonic() + 1),
        lambda: watcher.read_full(None, a, buf),
    ):
        with pytest.raises(TypeError, match="buf"):
            call()


def test_bad_deadline_type(watcher, pair):
    a, _ = pair
    with pytest.raises(TypeError, match="deadline"):
        watcher.read_timeout(None, a, bytearray(1), "soon")
    with pytest.raises(ValueError, match="deadline"):
        watcher.write_timeout(None, a, b"x", float("nan"))


@pytest.mark.parametrize("engine", ENGINES)
def test_huge_bufsize_error_names_it(engine, monkeypatch):
    use_engine(engine, monkeypatch)
    for huge in (1 << 62, 10**30):
        try:
            w = gaio.Watcher(bufsize=huge, backend=engine)
        except (ValueError, MemoryError) as exc:
            assert "bufsize" in str(exc)
        else:  # an engine that maps its swap memory lazily may take it
            w.close()


def test_bad_timeout_type(watcher):
    with pytest.raises(TypeError, match="timeout"):
        watcher.wait_io("1")


class Index:
    """An integer that is not an int (as numpy's are): it has __index__."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


def test_other_real_numbers_are_seconds(watcher, pair):
    # Real numbers that are not int or float (numpy's scalars, Fraction) are
    # taken for timeouts and deadlines, integers with __index__ for cpuids;
    # Decimal is no numbers.Real, and bools stay refused.
    import decimal
    import fractions

    a, b = pair
    assert watcher.wait_io(fractions.Fraction(1, 100)) == []
    watcher.write_timeout("w", a, b"x", fractions.Fraction(int(time.monotonic()) + 60))
    (r,) = collect(watcher, 1)
    assert r.context == "w" and r.error is None
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        watcher.set_loop_affinity(Index(0))  # (pins this thread: it ran wait_io)
        watcher.set_poller_affinity(Index(0))
        with pytest.raises(gaio.CPUIDError):
            watcher.set_loop_affinity(Index(-1))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    with pytest.raises(TypeError, match="timeout"):
        watcher.wait_io(decimal.Decimal("0.1"))
    with pytest.raises(TypeError, match="timeout"):
        watcher.wait_io(True)
    with pytest.raises(TypeError, match="cpuid"):
        watcher.set_loop_affinity(0.0)


@pytest.mark.parametrize("method", ["set_loop_affinity", "set_poller_affinity"])
def test_cpuid_checked(watcher, method):
    for bad in (-1, os.cpu_count(), os.cpu_count() + 5):
        with pytest.raises(gaio.CPUIDError, match="cpuid"):
            getattr(watcher, method)(bad)
        with pytest.raises(ValueError):
            getattr(watcher, method)(bad)
    getattr(watcher, method)(0)


def test_loop_affinity_pins_wait_io_thread(watcher):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("os.sched_getaffinity is Linux-only")
    cpu = max(os.sched_getaffinity(0))
    seen = {}

    def loop():
        watcher.wait_io(0)
        seen["cpus"] = os.sched_getaffinity(0)

    watcher.set_loop_affinity(cpu)
    t = threading.Thread(target=loop)
    t.start()
    t.join(10)
    assert seen["cpus"] == {cpu}
    assert os.sched_getaffinity(0) != {cpu} or os.cpu_count() == 1  # only that thread


def test_loop_affinity_pins_the_thread_now_running_wait_io(watcher):
    """set_loop_affinity from another thread pins the latest wait_io thread,
    not one that ran it before."""
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("os.sched_getaffinity is Linux-only")
    cpu = max(os.sched_getaffinity(0))
    first = threading.Thread(target=watcher.wait_io, args=(0,))
    first.start()
    first.join(10)
    ran, go, seen = threading.Event(), threading.Event(), {}

    def loop():
        watcher.wait_io(0)
        ran.set()
        go.wait(10)
        seen["cpus"] = os.sched_getaffinity(0)

    t = threading.Thread(target=loop)
    t.start()
    assert ran.wait(10)
    watcher.set_loop_affinity(cpu)  # pins that thread now, from here
    go.set()
    t.join(10)
    assert seen["cpus"] == {cpu}


def test_eof_read_and_queued_reads(watcher, pair):
    a, b = pair
    watcher.read(1, a, bytearray(8))
    watcher.read(2, a, None)
    watcher.read_full(3, a, bytearray(8))
    b.close()
    results = collect(watcher, 3)
    assert [r.context for r in results] == [1, 2, 3]
    for r in results:
        assert isinstance(r.error, EOFError) and r.size == 0
    watcher.read(4, a, None)
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, EOFError) and r.size == 0


def test_read_full_meets_eof_reports_bytes(watcher, pair):
    a, b = pair
    buf = bytearray(10)
    watcher.read_full("f", a, buf)
    b.sendall(b"abcd")
    b.close()
    (r,) = collect(watcher, 1)
    assert isinstance(r.error, EOFError)
    assert r.size == 4 and bytes(buf[:4]) == b"abcd"


def test_closed_socket_accepted_and_fails(watcher):
    a, b = socket.socketpair()
    a.close()
    b.close()
    watcher.read("r", a, bytearray(4))
    watcher.write("w", a, b"x")
    watcher.read("s", a, None)
    results = collect(watcher, 3)
    for r in results:
        assert r.error is not None and r.conn is a


def test_socket_error_is_oserror_subclass(watcher):
    a, b = tcp_pair()
    try:
        watcher.read("r", a, bytearray(16))
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b.close()  # RST
        (r,) = collect(watcher, 1)
        assert isinstance(r.error, ConnectionResetError)
        assert r.error.errno == errno.ECONNRESET
        watcher.write("w", a, b"x" * 100)
        (r,) = collect(watcher, 1)
        assert isinstance(r.error, (BrokenPipeError, ConnectionResetError))
        assert r.error.errno in (errno.EPIPE, errno.ECONNRESET)
    finally:
        a.close()


def test_closed_watcher_refuses_everything(backend, pair):
    a, _ = pair
    w = gaio.Watcher(backend=backend)
    w.close()
    w.close()  # twice is fine
    for call in _calls(w, a) + [
        lambda: w.wait_io(0),
        lambda: w.wait_io(),
        lambda: w.set_loop_affinity(0),
        lambda: w.set_poller_affinity(0),
    ]:
        with pytest.raises(gaio.WatcherClosedError):
            call()
    assert a.fileno() != -1  # refused before anything was taken


def test_uring_unavailable_falls_back_to_epoll_in_subprocess():
    if not sys.platform.startswith("linux"):
        pytest.skip("epoll fallback is Linux behaviour")
    code = (
        "import sys; sys.modules['gaio._uring'] = None\n"
        "import gaio\n"
        "assert 'uring' not in gaio.available_backends(), gaio.available_backends()\n"
        "w = gaio.Watcher(); print(w.backend); w.close()\n"
    )
    env = dict(os.environ)
    env.pop("GAIO_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "epoll"


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_reports_its_name(engine, monkeypatch):
    use_engine(engine, monkeypatch)
    with gaio.Watcher(backend=engine) as w:
        assert w.backend == engine


def test_engine_failure_raises_poller_closed(backend, pair):
    a, b = pair
    w = gaio.Watcher(backend=backend)
    w.read("r", a, bytearray(4))
    w.wait_io(0)

    class Broken:
        """The engine, but its descriptor vanished under wait (a compiled
        engine's methods cannot be patched on the instance, so wrap it)."""

        def __init__(self, engine):
            self.engine = engine

        def __getattr__(self, name):
            return getattr(self.engine, name)

        def wait(self, timeout):
            raise OSError(errno.EBADF, "Bad file descriptor")

    engine = w._engine
    w._engine = Broken(engine)
    with pytest.raises(gaio.PollerClosedError, match=backend):
        w.wait_io(1)
    assert w.closed
    with pytest.raises(gaio.WatcherClosedError):
        w.read("r", a, bytearray(4))
    w._engine = engine
    w.close()
    b.settimeout(5)
    assert b.recv(4) == b""  # the connection was released


def test_watcher_can_be_subclassed(backend, pair):
    # Also in the compiled build (mypyc classes refuse interpreted subclasses
    # unless told otherwise); a subclass instance takes weak references and
    # attributes of its own, as the source's class does.
    import weakref

    class Echo(gaio.Watcher):
        def echo_once(self, conn) -> bytes:
            self.read("ctx", conn, None)
            (res,) = collect(self, 1)
            return bytes(res.buffer[: res.size])

    a, b = pair
    w = Echo(backend=backend)
    try:
        w.label = "mine"
        ref = weakref.ref(w)
        b.sendall(b"ping")
        assert w.echo_once(a) == b"ping"
        assert ref() is w and w.label == "mine" and w.backend == backend
    finally:
        w.close()


FORK_CHILD = r"""
import os, socket, sys
sys.path.insert(0, sys.argv[2])
import conftest  # (installs the kqueue emulation when GAIO_BACKEND=kqueue)
import gaio
w = gaio.Watcher(backend=sys.argv[1])
a, b = socket.socketpair()
c, d = socket.socketpair()
w.read("parent-read", a, bytearray(16))
w.write("parent-write", c, b"x")
assert [r.context for r in w.wait_io(2.0)] == ["parent-write"]
cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
pid = os.fork()
if pid == 0:
    code = 0
    try:
        assert w.closed  # the parent's
        for call in (lambda: w.read(None, a, None), lambda: w.write(None, c, b"y"),
                     lambda: w.free(a), lambda: w.wait_io(0), lambda: w.set_loop_affinity(0)):
            try:
                call()
                code = 3
            except gaio.WatcherClosedError as exc:
                assert "fork" in str(exc), exc
        before = len(os.listdir("/proc/self/fd"))
        w.close()  # lets go of this process's copies only
        w.close()
        after = len(os.listdir("/proc/self/fd"))
        if after >= before:
            code = 4
        mine = gaio.Watcher(backend=sys.argv[1])  # a new one works here
        e, f = socket.socketpair()
        mine.write("child", e, b"z")
        if [r.context for r in mine.wait_io(2.0)] != ["child"] or f.recv(1) != b"z":
            code = 5
        if hasattr(os, "sched_setaffinity"):
            mine.set_loop_affinity(os.cpu_count() - 1)  # pins this thread, not the parent's
        mine.close()
    except BaseException as exc:  # noqa: BLE001
        print("child:", repr(exc), flush=True)
        code = 2
    os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
assert cpus is None or os.sched_getaffinity(0) == cpus  # the child pinned itself only
b.send(b"for the parent")  # the child's close() shut nothing down
(r,) = w.wait_io(2.0)
assert r.context == "parent-read" and bytes(r.buffer[: r.size]) == b"for the parent", r
w.write("again", c, b"y")
assert [r.context for r in w.wait_io(2.0)] == ["again"] and d.recv(2) == b"xy"
w.close()
print("ok")
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_fork_child_cannot_hurt_the_parents_watcher(engine):
    # The child of a fork() inherits the watcher, its connections and its
    # engine, all shared with the parent. Every call there is refused (saying
    # why), and close() lets go of the child's copies without shutting
    # sockets down, cancelling, or changing the parent's epoll set.
    if not hasattr(os, "fork"):
        pytest.skip("no fork() here")
    env = dict(os.environ, GAIO_BACKEND=engine)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", FORK_CHILD, engine, tests_dir],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout, out.stderr)
