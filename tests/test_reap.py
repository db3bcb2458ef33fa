"""gaio/backends/_reap.c, the compiled io_uring engine's completion fast path,
on CQE words made up here: what it turns into completions, and that it stops,
touching nothing, at every completion the engine must see in Python.

The engine uses it only with the compiled twin; the whole suite then runs
through it, and through the Python loop in the pure build (GAIO_PURE_PYTHON=1).
"""

from __future__ import annotations

import array
import importlib

import pytest

from gaio import _native

uring = _native.load("gaio.backends.uring")
try:
    _reap = importlib.import_module("gaio.backends._reap")
except ImportError:  # pragma: no cover - depends on the build
    _reap = None

pytestmark = pytest.mark.skipif(_reap is None, reason="gaio.backends._reap is built only with the compiled "
                                "twins and the io_uring engine (mypyc and liburing at install time)")

RECV, RECV_SELECT, SEND = uring._RECV, uring._RECV_SELECT, uring._SEND
ENTRY = 64


@pytest.fixture(autouse=True)
def configured():
    _reap.configure(uring._KIND_SHIFT, uring._FD_MASK, uring._COMPACT, uring._RES_SHIFT, uring._F_BUFFER,
                    uring._BID_SHIFT, uring._BID_MASK, RECV, RECV_SELECT, SEND)


def who(kind, fd):
    return kind << uring._KIND_SHIFT | fd


def word(res, bid=None):
    w = res << uring._RES_SHIFT
    if bid is not None:
        w |= bid << uring._BID_SHIFT | uring._F_BUFFER
    return w


class State:
    """What Engine._process hands the fast path, for 8 descriptors and 4 buffers."""

    def __init__(self):
        self.ops = [[None] * 8 for _ in range(3)]
        self.pins = [[None] * 8 for _ in range(3)]
        self.pool = bytearray(range(4 * ENTRY))
        self.views = [memoryview(self.pool)[b * ENTRY:(b + 1) * ENTRY] for b in range(4)]
        self.wide = []
        self.lent = []
        self.out = []

    def run(self, cqes, start=0, wide_on=True):
        words = array.array("q", [w for cqe in cqes for w in cqe])
        return _reap.process(memoryview(words).cast("B"), start, len(cqes), self.ops, self.pins, self.views,
                             self.wide, ENTRY, wide_on, self.lent, self.out)

    def snapshot(self):
        return [[list(t) for t in self.ops], [list(t) for t in self.pins], list(self.wide), list(self.lent),
                list(self.out)]


def test_plain_completions_become_token_res_memory():
    s = State()
    send, recv, swap = object(), object(), object()
    s.ops[SEND][5], s.pins[SEND][5] = send, b"pinned"
    s.ops[RECV][6], s.pins[RECV][6] = recv, bytearray(8)
    s.ops[RECV_SELECT][7] = swap
    n = s.run([(who(SEND, 5), word(100)), (who(RECV, 6), word(3)), (who(RECV_SELECT, 7), word(10, bid=2))])
    assert n == 3
    assert s.out[:6] == [send, 100, None, recv, 3, None]
    assert s.out[6] is swap and s.out[7] == 10
    mem = s.out[8]
    assert type(mem) is memoryview and mem.obj is s.pool and bytes(mem) == bytes(s.pool[2 * ENTRY:2 * ENTRY + 10])
    assert s.ops[SEND][5] is s.ops[RECV][6] is s.ops[RECV_SELECT][7] is None  # unfiled
    assert s.pins[SEND][5] is s.pins[RECV][6] is None  # the kernel is done with that memory
    assert s.lent == [2]  # lent until the next recycle


def test_a_big_result_and_a_start_offset():
    s = State()
    s.ops[SEND][1] = s.ops[SEND][2] = "t"
    assert s.run([(who(SEND, 1), word(1)), (who(SEND, 2), word(0x7FFFF000))], start=1) == 2
    assert s.out == ["t", 0x7FFFF000, None]
    assert s.ops[SEND][1] == "t"  # before start: untouched


@pytest.mark.parametrize("case", [
    "error", "end of stream", "raw user_data", "internal kind", "no op filed", "fd past the table",
    "no buffer flag", "no view yet", "bid past the views", "marked wide", "filled its buffer",
])
def test_stops_untouched_where_python_must_look(case):
    s = State()
    s.ops[RECV_SELECT][3] = s.ops[SEND][3] = "tok"
    cqe = {
        "error": (who(SEND, 3), word(-104)),
        "end of stream": (who(RECV_SELECT, 3), word(0, bid=1)),
        "raw user_data": (uring._RAW | uring._WAKE_UD, word(8)),
        "internal kind": (who(5, 3), word(8)),
        "no op filed": (who(SEND, 4), word(8)),
        "fd past the table": (who(SEND, 100), word(8)),
        "no buffer flag": (who(RECV_SELECT, 3), word(8)),
        "no view yet": (who(RECV_SELECT, 3), word(8, bid=1)),
        "bid past the views": (who(RECV_SELECT, 3), word(8, bid=9)),
        "marked wide": (who(RECV_SELECT, 3), word(8, bid=1)),
        "filled its buffer": (who(RECV_SELECT, 3), word(ENTRY, bid=1)),
    }[case]
    if case == "no view yet":
        s.views[1] = None
    if case == "marked wide":
        s.wide = [0, 0, 0, 2]
    s.ops[SEND][0] = "first"
    before = s.snapshot()
    # a plain one first: handled; then the one Python must see: not
    assert s.run([(who(SEND, 0), word(5)), cqe, (who(SEND, 3), word(5))]) == 1
    after = s.snapshot()
    assert after[4] == ["first", 5, None]
    before[0][SEND][0] = None
    before[4] = after[4]
    assert after == before


def test_a_filled_buffer_goes_through_without_read_ahead():
    s = State()
    s.ops[RECV_SELECT][3] = "tok"
    assert s.run([(who(RECV_SELECT, 3), word(ENTRY, bid=0))], wide_on=False) == 1
    assert s.out[1] == ENTRY and len(s.out[2]) == ENTRY


def test_bad_calls_raise():
    s = State()
    with pytest.raises(TypeError):
        _reap.process(memoryview(b""), 0, 0)
    with pytest.raises(TypeError):
        _reap.process(b"", 0, 0, s.ops, s.pins, s.views, s.wide, ENTRY, True, s.lent, s.out)
    words = memoryview(array.array("q", [0, 0])).cast("B")
    with pytest.raises(ValueError):
        _reap.process(words, 0, 2, s.ops, s.pins, s.views, s.wide, ENTRY, True, s.lent, s.out)
    with pytest.raises(ValueError):
        _reap.process(words, 2, 1, s.ops, s.pins, s.views, s.wide, ENTRY, True, s.lent, s.out)
    with pytest.raises(ValueError, match="kind_shift"):
        _reap.configure(0, 0, 0, 1, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="res_shift"):
        _reap.configure(28, 0, 0, 63, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="bid_shift"):
        _reap.configure(28, 0, 0, 19, 0, -1, 0, 0, 0, 0)


def test_the_compiled_engine_uses_it():
    """The compiled twin's engine takes the fast path; the Python source never."""
    if _native.compiled(uring):
        assert uring._FAST is _reap.process
    else:
        assert uring._FAST is None
