"""The kqueue emulation, checked rule by rule against the kqueue(2) man page.

Each test's docstring quotes (or closely paraphrases) the FreeBSD/macOS kqueue(2)
line it checks, so a reader can hold them side by side. Where ``select`` has a
real kqueue (macOS and the BSDs, the CI's macOS job), the same tests also run
against the kernel: that is what keeps the emulation honest.

The last section tests gaio's kqueue engine itself over the emulation: how it
maps events to wake-ups, and its two wake-up paths (``EVFILT_USER`` and the
self-pipe used where CPython lacks ``KQ_FILTER_USER``).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import threading
import time
from types import SimpleNamespace

import pytest

import kqueue_emulation
from conftest import drain, tcp_pair

SOON = 2.0  # seconds to wait for an event that must come
QUIET = 0.05  # seconds to wait for an event that must not come


def _real_select():
    """The real select module, with the EVFILT_USER constants CPython omits."""
    names = {k: getattr(select, k) for k in dir(select) if k.startswith("KQ_")}
    names.setdefault("KQ_FILTER_USER", -10 if sys.platform == "darwin" else -11)
    for k in ("KQ_NOTE_TRIGGER", "KQ_NOTE_FFNOP", "KQ_NOTE_FFAND", "KQ_NOTE_FFOR", "KQ_NOTE_FFCOPY"):
        names.setdefault(k, getattr(kqueue_emulation, k))
    return SimpleNamespace(kqueue=select.kqueue, kevent=select.kevent, **names)


_IMPLS = []
if hasattr(select, "epoll"):
    _IMPLS.append("emulated")
if hasattr(select, "kqueue"):
    _IMPLS.append("real")


@pytest.fixture(params=_IMPLS)
def K(request):
    """A module shaped like ``select``: the emulation, or the real kqueue."""
    return kqueue_emulation.emulated_select if request.param == "emulated" else _real_select()


@pytest.fixture
def kq(K):
    q = K.kqueue()
    yield q
    q.close()


@pytest.fixture
def sp():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def add(K, kq, sock, filt, flags=0, **kw):
    kq.control([K.kevent(sock, filt, K.KQ_EV_ADD | flags, **kw)], 0)


def fired(kq, n=8, timeout=SOON):
    return [(ev.ident, ev.filter) for ev in kq.control(None, n, timeout)]


def fill(sock):
    """Write into ``sock`` until its send buffer (and the peer's receive buffer) is full."""
    sock.setblocking(False)
    total = 0
    try:
        while True:
            total += sock.send(b"x" * 65536)
    except BlockingIOError:
        return total


# -- kevent(2): changelist and eventlist ------------------------------------------------


def test_changelist_applied_before_events_are_read(K, kq, sp):
    """"All changes contained in the changelist are applied before any pending
    events are read from the queue." One call registers and collects."""
    a, b = sp
    b.send(b"x")
    evs = kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_ADD)], 4, SOON)
    assert [(ev.ident, ev.filter) for ev in evs] == [(a.fileno(), K.KQ_FILTER_READ)]


def test_ident_and_filter_name_a_knote(K, kq, sp):
    """"(ident, filter) ... uniquely identifies the event": the read and write
    knotes of one descriptor are separate and each returns its own event."""
    a, b = sp
    b.send(b"x")
    kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_ADD), K.kevent(a, K.KQ_FILTER_WRITE, K.KQ_EV_ADD)], 0)
    time.sleep(QUIET)
    assert sorted(fired(kq)) == sorted([(a.fileno(), K.KQ_FILTER_READ), (a.fileno(), K.KQ_FILTER_WRITE)])


def test_nevents_bounds_the_eventlist_rest_stays_pending(K, kq, sp):
    """"kevent() returns the number of events placed in the eventlist, up to the
    value given by nevents." Events beyond it stay queued, even with EV_CLEAR."""
    a, b = sp
    b.send(b"x")
    kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_ADD | K.KQ_EV_CLEAR),
                K.kevent(a, K.KQ_FILTER_WRITE, K.KQ_EV_ADD | K.KQ_EV_CLEAR)], 0)
    time.sleep(QUIET)
    first = fired(kq, n=1)
    second = fired(kq, n=1)
    assert len(first) == len(second) == 1
    assert sorted(first + second) == sorted([(a.fileno(), K.KQ_FILTER_READ), (a.fileno(), K.KQ_FILTER_WRITE)])
    assert fired(kq, timeout=QUIET) == []


def test_timeout_expiry_returns_nothing(K, kq, sp):
    """"If the time limit expires, then kevent() returns 0." And "to effect a poll,
    the timeout argument should be ... a zero-valued timespec"."""
    a, _ = sp
    add(K, kq, a, K.KQ_FILTER_READ)
    t0 = time.monotonic()
    assert kq.control(None, 4, 0) == []
    assert kq.control(None, 4, 0.1) == []
    assert time.monotonic() - t0 >= 0.09


def test_error_without_room_fails_the_call(K, kq, sp):
    """"If an error occurs while processing an element of the changelist and there
    is [no] room in the eventlist ... -1 will be returned, and errno will be set."
    ENOENT: "The event could not be found to be modified or deleted." """
    a, _ = sp
    with pytest.raises(OSError) as info:
        kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)
    assert info.value.errno == errno.ENOENT


def test_error_with_room_is_an_ev_error_event(K, kq, sp):
    """"If an error occurs while processing an element of the changelist and there
    is enough room in the eventlist, then the event will be placed in the eventlist
    with EV_ERROR set in flags and the system error in data." The other changes
    are still applied."""
    a, b = sp
    b.send(b"x")
    evs = kq.control([K.kevent(a, K.KQ_FILTER_WRITE, K.KQ_EV_DELETE),
                      K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_ADD)], 4, 0)
    errs = [ev for ev in evs if ev.flags & K.KQ_EV_ERROR]
    assert [(ev.ident, ev.filter, ev.data) for ev in errs] == [(a.fileno(), K.KQ_FILTER_WRITE, errno.ENOENT)]
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]  # the ADD after the error was applied


def test_bad_descriptor_is_ebadf(K, kq):
    """EBADF: "The specified descriptor is invalid." """
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        kq.control([K.kevent(r, K.KQ_FILTER_READ, K.KQ_EV_ADD)], 0)
    assert info.value.errno == errno.EBADF


def test_unknown_filter_is_einval(K, kq, sp):
    """EINVAL: "The specified time limit or filter is invalid." """
    a, _ = sp
    with pytest.raises(OSError) as info:
        kq.control([K.kevent(a, -100, K.KQ_EV_ADD)], 0)
    assert info.value.errno == errno.EINVAL


# -- flags -----------------------------------------------------------------------------


def test_add_again_modifies_instead_of_duplicating(K, kq, sp):
    """EV_ADD: "Re-adding an existing event will modify the parameters of the
    original event, and not result in a duplicate entry." """
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ, udata=1)
    add(K, kq, a, K.KQ_FILTER_READ, udata=2)
    b.send(b"x")
    evs = kq.control(None, 4, SOON)
    assert [(ev.filter, ev.udata) for ev in evs] == [(K.KQ_FILTER_READ, 2)]


def test_adding_enables_unless_ev_disable(K, kq, sp):
    """EV_ADD: "Adding an event automatically enables it, unless overridden by the
    EV_DISABLE flag." EV_ENABLE: "Permit kevent() to return the event if it is
    triggered." """
    a, b = sp
    b.send(b"x")
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_DISABLE)
    assert fired(kq, timeout=QUIET) == []
    kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_ENABLE)], 0)
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]


def test_disable_silences_but_keeps_the_knote(K, kq, sp):
    """EV_DISABLE: "Disable the event so kevent() will not return it. The filter
    itself is not disabled." (Deleting it afterwards succeeds: it still exists.)"""
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ)
    kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_DISABLE)], 0)
    b.send(b"x")
    assert fired(kq, timeout=QUIET) == []
    kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)


def test_delete_removes_the_event(K, kq, sp):
    """EV_DELETE: "Removes the event from the kqueue." """
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ)
    kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)
    b.send(b"x")
    assert fired(kq, timeout=QUIET) == []
    with pytest.raises(OSError) as info:  # gone: a second delete finds nothing
        kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)
    assert info.value.errno == errno.ENOENT


def test_without_clear_the_event_repeats_while_the_condition_holds(K, kq, sp):
    """EVFILT_READ "returns whenever there is data available to read": without
    EV_CLEAR every kevent() call returns it again while bytes are unread."""
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ)
    b.send(b"x")
    for _ in range(3):
        assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]
    a.recv(1)
    assert fired(kq, timeout=QUIET) == []


def test_clear_resets_the_state_once_retrieved(K, kq, sp):
    """EV_CLEAR: "After the event is retrieved by the user, its state is reset.
    This is useful for filters which report state transitions instead of the
    current state." Unread bytes alone do not make it fire again."""
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_CLEAR)
    b.send(b"x")
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]
    assert fired(kq, timeout=QUIET) == []


def test_clear_fires_again_on_the_next_transition(K, kq, sp):
    """EV_CLEAR reports state transitions: new bytes arriving (while old ones are
    still unread) are a new transition, and the event fires once more."""
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_CLEAR)
    b.send(b"x")
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]
    b.send(b"y")
    evs = kq.control(None, 4, SOON)
    assert [(ev.filter, ev.data) for ev in evs] == [(K.KQ_FILTER_READ, 2)]


def test_clear_is_set_when_added_if_already_ready(K, kq, sp):
    """A knote added while its condition already holds is active at once (the
    filter is evaluated on EV_ADD), also with EV_CLEAR: no transition is missed."""
    a, b = sp
    b.send(b"x")
    time.sleep(QUIET)
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_CLEAR)
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]


def test_a_stale_event_is_not_returned(K, kq, sp):
    """The filter is evaluated again when events are collected: bytes that came
    and were read before kevent() leave no event ("returns whenever there is data
    available to read"), with or without EV_CLEAR."""
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_CLEAR)
    b.send(b"x")
    time.sleep(QUIET)
    assert a.recv(1) == b"x"
    assert fired(kq, timeout=QUIET) == []


def test_oneshot_is_deleted_after_retrieval(K, kq, sp):
    """EV_ONESHOT: "Causes the event to return only the first occurrence of the
    filter being triggered. After the user retrieves the event from the kqueue, it
    is deleted." """
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_ONESHOT)
    b.send(b"x")
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_READ)]
    b.send(b"y")
    assert fired(kq, timeout=QUIET) == []
    with pytest.raises(OSError) as info:
        kq.control([K.kevent(a, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)
    assert info.value.errno == errno.ENOENT


def test_closing_the_descriptor_deletes_its_events(K, kq):
    """"Events which are attached to file descriptors are automatically deleted on
    the last close of the descriptor." A new socket given the same number does not
    inherit them."""
    a, b = socket.socketpair()
    fd = a.fileno()
    add(K, kq, a, K.KQ_FILTER_READ)
    b.send(b"x")
    a.close()
    assert fired(kq, timeout=QUIET) == []
    with pytest.raises(OSError) as info:
        kq.control([K.kevent(fd, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)
    assert info.value.errno == errno.EBADF
    c, d = socket.socketpair()
    try:
        if c.fileno() == fd:
            d.send(b"y")
            assert fired(kq, timeout=QUIET) == []
            with pytest.raises(OSError) as info:
                kq.control([K.kevent(fd, K.KQ_FILTER_READ, K.KQ_EV_DELETE)], 0)
            assert info.value.errno == errno.ENOENT
    finally:
        b.close()
        c.close()
        d.close()


# -- EVFILT_READ and EVFILT_WRITE on sockets -------------------------------------------


def test_read_data_is_the_byte_count(K, kq, sp):
    """EVFILT_READ on sockets: "On return, data contains the number of bytes of
    protocol data available to read." """
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ)
    b.send(b"hello")
    time.sleep(QUIET)
    (ev,) = kq.control(None, 4, SOON)
    assert ev.data == 5
    assert not ev.flags & K.KQ_EV_EOF


def test_read_eof_when_the_peer_shuts_down(K, kq, sp):
    """EVFILT_READ: "If the read direction of the socket has shutdown, then the
    filter also sets EV_EOF in flags, and returns the socket error (if any) in
    fflags." A clean shutdown has no error."""
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_CLEAR)
    b.shutdown(socket.SHUT_WR)
    (ev,) = kq.control(None, 4, SOON)
    assert ev.flags & K.KQ_EV_EOF
    assert ev.fflags == 0


def test_read_eof_with_data_still_buffered(K, kq, sp):
    """"It is possible for EOF to be returned (indicating the connection is gone)
    while there is still data pending in the socket buffer." """
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_READ)
    b.send(b"last words")
    b.shutdown(socket.SHUT_WR)
    time.sleep(QUIET)
    (ev,) = kq.control(None, 4, SOON)
    assert ev.flags & K.KQ_EV_EOF
    assert ev.data == len(b"last words")


def _reset_pair(K, kq):
    a, b = tcp_pair()
    add(K, kq, a, K.KQ_FILTER_READ, K.KQ_EV_CLEAR)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()  # linger 0: RST instead of FIN
    return a


def test_read_eof_carries_the_socket_error_of_a_reset(K, kq):
    """EVFILT_READ: EV_EOF "and returns the socket error (if any) in fflags": a
    TCP reset gives ECONNRESET."""
    a = _reset_pair(K, kq)
    try:
        (ev,) = kq.control(None, 4, SOON)
        assert ev.flags & K.KQ_EV_EOF
        assert ev.fflags == errno.ECONNRESET
    finally:
        a.close()


def test_collecting_the_reset_leaves_the_error_to_recv(K, kq):
    """kevent() only reports the socket error; the next recv still fails with it
    (the emulation reads Linux's clear-on-read SO_ERROR only when fflags is used)."""
    a = _reset_pair(K, kq)
    try:
        (ev,) = kq.control(None, 4, SOON)
        assert ev.flags & K.KQ_EV_EOF
        with pytest.raises(ConnectionResetError):
            a.recv(1)
    finally:
        a.close()


def test_write_ready_with_room_in_data(K, kq, sp):
    """EVFILT_WRITE "returns whenever it is possible to write to the descriptor.
    For sockets ... data will contain the amount of space remaining in the write
    buffer." """
    a, _ = sp
    add(K, kq, a, K.KQ_FILTER_WRITE)
    (ev,) = kq.control(None, 4, SOON)
    assert ev.filter == K.KQ_FILTER_WRITE and ev.data > 0
    assert not ev.flags & K.KQ_EV_EOF


def test_write_fires_again_once_room_is_freed(K, kq):
    """EVFILT_WRITE with EV_CLEAR: silent while the buffer is full, one event when
    the peer reads and room is freed (a state transition)."""
    a, b = tcp_pair()
    try:
        fill(a)
        time.sleep(QUIET)
        fill(a)
        add(K, kq, a, K.KQ_FILTER_WRITE, K.KQ_EV_CLEAR)
        assert fired(kq, timeout=QUIET) == []
        end = time.monotonic() + SOON
        evs = []
        while not evs and time.monotonic() < end:
            drain(b)
            evs = kq.control(None, 4, QUIET)
        assert [(ev.ident, ev.filter) for ev in evs] == [(a.fileno(), K.KQ_FILTER_WRITE)]
        assert evs[0].data > 0
    finally:
        a.close()
        b.close()


def test_write_eof_when_the_reader_disconnects(K, kq, sp):
    """EVFILT_WRITE: "The filter will set EV_EOF when the reader disconnects." """
    a, b = sp
    add(K, kq, a, K.KQ_FILTER_WRITE, K.KQ_EV_CLEAR)
    assert fired(kq) == [(a.fileno(), K.KQ_FILTER_WRITE)]  # writable: consumed
    b.close()
    (ev,) = kq.control(None, 4, SOON)
    assert ev.filter == K.KQ_FILTER_WRITE
    assert ev.flags & K.KQ_EV_EOF


# -- EVFILT_USER -----------------------------------------------------------------------


def test_user_event_fires_on_note_trigger(K, kq):
    """EVFILT_USER: "Establishes a user event identified by ident which is not
    associated with any kernel mechanism but is triggered by user level code."
    NOTE_TRIGGER: "Cause the event to be triggered." """
    kq.control([K.kevent(7, K.KQ_FILTER_USER, K.KQ_EV_ADD | K.KQ_EV_CLEAR)], 0)
    assert fired(kq, timeout=QUIET) == []
    kq.control([K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_TRIGGER)], 0)
    assert fired(kq) == [(7, K.KQ_FILTER_USER)]


def test_user_event_with_clear_fires_once_per_trigger(K, kq):
    """EV_CLEAR on a user event: "After the event is retrieved by the user, its
    state is reset"; triggers before retrieval coalesce into one event."""
    kq.control([K.kevent(7, K.KQ_FILTER_USER, K.KQ_EV_ADD | K.KQ_EV_CLEAR)], 0)
    trigger = K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_TRIGGER)
    kq.control([trigger, trigger], 0)
    assert fired(kq) == [(7, K.KQ_FILTER_USER)]
    assert fired(kq, timeout=QUIET) == []


def test_user_event_without_clear_stays_triggered(K, kq):
    """Without EV_CLEAR the state is not reset on retrieval: a triggered user event
    is returned by every call."""
    kq.control([K.kevent(7, K.KQ_FILTER_USER, K.KQ_EV_ADD)], 0)
    kq.control([K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_TRIGGER)], 0)
    assert fired(kq) == [(7, K.KQ_FILTER_USER)]
    assert fired(kq) == [(7, K.KQ_FILTER_USER)]


def test_user_fflags_are_returned_in_the_lower_24_bits(K, kq):
    """EVFILT_USER: NOTE_FFOR "Logically OR fflags with the event's flags",
    NOTE_FFAND "Logically AND ...", NOTE_FFCOPY "Copy fflags"; "On return, fflags
    contains the users defined flags in the lower 24 bits." """
    kq.control([K.kevent(7, K.KQ_FILTER_USER, K.KQ_EV_ADD | K.KQ_EV_CLEAR)], 0)
    kq.control([K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_FFCOPY | 0x0F)], 0)
    kq.control([K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_FFOR | 0x30)], 0)
    kq.control([K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_FFAND | 0x3C | K.KQ_NOTE_TRIGGER)], 0)
    (ev,) = kq.control(None, 4, SOON)
    assert ev.fflags & 0xFFFFFF == 0x3C


def test_triggering_a_missing_user_event_is_enoent(K, kq):
    """ENOENT: "The event could not be found to be modified or deleted." """
    with pytest.raises(OSError) as info:
        kq.control([K.kevent(8, K.KQ_FILTER_USER, 0, K.KQ_NOTE_TRIGGER)], 0)
    assert info.value.errno == errno.ENOENT


def test_a_trigger_from_another_thread_ends_an_unbounded_wait(K, kq):
    """"If timeout is a NULL pointer, kevent() waits indefinitely": until an event,
    such as a user event triggered by another thread."""
    kq.control([K.kevent(7, K.KQ_FILTER_USER, K.KQ_EV_ADD | K.KQ_EV_CLEAR)], 0)
    timer = threading.Timer(0.1, kq.control, ([K.kevent(7, K.KQ_FILTER_USER, 0, K.KQ_NOTE_TRIGGER)], 0))
    timer.start()
    t0 = time.monotonic()
    evs = kq.control(None, 4, None)
    timer.join()
    assert [(ev.ident, ev.filter) for ev in evs] == [(7, K.KQ_FILTER_USER)]
    assert time.monotonic() - t0 < SOON


# -- the Python binding (docs.python.org: select.kqueue.control, select.kevent) --------------


def test_python_binding_argument_checks(K, kq):
    """``kqueue.control(changelist, max_events[, timeout])``: max_events must be 0
    or positive, timeout a non-negative number or None, the changelist an
    iterable of kevent objects; a closed kqueue refuses every call."""
    with pytest.raises(ValueError):
        kq.control(None, -1)
    with pytest.raises(ValueError):
        kq.control(None, 1, -1)
    with pytest.raises(TypeError):
        kq.control(None, 1, "1")
    with pytest.raises(TypeError):
        kq.control([object()], 0)
    q = K.kqueue()
    assert not q.closed and q.fileno() >= 0
    q.close()
    q.close()
    assert q.closed
    with pytest.raises(ValueError):
        q.control(None, 1, 0)


def test_kevent_fields_and_defaults(K, sp):
    """``select.kevent(ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD, fflags=0,
    data=0, udata=0)``; ident may be an object with fileno(); kevents compare by
    value."""
    a, _ = sp
    ev = K.kevent(a)
    assert (ev.ident, ev.filter, ev.flags, ev.fflags, ev.data, ev.udata) == (
        a.fileno(), K.KQ_FILTER_READ, K.KQ_EV_ADD, 0, 0, 0)
    assert ev == K.kevent(a.fileno())
    assert ev != K.kevent(a.fileno(), K.KQ_FILTER_WRITE)
    assert K.kevent(1) < K.kevent(2)


# -- gaio's kqueue engine over the emulation ------------------------------------------------


@pytest.fixture(params=["user", "pipe"])
def engine(request, monkeypatch):
    """The engine, woken by EVFILT_USER or (as with CPython's select) a self-pipe."""
    if not hasattr(select, "epoll"):
        pytest.skip("the emulation runs on epoll (Linux); here the real kqueue is tested")
    kqueue_emulation.install(monkeypatch, user_filter=request.param == "user")
    from gaio.backends import kqueue as kq_engine

    eng = kq_engine.Engine(1 << 16)
    assert (eng._pipe_r >= 0) == (request.param == "pipe")
    yield eng
    eng.close()


def test_probe_says_why_when_select_has_no_kqueue(monkeypatch):
    from gaio.backends import kqueue as kq_engine

    monkeypatch.setattr(kq_engine, "_select", SimpleNamespace())
    reason = kq_engine.probe()
    assert reason and "macOS and the BSDs" in reason and sys.platform in reason


def test_probe_accepts_the_emulation(monkeypatch):
    if not hasattr(select, "epoll"):
        pytest.skip("the emulation runs on epoll (Linux)")
    from gaio import backends
    from gaio.backends import kqueue as kq_engine

    kqueue_emulation.install(monkeypatch)
    assert kq_engine.probe() is None
    assert "kqueue" in backends.available_backends()


def test_attach_adds_both_filters_edge_triggered_in_one_call(engine, sp):
    a, _ = sp
    calls = []
    real_control = engine._kq.control
    engine._kq.control = lambda changes, n, *t: (calls.append(list(changes or [])), real_control(changes, n, *t))[1]
    engine.attach(a.fileno())
    (changes,) = calls
    K = kqueue_emulation
    assert [(c.ident, c.filter, c.flags) for c in changes] == [
        (a.fileno(), K.KQ_FILTER_READ, K.KQ_EV_ADD | K.KQ_EV_CLEAR),
        (a.fileno(), K.KQ_FILTER_WRITE, K.KQ_EV_ADD | K.KQ_EV_CLEAR),
    ]
    engine.detach(a.fileno())
    engine.detach(a.fileno())  # already gone: ignored


def test_events_map_to_directions_as_in_aio_bsd_go(engine):
    """EV_ERROR wakes both directions; EV_EOF on the read filter wakes the reader
    and the writer; plain read/write events wake their own direction; the wake-up
    is filtered out."""
    K = kqueue_emulation
    ev = K.kevent
    wake = (ev(0, K.KQ_FILTER_USER) if engine._pipe_r < 0 else ev(engine._pipe_r, K.KQ_FILTER_READ))
    canned = [
        ev(10, K.KQ_FILTER_READ, K.KQ_EV_CLEAR),
        ev(11, K.KQ_FILTER_READ, K.KQ_EV_CLEAR | K.KQ_EV_EOF),
        ev(12, K.KQ_FILTER_WRITE, K.KQ_EV_CLEAR),
        ev(13, K.KQ_FILTER_WRITE, K.KQ_EV_CLEAR | K.KQ_EV_EOF),
        ev(14, K.KQ_FILTER_READ, K.KQ_EV_ERROR, data=errno.EBADF),
        wake,
    ]
    real = engine._kq
    engine._kq = SimpleNamespace(control=lambda *args: canned, close=real.close)
    try:
        assert list(engine._poll(0)) == [
            (10, True, False, False), (11, True, True, True), (12, False, True, False),
            (13, False, True, True), (14, True, True, True)]
    finally:
        engine._kq = real


def test_wake_from_another_thread_ends_a_blocking_wait(engine):
    threading.Timer(0.1, engine.wake).start()
    t0 = time.monotonic()
    assert engine.wait(None) == []
    assert time.monotonic() - t0 < SOON
    for _ in range(10000):  # wake-ups coalesce; a full pipe is not an error
        engine.wake()
    assert engine.wait(0) == []
    assert engine.wait(QUIET) == []  # drained: no stale wake-up left


def test_wake_after_close_is_a_no_op(engine):
    engine.close()
    engine.wake()
    engine.close()


def test_parked_send_is_woken_by_the_peer_going_away(engine):
    a, b = socket.socketpair()
    a.setblocking(False)
    fd = a.detach()
    try:
        engine.attach(fd)
        data = memoryview(b"x" * (8 << 20))
        engine.send(1, fd, data)
        done = engine.wait(0)
        assert len(done) == 3 and done[1] > 0  # a first chunk went at once (token, res, mem)
        engine.send(2, fd, data)  # the buffer is full: parked
        assert engine.wait(QUIET) == []
        b.close()
        end = time.monotonic() + SOON
        done = []
        while not done and time.monotonic() < end:
            done = engine.wait(QUIET)
        assert done == [2, -errno.EPIPE, None] or done[:2] == [2, -errno.ECONNRESET]
    finally:
        engine.detach(fd)
        os.close(fd)
