"""bench/echo_server.py echoes every byte, with the swap buffer and with
``--own-buffers``, on the engines that run natively here (the benchmark's
numbers are only worth something if its server is right)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from server_process import free_port, stop

import gaio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "bench", "echo_server.py")


@pytest.mark.parametrize("backend", [b for b in gaio.available_backends() if b != "kqueue"])
@pytest.mark.parametrize("extra", [[], ["--own-buffers", "4096"], ["--bufsize", "1024"]],
                         ids=["swap", "own-buffers", "small-swap"])
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
                # up to 150 KiB: more than one read of either buffer, and partial sends
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
