"""bench/echo_server.py echoes every byte, with the swap buffer and with
``--own-buffers``, on the engines that run natively here (the benchmark's
numbers are only worth something if its server is right)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from server_process import free_port, stop

import gaio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "bench", "echo_server.py")


@pytest.mark.parametrize("backend", [b for b in gaio.available_backends() if b != "kqueue"])
@pytest.mark.parametrize("extra", [[], ["--own-buffers", "4096"], ["--bufsize", "1024"], ["--bufsize", "262144"]],
                         ids=["swap", "own-buffers", "small-swap", "big-swap"])
def test_echo_server_echoes_every_byte(backend, extra):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, SERVER, "--port", str(port), "--backend", backend, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"READY {port}", (line, proc.stderr.read() if proc.poll() is not None else "")
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        for round_ in range(3):
            for i, c in enumerate(clients):
                # up to 150 KiB: more than one read of the smaller buffers, partial
                # sends, and (big-swap) reads the server copies into pooled buffers
                msg = bytes((i * 7 + round_ + k) % 251 for k in range(1 + 50_000 * i))
                c.sendall(msg)
                got = bytearray()
                while len(got) < len(msg):
                    chunk = c.recv(1 << 16)
                    assert chunk, "server closed early"
                    got += chunk
                assert got == msg
        for c in clients:
            c.close()
    finally:
        code = stop(proc)
    assert code == 0


def _bench_module(name):
    """bench/<name>.py, loaded as a module (bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"gaio_bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_pairs_repetitions_round_by_round():
    """bench/run.py's paired(): gaio against each reference peer within each
    round of repetitions (ratios for CPU, msgs/s and RSS, a difference for
    p50), skipping rounds where either side failed."""
    run = _bench_module("run")
    reps = lambda *cpus: [{"server_cpu_us_per_msg": c, "msgs_per_s": 1000.0 / c, "p50_us": 10 * c}
                          if c else {"failure": "x"} for c in cpus]
    results = {
        "conc100": {
            "gaio-uring": {"reps": reps(6.0, 9.0, 4.0, 5.0)},
            "uvloop": {"reps": reps(6.0, 6.0, 8.0, 0)},
            "asyncio-streams": {"reps": reps(20.0, 20.0, 20.0, 20.0)},  # not a reference
        },
        "idle": {"gaio-epoll": {"reps": [{"rss_per_conn": 400.0}]}, "uvloop": {"reps": [{"rss_per_conn": 1600.0}]}},
    }
    pairs = run.paired(results)
    assert set(pairs) == {"conc100", "idle"}
    f = pairs["conc100"]["gaio-uring"]["uvloop"]
    assert set(pairs["conc100"]["gaio-uring"]) == {"uvloop"}
    assert f["server_cpu_us_per_msg"] == {"median": 1.0, "min": 0.5, "max": 1.5, "n": 3, "as": "ratio"}
    assert f["msgs_per_s"]["median"] == 1.0 and f["msgs_per_s"]["max"] == 2.0
    assert f["p50_us"] == {"median": 0.0, "min": -40.0, "max": 30.0, "n": 3, "as": "diff"}
    assert pairs["idle"]["gaio-epoll"]["uvloop"]["rss_per_conn"]["median"] == 0.25
    text = run.paired_table(pairs)
    assert "gaio-uring" in text and "1.00 [0.50 1.50]" in text and "0.25" in text


def test_bench_runs_each_pair_back_to_back():
    """bench/run.py's round_order(): each gaio server beside the reference
    peer it is measured against (the best engine beside uvloop, the next
    beside asyncio Protocol), then the rest; every server listed once."""
    run = _bench_module("run")
    names = ["gaio-uring", "gaio-epoll", "gaio-uring-256k", "asyncio-protocol", "asyncio-streams", "uvloop"]
    order = run.round_order(names)
    assert sorted(order) == sorted(names)
    assert order[:4] == ["gaio-uring", "uvloop", "asyncio-protocol", "gaio-epoll"]
    # run backwards every other round, each pair is still back to back
    for seq in (order, order[::-1]):
        for g, peer in (("gaio-uring", "uvloop"), ("gaio-epoll", "asyncio-protocol")):
            assert abs(seq.index(g) - seq.index(peer)) == 1
    assert run.round_order(["uvloop", "gaio-epoll"]) == ["gaio-epoll", "uvloop"]
    assert run.round_order(["asyncio-streams", "gaio-uring"]) == ["asyncio-streams", "gaio-uring"]  # no pair: as given
    assert run.round_order([]) == []


@pytest.mark.parametrize("backend", gaio.available_backends())
def test_micro_echo_mode_runs_on_each_engine(backend, capsys):
    """bench/micro.py's echo mode (the echo server's loop on socketpairs, in
    one process) completes every read and write of every round; a size that
    one swap read cannot carry is refused up front, naming --size."""
    micro = _bench_module("micro")
    assert micro.main(["--modes", "echo", "--backend", backend, "--ops", "400", "--batch", "8",
                       "--size", "1000", "--repeat", "1"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[0] == backend and float(row[1]) > 0
    with pytest.raises(SystemExit, match="--size"):
        micro.main(["--modes", "echo", "--backend", backend, "--size", "70000"])
    with pytest.raises(SystemExit, match="--modes"):
        micro.main(["--modes", "echo,nope"])


def test_echo_server_lends_stream_buffers_and_gets_them_back(backend):
    """echo_batch with Streams (the server's default): a connection whose swap
    read fills the swap buffer is echoed through a lent buffer; two streaming
    connections share the one buffer there is (whichever does not hold it
    goes on with swap reads), and every byte of both comes back in order; at
    EOF the buffer comes back, the very one that was lent."""
    echo_server = _bench_module("echo_server")
    streams = echo_server.Streams(4096, size=16384, most=1)
    pairs = [socket.socketpair() for _ in range(2)]
    msgs = [bytes((i * 31 + k) % 253 for k in range(200_000)) for i in range(2)]
    got = [bytearray(), bytearray()]

    def peer(i: int) -> None:
        mine = pairs[i][0]
        sender = threading.Thread(target=mine.sendall, args=(msgs[i],))
        sender.start()
        while len(got[i]) < len(msgs[i]):
            chunk = mine.recv(1 << 16)
            if not chunk:
                break
            got[i] += chunk
        sender.join()
        mine.shutdown(socket.SHUT_WR)  # EOF: the server frees the connection

    w = gaio.Watcher(bufsize=4096, backend=backend)
    threads = [threading.Thread(target=peer, args=(i,)) for i in range(2)]
    try:
        for _, theirs in pairs:
            w.read(None, theirs, None)
        for t in threads:
            t.start()
        lent = set()  # ids of the buffers the lent ops used
        eofs = 0
        deadline = time.monotonic() + 30
        while eofs < 2 and time.monotonic() < deadline:
            results = w.wait_io(1.0)
            lent.update(id(r.buffer if isinstance(r.buffer, bytearray) else r.buffer.obj)
                        for r in results if r.context is streams)
            eofs += sum(isinstance(r.error, EOFError) for r in results)
            echo_server.echo_batch(results, w.read, w.write, w.free, streams)
        for t in threads:
            t.join(10)
        assert got == [bytearray(m) for m in msgs]
        assert eofs == 2
        assert streams.left == 0 and len(streams.free) == 1  # the one buffer is back at EOF
        assert lent == {id(streams.free[0])} and len(streams.free[0]) == 16384
    finally:
        w.close()
        for a, b in pairs:
            a.close()
            b.close()
