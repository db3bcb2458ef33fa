"""Engine registry: which engines exist, which can run here, and which to use.

Like ``selectors.DefaultSelector``, the choice is made by trying, not guessing:
each engine module has a ``probe()`` that actually sets the facility up once
(for io_uring: the extension imports and a ring can be created in this very
process, which a seccomp filter or the ``io_uring_disabled`` sysctl may refuse).
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Type

from .. import _native
from .base import TRANSIENT_ERRNOS, Engine, EngineUnavailable

__all__ = ["ENGINE_NAMES", "available_backends", "resolve", "Engine", "EngineUnavailable"]

#: Every engine gaio knows, best first.
ENGINE_NAMES = ("uring", "epoll", "kqueue")

# probe results are cached per process: setting up a ring is not free.
_probe_cache: Dict[str, Optional[str]] = {}


def _module(name: str):
    # an engine's compiled twin when built and current (see gaio/_native.py)
    return _native.load(f"{__name__}.{name}")


def why_unavailable(name: str) -> Optional[str]:
    """None if engine ``name`` can run in this process, else the reason.

    Raises ``OSError`` (uncached) when the probe ran out of a resource
    (descriptors, memory): the engine may well run once that is freed.
    """
    if name in _probe_cache:
        return _probe_cache[name]
    try:
        reason = _module(name).probe()
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS:
            raise
        reason = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # an engine that cannot even import is unavailable
        reason = f"{type(exc).__name__}: {exc}"
    _probe_cache[name] = reason
    return reason


def clear_probe_cache() -> None:
    """Forget earlier probe results (tests change what is available)."""
    _probe_cache.clear()


def available_backends() -> List[str]:
    """Names of the engines usable in this process, best first.

    An engine whose probe is short of a resource right now (EMFILE, ENOMEM) is
    left out of this answer, and probed again next time.
    """
    usable = []
    for name in ENGINE_NAMES:
        try:
            if why_unavailable(name) is None:
                usable.append(name)
        except OSError:
            pass
    return usable


def resolve(backend: Optional[str]) -> Type[Engine]:
    """The engine class for ``backend``, ``$GAIO_BACKEND``, or the best available.

    A name that is given explicitly is never silently replaced by another engine:
    an unknown name or an engine that cannot run here raises
    ``EngineUnavailable`` (a ``ValueError``) naming the choices.
    """
    source = "backend"
    if backend is None:
        env = os.environ.get("GAIO_BACKEND", "").strip()
        if env:
            backend, source = env, "GAIO_BACKEND"
    if backend is None:
        reasons = []
        for name in ENGINE_NAMES:
            reason = why_unavailable(name)  # a resource shortage propagates
            if reason is None:
                return _module(name).Engine
            reasons.append(f"{name}: {reason}")
        raise EngineUnavailable(f"no gaio engine can run here ({'; '.join(reasons)})")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, not {type(backend).__name__}")
    if backend not in ENGINE_NAMES:
        raise EngineUnavailable(
            f"unknown engine {backend!r} in {source}; choose one of "
            f"{', '.join(available_backends()) or '(none available)'} "
            f"(gaio knows {', '.join(ENGINE_NAMES)})"
        )
    reason = why_unavailable(backend)
    if reason is not None:
        raise EngineUnavailable(
            f"engine {backend!r} (from {source}) cannot run here: {reason}; "
            f"available: {', '.join(available_backends()) or '(none)'}"
        )
    return _module(backend).Engine
