"""Shared fixtures: every contract test runs once per engine.

Engines: those ``gaio.available_backends()`` lists, plus "kqueue" through the
epoll-based emulation in ``tests/kqueue_emulation.py`` where the real one is
missing (Linux). With ``CI=true`` the io_uring engine must be available: CI is
there to test it, so its absence fails the run instead of skipping.
With ``GAIO_BACKEND`` set, only that engine runs.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time
from typing import Callable, Iterator, List, Tuple

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import gaio  # noqa: E402
from gaio import _native, backends  # noqa: E402

try:
    import kqueue_emulation  # type: ignore  # noqa: E402
except ImportError:  # pragma: no cover - the emulation is part of the test tree
    kqueue_emulation = None

_REAL_KQUEUE = backends.why_unavailable("kqueue") is None

# --- kqueue emulation for GAIO_BACKEND=kqueue (kqueue engine; keep minimal) ---
# On Linux, GAIO_BACKEND=kqueue means "the emulated kqueue" for the whole session,
# also for tests that build a Watcher without the backend fixture.
if os.environ.get("GAIO_BACKEND", "").strip() == "kqueue" and not _REAL_KQUEUE and kqueue_emulation:
    kqueue_emulation.install(None)
# --- end kqueue emulation ---


def _engines() -> List[str]:
    names = list(gaio.available_backends())
    if "kqueue" not in names and kqueue_emulation is not None:
        names.append("kqueue")
    forced = os.environ.get("GAIO_BACKEND")
    if forced:
        names = [forced]
    return names


ENGINES = _engines()


def pytest_report_header(config):
    return [
        f"gaio engines under test: {', '.join(ENGINES)} (kqueue emulated: {not _REAL_KQUEUE})",
        f"gaio front end: {gaio.implementation} (GAIO_PURE_PYTHON={os.environ.get('GAIO_PURE_PYTHON', '')!r})",
    ]


def pytest_sessionstart(session):
    if os.environ.get("CI") == "true" and "uring" in backends.ENGINE_NAMES:
        reason = backends.why_unavailable("uring")
        if reason is not None and sys.platform.startswith("linux"):
            raise pytest.UsageError(f"CI=true but the io_uring engine is unavailable: {reason}")
    if os.environ.get("CI") == "true" and not _native.PURE_PYTHON and gaio.implementation != "mypyc":
        # CI builds with mypyc (a build requirement): a silent fallback would
        # leave the compiled hot path, the one users run, untested.
        raise pytest.UsageError("CI=true but the compiled front end is not in use (see gaio/_native.py)")


def use_engine(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make engine ``name`` selectable in this test (the kqueue emulation on Linux)."""
    if name == "kqueue" and not _REAL_KQUEUE:
        kqueue_emulation.install(monkeypatch)
    monkeypatch.delenv("GAIO_BACKEND", raising=False)


@pytest.fixture(params=ENGINES)
def backend(request, monkeypatch) -> str:
    """The engine name under test."""
    use_engine(request.param, monkeypatch)
    return request.param


@pytest.fixture
def watcher(backend) -> Iterator[gaio.Watcher]:
    """A watcher on the engine under test, closed afterwards."""
    w = gaio.Watcher(backend=backend)
    assert w.backend == backend
    try:
        yield w
    finally:
        w.close()


def tcp_pair(family: int = socket.AF_INET) -> Tuple[socket.socket, socket.socket]:
    """A connected TCP pair over loopback: (client, server side)."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.bind((host, 0))
        lsock.listen(1)
        client = socket.create_connection(lsock.getsockname()[:2])
        server, _ = lsock.accept()
    return client, server


@pytest.fixture
def pair() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A socketpair: (conn for the watcher, peer for the test)."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp() -> Iterator[Tuple[socket.socket, socket.socket]]:
    """A loopback TCP pair: (conn for the watcher, peer for the test)."""
    a, b = tcp_pair()
    yield a, b
    a.close()
    b.close()


def collect(w: gaio.Watcher, n: int, timeout: float = 10.0) -> List[gaio.OpResult]:
    """Wait until ``n`` results arrived (fails after ``timeout`` seconds)."""
    out: List[gaio.OpResult] = []
    end = time.monotonic() + timeout
    while len(out) < n:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {n} results in {timeout}s: {out}")
        out.extend(w.wait_io(left))
    return out


def collect_until(w: gaio.Watcher, done: Callable[[List[gaio.OpResult]], bool], timeout: float = 10.0):
    out: List[gaio.OpResult] = []
    end = time.monotonic() + timeout
    while not done(out):
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"condition not met in {timeout}s: {out}")
        out.extend(w.wait_io(left))
    return out


def drain(sock: socket.socket, limit: int = 1 << 30) -> int:
    """Read what ``sock`` has now, without waiting (up to ``limit`` bytes); the count."""
    sock.setblocking(False)
    got = 0
    try:
        while got < limit:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
    except BlockingIOError:
        pass
    return got


def fd_count() -> int:
    """Open descriptors of this process."""
    gc.collect()
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else len(os.listdir("/dev/fd"))


def resident(m) -> int:
    """Resident bytes of the mapping that starts where mmap ``m`` does
    (Linux: /proc/self/smaps)."""
    import ctypes

    start = "%x-" % ctypes.addressof(ctypes.c_char.from_buffer(m))
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(start):
            for rest in lines[i + 1:]:
                if rest.startswith("Rss:"):
                    return int(rest.split()[1]) * 1024
    raise AssertionError("mapping not found")


def sleeps_whole(engine, timeout: float) -> int:
    """``engine.wait(timeout)`` with nothing to come returns [] only once
    ``timeout`` has passed (no early wake-up); returns ``engine.trims``."""
    t0 = time.monotonic()
    assert engine.wait(timeout) == []
    assert time.monotonic() - t0 >= timeout * 0.9
    return engine.trims


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class _Wraps:
    __slots__ = ()

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


class SockWrapper(_Wraps):
    """Not a socket, but an object whose fileno() names one (SPEC: accepted)."""


class SlotSockWrapper(_Wraps):
    """The same, but it cannot be weakly referenced (__slots__ without __weakref__)."""

    __slots__ = ("sock",)


class Reader(threading.Thread):
    """Drains a peer socket in the background, keeping every byte."""

    def __init__(self, sock: socket.socket, expect: int):
        super().__init__(daemon=True)
        self.sock, self.expect, self.data = sock, expect, bytearray()

    def run(self) -> None:
        self.sock.settimeout(20)
        while len(self.data) < self.expect:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                break
            self.data += chunk
