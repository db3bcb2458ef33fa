"""Build hook: compile gaio._uring (the io_uring engine's C side) when possible.

All metadata lives in pyproject.toml. This file only adds the cffi extension,
and only when liburing's headers and static library are present; otherwise,
and whenever the compile fails, gaio installs as pure Python and the epoll
(or kqueue) engine serves. The build never fails because of liburing.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
WARNING = "gaio: liburing not found, io_uring engine disabled; epoll serves"


def _warn(msg):
    sys.stderr.write(f"\n*** {msg}\n\n")


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into a warning."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure: go pure Python
            _warn(f"gaio: building the io_uring extension failed ({exc}); io_uring engine disabled; epoll serves")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            _warn(f"gaio: compiling {ext.name} failed ({exc}); io_uring engine disabled; epoll serves")


def _uring_available():
    if not sys.platform.startswith("linux"):
        return False
    sys.path.insert(0, HERE)
    try:
        import build_uring  # noqa: F401  (needs cffi, a build requirement)
        return build_uring.find_liburing() is not None
    except Exception as exc:  # noqa: BLE001
        _warn(f"gaio: cannot prepare the io_uring build ({exc})")
        return False
    finally:
        sys.path.pop(0)


kwargs = {"cmdclass": {"build_ext": OptionalBuildExt}}
if os.environ.get("GAIO_NO_URING") == "1":
    _warn("gaio: GAIO_NO_URING=1, io_uring engine disabled; epoll serves")
elif _uring_available():
    kwargs["cffi_modules"] = ["build_uring.py:ffibuilder"]
elif sys.platform.startswith("linux"):
    _warn(WARNING)

setup(**kwargs)
