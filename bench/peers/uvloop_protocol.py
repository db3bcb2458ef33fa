"""Echo server on uvloop, Protocol API: the same code as asyncio_protocol.py on libuv.

    python bench/peers/uvloop_protocol.py --port PORT

Prints "READY <port>" once listening; exits cleanly on SIGTERM. Needs uvloop
(the `bench` extra); exits with status 3 if it cannot be imported.
"""

import os
import sys

try:
    import uvloop
except ImportError as exc:  # run.py checks importability before starting us
    print(f"uvloop unavailable: {exc}", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asyncio_protocol  # noqa: E402


def main(argv=None) -> None:
    asyncio_protocol.main(argv, runner=uvloop.run if hasattr(uvloop, "run") else _run)


def _run(coro):  # uvloop < 0.18 has no uvloop.run
    uvloop.install()
    import asyncio

    return asyncio.run(coro)


if __name__ == "__main__":
    sys.exit(main())
