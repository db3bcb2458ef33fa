# Type stub for the cffi extension built by build_uring.py (API mode): its
# ``ffi`` and ``lib`` are only known at run time.
from typing import Any

ffi: Any
lib: Any
