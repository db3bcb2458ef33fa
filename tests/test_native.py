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


@needs_twins
def test_compiled_classes_keep_their_docstrings():
    # mypyc writes only a text signature where CPython keeps a docstring;
    # setup.py puts the source's docstrings back, so help() reads the same.
    source, twin = importlib.import_module("gaio.watcher"), _twin("gaio.watcher")
    checked = 0
    for cls_name in ("Watcher", "OpResult"):
        src_cls, bin_cls = getattr(source, cls_name), getattr(twin, cls_name)
        assert bin_cls.__doc__ == src_cls.__doc__
        for name, attr in vars(src_cls).items():
            if not name.startswith("_") and isinstance(attr, (property, type(lambda: None))):
                assert attr.__doc__, f"{cls_name}.{name} has no docstring"
                assert getattr(bin_cls, name).__doc__ == attr.__doc__, f"{cls_name}.{name}"
                checked += 1
    assert checked >= 15  # the methods and properties of both classes
    assert "ctx, conn, buf=None" in str(twin.Watcher.read.__text_signature__)  # the signature stays
