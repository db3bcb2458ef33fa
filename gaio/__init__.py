"""gaio: a proactor for sockets, after Go's github.com/xtaci/gaio.

Submit reads and writes on many sockets, then collect their completions in
batches with :meth:`Watcher.wait_io`. Engines: io_uring, epoll, kqueue.
"""

from .backends import EngineUnavailable, available_backends
from .errors import (
    CPUIDError,
    ConnClosedError,
    DeadlineError,
    EmptyBufferError,
    ErrConnClosed,
    ErrCPUID,
    ErrDeadline,
    ErrEmptyBuffer,
    ErrNoRawConn,
    ErrPollerClosed,
    ErrUnsupported,
    ErrWatcherClosed,
    GaioError,
    NoRawConnError,
    PollerClosedError,
    UnsupportedError,
    WatcherClosedError,
)
from .watcher import EV_READ, EV_WRITE, OpRead, OpResult, OpType, OpWrite, Watcher

__version__ = "0.1.0"

__all__ = [
    "Watcher",
    "OpResult",
    "OpType",
    "OpRead",
    "OpWrite",
    "EV_READ",
    "EV_WRITE",
    "available_backends",
    "EngineUnavailable",
    "GaioError",
    "UnsupportedError",
    "NoRawConnError",
    "WatcherClosedError",
    "PollerClosedError",
    "ConnClosedError",
    "DeadlineError",
    "EmptyBufferError",
    "CPUIDError",
    "ErrUnsupported",
    "ErrNoRawConn",
    "ErrWatcherClosed",
    "ErrPollerClosed",
    "ErrConnClosed",
    "ErrDeadline",
    "ErrEmptyBuffer",
    "ErrCPUID",
]
