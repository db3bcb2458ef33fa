"""The CI-sized soak: bench/soak.py for a few seconds on every engine.

Part of the default run (about 7 s per engine; ``GAIO_SOAK_SECONDS`` per
phase, default 3 s churn + 3.5 s echo). One watcher does connect/echo/free
cycles, then small echo ops on 8 socketpairs, and between the warm-up and the
end:

* the descriptor count is exactly flat (and back to the start after close);
* RSS grows by at most RSS_BOUND_KIB (4 MiB): CPython's allocator keeps
  arenas, so a little noise is normal, but a leak of one object per op
  (~50 bytes x 100k+ ops) or one descriptor's kernel buffers per cycle would
  show well above it;
* memory still allocated (tracemalloc) grows by at most TRACED_BOUND_KIB
  (256 KiB), which is less than one leaked ``OpResult`` per 1000 ops.

The full soak (100k cycles, 10M ops) is ``python bench/soak.py``.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from conftest import fd_count

RSS_BOUND_KIB = 4 * 1024
TRACED_BOUND_KIB = 256
SECONDS = float(os.environ.get("GAIO_SOAK_SECONDS", "3"))

_path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "soak.py")
_spec = importlib.util.spec_from_file_location("gaio_bench_soak", _path)
soak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)


@pytest.mark.timeout(120)
def test_soak(backend):
    before = fd_count()
    report = soak.run(
        cycles=1_000_000,
        ops=100_000_000,
        backend=backend,
        unix=False,
        trace=True,
        seconds=SECONDS,
        warmup=(200, 5000),
    )
    print("\n" + soak.describe(report))
    assert report["backend"] == backend
    for phase, least in (("churn", 300), ("echo", 5_000)):
        ph = report[phase]
        s, e = ph["start"], ph["end"]
        assert ph["done"] >= least, f"{phase}: only {ph['done']} done: too slow to mean anything"
        assert e["fds"] == s["fds"], f"{phase}: descriptors {s['fds']} -> {e['fds']}"
        assert e["rss_kib"] - s["rss_kib"] <= RSS_BOUND_KIB, f"{phase}: RSS {s['rss_kib']} -> {e['rss_kib']} KiB"
        grown = e["traced_kib"] - s["traced_kib"]
        assert grown <= TRACED_BOUND_KIB, f"{phase}: traced memory {s['traced_kib']} -> {e['traced_kib']} KiB"
    assert fd_count() == before, "descriptors left after the soak's watcher closed"
