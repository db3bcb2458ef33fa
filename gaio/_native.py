"""Compiled twins of the hot modules, and the choice between them and the source.

The per-operation path (submit, start at the engine, complete, build the
result) is Python in ``gaio/watcher.py`` and ``gaio/backends/uring.py``. At
install time ``setup.py`` copies each of those files to a twin beside it
(``_native_watcher.py``, ``backends/_native_uring.py``) and compiles the twin
with mypyc: the same code, as C, with typed attribute access and direct calls
between its functions. The source stays the one place the logic lives; the
twin is a build product and is never edited.

``load()`` returns the twin when it was built from the very source next to it
(each twin records its source's SHA-256), and the source module otherwise: no
compiler, mypy missing at build time, ``GAIO_NO_MYPYC=1`` at build time,
``GAIO_PURE_PYTHON=1`` at run time, or a source edited since the last build (a
warning then says to rebuild, so an edit is never silently ignored).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import warnings
from types import ModuleType

#: Set (to anything but "" or "0") to run the Python source even when twins are built.
PURE_PYTHON = os.environ.get("GAIO_PURE_PYTHON", "") not in ("", "0")

TWIN_PREFIX = "_native_"


def _source_digest(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py"):
        return None  # no source shipped: trust the build
    with open(origin, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load(module: str) -> ModuleType:
    """Import ``module`` ("gaio.watcher"), preferring its current compiled twin."""
    if not PURE_PYTHON:
        package, _, name = module.rpartition(".")
        try:
            twin = importlib.import_module(f"{package}.{TWIN_PREFIX}{name}")
        except ImportError:
            twin = None  # not built here: the source serves
        if twin is not None:
            built_from = getattr(twin, "_SOURCE_SHA256", None)
            digest = _source_digest(module)
            if digest is None or digest == built_from:
                return twin
            warnings.warn(
                f"{module} changed since it was compiled; running the Python source "
                "(rebuild with `make install` or `pip install -e .`)",
                RuntimeWarning,
                stacklevel=2,
            )
    return importlib.import_module(module)


def compiled(module: ModuleType) -> bool:
    """Is ``module`` a compiled twin?"""
    return module.__name__.rpartition(".")[2].startswith(TWIN_PREFIX)
