"""Echo server on asyncio's default loop, streams API (StreamReader/StreamWriter).

    python bench/peers/asyncio_streams.py --port PORT

Prints "READY <port>" once listening; exits cleanly on SIGTERM.
"""

import argparse
import asyncio
import signal
import socket
import sys


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    server = await asyncio.start_server(echo, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"READY {port}", flush=True)
    await stop
    server.close()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    sys.exit(main())
