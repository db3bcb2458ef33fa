"""The README's echo server runs exactly as printed, on every engine."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

from server_process import free_port, stop

RUN_WITH_EMULATED_KQUEUE = (
    "import runpy, sys, kqueue_emulation; kqueue_emulation.install(None); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## An echo server", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_echo_server(backend, tmp_path):
    script = tmp_path / "echo.py"
    script.write_text(readme_example())
    port = free_port()
    tests = os.path.join(ROOT, "tests")
    env = dict(os.environ, GAIO_BACKEND=backend, PYTHONPATH=os.pathsep.join([ROOT, tests]))
    argv = [sys.executable, str(script), str(port)]
    if backend == "kqueue" and not hasattr(select, "kqueue"):
        # Linux: the script runs unchanged, with the kqueue emulation installed first.
        argv = [sys.executable, "-c", RUN_WITH_EMULATED_KQUEUE, str(script), str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        for round_ in range(3):
            for i, c in enumerate(clients):
                msg = b"hello %d/%d " % (i, round_) * (1 + 50 * i)
                c.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = c.recv(65536)
                    assert chunk, "server closed early"
                    got += chunk
                assert got == msg
        for c in clients:
            c.close()
        time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
    finally:
        code = stop(proc, signal.SIGINT)
    assert code == 0
