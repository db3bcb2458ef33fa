"""gaio's exceptions, each also exported under the Go original's name."""

from __future__ import annotations

__all__ = [
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


class GaioError(Exception):
    """Base class of every error gaio raises or delivers itself."""


class UnsupportedError(GaioError):
    """The connection cannot be watched: ``conn`` is None, or not a socket."""


class NoRawConnError(GaioError, TypeError):
    """``conn`` has no ``fileno()``, so there is no descriptor to watch."""


class WatcherClosedError(GaioError):
    """The watcher was closed."""


class PollerClosedError(GaioError):
    """The engine was shut down under a call."""


class ConnClosedError(GaioError):
    """The connection was freed (``Watcher.free``) or closed before submission."""


class DeadlineError(GaioError, TimeoutError):
    """The operation missed its deadline; ``OpResult.size`` says what moved."""


class EmptyBufferError(GaioError, ValueError):
    """A buffer that must hold at least one byte was None or empty."""


class CPUIDError(GaioError, ValueError):
    """No such CPU: ``cpuid`` is negative or not below ``os.cpu_count()``."""


# The Go names, for code ported from github.com/xtaci/gaio.
ErrUnsupported = UnsupportedError
ErrNoRawConn = NoRawConnError
ErrWatcherClosed = WatcherClosedError
ErrPollerClosed = PollerClosedError
ErrConnClosed = ConnClosedError
ErrDeadline = DeadlineError
ErrEmptyBuffer = EmptyBufferError
ErrCPUID = CPUIDError
