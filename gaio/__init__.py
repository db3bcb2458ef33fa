"""gaio: a proactor for sockets, after Go's github.com/xtaci/gaio.

Submit reads and writes on many sockets, then collect their completions in
batches with :meth:`Watcher.wait_io`. Engines: io_uring, epoll, kqueue.
"""

from typing import TYPE_CHECKING

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
from ._native import compiled as _compiled
from ._native import load as _load

if TYPE_CHECKING:
    from .watcher import EV_READ, EV_WRITE, OpRead, OpResult, OpType, OpWrite, Watcher
else:
    # The front end: its mypyc-compiled twin when built and current, else the source.
    _front_end = _load("gaio.watcher")
    Watcher = _front_end.Watcher
    OpResult = _front_end.OpResult
    OpType = _front_end.OpType
    OpRead = _front_end.OpRead
    OpWrite = _front_end.OpWrite
    EV_READ = _front_end.EV_READ
    EV_WRITE = _front_end.EV_WRITE

#: "mypyc" when the compiled front end serves, "python" when the source does.
implementation = "python" if TYPE_CHECKING or not _compiled(_front_end) else "mypyc"

__version__ = "0.1.0"

__all__ = [
    "implementation",
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
