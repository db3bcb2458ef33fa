"""Echo server on asyncio's default loop, Protocol API (the fast asyncio path).

    python bench/peers/asyncio_protocol.py --port PORT

Prints "READY <port>" once listening; exits cleanly on SIGTERM.
"""

import argparse
import asyncio
import signal
import socket
import sys


class Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close our side too


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"READY {port}", flush=True)
    await stop
    server.close()
    await server.wait_closed()


def main(argv=None, runner=asyncio.run) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    runner(serve(args.port))


if __name__ == "__main__":
    sys.exit(main())
