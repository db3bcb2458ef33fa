"""Compiled twins of the hot modules, and the choice between them and the source.

The per-operation path (submit, start at the engine, complete, build the
result) is Python in ``gaio/watcher.py`` and the engines ``uring.py``,
``_readiness.py`` and ``epoll.py``. At install time ``setup.py`` copies each of
those files to a twin beside it (``_native_watcher.py``,
``backends/_native_uring.py``, ...) and compiles the twins with mypyc: the
same code, as C, with typed attribute access and direct calls between its
functions. The source stays the one place the logic lives; the twin is a
build product and is never edited. (kqueue stays Python: it is not compiled
where it runs most, and it derives from the Python ``_readiness``.)

``load()`` returns the twin when it was built from the very sources beside it
(each twin records one SHA-256 over all compiled sources, since a twin may
import another), and the source module otherwise: no compiler, mypy missing
at build time, ``GAIO_NO_MYPYC=1`` at build time, ``GAIO_PURE_PYTHON=1`` at
run time, or a source edited since the last build (a warning then says to
rebuild, so an edit is never silently ignored).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from types import ModuleType

#: Set (to anything but "" or "0") to run the Python source even when twins are built.
PURE_PYTHON = os.environ.get("GAIO_PURE_PYTHON", "") not in ("", "0")

TWIN_PREFIX = "_native_"


_digests: dict = {}


def _sources_digest(sources: tuple) -> str | None:
    """SHA-256 over ``sources`` (paths from the directory holding ``gaio``), or
    None when they are not all shipped (then the build is trusted)."""
    if sources not in _digests:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        try:
            for rel in sources:
                with open(os.path.join(root, rel), "rb") as f:
                    h.update(f.read())
            _digests[sources] = h.hexdigest()
        except OSError:
            _digests[sources] = None
    return _digests[sources]


def load(module: str) -> ModuleType:
    """Import ``module`` ("gaio.watcher"), preferring its current compiled twin."""
    if not PURE_PYTHON:
        package, _, name = module.rpartition(".")
        try:
            twin = importlib.import_module(f"{package}.{TWIN_PREFIX}{name}")
        except ImportError:
            twin = None  # not built here: the source serves
        if twin is not None:
            digest = _sources_digest(tuple(getattr(twin, "_SOURCES", ())))
            if digest is None or digest == getattr(twin, "_SOURCE_SHA256", None):
                return twin
            warnings.warn(
                f"{module} or a module compiled with it changed since the build; running "
                "the Python source (rebuild with `make install` or `pip install -e .`)",
                RuntimeWarning,
                stacklevel=2,
            )
    return importlib.import_module(module)


def compiled(module: ModuleType) -> bool:
    """Is ``module`` a compiled twin?"""
    return module.__name__.rpartition(".")[2].startswith(TWIN_PREFIX)
