"""kqueue(2), as CPython's ``select.kqueue``/``select.kevent`` expose it, emulated on Linux epoll.

This is test machinery, not part of the package: it lets the whole test suite
run gaio's kqueue engine on Linux. ``install()`` points
``gaio.backends.kqueue._select`` at :data:`emulated_select` and clears the
engine registry's probe cache; CI runs the same suite on macOS against the real
kernel. ``tests/test_kqueue_emulation.py`` checks every rule below against the
kqueue(2) man page, and runs against the real ``select`` where it has kqueue.

The model (FreeBSD/macOS kqueue(2), for the filters and flags gaio can use):

* A knote is named by ``(ident, filter)``. ``EVFILT_READ``/``EVFILT_WRITE``
  take a descriptor; ``EVFILT_USER`` takes any number. Other filters are
  refused with ``EINVAL`` (not emulated).
* ``control(changelist, max_events, timeout)`` applies every change, in order,
  before collecting events. A failing change becomes an ``EV_ERROR`` event
  (errno in ``data``) while there is room in the eventlist, else the call raises
  ``OSError`` with the remaining changes unapplied; when any change failed, the
  call returns the errors without collecting events (FreeBSD's ``kern_kevent``).
* ``EV_ADD`` creates a knote, or updates ``udata``/``fflags``/``data`` of an
  existing one; adding enables unless ``EV_DISABLE``. ``EV_DELETE``,
  ``EV_ENABLE``, ``EV_DISABLE`` and ``NOTE_TRIGGER`` on a missing knote fail with
  ``ENOENT``; a descriptor that is not open fails with ``EBADF``.
* Without ``EV_CLEAR`` a knote is level-triggered: it is returned by every
  call while its condition holds. With ``EV_CLEAR`` it is returned once per
  state transition (new bytes arrived, buffer space freed, EOF), then reset.
  ``EV_ONESHOT`` knotes are deleted once returned. Before returning any event
  the condition is checked again, so a stale one is dropped.
* ``EVFILT_READ``: ``data`` is the number of bytes readable (``FIONREAD``);
  ``EV_EOF`` once the read side shut down (peer's FIN, reset), with the socket
  error in ``fflags``. ``EVFILT_WRITE``: ``data`` is the room left in the send
  buffer (``SO_SNDBUF`` minus ``TIOCOUTQ``); ``EV_EOF`` once the connection is
  gone both ways (Linux ``POLLHUP``).
* ``EVFILT_USER``: ``NOTE_TRIGGER`` fires it (from any thread, waking a blocked
  ``control``); ``NOTE_FFAND``/``FFOR``/``FFCOPY`` edit the 24 user bits returned
  in ``fflags``. Without ``EV_CLEAR`` a triggered user event stays triggered.
* Closing a descriptor deletes its knotes. The emulation notices at the next
  change or event naming that descriptor number (``fstat`` identity check).

How it is built: four epoll sets, one per (filter, edge or level), hold the
descriptors (``EPOLLET`` for ``EV_CLEAR``: Linux queues an edge on each wake-up
of the socket, which is when BSD activates a knote), all nested in one outer
epoll that ``control`` sleeps on, with an eventfd for user triggers and close.

Known differences, none of which the engine relies on: ``fflags`` of an
``EV_EOF`` event is read from ``SO_ERROR`` when first accessed, because on Linux
reading it clears the error (a BSD kevent leaves it for the next ``recv``);
Linux state changes wake a socket's whole wait queue, so an ``EV_CLEAR`` write
knote may also fire when the peer's FIN arrives; ``NOTE_LOWAT`` is ignored; a
descriptor that was dup'ed, registered, and closed keeps the open file watched
by epoll (kqueue forgets it), which only costs spurious wake-ups.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import select
import socket
import struct
import termios
import threading
import time
from types import SimpleNamespace

# Values as on macOS; FreeBSD has the same ones but EVFILT_USER = -11.
KQ_FILTER_READ = -1
KQ_FILTER_WRITE = -2
KQ_FILTER_AIO = -3
KQ_FILTER_VNODE = -4
KQ_FILTER_PROC = -5
KQ_FILTER_SIGNAL = -6
KQ_FILTER_TIMER = -7
KQ_FILTER_USER = -10
KQ_EV_ADD = 0x0001
KQ_EV_DELETE = 0x0002
KQ_EV_ENABLE = 0x0004
KQ_EV_DISABLE = 0x0008
KQ_EV_ONESHOT = 0x0010
KQ_EV_CLEAR = 0x0020
KQ_EV_SYSFLAGS = 0xF000
KQ_EV_FLAG1 = 0x2000
KQ_EV_ERROR = 0x4000
KQ_EV_EOF = 0x8000
KQ_NOTE_LOWAT = 0x0001
KQ_NOTE_TRIGGER = 0x01000000
KQ_NOTE_FFNOP = 0x00000000
KQ_NOTE_FFAND = 0x40000000
KQ_NOTE_FFOR = 0x80000000
KQ_NOTE_FFCOPY = 0xC0000000
KQ_NOTE_FFCTRLMASK = 0xC0000000
KQ_NOTE_FFLAGSMASK = 0x00FFFFFF

_MODE_FLAGS = KQ_EV_CLEAR | KQ_EV_ONESHOT  # kept by the knote, echoed in its events
_FD_FILTERS = (KQ_FILTER_READ, KQ_FILTER_WRITE)
_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)  # Linux: the peer shut its write side
_EPOLL_MASK = {
    KQ_FILTER_READ: getattr(select, "EPOLLIN", 0x1) | getattr(select, "EPOLLRDHUP", 0x2000),
    KQ_FILTER_WRITE: getattr(select, "EPOLLOUT", 0x4),
}
_EPOLLET = getattr(select, "EPOLLET", 1 << 31)
_POLL_ALL = select.POLLIN | select.POLLOUT | _POLLRDHUP
_READ_READY = select.POLLIN | _POLLRDHUP | select.POLLHUP | select.POLLERR
_READ_EOF = _POLLRDHUP | select.POLLHUP
_WRITE_READY = select.POLLOUT | select.POLLHUP | select.POLLERR
_WRITE_EOF = select.POLLHUP


def _identity(fd):
    st = os.fstat(fd)  # OSError(EBADF) once closed
    return st.st_dev, st.st_ino


def _ioctl_int(fd, request):
    try:
        return struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0]
    except OSError:
        return 0  # not supported for this kind of descriptor (listening socket...)


def _with_socket(fd, fn):
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return 0  # not a socket (a pipe)
    try:
        return fn(sock)
    except OSError:
        return 0
    finally:
        sock.detach()


def _write_room(fd):
    sndbuf = _with_socket(fd, lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    return max(0, sndbuf - _ioctl_int(fd, termios.TIOCOUTQ)) if sndbuf else 0


@functools.total_ordering
class kevent:
    """``select.kevent(ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD, fflags=0, data=0, udata=0)``."""

    __slots__ = ("ident", "filter", "flags", "data", "udata", "_fflags", "_so_error_of")
    __hash__ = None  # like CPython's: comparable, not hashable

    def __init__(self, ident, filter=KQ_FILTER_READ, flags=KQ_EV_ADD, fflags=0, data=0, udata=0):
        if not isinstance(ident, int):
            ident = ident.fileno()
            if ident < 0:
                raise ValueError("file descriptor cannot be a negative integer")
        elif ident < 0:
            raise OverflowError("can't convert negative int to unsigned")
        self.ident, self.filter, self.flags = ident, filter, flags
        self._fflags, self.data, self.udata = fflags, data, udata
        self._so_error_of = None  # (fd, identity): fflags still to be read from SO_ERROR

    @property
    def fflags(self):
        if self._so_error_of is not None:
            fd, ident = self._so_error_of
            self._so_error_of = None
            try:
                same = _identity(fd) == ident
            except OSError:
                same = False
            if same:
                self._fflags = _with_socket(fd, lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        return self._fflags

    @fflags.setter
    def fflags(self, value):
        self._so_error_of, self._fflags = None, value

    def _key(self):
        return (self.ident, self.filter, self.flags, self.fflags, self.data, self.udata)

    def __eq__(self, other):
        return self._key() == other._key() if isinstance(other, kevent) else NotImplemented

    def __lt__(self, other):
        return self._key() < other._key() if isinstance(other, kevent) else NotImplemented

    def __repr__(self):
        return (
            f"<select.kevent ident={self.ident} filter={self.filter} flags={self.flags:#x} "
            f"fflags={self.fflags:#x} data={self.data:#x} udata={self.udata}>"
        )


class _Knote:
    __slots__ = ("ident", "filter", "mode", "fflags", "data", "udata", "enabled", "triggered")

    def __init__(self, change):
        self.ident, self.filter, self.udata = change.ident, change.filter, change.udata
        self.mode = change.flags & _MODE_FLAGS
        self.enabled = not change.flags & KQ_EV_DISABLE
        self.fflags, self.data = change.fflags, change.data
        self.triggered = False
        if self.filter == KQ_FILTER_USER:
            self.triggered = bool(change.fflags & KQ_NOTE_TRIGGER)
            self.fflags = change.fflags & KQ_NOTE_FFLAGSMASK


class kqueue:
    """``select.kqueue()``: ``control``, ``close``, ``closed``, ``fileno``."""

    def __init__(self):
        self._lock = threading.Lock()
        self._closed = False
        self._waiters = 0  # threads sleeping on _wait outside the lock
        self._knotes = {}  # (ident, filter) -> _Knote
        self._fd_identity = {}  # fd -> (st_dev, st_ino) when its knotes were made
        self._ready = {}  # (ident, filter) -> None: activated, in order, to be checked
        self._wait = select.epoll()
        self._wakefd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wait.register(self._wakefd, select.EPOLLIN)
        self._sets = {}  # (filter, edge) -> epoll
        for filt in _FD_FILTERS:
            for edge in (False, True):
                ep = self._sets[filt, edge] = select.epoll()
                self._wait.register(ep.fileno(), select.EPOLLIN)

    @property
    def closed(self):
        return self._closed

    def fileno(self):
        if self._closed:
            raise ValueError("I/O operation on closed kqueue object")
        return self._wait.fileno()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for ep in self._sets.values():
                ep.close()
            os.eventfd_write(self._wakefd, 1)  # a sleeping control() returns
            if not self._waiters:
                self._release()

    def _release(self):
        self._wait.close()
        os.close(self._wakefd)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- kevent(2) --------------------------------------------------------------
    def control(self, changelist, maxevents, timeout=None):
        if maxevents < 0:
            raise ValueError(f"Length of eventlist must be 0 or positive, got {maxevents}")
        if timeout is not None:
            if not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout argument must be a number or None, got {type(timeout).__name__}")
            if timeout < 0:
                raise ValueError("timeout must be positive or None")
        changes = [] if changelist is None else list(changelist)
        if not all(isinstance(ch, kevent) for ch in changes):
            raise TypeError("changelist must be an iterable of select.kevent objects")
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                raise ValueError("I/O operation on closed kqueue object")
            errors = []
            for ch in changes:
                err = self._apply(ch)
                if err:
                    if len(errors) == maxevents:
                        raise OSError(err, os.strerror(err))
                    errors.append(kevent(ch.ident, ch.filter, KQ_EV_ERROR, ch.fflags, err, ch.udata))
            if errors or maxevents == 0:
                return errors
            self._waiters += 1
        try:
            while True:
                with self._lock:
                    if self._closed:
                        raise OSError(errno.EBADF, "kqueue closed during kevent()")
                    self._harvest()
                    events = self._deliver(maxevents)
                if events:
                    return events
                wait = -1 if end is None else end - time.monotonic()
                if end is not None and wait <= 0:
                    return []
                self._wait.poll(wait, 1)
        finally:
            with self._lock:
                self._waiters -= 1
                if self._closed and not self._waiters:
                    self._release()

    # -- changes ------------------------------------------------------------------------
    def _apply(self, ch):
        """Apply one change; 0 or an errno."""
        key = (ch.ident, ch.filter)
        if ch.filter in _FD_FILTERS:
            try:
                identity = self._check_fd(ch.ident)
            except OSError as exc:
                return exc.errno
        elif ch.filter != KQ_FILTER_USER:
            return errno.EINVAL
        kn = self._knotes.get(key)
        flags = ch.flags
        if kn is None:
            if not flags & KQ_EV_ADD:
                return errno.ENOENT
            kn = self._knotes[key] = _Knote(ch)
            if ch.filter in _FD_FILTERS:
                self._fd_identity[ch.ident] = identity
            if kn.enabled:
                self._activate(kn)
            return 0
        if flags & KQ_EV_DELETE:
            self._drop(kn)
            return 0
        if flags & KQ_EV_ADD:
            kn.udata = ch.udata
            if kn.filter != KQ_FILTER_USER:
                kn.fflags, kn.data = ch.fflags, ch.data
        if kn.filter == KQ_FILTER_USER:
            self._touch_user(kn, ch)
        if flags & KQ_EV_DISABLE:
            if kn.enabled:
                kn.enabled = False
                self._ready.pop(key, None)
                self._disarm(kn)
            return 0
        if flags & (KQ_EV_ENABLE | KQ_EV_ADD):
            kn.enabled = True  # "adding an event automatically enables it"
            self._activate(kn)  # re-evaluated, as the kernel does on register
        elif kn.enabled and kn.filter == KQ_FILTER_USER and ch.fflags & KQ_NOTE_TRIGGER:
            self._activate(kn)
        return 0

    def _touch_user(self, kn, ch):
        if ch.fflags & KQ_NOTE_TRIGGER:
            kn.triggered = True
        ctrl, bits = ch.fflags & KQ_NOTE_FFCTRLMASK, ch.fflags & KQ_NOTE_FFLAGSMASK
        if ctrl == KQ_NOTE_FFAND:
            kn.fflags &= bits
        elif ctrl == KQ_NOTE_FFOR:
            kn.fflags |= bits
        elif ctrl == KQ_NOTE_FFCOPY:
            kn.fflags = bits
        kn.data = ch.data

    def _activate(self, kn):
        if kn.filter == KQ_FILTER_USER:
            if kn.triggered:
                self._ready[kn.ident, kn.filter] = None
                os.eventfd_write(self._wakefd, 1)  # for a control() asleep in another thread
            return
        ep = self._sets[kn.filter, bool(kn.mode & KQ_EV_CLEAR)]
        mask = _EPOLL_MASK[kn.filter] | (_EPOLLET if kn.mode & KQ_EV_CLEAR else 0)
        try:
            ep.register(kn.ident, mask)
        except FileExistsError:
            ep.modify(kn.ident, mask)  # Linux re-checks readiness: a new edge if ready

    def _disarm(self, kn):
        if kn.filter != KQ_FILTER_USER:
            try:
                self._sets[kn.filter, bool(kn.mode & KQ_EV_CLEAR)].unregister(kn.ident)
            except OSError:
                pass  # closed, or never armed (disabled)

    def _drop(self, kn):
        del self._knotes[kn.ident, kn.filter]
        self._ready.pop((kn.ident, kn.filter), None)
        self._disarm(kn)
        if kn.filter != KQ_FILTER_USER and not any((kn.ident, f) in self._knotes for f in _FD_FILTERS):
            self._fd_identity.pop(kn.ident, None)

    def _check_fd(self, fd):
        """Forget the knotes of ``fd`` if it was closed (and maybe reused) since
        they were made, as close(2) would have; raise EBADF if it is not open."""
        try:
            now = _identity(fd)
        except OSError:
            self._forget_fd(fd)
            raise
        if self._fd_identity.get(fd, now) != now:
            self._forget_fd(fd)
        return now

    def _forget_fd(self, fd):
        for filt in _FD_FILTERS:
            kn = self._knotes.get((fd, filt))
            if kn is not None:
                self._drop(kn)

    # -- events ---------------------------------------------------------------------------
    def _harvest(self):
        try:
            os.eventfd_read(self._wakefd)
        except BlockingIOError:
            pass
        for (filt, edge), ep in self._sets.items():
            for fd, _ in ep.poll(0):
                kn = self._knotes.get((fd, filt))
                if kn is not None and kn.enabled and bool(kn.mode & KQ_EV_CLEAR) == edge:
                    self._ready[fd, filt] = None
                else:  # stale registration (descriptor closed and reused)
                    try:
                        ep.unregister(fd)
                    except OSError:
                        pass

    def _deliver(self, maxevents):
        out = []
        for key in list(self._ready):
            if len(out) == maxevents:
                break
            del self._ready[key]  # delivered, or found stale: either way reset
            kn = self._knotes.get(key)
            if kn is None or not kn.enabled:
                continue
            if kn.filter == KQ_FILTER_USER:
                if not kn.triggered:
                    continue
                ev = kevent(kn.ident, kn.filter, kn.mode, kn.fflags, kn.data, kn.udata)
                if kn.mode & KQ_EV_CLEAR:
                    kn.triggered = False
                else:
                    self._ready[key] = None  # level: stays triggered
            else:
                ev = self._fd_event(kn)
                if ev is None:
                    continue
            if kn.mode & KQ_EV_ONESHOT:
                self._drop(kn)
            out.append(ev)
        return out

    def _fd_event(self, kn):
        """The event ``kn`` reports now, or None if its condition does not hold."""
        fd = kn.ident
        try:
            self._check_fd(fd)
        except OSError:
            return None
        if (fd, kn.filter) not in self._knotes:
            return None  # the descriptor was closed and its number reused
        p = select.poll()
        p.register(fd, _POLL_ALL)
        revents = p.poll(0)
        rev = revents[0][1] if revents else 0
        if kn.filter == KQ_FILTER_READ:
            if not rev & _READ_READY:
                return None
            eof = rev & _READ_EOF
            data = _ioctl_int(fd, termios.FIONREAD)
        else:
            if not rev & _WRITE_READY:
                return None
            eof = rev & _WRITE_EOF
            data = 0 if eof else _write_room(fd)
        ev = kevent(fd, kn.filter, kn.mode | (KQ_EV_EOF if eof else 0), 0, data, kn.udata)
        if eof:
            ev._so_error_of = (fd, self._fd_identity[fd])
        return ev


def _module(user_filter):
    names = {k: v for k, v in globals().items() if k.startswith("KQ_")}
    if not user_filter:  # the shape of CPython's real select module on macOS/BSD
        names = {k: v for k, v in names.items() if k not in ("KQ_FILTER_USER",) and not k.startswith("KQ_NOTE_FF")}
        names.pop("KQ_NOTE_TRIGGER")
    return SimpleNamespace(kqueue=kqueue, kevent=kevent, **names)


#: Shaped like the ``select`` module, with ``KQ_FILTER_USER`` (engine wakes by EVFILT_USER).
emulated_select = _module(user_filter=True)
#: Without ``KQ_FILTER_USER``, as CPython ships it (engine wakes by a self-pipe).
emulated_select_without_user = _module(user_filter=False)


def install(monkeypatch=None, *, user_filter=True):
    """Run gaio's kqueue engine over the emulation.

    With a pytest ``monkeypatch``, everything is undone at the end of the test;
    with None, it lasts until :func:`uninstall`. Returns the emulated module.
    """
    from gaio import backends
    from gaio.backends import kqueue as engine_module

    target = emulated_select if user_filter else emulated_select_without_user
    if monkeypatch is not None:
        monkeypatch.setattr(engine_module, "_select", target)
        monkeypatch.setattr(backends, "_probe_cache", {})  # restored (with its verdicts) on undo
    else:
        engine_module._select = target
        backends.clear_probe_cache()
    return target


def uninstall():
    """Undo :func:`install` (None form): the engine sees the real ``select`` again."""
    from gaio import backends
    from gaio.backends import kqueue as engine_module

    engine_module._select = select
    backends.clear_probe_cache()
