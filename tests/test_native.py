"""gaio/_native.py: the compiled twins are used only while they match the source."""

from __future__ import annotations

import importlib

import pytest

import gaio
from gaio import _native

def _built() -> bool:
    try:
        importlib.import_module(f"gaio.{_native.TWIN_PREFIX}watcher")
    except ImportError:
        return False
    return True


needs_twins = pytest.mark.skipif(
    not _built(), reason="built without mypyc (GAIO_NO_MYPYC=1, no compiler or no mypy at build time)"
)


def _twin(module: str):
    package, _, name = module.rpartition(".")
    return importlib.import_module(f"{package}.{_native.TWIN_PREFIX}{name}")


@needs_twins
@pytest.mark.parametrize("module", ["gaio.watcher", "gaio.backends.uring", "gaio.backends.epoll"])
def test_current_twin_is_chosen(module, monkeypatch):
    monkeypatch.setattr(_native, "PURE_PYTHON", False)
    twin = _twin(module)
    assert _native.load(module) is twin
    assert _native.compiled(twin)
    assert "gaio/watcher.py" in twin._SOURCES  # one digest over every compiled source


@needs_twins
def test_edited_source_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(_native, "PURE_PYTHON", False)
    twin = _twin("gaio.watcher")
    monkeypatch.setitem(_native._digests, tuple(twin._SOURCES), "0" * 64)  # as if a source changed
    with pytest.warns(RuntimeWarning, match="rebuild"):
        module = _native.load("gaio.watcher")
    assert module is importlib.import_module("gaio.watcher")
    assert not _native.compiled(module)


def test_pure_python_switch(monkeypatch):
    monkeypatch.setattr(_native, "PURE_PYTHON", True)
    module = _native.load("gaio.backends.epoll")
    assert module is importlib.import_module("gaio.backends.epoll")


def test_implementation_names_what_runs():
    assert gaio.implementation in ("mypyc", "python")
    assert (gaio.implementation == "mypyc") == _native.compiled(importlib.import_module(gaio.Watcher.__module__))
